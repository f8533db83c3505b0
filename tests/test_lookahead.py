"""The wrapper's API: arguments, errors, proxies, state, config (the inner-state policies:
test_inner_state.py)."""

import re

import numpy as np
import pytest
import keras
from keras import ops

from keras_lookahead import Lookahead


# -- arguments -----------------------------------------------------------------------------

K_MSG = ("sync_period must be an integer in [1, 2**30] or a schedule (a callable of the "
         "number of syncs done),")
A_MSG = "slow_step_size must be a float in (0, 1], a schedule or 'adaptive',"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"sync_period": 0}, K_MSG + " got 0"),
        ({"sync_period": 2.5}, K_MSG + " got 2.5"),
        ({"sync_period": True}, K_MSG + " got True"),
        ({"sync_period": "5"}, K_MSG + " got '5'"),
        ({"slow_step_size": 0}, A_MSG + " got 0"),
        ({"slow_step_size": 1.5}, A_MSG + " got 1.5"),
        ({"slow_step_size": -0.1}, A_MSG + " got -0.1"),
        ({"slow_step_size": "x"}, A_MSG + " got 'x'"),
        ({"slow_step_size": float("nan")}, A_MSG + " got nan"),
        ({"inner_state": "pullback"}, "inner_state must be one of 'maintain', 'reset', "
                                      "'interpolate', got 'pullback'"),
        ({"inner_state": None}, "inner_state must be one of"),
        ({"momentum": 0.9}, "unknown argument momentum=0.9"),
        ({"sync_period": lambda n: 0}, r"sync_period schedule .* must return integers >= 1 "
                                       r"\(at most 2\*\*30\); it "
                                       "returns 0.0 at 0 syncs"),
        ({"sync_period": lambda n: 2.5}, "returns 2.5 at 0 syncs"),
        ({"slow_step_size": lambda n: 1.5}, "slow_step_size schedule .* must return values in "
                                            r"\(0, 1\]; it returns 1.5 at 0 syncs"),
        ({"slow_step_size": lambda n: n / 0}, "slow_step_size=.* could not be evaluated at 0"),
        ({"min_slow_step_size": 0.3}, "min_slow_step_size=0.3 applies only to "
                                      "slow_step_size='adaptive', but slow_step_size=0.5"),
        ({"curvature": lambda vs: vs}, "curvature=.* applies only to slow_step_size='adaptive'"),
        ({"slow_step_size": "adaptive", "min_slow_step_size": 0},
         r"min_slow_step_size must be a float in \(0, 1\], got 0"),
        ({"slow_step_size": "adaptive", "curvature": 3}, "curvature must be a callable"),
    ],
)
def test_bad_arguments_raise_naming_argument_and_value(kwargs, fragment):
    with pytest.raises(ValueError) as e:
        Lookahead(keras.optimizers.Adam(), **kwargs)
    message = str(e.value)
    assert message.startswith("Lookahead: ")
    assert fragment in message or re.search(fragment, message), message


def test_adaptive_needs_second_moments_or_a_curvature():
    with pytest.raises(ValueError, match="slow_step_size='adaptive' needs a diagonal curvature "
                       "estimate: .*but SGD keeps none.*curvature="):
        Lookahead(keras.optimizers.SGD(0.1, momentum=0.9), slow_step_size="adaptive")
    Lookahead(keras.optimizers.SGD(0.1), slow_step_size="adaptive",
              curvature=lambda variables: [ops.ones_like(v) for v in variables])
    with pytest.raises(ValueError, match="needs unscaled gradients.*LossScaleOptimizer"):
        Lookahead(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()),
                  slow_step_size="adaptive")


@pytest.mark.parametrize(
    "option, value",
    [
        ("clipnorm", 1.0), ("clipvalue", 0.5), ("global_clipnorm", 1.0), ("weight_decay", 1e-4),
        ("use_ema", True), ("ema_momentum", 0.9), ("ema_overwrite_frequency", 10),
        ("gradient_accumulation_steps", 2), ("loss_scale_factor", 128.0),
    ],
)
def test_base_options_belong_to_the_inner_optimizer(option, value):
    with pytest.raises(ValueError) as e:
        Lookahead(keras.optimizers.Adam(), **{option: value})
    msg = str(e.value)
    assert f"{option}={value!r}" in msg and "inner optimizer" in msg
    assert f"Adam({option}={value!r})" in msg


def test_base_options_at_their_defaults_are_accepted():
    # Keras-style configs may carry the defaults explicitly; they change nothing.
    opt = Lookahead(keras.optimizers.Adam(), clipnorm=None, use_ema=False, ema_momentum=0.99)
    assert opt.inner_optimizer.clipnorm is None


@pytest.mark.parametrize("bad", [3, None, [keras.optimizers.Adam()], keras.layers.Dense(2)])
def test_not_an_optimizer(bad):
    with pytest.raises(ValueError, match="optimizer must be a keras.optimizers.Optimizer"):
        Lookahead(bad)


