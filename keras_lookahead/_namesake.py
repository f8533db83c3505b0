"""The other package that installs into `keras_lookahead/`.

`keras-lookahead` on PyPI (0.9.0, 2019, by CyberZHG) is an unrelated Keras 2 package with this
package's import name; on Keras 3 its `import keras_lookahead` fails with `AttributeError: module
'keras' has no attribute 'engine'`. This package is distributed as `keras-lookahead-optimizer`
for that reason. Installed into one environment, the two write into the same folder: whichever
came last owns `__init__.py`, and uninstalling either deletes files the other needs. When ours
is the one imported, it says so once, with the fix, instead of misbehaving later.
"""

import importlib.metadata
import os
import warnings

DISTRIBUTION = "keras-lookahead-optimizer"
NAMESAKE = "keras-lookahead"
# Files the namesake puts into keras_lookahead/ and this package does not have (it must never
# add modules of these names).
NAMESAKE_FILES = ("backend.py", "optimizers.py")
# setup.cfg's description, which this package's metadata carried under the old name as well
OUR_SUMMARY = "Lookahead optimizer (k steps forward, 1 step back) for Keras 3"


def namesake_traces(package_dir, path=None):
    """What of the namesake is installed: its distribution's metadata (found on `path`,
    sys.path by default) and its files in `package_dir`, in words; empty when none."""
    traces = []
    search = {} if path is None else {"path": path}
    dist = next(iter(importlib.metadata.distributions(name=NAMESAKE, **search)), None)
    if dist is not None:
        where = dist.locate_file("")  # its metadata's folder: a stale .egg-info in a checkout
        if dist.metadata["Summary"] == OUR_SUMMARY:  # a checkout installed before the rename
            traces.append(f"this package's own earlier install as {NAMESAKE} {dist.version} "
                          f"(its metadata in {where})")
        else:
            traces.append(f"the distribution {NAMESAKE} {dist.version} (in {where})")
    files = [name for name in NAMESAKE_FILES if os.path.exists(os.path.join(package_dir, name))]
    if files:
        traces.append(f"its files {', '.join(files)} in {package_dir}")
    return traces


def warn_if_namesake_installed(package_dir, path=None):
    """A UserWarning naming what was found and the fix, if any of the namesake is installed."""
    traces = namesake_traces(package_dir, path)
    if traces:
        warnings.warn(
            f"keras_lookahead: found {' and '.join(traces)} in this environment. "
            f"'{NAMESAKE}' on PyPI is an unrelated Keras 2 package with the same import name "
            f"(this one is '{DISTRIBUTION}'); the two overwrite each other's files. Fix: "
            f"pip uninstall -y {NAMESAKE} {DISTRIBUTION} && pip install {DISTRIBUTION} "
            "(pip install -e . in a clone; uninstalling one alone deletes files the other "
            "needs).",
            UserWarning, stacklevel=3)
