"""Slow weights at full precision for 16-bit variables (`slow_dtype`).

The hand-computed case: a bfloat16 weight at 1.0, plain SGD with learning rate 2⁻⁸ and gradient 1
(each step moves the weight by exactly one bfloat16 step below 1.0, 2⁻⁸), a sync after every
step with α = 1/2. The sync's target φ + α(θ − φ) = 1 − 2⁻⁹ lies exactly halfway between the
bfloat16 neighbours 1 − 2⁻⁸ and 1.0, and rounds to the even one, 1.0:

- slow weights in bfloat16 (`slow_dtype="variable"`, what every other Lookahead does): the move is
  lost at every sync, and the weight stays at 1.0 for ever;
- slow weights in float32 (the default for 16-bit variables): φ keeps the move (1 − 2⁻⁹ after
  the first sync, 1 − 3·2⁻¹⁰ after the second, ...) and the weight follows it, rounded.
"""

import numpy as np
import pytest

import keras
from keras import ops

from keras_lookahead import Lookahead, restore_fast_weights, use_slow_weights
from tests.execution_modes import BACKEND, MODES, make_step

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = ml_dtypes.bfloat16


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")))


def _setup(slow_dtype, mode, steps, inner_state="maintain", optimizer=None):
    var = keras.Variable(np.ones(4), dtype="bfloat16", name="w")
    opt = Lookahead(optimizer or keras.optimizers.SGD(2.0 ** -8), sync_period=1,
                    slow_step_size=0.5, inner_state=inner_state, slow_dtype=slow_dtype)
    opt.build([var])
    step = make_step(opt, [var], lambda: [ops.ones((4,), dtype="bfloat16")], mode)
    for _ in range(steps):
        step()
    return var, opt


def _reference(steps):
    """φ in float32 and θ in bfloat16, the sync computed in float32 (numpy, from Algorithm 1)."""
    theta = np.ones(4, BF16)
    phi = np.ones(4, np.float32)
    for _ in range(steps):
        theta = (theta.astype(np.float32) - np.float32(2.0 ** -8)).astype(BF16)  # SGD, exact
        phi = phi + np.float32(0.5) * (theta.astype(np.float32) - phi)
        theta = phi.astype(BF16)
    return theta.astype(np.float32), phi


def test_the_reference_moves_as_computed_by_hand():
    theta, phi = _reference(1)
    np.testing.assert_array_equal(phi, 1 - 2.0 ** -9)
    np.testing.assert_array_equal(theta, 1.0)  # the tie rounds to the even neighbour
    theta, phi = _reference(2)
    np.testing.assert_array_equal(phi, 1 - 3 * 2.0 ** -10)
    np.testing.assert_array_equal(theta, 1 - 2.0 ** -8)


@pytest.mark.parametrize("mode", MODES)
def test_16_bit_slow_weights_lose_the_move(mode):
    var, opt = _setup("variable", mode, steps=6)
    assert keras.backend.standardize_dtype(opt.slow_weights[0].dtype) == "bfloat16"
    np.testing.assert_array_equal(_numpy(var), 1.0)
    np.testing.assert_array_equal(_numpy(opt.slow_weights[0]), 1.0)


@pytest.mark.parametrize("mode", MODES)
def test_float32_slow_weights_keep_the_move(mode):
    var, opt = _setup(None, mode, steps=6)
    slow = opt.slow_weights[0]
    assert keras.backend.standardize_dtype(slow.dtype) == "float32"
    assert keras.backend.standardize_dtype(var.dtype) == "bfloat16"
    theta, phi = _reference(6)
    np.testing.assert_array_equal(_numpy(slow), phi)
    np.testing.assert_array_equal(_numpy(var), theta)
    assert np.all(phi < 1 - 2.0 ** -8)  # moved by more than one bfloat16 step


@pytest.mark.parametrize("mode", MODES)
def test_evaluating_on_the_slow_weights_loses_nothing(mode):
    var, opt = _setup(None, mode, steps=3)
    theta, phi = _reference(3)
    use_slow_weights(opt)
    np.testing.assert_array_equal(_numpy(var), phi.astype(BF16).astype(np.float32))
    np.testing.assert_array_equal(_numpy(opt.slow_weight(var)), phi)  # still exact
    restore_fast_weights(opt)
    np.testing.assert_array_equal(_numpy(var), theta)
    np.testing.assert_array_equal(_numpy(opt.slow_weights[0]), phi)
    # and training goes on from there as if nothing had happened
    step = make_step(opt, [var], lambda: [ops.ones((4,), dtype="bfloat16")], mode)
    for _ in range(3):
        step()
    theta, phi = _reference(6)
    np.testing.assert_array_equal(_numpy(opt.slow_weights[0]), phi)
    np.testing.assert_array_equal(_numpy(var), theta)


