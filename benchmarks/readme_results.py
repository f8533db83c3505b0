"""The README's table of results, written from the results files so that nothing in it is
copied by hand.

    python -m benchmarks.readme_results           # rewrite the table in README.md
    python -m benchmarks.readme_results --check   # exit 1 if README.md's table is stale

The table sits between the two marker comments in README.md. Every figure in it links to the
generated page it comes from (`benchmarks/results/<name>.md`), read from that page's `.json`.
"""

import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
README = os.path.join(ROOT, "README.md")
START = "<!-- results: written by benchmarks/readme_results.py; do not edit by hand -->"
END = "<!-- results: end -->"

# Lookahead(Adam) / Adam at k=5: the execution modes the headline reports, in reading order.
PATHS = [("tensorflow", "XLA", "TensorFlow XLA"), ("tensorflow", "graph", "TensorFlow graph"),
         ("jax", "jit", "JAX jit"), ("torch", "eager", "PyTorch eager")]


def _load(name):
    with open(os.path.join(RESULTS, f"{name}.json")) as f:
        return json.load(f)


def _link(text, name):
    return f"[{text}](benchmarks/results/{name}.md)"


def _mean_std(summary, key, mean, std, name):
    s = summary[key]
    return _link(f"{s[mean]:.2f} ± {s[std]:.2f}", name)


def _run_arg(payload, key="epochs"):
    """The one value of run argument `key` across a results file's runs (its budget)."""
    values = {r["args"][key] for r in payload["runs"].values()}
    if len(values) != 1:
        raise SystemExit(f"the runs disagree on {key}: {sorted(values)}")
    return values.pop()


def _load_if(name):
    path = os.path.join(RESULTS, f"{name}.json")
    return _load(name) if os.path.exists(path) else None


def _figure(values, name, digits=2):
    """mean ± std of `values`, linked to its page."""
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return _link(f"{m:.{digits}f} ± {s:.{digits}f}", name)


# (the table's text holds no figure outside a link: the settings chosen are in the linked pages)
UNTUNED = ("untuned: Lookahead at the paper's default k and α and its inner optimizer's rate; "
           "the paper's protocol under way")


def _cifar_rows(cifar_file):
    """CIFAR-10: each pair from App. C.1's protocol once both have every seed (cifar.json's
    'protocol'); until then the untuned comparison, saying so."""
    protocol, seeds = cifar_file.get("protocol", {}), cifar_file.get("protocol_seeds")
    cifar = cifar_file["summary"]
    budget = (f"{_run_arg(cifar_file, 'limit'):,} training images, "
              f"{_run_arg(cifar_file)} epochs to the end of the rate schedule")
    rows = []
    for inner, la, old_inner, old_la, label, old_label in (
            ("sgd", "lookahead-sgd", "sgd", "lookahead-sgd", "SGD", "SGD"),
            ("adamw", "lookahead-adamw", "adam", "lookahead-adam", "AdamW", "Adam")):
        if seeds and all(protocol.get(m, {}).get("seeds") == seeds for m in (inner, la)):
            rows.append(
                f"| CIFAR-10, test accuracy %, {label}, App. C.1's protocol (every method tuned "
                "on held-out training images"
                + (", Lookahead resetting the momentum" if inner == "sgd" else "")
                + f"), {budget}, {seeds} "
                f"seeds | {_figure(protocol[inner]['test_accuracy'], 'cifar_cpu_long')} | "
                f"{_figure(protocol[la]['test_accuracy'], 'cifar_cpu_long')} |")
        else:
            acc = ("test_accuracy_mean", "test_accuracy_std", "cifar_cpu_long")
            rows.append(
                f"| CIFAR-10, test accuracy %, {old_label}, {budget}, "
                f"{cifar[old_inner]['seeds']} seeds ({UNTUNED}) | "
                f"{_mean_std(cifar, old_inner, *acc)} | {_mean_std(cifar, old_la, *acc)} |")
    return rows


def _nmt_rows():
    """Translation: trained to a plateau (nmt_cpu_long.json) once every run is done; until
    then the short runs, saying so."""
    plateau = _load_if("nmt_cpu_long")
    if plateau and plateau["missing_runs"] == 0:
        s = plateau["summary"]
        return [f"| Multi30k En→De, test BLEU, Adam, trained to a plateau of validation BLEU "
                "(App. C.4's grid for Lookahead, chosen on validation), "
                f"{plateau['seeds']} seeds | {_figure(s['adam']['bleu'], 'nmt_cpu_long')} | "
                f"{_figure(s['lookahead-adam']['bleu'], 'nmt_cpu_long')} |"]
    nmt_file = _load("nmt")
    nmt = nmt_file["summary"]
    bleu = ("bleu_mean", "bleu_std", "nmt")
    return [f"| Multi30k En→De, test BLEU, Adam, {_run_arg(nmt_file)} epochs (short; the "
            f"plateau runs are under way), {nmt['adam']['seeds']} seeds | "
            f"{_mean_std(nmt, 'adam', *bleu)} | {_mean_std(nmt, 'lookahead-adam', *bleu)} |"]


