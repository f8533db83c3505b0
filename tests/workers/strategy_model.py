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


def model_and_optimizer():
    """A small regression model and Lookahead(SGD momentum); the SGD alone if PLAIN=1."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    opt = keras.optimizers.SGD(0.1, momentum=0.9)
    if os.environ.get("PLAIN") != "1":
        opt = Lookahead(opt, sync_period=K, inner_state="interpolate")
    return model, opt
