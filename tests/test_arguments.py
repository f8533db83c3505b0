"""Hostile input: what passes the constructor works, and what cannot work is refused at once,
with a message that names the argument; a saved config cannot make the constructor call an
arbitrary function; non-finite values follow the formula's IEEE rules on every backend."""

import json
import math
import zipfile

import numpy as np
import pytest
import keras
from keras import ops

from keras_lookahead import Lookahead
from tests.execution_modes import MODES, make_step


def _sgd_run(la, mode, steps=2):
    """SGD(0.1) on a constant gradient 1 from x = 1: the values of x after each step."""
    x = keras.Variable(np.array([1.0], np.float32))
    la.build([x])
    step = make_step(la, [x], lambda: [ops.ones(1)], mode)
    seen = []
    for _ in range(steps):
        step()
        seen.append(float(ops.convert_to_numpy(x)[0]))
    return seen


# -- sync_period ---------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [2**63, 10**30, 2**30 + 1, 0, -1])
def test_sync_period_beyond_the_int32_counters_is_refused(k):
    with pytest.raises(ValueError, match=r"sync_period must be an integer in \[1, 2\*\*30\]"):
        Lookahead(keras.optimizers.SGD(0.1), sync_period=k)


def test_the_largest_sync_period_trains():
    # 2**30 updates never come: x moves by the inner optimizer alone
    assert _sgd_run(Lookahead(keras.optimizers.SGD(0.1), sync_period=2**30), "eager") == \
        pytest.approx([0.9, 0.8], rel=1e-6)


# k schedule: 1 for the first sync (at step 1), then the value under test. From x = 1 with
# α = ½: step 1 gives θ = 0.9 and the sync φ = 0.95; step 2 gives θ = 0.85, and a sync there
# φ = 0.9. Values are clipped to [1, 2**30]; NaN means 2**30.
K_AT_RUN_TIME = [(float("inf"), False), (1e300, False), (float("nan"), False), (-5.0, True),
                 (0.2, True), (2.0**40, False)]


@pytest.mark.parametrize("value,syncs", K_AT_RUN_TIME)
@pytest.mark.parametrize("mode", MODES)
def test_k_schedule_values_are_clipped_where_they_are_read(mode, value, syncs):
    def k(n):
        return ops.where(ops.equal(n, 0), 1.0, value)  # a tensor, as a schedule gives

    seen = _sgd_run(Lookahead(keras.optimizers.SGD(0.1), sync_period=k), mode)
    assert seen == pytest.approx([0.95, 0.9 if syncs else 0.85], rel=1e-6)


@pytest.mark.parametrize("value,syncs", K_AT_RUN_TIME)
def test_k_schedule_python_numbers_are_clipped_on_the_host(value, syncs):
    # 1e300 does not fit in a float32: a Python number is clipped before it becomes a tensor
    seen = _sgd_run(Lookahead(keras.optimizers.SGD(0.1),
                              sync_period=lambda n: 1 if int(n) == 0 else value), "eager")
    assert seen == pytest.approx([0.95, 0.9 if syncs else 0.85], rel=1e-6)


# α schedule: ½ at the first sync, then the value under test, k = 1. Step 2 gives θ = 0.85 and
# φ = 0.95 + α(0.85 − 0.95); α is clipped to [0, 1]; NaN means 1.
ALPHA_AT_RUN_TIME = [(float("inf"), 1.0), (1e300, 1.0), (float("nan"), 1.0), (2.0, 1.0),
                     (-1.0, 0.0), (0.25, 0.25)]


@pytest.mark.parametrize("value,alpha", ALPHA_AT_RUN_TIME)
@pytest.mark.parametrize("mode", MODES)
def test_alpha_schedule_values_are_clipped_where_they_are_read(mode, value, alpha):
    def schedule(n):
        return ops.where(ops.equal(n, 0), 0.5, value)

    seen = _sgd_run(Lookahead(keras.optimizers.SGD(0.1), sync_period=1,
                              slow_step_size=schedule), mode)
    assert seen == pytest.approx([0.95, 0.95 - 0.1 * alpha], rel=1e-6)


