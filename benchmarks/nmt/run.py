"""The paper's translation comparison (Sec. 4.3, Table 4, Fig. 7b) as a sweep of
benchmarks/nmt/train.py: BLEU mean ± spread over seeds and training-loss curves.

Each run is one process of benchmarks/nmt/train.py with its own folder under
benchmarks/results/nmt/runs/<profile>/; a run whose record.json exists is not redone. The
subword vocabularies are learned once for the sweep and shared. The report,
benchmarks/results/nmt.md with nmt_curves.png and nmt.json, is rewritten from every record
present.

    python -m benchmarks.nmt.run --data-dir ../shared/data/multi30k   # CPU profile, 2 seeds
    python -m benchmarks.nmt.run --profile paper --seeds 1            # tfds WMT'14, accelerator
    python -m benchmarks.nmt.run --grid --data-dir ...                # + lr grids, one seed
    python -m benchmarks.nmt.run --report                             # only rewrite the report
"""

import argparse
import json
import os
import statistics

from benchmarks import _harness as h
from benchmarks._sweep import add_common_arguments, load_run_records, run_sweep
from benchmarks._sweep import main as sweep_main
from benchmarks.nmt import train

TRAIN = "benchmarks.nmt.train"
OPTIMIZERS = ("adam", "lookahead-adam", "lookahead-adam-nowarmup", "adafactor")
LABELS = {"adam": "Adam (warm-up)", "lookahead-adam": "Lookahead(Adam) (warm-up)",
          "lookahead-adam-nowarmup": "Lookahead(Adam), no warm-up", "adafactor": "Adafactor"}
# Zhang et al. 2019, Table 4: newstest2014 BLEU, Transformer base on WMT'14 En->De (TPU)
PAPER_BLEU = {"adam": "24.6", "lookahead-adam": "24.70", "lookahead-adam-nowarmup": "24.4",
              "adafactor": "24.51"}

# Adafactor's relative-step cap around its default 0.01 (the paper does not give its setting)
ADAFACTOR_GRID = ("0.003", "0.03")


def runs_for(args):
    runs = []
    for opt in OPTIMIZERS:
        for seed in range(args.seeds):
            runs.append((f"{opt}-s{seed}", ["--optimizer", opt, "--seed", str(seed)]))
    if args.grid:  # one seed each: the paper's grid for Lookahead(Adam), and Adafactor's cap
        for lr in ("0.02", "0.04", "0.06"):
            for k in ("5", "10"):
                runs.append((f"grid-lr{lr}-k{k}", ["--optimizer", "lookahead-adam", "--lr", lr,
                                                   "--k", k]))
        for lr in ADAFACTOR_GRID:
            runs.append((f"grid-adafactor-lr{lr}", ["--optimizer", "adafactor", "--lr", lr]))
    return runs


def folder_of(args):
    return os.path.join(args.out, "nmt", "runs", args.profile)


def run_all(args):
    folder = folder_of(args)
    common = ["--profile", args.profile, "--verbose", "2",
              "--vocab-dir", os.path.join(folder, "vocab")]
    if args.data_dir:
        common += ["--data-dir", args.data_dir]
    common += args.extra

    def record(name):
        return os.path.join(folder, name, "record.json")

    def summary(name):
        with open(record(name)) as f:
            r = json.load(f)
        return f"BLEU {r['bleu']:.2f}, final loss {r['epochs'][-1]['loss']:.3f}"

    run_sweep(runs_for(args), lambda name, extra: ["-m", TRAIN, *common, *extra, "--run-dir",
                                                   os.path.join(folder, name)],
              record, summary, folder, h.ROOT, parse=train.parse_args,
              before=train.BEFORE_IT_EXISTED)


def load_records(args):
    return load_run_records(folder_of(args))


