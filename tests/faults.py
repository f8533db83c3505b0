"""Faults the tests inject into training."""

import keras


class Interrupt(keras.callbacks.Callback):
    """Stops `fit` with an error at the end of its second epoch, as a crash would."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")
