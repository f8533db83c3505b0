"""The paper's CIFAR comparisons as sweeps of benchmarks/cifar/train.py, with mean ± std over seeds.

Each run is one process of benchmarks/cifar/train.py writing its record to
benchmarks/results/cifar/runs/<profile>/<run>.json; a run whose file exists is not redone, so an
interrupted sweep restarts where it stopped. The report, benchmarks/results/cifar.md with PNG
curves and benchmarks/results/cifar.json (every run's final numbers), is rewritten from all the
files present (cifar_cpu_long.* for the cpu-long profile).

    python -m benchmarks.cifar.run --data-dir ../shared/data/cifar10_jpeg.tar.gz
        # the CPU profile's main comparison: SGD, Lookahead(SGD), Adam, Lookahead(Adam), 3 seeds
    python -m benchmarks.cifar.run --suite robustness --data-dir ...   # Figs. 8 and 9
    python -m benchmarks.cifar.run --suite inner-state --data-dir ...  # App. C.5, Table 6
    python -m benchmarks.cifar.run --profile paper --suite main        # on an accelerator
    python -m benchmarks.cifar.run --report                            # only rewrite the report

Suites:
- main: sgd, lookahead-sgd, adam, lookahead-adam (and polyak-sgd, adamw with --all-optimizers).
- robustness: inner learning rate {0.1, 0.2, 0.3} and momentum {0.9, 0.95, 0.98} for SGD and
  Lookahead(SGD) (Fig. 8); Lookahead(SGD) at k in {5, 10} x alpha in {0.5, 0.8} (Fig. 9).
- inner-state: Lookahead(SGD) with maintain, interpolate and reset (App. C.5).
- all: the three above.
- protocol: App. C.1 as the paper tunes it (run apart from 'all': about 43 runs on cpu-long).
  SGD (momentum 0.9) over rate x L2 weight decay and AdamW over rate x decoupled decay;
  Lookahead(SGD) with momentum reset over inner rate x k x alpha at SGD's chosen decay,
  Polyak(SGD) over the rate at SGD's decay, Lookahead(AdamW) over k x alpha at AdamW's chosen
  rate and decay; each chosen by its final validation accuracy on seed 0 (--valid-limit images
  held out of training: 5,000 on cpu-long), then --seeds seeds of each choice. The grids are
  App. C.1's trimmed alike (C1_GRIDS says how); the report gives both and the test accuracy of
  the chosen configurations only.

    python -m benchmarks.cifar.run --profile cpu-long --suite protocol \
        --data-dir ../shared/data/cifar10_jpeg.tar.gz
"""

import argparse
import json
import os
import statistics

from benchmarks import _harness as h
from benchmarks._sweep import add_common_arguments, partial_sweep, run_sweep
from benchmarks._sweep import main as sweep_main
from benchmarks.cifar import train
from examples._data import local_folder

TRAIN = "benchmarks.cifar.train"
# The report's files (<name>.md, .json, _curves.png): the cpu-long profile's beside the others'.
REPORT_NAMES = {"cpu-long": "cifar_cpu_long"}
LABELS = {"sgd": "SGD", "lookahead-sgd": "Lookahead(SGD)", "polyak-sgd": "Polyak(SGD)",
          "adamw": "AdamW", "adam": "Adam", "lookahead-adam": "Lookahead(Adam)"}

# Published test accuracies (%), for reading beside ours; never mixed into our numbers.
PUBLISHED = [
    ("Zhang et al. 2019, Table 1, CIFAR-10, ResNet-18, 200 epochs",
     {"SGD": "95.23 ± .19", "Polyak": "95.26 ± .04", "Adam": "94.84 ± .16",
      "Lookahead": "95.27 ± .06"}),
    ("Zhang et al. 2019, Table 1, CIFAR-100, ResNet-18, 200 epochs",
     {"SGD": "78.24 ± .18", "Lookahead": "78.34 ± .05"}),
    ("Joyce, Kazantzidis & Romano-Scott, *Reproducibility challenge: LA optimizer* "
     "(University of Southampton), CIFAR-10, ResNet-18, 200 epochs, as its table gives it",
     {"SGD": "95.35", "Lookahead": "93.19"}),
    ("Palrecha, Vijayraghavan & Mathias (BITS Pilani), akashpalrecha/Lookahead, CIFAR-10, "
     "fastai's ResNet-18, momentum reset", {"SGD": "85.24", "Lookahead": "85.53"}),
]


