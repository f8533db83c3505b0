"""The paper's Penn Treebank comparison (Sec. 4.3, Table 3, Fig. 7) as sweeps of
benchmarks/lm/train.py: perplexity mean ± std over seeds, the published numbers beside ours,
and training and validation curves.

Each run is one process of benchmarks/lm/train.py with its own folder under
benchmarks/results/lm/runs/<profile>/; a run whose record.json holds a test perplexity is not
redone, and one stopped part-way is resumed from its last epoch. The report is rewritten from
every record present: for the cpu-long profile (PTB, trained to a plateau: the results the
README quotes) benchmarks/results/lm.md with lm_curves.png and lm.json; for another profile
lm_<profile>.md and so on (lm_cpu.md: the cpu profile's short runs).

    python -m benchmarks.lm.run --data-dir ../shared/data/multi30k    # CPU profile, 3 seeds
    python -m benchmarks.lm.run --suite lr-grid --data-dir ../shared/data/multi30k
    python -m benchmarks.lm.run --profile paper --data-dir PTB --suite all   # an accelerator
    python -m benchmarks.lm.run --report                                # only rewrite the report

Suites:
- main: SGD, Lookahead(SGD) and Polyak-averaged SGD at SGD's rate; Adam and Lookahead(Adam) at
  each of --adam-lrs (default 0.01, the best of the cpu profile's Adam grid, which is also the
  rate at which the Southampton reproduction saw Lookahead help, and 0.003); --seeds seeds each.
- lr-grid: SGD's and Adam's learning rates, one seed each (seed 0; the main suite's seed-0
  runs count as grid points);
- k-alpha: Lookahead around SGD's rate and the first of --adam-lrs at k in {5, 10, 20} and alpha in
  {0.2, 0.5, 0.8}, one seed each; on cpu-long, App. C.3's protocol: each Lookahead at its inner
  optimizer's chosen rate over k x alpha, chosen by validation, then --seeds seeds;
- outer (cpu-long): SNOO, Lookahead(Adam) with outer momentum, at Adam's chosen rate over a small
  grid of k and mu around the published settings, chosen by validation, then --seeds seeds,
  beside Adam (decoupled weight decay: AdamW's form) and the protocol's Lookahead(Adam);
- all: every suite.
The grids are the paper's (App. C.3, as our issue tracker gives them) for the paper profile;
the cpu profile takes a few points of each.
"""

import argparse
import json
import math
import os
import statistics

from benchmarks import _harness as h
from benchmarks._sweep import add_common_arguments, load_run_records, partial_sweep, run_sweep
from benchmarks._sweep import main as sweep_main
from benchmarks.lm import train

TRAIN = "benchmarks.lm.train"
LABELS = {"sgd": "SGD", "lookahead-sgd": "Lookahead(SGD)", "polyak-sgd": "Polyak(SGD)",
          "adam": "Adam", "lookahead-adam": "Lookahead(Adam)"}
SGD_LR = "30"  # AWD-LSTM's rate, which the paper keeps for SGD
# (profile: (SGD grid, Adam grid, k grid, alpha grid)); the paper's are App. C.3's (Adam's grid
# includes 0.005). cpu-long's k × α grid is the paper's 2 × 2 subset, where App. C.3 found the
# best settings ("α 0.5 or 0.8 and k 5 or 10"): the full 3 × 3 would take 16 runs of ~20 minutes
# on 2 cores, the subset 6.
GRIDS = {
    "paper": (("50", "30", "10", "5", "2.5", "1", "0.1"),
              ("0.1", "0.03", "0.01", "0.005", "0.003", "0.001", "0.0003", "0.0001"),
              ("5", "10", "20"), ("0.2", "0.5", "0.8")),
    "cpu": (("10", "30"), ("0.001", "0.003", "0.01", "0.03"), ("5", "10", "20"), ("0.5", "0.8")),
    "cpu-long": (("10", "30"), ("0.001", "0.003", "0.005", "0.01"), ("5", "10"), ("0.5", "0.8")),
}
# Profiles whose main comparison runs each optimizer at its own best rate: the grid covers all
# five optimizers on seed 0 (each the grid of its inner optimizer), grown by the paper's next
# rate while an optimizer's best lies at an end of what it tried (grid_search), and the rate
# with the best validation perplexity there is the one the other seeds run.
BEST_RATES = ("cpu-long",)
# Published test perplexities of LSTM language models on PTB, to place our SGD baseline:
# (model, parameters, test perplexity). Zaremba et al. 2014 (SGD, no dropout / dropout) and
# Merity et al. 2018 (AWD-LSTM, NT-ASGD, before fine-tuning and the cache: 58.8; with
# fine-tuning 57.3).
ANCHORS = [("Zaremba et al. 2014, 2 × 200 LSTM, no dropout", "5M", 114.5),
           ("Zaremba et al. 2014, 2 × 650 LSTM, dropout", "20M", 82.7),
           ("Merity et al. 2018, AWD-LSTM 3 × 1150, fine-tuned", "24M", 57.3)]

# Published test perplexities on Penn Treebank, for reading beside ours (never mixed into them).
# Zhang et al. 2019, Table 3: AWD-LSTM (3 x 1150) on PTB, the paper's tuned rates.
PAPER = {"sgd": "63.90", "lookahead-sgd": "63.04", "adam": "59.33", "lookahead-adam": "57.72",
         "polyak-sgd": "58.79"}
