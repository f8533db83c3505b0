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
    python -m benchmarks.nmt.run --profile cpu-long --data-dir ../shared/data/multi30k
        # App. C.4 trained to a plateau (nmt_cpu_long.md): a pilot pair, the grid, 3 seeds

On the cpu-long profile every run trains until its validation BLEU has not improved for 3 epochs
(at most 40), and is resumed from its last epoch if stopped. The sweep runs App. C.4's
comparison: first a pilot pair (Adam, and Lookahead(Adam) at the paper's pick, lr 0.04, k 10),
then Adafactor at its default and the rest of Lookahead(Adam)'s grid, lr {0.02, 0.04, 0.06} x
k {5, 10} at alpha 0.5, on seed 0; the grid point of best validation BLEU is chosen, and it,
Adam and Adafactor (at their defaults, as the paper runs them) then run every seed; test BLEU is
read for those only.
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


# App. C.4: Lookahead(Adam)'s grid (lr scale x k, alpha 0.5); the paper's pick first, as the
# pilot's
C4_GRID = [("0.04", "10"), ("0.02", "5"), ("0.02", "10"), ("0.04", "5"), ("0.06", "5"),
           ("0.06", "10")]


def c4_run(opt, seed, lr=None, k=None):
    """(name, extra arguments) of a run of App. C.4's plateau comparison."""
    if opt == "lookahead-adam":
        return (f"p-lookahead-adam-lr{lr}-k{k}-s{seed}",
                ["--optimizer", opt, "--lr", lr, "--k", k, "--seed", str(seed)])
    return f"p-{opt}-s{seed}", ["--optimizer", opt, "--seed", str(seed)]


def c4_search(records):
    """(Lookahead(Adam)'s chosen (lr, k) or None until its grid is done, the grid's records)."""
    grid = [(c, records.get(c4_run("lookahead-adam", 0, *c)[0])) for c in C4_GRID]
    if not all(r for _, r in grid):
        return None, grid
    return max(grid, key=lambda p: p[1]["valid_bleu"])[0], grid


def c4_runs(records, seeds):
    """The next stage's unfinished runs: the pilot pair, the rest of seed 0, then the seeds."""
    stages = [[c4_run("adam", 0), c4_run("lookahead-adam", 0, *C4_GRID[0])],
              [c4_run("adafactor", 0)] + [c4_run("lookahead-adam", 0, *c) for c in C4_GRID[1:]]]
    for stage in stages:
        todo = [r for r in stage if r[0] not in records]
        if todo:
            return todo
    chosen, _ = c4_search(records)
    todo = [run for s in range(1, seeds) for run in (
        c4_run("adam", s), c4_run("adafactor", s), c4_run("lookahead-adam", s, *chosen))]
    return [r for r in todo if r[0] not in records]


def _finished(path):
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return "bleu" in json.load(f)


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
        valid = (f"best validation BLEU {r['valid_bleu']:.2f} at epoch {r['best_epoch']} of "
                 f"{len(r['epochs'])} ({r['stopped']}), " if "valid_bleu" in r else "")
        return f"{valid}BLEU {r['bleu']:.2f}, final loss {r['epochs'][-1]['loss']:.3f}"

    def command(name, extra):
        # a run stopped part-way (its record written, no BLEU yet) continues
        resume = (["--resume"] if os.path.exists(record(name)) and not _finished(record(name))
                  else [])
        return ["-m", TRAIN, *common, *extra, "--run-dir", os.path.join(folder, name), *resume]

    def sweep(runs):
        run_sweep(runs, command, record, summary, folder, h.ROOT, parse=train.parse_args,
                  before=train.BEFORE_IT_EXISTED, done=_finished)

    if args.profile == "cpu-long":
        while pending := c4_runs(load_records(args), args.seeds):
            sweep(pending)
        return
    sweep(runs_for(args))


def load_records(args):
    return load_run_records(folder_of(args), _finished)


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


def plot_plateau(records, path):
    """Validation BLEU after every epoch, every run (Lookahead solid, the others dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, r) in enumerate(sorted(records.items())):
        epochs = [e["epoch"] for e in r["epochs"]]
        style = "-" if r["args"]["optimizer"].startswith("lookahead") else "--"
        ax.plot(epochs, [e["valid_bleu"] for e in r["epochs"]], style, marker="o", ms=2,
                color=f"C{i % 10}", label=name[2:], lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation BLEU (evaluated weights)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("Validation BLEU per epoch, every run, to its plateau", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_plateau_report(args, records):
    """nmt_cpu_long.md/.json: App. C.4's comparison trained to a plateau."""
    first = next(iter(records.values()))
    a = first["args"]
    chosen, grid = c4_search(records)
    lines = h.header("English→German translation to a plateau (App. C.4): Lookahead(Adam) "
                     "against Adam and Adafactor", h.command_line(), h.machine(),
                     source=f"the run records in `nmt/runs/{args.profile}/`") + \
        h.machines_line(records.values()) + [
        f"**Profile `{args.profile}`**: a Transformer of {a['layers']}+{a['layers']} layers, "
        f"width {a['width']} ({first['params']:,} parameters), {first['train_pairs']:,} "
        f"Multi30k sentence pairs, batch {a['batch_size']}, Transformer schedule with warm-up "
        f"{a['warmup']}. **Stopping rule**: after every epoch the validation set (1,014 "
        "sentences) is translated greedily and scored with sacreBLEU on the evaluated weights "
        f"(Lookahead's slow ones); a run stops once {a['stop_patience']} epochs in a row bring "
        f"no better validation BLEU, at most {a['epochs']} epochs; its test BLEU is that of the "
        "weights of its best validation BLEU. Adam and Adafactor run at their defaults (Adam's "
        "lr scale 0.04, Adafactor's relative-step cap 0.01), as the paper runs them; "
        "Lookahead(Adam) over the paper's lr {0.02, 0.04, 0.06} × k {5, 10}, α 0.5, chosen by "
        f"validation BLEU on seed 0; then {args.seeds} seeds of each.", ""]
    pending = c4_runs(records, args.seeds)
    if pending:
        lines += [f"**Not finished**: the next stage has {len(pending)} run"
                  f"{'s' if len(pending) > 1 else ''} to go ({', '.join(n for n, _ in pending)})"
                  ".", ""]
    lines += ["## Seed 0: the pilot and the grid", "",
              "| run | best validation BLEU | at epoch | epochs run | stopped |",
              "|---|---|---|---|---|"]
    seed0 = [c4_run("adam", 0), c4_run("adafactor", 0)] + [
        c4_run("lookahead-adam", 0, *c) for c in C4_GRID]
    for name, _ in seed0:
        r = records.get(name)
        mark = (" **chosen**" if chosen and name == c4_run("lookahead-adam", 0, *chosen)[0]
                else "")
        lines.append(f"| {name[2:]} | " + (
            f"{r['valid_bleu']:.2f}{mark} | {r['best_epoch']} | {len(r['epochs'])} | "
            f"{r['stopped']} |" if r else "not run yet | | | |"))
    lines.append("")
    summary = {}
    if chosen:
        arms = {"adam": [records.get(c4_run("adam", s)[0]) for s in range(args.seeds)],
                "adafactor": [records.get(c4_run("adafactor", s)[0])
                              for s in range(args.seeds)],
                "lookahead-adam": [records.get(c4_run("lookahead-adam", s, *chosen)[0])
                                   for s in range(args.seeds)]}
        lines += ["## The chosen configurations, on the test set", "",
                  "| optimizer | seeds | test BLEU (mean ± std) | per seed | epochs run | "
                  "paper (WMT'14, Table 4) |", "|---|---|---|---|---|---|"]
        for opt, recs in arms.items():
            done = [r for r in recs if r]
            scores = [r["bleu"] for r in done]
            m = statistics.mean(scores)
            sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
            label = (f"Lookahead(Adam), lr {chosen[0]}, k {chosen[1]}, α 0.5"
                     if opt == "lookahead-adam" else LABELS[opt])
            summary[opt] = {"bleu_mean": m, "bleu_std": sd, "seeds": len(done),
                            "bleu": scores}
            lines.append(f"| {label} | {len(done)} | {m:.2f} ± {sd:.2f} | "
                         + ", ".join(f"{x:.2f}" for x in scores) + " | "
                         + ", ".join(str(len(r["epochs"])) for r in done)
                         + f" | {PAPER_BLEU[opt]} |")
        lines += ["", "Paired by seed (the same initial weights and data order):", ""]
        for other in ("adam", "adafactor"):
            diffs = [x["bleu"] - y["bleu"] for x, y in zip(arms["lookahead-adam"], arms[other])
                     if x and y]
            if diffs:
                m = statistics.mean(diffs)
                sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
                lines.append(f"- Lookahead(Adam) − {LABELS[other]}: {m:+.2f} ± {sd:.2f} BLEU "
                             f"({sum(d > 0 for d in diffs)} of {len(diffs)} seeds higher; per "
                             "seed " + ", ".join(f"{d:+.2f}" for d in diffs) + ")")
                summary[f"lookahead-adam - {other}"] = diffs
        lines.append("")
    missing = len(pending) + (0 if chosen else 3 * (args.seeds - 1))
    lines += ["![validation BLEU](nmt_cpu_long_curves.png)", "",
              "The paper's numbers are for WMT'14 with Transformer base on a TPU; a small model "
              "on Multi30k measures the same comparison on another scale.", ""]
    os.makedirs(args.out, exist_ok=True)
    plot_plateau(records, os.path.join(args.out, "nmt_cpu_long_curves.png"))
    with open(os.path.join(args.out, "nmt_cpu_long.md"), "w") as f:
        f.write("\n".join(lines))
    h.write_json(os.path.join(args.out, "nmt_cpu_long.json"), {
        "profile": args.profile, "seeds": args.seeds, "missing_runs": missing,
        "chosen": chosen, "summary": summary,
        "runs": {n: {"args": r["args"], "bleu": r["bleu"], "valid_bleu": r["valid_bleu"],
                     "best_epoch": r["best_epoch"], "epochs": r["epochs"]}
                 for n, r in records.items()}})
    h.progress(f"wrote {os.path.join(args.out, 'nmt_cpu_long.md')}")


def write_report(args):
    records = load_records(args)
    if records and args.profile == "cpu-long":
        return write_plateau_report(args, records)
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
    p.add_argument("--profile", default="cpu", choices=("cpu", "cpu-long", "paper"))
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--grid", action="store_true",
                   help="add, one seed each, the paper's lr x k grid for Lookahead(Adam) and "
                        "Adafactor's cap at 0.003 and 0.03")
    add_common_arguments(p, "benchmarks/nmt/train.py")
    sweep_main(p, argv, run_all, write_report)

if __name__ == "__main__":
    main()