def test_unknown_string_identifier():
    with pytest.raises(ValueError, match="optimizer='adamm' is not a known optimizer"):
        Lookahead("adamm")


@pytest.mark.parametrize(
    "ident",
    ["adam", {"class_name": "SGD", "config": {"learning_rate": 0.2, "momentum": 0.5}}],
)
def test_inner_from_string_or_config(ident):
    opt = Lookahead(ident)
    expected = keras.optimizers.get(ident)
    assert type(opt.inner_optimizer) is type(expected)
    assert opt.inner_optimizer.get_config()["learning_rate"] == pytest.approx(
        expected.get_config()["learning_rate"]
    )


def test_defaults_are_the_papers_and_read_only():
    opt = Lookahead(keras.optimizers.Adam())
    assert (opt.sync_period, opt.slow_step_size, opt.inner_state) == (5, 0.5, "maintain")
    new_values = {"sync_period": 6, "slow_step_size": 0.8, "inner_state": "reset",
                  "inner_optimizer": keras.optimizers.SGD()}
    for name, value in new_values.items():
        with pytest.raises(AttributeError):
            setattr(opt, name, value)


# -- proxies -------------------------------------------------------------------------------

def test_learning_rate_and_iterations_are_the_inner_optimizers():
    inner = keras.optimizers.SGD(0.1)
    opt = Lookahead(inner)
    assert float(ops.convert_to_numpy(opt.learning_rate)) == pytest.approx(0.1)
    opt.learning_rate = 0.025
    assert float(ops.convert_to_numpy(inner.learning_rate)) == pytest.approx(0.025)
    x = keras.Variable(np.ones(3, np.float32))
    for _ in range(4):
        opt.apply([ops.ones(3)], [x])
    assert int(ops.convert_to_numpy(opt.iterations)) == 4
    assert opt.iterations is inner.iterations


def test_learning_rate_through_loss_scale_optimizer():
    inner = keras.optimizers.Adam(1e-3)
    outer = keras.optimizers.LossScaleOptimizer(Lookahead(inner))
    outer.learning_rate = 5e-4
    assert float(ops.convert_to_numpy(inner.learning_rate)) == pytest.approx(5e-4)


def test_variables_are_own_then_inner_in_fixed_order():
    x = keras.Variable(np.ones((2, 3), np.float32), name="x")
    b = keras.Variable(np.zeros(3, np.float32), name="b")
    inner = keras.optimizers.SGD(0.1, momentum=0.9)
    opt = Lookahead(inner, inner_state="interpolate")
    opt.build([x, b])
    own = opt.variables[: len(opt.variables) - len(inner.variables)]
    assert opt.variables[len(own):] == inner.variables
    # the swap flag, slow weights, then cached momenta in variable order; the wrapper's unused
    # counters are gone
    assert [v.name for v in own] == ["slow_weights_in_model", "x_slow", "b_slow",
                                     "x_momentum_cached", "b_momentum_cached"]
    assert opt.slow_weights == own[1:3]


def test_memory_is_one_copy_of_the_parameters_two_with_interpolate():
    x = keras.Variable(np.ones((40, 50), np.float32))
    b = keras.Variable(np.ones(50, np.float32))

    def state_bytes(opt):
        opt.build([x, b])
        return sum(np.prod(v.shape) * 4 for v in opt.variables if v.dtype == "float32"
                   and len(v.shape) > 0)

    params = (40 * 50 + 50) * 4
    base = state_bytes(keras.optimizers.Adam())
    assert state_bytes(Lookahead(keras.optimizers.Adam())) - base == params
    interpolating = Lookahead(keras.optimizers.Adam(), inner_state="interpolate")
    assert state_bytes(interpolating) - base == 2 * params


def test_slow_weight_lookup():
    x = keras.Variable(np.full(2, 3.0, np.float32))
    other = keras.Variable(np.zeros(2, np.float32))
    opt = Lookahead(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="needs a built optimizer"):
        opt.slow_weight(x)
    opt.build([x])
    # before any update the slow weight is the variable's value
    np.testing.assert_array_equal(ops.convert_to_numpy(opt.slow_weight(x)), [3.0, 3.0])
    with pytest.raises(ValueError, match="was not built with"):
        opt.slow_weight(other)


# -- config --------------------------------------------------------------------------------

def test_config_round_trip():
    opt = Lookahead(keras.optimizers.SGD(0.3, momentum=0.8, nesterov=True), sync_period=7,
                    slow_step_size=0.25, inner_state="reset", name="la")
    config = opt.get_config()
    assert config["optimizer"]["class_name"] == "SGD"
    again = Lookahead.from_config(config)
    assert again.get_config() == config
    # through Keras's own (de)serialization, as model saving does
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(revived, Lookahead) and revived.get_config() == config
    assert isinstance(revived.inner_optimizer, keras.optimizers.SGD)
    assert revived.inner_optimizer.nesterov


def test_registered_name():
    assert keras.saving.get_registered_name(Lookahead) == "keras_lookahead>Lookahead"