# An independent reproduction of the experiment (Joyce, Kazantzidis & Romano-Scott,
# "Reproducibility challenge: LA optimizer", University of Southampton: the same model and data;
# its report lists test perplexities per optimizer and rate), as its table gives them.
REPRODUCTION_SOURCE = ("Joyce, Kazantzidis & Romano-Scott, *Reproducibility challenge: LA "
                       "optimizer* (Southampton)")
REPRODUCTION = [("SGD, lr 30", "63.96", "64.59"), ("Adam, lr 0.005 (its best for Adam)", "61.14",
                                                   "60.63"),
                ("Adam, lr 0.01", "63.44", "60.92")]


def _run(opt, lr, seed):
    return (f"{opt}-lr{lr}-s{seed}", ["--optimizer", opt, "--lr", lr, "--seed", str(seed)])


def _la_run(opt, lr, k, alpha, seed):
    """A Lookahead run at k, α (strings); at the main suite's k=5, α=0.5 it is that run."""
    if (k, alpha) == ("5", "0.5"):
        return _run(opt, lr, seed)
    return (f"{opt}-lr{lr}-k{k}-a{alpha}-s{seed}",
            ["--optimizer", opt, "--lr", lr, "--k", k, "--alpha", alpha, "--seed", str(seed)])


def runs_for(args, best=None):
    """(name, extra arguments) of every run of the chosen suites.

    On a profile of BEST_RATES the main suite needs `best` ({optimizer: its best rate on the
    grid, as a string}); without it, the main suite is the grid it chooses from."""
    sgd_grid, adam_grid, ks, alphas = GRIDS[args.profile]
    adam_lrs = args.adam_lrs.split(",")
    picks = args.profile in BEST_RATES
    grid_opts = (("sgd", sgd_grid), ("lookahead-sgd", sgd_grid), ("polyak-sgd", sgd_grid),
                 ("adam", adam_grid), ("lookahead-adam", adam_grid)) if picks else (
                     ("sgd", sgd_grid), ("adam", adam_grid))
    grid = [_run(opt, lr, 0) for opt, rates in grid_opts for lr in rates]
    runs = []
    if args.suite in ("main", "all"):
        if picks and best is None:
            runs += grid
        elif picks:
            runs += [_run(opt, best[opt], seed) for seed in range(args.seeds)
                     for opt in LABELS if opt in best]
        else:
            configs = [("sgd", SGD_LR), ("lookahead-sgd", SGD_LR), ("polyak-sgd", SGD_LR)]
            for lr in adam_lrs:
                configs += [("adam", lr), ("lookahead-adam", lr)]
            runs += [_run(opt, lr, seed) for seed in range(args.seeds) for opt, lr in configs]
    if args.suite in ("lr-grid", "all"):
        runs += grid
    if args.suite in ("k-alpha", "all"):
        if not picks:
            runs += [_la_run(opt, lr, k, alpha, 0)
                     for opt, lr in (("lookahead-sgd", SGD_LR), ("lookahead-adam", adam_lrs[0]))
                     for k in ks for alpha in alphas if (k, alpha) != ("5", "0.5")]
        elif best is None:  # the grid first: its best rates are the ones the k × α grid takes
            runs += grid
    seen = set()
    return [r for r in runs if not (r[0] in seen or seen.add(r[0]))]


def folder_of(args):
    return os.path.join(args.out, "lm", "runs", args.profile)


def _finished(path):
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return "test_ppl" in json.load(f)


def run_all(args):
    folder = folder_of(args)
    common = ["--profile", args.profile, "--verbose", "2"]
    if args.data_dir:
        common += ["--data-dir", args.data_dir]
    common += args.extra

    def record(name):
        return os.path.join(folder, name, "record.json")

    def command(name, extra):
        # a run stopped part-way (its record written, no test perplexity yet) continues
        resume = ["--resume"] if os.path.exists(record(name)) else []
        return ["-m", TRAIN, *common, *extra, "--run-dir", os.path.join(folder, name), *resume]

    def summary(name):
        with open(record(name)) as f:
            r = json.load(f)
        return (f"test perplexity {r['test_ppl']:.2f} (best epoch {r['best_epoch']}, "
                f"validation {r['valid_ppl']:.2f})")

    def sweep(runs):
        run_sweep(runs, command, record, summary, folder, h.ROOT, parse=train.parse_args,
                  before=train.BEFORE_IT_EXISTED, done=_finished)

    if args.profile not in BEST_RATES:
        sweep(runs_for(args))
        return
    # the grid search on seed 0, step by step (a best rate at an end adds the rate beyond)
    while pending := grid_runs(args, load_records(args)):
        sweep(pending)
    best = {opt: f"{lr:g}" for opt, lr in best_rates(args, load_records(args)).items()}
    if args.suite in ("k-alpha", "all"):
        # App. C.3: each Lookahead at its inner optimizer's chosen rate over k × α, then the
        # seeds of the chosen setting and of its inner optimizer
        while pending := k_alpha_runs(args, load_records(args)):
            sweep(pending)
    if args.suite in ("outer", "all"):
        # SNOO at Adam's chosen rate: its grid, then the seeds of its choice
        while pending := outer_runs(args, load_records(args)):
            sweep(pending)
    if args.suite in ("main", "all"):
        # the other seeds at each optimizer's own best rate
        sweep(runs_for(args, best))


