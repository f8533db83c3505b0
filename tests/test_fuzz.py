"""Seeded fuzzing of the constructor and of saved configs.

Every call either gives an optimizer that completes two steps, or raises ValueError or TypeError
with a message that names one of the arguments it was given. Nothing else: no KeyError, no
OverflowError, no numpy or backend error from deep inside a step.
"""

import random

import numpy as np
import pytest
import keras
from keras import ops

from keras_lookahead import Lookahead

INF, NAN = float("inf"), float("nan")
SET_EPSILON = {"module": "keras.config", "class_name": "function", "config": "set_epsilon",
               "registered_name": "function"}


def _curvature(variables):
    return [ops.ones_like(v) for v in variables]


# For each argument, values a user could pass: (good ones, hostile ones). Optimizers come from
# factories, so that each call gets fresh objects.
POOLS = {
    "optimizer": (
        [lambda: keras.optimizers.Adam(0.01), lambda: keras.optimizers.SGD(0.1, momentum=0.9),
         lambda: "sgd", lambda: "adam", lambda: {"class_name": "RMSprop", "config": {}}],
        [lambda: None, lambda: 3, lambda: "nope", lambda: {}, lambda: {"class_name": 5},
         lambda: {"config": {}}, lambda: [], lambda: keras.layers.Dense(1), lambda: lambda: 0,
         lambda: {"class_name": "Adam", "config": 5}, lambda: SET_EPSILON]),
    "sync_period": (
        [1, 5, 2**30, np.int64(4), lambda n: 3, lambda n: 1 if int(n) == 0 else INF,
         lambda n: ops.where(ops.equal(n, 0), 1, -7),
         lambda n: 1 if int(n) == 0 else 1e300],
        [0, -3, 2.5, "5", None, True, 2**63, 10**30, INF, NAN, np.array([3]), lambda n: "x",
         lambda: 3, lambda n: INF, lambda n: 0, lambda n: 1 if int(n) == 0 else "x", [5]]),
    "slow_step_size": (
        [0.5, 1, 1.0, np.float32(0.3), "adaptive", lambda n: 0.5,
         lambda n: 0.5 if int(n) == 0 else NAN, lambda n: 0.5 if int(n) == 0 else -1e300,
         1e-300],
        [0, -1, 2, NAN, INF, "x", None, [0.5], lambda n: 2, True, np.array(0.5)]),
    "inner_state": (["maintain", "reset", "interpolate"],
                    ["pullback", None, 3, ["reset"], ""]),
    "min_slow_step_size": ([None, 0.3, 1.0], [0, 2, "x", NAN, -0.5, [0.5]]),
    "curvature": ([None, _curvature, lambda vs: [None for _ in vs]],
                  [3, lambda: [], "x", lambda vs: [ops.ones((7,))], lambda vs: None]),
    "name": ([None, "my_lookahead"], [3, ["x"], "a/b"]),
    "clipnorm": ([None], [1.0, np.array([1.0, 2.0]), "x"]),
    "weight_decay": ([None], [0.01]),
    "momentum": ([], [0.9]),
}


def _two_steps(la):
    x = keras.Variable(np.array([1.0, -2.0, 3.0], np.float32))
    la.build([x])
    for _ in range(2):
        la.apply([ops.multiply(ops.convert_to_tensor(x), 0.5)], [x])
    assert np.all(np.isfinite(ops.convert_to_numpy(x)))


def _outcome(make, names):
    """None if `make()` gives an optimizer that completes 2 steps; the failure otherwise."""
    try:
        _two_steps(make())
        return None
    except (ValueError, TypeError) as e:
        message = str(e)
        if "Lookahead" in message and any(n in message for n in names):
            return None
        return f"{type(e).__name__} not naming any of {sorted(names)}: {message[:300]}"
    except Exception as e:  # everything else is a failure of the test
        return f"{type(e).__name__}: {str(e)[:300]}"


def _constructor_calls(seed, count):
    rng = random.Random(seed)
    for _ in range(count):
        kwargs = {}
        for name, (good, hostile) in POOLS.items():
            if name != "optimizer" and rng.random() < 0.6:
                continue  # left at its default
            value = rng.choice(good if good and rng.random() < 0.75 else hostile)
            kwargs[name] = value() if name == "optimizer" else value
        yield kwargs


@pytest.mark.parametrize("seed", [0, 1])
def test_random_constructor_calls_work_or_name_the_argument(seed):
    epsilon = keras.config.epsilon()
    failures = []
    for kwargs in _constructor_calls(seed, 150):
        problem = _outcome(lambda kwargs=kwargs: Lookahead(**kwargs), set(kwargs))
        if problem:
            failures.append((kwargs, problem))
    assert keras.config.epsilon() == epsilon
    assert not failures, "\n".join(f"{k!r}: {p}" for k, p in failures[:10])


def _base_configs():
    return [
        Lookahead(keras.optimizers.Adam(0.01)).get_config(),
        Lookahead(keras.optimizers.SGD(0.1, momentum=0.9), sync_period=3, slow_step_size=0.8,
                  inner_state="interpolate").get_config(),
        Lookahead(keras.optimizers.Adam(0.01), slow_step_size="adaptive",
                  min_slow_step_size=0.3).get_config(),
        Lookahead(keras.optimizers.Adam(0.01), slow_step_size=keras.optimizers.schedules
                  .ExponentialDecay(0.5, 10, 0.9)).get_config(),
    ]


# What a tampered or corrupted file could hold in place of a saved value.
JUNK = [None, 3, -1, 0, "x", "", [], {}, [1, 2], {"class_name": "x"}, {"class_name": "Adam"},
        {"class_name": "Adam", "config": "x"}, 1e300, NAN, INF, True, SET_EPSILON,
        {"module": "builtins", "class_name": "function", "config": "print"},
        {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
         "config": {"initial_learning_rate": 2.0, "decay_steps": 1, "decay_rate": 3.0}}]


def _mutations(seed, count):
    rng = random.Random(seed)
    bases = _base_configs()
    for _ in range(count):
        config = {k: v for k, v in rng.choice(bases).items()}
        how = rng.choice(["replace", "replace", "delete", "add"])
        key = rng.choice(sorted(config))
        if how == "replace":
            config[key] = rng.choice(JUNK)
        elif how == "delete":
            del config[key]
        else:
            key = rng.choice(["momentum", "clipnorm", "sync", "Optimizer"])
            config[key] = rng.choice(JUNK)
        yield config, key


@pytest.mark.parametrize("seed", [0, 1])
def test_mutated_configs_load_and_work_or_name_the_key(seed):
    epsilon = keras.config.epsilon()
    failures = []
    for config, key in _mutations(seed, 150):
        problem = _outcome(lambda config=config: Lookahead.from_config(config), {key})
        if problem:
            failures.append((config, problem))
    assert keras.config.epsilon() == epsilon
    assert not failures, "\n".join(f"{c!r}: {p}" for c, p in failures[:10])


def test_the_pools_hold_both_kinds():
    # The fuzzing means something only if some calls work and some are refused.
    outcomes = {"works": 0, "refused": 0}
    for kwargs in _constructor_calls(0, 150):
        try:
            _two_steps(Lookahead(**kwargs))
            outcomes["works"] += 1
        except (ValueError, TypeError):
            outcomes["refused"] += 1
    assert outcomes["works"] >= 10 and outcomes["refused"] >= 10, outcomes