def runs_for(suite, seeds, all_optimizers=False):
    """(name, extra arguments) of every run in `suite`."""
    runs = []
    if suite == "main":
        opts = ["sgd", "lookahead-sgd", "adam", "lookahead-adam"]
        if all_optimizers:
            opts += ["polyak-sgd", "adamw"]
        for seed in range(seeds):  # seed by seed: a sweep cut short still pairs every optimizer
            for opt in opts:
                runs.append((f"main-{opt}-s{seed}", ["--optimizer", opt, "--seed", str(seed)]))
    elif suite == "robustness":
        for opt in ("sgd", "lookahead-sgd"):
            for lr in ("0.1", "0.2", "0.3"):
                for momentum in ("0.9", "0.95", "0.98"):
                    runs.append((f"fig8-{opt}-lr{lr}-m{momentum}",
                                 ["--optimizer", opt, "--lr", lr, "--momentum", momentum]))
        for k in ("5", "10"):
            for alpha in ("0.5", "0.8"):
                runs.append((f"fig9-k{k}-a{alpha}", ["--optimizer", "lookahead-sgd", "--k", k,
                                                     "--alpha", alpha]))
    elif suite == "inner-state":
        for mode in ("maintain", "interpolate", "reset"):
            runs.append((f"state-{mode}", ["--optimizer", "lookahead-sgd",
                                           "--inner-state", mode]))
    else:
        raise SystemExit(f"--suite {suite!r}: choose main, robustness, inner-state or all")
    return runs


# App. C.1's grids, trimmed alike to fit 2 cores (each about to three values a dimension; the
# report gives both): SGD's rate {0.03, 0.05, 0.1, 0.2, 0.3} to its middle three; AdamW's decay
# {0.1, 0.3, 1, 3} without 3; Lookahead's α {0.2, 0.5, 0.8} to the paper's own hint
# {0.5, 0.8}; Polyak's rates to SGD's three. (method: ((dimension, values, the paper's), ...))
C1_GRIDS = {
    "sgd": (("lr", ("0.05", "0.1", "0.2"), "0.03, 0.05, 0.1, 0.2, 0.3"),
            ("wd", ("3e-4", "1e-3", "3e-3"), "3e-4, 1e-3, 3e-3")),
    "adamw": (("lr", ("3e-4", "1e-3", "3e-3"), "3e-4, 1e-3, 3e-3"),
              ("wd", ("0.1", "0.3", "1"), "0.1, 0.3, 1, 3")),
    "lookahead-sgd": (("lr", ("0.1", "0.2"), "0.1, 0.2"), ("k", ("5", "10"), "5, 10"),
                      ("alpha", ("0.5", "0.8"), "0.2, 0.5, 0.8")),
    "lookahead-adamw": (("k", ("5", "10"), "–"), ("alpha", ("0.5", "0.8"), "–")),
    "polyak-sgd": (("lr", ("0.05", "0.1", "0.2"), "0.05 … 0.5"),),
}
# where each method's values of the other dimensions come from: its inner optimizer's choice
C1_FROM = {"lookahead-sgd": ("sgd", ("wd",)), "polyak-sgd": ("sgd", ("wd",)),
           "lookahead-adamw": ("adamw", ("lr", "wd"))}
# the order of the stages, the paper's central comparison first: a method's grid, or the seeds
# of the chosen configurations of a group of methods
C1_ORDER = (("grid", ("sgd",)), ("grid", ("lookahead-sgd",)), ("seeds", ("sgd", "lookahead-sgd")),
            ("grid", ("adamw",)), ("grid", ("lookahead-adamw",)),
            ("seeds", ("adamw", "lookahead-adamw")), ("grid", ("polyak-sgd",)),
            ("seeds", ("polyak-sgd",)))
C1_METHODS = ("sgd", "lookahead-sgd", "adamw", "lookahead-adamw", "polyak-sgd")
C1_PAIRS = (("lookahead-sgd", "sgd"), ("lookahead-adamw", "adamw"), ("polyak-sgd", "sgd"))
C1_LABELS = {"sgd": "SGD", "adamw": "AdamW", "lookahead-sgd": "Lookahead(SGD), momentum reset",
             "lookahead-adamw": "Lookahead(AdamW)", "polyak-sgd": "Polyak(SGD)"}
