"""Lookahead against the independent numpy implementation of Algorithm 1, step by step."""

import numpy as np
import pytest
import keras
from keras import ops

from keras_lookahead import Lookahead
from tests import reference
from tests.execution_modes import MODES, make_step
from tests.quadratic import INNERS, THETA0, grad_keras, grad_np

STEPS = 11  # not a multiple of 3 or 5: the run ends between syncs


def run_keras(make_inner, k, alpha, inner_state, mode):
    x = keras.Variable(THETA0.copy())
    opt = Lookahead(make_inner(), sync_period=k, slow_step_size=alpha, inner_state=inner_state)
    opt.build([x])
    step = make_step(opt, [x], lambda: [grad_keras(x)], mode)
    fast, slow = [], []
    for _ in range(STEPS):
        step()
        fast.append(ops.convert_to_numpy(x).copy())
        slow.append(ops.convert_to_numpy(opt.slow_weight(x)).copy())
    return np.array(fast), np.array(slow), opt


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inner_state", ["maintain", "reset", "interpolate"])
@pytest.mark.parametrize("alpha", [0.5, 0.8, 1.0])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("inner", sorted(INNERS))
def test_matches_numpy_algorithm_1(inner, k, alpha, inner_state, mode):
    make_keras, make_ref = INNERS[inner]
    fast, slow, opt = run_keras(make_keras, k, alpha, inner_state, mode)
    history = reference.lookahead(make_ref(), THETA0, grad_np, STEPS, k, alpha, inner_state)
    ref_fast = np.array([h[0] for h in history])
    ref_slow = np.array([h[1] for h in history])
    # Both in float32; op order and fused multiply-adds differ, so allow a few ulps of drift.
    np.testing.assert_allclose(fast, ref_fast, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(slow, ref_slow, rtol=2e-5, atol=2e-6)
    # The inner optimizer's first moment follows the policy too.
    m = opt.inner_optimizer.variables[2]  # iteration, learning_rate, then the momentum slot
    np.testing.assert_allclose(ops.convert_to_numpy(m), history[-1][2]["m"], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("mode", MODES)
def test_hand_computed_trajectory(mode):
    # L = ½x², SGD lr 0.5 halves x each step; k=3, α=1/3 from x=1:
    # θ: 1/2, 1/4, 1/8 → φ1 = 1 + (1/8 − 1)/3 = 17/24; then 17/48, 17/96, 17/192 →
    # φ2 = 17/24 + (17/192 − 17/24)/3 = (17/24)².
    x = keras.Variable(np.array([1.0], np.float32))
    opt = Lookahead(keras.optimizers.SGD(0.5), sync_period=3, slow_step_size=1 / 3)
    opt.build([x])
    step = make_step(opt, [x], lambda: [ops.convert_to_tensor(x)], mode)
    got = []
    for _ in range(6):
        step()
        got.append(float(ops.convert_to_numpy(x)[0]))
    expected = [1 / 2, 1 / 4, 17 / 24, 17 / 48, 17 / 96, (17 / 24) ** 2]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(opt.slow_weight(x)), [(17 / 24) ** 2],
                               rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [1, 4])
def test_alpha_one_is_the_inner_optimizer_exactly(mode, k):
    # φ + 1·(θ − φ) = θ: with α = 1 a sync changes nothing, bit for bit.
    def run(make_opt):
        x = keras.Variable(THETA0.copy())
        opt = make_opt()
        opt.build([x])
        step = make_step(opt, [x], lambda: [grad_keras(x)], mode)
        for _ in range(9):
            step()
        return ops.convert_to_numpy(x)

    plain = run(lambda: keras.optimizers.Adam(0.05))
    wrapped = run(lambda: Lookahead(keras.optimizers.Adam(0.05), sync_period=k, slow_step_size=1.0))
    np.testing.assert_array_equal(wrapped, plain)


def test_k1_syncs_every_step():
    # k = 1, α = 0.5: each step moves the slow weights half-way to the SGD step: x ← x − lr·g/2.
    x = keras.Variable(np.array([2.0], np.float32))
    opt = Lookahead(keras.optimizers.SGD(0.5), sync_period=1, slow_step_size=0.5)
    for _ in range(3):
        opt.apply([ops.convert_to_tensor(x)], [x])
    # each step: θ = x − 0.5x = x/2; φ = x + 0.5(x/2 − x) = 3x/4
    np.testing.assert_allclose(ops.convert_to_numpy(x), [2.0 * 0.75**3], rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(opt.slow_weight(x)), [2.0 * 0.75**3], rtol=1e-6)
