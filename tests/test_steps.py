"""The sync on values (algorithm.py), and the execution steps that gate and write it (_steps.py).

That every step follows the numpy reference step by step, in every mode, is test_reference.py
(and test_outer_momentum.py for μ > 0); here: the sync against hand-computed values, which step
runs where, and what the steps promise beyond the values (the host-counted step reads nothing
from the device per step; no step reaches into Lookahead's private members).
"""

import re

import numpy as np
import pytest
import keras
from keras import ops

from keras_lookahead import Lookahead, _steps
from keras_lookahead import algorithm
from tests.execution_modes import BACKEND, MODES, make_step, tf_only


# -- the sync on values ---------------------------------------------------------------------------

def _t(values, dtype="float32"):
    return ops.convert_to_tensor(np.asarray(values, dtype))


def _np(values):
    return [ops.convert_to_numpy(v).tolist() for v in values]


def _inputs(fast, slow, buffer=(), moment=(), cached=(), held_fast=(), held_moment=()):
    return algorithm.SyncInputs(*([_t(v) for v in part] for part in (
        fast, slow, buffer, moment, cached, held_fast, held_moment)))


def _sync(inputs, alpha, momentum=0.0, nesterov=True, policy="maintain", slow_like=(),
          cached_like=()):
    outer = algorithm.Outer(alpha, momentum, nesterov, policy)
    return algorithm.sync(inputs, outer, [_t(v) for v in slow_like],
                          [_t(v) for v in cached_like], algorithm.KerasListOps)


def test_lookahead_sync_moves_a_fraction_alpha_towards_the_fast_weights():
    new = _sync(_inputs(fast=[[2.0, 0.0]], slow=[[0.0, 4.0]]), 0.25)
    assert _np(new.slow) == [[0.5, 3.0]] and _np(new.fast) == [[0.5, 3.0]]  # 0 + ¼·2, 4 − ¼·4
    assert new.buffer == [] and new.moment == [] and new.cached == []
    inputs = _inputs(fast=[[2.0, 0.0]], slow=[[0.0, 4.0]])
    new = _sync(inputs, 1.0)
    assert new.fast[0] is inputs.fast[0]  # α = 1: the fast weights as they are, exactly
    assert _np(new.slow) == [[2.0, 0.0]]


def test_outer_momentum_by_hand_nesterov_and_plain():
    # φ = 1, θ = 0.5: s = 0.5; b = 0.2 → b' = 0.9·0.2 + 0.5 = 0.68.
    # Nesterov: φ' = 1 − 0.8·(0.9·0.68 + 0.5) = 1 − 0.8·1.112 = 0.1104; plain: 1 − 0.8·0.68.
    inputs = _inputs(fast=[[0.5]], slow=[[1.0]], buffer=[[0.2]])
    new = _sync(inputs, 0.8, momentum=0.9)
    np.testing.assert_allclose(_np(new.buffer), [[0.68]], rtol=1e-6)
    np.testing.assert_allclose(_np(new.slow), [[0.1104]], rtol=1e-5)
    np.testing.assert_allclose(_np(new.fast), [[0.1104]], rtol=1e-5)
    new = _sync(_inputs(fast=[[0.5]], slow=[[1.0]], buffer=[[0.2]]), 0.8, momentum=0.9,
                nesterov=False)
    np.testing.assert_allclose(_np(new.slow), [[1 - 0.8 * 0.68]], rtol=1e-6)
    np.testing.assert_allclose(_np(new.buffer), [[0.68]], rtol=1e-6)


def test_inner_state_policies_on_the_moments():
    m, m_prev = [[2.0, -4.0]], [[1.0, 0.0]]
    new = _sync(_inputs([[0.0, 0.0]], [[0.0, 0.0]], moment=m), 0.25, policy="reset")
    assert _np(new.moment) == [[0.0, 0.0]] and new.cached == []
    new = _sync(_inputs([[0.0, 0.0]], [[0.0, 0.0]], moment=m, cached=m_prev), 0.25,
                policy="interpolate")
    assert _np(new.moment) == [[1.25, -1.0]] == _np(new.cached)  # ¼·2 + ¾·1, ¼·(−4) + ¾·0


def test_held_variables_keep_their_value_and_their_slow_weights_follow():
    new = _sync(_inputs([[1.0]], [[0.0]], held_fast=[[7.0]], held_moment=[[3.0]]), 0.5,
                slow_like=[[0.0]], cached_like=[[0.0]])
    assert _np(new.held_slow) == [[7.0]] and _np(new.held_cached) == [[3.0]]


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's in-place list operations")
@pytest.mark.parametrize("alpha", [0.25, 0.8, 1.0])
@pytest.mark.parametrize("momentum, nesterov", [(0.0, True), (0.75, True), (0.5, False)])
@pytest.mark.parametrize("policy", ["maintain", "reset", "interpolate"])
def test_torch_in_place_sync_gives_what_keras_ops_give(alpha, momentum, nesterov, policy):
    import torch

    shapes = [(3,), (2, 2)]

    def inputs():
        r = np.random.default_rng(1)
        return [[torch.tensor(r.normal(size=s).astype("float32")) for s in shapes]
                for _ in range(5)]

    fast, slow, buffer, moment, cached = inputs()
    parts = dict(fast=fast, slow=slow, buffer=buffer if momentum else [],
                 moment=moment if policy != "maintain" else [],
                 cached=cached if policy == "interpolate" else [], held_fast=[], held_moment=[])
    outer = algorithm.Outer(alpha, momentum, nesterov, policy)
    expected = algorithm.sync(algorithm.SyncInputs(**{k: [t.clone() for t in v]
                                                      for k, v in parts.items()}),
                              outer, [], [], algorithm.KerasListOps)
    got = algorithm.sync(algorithm.SyncInputs(**parts), outer, [], [], _steps.TorchListOps())
    for name in expected._fields:
        for e, g in zip(getattr(expected, name), getattr(got, name)):
            np.testing.assert_allclose(ops.convert_to_numpy(g), ops.convert_to_numpy(e),
                                       rtol=1e-6, atol=1e-7, err_msg=name)


