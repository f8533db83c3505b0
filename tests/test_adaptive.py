"""Adaptive slow step size (paper Sec. 2.1, Prop. 1) against the numpy reference."""

import numpy as np
import pytest
import keras
from keras import ops

from keras_lookahead import Lookahead
from tests import reference
from tests.execution_modes import BACKEND, MODES, make_step
from tests.quadratic import THETA0, grad_keras, grad_np

# L(x) = ½ xᵀAx − bᵀx with A diagonal. SGD with momentum 0.9 and lr 0.005 over 25 steps, k = 5:
# the five estimates α* are about 0.75, 1.10, −0.95, 0.56, 0.71, so with α_low = 0.6 the clip
# acts from above (1.10 → 1), from below (−0.95, 0.56 → 0.6) and not at all (0.75, 0.71).
A = np.array([1.0, 10.0, 50.0, 3.0], np.float32)
B = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
X0 = np.array([2.0, 1.0, -1.0, 0.5], np.float32)
ALPHA_LOW = 0.6


def _run(opt, x, grads, mode, steps, after_sync):
    opt.build([x])
    step = make_step(opt, [x], grads, mode)
    fast, estimates, used = [], [], []
    for t in range(1, steps + 1):
        step()
        fast.append(ops.convert_to_numpy(x).copy())
        if t % after_sync == 0:
            estimates.append(float(ops.convert_to_numpy(opt.slow_step_size_estimate)))
            used.append(float(ops.convert_to_numpy(opt.last_slow_step_size)))
    return np.array(fast), estimates, used


def _sgd_reference():
    """Algorithm 1 with SGD momentum and Prop. 1's α on the quadratic, its true curvature A:
    (the record of α*, the history)."""
    record = {}
    history = reference.lookahead(reference.SGD(0.005, momentum=0.9), X0, lambda v: A * v - B,
                                  25, 5, ("adaptive", ALPHA_LOW, lambda state, t: A),
                                  record=record)
    return record, history


@pytest.mark.parametrize("mode", MODES)
def test_estimate_is_prop_1_with_the_true_curvature(mode):
    x = keras.Variable(X0.copy())
    opt = Lookahead(keras.optimizers.SGD(0.005, momentum=0.9), sync_period=5,
                    slow_step_size="adaptive", min_slow_step_size=ALPHA_LOW,
                    curvature=lambda variables: [ops.convert_to_tensor(A)])
    grads = lambda: [ops.subtract(ops.multiply(A, x), B)]  # noqa: E731  exact gradients
    fast, estimates, used = _run(opt, x, grads, mode, 25, 5)

    record, history = _sgd_reference()
    np.testing.assert_allclose(estimates, record["estimate"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(used, np.clip(record["estimate"], ALPHA_LOW, 1.0), rtol=1e-5)
    np.testing.assert_allclose(fast, [h[0] for h in history], rtol=1e-4, atol=1e-6)
    # all three cases of the clip occur
    assert max(estimates) > 1 and min(estimates) < ALPHA_LOW
    assert any(ALPHA_LOW < e < 1 for e in estimates)


@pytest.mark.parametrize("mode", MODES)
def test_the_estimate_unscales_gradients_of_a_scaled_loss(mode):
    # With SGD(loss_scale_factor=8) inside, the trainer scales the loss by 8 (Lookahead's
    # scale_loss is the inner's) and SGD unscales its gradients; so must the estimate's gᵀd.
    x = keras.Variable(X0.copy())
    opt = Lookahead(keras.optimizers.SGD(0.005, momentum=0.9, loss_scale_factor=8.0),
                    sync_period=5, slow_step_size="adaptive", min_slow_step_size=ALPHA_LOW,
                    curvature=lambda variables: [ops.convert_to_tensor(A)])
    assert opt.loss_scale_factor == 8.0
    grads = lambda: [ops.multiply(8.0, ops.subtract(ops.multiply(A, x), B))]  # noqa: E731
    fast, estimates, _ = _run(opt, x, grads, mode, 25, 5)
    record, history = _sgd_reference()
    np.testing.assert_allclose(estimates, record["estimate"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast, [h[0] for h in history], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_adam_curvature_is_its_bias_corrected_second_moment(mode):
    x = keras.Variable(THETA0.copy())
    opt = Lookahead(keras.optimizers.Adam(0.01), sync_period=3, slow_step_size="adaptive",
                    min_slow_step_size=0.2)
    fast, estimates, used = _run(opt, x, lambda: [grad_keras(x)], mode, 12, 3)

    record = {}
    ref_adam = reference.Adam(0.01)
    history = reference.lookahead(
        ref_adam, THETA0, grad_np, 12, 3,
        ("adaptive", 0.2, lambda state, t: state["v"] / (1 - ref_adam.b2**t)), record=record)
    np.testing.assert_allclose(estimates, record["estimate"], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(used, np.clip(record["estimate"], 0.2, 1.0), rtol=1e-3)
    np.testing.assert_allclose(fast, [h[0] for h in history], rtol=2e-5, atol=2e-6)


def test_no_movement_takes_the_full_step():
    # Zero gradients: the fast weights do not move, d = 0, and α̂ is defined as 1.
    x = keras.Variable(np.ones(3, np.float32))
    opt = Lookahead(keras.optimizers.Adam(0.1), sync_period=2, slow_step_size="adaptive")
    for _ in range(2):
        opt.apply([ops.zeros((3,))], [x])
    assert float(ops.convert_to_numpy(opt.slow_step_size_estimate)) == 1.0
    np.testing.assert_array_equal(ops.convert_to_numpy(x), np.ones(3, np.float32))


# without jit, JAX runs fit op by op (17 s here): slow, so that it starts first
@pytest.mark.parametrize("jit", [pytest.param(False, marks=pytest.mark.slow)]
                         + ([True] if BACKEND != "torch" else []))
def test_fit_with_adaptive_alpha(jit):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 6)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(6, 1))).astype("float32")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    opt = Lookahead(keras.optimizers.Adam(0.01), slow_step_size="adaptive")
    model.compile(optimizer=opt, loss="mse", jit_compile=jit)
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=10, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.3 * first
    assert 0.5 <= float(ops.convert_to_numpy(opt.last_slow_step_size)) <= 1.0
    config = opt.get_config()
    assert config["slow_step_size"] == "adaptive" and config["min_slow_step_size"] == 0.5
    clone = Lookahead.from_config(config)
    assert clone.slow_step_size == "adaptive" and clone.min_slow_step_size == 0.5
