"""The unrelated `keras-lookahead` package (PyPI 0.9.0, Keras 2) beside this one: importing
ours says so once, with the fix (keras_lookahead/_namesake.py)."""

import configparser
import os
import subprocess
import sys
import warnings

import pytest

import keras_lookahead
from keras_lookahead import _namesake

pytestmark = pytest.mark.backend_independent  # metadata and files, read before Keras is used

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.dirname(os.path.abspath(keras_lookahead.__file__))


def fake_namesake_metadata(folder):
    """What pip leaves of keras-lookahead 0.9.0: its dist-info (only METADATA is read)."""
    info = folder / "keras_lookahead-0.9.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: keras-lookahead\n"
                                   "Version: 0.9.0\nSummary: Lookahead mechanism for optimizers "
                                   "in Keras\n")
    return folder


def test_this_installation_has_no_trace_of_the_namesake():
    # neither its metadata on sys.path nor its modules among ours
    assert _namesake.namesake_traces(PACKAGE_DIR) == []
    assert not set(_namesake.NAMESAKE_FILES) & set(os.listdir(PACKAGE_DIR))


def test_the_distribution_name_and_summary_are_setup_cfgs():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    assert config["metadata"]["name"] == _namesake.DISTRIBUTION == "keras-lookahead-optimizer"
    assert config["metadata"]["description"] == _namesake.OUR_SUMMARY


def test_its_metadata_and_its_files_are_both_named(tmp_path):
    site = fake_namesake_metadata(tmp_path / "site")
    package = tmp_path / "keras_lookahead"
    package.mkdir()
    (package / "optimizers.py").write_text("")
    assert _namesake.namesake_traces(str(package), path=[str(site)]) == [
        f"the distribution keras-lookahead 0.9.0 (in {site})",
        f"its files optimizers.py in {package}"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _namesake.warn_if_namesake_installed(str(package), path=[str(site)])
    assert len(caught) == 1 and caught[0].category is UserWarning
    message = str(caught[0].message)
    assert "keras-lookahead 0.9.0" in message and "optimizers.py" in message
    assert ("pip uninstall -y keras-lookahead keras-lookahead-optimizer && "
            "pip install keras-lookahead-optimizer") in message
    # our own distribution's metadata is not the namesake's
    ours = tmp_path / "ours"
    (ours / "keras_lookahead_optimizer-0.1.0.dist-info").mkdir(parents=True)
    (ours / "keras_lookahead_optimizer-0.1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: keras-lookahead-optimizer\nVersion: 0.1.0\n")
    assert _namesake.namesake_traces(str(tmp_path / "empty"), path=[str(ours)]) == []
    # a checkout of ours installed before the rename: told apart from the namesake by its summary
    old = tmp_path / "old"
    (old / "keras_lookahead-0.1.0.dist-info").mkdir(parents=True)
    (old / "keras_lookahead-0.1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: keras-lookahead\nVersion: 0.1.0\nSummary: Lookahead "
        "optimizer (k steps forward, 1 step back) for Keras 3\n")
    assert _namesake.namesake_traces(str(tmp_path / "empty"), path=[str(old)]) == [
        f"this package's own earlier install as keras-lookahead 0.1.0 (its metadata in {old})"]


def test_importing_beside_its_metadata_warns_once_at_the_users_import(tmp_path):
    site = fake_namesake_metadata(tmp_path / "site")
    # numpy: the lightest backend to import; the check runs before any backend is used
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), ROOT]), KERAS_BACKEND="numpy")
    out = subprocess.run([sys.executable, "-c", "import keras_lookahead"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if "UserWarning: keras_lookahead" in line]
    # once, at the user's import line (not inside the package or importlib)
    assert len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith("<string>:1: UserWarning: keras_lookahead: found the "
                               f"distribution keras-lookahead 0.9.0 (in {site})"), lines
