"""The README and the docs site: short, linked, generated where they quote numbers, and every
public name in the API reference. (`mkdocs build --strict` itself runs in .ci/run.)"""

import inspect
import os
import re

import pytest

import keras_lookahead

from benchmarks import readme_results

pytestmark = pytest.mark.backend_independent

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def test_readme_is_short():
    assert len(_read("README.md").splitlines()) <= 150


def test_readme_results_table_is_the_one_the_files_give():
    # The table is written by benchmarks/readme_results.py from the results' .json files: a
    # figure edited by hand, or a results file re-run without rewriting the README, fails here.
    text = _read("README.md")
    assert readme_results.rewritten(text) == text
    table = text.split(readme_results.START)[1].split(readme_results.END)[0]
    # Every measured figure sits inside a link to the results page it comes from.
    links = re.findall(r"\[([^\]]*)\]\(benchmarks/results/\w+\.md\)", table)
    assert links and all(re.search(r"\d\.\d", text) for text in links)
    outside = re.sub(r"\[[^\]]*\]\([^)]*\)", "", table)
    assert not re.search(r"\d\.\d", outside), outside


def test_readme_lm_rows_come_from_ptb_once_its_main_comparison_is_complete(tmp_path,
                                                                          monkeypatch):
    import json

    def write(name, payload):
        (tmp_path / f"{name}.json").write_text(json.dumps(payload))

    def entry(mean, std, seeds=3):
        return {"test_ppl_mean": mean, "test_ppl_std": std, "seeds": seeds}

    runs = {"sgd-lr30-s0": {"args": {"epochs": 15}}, "adam-lr0.003-s0": {"args": {"epochs": 15}}}
    ptb = {"seeds": 3, "missing_runs": 0, "runs": runs,
           "summary": {"sgd-lr30": entry(131.6, 0.4), "lookahead-sgd-lr50": entry(140.25, 1.5),
                       "polyak-sgd-lr30": entry(134.0, 0.2), "adam-lr0.003": entry(126.3, 0.1),
                       "lookahead-adam-lr0.01": entry(125.0, 0.05)}}
    write("lm", ptb)
    monkeypatch.setattr(readme_results, "RESULTS", str(tmp_path))
    head = ("| Penn Treebank, test perplexity (lower is better), AWD-LSTM 2 × 256, {}, each at "
            "its best rate, 15 epochs to the end of the rate schedule, 3 seeds (Lookahead at the "
            "paper's default k and α; App. C.3's protocol under way) | ")
    link = "](benchmarks/results/lm.md)"
    assert readme_results._lm_rows() == [
        head.format("SGD") + f"[131.60 ± 0.40 at lr 30{link} | [140.25 ± 1.50 at lr 50{link} |",
        head.format("Adam") + f"[126.30 ± 0.10 at lr 0.003{link} | [125.00 ± 0.05 at lr "
        f"0.01{link} |"]
    # a file that says nothing is missing while a row has fewer seeds is refused
    ptb["summary"]["lookahead-adam-lr0.01"]["seeds"] = 2
    write("lm", ptb)
    with pytest.raises(SystemExit, match="lookahead-adam-lr0.01 have \\[2, 3\\] seeds"):
        readme_results._lm_rows()
    # runs missing: the short stand-in rows, saying that the PTB sweep is under way
    write("lm", {**ptb, "missing_runs": 4})
    write("lm_cpu", {"runs": {"sgd-lr30-s0": {"args": {"epochs": 3}}}, "summary": {
        "sgd-lr30": entry(47.6, 1.7), "lookahead-sgd-lr30": entry(56.9, 2.1),
        "adam-lr0.01": entry(35.4, 0.2), "adam-lr0.003": entry(41.4, 0.1),
        "lookahead-adam-lr0.01": entry(37.2, 0.1), "lookahead-adam-lr0.003": entry(50.6, 0.1)}})
    rows = readme_results._lm_rows()
    assert len(rows) == 2 and all("3 epochs (short; the PTB sweep is under way)" in r
                                  for r in rows)
    assert "[35.40 ± 0.20](benchmarks/results/lm_cpu.md) | [37.20 ± 0.10]" in rows[1]


