"""The Lookahead optimizer wrapper (Zhang, Lucas, Hinton & Ba, 2019)."""

import math
import numbers

import keras
from keras import ops

from keras_lookahead import _sync
from keras_lookahead import inner_state as policies

# Options of keras.optimizers.Optimizer that act on gradients or weights at each step, with their
# defaults. They belong to the inner optimizer: on the wrapper they would act twice or not at all.
_BASE_OPTIONS = {
    "weight_decay": None,
    "clipnorm": None,
    "clipvalue": None,
    "global_clipnorm": None,
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}


@keras.saving.register_keras_serializable(package="keras_lookahead")
class Lookahead(keras.optimizers.Optimizer):
    """Lookahead: k steps forward with an inner optimizer, then one step back.

    Lookahead keeps a second, slow copy φ of the model's weights. The inner optimizer updates the
    model's (fast) weights θ as usual; after every k-th update the slow weights move a fraction α
    of the way towards the fast weights and the fast weights restart from there:

        φ ← φ + α (θ − φ),    θ ← φ.

    The slow weights average out the inner optimizer's oscillations, which reduces variance and
    makes training less sensitive to the inner learning rate (paper, Sec. 3).

    Slow weights start as the model's weights at the inner optimizer's first applied update, so
    weights loaded after `compile` are respected. The count of updates is the inner optimizer's
    (`iterations`): micro-steps of `gradient_accumulation_steps` and steps a
    `LossScaleOptimizer` skipped for non-finite gradients do not count.

    Between syncs the model holds the fast weights; right after a sync, fast and slow weights are
    equal. `slow_weight(variable)` reads the slow copy of a model variable.

    Args:
        optimizer: the inner optimizer A: a `keras.optimizers.Optimizer`, a string identifier
            such as `"adam"`, or a config dict (resolved like `keras.optimizers.get`).
        sync_period: integer k >= 1: inner updates between two syncs. Defaults to 5 (the
            paper's; TF Addons used 6).
        slow_step_size: float α in (0, 1]: how far the slow weights move towards the fast
            weights at a sync. Defaults to 0.5. With α = 1 Lookahead is the inner optimizer.
        inner_state: what happens to the inner optimizer's first moments (momentum) at a sync
            (paper, App. C.5): `"maintain"` (default: left as they are), `"reset"` (set to
            zero) or `"interpolate"` (m ← α m + (1 − α) m_prev, m_prev being the momentum as it
            stood right after the previous sync, zero before the first; the authors'
            "pullback"). Second moments are never touched.
        name: name of the optimizer.

    Options that act on gradients or weights (`clipnorm`, `clipvalue`, `global_clipnorm`,
    `weight_decay`, `use_ema`, `ema_*`, `gradient_accumulation_steps`, `loss_scale_factor`)
    belong to the inner optimizer; passing them here raises an error that says so.

    Example:

    ```python
    import keras
    from keras_lookahead import Lookahead

    model.compile(optimizer=Lookahead(keras.optimizers.Adam(1e-3)), loss="mse")
    model.fit(x, y)
    phi = model.optimizer.slow_weight(model.layers[0].kernel)  # slow copy of one weight
    ```

    References:
        - [Zhang, Lucas, Hinton & Ba, 2019. Lookahead Optimizer: k steps forward, 1 step back.
          NeurIPS.](https://arxiv.org/abs/1907.08610)
    """

    def __init__(
        self,
        optimizer,
        sync_period=5,
        slow_step_size=0.5,
        inner_state="maintain",
        name=None,
        **kwargs,
    ):
        inner = _resolve_optimizer(optimizer)
        sync_period = _check_sync_period(sync_period)
        slow_step_size = _check_slow_step_size(slow_step_size)
        policies.check_policy(inner, inner_state)
        _check_kwargs(kwargs)

        super().__init__(learning_rate=0.0, name=name)
        self._inner = inner
        self._sync_period = sync_period
        self._slow_step_size = slow_step_size
        self._inner_state = inner_state
        self._slow_weights = []
        self._cached_moments = []
        # torch only: the inner optimizer's count of apply calls, kept on the host (see _sync.py);
        # None means "read it from the device at the next step".
        self._host_micro_steps = None

    # -- read-only hyperparameters -----------------------------------------------------------

    @property
    def inner_optimizer(self):
        """The wrapped optimizer A, which updates the fast weights."""
        return self._inner

    @property
    def sync_period(self):
        """k: inner updates between two syncs."""
        return self._sync_period

    @property
    def slow_step_size(self):
        """α: the fraction of the way the slow weights move towards the fast ones at a sync."""
        return self._slow_step_size

    @property
    def inner_state(self):
        """What a sync does to the inner optimizer's momentum: maintain, reset or interpolate."""
        return self._inner_state

    # -- proxies to the inner optimizer ------------------------------------------------------

    @property
    def learning_rate(self):
        return self._inner.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self._inner.learning_rate = learning_rate

    def _get_current_learning_rate(self):
        return self._inner._get_current_learning_rate()

    @property
    def iterations(self):
        return self._inner.iterations

    def scale_loss(self, loss):
        return self._inner.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self._inner.finalize_variable_values(var_list)

    # -- state --------------------------------------------------------------------------------

    def build(self, var_list):
        """Creates the slow weights (and cached momenta) after building the inner optimizer."""
        if self.built:
            return
        var_list = list(var_list)
        self._inner.build(var_list)
        # One slow weight per trainable variable, placed like it (add_variable_from_reference).
        # It starts as the variable's current value so that `slow_weight` means something before
        # training; the value is captured again at the first applied update (_sync.py says how
        # in each execution mode).
        self._slow_weights = [
            None if self._overwrite_variable_with_gradient(v)
            else self.add_variable_from_reference(
                v, name="slow", initializer=_CurrentValue(v)
            )
            for v in var_list
        ]
        # The inner's first moments are looked up, never stored here: an attribute holding them
        # would make Keras track them as this optimizer's own variables too.
        moments = self._first_moments()
        if self._inner_state == policies.INTERPOLATE:
            # Referenced to the model variable, so they are placed like it and named after it.
            self._cached_moments = [
                None if m is None else self.add_variable_from_reference(v, name="momentum_cached")
                for v, m in zip(var_list, moments)
            ]
        super().build(var_list)
        self._host_micro_steps = None

    @property
    def variables(self):
        # Own variables (slow weights, then cached momenta), then the inner's, in build order:
        # everything needed to resume, in a fixed order for saving. The base class also made an
        # iteration counter and a learning rate for the wrapper; both live in the inner optimizer
        # here, so these unused two are left out. (They stay in `_variables`: TF checkpointing
        # only tracks lists that are never shrunk.)
        unused = (self._iterations, self._learning_rate)
        own = [v for v in self._variables if not any(v is u for u in unused)]
        return own + self._inner.variables

    @property
    def slow_weights(self):
        """The slow weights, one per trainable variable the optimizer was built with.

        An entry is None for a variable that is overwritten by its gradient (no slow copy).
        """
        return list(self._slow_weights)

    def slow_weight(self, variable):
        """The slow weight φ of a model variable (a `keras.Variable` owned by the optimizer).

        Read it with `ops.convert_to_numpy(opt.slow_weight(v))`. Before the first update it
        equals the variable's value at build; right after each sync it equals the variable.
        """
        if not self.built:
            raise ValueError(
                "Lookahead: slow_weight() needs a built optimizer; call "
                "optimizer.build(model.trainable_variables) or train one step first."
            )
        key = self._var_key(variable)
        if key not in self._trainable_variables_indices:
            raise ValueError(
                f"Lookahead: slow_weight() got variable {getattr(variable, 'path', variable)!r}, "
                "which this optimizer was not built with."
            )
        return self._slow_weights[self._trainable_variables_indices[key]]

    def load_own_variables(self, store):
        # Keras only warns and skips when a saved optimizer does not match; a Lookahead resumed
        # without its slow weights would silently restart from the fast ones, so refuse.
        self._assign_state([store[str(i)] for i in range(len(store.keys()))],
                           "the saved optimizer state")

    def set_weights(self, weights):
        """Sets every value in `variables` (slow weights, cached momenta, the inner's state)."""
        if not self.built:
            raise ValueError(
                "Lookahead: set_weights() needs a built optimizer; call "
                "optimizer.build(model.trainable_variables) first."
            )
        self._assign_state(list(weights), "set_weights()")

    def _assign_state(self, values, source):
        """Checks count and shapes against `variables` before assigning anything."""
        expected = self.variables
        if len(values) != len(expected):
            raise ValueError(
                f"Lookahead: {source} has {len(values)} variables, but this "
                f"Lookahead({type(self._inner).__name__}, inner_state={self._inner_state!r}) "
                f"has {len(expected)}" + ("" if self.built else " (it is not built yet)")
                + ". The state comes from a different optimizer configuration."
            )
        for i, (value, variable) in enumerate(zip(values, expected)):
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Lookahead: {source}: variable {i} has shape {tuple(value.shape)}, but "
                    f"{variable.path} has shape {tuple(variable.shape)}."
                )
        for value, variable in zip(values, expected):
            variable.assign(value)
        self._host_micro_steps = None

    # -- the step -----------------------------------------------------------------------------

    def apply(self, grads, trainable_variables=None):
        """Applies the inner optimizer's update, then syncs when the k-th update is done."""
        if len(grads) == 0:
            return  # as Keras optimizers do: nothing to apply, nothing counted
        if not self.built:
            if trainable_variables is None:
                raise ValueError(
                    "Lookahead: apply() without trainable_variables needs a built optimizer; "
                    "pass the variables on the first call or call build() first."
                )
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
        _sync.lookahead_step(self, grads, trainable_variables)

    def _is_sync_step(self, before, after):
        """True when the inner optimizer applied an update and it is the k-th since a sync."""
        applied = ops.not_equal(after, before)
        due = ops.equal(ops.mod(after, self._sync_period), 0)
        return ops.logical_and(applied, due)

    def _alpha(self, dtype):
        return ops.cast(self._slow_step_size, dtype)

    def _lerp(self, slow, fast):
        """φ + α (θ − φ): the slow weights' new value at a sync."""
        if self._slow_step_size == 1.0:
            return fast  # exactly the fast weights: φ + (θ − φ) can round differently
        return ops.add(slow, ops.multiply(self._alpha(slow.dtype), ops.subtract(fast, slow)))

    def _pairs(self):
        """(fast, slow) for every variable that has a slow weight."""
        return [(v, s) for v, s in zip(self._trainable_variables, self._slow_weights)
                if s is not None]

    def _first_moments(self):
        """The inner optimizer's first-moment slots the policy acts on (none for "maintain")."""
        if self._inner_state == policies.MAINTAIN:
            return []
        moments = policies.first_moments(self._inner)
        n = len(self._slow_weights)  # one per variable; set in build before this is called
        if len(moments) != n or all(m is None for m in moments):
            raise ValueError(
                f"Lookahead: inner_state={self._inner_state!r} needs one first-moment slot per "
                f"variable, but {type(self._inner).__name__} has "
                f"{sum(m is not None for m in moments)} for {n} variables."
            )
        return moments

    def _moment_pairs(self):
        """(m, m_prev or None) for every first-moment slot the policy acts on."""
        moments = self._first_moments()
        cached = self._cached_moments or [None] * len(moments)
        return [(m, c) for m, c in zip(moments, cached) if m is not None]

    def _new_moment(self, m, cached):
        """The value of a first moment right after a sync, under the inner_state policy."""
        if self._inner_state == policies.RESET:
            return ops.zeros_like(m)
        alpha = self._alpha(m.dtype)
        return ops.add(ops.multiply(alpha, m), ops.multiply(1 - alpha, cached))

    # -- config -------------------------------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self._inner),
            "sync_period": self._sync_period,
            "slow_step_size": self._slow_step_size,
            "inner_state": self._inner_state,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(
            config.pop("optimizer"), custom_objects=custom_objects
        )
        return cls(inner, **config)


