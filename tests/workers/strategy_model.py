"""The data, model and optimizer that the strategy workers (tests/workers/) train."""

import os

import keras
import numpy as np

from keras_lookahead import Lookahead

K = 3  # sync period; 64 samples in global batches of 16: 4 steps per epoch, epochs end mid-period
GLOBAL_BATCH = 16
rng = np.random.default_rng(0)
X = rng.normal(size=(64, 4)).astype("float32")
Y = np.sin(X.sum(axis=1, keepdims=True)).astype("float32")


# The outer momentum of `snoo` runs: rate above 1, Nesterov (inside algorithm.max_outer_rate)
SNOO = dict(slow_step_size=1.2, slow_momentum=0.75)


def model_and_optimizer(plain=None, multi=None, snoo=False):
    """A small regression model and Lookahead(SGD momentum); the SGD alone if `plain` (default:
    the environment's PLAIN=1); with outer momentum (SNOO) if `snoo`.

    With multi="member" (default: the environment's MULTI), a MultiOptimizer with that
    Lookahead for the first layer only; with "around", Lookahead around a MultiOptimizer with
    another SGD for the first layer.
    """
    keras.utils.set_random_seed(1)
    # Named, so that both models a worker builds have the same paths ("sequential/first/...").
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(8, activation="tanh", name="first"),
                              keras.layers.Dense(1, name="last")])
    opt = keras.optimizers.SGD(0.1, momentum=0.9)
    multi = os.environ.get("MULTI", "") if multi is None else multi
    plain = os.environ.get("PLAIN") == "1" if plain is None else plain
    first_layer = "(.*/)?first/.*"  # a key must match a variable's path whole
    if multi == "around":
        opt = keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(
            opt, {first_layer: keras.optimizers.SGD(0.05, momentum=0.9)}))
    if not plain:
        opt = Lookahead(opt, sync_period=K, inner_state="interpolate", **(SNOO if snoo else {}))
    if multi == "member":
        opt = keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(
            keras.optimizers.SGD(0.1, momentum=0.9), {first_layer: opt}))
    return model, opt