def _lm_protocol_rows(ptb):
    """PTB by App. C.3's protocol (lm.json's 'protocol'), for each Lookahead whose chosen
    setting and inner optimizer have every seed; none otherwise."""
    rows = []
    for la, label in (("lookahead-sgd", "SGD"), ("lookahead-adam", "Adam")):
        p = ptb.get("protocol", {}).get(la)
        if not p or p["seeds"] != ptb["seeds"]:
            return []
        rows.append(
            f"| Penn Treebank, test perplexity (lower is better), AWD-LSTM 2 × 256, {label} at "
            "its chosen rate, Lookahead there with k and α chosen on validation (App. C.3's "
            f"protocol), {_run_arg(ptb)} epochs to the end of "
            f"the rate schedule, {p['seeds']} seeds | {_figure(p['inner_test_ppl'], 'lm')} | "
            f"{_figure(p['test_ppl'], 'lm')} |")
    return rows


def _lm_rows():
    """The language-model rows: App. C.3's protocol once it has every run; before, the PTB runs
    to the end of their schedule (lm.json) once their main comparison has every run, each
    optimizer at its own best rate; until then the short runs on the stand-in (lm_cpu.json),
    the row saying that the PTB sweep is under way."""
    ptb = _load("lm")
    protocol = _lm_protocol_rows(ptb)
    if protocol:
        return protocol
    if ptb["missing_runs"] == 0:
        lm = ptb["summary"]
        epochs = _run_arg(ptb)
        rows = []
        for inner, label in (("sgd", "SGD"), ("adam", "Adam")):
            plain, = (k for k in lm if k.startswith(f"{inner}-lr"))
            la, = (k for k in lm if k.startswith(f"lookahead-{inner}-lr"))
            seeds = {lm[plain]["seeds"], lm[la]["seeds"]}
            if seeds != {ptb["seeds"]}:
                raise SystemExit(f"lm.json says no run is missing, but its {plain} and {la} "
                                 f"have {sorted(seeds)} seeds, not {ptb['seeds']}")
            cells = [_link(f"{lm[k]['test_ppl_mean']:.2f} ± {lm[k]['test_ppl_std']:.2f} at lr "
                           f"{k.split('-lr')[1]}", "lm") for k in (plain, la)]
            rows.append(f"| Penn Treebank, test perplexity (lower is better), AWD-LSTM 2 × 256, "
                        f"{label}, each at its best rate, {epochs} epochs to the end of the "
                        f"rate schedule, {ptb['seeds']} seeds (Lookahead at the paper's default "
                        f"k and α; App. C.3's protocol under way) | {cells[0]} | {cells[1]} |")
        return rows
    lm_file = _load("lm_cpu")
    lm = lm_file["summary"]
    ppl = ("test_ppl_mean", "test_ppl_std", "lm_cpu")
    rows = []
    for inner, label in (("sgd", "SGD"), ("adam", "Adam")):
        # the inner optimizer at its best rate of the main comparison's (lowest mean)
        plain = min((k for k in lm if k.startswith(f"{inner}-lr")),
                    key=lambda k: lm[k]["test_ppl_mean"])
        rows.append(f"| Multi30k English as a PTB stand-in, test perplexity (lower is better), "
                    f"AWD-LSTM, {label} at its best rate, {_run_arg(lm_file)} epochs (short; "
                    f"the PTB sweep is under way), {lm[plain]['seeds']} seeds "
                    f"| {_mean_std(lm, plain, *ppl)} | "
                    f"{_mean_std(lm, 'lookahead-' + plain, *ppl)} |")
    return rows


def table():
    perf = _load("performance")
    rows = ["| what (our CPU runs at a small scale; the budget in each row, more in each file) | "
            "without Lookahead | with Lookahead |", "|---|---|---|"]
    rows += _cifar_rows(_load("cifar_cpu_long"))
    rows += _nmt_rows()
    rows += _lm_rows()
    # one noisy cell (a ratio below 1 at one size) says little: the median over sizes, with
    # the range over sizes beside it
    sizes = sorted(perf["args"]["sizes"])
    cells = []
    for b, m, label in PATHS:
        ratios = sorted(r["ratio"] for r in perf["optimizer"]
                        if r["implementation"] == "keras_lookahead" and r["inner"] == "Adam"
                        and r["k"] == 5 and (r["backend"], r["mode"]) == (b, m))
        if ratios:
            figure = f"{statistics.median(ratios):.3f} ({ratios[0]:.2f}–{ratios[-1]:.2f})"
            cells.append(f"{label} {_link(figure, 'performance')}")
    rows.append(f"| time per optimizer step, Adam, k=5: the median over {len(sizes)} sizes "
                f"({sizes[0] / 1e6:g}M to {sizes[-1] / 1e6:g}M parameters), their range in "
                f"brackets | 1 | {', '.join(cells)} |")
    return "\n".join(rows)


def rewritten(text):
    if text.count(START) != 1 or text.count(END) != 1:
        raise SystemExit(f"README.md must hold the markers once each:\n{START}\n{END}")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if README.md's table differs from the files")
    args = parser.parse_args(argv)
    with open(README) as f:
        text = f.read()
    new = rewritten(text)
    if args.check:
        if new != text:
            print("README.md's results table is stale: run python -m benchmarks.readme_results",
                  file=sys.stderr)
            return 1
        return 0
    with open(README, "w") as f:
        f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
