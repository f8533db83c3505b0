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
import warnings
import weakref

import keras

from keras_lookahead import _keras_compat as compat
from keras_lookahead.lookahead import Lookahead

_AT_END = ("slow", "fast")


def _optimizer_of(model_or_optimizer):
    obj = model_or_optimizer
    return obj if isinstance(obj, keras.optimizers.Optimizer) else getattr(obj, "optimizer", None)


def find_lookaheads(model_or_optimizer):
    """Every Lookahead of a model or optimizer that is not inside another Lookahead.

    Wrappers are followed through their `inner_optimizer` attribute, as Keras's
    `LossScaleOptimizer` (which `compile` adds under a mixed_float16 policy) exposes it, and a
    `keras.optimizers.MultiOptimizer` through its members: `MultiOptimizer` with a Lookahead for
    the encoder and another for the decoder gives both. The search stops at a Lookahead: the
    slow weights of the whole model under it are its own, whatever it wraps.

    Returns:
        A list, outermost and in member order first; empty if there is none.
    """
    found, seen = [], set()

    def walk(optimizer):
        for link in compat.wrapper_chain(optimizer):
            if id(link) in seen:
                return
            seen.add(id(link))
            if isinstance(link, Lookahead):
                found.append(link)
                return
            members = compat.multi_members(link)
            if members is not None:
                if link.built:
                    _warn_if_given_no_variable(link, members, model_or_optimizer)
                for member in members:
                    walk(member)
                return

    walk(_optimizer_of(model_or_optimizer))
    return found


_WARNED_GIVEN_NO_VARIABLE = weakref.WeakSet()


def _warn_if_given_no_variable(multi, members, model_or_optimizer):
    """Once per member: a Lookahead member of a built MultiOptimizer that no variable was routed
    to (no key matched: Keras leaves it unbuilt, and the model trains without it, silently)."""
    for member in members:
        if not isinstance(member, Lookahead) or member.built:
            continue
        if member in _WARNED_GIVEN_NO_VARIABLE:
            continue
        _WARNED_GIVEN_NO_VARIABLE.add(member)
        variables = getattr(model_or_optimizer, "trainable_variables", None)
        paths = ""
        if variables and not isinstance(model_or_optimizer, keras.optimizers.Optimizer):
            shown = [v.path for v in variables[:6]]
            paths = (f" The model's variable paths: {', '.join(shown)}"
                     f"{', ...' if len(variables) > 6 else ''}.")
        warnings.warn(
            f"keras_lookahead: the Lookahead member {member.name!r} of MultiOptimizer "
            f"{multi.name!r} was given no variable: no key of the OptimizerMap that routes to "
            "it matches a variable path, so it trains nothing and has no slow weights (those "
            f"variables went to the other members).{paths} In a Sequential model the paths "
            "start with the model's name ('sequential/encoder/kernel'), in a functional one "
            "with the layer's ('encoder/kernel'); a key like '(.*/)?encoder/.*' matches both.",
            UserWarning, stacklevel=2)


def find_lookahead(model_or_optimizer):
    """The Lookahead of a model or optimizer, looking through wrappers at any depth.

    Wrappers are followed through their `inner_optimizer` attribute, as Keras's
    `LossScaleOptimizer` (which `compile` adds under a mixed_float16 policy) exposes it, and a
    `MultiOptimizer` through its members (see `find_lookaheads`).

    Raises:
        ValueError: if there is no Lookahead, or several (a MultiOptimizer with a Lookahead per
            group: use `find_lookaheads`).
    """
    found = find_lookaheads(model_or_optimizer)
    if len(found) == 1:
        return found[0]
    opt = _optimizer_of(model_or_optimizer)
    if found:
        raise ValueError(
            f"keras_lookahead: {type(model_or_optimizer).__name__} has {len(found)} Lookahead "
            f"optimizers ({', '.join(repr(la.name) for la in found)}, members of a "
            "MultiOptimizer); use find_lookaheads() to get them all."
        )
    raise ValueError(
        "keras_lookahead: no Lookahead optimizer found in "
        f"{type(model_or_optimizer).__name__} (its optimizer is "
        f"{type(opt).__name__ if opt is not None else None}). Compile the model with "
        "optimizer=Lookahead(...), or a MultiOptimizer with Lookahead members."
    )