@pytest.mark.parametrize("argument", ["sync_period", "slow_step_size"])
def test_a_schedule_returning_a_string_is_refused_naming_the_argument(argument):
    first = 1 if argument == "sync_period" else 0.5
    kwargs = {"sync_period": 1, argument: lambda n: first if int(n) == 0 else "soon"}
    la = Lookahead(keras.optimizers.SGD(0.1), **kwargs)
    with pytest.raises(TypeError, match=f"{argument} schedule .* returned 'soon' "):
        _sgd_run(la, "eager")


@pytest.mark.parametrize("argument", ["sync_period", "slow_step_size"])
def test_a_schedule_returning_a_vector_is_refused_naming_the_argument(argument):
    first = 1.0 if argument == "sync_period" else 0.5
    kwargs = {"sync_period": 1,
              argument: lambda n: first if int(n) == 0 else ops.ones((2,))}
    la = Lookahead(keras.optimizers.SGD(0.1), **kwargs)
    with pytest.raises(ValueError, match=f"{argument} schedule .* shape \\(2,\\)"):
        _sgd_run(la, "eager")


# -- optimizer, config, options of the base class --------------------------------------------------

@pytest.mark.parametrize("optimizer", [{}, {"config": {"learning_rate": 0.1}},
                                       {"class_name": 3}, {"class_name": "NoSuchOptimizer"}])
def test_optimizer_dicts_without_a_known_class_name_are_refused(optimizer):
    with pytest.raises(ValueError, match="Lookahead: optimizer"):
        Lookahead(optimizer)


@pytest.mark.parametrize("config", [{}, {"sync_period": 5}, [], {"optimizer": {}}])
def test_from_config_without_an_inner_optimizer_is_refused(config):
    with pytest.raises(ValueError, match="optimizer"):
        Lookahead.from_config(config)


@pytest.mark.parametrize("option,value", [("clipnorm", np.array([1.0, 2.0])),
                                          ("clipvalue", np.float32(1.0)),
                                          ("use_ema", np.True_)])
def test_base_options_given_as_arrays_are_refused_with_our_message(option, value):
    with pytest.raises(ValueError, match=f"{option}=.* is an option of the inner optimizer"):
        Lookahead(keras.optimizers.SGD(0.1), **{option: value})


# -- loading cannot call an arbitrary function -------------------------------------------------

SET_EPSILON = {"module": "keras.config", "class_name": "function", "config": "set_epsilon",
               "registered_name": "function"}


@pytest.mark.parametrize("argument", ["sync_period", "slow_step_size", "curvature"])
def test_from_config_refuses_a_keras_function_that_is_not_a_schedule(argument):
    config = Lookahead(keras.optimizers.Adam(), slow_step_size="adaptive").get_config()
    config[argument] = SET_EPSILON
    epsilon = keras.config.epsilon()
    try:
        with pytest.raises(ValueError, match=f"saved {argument} is <function set_epsilon"):
            Lookahead.from_config(config)
    finally:
        keras.config.set_epsilon(epsilon)
    assert keras.config.epsilon() == epsilon  # nothing was called