def test_readme_rows_switch_to_the_papers_protocol_once_it_has_every_seed(tmp_path,
                                                                         monkeypatch):
    """CIFAR, translation and PTB rows: the untuned comparison (saying so) until the protocol's
    pair has every seed, then the protocol's numbers, naming the chosen settings."""
    import json

    def write(name, payload):
        (tmp_path / f"{name}.json").write_text(json.dumps(payload))

    monkeypatch.setattr(readme_results, "RESULTS", str(tmp_path))
    runs = {"main-sgd-s0": {"args": {"epochs": 20, "limit": 20000}}}
    untuned = {"seeds": 3, "test_accuracy_mean": 79.5, "test_accuracy_std": 0.1}
    summary = {m: untuned for m in ("sgd", "lookahead-sgd", "adam", "lookahead-adam")}
    protocol = {"sgd": {"seeds": 2, "config": {"lr": "0.1", "wd": "1e-3"},
                        "test_accuracy": [80.0, 82.0]},
                "lookahead-sgd": {"seeds": 3, "config": {"lr": "0.2", "wd": "1e-3", "k": "10",
                                                         "alpha": "0.8"},
                                  "test_accuracy": [81.0, 81.0, 84.0]}}
    write("cifar_cpu_long", {"runs": runs, "summary": summary, "protocol": protocol,
                             "protocol_seeds": 3})
    rows = readme_results._cifar_rows(readme_results._load("cifar_cpu_long"))
    assert all("the paper's protocol under way" in r for r in rows)  # SGD has 2 seeds of 3
    protocol["sgd"].update(seeds=3, test_accuracy=[80.0, 82.0, 84.0])
    write("cifar_cpu_long", {"runs": runs, "summary": summary, "protocol": protocol,
                             "protocol_seeds": 3})
    rows = readme_results._cifar_rows(readme_results._load("cifar_cpu_long"))
    link = "](benchmarks/results/cifar_cpu_long.md)"
    assert rows[0] == (
        "| CIFAR-10, test accuracy %, SGD, App. C.1's protocol (every method tuned on held-out "
        "training images, Lookahead resetting the momentum), 20,000 training images, 20 "
        f"epochs to the end of the rate schedule, 3 seeds | [82.00 ± 2.00{link} | "
        f"[82.00 ± 1.73{link} |")
    assert "under way" in rows[1]  # AdamW's pair has not run
    # translation: the plateau runs once none is missing
    write("nmt", {"runs": {"adam-s0": {"args": {"epochs": 2}}},
                  "summary": {"adam": {"bleu_mean": 26.4, "bleu_std": 1.0, "seeds": 2},
                              "lookahead-adam": {"bleu_mean": 23.8, "bleu_std": 0.8,
                                                 "seeds": 2}}})
    assert "(short; the plateau runs are under way)" in readme_results._nmt_rows()[0]
    write("nmt_cpu_long", {"missing_runs": 0, "seeds": 3, "chosen": ["0.06", "5"],
                           "summary": {"adam": {"bleu": [30.0, 31.0, 32.0]},
                                       "lookahead-adam": {"bleu": [31.0, 31.0, 31.0]}}})
    assert readme_results._nmt_rows() == [
        "| Multi30k En→De, test BLEU, Adam, trained to a plateau of validation BLEU (App. "
        "C.4's grid for Lookahead, chosen on validation), 3 seeds | "
        "[31.00 ± 1.00](benchmarks/results/nmt_cpu_long.md) | "
        "[31.00 ± 0.00](benchmarks/results/nmt_cpu_long.md) |"]
    # PTB: App. C.3's protocol rows once both Lookaheads have every seed
    ptb_runs = {"sgd-lr50-s0": {"args": {"epochs": 15}}}
    proto = {"lookahead-sgd": {"lr": 50.0, "k": 5, "alpha": 0.8, "seeds": 3,
                               "test_ppl": [140.0, 141.0, 142.0],
                               "inner_test_ppl": [130.0, 131.0, 132.0]},
             "lookahead-adam": {"lr": 0.005, "k": 10, "alpha": 0.5, "seeds": 2,
                                "test_ppl": [120.0, 121.0], "inner_test_ppl": [121.0, 122.0]}}
    ptb = {"seeds": 3, "missing_runs": 4, "runs": ptb_runs, "summary": {}, "protocol": proto}
    assert readme_results._lm_protocol_rows(ptb) == []
    proto["lookahead-adam"].update(seeds=3, test_ppl=[120.0, 121.0, 122.0],
                                   inner_test_ppl=[121.0, 122.0, 126.0])
    rows = readme_results._lm_protocol_rows(ptb)
    assert rows[1] == (
        "| Penn Treebank, test perplexity (lower is better), AWD-LSTM 2 × 256, Adam at its "
        "chosen rate, Lookahead there with k and α chosen on validation (App. C.3's protocol), "
        "15 epochs to the end of the rate schedule, 3 seeds | "
        "[123.00 ± 2.65](benchmarks/results/lm.md) | [121.00 ± 1.00](benchmarks/results/lm.md) |")


