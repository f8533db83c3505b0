"""The examples' custom training loop (examples/_loop.py) with a checkpoint after every epoch,
for tests that kill it with SIGKILL at random points and start it again (TensorFlow only).

usage: python -m tests.workers.killed_loop DIR EPOCHS SEED OUT
  Trains to EPOCHS epochs of 2 steps, resuming from the latest checkpoint in DIR if there is
  one, printing "epoch N" at the end of each epoch, just before its checkpoint is written;
  then writes the model's weights, the slow weights and the optimizer state to OUT (.npz).
  SEED sets the initial weights: a resumed run gets another one, so only a restored checkpoint
  can make it equal an uninterrupted run.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import keras
import tensorflow as tf

from examples import _distribute
from examples._loop import CustomLoop
from keras_lookahead import Lookahead


class Report(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        print(f"epoch {epoch + 1}", flush=True)  # just before this epoch's checkpoint is saved


def main(directory, epochs, seed, out):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    dist = _distribute.Distribution("default", tf_strategy=tf.distribute.get_strategy())
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=Lookahead(keras.optimizers.SGD(0.05, momentum=0.9), sync_period=3,
                                      inner_state="interpolate"))
    loop = CustomLoop(dist, model, keras.losses.MeanSquaredError(),
                      checkpoint_dir=directory or None)
    loop.fit(data, epochs, 2, callbacks=[Report()], verbose=0)
    opt = model.optimizer
    np.savez(out, **{f"v{i}": keras.ops.convert_to_numpy(v) for i, v in
                     enumerate(model.weights + opt.slow_weights + opt.variables)})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
