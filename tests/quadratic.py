"""The test problem the trajectory tests share, and the inner optimizers they run on it.

Each inner optimizer is a pair: the Keras one, and the numpy one of tests/reference.py that
follows the update rule Keras documents.
"""

import keras
import numpy as np
from keras import ops

from tests import reference

# A quadratic plus a quartic term: L(x) = ½ Σ a (x − c)² + 0.0025 Σ x⁴, so the
# gradient depends on the current weights non-linearly and every step of the trajectory matters.
A = np.array([[1.0, 0.5, 2.0], [0.1, 3.0, 0.7]], np.float32)
C = np.array([[1.0, -2.0, 0.5], [0.3, 0.0, -1.0]], np.float32)
THETA0 = np.array([[0.2, 0.4, -0.3], [1.0, -0.5, 0.1]], np.float32)


def grad_np(theta):
    return A * (theta - C) + 0.01 * theta**3


def grad_keras(x):
    return ops.add(ops.multiply(A, ops.subtract(x, C)), ops.multiply(0.01, ops.power(x, 3)))


INNERS = {
    "sgd_momentum": (
        lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        lambda: reference.SGD(0.05, momentum=0.9),
    ),
    # Adam's step is ~lr whatever the gradient; lr 0.01 keeps the tests' 11 steps away from the
    # optimum, where m/√v would amplify float32 rounding into differences of 1e-3 relative.
    "adam": (
        lambda: keras.optimizers.Adam(0.01),
        lambda: reference.Adam(0.01),
    ),
}