C1_PAPER = {"sgd": "95.23 ± .19", "adamw": "94.84 ± .16", "lookahead-sgd": "95.27 ± .06",
            "polyak-sgd": "95.26 ± .04", "lookahead-adamw": "–"}


def c1_run(opt, config, seed):
    """(name, extra arguments) of a run of App. C.1's protocol; `config`: {dimension: value}."""
    tags = "-".join(f"{'a' if d == 'alpha' else d}{config[d]}" for d in ("lr", "wd", "k", "alpha")
                    if d in config)
    extra = ["--optimizer", opt, "--lr", config["lr"], "--seed", str(seed)]
    extra += ["--adamw-weight-decay" if opt.endswith("adamw") else "--weight-decay", config["wd"]]
    if opt.startswith("lookahead"):
        extra += ["--k", config["k"], "--alpha", config["alpha"]]
    if opt == "lookahead-sgd":
        extra += ["--inner-state", "reset"]  # App. C.1
    return f"c1-{opt}-{tags}-s{seed}", extra


def c1_grid(opt, chosen):
    """The configurations of `opt`'s grid, given the choices of the methods it builds on
    ({method: config}); None while those are not made."""
    fixed = {}
    if opt in C1_FROM:
        base, dims = C1_FROM[opt]
        if base not in chosen:
            return None
        fixed = {d: chosen[base][d] for d in dims}
    configs = [dict(fixed)]
    for dim, values, _ in C1_GRIDS[opt]:
        configs = [{**c, dim: v} for c in configs for v in values]
    return configs


def c1_search(runs):
    """({method: its chosen config}, {method: its grid configs with their records}): a method's
    choice is its grid's best final validation accuracy on seed 0 (ties: the first), made once
    every point of its grid has run."""
    chosen, grids = {}, {}
    for opt in C1_METHODS:  # each after the one it builds on
        configs = c1_grid(opt, chosen)
        if configs is None:
            continue
        points = [(c, runs.get(c1_run(opt, c, 0)[0])) for c in configs]
        grids[opt] = points
        if all(r for _, r in points):
            chosen[opt] = max(points, key=lambda p: p[1]["final"]["valid_accuracy"])[0]
    return chosen, grids


def c1_runs(runs, seeds):
    """The next stage's runs not finished: a grid, then (its methods chosen) their seeds."""
    chosen, grids = c1_search(runs)
    for kind, methods in C1_ORDER:
        if kind == "grid":
            todo = [c1_run(opt, c, 0) for opt in methods for c, r in grids.get(opt, [])
                    if not r]
        else:
            todo = [c1_run(opt, chosen[opt], s) for s in range(1, seeds) for opt in methods
                    if opt in chosen]
            todo = [t for t in todo if t[0] not in runs]
        if todo:
            return todo
        if any(opt not in chosen for opt in methods):
            return []  # waits for a choice that waits for runs
    return []


def run_all(args):
    suites = ["main", "robustness", "inner-state"] if args.suite == "all" else [args.suite]
    runs = [r for s in suites if s != "protocol"
            for r in runs_for(s, args.seeds, args.all_optimizers)]
    folder = os.path.join(args.out, "cifar", "runs", args.profile)
    os.makedirs(folder, exist_ok=True)
    common = ["--profile", args.profile, "--verbose", "2"]
    if args.data_dir:  # an archive is extracted once for the whole sweep
        common += ["--data-dir", local_folder(args.data_dir)]
    common += args.extra
    def summary(name):
        with open(os.path.join(folder, f"{name}.json")) as f:
            final = json.load(f)["final"]
        valid = final.get("valid_accuracy", float("nan"))
        return ((f"validation accuracy {valid:.4f}, " if valid == valid else "")
                + f"test accuracy {final['test_accuracy']:.4f}, train loss "
                f"{final['train_loss']:.4f}")

    def sweep(runs):
        run_sweep(runs, lambda name, extra: ["-m", TRAIN, *common, *extra, "--out",
                                             os.path.join(folder, f"{name}.json")],
                  lambda name: os.path.join(folder, f"{name}.json"), summary, folder, h.ROOT,
                  parse=train.parse_args, before=train.BEFORE_IT_EXISTED)

    if args.suite == "protocol":
        # App. C.1, stage by stage: a grid, the choice on validation, the chosen one's seeds
        while pending := c1_runs(load_runs(args.out, args.profile), args.seeds):
            sweep(pending)
        return
    sweep(runs)