def plot_curves(groups, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for opt, recs in groups.items():
        for i, r in enumerate(recs):
            steps, losses = zip(*r["curve"])
            ax.plot(steps, losses, color=f"C{OPTIMIZERS.index(opt)}", alpha=0.8, lw=1,
                    label=LABELS[opt] if i == 0 else None)
    ax.set_xlabel("inner steps")
    ax.set_ylabel("training loss (per token)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Training loss vs inner steps, every seed (as Fig. 7b)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(args):
    records = load_records(args)
    if not records:
        raise SystemExit(f"no finished runs under {folder_of(args)}")
    groups = {}
    for name, r in records.items():
        if not name.startswith("grid-"):
            groups.setdefault(r["args"]["optimizer"], []).append(r)
    groups = {o: groups[o] for o in OPTIMIZERS if o in groups}
    first = next((r for r in records.values() if r["args"]["optimizer"] != "adafactor"),
                 next(iter(records.values())))
    a = first["args"]
    adafactor = sorted({r["args"]["lr"] for r in groups.get("adafactor", [])})
    lines = h.header("English→German translation: Lookahead(Adam) against Adam and Adafactor",
                     h.command_line(), h.machine(),
                     source=f"the run records in `nmt/runs/{args.profile}/`") + \
        h.machines_line(records.values()) + [
             f"**Profile `{args.profile}`**: a Transformer of {a['layers']}+{a['layers']} "
             f"layers, width {a['width']}, {a['heads']} heads, feed-forward {a['ffn']} "
             f"({first['params']:,} parameters), trained on {first['train_pairs']:,} sentence "
             f"pairs{' (Multi30k)' if a['data_dir'] else ''} for {a['epochs']} epochs of "
             f"{first['steps_per_epoch']} steps, batch {a['batch_size']}, subword "
             f"vocabularies of {a['vocab_size']} per language; Transformer schedule with "
             f"warm-up {a['warmup']} and lr scale {a['lr']}; Lookahead k={a['k']}, "
             f"α={a['alpha']}"
             + (f"; Adafactor (Keras's) with relative step min(ρ, 1/√t)·max(10⁻³, RMS(θ)), "
                f"ρ = {', '.join(map(str, adafactor))}" if adafactor else "")
             + ". BLEU: sacreBLEU on the test set, greedy decoding, evaluated on "
             "the slow weights for Lookahead.", "",
             "| optimizer | seeds | test BLEU (mean ± std) | per seed | final training loss | "
             "minutes per run | paper (WMT'14, Table 4) |", "|---|---|---|---|---|---|---|"]
    summary = {}
    for opt, recs in groups.items():
        scores = [r["bleu"] for r in recs]
        mean = statistics.mean(scores)
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        loss = statistics.mean(r["epochs"][-1]["loss"] for r in recs)
        mins = statistics.mean(r["train_seconds"] for r in recs) / 60
        summary[opt] = {"bleu_mean": mean, "bleu_std": std, "seeds": len(recs),
                        "bleu": scores}
        lines.append(f"| {LABELS[opt]} | {len(recs)} | {mean:.2f} ± {std:.2f} | "
                     f"{', '.join(f'{s:.2f}' for s in scores)} | {loss:.3f} | {mins:.1f} | "
                     f"{PAPER_BLEU[opt]} |")
    grid = {n: r for n, r in records.items() if n.startswith("grid-")}
    if grid:
        lines += ["", "## Grid (one seed)", "",
                  "| optimizer | lr | k | BLEU | final training loss |", "|---|---|---|---|---|"]
        lines += [f"| {LABELS[r['args']['optimizer']]} | {r['args']['lr']} | "
                  f"{r['args']['k'] if r['args']['optimizer'] != 'adafactor' else '–'} | "
                  f"{r['bleu']:.2f} | {r['epochs'][-1]['loss']:.3f} |"
                  for n, r in sorted(grid.items(), key=lambda i: (i[1]['args']['optimizer'],
                                                                   i[1]['args']['lr'],
                                                                   i[1]['args']['k']))]
    lines += ["", "The paper's numbers are for WMT'14 with Transformer base on a TPU; a small "
              "model on Multi30k measures the same comparison on another scale, not the same "
              "quantity.", "", "![curves](nmt_curves.png)", "",
              "Sample translations (first seed of each optimizer):", ""]
    for opt, recs in groups.items():
        s = recs[0]["samples"][0]
        lines.append(f"- {LABELS[opt]}: *{s['output']}* (reference: {s['reference']})")
    lines.append("")
    os.makedirs(args.out, exist_ok=True)
    plot_curves(groups, os.path.join(args.out, "nmt_curves.png"))
    with open(os.path.join(args.out, "nmt.md"), "w") as f:
        f.write("\n".join(lines))
    h.write_json(os.path.join(args.out, "nmt.json"), {
        "profile": args.profile, "summary": summary,
        "runs": {n: {"args": r["args"], "bleu": r["bleu"], "curve": r["curve"]}
                 for n, r in records.items()}})
    h.progress(f"wrote {os.path.join(args.out, 'nmt.md')}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=("cpu", "paper"))
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--grid", action="store_true",
                   help="add, one seed each, the paper's lr x k grid for Lookahead(Adam) and "
                        "Adafactor's cap at 0.003 and 0.03")
    add_common_arguments(p, "benchmarks/nmt/train.py")
    sweep_main(p, argv, run_all, write_report)

if __name__ == "__main__":
    main()
