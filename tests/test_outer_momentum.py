"""Outer momentum on the slow weights (SNOO; DiLoCo's outer step on one worker) against the
numpy reference (tests/reference.py, written from the SNOO equations), in every execution mode of
this backend; its special cases; its refusals; and its buffer as optimizer state (16-bit models,
schedules, config). A MultiOptimizer member with momentum: test_multi_optimizer.py; saving,
tf.distribute and keras.distribution of the buffer: test_saving.py, test_distributed.py and
test_jax_distribution.py."""

import numpy as np
import pytest
import keras
from keras import ops

from keras_lookahead import Lookahead
from keras_lookahead import algorithm
from tests import reference
from tests.execution_modes import MODES, make_step
from tests.quadratic import INNERS, THETA0, grad_keras, grad_np

STEPS = 11  # the run ends between syncs


def run_keras(make_lookahead, mode, steps=STEPS, theta0=THETA0, dtype="float32"):
    x = keras.Variable(theta0.copy(), dtype=dtype)
    opt = make_lookahead()
    opt.build([x])
    step = make_step(opt, [x], lambda: [ops.cast(grad_keras(ops.cast(x, "float32")), dtype)],
                     mode)
    fast, slow = [], []
    for _ in range(steps):
        step()
        fast.append(ops.convert_to_numpy(ops.cast(x, "float32")).copy())
        slow.append(ops.convert_to_numpy(ops.cast(opt.slow_weight(x), "float32")).copy())
    return np.array(fast), np.array(slow), opt


def reference_run(make_ref, k, alpha, momentum, nesterov=True, inner_state="maintain"):
    history = reference.lookahead(make_ref(), THETA0, grad_np, STEPS, k, alpha, inner_state,
                                  momentum=momentum, nesterov=nesterov)
    return np.array([h[0] for h in history]), np.array([h[1] for h in history]), history


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inner_state", ["maintain", "reset", "interpolate"])
@pytest.mark.parametrize("alpha, momentum, nesterov", [(0.8, 0.75, True), (1.3, 0.9, True),
                                                       (2.5, 0.5, False)])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("inner", sorted(INNERS))
