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