def test_readme_links_point_at_files_that_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", _read("README.md")):
        if not target.startswith("http"):
            assert os.path.exists(os.path.join(ROOT, target)), target


def test_every_public_name_is_in_the_api_reference_with_a_docstring():
    documented = set(re.findall(r"^::: keras_lookahead\.(\w+)$", _read("docs", "api.md"), re.M))
    public = set(keras_lookahead.__all__) - {"__version__"}
    assert documented == public
    for name in public:
        doc = getattr(keras_lookahead, name).__doc__
        assert doc and len(doc.strip().splitlines()[0]) > 10, name


def test_every_docs_page_and_results_page_is_in_the_nav():
    # the results pages are published under results/ by docs/hooks/results.py
    nav = _read("mkdocs.yml").split("\nnav:\n")[1]
    pages = {p for p in os.listdir(os.path.join(ROOT, "docs")) if p.endswith(".md")}
    results = {f"results/{p}" for p in os.listdir(os.path.join(ROOT, "benchmarks", "results"))
               if p.endswith(".md")}
    gpu = os.path.join(ROOT, "benchmarks", "results", "gpu")
    results |= {f"results/gpu/{p}" for p in os.listdir(gpu) if p.endswith(".md")}
    assert "results/cifar.md" in results and "results/gpu/performance.md" in results
    missing = {p for p in pages | results if not re.search(rf": {re.escape(p)}$", nav, re.M)}
    assert not missing, missing


def _rendered_docstrings():
    """(name, docstring) of every public name and of the public members its class defines:
    what the API reference renders (mkdocstrings, filters ["!^_"], no inherited members)."""
    for name in sorted(set(keras_lookahead.__all__) - {"__version__"}):
        obj = getattr(keras_lookahead, name)
        yield name, obj.__doc__
        if inspect.isclass(obj):
            for member, value in vars(obj).items():
                if not member.startswith("_") and getattr(value, "__doc__", None):
                    yield f"{name}.{member}", value.__doc__


def _as_markdown_reads_it(doc):
    """The docstring's text as Markdown gets it: mkdocstrings renders each section's text
    (Args' entries too) as Markdown, so indentation is not a code block, fences stay fences."""
    lines, fenced = [], False
    for line in inspect.cleandoc(doc).splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        lines.append(line if fenced else line.strip())
    return "\n".join(lines)


def test_no_docstring_text_is_taken_for_emphasis():
    # `2**30 ... 2**30` rendered as "2<strong>30 ... 2</strong>30". Emphasis is allowed only
    # where the text asks for it: `*word*` (or `**word**`) with no letter or digit just outside
    # its asterisks.
    import markdown

    for name, doc in _rendered_docstrings():
        text = _as_markdown_reads_it(doc)
        html = markdown.markdown(text, extensions=["fenced_code", "tables"])
        for tag, inner in re.findall(r"<(em|strong)>(.*?)</\1>", html, re.S):
            marker = "*" if tag == "em" else "**"
            asked = rf"(?<![\w*]){re.escape(marker + inner + marker)}(?![\w*])"
            assert "<" not in inner and re.search(asked, text), (name, tag, inner)