class _CurrentValue(keras.initializers.Initializer):
    """Initializes a slow weight to its model variable's value at build time."""

    def __init__(self, variable):
        self._variable = variable

    def __call__(self, shape, dtype=None):
        # A copy: on torch the variable's tensor would otherwise become the slow weight's storage.
        return ops.cast(ops.copy(self._variable), dtype)


def _resolve_optimizer(optimizer):
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    if isinstance(optimizer, (str, dict)):
        try:
            return keras.optimizers.get(optimizer)
        except ValueError as e:
            raise ValueError(
                f"Lookahead: optimizer={optimizer!r} is not a known optimizer identifier or "
                f"config ({e})."
            ) from None
    raise ValueError(
        "Lookahead: optimizer must be a keras.optimizers.Optimizer instance, a string "
        "identifier such as 'adam', or a config dict; got "
        f"{optimizer!r} ({type(optimizer).__name__})."
    )


def _check_sync_period(k):
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(
            f"Lookahead: sync_period must be an integer >= 1, got {k!r}."
        )
    return int(k)


def _check_slow_step_size(alpha):
    if (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real)
            or math.isnan(alpha) or not 0 < alpha <= 1):
        raise ValueError(
            f"Lookahead: slow_step_size must be a float in (0, 1], got {alpha!r}."
        )
    return float(alpha)


def _check_kwargs(kwargs):
    for key, value in kwargs.items():
        if key not in _BASE_OPTIONS:
            raise ValueError(
                f"Lookahead: unknown argument {key}={value!r}. Lookahead takes optimizer, "
                "sync_period, slow_step_size, inner_state and name."
            )
        default = _BASE_OPTIONS[key]
        if value is not default and value != default:
            raise ValueError(
                f"Lookahead: {key}={value!r} is an option of the inner optimizer; set it "
                f"there, e.g. Lookahead(keras.optimizers.Adam({key}={value!r})). On the "
                "wrapper it would be applied twice or not at all."
            )