def k_alpha_search(args, records, la):
    """(the k × α runs on seed 0 still to do for Lookahead `la`, at its inner optimizer's
    chosen rate; the chosen (k, α) as strings, or None until the grid is done), App. C.3: the
    setting of the best validation perplexity (ties: the grid's first). Nothing (and None)
    while the inner optimizer's rate is not chosen yet."""
    inner = la.split("-", 1)[1]
    rate = grid_search(args, records, inner)[1]
    if rate is None:
        return [], None
    ks, alphas = GRIDS[args.profile][2:]
    grid = [(k, alpha) for k in ks for alpha in alphas]
    found = {(k, alpha): r for r in records.values() for k, alpha in grid
             if _config(r) == (la, float(rate), int(k), float(alpha))
             and r["args"]["seed"] == 0}
    pending = [_la_run(la, rate, k, alpha, 0) for k, alpha in grid if (k, alpha) not in found]
    if pending:
        return pending, None
    return [], min(grid, key=lambda c: found[c]["valid_ppl"])


def k_alpha_runs(args, records):
    """The runs App. C.3's protocol needs next: the k × α grid of each Lookahead at its inner
    optimizer's chosen rate on seed 0, then every seed of the chosen setting and of the inner
    optimizer at its rate."""
    pending = []
    for la in ("lookahead-sgd", "lookahead-adam"):
        todo, chosen = k_alpha_search(args, records, la)
        pending += todo
        if chosen is None:
            continue
        inner = la.split("-", 1)[1]
        rate = grid_search(args, records, inner)[1]
        for seed in range(1, args.seeds):
            pending += [_run(inner, rate, seed), _la_run(la, rate, *chosen, seed)]
    seen = set()
    return [r for r in pending if r[0] not in records and not (r[0] in seen or seen.add(r[0]))]


def _ladder(args, opt):
    """(the rates a grid search may reach, ascending; the grid it starts from) for `opt`: the
    profile's grid and the paper's (App. C.3) together, so that a best rate at an end of the
    small grid is checked against the paper's next rate beyond it."""
    family = 0 if opt.endswith("sgd") else 1
    start = GRIDS[args.profile][family]
    return sorted(set(start) | set(GRIDS["paper"][family]), key=float), start


def grid_search(args, records, opt):
    """(the rates `opt` still has to run on seed 0 at k=5, α=0.5; its best rate or None).

    The search starts from the profile's grid; while the best validation perplexity of the
    rates tried (ties: the lower rate) lies at the lowest or highest of them and the ladder
    (_ladder) has a rate beyond, that rate is tried too. The best is known once nothing is left
    to run."""
    ladder, tried = _ladder(args, opt)
    tried = list(tried)
    found = {lr: r for r in records.values() for lr in ladder
             if _config(r) == (opt, float(lr), 5, 0.5) and r["args"]["seed"] == 0}
    while True:
        pending = [lr for lr in tried if lr not in found]
        if pending:
            return pending, None
        best = min(tried, key=lambda lr: (found[lr]["valid_ppl"], float(lr)))
        at = ladder.index(best)
        rates = sorted(tried, key=float)
        if best == rates[0] and at > 0:
            tried.append(ladder[at - 1])
        elif best == rates[-1] and at < len(ladder) - 1:
            tried.append(ladder[at + 1])
        else:
            return [], best


def grid_runs(args, records):
    """(name, extra arguments) of the seed-0 grid runs the search (grid_search) needs next."""
    return [_run(opt, lr, 0) for opt in LABELS for lr in grid_search(args, records, opt)[0]]


def best_rates(args, records):
    """{optimizer: the rate of its best validation perplexity on seed 0 (k=5, α=0.5)}, for the
    optimizers whose grid search (grid_search) has finished."""
    best = {}
    for opt in LABELS:
        rate = grid_search(args, records, opt)[1]
        if rate is not None:
            best[opt] = float(rate)
    return best


def _grid_ends(args, records):
    """A line naming each optimizer whose best rate is the lowest or highest the search may
    try (the paper's grid's end): a rate beyond it was not tried, so the best there is only the
    best of what was."""
    if args.profile not in BEST_RATES:
        return []
    ends = []
    for opt, lr in best_rates(args, records).items():
        rates = [float(r) for r in _ladder(args, opt)[0]]
        if lr in (rates[0], rates[-1]):
            ends.append(f"{LABELS[opt]} {lr:g} ({'lowest' if lr == rates[0] else 'highest'})")
    if not ends:
        return []
    return [f"Best rates at an end of the paper's grid, where a rate beyond was not tried: "
            f"{', '.join(ends)}.", ""]


# -- report ------------------------------------------------------------------------------------

def load_records(args):
    return load_run_records(folder_of(args), _finished)


def _config(r):
    a = r["args"]
    return (a["optimizer"], a["lr"], a["k"], a["alpha"])


def _mean_std(values):
    values = list(values)
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _label(opt, lr, k=None, alpha=None):
    extra = f", k={k}, α={alpha}" if opt.startswith("lookahead") and k is not None else ""
    return f"{LABELS[opt]} lr {lr:g}{extra}"


def main_configs(args, records):
    """The main suite's (optimizer, lr, k, alpha), in its order."""
    if args.profile in BEST_RATES:
        configs = list(best_rates(args, records).items())
    else:
        configs = [(opt, float(SGD_LR)) for opt in ("sgd", "lookahead-sgd", "polyak-sgd")]
        for lr in args.adam_lrs.split(","):
            configs += [("adam", float(lr)), ("lookahead-adam", float(lr))]
    return [(opt, lr, 5, 0.5) for opt, lr in configs]


def main_groups(args, records):
    """{config: [records by seed]} of the main suite's configurations that have records."""
    groups = {c: [] for c in main_configs(args, records)}
    for r in records.values():
        if _config(r) in groups:
            groups[_config(r)].append(r)
    return {c: sorted(rs, key=lambda r: r["args"]["seed"]) for c, rs in groups.items() if rs}


