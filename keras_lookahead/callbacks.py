"""Evaluating, checkpointing and ending training on the slow weights (paper, App. C.1).

Between syncs a Lookahead model holds its fast weights, up to k − 1 inner steps away from the
slow weights the paper evaluates. Here the two sets are swapped by *exchanging* values: the model
variables receive the slow weights and the slow-weight variables keep the fast ones, with a flag
variable set. Swapping back is the same exchange, so training resumes from bit-identical fast
weights, and no memory beyond one variable's temporary copy is used. Because the flag and both
sets of values are optimizer and model state, a checkpoint written while the model holds the slow
weights is complete: loaded, it gives the slow weights for inference and resumes training
exactly (the next training step, or this module's callback, exchanges them back).
"""

import contextlib

import keras

from keras_lookahead import _keras_compat as compat
from keras_lookahead.lookahead import Lookahead

_AT_END = ("slow", "fast")


def find_lookahead(model_or_optimizer):
    """The Lookahead of a model or optimizer, looking through wrappers at any depth.

    Wrappers are followed through their `inner_optimizer` attribute, as Keras's
    `LossScaleOptimizer` (which `compile` adds under a mixed_float16 policy) exposes it.

    Raises:
        ValueError: if there is no Lookahead.
    """
    obj = model_or_optimizer
    opt = obj if isinstance(obj, keras.optimizers.Optimizer) else getattr(obj, "optimizer", None)
    seen = opt
    for opt in compat.wrapper_chain(opt):
        if isinstance(opt, Lookahead):
            return opt
    raise ValueError(
        "keras_lookahead: no Lookahead optimizer found in "
        f"{type(model_or_optimizer).__name__} (its optimizer is "
        f"{type(seen).__name__ if seen is not None else None}). Compile the model with "
        "optimizer=Lookahead(...)."
    )


def restore_fast_weights(model_or_optimizer):
    """Puts the fast weights back in the model exactly, by assignment; a no-op if they are there.

    Needed before training in a custom loop when the model holds the slow weights outside a
    `use_slow_weights` block: after a `fit` that ended with `SwapSlowWeights(at_end="slow")`, or
    after loading a checkpoint saved while the model held them (`model.fit` and
    `train_on_batch` do it themselves in the first case, and a newly traced TF step in both).
    """
    find_lookahead(model_or_optimizer)._swap_out()


@contextlib.contextmanager
def use_slow_weights(model_or_optimizer):
    """Context manager: the model holds the slow weights inside, its fast weights after.

    For custom training loops: evaluate, predict or save on the slow weights, then go on
    training from the exact fast weights. If the model already holds the slow weights on entry,
    it is left holding them.

    Example:

    ```python
    with keras_lookahead.use_slow_weights(model):
        val_loss = model.evaluate(x_val, y_val)
    ```
    """
    la = find_lookahead(model_or_optimizer)
    already = la.slow_weights_in_model()
    la._swap_in()
    try:
        yield la
    finally:
        if not already:
            la._swap_out()


@keras.saving.register_keras_serializable(package="keras_lookahead")
class SwapSlowWeights(keras.callbacks.Callback):
    """Evaluates, predicts and checkpoints on the slow weights; trains on the fast ones.

    With this callback in `fit`:

    - validation (`validation_data`, `validation_split`) runs on the slow weights, as the paper
      evaluates Lookahead (App. C.1);
    - from the end of each epoch's training to the start of the next, the model holds the slow
      weights, so `ModelCheckpoint` and `BackupAndRestore` listed *after* this callback save
      them (with validation data, they do whatever their place in the list, as the swap happens
      when validation starts). The saved optimizer state keeps the fast weights, so resuming
      from such a checkpoint is exact;
    - each epoch's training resumes from bit-identical fast weights;
    - at the end of `fit` the model holds the slow weights (`at_end="slow"`, the paper's choice)
      or the fast ones (`at_end="fast"`). After `"slow"`, the next `fit` or `train_on_batch` on
      the model first restores the fast weights, with or without this callback, so training
      continues exactly where it stopped.

    Passed to `evaluate` or `predict` outside `fit`, it swaps the slow weights in for the call
    and restores the fast weights after it.

    It finds the Lookahead at any depth of wrapping (e.g. `LossScaleOptimizer(Lookahead(...))`
    under a mixed_float16 policy). Checkpoints saved by a `ModelCheckpoint` with a batch-count
    `save_freq` hold the fast weights in the model (the slow ones are in the optimizer state):
    the swap happens at epoch boundaries only, where every backend has the weights in its
    variables.

    Args:
        at_end: `"slow"` (default) or `"fast"`: the weights the model holds after `fit`.

    Example:

    ```python
    model.compile(optimizer=Lookahead(keras.optimizers.Adam()), loss="mse")
    model.fit(x, y, validation_data=(x_val, y_val),
              callbacks=[SwapSlowWeights(), keras.callbacks.ModelCheckpoint("best.keras")])
    model.evaluate(x_test, y_test)  # the slow weights
    ```
    """

    def __init__(self, at_end="slow"):
        super().__init__()
        if at_end not in _AT_END:
            raise ValueError(
                f"SwapSlowWeights: at_end must be one of {_AT_END}, got {at_end!r}."
            )
        self.at_end = at_end
        self._in_fit = False
        self._swapped_for_call = False

    def get_config(self):
        return {"at_end": self.at_end}

    def _lookahead(self):
        return find_lookahead(self.model)

    # -- fit ----------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._lookahead()._swap_out()  # also fails early if there is no Lookahead
        self._in_fit = True

    def on_epoch_begin(self, epoch, logs=None):
        # Also undoes a swap restored from a backup by BackupAndRestore in on_train_begin.
        self._lookahead()._swap_out()

    def on_epoch_end(self, epoch, logs=None):
        self._lookahead()._swap_in()

    def on_train_end(self, logs=None):
        self._in_fit = False
        la = self._lookahead()
        if self.at_end == "fast":
            la._swap_out()
            return
        la._swap_in()
        _restore_before_next_training(self.model)

    # -- evaluate and predict -----------------------------------------------------------------

    def on_test_begin(self, logs=None):
        self._begin_call()

    def on_test_end(self, logs=None):
        self._end_call()

    def on_predict_begin(self, logs=None):
        self._begin_call()

    def on_predict_end(self, logs=None):
        self._end_call()

    def _begin_call(self):
        la = self._lookahead()
        if self._in_fit:
            la._swap_in()  # stays in until the next epoch begins
            return
        self._swapped_for_call = not la.slow_weights_in_model()
        la._swap_in()

    def _end_call(self):
        if not self._in_fit and self._swapped_for_call:
            self._lookahead()._swap_out()
        self._swapped_for_call = False


def _restore_before_next_training(model):
    """Makes the model's next `fit` or `train_on_batch` restore the fast weights first.

    Both call `model.make_train_function()` before Keras reads any training state, on every
    backend; a one-shot instance attribute wraps it. Under `jax.jit` this is what keeps the next
    training run exact (the step itself cannot see the flag there); elsewhere the step would
    also restore them.
    """
    if "make_train_function" in vars(model):
        return  # already armed

    def make_train_function(*args, **kwargs):
        del model.make_train_function  # one shot: back to the class's method
        if isinstance(model.optimizer, keras.optimizers.Optimizer):
            try:
                find_lookahead(model)._swap_out()
            except ValueError:
                pass  # recompiled without Lookahead: nothing to restore
        return model.make_train_function(*args, **kwargs)

    model.make_train_function = make_train_function