def test_load_model_in_safe_mode_does_not_call_a_function_named_in_the_file(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=Lookahead(keras.optimizers.SGD(0.1)), loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    tampered = str(tmp_path / "tampered.keras")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                config["compile_config"]["optimizer"]["config"]["sync_period"] = SET_EPSILON
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    epsilon = keras.config.epsilon()
    try:
        with pytest.raises(ValueError, match="saved sync_period is <function set_epsilon"):
            keras.models.load_model(tampered)
    finally:
        keras.config.set_epsilon(epsilon)
    assert keras.config.epsilon() == epsilon


@keras.saving.register_keras_serializable(package="keras_lookahead_tests")
def every_third(syncs_done):
    return 3


def test_registered_and_custom_object_schedules_load():
    config = Lookahead(keras.optimizers.SGD(0.1), sync_period=every_third).get_config()
    assert Lookahead.from_config(config).sync_period is every_third

    def unregistered(syncs_done):
        return 4

    config = Lookahead(keras.optimizers.SGD(0.1), sync_period=unregistered).get_config()
    with pytest.raises(ValueError, match="saved sync_period"):
        Lookahead.from_config(config)
    loaded = Lookahead.from_config(config, custom_objects={"unregistered": unregistered})
    assert loaded.sync_period is unregistered


def test_load_model_with_custom_objects_loads_an_unregistered_schedule(tmp_path):
    def every_fourth(syncs_done):
        return 4

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=Lookahead(keras.optimizers.SGD(0.1), sync_period=every_fourth),
                  loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    with pytest.raises(ValueError, match="saved sync_period"):
        keras.models.load_model(path)
    loaded = keras.models.load_model(path, custom_objects={"every_fourth": every_fourth})
    assert loaded.optimizer.sync_period is every_fourth


# -- curvature ---------------------------------------------------------------------------------

def test_a_curvature_that_cannot_take_the_variables_is_refused_at_once():
    with pytest.raises(ValueError, match="curvature=.* must take one argument"):
        Lookahead(keras.optimizers.SGD(0.1), slow_step_size="adaptive", curvature=lambda: [])


def test_a_schedule_as_curvature_is_refused_in_the_constructor_and_at_load():
    # a schedule takes one argument too, but it is the step, not the variables
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    with pytest.raises(ValueError, match="curvature=.* is a LearningRateSchedule, a function of "
                                         "the step; curvature is a function of the variables"):
        Lookahead(keras.optimizers.Adam(0.1), slow_step_size="adaptive", curvature=schedule)
    config = Lookahead(keras.optimizers.Adam(0.1), slow_step_size="adaptive").get_config()
    config["curvature"] = keras.saving.serialize_keras_object(schedule)  # a saved file's form
    with pytest.raises(ValueError, match="curvature=.* is a LearningRateSchedule"):
        Lookahead.from_config(config)


@pytest.mark.parametrize("curvature,fragment", [
    (lambda variables: [ops.ones((3,))], r"shape \(3,\) for"),
    (lambda variables: [], "one tensor per variable"),
    (lambda variables: 1.0, "one tensor per variable"),
])
def test_a_curvature_of_the_wrong_form_is_refused_at_the_first_sync(curvature, fragment):
    la = Lookahead(keras.optimizers.SGD(0.1), sync_period=1, slow_step_size="adaptive",
                   curvature=curvature)
    with pytest.raises(ValueError, match=f"curvature=.*{fragment}"):
        _sgd_run(la, "eager", steps=1)


# -- non-finite weights: the formula's IEEE rules, as numpy computes them --------------------------

@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("mode", MODES)
def test_an_infinite_fast_weight_stays_infinite_through_the_sync(mode, sign, alpha):
    # SGD(0.1) with momentum 0.9 and gradient ∓inf: θ and m become ±inf at step 1, φ = 1.
    x = keras.Variable(np.array([1.0, 2.0], np.float32))
    la = Lookahead(keras.optimizers.SGD(0.1, momentum=0.9), sync_period=1, slow_step_size=alpha,
                   inner_state="interpolate")
    la.build([x])
    g = np.array([-sign * np.inf, 1.0], np.float32)
    make_step(la, [x], lambda: [ops.convert_to_tensor(g)], mode)()
    with np.errstate(invalid="ignore", over="ignore"):
        m = 0.9 * np.zeros(2, np.float32) - np.float32(0.1) * g
        theta = np.array([1.0, 2.0], np.float32) + m
        phi = np.array([1.0, 2.0], np.float32)  # captured before the update
        expected = phi + np.float32(alpha) * (theta - phi)
        expected_m = np.float32(alpha) * m + np.float32(1 - alpha) * 0
    assert expected[0] == sign * np.inf and expected_m[0] == sign * np.inf  # numpy's rule
    np.testing.assert_allclose(ops.convert_to_numpy(x), expected, rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(la.inner_optimizer.momentums[0]),
                               expected_m, rtol=1e-6)
    assert not math.isnan(float(ops.convert_to_numpy(la.slow_weight(x))[0]))

