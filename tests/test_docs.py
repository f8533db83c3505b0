"""The README and the docs site: short, linked, generated where they quote numbers, and every
public name in the API reference. (`mkdocs build --strict` itself runs in .ci/run.)"""

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


def test_every_docs_page_is_in_the_nav():
    nav = _read("mkdocs.yml")
    pages = {p for p in os.listdir(os.path.join(ROOT, "docs")) if p.endswith(".md")}
    assert pages and all(f": {p}" in nav for p in pages), pages
