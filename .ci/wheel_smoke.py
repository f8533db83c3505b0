"""Run by .ci/run in a fresh environment holding only the built wheel (the backends are read
from the test environment): the installed package (not the source tree) trains a few steps of
Lookahead(Adam()) on each backend, and the sync after k updates leaves the model on the slow
weights."""

import os
import subprocess
import sys

STEP = r"""
import numpy as np
import keras
import keras_lookahead
from keras_lookahead import Lookahead

import sys
# the wheel's copy, in this environment's own site-packages (the backends may come from another)
assert keras_lookahead.__file__.startswith(sys.prefix), (keras_lookahead.__file__, sys.prefix)
# installed by its distribution name, and nothing of the namesake (keras-lookahead) beside it
from importlib import metadata
assert metadata.version("keras-lookahead-optimizer") == keras_lookahead.__version__
from keras_lookahead import _namesake
assert _namesake.namesake_traces(keras_lookahead.__path__[0]) == []
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], dtype="float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
optimizer = Lookahead(keras.optimizers.Adam(0.05), sync_period=5, slow_step_size=0.5)
model.compile(optimizer=optimizer, loss="mse")
before = model.evaluate(x, y, verbose=0)
history = model.fit(x, y, batch_size=16, epochs=5, verbose=0)  # 4 steps an epoch: 20 updates
after = model.evaluate(x, y, verbose=0)
assert int(optimizer.iterations) == 20, int(optimizer.iterations)
for variable in model.trainable_variables:   # 20 is a multiple of k: fast == slow
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable),
                                  keras.ops.convert_to_numpy(optimizer.slow_weight(variable)))
assert np.isfinite(after) and after < before, (before, after)
print(f"{keras.backend.backend()}: keras_lookahead {keras_lookahead.__version__} from the wheel, "
      f"loss {before:.3f} -> {after:.3f}, fast == slow after 4 syncs")
"""


def main():
    backends = [b for b in ("tensorflow", "jax", "torch") if _installed(b)]
    if not backends:
        raise SystemExit("no Keras backend is installed")
    for backend in backends:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run([sys.executable, "-c", STEP], env=env, check=True)


def _installed(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