def _lookaheads(model_or_optimizer):
    """`find_lookaheads`, raising `find_lookahead`'s error if there is none."""
    found = find_lookaheads(model_or_optimizer)
    if not found:
        find_lookahead(model_or_optimizer)  # raises, naming what the optimizer is
    return found


def _swap_in(lookaheads):
    for la in lookaheads:
        la._swap_in()


def _swap_out(lookaheads):
    for la in lookaheads:
        la._swap_out()


def restore_fast_weights(model_or_optimizer):
    """Puts the fast weights back in the model exactly, by assignment; a no-op if they are there.

    Needed before training in a custom loop when the model holds the slow weights outside a
    `use_slow_weights` block: after a `fit` that ended with `SwapSlowWeights(at_end="slow")`, or
    after loading a checkpoint saved while the model held them (`model.fit` and
    `train_on_batch` do it themselves in the first case, and a newly traced TF step in both).
    """
    _swap_out(_lookaheads(model_or_optimizer))


@contextlib.contextmanager
def use_slow_weights(model_or_optimizer):
    """Context manager: the model holds the slow weights inside, its fast weights after.

    For custom training loops: evaluate, predict or save on the slow weights, then go on
    training from the exact fast weights. If the model already holds the slow weights on entry,
    it is left holding them. With a MultiOptimizer holding several Lookaheads (one per group of
    variables), every group gets its slow weights, and the block receives the list of them;
    otherwise it receives the Lookahead.

    Example:

    ```python
    with keras_lookahead.use_slow_weights(model):
        val_loss = model.evaluate(x_val, y_val)
    ```
    """
    found = _lookaheads(model_or_optimizer)
    already = [la for la in found if la.slow_weights_in_model()]
    _swap_in(found)
    try:
        yield found[0] if len(found) == 1 else list(found)
    finally:
        _swap_out([la for la in found if not any(la is a for a in already)])


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
    under a mixed_float16 policy), and every Lookahead member of a `MultiOptimizer` (each group
    then gets its own slow weights; the other groups have no slow copy and keep their weights).
    Checkpoints saved by a `ModelCheckpoint` with a batch-count `save_freq` hold the fast weights
    in the model (the slow ones are in the optimizer state): the swap happens at epoch
    boundaries only, where every backend has the weights in its variables.

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
        self._swapped_for_call = []

    def get_config(self):
        return {"at_end": self.at_end}

    def _lookaheads(self):
        return _lookaheads(self.model)

    # -- fit ----------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        _swap_out(self._lookaheads())  # also fails early if there is no Lookahead
        self._in_fit = True

    def on_epoch_begin(self, epoch, logs=None):
        # Also undoes a swap restored from a backup by BackupAndRestore in on_train_begin.
        _swap_out(self._lookaheads())

    def on_epoch_end(self, epoch, logs=None):
        _swap_in(self._lookaheads())

    def on_train_end(self, logs=None):
        self._in_fit = False
        if self.at_end == "fast":
            _swap_out(self._lookaheads())
            return
        _swap_in(self._lookaheads())
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
        found = self._lookaheads()
        if self._in_fit:
            _swap_in(found)  # stays in until the next epoch begins
            return
        self._swapped_for_call = [la for la in found if not la.slow_weights_in_model()]
        _swap_in(found)

    def _end_call(self):
        if not self._in_fit:
            _swap_out(self._swapped_for_call)
        self._swapped_for_call = []


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
        _swap_out(find_lookaheads(model))  # none if recompiled without Lookahead
        return model.make_train_function(*args, **kwargs)

    model.make_train_function = make_train_function