def plot_curves(groups, path, source):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_train, ax_valid) = plt.subplots(1, 2, figsize=(11, 4))
    # one colour per inner optimizer and rate: the inner dashed, its Lookahead solid, Polyak dotted
    families = list(dict.fromkeys((opt.split("-")[-1], lr) for opt, lr, _, _ in groups))
    styles = {"sgd": "--", "adam": "--", "polyak-sgd": ":"}
    for (opt, lr, _, _), recs in groups.items():
        colour = f"C{families.index((opt.split('-')[-1], lr))}"
        steps = np.cumsum([e["windows"] for e in recs[0]["epochs"]])
        for ax, key in ((ax_train, "loss"), (ax_valid, "valid_ppl")):
            curves = np.array([[math.exp(e[key]) if key == "loss" else e[key]
                                for e in r["epochs"]] for r in recs])
            m, s = curves.mean(axis=0), curves.std(axis=0)
            line, = ax.plot(steps, m, styles.get(opt, "-"), marker="o", ms=3, color=colour,
                            label=f"{_label(opt, lr)} ({len(recs)} seeds)")
            ax.fill_between(steps, m - s, m + s, color=line.get_color(), alpha=0.15)
    ax_train.set_ylabel("training perplexity (fast weights, dropout on)")
    ax_valid.set_ylabel("validation perplexity (evaluated weights)")
    for ax in (ax_train, ax_valid):
        ax.set_xlabel("inner steps")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    ax_valid.legend(fontsize=7)
    fig.suptitle(f"{source}: mean ± std over seeds, per epoch (as Fig. 7a)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _missing(args, records):
    """(how many of the main comparison's runs have no finished record yet, the report's line
    naming them)."""
    main = argparse.Namespace(**{**vars(args), "suite": "main"})
    best = None
    if args.profile in BEST_RATES:
        found = best_rates(args, records)
        best = {opt: f"{lr:g}" for opt, lr in found.items()} if len(found) == len(LABELS) else None
    later = None
    if best is None and args.profile in BEST_RATES:
        names = [n for n, _ in grid_runs(args, records)]
        if args.seeds > 1:
            seeds = "seed 1" if args.seeds == 2 else f"seeds 1–{args.seeds - 1}"
            later = (len(LABELS) * (args.seeds - 1),
                     f"{seeds} of each optimizer at the rate the grid search picks (and any "
                     "rate the search adds beyond the grid's end where a best rate lies)")
    else:
        names = [n for n, _ in runs_for(main, best)]
    return partial_sweep(names, records, args.seeds, later)


def _protocol(args, records):
    """App. C.3's protocol on a profile of BEST_RATES: (the report's lines, {Lookahead: its
    summary}, how many of its runs are not finished). Test perplexities only for the chosen
    settings; the k × α grid is read on validation."""
    if args.profile not in BEST_RATES:
        return [], {}, 0
    ks, alphas = GRIDS[args.profile][2:]
    subset = "the paper's 2 × 2 subset" if (ks, alphas) == (("5", "10"), ("0.5", "0.8")) \
        else "a grid"
    lines = ["## App. C.3's protocol: Lookahead at its inner optimizer's chosen rate", "",
             "As the paper tunes it: each Lookahead runs at the rate its inner optimizer chose "
             "(best validation perplexity on seed 0, above) over k ∈ {" + ", ".join(ks)
             + "} × α ∈ {" + ", ".join(alphas) + f"}} ({subset} of App. C.3's k {{5, 10, 20}} × "
             "α {0.2, 0.5, 0.8}: \"α 0.5 or 0.8 and k 5 or 10 worked best\"); the setting of "
             "best validation perplexity on seed 0 is chosen (ties: the first listed), and it "
             f"and its inner optimizer then run {args.seeds} seeds. Inner state maintained, as "
             "the paper's language models ran. Test perplexity is read only for the chosen "
             "settings.", ""]
    summary, missing, rows, table, pairs = {}, 0, [], [], []
    for la in ("lookahead-sgd", "lookahead-adam"):
        inner = la.split("-", 1)[1]
        rate = grid_search(args, records, inner)[1]
        todo, chosen = k_alpha_search(args, records, la)
        if rate is None:
            missing += len(ks) * len(alphas) + 2 * (args.seeds - 1)
            continue
        missing += len(todo) + (2 * (args.seeds - 1) if chosen is None else 0)
        for k in ks:
            for alpha in alphas:
                name = _la_run(la, rate, k, alpha, 0)[0]
                r = records.get(name)
                cell = f"{r['valid_ppl']:.2f}" if r else "not run yet"
                mark = " **chosen**" if chosen == (k, alpha) else ""
                rows.append(f"| {LABELS[la]} | {rate} | {k} | {alpha} | {cell}{mark} |")
        if chosen is None:
            continue
        seeds = range(args.seeds)
        base = [records.get(_run(inner, rate, s)[0]) for s in seeds]
        ours = [records.get(_la_run(la, rate, *chosen, s)[0]) for s in seeds]
        missing += sum(r is None for r in base + ours)
        done = [(b, o) for b, o in zip(base, ours) if b and o]
        for opt, recs, label in ((inner, base, _label(inner, float(rate))),
                                 (la, ours, _label(la, float(rate), *chosen))):
            recs = [r for r in recs if r]
            if not recs:
                continue
            test = _mean_std(r["test_ppl"] for r in recs)
            table.append(f"| {label} | {len(recs)} | {test[0]:.2f} ± {test[1]:.2f} | "
                         + ", ".join(f"{r['test_ppl']:.2f}" for r in recs) + " | "
                         f"{_mean_std(r['valid_ppl'] for r in recs)[0]:.2f} | {PAPER[opt]} |")
        diffs = [o["test_ppl"] - b["test_ppl"] for b, o in done]
        if diffs:
            m, sd = _mean_std(diffs)
            pairs.append(f"- Paired by seed, {LABELS[la]} − {LABELS[inner]} at lr {rate}: "
                         f"**{m:+.2f} ± {sd:.2f}** ({sum(d < 0 for d in diffs)} of "
                         f"{len(diffs)} seeds lower; per seed "
                         + ", ".join(f"{d:+.2f}" for d in diffs) + ")")
            summary[la] = {"lr": float(rate), "k": int(chosen[0]), "alpha": float(chosen[1]),
                           "seeds": len(diffs), "test_ppl": [o["test_ppl"] for _, o in done],
                           "inner_test_ppl": [b["test_ppl"] for b, _ in done],
                           "difference_mean": m, "difference_std": sd}
    lines += ["| Lookahead | rate | k | α | validation perplexity, seed 0 |",
              "|---|---|---|---|---|", *rows, ""]
    if missing:
        lines += [f"**Not finished**: {missing} run{'s' if missing > 1 else ''} of this "
                  "protocol (the k × α grid, then the seeds of the chosen settings).", ""]
    if table:
        lines += ["| optimizer | seeds | test perplexity (mean ± std) | per seed | validation "
                  "| paper, PTB (Table 3) |", "|---|---|---|---|---|---|", *table, ""]
    if pairs:
        lines += ["The change Lookahead makes to the test perplexity (the same initial weights "
                  "and data order in each pair):", "", *pairs, ""]
    return lines, summary, missing


# The outer-momentum (SNOO) grid on cpu-long: k x outer rate x mu at Adam's chosen rate. SNOO's
# settings seen in use: k 28, rate 0.68, mu 0.37 (the nanoGPT speed-run record), and about k 100,
# rate 0.8, mu 0.75 quoted for its runs at scale; an epoch of PTB here is 664 steps.
OUTER_GRID = {"cpu-long": (("20", "100"), ("0.8",), ("0.5", "0.75"))}
# SNOO's claim, for reading beside ours (Kallusky et al. 2025, abstract)
OUTER_CLAIM = ("SNOO reports compute-factor gains of 1.5–2.5× over AdamW at scales up to 1e23 "
               "training FLOPs, growing with model size (language models far larger than ours, "
               "trained on far more tokens)")


def _outer_run(lr, k, rate, mu, seed):
    return (f"snoo-adam-lr{lr}-k{k}-a{rate}-m{mu}-s{seed}",
            ["--optimizer", "snoo-adam", "--lr", lr, "--k", k, "--alpha", rate,
             "--slow-momentum", mu, "--seed", str(seed)])


def outer_search(args, records):
    """(the SNOO grid runs on seed 0 still to do, at Adam's chosen rate; the chosen (k, rate,
    mu) as strings, or None until the grid is done; Adam's rate or None). Chosen by validation
    perplexity (ties: the first listed)."""
    rate = grid_search(args, records, "adam")[1]
    if rate is None or args.profile not in OUTER_GRID:
        return [], None, rate
    grid = [(k, a, m) for k in OUTER_GRID[args.profile][0] for a in OUTER_GRID[args.profile][1]
            for m in OUTER_GRID[args.profile][2]]
    names = {c: _outer_run(rate, *c, 0)[0] for c in grid}
    pending = [_outer_run(rate, *c, 0) for c in grid if names[c] not in records]
    if pending:
        return pending, None, rate
    return [], min(grid, key=lambda c: records[names[c]]["valid_ppl"]), rate


def outer_runs(args, records):
    """The runs the outer-momentum comparison needs next: its grid, then every seed of the
    chosen setting (Adam's seeds and the protocol's Lookahead(Adam) are the k-alpha suite's)."""
    todo, chosen, rate = outer_search(args, records)
    if chosen is not None:
        todo = [_outer_run(rate, *chosen, s) for s in range(1, args.seeds)]
    return [r for r in todo if r[0] not in records]


def _outer(args, records, out, source):
    """The report's outer-momentum section: (lines, summary for the .json)."""
    todo, chosen, rate = outer_search(args, records)
    if rate is None or args.profile not in OUTER_GRID:
        return [], {}
    ks, rates, mus = OUTER_GRID[args.profile]
    lines = ["## Outer momentum (SNOO) beside Lookahead and Adam", "",
             "Adam here is AdamW's form (Keras's weight decay is decoupled). SNOO(Adam) is "
             "Lookahead(Adam) with Nesterov momentum on the slow weights' step, at Adam's chosen "
             f"rate {rate}, its k × outer rate × μ over {{{', '.join(ks)}}} × "
             f"{{{', '.join(rates)}}} × {{{', '.join(mus)}}}, chosen by validation perplexity "
             "on seed 0; Lookahead(Adam) is App. C.3's choice above. "
             f"{OUTER_CLAIM}; we measure test perplexity at a fixed budget of "
             f"{first_arg(records, 'epochs')} epochs, {args.seeds} seeds.", "",
             "| k | outer rate | μ | validation perplexity, seed 0 |", "|---|---|---|---|"]
    for k in ks:
        for a in rates:
            for m in mus:
                r = records.get(_outer_run(rate, k, a, m, 0)[0])
                mark = " **chosen**" if chosen == (k, a, m) else ""
                lines.append(f"| {k} | {a} | {m} | "
                             + (f"{r['valid_ppl']:.2f}{mark}" if r else "not run yet") + " |")
    lines.append("")
    if chosen is None:
        return lines + [f"**Not finished**: {len(todo)} grid runs, then the seeds.", ""], {}
    la_chosen = k_alpha_search(args, records, "lookahead-adam")[1]
    arms = {"Adam": [records.get(_run("adam", rate, s)[0]) for s in range(args.seeds)],
            "SNOO(Adam), k={}, outer rate {}, μ {}".format(*chosen):
                [records.get(_outer_run(rate, *chosen, s)[0]) for s in range(args.seeds)]}
    if la_chosen:
        arms = {"Adam": arms["Adam"],
                f"Lookahead(Adam), k={la_chosen[0]}, α={la_chosen[1]}":
                    [records.get(_la_run("lookahead-adam", rate, *la_chosen, s)[0])
                     for s in range(args.seeds)],
                **{k: v for k, v in arms.items() if k != "Adam"}}
    missing = sum(r is None for recs in arms.values() for r in recs)
    lines += ["| optimizer | seeds | test perplexity (mean ± std) | per seed |",
              "|---|---|---|---|"]
    for label, recs in arms.items():
        done = [r for r in recs if r]
        if done:
            m, sd = _mean_std(r["test_ppl"] for r in done)
            lines.append(f"| {label} at lr {rate} | {len(done)} | {m:.2f} ± {sd:.2f} | "
                         + ", ".join(f"{r['test_ppl']:.2f}" for r in done) + " |")
    lines.append("")
    if missing:
        lines += [f"**Not finished**: {missing} run{'s' if missing > 1 else ''} of these "
                  "arms.", ""]
    labels = list(arms)
    summary = {"rate": float(rate), "k": int(chosen[0]), "outer_rate": float(chosen[1]),
               "momentum": float(chosen[2]), "arms": {}}
    pairs = [(labels[-1], labels[0])] + ([(labels[-1], labels[1]), (labels[1], labels[0])]
                                         if len(labels) == 3 else [])
    for a, b in pairs:
        diffs = [x["test_ppl"] - y["test_ppl"] for x, y in zip(arms[a], arms[b]) if x and y]
        if diffs:
            m, sd = _mean_std(diffs)
            lines.append(f"- {a.split(',')[0]} − {b.split(',')[0]}: {m:+.2f} ± {sd:.2f} "
                         f"({sum(d < 0 for d in diffs)} of {len(diffs)} seeds lower; per seed "
                         + ", ".join(f"{d:+.2f}" for d in diffs) + ")")
            summary["arms"][f"{a.split(',')[0]} - {b.split(',')[0]}"] = diffs
    for label, recs in arms.items():
        summary["arms"][label] = [r["test_ppl"] if r else None for r in recs]
    groups = {label: [r for r in recs if r] for label, recs in arms.items()}
    if all(groups.values()):
        plot_outer_curves(groups, os.path.join(out, "lm_outer_curves.png"), source)
        lines += ["", "![curves](lm_outer_curves.png)"]
    return lines + [""], summary


def plot_outer_curves(groups, path, source):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (label, recs) in enumerate(groups.items()):
        steps = np.cumsum([e["windows"] for e in recs[0]["epochs"]])
        n = min(len(r["epochs"]) for r in recs)
        curves = np.array([[e["valid_ppl"] for e in r["epochs"][:n]] for r in recs])
        m, s = curves.mean(axis=0), curves.std(axis=0)
        ax.plot(steps[:n], m, marker="o", ms=3, color=f"C{i}",
                label=f"{label} ({len(recs)} seeds)")
        ax.fill_between(steps[:n], m - s, m + s, color=f"C{i}", alpha=0.15)
    ax.set_xlabel("inner steps")
    ax.set_ylabel("validation perplexity (evaluated weights)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.suptitle(f"{source}: outer momentum beside Lookahead and Adam, mean ± std over seeds",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def first_arg(records, key):
    return next(iter(records.values()))["args"][key]


def _stop_rule(a):
    """The stopping rule in words, and which runs it ended ('' for a run of every epoch)."""
    if not a.get("stop_patience"):
        return ""
    return (f" at most, a run stopped once {a['stop_patience']} epochs in a row brought no "
            "better validation perplexity")


def _anchor(groups, first):
    """Our SGD baseline beside published LSTM perplexities on PTB (only on PTB)."""
    sgd = next((recs for (opt, *_), recs in groups.items() if opt == "sgd"), None)
    if first["source"] != "ptb" or not sgd:
        return []
    mean = statistics.mean(r["test_ppl"] for r in sgd)
    lines = ["## Where the SGD baseline stands", "",
             f"Our SGD baseline ({first['params'] / 1e6:.1f}M parameters): test perplexity "
             f"{mean:.2f} (mean of {len(sgd)} seed{'s' if len(sgd) > 1 else ''}). Published "
             "LSTM language models on the same PTB:", "",
             "| model | parameters | test perplexity | ours minus it |", "|---|---|---|---|"]
    lines += [f"| {model} | {size} | {ppl} | {mean - ppl:+.2f} |" for model, size, ppl in ANCHORS]
    return lines + [""]


def write_report(args):
    from benchmarks.lm import model as awd  # imports Keras: not in the sweep's own process

    name = "lm" if args.profile == "cpu-long" else "lm_" + args.profile.replace("-", "_")
    records = load_records(args)
    if not records:
        raise SystemExit(f"no finished runs under {folder_of(args)}")
    groups = main_groups(args, records)
    first = next(iter(records.values()))
    a = first["args"]
    size = {n: a[n] or awd.PROFILES[args.profile][n] for n in ("layers", "hidden", "embedding")}
    polyak_from = next((r["args"]["polyak_start"] + 1 for r in records.values()
                        if r["args"]["optimizer"] == "polyak-sgd"), a["polyak_start"] + 1)
    source = {"ptb": "Penn Treebank", "multi30k-en": "Multi30k English (a stand-in for PTB)",
              "synthetic": "a synthetic corpus"}.get(first["source"], first["source"])
    lines = h.header(f"Word-level language modelling, profile {args.profile}: Lookahead against "
                     "SGD, Adam and Polyak averaging", h.command_line(), h.machine(),
                     source=f"the run records in `lm/runs/{args.profile}/`") + \
        h.machines_line(records.values()) + [
        f"**Data: {source}**, {first['tokens']['train']:,} training, "
        f"{first['tokens']['valid']:,} validation and {first['tokens']['test']:,} test tokens, "
        f"a vocabulary of {first['vocab_size']:,}"
        + ("" if first["source"] == "ptb" else
           " — not Penn Treebank: no copy of PTB could be downloaded where this ran, so the "
           "numbers below measure the paper's comparison on other text and cannot be set "
           "against the published perplexities, only their ordering and gaps") + ".", "",
        f"**Profile `{args.profile}`**: AWD-LSTM ({size['layers']} LSTM "
        f"layer{'s' if size['layers'] > 1 else ''} of "
        f"{size['hidden']}, embeddings of {size['embedding']} tied to the softmax, "
        f"{first['params']:,} parameters; benchmarks/lm/model.py), batch {a['batch_size']}, "
        f"windows of {a['bptt']}{' (random lengths)' if a['variable_bptt'] else ''}, "
        f"{a['epochs']} epochs{_stop_rule(a)}, gradient norm clipped at {a['clipnorm']}, "
        f"weight decay {a['weight_decay']}, the rate halved after {a['patience']} "
        f"epoch{'s' if a['patience'] > 1 else ''} without a better "
        "validation perplexity"
        + (f" and after every epoch from epoch {a['decay_from']} on" if a.get("decay_from")
           else "") + ". "
        + ("Each optimizer runs at the rate of its best validation perplexity on seed 0 among "
           "the grid's (below): the search starts from "
           f"{{{', '.join(GRIDS[args.profile][0])}}} for the SGD family and "
           f"{{{', '.join(GRIDS[args.profile][1])}}} for the Adam family and, while an "
           "optimizer's best lies at the lowest or highest rate it tried, adds the next rate "
           "beyond from the paper's grid (App. C.3). " if args.profile in BEST_RATES else "")
        + "Lookahead k=5, α=0.5 unless a row says otherwise; Polyak: the "
        f"uniform average of the weights after every step from epoch {polyak_from} "
        "on. Every perplexity is evaluated on the weights the method reports (the slow "
        "weights, the average), at the epoch of best validation perplexity; it is exp of the "
        "mean cross-entropy per token over the whole split, `<eos>` included.", ""]
    missing, partial = _missing(args, records)
    protocol, protocol_summary, protocol_missing = _protocol(args, records)
    lines += protocol
    outer_lines, outer_summary = _outer(args, records, args.out, source)
    lines += outer_lines
    summary = {}
    if not groups:
        lines += partial
    if groups:
        lines += ["## Each optimizer at its own best rate" + (
                  " (a second reading: Lookahead's rate searched like its inner optimizer's, "
                  "k=5, α=0.5)" if protocol else ""), ""] + partial + [
                  "| optimizer | seeds | test perplexity (mean ± std) | per seed | validation "
                  "| best epoch | minutes per run (each seed) | paper, PTB (Table 3) |",
                  "|---|---|---|---|---|---|---|---|"]
        for config, recs in groups.items():
            test = _mean_std(r["test_ppl"] for r in recs)
            valid = _mean_std(r["valid_ppl"] for r in recs)
            # each run's own: one run on a slower machine would skew a mean
            minutes = ", ".join(f"{sum(e['seconds'] for e in r['epochs']) / 60:.1f}"
                                for r in recs)
            key = f"{config[0]}-lr{config[1]:g}"
            summary[key] = {"test_ppl_mean": test[0], "test_ppl_std": test[1],
                            "valid_ppl_mean": valid[0], "seeds": len(recs),
                            "test_ppl": [r["test_ppl"] for r in recs]}
            per_seed = ", ".join(f"{r['test_ppl']:.2f}" for r in recs)
            best_epochs = ", ".join(str(r["best_epoch"]) for r in recs)
            lines.append(
                f"| {_label(*config[:2])} | {len(recs)} | {test[0]:.2f} ± {test[1]:.2f} | "
                f"{per_seed} | {valid[0]:.2f} | {best_epochs} | {minutes} | "
                f"{PAPER[config[0]]} |")
        lines += ["", "Paired by seed (the same initial weights and data order for each "
                  "pair), the change Lookahead makes to the test perplexity:", ""]
        for inner, la in (("sgd", "lookahead-sgd"), ("adam", "lookahead-adam")):
            for config, recs in groups.items():
                if config[0] != la:
                    continue
                # each at its own best rate where the profile picks rates, else at the same rate
                pick = args.profile in BEST_RATES
                base_config = next((c for c in groups if c[0] == inner
                                    and (pick or c[1] == config[1])), None)
                if not base_config:
                    continue
                base = groups[base_config]
                pairs = {r["args"]["seed"]: r["test_ppl"] for r in base}
                diffs = [r["test_ppl"] - pairs[r["args"]["seed"]] for r in recs
                         if r["args"]["seed"] in pairs]
                better = sum(d < 0 for d in diffs)
                m, s = _mean_std(diffs)
                rates = (f"at lr {config[1]:g}" if base_config[1] == config[1] else
                         f"(lr {config[1]:g} against lr {base_config[1]:g}, each at its best "
                         "rate)")
                lines.append(f"- {LABELS[la]} − {LABELS[inner]} {rates}: "
                             f"{m:+.2f} ± {s:.2f} ({better} of {len(diffs)} seeds lower; per "
                             "seed " + ", ".join(f"{d:+.2f}" for d in diffs) + ")")
        if args.profile in BEST_RATES:
            lines += ["", "Seed 0's runs also chose each optimizer's rate (by validation "
                      "perplexity), which favours the chosen rate on that seed; the other "
                      "seeds had no say in it."]
        if a.get("stop_patience"):
            ended = [r.get("stopped", "") for recs in groups.values() for r in recs]
            plateau = sum(e == "plateau" for e in ended)
            last = [100 * (r["epochs"][-1]["valid_ppl"] / r["epochs"][-2]["valid_ppl"] - 1)
                    for recs in groups.values() for r in recs if len(r["epochs"]) > 1]
            lines += ["", f"{plateau} of these {len(ended)} runs ended on the plateau rule, "
                      f"{len(ended) - plateau} at the cap of {a['epochs']} epochs."
                      + (f" In its last epoch, each run's validation perplexity changed by "
                         f"{min(last):+.2f} % to {max(last):+.2f} %." if last else "")]
        lines += ["", f"![curves]({name}_curves.png)", ""]
        plot_curves(groups, os.path.join(args.out, f"{name}_curves.png"), source)
    # the five optimizers' seed-0 runs (SNOO's grid has its own table)
    grid = [r for r in records.values() if r["args"]["seed"] == 0
            and r["args"]["optimizer"] in LABELS]
    if any(_config(r) not in groups for r in grid):  # the grid suite ran
        lines += ["## Grid (seed 0)", "", "Validation perplexity, which chose the rates and "
                  "settings; test perplexity is read only for the chosen ones (above).", "",
                  "| optimizer | lr | k | α | validation perplexity | best epoch |",
                  "|---|---|---|---|---|---|"]
        for r in sorted(grid, key=lambda r: (list(LABELS).index(r["args"]["optimizer"]),
                                             r["args"]["lr"], r["args"]["k"],
                                             r["args"]["alpha"])):
            ra = r["args"]
            la = ra["optimizer"].startswith("lookahead")
            lines.append(f"| {LABELS[ra['optimizer']]} | {ra['lr']:g} | "
                         f"{ra['k'] if la else '–'} | {ra['alpha'] if la else '–'} | "
                         f"{r['valid_ppl']:.2f} | {r['best_epoch']} |")
        lines.append("")
        lines += _grid_ends(args, records)
    lines += _anchor(groups, first)
    lines += ["## Published numbers, for reading beside ours", "",
              "Test perplexity on Penn Treebank with the full AWD-LSTM (3 × 1150, 24M "
              "parameters, hundreds of epochs on an accelerator).", "",
              "| source | setting | inner optimizer | Lookahead |", "|---|---|---|---|",
              f"| Zhang et al. 2019, Table 3 | SGD | {PAPER['sgd']} | {PAPER['lookahead-sgd']} |",
              f"| Zhang et al. 2019, Table 3 | Adam | {PAPER['adam']} | "
              f"{PAPER['lookahead-adam']} |",
              f"| Zhang et al. 2019, Table 3 | Polyak averaging | {PAPER['polyak-sgd']} | – |"]
    lines += [f"| {REPRODUCTION_SOURCE} | {setting} | {inner} | {la} |"
              for setting, inner, la in REPRODUCTION]
    lines.append("")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{name}.md"), "w") as f:
        f.write("\n".join(lines))
    h.write_json(os.path.join(args.out, f"{name}.json"), {
        "profile": args.profile, "source": first["source"], "seeds": args.seeds,
        "missing_runs": missing, "summary": summary,
        "protocol_missing_runs": protocol_missing, "protocol": protocol_summary,
        "outer_momentum": outer_summary,
        "runs": {n: {"args": r["args"], "test_ppl": r["test_ppl"], "valid_ppl": r["valid_ppl"],
                     "best_epoch": r["best_epoch"], "epochs": r["epochs"]}
                 for n, r in records.items()}})
    h.progress(f"wrote {os.path.join(args.out, name + '.md')}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=sorted(GRIDS))
    p.add_argument("--suite", default="main",
                   choices=("main", "lr-grid", "k-alpha", "outer", "all"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--adam-lrs", default="0.01,0.003",
                   help="the Adam rates of the main suite, comma-separated (default: "
                        "%(default)s)")
    add_common_arguments(p, "benchmarks/lm/train.py")
    sweep_main(p, argv, run_all, write_report, check=_check_adam_lrs)


def _check_adam_lrs(parser, args):
    try:
        rates = [float(lr) for lr in args.adam_lrs.split(",")]
    except ValueError:
        rates = []
    if not rates or not all(r > 0 for r in rates):
        parser.error(f"--adam-lrs {args.adam_lrs!r}: give positive rates separated by commas, "
                     "e.g. 0.003,0.01")


if __name__ == "__main__":
    main()