def test_a_sync_is_due_at_every_kth_applied_update_on_host_and_device_alike():
    k = 3
    expected = [(n, n // k - 1) for n in range(1, 13) if n % k == 0]  # (count, syncs before)
    host = [(n, algorithm.since_sync_at(n, k)[1]) for n in range(1, 13)
            if algorithm.sync_is_due(True, algorithm.since_sync_at(n, k)[0], k)]
    assert host == expected
    counts = ops.convert_to_tensor(np.arange(0, 13), "int64")
    since, done = algorithm.since_sync_at(counts, k)
    due = ops.convert_to_numpy(algorithm.sync_is_due(ops.greater(counts, 0), since, k))
    assert [(n, int(ops.convert_to_numpy(done)[n])) for n in np.flatnonzero(due)] == expected
    assert not algorithm.sync_is_due(False, k, k)  # no applied update, no sync


def test_no_step_reaches_into_lookaheads_private_members():
    """The steps see a Lookahead through StepInterface's public methods only."""
    import inspect

    source = inspect.getsource(_steps)
    assert not re.findall(r"\b(?:la|lookahead|self\.lookahead)\._\w+", source)
    from keras_lookahead.lookahead import StepInterface

    assert type(Lookahead(keras.optimizers.SGD())._step.lookahead) is StepInterface


# -- which step runs where ------------------------------------------------------------------------

def test_the_step_is_chosen_by_backend():
    expected = {"tensorflow": _steps.TensorFlowStep, "jax": _steps.JaxSelectStep,
                "torch": _steps.HostCountedStep}[BACKEND]
    assert type(Lookahead(keras.optimizers.SGD())._step) is expected


@tf_only
@pytest.mark.parametrize("mode, form", [("eager", "CondStep"), ("graph", "CondStep"),
                                        ("xla", "TensorFlowSelectStep")])
def test_tensorflow_picks_the_step_when_it_is_traced(monkeypatch, mode, form):
    ran = []
    for cls in (_steps.CondStep, _steps.TensorFlowSelectStep):
        original = cls.step

        def spy(self, grads, variables, _original=original, _name=cls.__name__):
            ran.append(_name)
            return _original(self, grads, variables)

        monkeypatch.setattr(cls, "step", spy)
    x = keras.Variable(np.ones(3, np.float32))
    opt = Lookahead(keras.optimizers.SGD(0.1), sync_period=2)
    opt.build([x])
    step = make_step(opt, [x], lambda: [ops.ones_like(x)], mode)
    for _ in range(3):
        step()
    assert set(ran) == {form}
    # Step 2 syncs: φ = 1 + ½(0.8 − 1) = 0.9; step 3 takes 0.1 more.
    np.testing.assert_allclose(ops.convert_to_numpy(x), 1 - 0.1 - 0.1, rtol=1e-6)


# -- the host-counted step ------------------------------------------------------------------------

class _CountingOps:
    """keras.ops with a count of device-to-host reads."""

    def __init__(self):
        self.reads = 0

    def convert_to_numpy(self, x):
        self.reads += 1
        return ops.convert_to_numpy(x)

    def __getattr__(self, name):
        return getattr(ops, name)


@pytest.mark.skipif(BACKEND != "torch", reason="the host-counted step is PyTorch's")
@pytest.mark.parametrize("wrapped", [False, True])
def test_host_counted_steps_read_the_device_once_or_once_per_step_for_a_wrapper(
        monkeypatch, wrapped):
    counting = _CountingOps()
    monkeypatch.setattr(_steps, "ops", counting)
    monkeypatch.setattr(algorithm, "ops", counting)
    inner = keras.optimizers.SGD(0.1, momentum=0.9)
    if wrapped:
        inner = keras.optimizers.LossScaleOptimizer(inner)
    x = keras.Variable(np.ones(3, np.float32))
    opt = Lookahead(inner, sync_period=3)
    opt.build([x])
    for _ in range(10):
        opt.apply([ops.ones_like(x)], [x])
    # A plain optimizer: the count once, after build. A wrapper (it may skip a step on its own):
    # its count after each of its updates, the same kind of read it makes itself.
    assert counting.reads == (1 + 10 if wrapped else 1)


@pytest.mark.parametrize("mode", MODES)
def test_slow_weights_captured_at_first_update_not_at_build(mode):
    # Weights changed after build (e.g. loaded) are what the slow weights start from. Under TF's
    # XLA the capture happens when the step is traced (before its first run), not per step.
    x = keras.Variable(np.zeros(2, np.float32))
    opt = Lookahead(keras.optimizers.SGD(1.0), sync_period=2, slow_step_size=0.5)
    opt.build([x])
    x.assign(np.array([4.0, 8.0], np.float32))
    step = make_step(opt, [x], lambda: [ops.ones(2)], mode)
    for _ in range(2):
        step()
    if mode == "jit":
        # Documented limitation: inside jax.jit the counter is traced, so the slow weights keep
        # their value from build (0, 0): φ1 = ½ θ2 = ½ (θ0 − 2) = (1, 3).
        np.testing.assert_array_equal(ops.convert_to_numpy(x), [1.0, 3.0])
    else:
        # φ0 = (4, 8); θ2 = θ0 − 2; φ1 = φ0 + ½(θ2 − φ0) = φ0 − 1
        np.testing.assert_array_equal(ops.convert_to_numpy(x), [3.0, 7.0])
