"""Algorithm 1's functions on values, and the execution forms that run them (_forms.py).

That every form follows the numpy reference step by step, in every mode, is test_reference.py;
here: the shared functions against hand-computed values, which form runs where, and what the
forms promise beyond the values (the host-counted form reads nothing from the device per step).
"""

import numpy as np
import pytest
import keras
from keras import ops

from keras_lookahead import Lookahead, _forms
from keras_lookahead import algorithm
from tests.execution_modes import BACKEND, MODES, make_step, tf_only


# -- Algorithm 1 on values ------------------------------------------------------------------------

def test_slow_update_moves_a_fraction_alpha_towards_the_fast_weights():
    slow, fast = np.array([0.0, 4.0], np.float32), np.array([2.0, 0.0], np.float32)
    new = algorithm.slow_update(ops.convert_to_tensor(slow), ops.convert_to_tensor(fast), 0.25)
    np.testing.assert_allclose(ops.convert_to_numpy(new), [0.5, 3.0])  # 0 + ¼·2, 4 − ¼·4
    fast_t = ops.convert_to_tensor(fast)
    assert algorithm.slow_update(ops.convert_to_tensor(slow), fast_t, 1.0) is fast_t  # exact


def test_momentum_update_resets_or_interpolates_with_the_cached_moment():
    m, m_prev = ops.convert_to_tensor([2.0, -4.0]), ops.convert_to_tensor([1.0, 0.0])
    np.testing.assert_array_equal(
        ops.convert_to_numpy(algorithm.momentum_update("reset", m, m_prev, 0.25)), [0.0, 0.0])
    np.testing.assert_allclose(  # ¼·2 + ¾·1, ¼·(−4) + ¾·0
        ops.convert_to_numpy(algorithm.momentum_update("interpolate", m, m_prev, 0.25)),
        [1.25, -1.0])


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


# -- which form runs where ------------------------------------------------------------------------

def test_the_form_is_chosen_by_backend():
    expected = {"tensorflow": _forms.TensorFlowForms, "jax": _forms.JaxSelects,
                "torch": _forms.HostCounted}[BACKEND]
    assert type(_forms.for_backend(Lookahead(keras.optimizers.SGD()))) is expected


@tf_only
@pytest.mark.parametrize("mode, form", [("eager", "Branch"), ("graph", "Branch"),
                                        ("xla", "TensorFlowSelects")])
def test_tensorflow_picks_the_form_when_a_step_is_traced(monkeypatch, mode, form):
    ran = []
    for cls in (_forms.Branch, _forms.TensorFlowSelects):
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


# -- the host-counted form ------------------------------------------------------------------------

class _CountingOps:
    """keras.ops with a count of device-to-host reads."""

    def __init__(self):
        self.reads = 0

    def convert_to_numpy(self, x):
        self.reads += 1
        return ops.convert_to_numpy(x)

    def __getattr__(self, name):
        return getattr(ops, name)


@pytest.mark.skipif(BACKEND != "torch", reason="the host-counted form is PyTorch's")
@pytest.mark.parametrize("wrapped", [False, True])
def test_host_counted_steps_read_the_device_once_or_once_per_step_for_a_wrapper(
        monkeypatch, wrapped):
    counting = _CountingOps()
    monkeypatch.setattr(_forms, "ops", counting)
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
