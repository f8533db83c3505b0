"""The benchmark suite's smoke run (--quick) produces every part of its results, for every
installed backend. Timings are not asserted (this is not a performance test); the memory
accounting is, against the paper's count: one copy of the parameters for the slow weights, one
more for the cached momentum with "interpolate"."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
from tests.execution_modes import tf_only


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@tf_only  # the suite starts one process per backend itself: run it once, in the TF pass
def test_performance_quick_run_writes_every_part(tmp_path):
    script = [sys.executable, "-m", "benchmarks.performance"]
    out = subprocess.run([*script, "--quick", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("performance.md", "performance.json", "performance_scaling.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    payload = json.loads((tmp_path / "performance.json").read_text())
    # --quick means a smoke run: the repeat counts are the small ones, whatever the defaults
    assert {k: payload["args"][k] for k in ("rounds", "headline_rounds", "calls", "fit_steps",
                                             "fit_rounds", "memory_params")} == {
        "rounds": 2, "headline_rounds": 2, "calls": 4, "fit_steps": 2, "fit_rounds": 1,
        "memory_params": 2_000_000}

    expected_paths = {("tensorflow", "XLA"), ("tensorflow", "graph")}
    if importlib.util.find_spec("jax"):
        expected_paths.add(("jax", "jit"))
    if importlib.util.find_spec("torch"):
        expected_paths.add(("torch", "eager"))
    ours = [r for r in payload["optimizer"] if r["implementation"] == "keras_lookahead"]
    assert {(r["backend"], r["mode"]) for r in ours} == expected_paths
    assert {r["k"] for r in ours} == {1, 5}
    for r in ours:
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0 and r["limit"] > 1, r
        # the per-step part (a sync that never comes) is measured, once per size, where the
        # target is judged: Adam on the compiled paths
        headline = r["inner"] == "Adam" and r["mode"] != "eager"
        assert (r["never_sync"] is not None) == headline, r
    backends = {b for b, _ in expected_paths}
    assert {(f["backend"], f["model"]) for f in payload["fit"]} == {
        (b, m) for b in backends for m in ("ResNet-style CNN", "Transformer encoder")}
    assert {(m["backend"], m["config"]) for m in payload["peak_memory"]} == {
        (b, c) for b in backends for c in ("inner alone", "maintain", "reset", "interpolate")}

    for m in payload["state"]:
        copies = 2 if m["inner_state"] == "interpolate" else 1
        extra_scalars = m["extra_bytes"] - copies * 4 * m["params"]
        assert 0 <= extra_scalars <= 16, m  # whole copies, plus the int32 sync flag

    # the report can be rewritten from the raw numbers alone
    (tmp_path / "performance.md").unlink()
    again = subprocess.run([*script, "--from-json", "--out", str(tmp_path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "## Headline" in (tmp_path / "performance.md").read_text()


@tf_only
def test_jax_sync_forms_quick_run_writes_both_forms_and_the_limit(tmp_path):
    pytest.importorskip("jax")
    out = subprocess.run([sys.executable, "-m", "benchmarks.jax_sync_forms", "--quick", "--out",
                          str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "jax_sync_forms.json").read_text())["results"]
    assert set(results) == {"1000000"}
    assert set(results["1000000"]) == {"select", "cond", "sync alone"}
    assert "| 1M |" in (tmp_path / "jax_sync_forms.md").read_text()
