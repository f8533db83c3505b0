"""MkDocs hook: publish the generated results and the changelog in the site, unchanged.

The benchmark scripts write `benchmarks/results/<name>.md`, `.png` and `.json`; those files are
the only copy of the numbers. This hook adds them to the build as `results/<name>` (so a page
links to `results/cifar.md`, and the generated pages' own links to their plots resolve), and
CHANGELOG.md as `changelog.md`. With `mkdocs build --strict` a link to a results file that no
script wrote fails the build.
"""

import os

from mkdocs.structure.files import File

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_RESULTS = os.path.join(_ROOT, "benchmarks", "results")
_PUBLISHED = (".md", ".png", ".json")


# Reports a script wrote on another machine under its fixed file names (the performance suite
# on a GPU machine: --devices gpu --out ...), kept in a folder of their own.
_FOLDERS = ("", "gpu")


def _published(config):
    for folder in _FOLDERS:
        where = os.path.join(_RESULTS, folder)
        if not os.path.isdir(where):
            continue
        for name in sorted(os.listdir(where)):
            path = os.path.join(where, name)
            if os.path.isfile(path) and name.endswith(_PUBLISHED):
                yield "/".join(filter(None, ("results", folder, name))), path
    yield "changelog.md", os.path.join(_ROOT, "CHANGELOG.md")


def on_files(files, config):
    for uri, path in _published(config):
        files.append(File.generated(config, uri, abs_src_path=path))
    return files


def on_config(config):
    # `mkdocs serve` rebuilds when a script rewrites a results file.
    config.watch.append(_RESULTS)
    return config
