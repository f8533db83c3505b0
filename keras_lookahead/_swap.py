"""The model on the slow weights: exchanging them with the fast ones, exactly.

`callbacks.py` is the public interface (`SwapSlowWeights`, `use_slow_weights`,
`restore_fast_weights`); the steps (`_steps.py`) put the fast weights back before a step and
refuse an eager step on the slow ones. Mixed into `Lookahead`, whose constructor makes the flag
`_slow_in_model` and whose `slow_weights_in_model` reads it.
"""

from keras import ops

from keras_lookahead import _checks as checks


class ModelOnSlowWeights:
    """Swapping a Lookahead's slow weights into its model and back (a mixin of `Lookahead`)."""

    def _swap_in(self):
        """Puts the slow weights in the model, keeping the fast ones in the slow variables."""
        if self.built and not self.slow_weights_in_model():
            self._exchange(into_model=True)
            self._slow_in_model.assign(1)
            self._host_slow_in_model = True

    def _swap_out(self):
        """Puts the fast weights back in the model: the exact values, by assignment."""
        if self.built and self.slow_weights_in_model():
            self._exchange(into_model=False)
            self._slow_in_model.assign(0)
            self._host_slow_in_model = False

    def _exchange(self, into_model):
        """Exchanges the values of the model variables and their slow weights, exactly.

        A slow weight of another dtype than its variable (float32 for a bfloat16 variable)
        stays where it is, exact: going into the model, the fast weight is parked in a variable
        of its own dtype and the model gets the slow weight, rounded; coming out, the parked
        fast weight comes back.
        """
        for fast, slow, park in zip(self._built_variables(), self._slow_weights,
                                    self._fast_while_swapped):
            if slow is None:
                continue
            if park is None:
                held = ops.copy(fast)
                fast.assign(slow)
                slow.assign(held)
            elif into_model:
                park.assign(fast)
                fast.assign(ops.cast(slow, fast.dtype))
            else:
                fast.assign(park)

    def _refuse_training_on_slow_weights(self):
        """Raises if the model holds the slow weights (an eager step: nothing can repair it).

        The gradient was computed on the model's weights before `apply` runs; the callbacks and
        traced TF steps restore the fast weights before that (_steps.py).
        """
        if self._host_slow_in_model is not False and self.slow_weights_in_model():
            checks.refuse_training_on_slow_weights()
