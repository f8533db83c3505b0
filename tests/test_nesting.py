"""Multilayer Lookahead (Pushkin & Barba, 2021): a Lookahead whose inner optimizer is a
Lookahead, against the numpy reference of the recursive algorithm (tests/reference.py), in every
execution mode of this backend; and what nesting refuses."""

import numpy as np
import pytest
import keras
from keras import ops

from keras_lookahead import Lookahead
from tests import reference
from tests.execution_modes import MODES, make_step
from tests.quadratic import THETA0, grad_keras, grad_np

STEPS = 13  # ends inside the third outer period


def _run(levels, mode, steps=STEPS):
    """levels: [(k, α), ...] innermost first, k in inner updates; each level's trajectory."""
    opt = keras.optimizers.SGD(0.05, momentum=0.9)
    stack = []
    for k, alpha in levels:
        opt = Lookahead(opt, sync_period=k, slow_step_size=alpha)
        stack.append(opt)
    x = keras.Variable(THETA0.copy())
    opt.build([x])
    step = make_step(opt, [x], lambda: [grad_keras(x)], mode)
    fast, slows = [], []
    for _ in range(steps):
        step()
        fast.append(ops.convert_to_numpy(x).copy())
        slows.append([ops.convert_to_numpy(la.slow_weight(x)).copy() for la in stack])
    return np.array(fast), np.array(slows), opt


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("levels", [[(2, 0.5), (4, 0.8)], [(3, 0.5), (3, 0.5)],
                                    [(2, 0.5), (4, 0.6), (8, 0.8)]])
def test_matches_the_recursive_algorithm(levels, mode):
    fast, slows, _ = _run(levels, mode)
    periods = [k for k, _ in levels]
    cycles = [periods[0]] + [outer // inner for inner, outer in zip(periods, periods[1:])]
    history = reference.multilayer(reference.SGD(0.05, momentum=0.9), THETA0, grad_np, STEPS,
                                   cycles, [a for _, a in levels])
    np.testing.assert_allclose(fast, np.array([h[0] for h in history]), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(slows, np.array([h[1] for h in history]), rtol=2e-5, atol=2e-6)


def test_the_reference_with_one_level_is_algorithm_1():
    history = reference.multilayer(reference.SGD(0.05, momentum=0.9), THETA0, grad_np, STEPS,
                                   [3], [0.5])
    one = reference.lookahead(reference.SGD(0.05, momentum=0.9), THETA0, grad_np, STEPS, 3, 0.5)
    np.testing.assert_array_equal(np.array([h[0] for h in history]),
                                  np.array([h[0] for h in one]))


def test_an_outer_sync_restarts_the_level_below_by_hand():
    # L = ½x², SGD lr 0.5 halves x; inner k 1, α ½ (each step moves x to ¾x); outer k 2, α ½:
    # step 1: θ = ¾ (inner sync); step 2: θ = 9/16 (inner sync), outer: φ = 1 + ½(9/16 − 1) =
    # 25/32, and the inner slow weight restarts there: 25/32, not 9/16.
    x = keras.Variable(np.array([1.0], np.float32))
    inner = Lookahead(keras.optimizers.SGD(0.5), sync_period=1, slow_step_size=0.5)
    outer = Lookahead(inner, sync_period=2, slow_step_size=0.5)
    outer.build([x])
    for _ in range(2):
        outer.apply([ops.convert_to_tensor(x)], [x])
    np.testing.assert_allclose(ops.convert_to_numpy(x), [25 / 32], rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(inner.slow_weight(x)), [25 / 32], rtol=1e-6)


def test_each_level_keeps_one_copy_of_the_weights():
    _, _, opt = _run([(2, 0.5), (4, 0.5)], "eager", steps=1)
    sgd = keras.optimizers.SGD(0.05, momentum=0.9)
    sgd.build([keras.Variable(THETA0.copy())])

    def floats(o):  # the weight-shaped state, not the scalar counters
        return sum(int(np.prod(v.shape)) for v in o.variables if len(v.shape))

    assert floats(opt) - floats(sgd) == 2 * THETA0.size


@pytest.mark.parametrize("outer, inner, message", [
    (5, 2, "sync_period=5 around a Lookahead with sync_period=2 (Multilayer Lookahead): the "
           "outer period must be a multiple of the inner one"),
    (lambda n: 4, 2, "needs constant sync periods"),
    (4, lambda n: 2, "needs constant sync periods"),
])
def test_outer_periods_that_miss_inner_syncs_are_refused(outer, inner, message):
    with pytest.raises(ValueError) as e:
        Lookahead(Lookahead(keras.optimizers.SGD(), sync_period=inner), sync_period=outer)
    assert message in str(e.value)