def _own_variables(opt):
    inner = {id(v) for v in opt.inner_optimizer.variables}
    return [v for v in opt.variables if id(v) not in inner]


def test_float32_variables_are_unchanged_and_the_memory_is_what_is_said():
    w32 = keras.Variable(np.ones((3, 5)), dtype="float32", name="w32")
    w16 = keras.Variable(np.ones((7,)), dtype="bfloat16", name="w16")
    opt = Lookahead(keras.optimizers.SGD(0.1, momentum=0.9), inner_state="interpolate")
    opt.build([w32, w16])
    dtypes = [keras.backend.standardize_dtype(s.dtype) for s in opt.slow_weights]
    assert dtypes == ["float32", "float32"]
    own = _own_variables(opt)

    def nbytes(v):
        return int(np.prod(v.shape)) * np.dtype(
            keras.backend.standardize_dtype(v.dtype).replace("bfloat16", "float16")).itemsize

    # float32 variable: slow weight + cached momentum, 4 bytes each per parameter; bfloat16
    # variable: the same in float32, plus a bfloat16 place for the fast weights while the model
    # holds the slow ones (2 bytes per parameter); then the few scalars of the schedule state.
    arrays = [v for v in own if len(v.shape)]
    assert sum(nbytes(v) for v in arrays) == 15 * (4 + 4) + 7 * (4 + 4 + 2)
    same = Lookahead(keras.optimizers.SGD(0.1, momentum=0.9), inner_state="interpolate",
                     slow_dtype="variable")
    same.build([keras.Variable(np.ones((7,)), dtype="bfloat16", name="w16")])
    arrays = [v for v in _own_variables(same) if len(v.shape)]
    assert sum(nbytes(v) for v in arrays) == 7 * (2 + 2)


@pytest.mark.parametrize("mode", MODES)
def test_interpolated_momentum_is_cached_in_float32(mode):
    # SGD with momentum 0.5 and lr 2⁻⁸ on gradient 1: m = 0.5 m − 2⁻⁸ ... in bfloat16. At each sync
    # (every step) the momentum becomes α m + (1 − α) m_prev, computed in float32, and the cache
    # keeps the float32 value.
    var, opt = _setup(None, mode, steps=1, inner_state="interpolate",
                      optimizer=keras.optimizers.SGD(2.0 ** -8, momentum=0.5))
    (cached,) = [v for v in opt._cached_moments if v is not None]
    assert keras.backend.standardize_dtype(cached.dtype) == "float32"
    # step 1: Keras's SGD: m = 0.5·0 − 2⁻⁸·1 = −2⁻⁸; the cache starts at 0, so the sync makes
    # m = 0.5·(−2⁻⁸) + 0.5·0 = −2⁻⁹ (exact in bfloat16 too)
    np.testing.assert_array_equal(_numpy(cached), -(2.0 ** -9))


@pytest.mark.parametrize("value, message", [
    ("float16", "slow_dtype"), (32, "slow_dtype"), ("same", "'variable'"),
])
def test_bad_slow_dtype_is_refused_with_its_name(value, message):
    with pytest.raises(ValueError, match=message):
        Lookahead(keras.optimizers.SGD(0.1), slow_dtype=value)


def test_slow_dtype_is_saved_in_the_config():
    opt = Lookahead(keras.optimizers.SGD(0.1), slow_dtype="variable")
    again = Lookahead.from_config(opt.get_config())
    assert again.slow_dtype == "variable"
    assert Lookahead.from_config({k: v for k, v in Lookahead(
        keras.optimizers.SGD(0.1)).get_config().items() if k != "slow_dtype"}).slow_dtype is None


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's multi-tensor sync")
def test_torch_mixed_dtypes_in_one_sync():
    # float32 and bfloat16 variables synced together: the multi-tensor ops take one dtype per
    # list, so the two kinds of pairs go through the sync separately
    w32 = keras.Variable(np.ones(4), dtype="float32", name="w32")
    w16 = keras.Variable(np.ones(4), dtype="bfloat16", name="w16")
    opt = Lookahead(keras.optimizers.SGD(2.0 ** -8), sync_period=1, slow_step_size=0.5)
    opt.build([w32, w16])
    opt.apply([ops.ones((4,)), ops.ones((4,), dtype="bfloat16")], [w32, w16])
    np.testing.assert_array_equal(_numpy(w32), 1 - 2.0 ** -9)
    np.testing.assert_array_equal(_numpy(opt.slow_weights[1]), 1 - 2.0 ** -9)
    np.testing.assert_array_equal(_numpy(w16), 1.0)
