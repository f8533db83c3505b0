"""The examples run as documented (each in its own process, as a user runs them) and refuse bad
arguments with a message that names them."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import BACKEND, tf_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, EXAMPLES)


def _run(script, *args, env=None):
    argv = [sys.executable, os.path.join(EXAMPLES, script), *args]
    out = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, **(env or {})),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    return out.stdout


def _accuracy(stdout):
    (value,) = re.findall(r"test accuracy of the slow weights ([0-9.]+)", stdout)
    return float(value)


@tf_only
def test_mirrored_fit_on_two_cpu_replicas_learns():
    out = _run("distributed.py", "--strategy", "mirrored", "--cpu-replicas", "2", "--epochs", "2")
    assert "2 replica(s)" in out
    assert _accuracy(out) > 0.6  # ten classes: chance is 0.1


@tf_only
@pytest.mark.multiworker
def test_local_two_worker_cluster_equals_two_mirrored_replicas():
    # Both split every global batch of 64 over two replicas and train with the same custom loop,
    # so the slow weights, and the accuracy, come out the same.
    cluster = _run("distributed.py", "--strategy", "multiworker", "--local-workers", "2",
                   "--epochs", "2")
    mirrored = _run("distributed.py", "--strategy", "mirrored", "--cpu-replicas", "2",
                    "--custom-loop", "--jit-compile", "--epochs", "2")
    assert "multiworker, 2 replica(s)" in cluster
    assert _accuracy(cluster) == _accuracy(mirrored) > 0.6


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution runs on JAX")
@pytest.mark.parametrize("strategy", ["data-parallel", "model-parallel"])
def test_jax_distributions_learn(strategy):
    out = _run("distributed.py", "--strategy", strategy, "--epochs", "2",
               env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert _accuracy(out) > 0.6


@pytest.mark.parametrize("args, message", [
    (["--cpu-replicas", "2"], "--cpu-replicas 2: only with --strategy mirrored"),
    (["--local-workers", "2"], "--local-workers: only with --strategy multiworker"),
    (["--epochs", "0"], "--epochs 0: must be 1 or more"),
    (["--slow-step-size", "1.5"], "--slow-step-size 1.5: must be in (0, 1]"),
    (["--strategy", "data-parallel", "--custom-loop"], "--custom-loop: for TensorFlow"),
])
def test_distributed_example_refuses_bad_arguments(args, message, capsys):
    import distributed
    import _distribute

    with pytest.raises(SystemExit) as exit_:
        _distribute.make(distributed.parse_args(args))
    said = capsys.readouterr().err + str(exit_.value.code)  # argparse prints; make() raises
    assert message in said, said


def test_strategy_for_the_other_backend_is_refused_with_the_fix():
    import _distribute
    import distributed

    other = "mirrored" if BACKEND != "tensorflow" else "data-parallel"
    with pytest.raises(SystemExit, match=f"--strategy {other} .*KERAS_BACKEND="):
        _distribute.make(distributed.parse_args(["--strategy", other]))


def test_fit_based_examples_refuse_multiworker_with_the_reason():
    import _distribute
    import distributed

    with pytest.raises(SystemExit, match="keras #20585"):
        _distribute.make(distributed.parse_args(["--strategy", "multiworker"]), fit=True)
