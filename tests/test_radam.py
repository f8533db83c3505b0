"""RAdam against an independent numpy implementation of Liu et al.'s Algorithm 2, Ranger, and
RAdam as Lookahead's inner optimizer (inner-state policies and adaptive α)."""

import math

import numpy as np
import pytest
import keras
from keras import ops

import keras_lookahead
from keras_lookahead import Lookahead, RAdam, Ranger
from tests import reference
from tests.execution_modes import MODES, make_step
from tests.quadratic import THETA0, grad_keras, grad_np

STEPS = 11  # with β2 = 0.999 the adaptive step starts at t = 6 (ρ_5 ≈ 4.996, ρ_6 ≈ 5.994)

CONFIGS = {
    "defaults": {"learning_rate": 0.01},
    "paper threshold 4": {"learning_rate": 0.01, "sma_threshold": 4.0},
    "beta_2 0.99": {"learning_rate": 0.01, "beta_2": 0.99},
    # warm-up over 2 steps, linear decay to min_lr at step 8, constant after
    "schedule": {"learning_rate": 0.02, "total_steps": 8, "warmup_proportion": 0.25,
                 "min_lr": 0.002},
    "weight decay": {"learning_rate": 0.01, "weight_decay": 0.1},
}


def _reference(config):
    names = {"learning_rate": "lr"}
    return reference.RAdam(**{names.get(k, k): v for k, v in config.items()})


def _trajectory(opt, mode, steps=STEPS):
    x = keras.Variable(THETA0.copy())
    opt.build([x])
    step = make_step(opt, [x], lambda: [grad_keras(x)], mode)
    got = []
    for _ in range(steps):
        step()
        got.append(ops.convert_to_numpy(x).copy())
    return np.array(got), x


def _numpy_trajectory(inner, steps=STEPS):
    theta, state, got = THETA0.copy(), inner.init(THETA0), []
    for t in range(1, steps + 1):
        theta = inner.step(theta, grad_np(theta), state, t)
        got.append(theta.copy())
    return np.array(got), state


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_matches_algorithm_2_step_by_step(config, mode):
    opt = RAdam(**CONFIGS[config])
    got, _ = _trajectory(opt, mode)
    want, state = _numpy_trajectory(_reference(CONFIGS[config]))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(opt._momentums[0]), state["m"], rtol=2e-5,
                               atol=1e-7)
    np.testing.assert_allclose(ops.convert_to_numpy(opt._velocities[0]), state["v"], rtol=2e-5,
                               atol=1e-9)


@pytest.mark.parametrize("mode", MODES)
def test_first_steps_are_sgd_with_bias_corrected_momentum(mode):
    # L = ½x², x = 1, lr 0.1, β1 0.9. t=1: m = 0.1, m̂ = 1, x = 0.9. t=2: g = 0.9,
    # m = 0.09 + 0.09 = 0.18, m̂ = 0.18/0.19 = 18/19, x = 0.9 − 0.1·18/19 = 15.3/19.
    x = keras.Variable(np.array([1.0], np.float32))
    opt = RAdam(0.1)
    opt.build([x])
    step = make_step(opt, [x], lambda: [ops.convert_to_tensor(x)], mode)
    step()
    np.testing.assert_allclose(ops.convert_to_numpy(x), [0.9], rtol=1e-6)
    step()
    np.testing.assert_allclose(ops.convert_to_numpy(x), [15.3 / 19], rtol=1e-6)