def test_matches_the_numpy_snoo_reference(inner, k, alpha, momentum, nesterov, inner_state,
                                          mode):
    make_keras, make_ref = INNERS[inner]
    fast, slow, opt = run_keras(lambda: Lookahead(
        make_keras(), sync_period=k, slow_step_size=alpha, inner_state=inner_state,
        slow_momentum=momentum, slow_nesterov=nesterov), mode)
    ref_fast, ref_slow, history = reference_run(make_ref, k, alpha, momentum, nesterov,
                                                inner_state)
    # float32 on both sides, but op order differs; the outer momentum amplifies a rounding
    # difference by up to 1/(1 − μ) over the syncs
    np.testing.assert_allclose(fast, ref_fast, rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(slow, ref_slow, rtol=2e-5, atol=1e-5)
    m = opt.inner_optimizer.variables[2]  # iteration, learning_rate, then the momentum slot
    np.testing.assert_allclose(ops.convert_to_numpy(m), history[-1][2]["m"], rtol=2e-5,
                               atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_the_buffer_by_hand_over_two_syncs(mode):
    # L = ½x², SGD lr 0.5 halves x each step; k = 2, α = 0.5, μ = 0.5, Nesterov, from x = 1:
    # sync 1: θ = 1/4, s = 3/4, b = 3/4, φ = 1 − ½(⅜ + ¾) = 7/16;
    # sync 2: θ = 7/64, s = 21/64, b = ⅜ + 21/64 = 45/64, φ = 7/16 − ½(45/128 + 21/64) = 25/256.
    x = keras.Variable(np.array([1.0], np.float32))
    opt = Lookahead(keras.optimizers.SGD(0.5), sync_period=2, slow_step_size=0.5,
                    slow_momentum=0.5)
    opt.build([x])
    step = make_step(opt, [x], lambda: [ops.convert_to_tensor(x)], mode)
    got = []
    for _ in range(4):
        step()
        got.append(float(ops.convert_to_numpy(x)[0]))
    np.testing.assert_allclose(got, [1 / 2, 7 / 16, 7 / 32, 25 / 256], rtol=1e-6)
    buffer = [v for v in opt.variables if "slow_momentum" in v.path]
    np.testing.assert_allclose(ops.convert_to_numpy(buffer[0]), [45 / 64], rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inner", sorted(INNERS))
def test_zero_momentum_is_lookahead_bit_for_bit(inner, mode):
    make_keras, _ = INNERS[inner]
    plain = run_keras(lambda: Lookahead(make_keras(), sync_period=3, slow_step_size=0.7,
                                        inner_state="interpolate"), mode)
    zero = run_keras(lambda: Lookahead(make_keras(), sync_period=3, slow_step_size=0.7,
                                       inner_state="interpolate", slow_momentum=0.0), mode)
    np.testing.assert_array_equal(zero[0], plain[0])
    np.testing.assert_array_equal(zero[1], plain[1])
    assert len(zero[2].variables) == len(plain[2].variables)  # no buffer


def test_the_reference_with_zero_momentum_is_algorithm_1():
    # φ − η (φ − θ) = φ + η (θ − φ): the two references agree to rounding with μ = 0 spelled
    # through the momentum branch (a tiny μ)
    _, make_ref = INNERS["adam"]
    lookahead = reference_run(make_ref, 3, 0.6, 0.0)[1]
    snoo = reference_run(make_ref, 3, 0.6, 1e-12)[1]
    np.testing.assert_allclose(snoo, lookahead, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", MODES)
def test_k1_zero_momentum_rate_one_is_the_inner_optimizer(mode):
    make_keras, _ = INNERS["adam"]
    wrapped = run_keras(lambda: Lookahead(make_keras(), sync_period=1, slow_step_size=1.0,
                                          slow_momentum=0.0), mode)[0]
    x = keras.Variable(THETA0.copy())
    inner = make_keras()
    inner.build([x])
    step = make_step(inner, [x], lambda: [grad_keras(x)], mode)
    for _ in range(STEPS):
        step()
    np.testing.assert_array_equal(wrapped[-1], ops.convert_to_numpy(x))


@pytest.mark.parametrize("mode", MODES)
def test_schedules_of_k_and_rate_follow_the_reference(mode):
    make_keras, make_ref = INNERS["sgd_momentum"]

    def k(syncs):
        return ops.where(ops.equal(syncs, 0), 2.0, 3.0)

    def rate(syncs):
        return ops.where(ops.equal(syncs, 0), 1.2, 0.6)

    fast, slow, _ = run_keras(lambda: Lookahead(make_keras(), sync_period=k,
                                                slow_step_size=rate, slow_momentum=0.8), mode)
    history = reference.lookahead(make_ref(), THETA0, grad_np, STEPS,
                                  lambda n: 2 if n == 0 else 3,
                                  lambda n: 1.2 if n == 0 else 0.6, momentum=0.8)
    np.testing.assert_allclose(fast, np.array([h[0] for h in history]), rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(slow, np.array([h[1] for h in history]), rtol=2e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_a_16_bit_model_keeps_its_buffer_and_slow_weights_in_float32(mode):
    # bfloat16 weights and gradients; the slow weights and the buffer in float32, the model
    # given the rounded slow weights after each sync: the reference does the same, rounding θ
    # to bfloat16 after every inner step and every sync
    import ml_dtypes

    bf16 = ml_dtypes.bfloat16
    theta0 = THETA0.astype(bf16).astype(np.float32)
    fast, slow, opt = run_keras(lambda: Lookahead(keras.optimizers.SGD(0.05), sync_period=2,
                                                  slow_step_size=0.8, slow_momentum=0.75),
                                mode, steps=6, theta0=theta0, dtype="bfloat16")
    buffers = [v for v in opt.variables if "slow_momentum" in v.path]
    assert [keras.backend.standardize_dtype(b.dtype) for b in buffers] == ["float32"]
    theta, phi, b = theta0.copy(), theta0.copy(), np.zeros_like(theta0)
    expected = []
    for t in range(1, 7):
        g = grad_np(theta).astype(bf16).astype(np.float32)
        theta = (theta - np.float32(0.05) * g).astype(bf16).astype(np.float32)
        if t % 2 == 0:
            s = phi - theta
            b = np.float32(0.75) * b + s
            phi = phi - np.float32(0.8) * (np.float32(0.75) * b + s)
            theta = phi.astype(bf16).astype(np.float32)
        expected.append((theta.copy(), phi.copy()))
    # bfloat16 keeps 8 bits: the inner steps round alike on both sides, up to one ulp
    np.testing.assert_allclose(fast, [e[0] for e in expected], rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(slow, [e[1] for e in expected], rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(ops.convert_to_numpy(buffers[0]), b, rtol=1e-2, atol=1e-2)


def test_config_round_trip_keeps_the_momentum():
    opt = Lookahead(keras.optimizers.Adam(), slow_step_size=1.2, slow_momentum=0.9,
                    slow_nesterov=False)
    revived = Lookahead.from_config(opt.get_config())
    assert (revived.slow_momentum, revived.slow_nesterov, revived.slow_step_size) == (
        0.9, False, 1.2)
    plain = Lookahead.from_config({k: v for k, v in Lookahead(keras.optimizers.Adam())
                                   .get_config().items()
                                   if k not in ("slow_momentum", "slow_nesterov")})
    assert (plain.slow_momentum, plain.slow_nesterov) == (0.0, True)  # an older config


def test_the_buffer_is_one_more_copy_of_the_weights():
    x = keras.Variable(np.zeros((3, 4), np.float32))
    plain, outer = Lookahead(keras.optimizers.SGD()), Lookahead(keras.optimizers.SGD(),
                                                                slow_momentum=0.5)
    plain.build([x])
    outer.build([x])
    size = lambda opt: sum(int(np.prod(v.shape)) for v in opt.variables)  # noqa: E731
    assert size(outer) - size(plain) == 12


# -- refusals ------------------------------------------------------------------------------------

def test_the_limit_of_the_outer_rate_is_where_the_outer_step_diverges():
    # On the model where the inner steps reach the minimum (s = φ, curvature 1), run the outer
    # iteration just inside and just outside the limit: bounded inside, growing outside.
    for momentum, nesterov in ((0.5, True), (0.9, True), (0.5, False)):
        limit = algorithm.max_outer_rate(momentum, nesterov)
        for rate, grows in ((0.98 * limit, False), (1.02 * limit, True)):
            phi, b = 1.0, 0.0
            for _ in range(2000):
                s = phi
                b = momentum * b + s
                phi = phi - rate * (momentum * b + s if nesterov else b)
            assert (abs(phi) > 1.0) == grows, (momentum, nesterov, rate, phi)
    assert algorithm.max_outer_rate(0.0) == 1.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(slow_momentum=1.0), "slow_momentum must be a float in [0, 1), got 1.0"),
    (dict(slow_momentum=-0.1), "slow_momentum must be a float in [0, 1), got -0.1"),
    (dict(slow_momentum=True), "slow_momentum must be a float in [0, 1), got True"),
    (dict(slow_momentum=float("nan")), "slow_momentum must be a float in [0, 1), got nan"),
    (dict(slow_momentum=0.5, slow_nesterov=1), "slow_nesterov must be True or False, got 1"),
    (dict(slow_momentum=0.5, slow_step_size=1.5),
     "slow_step_size must be a float in (0, 1.5) with slow_momentum=0.5 (Nesterov"),
    (dict(slow_momentum=0.5, slow_nesterov=False, slow_step_size=3.0),
     "slow_step_size must be a float in (0, 3) with slow_momentum=0.5 (plain"),
    (dict(slow_step_size=1.2), "slow_step_size must be a float in (0, 1], a schedule or"),
    (dict(slow_momentum=0.5, slow_step_size="adaptive"),
     "slow_step_size='adaptive' estimates how far"),
    (dict(slow_momentum=0.5, slow_step_size=lambda n: 2.0),
     "slow_step_size schedule"),
])
def test_bad_outer_momentum_arguments_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError) as e:
        Lookahead(keras.optimizers.SGD(), **kwargs)
    assert message in str(e.value)


def test_an_outer_rate_above_one_is_allowed_with_momentum():
    opt = Lookahead(keras.optimizers.SGD(), slow_step_size=1.3, slow_momentum=0.5)
    assert opt.slow_step_size == 1.3