# -- report ------------------------------------------------------------------------------------

def load_runs(out, profile):
    folder = os.path.join(out, "cifar", "runs", profile)
    runs = {}
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json"):
                with open(os.path.join(folder, name)) as f:
                    runs[name[:-5]] = json.load(f)
    return runs


def mean_std(values):
    values = list(values)
    if not values or any(v != v for v in values):  # none, or one not measured (--no-train-eval)
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main_groups(runs):
    groups = {}
    for name, rec in runs.items():
        if name.startswith("main-"):
            groups.setdefault(rec["args"]["optimizer"], []).append(rec)
    return {opt: groups[opt] for opt in LABELS if opt in groups}


def plot_curves(groups, path, profile):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    # the training loss on the evaluated weights; without it (--no-train-eval), fit's running
    # loss during each epoch, on the fast weights
    evaluated = any(e["train_loss"] == e["train_loss"] for recs in groups.values()
                    for r in recs for e in r["epochs"])
    loss_key = "train_loss" if evaluated else "fit_loss"
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    for opt, recs in groups.items():
        epochs = [e["epoch"] for e in recs[0]["epochs"]]
        for ax, key, scale in ((ax_acc, "test_accuracy", 100), (ax_loss, loss_key, 1)):
            curves = np.array([[e[key] * scale for e in r["epochs"]] for r in recs])
            m, s = curves.mean(axis=0), curves.std(axis=0)
            line, = ax.plot(epochs, m, label=f"{LABELS[opt]} ({len(recs)} seeds)")
            ax.fill_between(epochs, m - s, m + s, color=line.get_color(), alpha=0.2)
    ax_acc.set_ylabel("test accuracy (%)")
    ax_loss.set_ylabel("training loss (evaluated weights)" if evaluated
                       else "training loss during the epoch (fast weights)")
    ax_loss.set_yscale("log")
    for ax in (ax_acc, ax_loss):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=8)
    fig.suptitle(f"CIFAR-10, {profile} profile: mean ± std over seeds (Lookahead: slow weights)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_robustness(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lrs, moms = ("0.1", "0.2", "0.3"), ("0.9", "0.95", "0.98")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, opt in zip(axes[:2], ("sgd", "lookahead-sgd")):
        grid = np.full((3, 3), np.nan)
        for i, lr in enumerate(lrs):
            for j, m in enumerate(moms):
                rec = runs.get(f"fig8-{opt}-lr{lr}-m{m}")
                if rec:
                    grid[i, j] = 100 * rec["final"]["test_accuracy"]
        im = ax.imshow(grid, cmap="viridis", vmin=np.nanmin(grid) if np.isfinite(grid).any()
                       else 0, vmax=np.nanmax(grid) if np.isfinite(grid).any() else 1)
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(3), moms)
        ax.set_yticks(range(3), lrs)
        ax.set_xlabel("momentum")
        ax.set_ylabel("learning rate")
        ax.set_title(f"{LABELS[opt]}: test accuracy (%)", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    ax = axes[2]
    for k in ("5", "10"):
        pts = [(float(a), 100 * runs[f"fig9-k{k}-a{a}"]["final"]["test_accuracy"])
               for a in ("0.5", "0.8") if f"fig9-k{k}-a{a}" in runs]
        if pts:
            ax.plot(*zip(*pts), "o-", label=f"k={k}")
    ax.set_xlabel("alpha")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Lookahead(SGD): k and alpha (Fig. 9)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def one_seed_table(title, column, runs, prefix):
    """A markdown section: one row per run, named without `prefix`."""
    lines = [f"## {title}", "", f"| {column} | test accuracy % | training loss |",
             "|---|---|---|"]
    for n, r in sorted(runs.items()):
        lines.append(f"| {n[len(prefix):]} | {100 * r['final']['test_accuracy']:.2f} | "
                     f"{r['final']['train_loss']:.4f} |")
    return lines + [""]


def _paired(groups):
    """Lookahead's change to each inner optimizer's test accuracy, seed by seed."""
    lines = []
    for inner, la in (("sgd", "lookahead-sgd"), ("adam", "lookahead-adam")):
        if inner not in groups or la not in groups:
            continue
        base = {r["args"]["seed"]: r["final"]["test_accuracy"] for r in groups[inner]}
        diffs = [100 * (r["final"]["test_accuracy"] - base[r["args"]["seed"]])
                 for r in groups[la] if r["args"]["seed"] in base]
        if diffs:
            m, s = mean_std(diffs)
            lines.append(f"- {LABELS[la]} − {LABELS[inner]}: {m:+.2f} ± {s:.2f} points "
                         f"({sum(d > 0 for d in diffs)} of {len(diffs)} seeds higher; per seed "
                         + ", ".join(f"{d:+.2f}" for d in diffs) + ")")
    if not lines:
        return []
    return ["Paired by seed (the same initial weights, data order and augmentation for each "
            "pair), the change Lookahead makes to the test accuracy:", ""] + lines + [""]


def _flattening(groups):
    """How much test accuracy still moved in each run's last epochs: those at the final rate,
    three at most."""
    recs = [r for g in groups.values() for r in g]
    n = min(len(r["epochs"]) for r in recs)
    decay = max(recs[0]["args"]["milestones"] or [0])
    last = min(n - max(decay, 1), 3)
    if last < 1:
        return []
    moves = [100 * (r["epochs"][n - 1]["test_accuracy"] - r["epochs"][n - 1 - last]
                    ["test_accuracy"]) for r in recs]
    return [f"From epoch {n - last} to epoch {n}"
            + (f" (the final rate from epoch {decay + 1} on)" if decay else "")
            + f", each run's test accuracy changed by {min(moves):+.2f} to {max(moves):+.2f} "
            "points.", ""]


def _config_text(config):
    names = {"lr": "lr", "wd": "decay", "k": "k", "alpha": "α"}
    return ", ".join(f"{names[d]} {config[d]}" for d in ("lr", "wd", "k", "alpha") if d in config)


def _protocol(runs, seeds):
    """App. C.1's protocol: (the report's lines, its .json summary)."""
    if not any(n.startswith("c1-") for n in runs):
        return [], {}
    chosen, grids = c1_search(runs)
    lines = ["## App. C.1's protocol: every method tuned, chosen on validation", "",
             "Each method runs its grid on seed 0; the configuration of best final validation "
             "accuracy (training images held out of training) is chosen, and runs "
             f"{seeds} seeds; test accuracy is read for the chosen configurations only. "
             "SGD's decay is L2 (gradient += decay × w); AdamW's is decoupled; Lookahead(SGD) "
             "resets the momentum at every sync (App. C.1). The grids, App. C.1's trimmed alike "
             "to fit two CPU cores:", "",
             "| method | dimension | ours | the paper's |", "|---|---|---|---|"]
    for opt, dims in C1_GRIDS.items():
        base = f" (at {C1_LABELS[C1_FROM[opt][0]]}'s chosen " + \
            " and ".join(C1_FROM[opt][1]) + ")" if opt in C1_FROM else ""
        for dim, values, paper in dims:
            lines.append(f"| {C1_LABELS[opt]}{base} | {dim} | {', '.join(values)} | {paper} |")
    lines.append("")
    pending = c1_runs(runs, seeds)
    if pending:
        lines += [f"**Not finished**: the sweep's next stage has {len(pending)} run"
                  f"{'s' if len(pending) > 1 else ''} to go ({', '.join(n for n, _ in pending)}); "
                  "later stages wait for its choices.", ""]
    for opt, points in grids.items():
        lines += [f"### {C1_LABELS[opt]}: validation accuracy %, seed 0", "",
                  "| configuration | validation accuracy % |", "|---|---|"]
        for config, r in points:
            mark = " **chosen**" if chosen.get(opt) == config else ""
            cell = (f"{100 * r['final']['valid_accuracy']:.2f}{mark}" if r else "not run yet")
            lines.append(f"| {_config_text(config)} | {cell} |")
        if opt in chosen:
            ends = [dim for dim, values, _ in C1_GRIDS[opt] if len(values) > 1
                    and chosen[opt][dim] in (values[0], values[-1])]
            if ends:
                lines += ["", "The choice lies at an edge of the grid in " + ", ".join(ends)
                          + ": a value beyond it was not tried."]
        lines.append("")
    summary, results = {}, {}
    for opt, config in chosen.items():
        recs = [runs.get(c1_run(opt, config, s)[0]) for s in range(seeds)]
        results[opt] = recs
        done = [r for r in recs if r]
        acc = mean_std(100 * r["final"]["test_accuracy"] for r in done)
        summary[opt] = {"config": config, "seeds": len(done),
                        "test_accuracy": [100 * r["final"]["test_accuracy"] for r in done],
                        "test_accuracy_mean": acc[0], "test_accuracy_std": acc[1]}
    if results:
        lines += ["### The chosen configurations, on the test set", "",
                  "| method | configuration | seeds | test accuracy % (mean ± std) | per seed | "
                  "paper, Table 1 (CIFAR-10, 200 epochs) |", "|---|---|---|---|---|---|"]
        for opt in results:
            s = summary[opt]
            lines.append(f"| {C1_LABELS[opt]} | {_config_text(s['config'])} | {s['seeds']} | "
                         f"{s['test_accuracy_mean']:.2f} ± {s['test_accuracy_std']:.2f} | "
                         + ", ".join(f"{a:.2f}" for a in s["test_accuracy"])
                         + f" | {C1_PAPER[opt]} |")
        lines += ["", "Paired by seed (the same initial weights, data order and augmentation):",
                  ""]
        for a, b in C1_PAIRS:
            if a not in results or b not in results:
                continue
            diffs = [100 * (x["final"]["test_accuracy"] - y["final"]["test_accuracy"])
                     for x, y in zip(results[a], results[b]) if x and y]
            if diffs:
                m, sd = mean_std(diffs)
                lines.append(f"- {C1_LABELS[a]} − {C1_LABELS[b]}: {m:+.2f} ± {sd:.2f} points "
                             f"({sum(d > 0 for d in diffs)} of {len(diffs)} seeds higher; per "
                             "seed " + ", ".join(f"{d:+.2f}" for d in diffs) + ")")
                summary[f"{a} - {b}"] = diffs
        lines.append("")
    return lines, summary


def write_report(args):
    name = REPORT_NAMES.get(args.profile, "cifar")
    runs = load_runs(args.out, args.profile)
    if not runs:
        raise SystemExit(f"no finished runs under {args.out}/cifar/runs/{args.profile}")
    groups = main_groups(runs)
    first = next(iter(runs.values()))
    a = first["args"]
    lines = h.header(f"CIFAR-10, profile {args.profile}: Lookahead against SGD and Adam",
                     h.command_line(), h.machine(),
                     source=f"the run records in `cifar/runs/{args.profile}/`") + \
        h.machines_line(runs.values()) + [
             f"**Profile `{args.profile}`** — not the paper's setup unless it says `paper`: "
             f"ResNet-18 (Cutout-repository variant) at width {a['width']}, "
             f"{first['train_images']:,} training images"
             f"{' (a subset)' if a['limit'] else ''}, {a['epochs']} epochs, batch "
             f"{a['batch_size']}, learning rate x{a['lr_decay']} at epochs "
             f"{', '.join(map(str, a['milestones']))}, L2 {a['weight_decay']}, "
             f"{first['params']:,} parameters; test set of "
             f"{a['test_limit'] or 'all'} images. Augmentation: 4-pixel padding, random crop, "
             "flip. Every number is evaluated on the weights the method reports (Lookahead: "
             "the slow weights; App. C.1).", "",
             f"Per-run records (every epoch) are in `cifar/runs/{args.profile}/`; "
             f"`{name}.json` has the final numbers.", ""]
    protocol, protocol_summary = _protocol(runs, args.seeds)
    lines += protocol
    summary = {}
    if groups:
        main = [n for n, _ in runs_for("main", args.seeds, args.all_optimizers)]
        lines += ["## Main comparison", ""] + partial_sweep(main, runs, args.seeds)[1] + [
                  "| optimizer | lr | seeds | test accuracy % (mean ± std) | per seed | "
                  "training loss | minutes per run: training, whole run |",
                  "|---|---|---|---|---|---|---|"]
        for opt, recs in groups.items():
            recs.sort(key=lambda r: r["args"]["seed"])
            acc = mean_std(100 * r["final"]["test_accuracy"] for r in recs)
            loss = mean_std(r["final"]["train_loss"] for r in recs)
            mins = statistics.mean(sum(e["seconds"] for e in r["epochs"]) / 60 for r in recs)
            walls = [r["wall_seconds"] / 60 for r in recs if "wall_seconds" in r]
            wall = (f"{statistics.mean(walls):.1f}" + (f" ({len(walls)} of {len(recs)} runs "
                    "recorded it)" if len(walls) < len(recs) else "")) if walls else "–"
            summary[opt] = {"test_accuracy_mean": acc[0], "test_accuracy_std": acc[1],
                            "train_loss_mean": loss[0], "train_loss_std": loss[1],
                            "seeds": len(recs),
                            "test_accuracy": [100 * r["final"]["test_accuracy"] for r in recs]}
            extra = (f", k={recs[0]['args']['k']}, α={recs[0]['args']['alpha']}"
                     if opt.startswith("lookahead") else "")
            per_seed = ", ".join(f"{100 * r['final']['test_accuracy']:.2f}" for r in recs)
            lines.append(f"| {LABELS[opt]}{extra} | {recs[0]['args']['lr']} | {len(recs)} | "
                         f"{acc[0]:.2f} ± {acc[1]:.2f} | {per_seed} | "
                         + (f"{loss[0]:.4f} ± {loss[1]:.4f}" if loss[0] == loss[0]
                            else "not evaluated") + f" | {mins:.1f}, {wall} |")
        lines += ["", "Training minutes leave out the evaluations after every epoch; the whole "
                  "run's are its process's, from the harness's import to its record.", ""]
        lines += _paired(groups) + _flattening(groups)
        lines += [f"![curves]({name}_curves.png)", ""]
        plot_curves(groups, os.path.join(args.out, f"{name}_curves.png"), args.profile)
    fig8 = {n: r for n, r in runs.items() if n.startswith(("fig8-", "fig9-"))}
    if fig8:
        lines += one_seed_table("Robustness (Figs. 8 and 9), one seed each", "run", fig8, "")
        lines += [f"![robustness]({name}_robustness.png)", ""]
        plot_robustness(runs, os.path.join(args.out, f"{name}_robustness.png"))
    states = {n: r for n, r in runs.items() if n.startswith("state-")}
    if states:
        lines += one_seed_table("Inner optimizer state at a sync (App. C.5), Lookahead(SGD), "
                                "one seed", "inner_state", states, "state-")
    lines += ["## Published numbers, for reading beside ours", "",
              "Full CIFAR at 200 epochs on accelerators; not comparable in absolute terms with "
              "a reduced profile, only in the ordering and the size of the gaps.", "",
              "| source | SGD | Polyak | Adam | Lookahead |", "|---|---|---|---|---|"]
    for source, numbers in PUBLISHED:
        lines.append(f"| {source} | " + " | ".join(
            numbers.get(c, "–") for c in ("SGD", "Polyak", "Adam", "Lookahead")) + " |")
    lines.append("")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{name}.md"), "w") as f:
        f.write("\n".join(lines))
    h.write_json(os.path.join(args.out, f"{name}.json"), {
        "profile": args.profile, "summary": summary, "protocol": protocol_summary,
        "protocol_seeds": args.seeds,
        "runs": {n: {"args": r["args"], "final": r["final"]} for n, r in runs.items()}})
    h.progress(f"wrote {os.path.join(args.out, name + '.md')}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=("cpu", "cpu-long", "paper", "tiny"))
    p.add_argument("--suite", default="main", choices=("main", "robustness", "inner-state",
                                                       "all", "protocol"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--all-optimizers", action="store_true",
                   help="main suite: add polyak-sgd and adamw")
    add_common_arguments(p, "benchmarks/cifar/train.py")
    sweep_main(p, argv, run_all, write_report)

if __name__ == "__main__":
    main()