@pytest.mark.parametrize("beta_2", [0.999, 0.99, 0.9, 0.5])
def test_sma_length_is_accurate_in_float32(beta_2):
    from keras_lookahead.radam import _sma_length

    t = np.array([1, 2, 3, 4, 5, 6, 7, 10, 50, 100, 1000, 10**5], np.float64)
    exact = (2 / (1 - beta_2) - 1) - 2 * t * beta_2**t / (1 - beta_2**t)
    got = ops.convert_to_numpy(_sma_length(ops.convert_to_tensor(t.astype("float32")), beta_2))
    # the direct float32 formula is off by 0.04 at β2 = 0.999 (and flips ρ_5 ≥ 4.96-ish tests)
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inner_state", ["maintain", "reset", "interpolate"])
def test_lookahead_around_radam_matches_algorithm_1(inner_state, mode):
    opt = Lookahead(RAdam(0.01), sync_period=3, slow_step_size=0.5, inner_state=inner_state)
    got, _ = _trajectory(opt, mode)
    history = reference.lookahead(reference.RAdam(0.01), THETA0, grad_np, STEPS, 3, 0.5,
                                  inner_state)
    np.testing.assert_allclose(got, [h[0] for h in history], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(opt.inner_optimizer._momentums[0]),
                               history[-1][2]["m"], rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("mode", MODES)
def test_adaptive_alpha_reads_radams_bias_corrected_second_moments(mode):
    x = keras.Variable(THETA0.copy())
    opt = Lookahead(RAdam(0.01), sync_period=3, slow_step_size="adaptive",
                    min_slow_step_size=0.2)
    opt.build([x])
    step = make_step(opt, [x], lambda: [grad_keras(x)], mode)
    estimates = []
    for t in range(1, 10):
        step()
        if t % 3 == 0:
            estimates.append(float(ops.convert_to_numpy(opt.slow_step_size_estimate)))
    record = {}
    reference.lookahead(reference.RAdam(0.01), THETA0, grad_np, 9, 3,
                        ("adaptive", 0.2, lambda state, t: state["v"] / (1 - 0.999**t)),
                        record=record)
    np.testing.assert_allclose(estimates, record["estimate"], rtol=1e-3, atol=1e-4)


def test_ranger_is_lookahead_around_radam_with_tf_addons_pairing():
    opt = Ranger(2e-3, total_steps=np.int64(100), weight_decay=0.01)
    assert isinstance(opt, Lookahead) and isinstance(opt.inner_optimizer, RAdam)
    assert (opt.sync_period, opt.slow_step_size) == (6, 0.5)  # TF Addons', not the paper's 5
    assert opt.inner_state == "maintain"
    assert Ranger(inner_state="interpolate").inner_state == "interpolate"
    inner = opt.inner_optimizer
    assert (inner.total_steps, inner.weight_decay) == (100, 0.01)
    assert type(inner.total_steps) is int
    assert math.isclose(float(ops.convert_to_numpy(inner.learning_rate)), 2e-3, rel_tol=1e-6)


def test_radam_and_ranger_survive_a_keras_file_round_trip(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=Ranger(1e-3, total_steps=50, warmup_proportion=0.2, min_lr=1e-5,
                                   sma_threshold=4.5, beta_2=0.99), loss="mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    inner = loaded.optimizer.inner_optimizer
    assert type(inner) is RAdam
    assert inner.get_config() == model.optimizer.inner_optimizer.get_config()
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


@pytest.mark.parametrize("kwargs, message", [
    ({"beta_1": 1.0}, "RAdam: beta_1 must be a number in [0, 1), got 1.0."),
    ({"beta_2": -0.1}, "RAdam: beta_2 must be a number in [0, 1), got -0.1."),
    ({"epsilon": float("nan")}, "RAdam: epsilon must be a number >= 0, got nan."),
    ({"sma_threshold": 3}, "RAdam: sma_threshold must be a number >= 4"),
    ({"total_steps": 1.5}, "RAdam: total_steps must be an integer >= 0"),
    ({"total_steps": True}, "RAdam: total_steps must be an integer >= 0"),
    ({"warmup_proportion": 2}, "RAdam: warmup_proportion must be a number in [0, 1], got 2."),
    ({"min_lr": -1}, "RAdam: min_lr must be a number >= 0, got -1."),
    ({"amsgrad": True}, "RAdam: amsgrad is not supported (only amsgrad=False"),
    ({"amsgrad": 1}, "RAdam: amsgrad is not supported (only amsgrad=False"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, message):
    with pytest.raises(ValueError) as error:
        RAdam(**kwargs)
    assert message in str(error.value)


def test_amsgrad_false_is_tf_addons_default_and_accepted():
    # it changes nothing: the same config as without it
    assert RAdam(amsgrad=False).get_config() == RAdam().get_config()
    with pytest.raises(ValueError, match="RAdam: amsgrad is not supported"):
        Ranger(amsgrad=True)


def test_public_names():
    assert keras_lookahead.RAdam is RAdam and keras_lookahead.Ranger is Ranger
