"""Lookahead under JAX's keras.distribution API on 2 host devices
(tests/workers/jax_distribution.py)."""

import json
import os
import subprocess
import sys

import pytest
from tests.execution_modes import BACKEND


pytestmark = [pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution runs on JAX"),
              pytest.mark.slow]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(kind, *options):
    argv = [sys.executable, "-m", "tests.workers.jax_distribution", kind, *options]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    return json.loads(lines[-1])


@pytest.mark.parametrize("kind", ["data", "model"])
def test_distributed_training_equals_one_device_and_slow_weights_are_placed_like_variables(kind):
    result = _run(kind)
    assert result["devices"] == 2 and result["iterations"] == 12
    assert result["max_rel_diff"] < 1e-5
    for p in result["placement"]:
        assert p["devices"] == 2, p
        assert p["slow_same"] and p["cached_same"] and p["slow_spec"] == p["spec"], p
    kernels = [p["spec"] for p in result["placement"] if p["variable"].endswith("kernel")]
    assert result["buffers"] == 0
    # DataParallel replicates the variables; ModelParallel splits the kernels as mapped
    assert kernels == (["P(None, None)"] * 2 if kind == "data" else ["P('model', None)"] * 2)


def test_outer_momentum_buffers_are_state_placed_like_the_variables():
    result = _run("model", "snoo")
    assert result["devices"] == 2 and result["iterations"] == 12 and result["buffers"] == 4
    assert result["max_rel_diff"] < 1e-5  # weights, slow weights and buffers
    for p in result["placement"]:
        assert p["buffer_same"] and p["slow_same"], p
