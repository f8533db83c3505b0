"""The Lookahead optimizer wrapper (Zhang, Lucas, Hinton & Ba, 2019).

Algorithm 1 of the paper, with the inner optimizer A updating the fast weights θ:

    for each step:  θ ← θ + A(θ)                      (the inner optimizer, as configured)
                    if A applied its k-th update since the last sync:
                        φ ← φ + α (θ − φ);  θ ← φ       (`slow_update`)
                        m ← policy(m, m_prev, α)        (`momentum_update`, App. C.5)

The three functions below are the algorithm on values; `Lookahead` holds the state (φ, m_prev,
counters) and its arguments, and `_forms.py` runs the step in the form each execution mode needs
(a branch in TensorFlow graphs, selects under XLA and JAX, host-counted fused ops in PyTorch),
every form calling these functions.
"""

import math
import numbers
import warnings

import keras
from keras import ops

from keras_lookahead import _forms
from keras_lookahead import _keras_compat as compat
from keras_lookahead import adaptive
from keras_lookahead import inner_state as policies


def slow_update(slow, fast, alpha):
    """φ + α (θ − φ): the slow weights after a sync; the fast weights restart from it.

    With α = 1 (a Python float) the fast weights are returned as they are: φ + (θ − φ) can
    round differently from θ.
    """
    if fast.dtype != slow.dtype:  # float32 slow weights of a 16-bit variable: in float32
        fast = ops.cast(fast, slow.dtype)
    if isinstance(alpha, float) and alpha == 1.0:
        return fast
    alpha = ops.cast(alpha, slow.dtype)
    return ops.add(slow, ops.multiply(alpha, ops.subtract(fast, slow)))


def momentum_update(policy, m, m_prev, alpha):
    """The inner optimizer's first moment right after a sync (paper, App. C.5).

    "reset": 0. "interpolate" (the authors' "pullback"): α m + (1 − α) m_prev, m_prev being the
    moment right after the previous sync (0 before the first). "maintain" never gets here.
    """
    if policy == policies.RESET:
        return ops.zeros_like(m)
    if m.dtype != m_prev.dtype:  # a float32 cache of a 16-bit moment: in float32
        m = ops.cast(m, m_prev.dtype)
    alpha = ops.cast(alpha, m.dtype)
    return ops.add(ops.multiply(alpha, m), ops.multiply(ops.subtract(1, alpha), m_prev))


def sync_is_due(applied, since_sync, k):
    """Does this step sync: the inner optimizer applied an update, the k-th since the last sync?

    `since_sync` counts the applied updates since the last sync, this one included. Operators
    only, so that the host-counted form (Python ints) and the device forms (tensors) share it.
    """
    return applied & (since_sync >= k)


def since_sync_at(count, k):
    """Applied updates since the last sync after `count` updates with a constant k (syncs fall
    at multiples of k): (count − 1) mod k + 1, which reaches k exactly at a sync. Also the
    number of syncs done before this one: (count − 1) // k."""
    return (count - 1) % k + 1, (count - 1) // k


ADAPTIVE = "adaptive"

# The counters of updates and syncs are int32 on the device (as Keras's own iteration counter):
# a sync period must fit with room to count past it.
MAX_SYNC_PERIOD = 2**30
# slow_dtype: None (float32 for 16-bit variables) or "variable" (the variable's own dtype)
SLOW_DTYPES = (None, "variable")

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


@compat.proxy_current_learning_rate
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
    equal. `slow_weight(variable)` reads the slow copy of a model variable. A sync moves only
    the variables of the step that syncs: a layer frozen after the optimizer was built keeps its
    value, and its slow weight follows it. One Lookahead trains one model.

    Lookahead can be a member of a `keras.optimizers.MultiOptimizer` (Keras 3.15 on), for a
    group of variables with its own k and α, or wrap one (one k for all groups, each group's
    inner optimizer its own); docs/options.md says what each form does.

    Args:
        optimizer: the inner optimizer A: a `keras.optimizers.Optimizer`, a string identifier
            such as `"adam"`, or a config dict (resolved like `keras.optimizers.get`).
        sync_period: integer k >= 1: inner updates between two syncs. Defaults to 5 (the
            paper's; TF Addons used 6). Or a schedule (a
            `keras.optimizers.schedules.LearningRateSchedule`, or any serializable callable)
            called with the number of syncs done so far and returning an integer >= 1: the
            next sync then comes after that many updates since the last one. It is checked at
            0 here; at run time (where nothing can raise) its value is rounded and clipped to
            [1, `2**30`], and a NaN means `2**30`: no further sync. At most `2**30`, since the
            counters are int32.
        slow_step_size: float α in (0, 1]: how far the slow weights move towards the fast
            weights at a sync. Defaults to 0.5. With α = 1 Lookahead is the inner optimizer.
            Or a schedule called with the number of syncs done so far (checked at 0 to be in
            (0, 1]; at run time clipped to [0, 1], a NaN meaning 1: no step back). Or
            `"adaptive"`: α is estimated at each sync from a quadratic model of
            the loss along the line from the slow to the fast weights (paper, Sec. 2.1):
            α̂ = clip(1 + gᵀd / (dᵀÂd), min_slow_step_size, 1), with d = φ − θ, g the gradient
            the step received (the paper's g at θ is only known at the next step), and Â the
            inner optimizer's bias-corrected second moments (Adam, AdamW, Nadam, Lamb,
            RMSprop) or `curvature`. See `keras_lookahead/adaptive.py`.
        inner_state: what happens to the inner optimizer's first moments (momentum) at a sync
            (paper, App. C.5): `"maintain"` (default: left as they are), `"reset"` (set to
            zero) or `"interpolate"` (m ← α m + (1 − α) m_prev, m_prev being the momentum as it
            stood right after the previous sync, zero before the first; the authors'
            "pullback"). Second moments are never touched. With a scheduled or adaptive α,
            the α of the sync is used.
        min_slow_step_size: α_low, the lower clip of the adaptive α (the paper's Fig. 2 uses
            0.5, the default). Only with `slow_step_size="adaptive"`.
        curvature: only with `slow_step_size="adaptive"`: a callable taking the list of
            variables the optimizer was built with and returning, for each, a tensor of its
            shape with the diagonal of the curvature estimate Â (e.g. a known Hessian diagonal
            in experiments). Needed for inner optimizers without second moments.
        slow_dtype: the dtype of the slow weights (and of the momenta cached by
            `inner_state="interpolate"`). `None` (default): float32 for a float16 or bfloat16
            variable, the variable's own dtype otherwise. A 16-bit sync rounds away every move
            below about 2⁻⁸ of |φ| (bfloat16) at every sync; in float32 the slow weights keep
            it and the variable gets the rounded result. This costs, per parameter of a 16-bit
            variable, 4 bytes of slow weight plus 2 bytes where the fast weights wait while the
            model holds the slow ones (`use_slow_weights`), against 2 bytes. `"variable"`: the
            variable's own dtype always (what other Lookahead implementations do). Variables
            of 32 bits or more (including those of `mixed_float16`/`mixed_bfloat16` policies,
            which keep float32 variables) are the same either way.
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
        min_slow_step_size=None,
        curvature=None,
        slow_dtype=None,
        name=None,
        **kwargs,
    ):
        inner = _resolve_optimizer(optimizer)
        sync_period = _check_sync_period(sync_period)
        slow_step_size = _check_slow_step_size(slow_step_size)
        policies.check_policy(inner, inner_state)
        min_slow_step_size = _check_adaptive_options(
            inner, slow_step_size, min_slow_step_size, curvature)
        _check_kwargs(kwargs)
        if not (slow_dtype is None or (isinstance(slow_dtype, str) and slow_dtype in SLOW_DTYPES)):
            raise ValueError(
                f"Lookahead: slow_dtype must be one of {SLOW_DTYPES} (None: float32 for 16-bit "
                f"variables), got {slow_dtype!r}."
            )
        if name is not None and (not isinstance(name, str) or "/" in name):
            raise ValueError(f"Lookahead: name must be a string without '/', got {name!r}.")

        super().__init__(learning_rate=0.0, name=name)
        self._inner = inner
        self._sync_period = sync_period
        self._slow_step_size = slow_step_size
        self._inner_state = inner_state
        self._min_slow_step_size = min_slow_step_size
        self._curvature = curvature
        self._slow_dtype = slow_dtype
        self._slow_weights = []
        self._cached_moments = []
        # Where the fast weights of variables whose slow weights have another dtype wait while
        # the model holds the slow ones (an exchange would round the slow weights); None for
        # the others. See `_exchange`.
        self._parked = []
        # 1 while the model variables hold the slow weights and the slow-weight variables the
        # fast ones (callbacks.py swaps them by exchange). Saved with the state, so a checkpoint
        # written during the swap resumes exactly. Made here, eagerly, like the base class's
        # iteration counter: a variable made while a step is traced has no value until the step
        # runs, and the flag is read at trace time (_forms.py).
        with keras.name_scope(self.name, caller=self):
            self._slow_in_model = keras.Variable(
                0, name="slow_weights_in_model", dtype="int32", trainable=False,
                aggregation="only_first_replica",
            )
        # Whether the model variables hold the slow weights (callbacks.py), mirrored on the host
        # so that the per-step check of an eager step reads nothing; None means "read the flag".
        self._host_slow_in_model = False
        # How a step runs in this backend's execution modes, with its own host state (_forms.py).
        self._form = _forms.for_backend(self)

    # -- read-only hyperparameters -----------------------------------------------------------

    @property
    def inner_optimizer(self):
        """The wrapped optimizer A, which updates the fast weights."""
        return self._inner

    @property
    def sync_period(self):
        """k: inner updates between two syncs (an integer or a schedule)."""
        return self._sync_period

    @property
    def slow_step_size(self):
        """α: the fraction of the way the slow weights move towards the fast ones at a sync.

        A float, a schedule or `"adaptive"`; `last_slow_step_size` holds the value used at the
        latest sync in the last two cases.
        """
        return self._slow_step_size

    @property
    def slow_dtype(self):
        """None (float32 slow weights for 16-bit variables) or "variable" (see the class)."""
        return self._slow_dtype

    @property
    def min_slow_step_size(self):
        """α_low, the lower clip of the adaptive α (None unless slow_step_size="adaptive")."""
        return self._min_slow_step_size

    @property
    def last_slow_step_size(self):
        """The α used at the latest sync (0 before the first), a variable.

        Only with a scheduled or adaptive `slow_step_size` (otherwise it is the constant).
        """
        if self._alpha_mode == "constant":
            return self._slow_step_size
        self._require_built("last_slow_step_size")
        return self._last_alpha

    @property
    def slow_step_size_estimate(self):
        """The adaptive α̂ of the latest sync *before* clipping (a variable), for diagnostics."""
        if self._alpha_mode != ADAPTIVE:
            raise ValueError(
                "Lookahead: slow_step_size_estimate exists only with slow_step_size='adaptive', "
                f"not {self._slow_step_size!r}."
            )
        self._require_built("slow_step_size_estimate")
        return self._alpha_estimate

    @property
    def _k_schedule(self):
        """The k schedule, or None for a constant k (see _sync_decision)."""
        return None if isinstance(self._sync_period, int) else self._sync_period

    @property
    def _alpha_mode(self):
        """How α is found at a sync: "constant", "schedule" or "adaptive" (see _sync_alpha)."""
        if isinstance(self._slow_step_size, float):
            return "constant"
        return ADAPTIVE if self._slow_step_size == ADAPTIVE else "schedule"

    def _require_built(self, what):
        if not self.built:
            raise ValueError(
                f"Lookahead: {what} needs a built optimizer; call "
                "optimizer.build(model.trainable_variables) or train one step first."
            )

    @property
    def inner_state(self):
        """What a sync does to the inner optimizer's momentum: maintain, reset or interpolate."""
        return self._inner_state

    # -- proxies to the inner optimizer ------------------------------------------------------

    @property
    def learning_rate(self):
        self._refuse_multi_learning_rate()
        return self._inner.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self._refuse_multi_learning_rate()
        self._inner.learning_rate = learning_rate

    def _refuse_multi_learning_rate(self):
        # An AttributeError, as MultiOptimizer raises: `hasattr(opt, "learning_rate")` is then
        # False, which is how Keras's learning-rate callbacks ask.
        multi = compat.innermost_multi(self._inner)  # also inside a LossScaleOptimizer
        if multi is not None:
            path = "inner_optimizer" + ".inner_optimizer" * (multi is not self._inner)
            raise AttributeError(
                f"Lookahead: the inner optimizer {multi.name!r} is a MultiOptimizer, "
                "which has no single learning rate. Read or set it on each member: "
                f"`for opt in lookahead.{path}.optimizers: opt.learning_rate = ...`."
            )

    @property
    def loss_scale_factor(self):
        """The inner optimizer's: it scales the loss (`scale_loss`) and unscales the gradients."""
        inner = getattr(self, "_inner", None)
        return None if inner is None else inner.loss_scale_factor

    @loss_scale_factor.setter
    def loss_scale_factor(self, value):
        # A MultiOptimizer sets its own factor on each member; the member's inner optimizer is
        # the one that unscales the gradients. (The base constructor sets None before the inner
        # exists; any other value there was refused by _check_kwargs.)
        inner = getattr(self, "_inner", None)
        if inner is None:
            return
        if any(isinstance(o, keras.optimizers.LossScaleOptimizer)
               for o in compat.wrapper_chain(inner)):
            raise ValueError(
                f"Lookahead: {self.name!r} wraps a LossScaleOptimizer, so it cannot take a "
                f"loss_scale_factor ({value!r}), which a MultiOptimizer sets on each of its "
                "members: the MultiOptimizer scales the loss itself, and the LossScaleOptimizer "
                "would unscale gradients it never scaled (Keras refuses a LossScaleOptimizer "
                "member for this reason). Wrap the MultiOptimizer instead: "
                "LossScaleOptimizer(MultiOptimizer(...))."
            )
        inner.loss_scale_factor = value

    @property
    def iterations(self):
        """The inner optimizer's count of applied updates (what k counts)."""
        return compat.applied_updates(self._inner)

    def scale_loss(self, loss):
        return self._inner.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        # Keras calls this at the end of fit with the model's variables (on JAX in a `finally`,
        # so after a failed step too): the one point where a JAX trainer shows them to the
        # optimizer (its stateless step sees arrays only).
        self._check_the_models_variables(var_list)
        self._inner.finalize_variable_values(var_list)

    def _check_the_models_variables(self, var_list):
        """At the end of fit: the model's trainable variables against those this optimizer was
        built with. Raises only where the step could not have told (two models on JAX)."""
        if not self.built:
            return
        unknown = [v for v in var_list if compat.variable_index(self, v) is None]
        if not unknown:
            return
        first = getattr(unknown[0], "path", unknown[0])
        if keras.backend.backend() != "jax":
            # TF and torch refuse another model's variables at the step (Keras's own check):
            # here the model's trainable set changed after the step was traced (TF traces it
            # with the variables trainable at compile time), and the inner optimizer alone
            # trains the same variables. Nothing was mixed; say what was left out.
            warnings.warn(
                f"Lookahead: this fit did not train {first!r} ({len(unknown)} of the model's "
                f"{len(var_list)} trainable variables), which this optimizer was not built "
                "with: a layer's `trainable` changed after compile, and the training step "
                "keeps the variables it was traced with (the inner optimizer alone does the "
                "same). After changing `trainable`, compile the model again with a new "
                "optimizer: a built optimizer keeps the variables it was built with.",
                UserWarning, stacklevel=2)
            return
        if len(var_list) != len(compat.built_variables(self)):
            return  # the step refused it (stateless_apply, below): that error is on its way
        raise ValueError(
            f"Lookahead: this optimizer was built with other variables than {first!r} "
            f"({len(unknown)} of {len(var_list)} unknown): one Lookahead is training two "
            "models. On JAX Keras's stateless step cannot tell them apart, so the training "
            "that just ended mixed the two models' slow weights and optimizer state. Give each "
            "model its own optimizer."
        )

    def _refuse_variable_count(self, given, exactly=False):
        """At the step: more trainable variables than this optimizer was built with (a subset
        is fine: Keras optimizers take one), or, `exactly`, any other number."""
        built = len(compat.built_variables(self))
        if given > built or (exactly and given != built):
            raise ValueError(
                f"Lookahead: the step got {given} trainable variables, but this optimizer was "
                f"built with {built}: a layer's `trainable` was changed after the optimizer "
                "was built (compile the model again with a new optimizer: a built optimizer "
                "keeps the variables it was built with), or the optimizer is given another "
                "model's variables (give each model its own optimizer)."
            )

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        # Keras's JAX trainer: the step sees arrays, one per trainable variable of the model
        # at fit's start; Keras requires exactly the built count, and says so in terms of
        # `optimizer_variables`. Named here first.
        if self.built:
            self._refuse_variable_count(len(trainable_variables), exactly=True)
        return super().stateless_apply(optimizer_variables, grads, trainable_variables)

    # -- state --------------------------------------------------------------------------------

    def build(self, var_list):
        """Creates the slow weights (and cached momenta) after building the inner optimizer."""
        if self.built:
            return
        var_list = list(var_list)
        self._check_multi_members()  # the members known so far, before anything is built
        self._inner.build(var_list)
        self._check_multi_members()  # and those a selector function made in build
        # One slow weight per trainable variable, placed like it (add_variable_from_reference).
        # It starts as the variable's current value so that `slow_weight` means something before
        # training; the value is captured again at the first applied update (_forms.py says how
        # in each execution mode). Variables that Keras overwrites with their "gradient" (e.g.
        # float8 scaling factors) are state, not weights: no slow copy.
        self._slow_weights = [
            None if getattr(v, "overwrite_with_gradient", False)
            else self._add_slot(v, "slow", _CurrentValue(v))
            for v in var_list
        ]
        self._parked = [
            None if s is None or s.dtype == v.dtype
            else self.add_variable_from_reference(v, name="fast_parked")
            for v, s in zip(var_list, self._slow_weights)
        ]
        # The inner's first moments are looked up, never stored here: an attribute holding them
        # would make Keras track them as this optimizer's own variables too.
        moments = self._first_moments()
        if self._inner_state == policies.INTERPOLATE:
            # Referenced to the model variable, so they are placed like it and named after it.
            self._cached_moments = [
                None if m is None else self._add_slot(v, "momentum_cached", "zeros", like=m)
                for v, m in zip(var_list, moments)
            ]
        if self._k_schedule is not None:
            self._since_sync = self.add_variable(
                (), initializer="zeros", dtype="int32", name="updates_since_sync")
            self._sync_count = self.add_variable(
                (), initializer="zeros", dtype="int32", name="syncs")
        if self._alpha_mode != "constant":
            self._last_alpha = self.add_variable(
                (), initializer="zeros", dtype="float32", name="last_slow_step_size")
        if self._alpha_mode == ADAPTIVE:
            self._alpha_estimate = self.add_variable(
                (), initializer="zeros", dtype="float32", name="slow_step_size_estimate")
        super().build(var_list)
        self._state_changed()

    def _check_multi_members(self):
        """Refuses the members of a MultiOptimizer inner that Lookahead around it cannot count
        or read correctly. Called before and after the inner's build: a selector function
        makes its members there."""
        multi = compat.innermost_multi(self._inner)  # also inside a LossScaleOptimizer
        if multi is None:
            return
        for member in compat.multi_members(multi):
            steps = getattr(member, "gradient_accumulation_steps", None)
            if steps:
                raise ValueError(
                    f"Lookahead: member {member.name!r} of the MultiOptimizer "
                    f"{multi.name!r} has gradient_accumulation_steps={steps}, but "
                    "Lookahead around a MultiOptimizer counts the MultiOptimizer's steps "
                    "(its iterations), every micro-step included. Put a Lookahead inside the "
                    "MultiOptimizer instead, around that member, where it counts the member's "
                    "applied updates."
                )
        policies.check_policy(self._inner, self._inner_state)
        if self._alpha_mode == ADAPTIVE:
            adaptive.check_curvature_source(self._inner, self._curvature)

    def _add_slot(self, variable, name, initializer, like=None):
        """A variable of `variable`'s shape and placement in the slow dtype: `variable`'s dtype
        (`like`'s, for a cached moment), or float32 where that is 16-bit and `slow_dtype` is
        None."""
        dtype = keras.backend.standardize_dtype((like if like is not None else variable).dtype)
        if self._slow_dtype is None and dtype in ("float16", "bfloat16"):
            return compat.add_variable_like(self, variable, name, "float32", initializer)
        return self.add_variable_from_reference(variable, name=name, initializer=initializer)

    @property
    def variables(self):
        # Own variables (slow weights, then cached momenta), then the inner's, in build order:
        # everything needed to resume, in a fixed order for saving. The base class also made an
        # iteration counter and a learning rate for the wrapper; both live in the inner optimizer
        # here, so these unused two are left out. (They stay in `_variables`: TF checkpointing
        # only tracks lists that are never shrunk.)
        unused = compat.base_counters(self)
        own = [v for v in compat.own_variables(self) if not any(v is u for u in unused)]
        return own + self._inner.variables

    @property
    def slow_weights(self):
        """The variables holding the slow weights, one per trainable variable.

        An entry is None for a variable that is overwritten by its gradient (no slow copy).
        While the model holds the slow weights (`keras_lookahead.use_slow_weights`, the
        `SwapSlowWeights` callback), these variables hold the fast weights: use
        `slow_weight(variable)`, which accounts for that.
        """
        return list(self._slow_weights)

    def slow_weight(self, variable):
        """The slow weight φ of a model variable (a `keras.Variable` owned by the optimizer).

        Read it with `ops.convert_to_numpy(opt.slow_weight(v))`. Before the first update it
        equals the variable's value at build; right after each sync it equals the variable.
        While the model holds the slow weights (see `keras_lookahead.use_slow_weights`), this
        returns `variable` itself, which then holds them.
        """
        if not self.built:
            raise ValueError(
                "Lookahead: slow_weight() needs a built optimizer; call "
                "optimizer.build(model.trainable_variables) or train one step first."
            )
        index = compat.variable_index(self, variable)
        if index is None:
            raise ValueError(
                f"Lookahead: slow_weight() got variable {getattr(variable, 'path', variable)!r}, "
                "which this optimizer was not built with."
            )
        slow = self._slow_weights[index]
        if slow is not None and self._parked[index] is None and self.slow_weights_in_model():
            return variable
        return slow

    # -- the model on the slow weights (callbacks.py is the public interface) -----------------

    def slow_weights_in_model(self):
        """Whether the model variables hold the slow weights right now (reads one scalar).

        The flag variable is read, not a host-side copy: a compiled training step may have
        restored the fast weights on the device (see `_forms.py`).
        """
        if not self.built:
            return False
        self._host_slow_in_model = bool(ops.convert_to_numpy(self._slow_in_model))
        return self._host_slow_in_model

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
        for fast, slow, park in zip(self._built_variables(), self._slow_weights, self._parked):
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
        traced TF steps restore the fast weights before that (_forms.py).
        """
        if self._host_slow_in_model is not False and self.slow_weights_in_model():
            raise ValueError(
                "Lookahead: a training step on the slow weights. The model holds the slow "
                "weights (put there by SwapSlowWeights, or loaded from a checkpoint saved while "
                "it held them), and this step's gradient was computed on them. Call "
                "keras_lookahead.restore_fast_weights(model) before training, or pass "
                "keras_lookahead.SwapSlowWeights() to fit."
            )

    def load_own_variables(self, store):
        # Keras only warns and skips when a saved optimizer does not match; a Lookahead resumed
        # without its slow weights would silently restart from the fast ones, so refuse. An
        # optimizer not built yet (`load_weights` into a model compiled but not trained) is
        # skipped with a warning, as Keras does: there is nothing yet to load into.
        if not self.built:
            warnings.warn(
                f"Lookahead: the saved optimizer state ({len(store.keys())} variables) is not "
                "loaded because this optimizer is not built yet; only the model's weights are. "
                "To resume training, build it first (optimizer.build(model.trainable_variables)) "
                "or use keras.models.load_model.",
                stacklevel=2,
            )
            return
        keys = list(store.keys())
        missing = [str(i) for i in range(len(keys)) if str(i) not in keys]
        if missing:
            raise ValueError(
                f"Lookahead: the saved optimizer state is damaged: it has {len(keys)} "
                f"variables, numbered {sorted(keys, key=lambda k: (len(k), k))}, with "
                f"{', '.join(missing)} missing. Nothing was loaded."
            )
        self._assign_state([store[str(i)] for i in range(len(keys))],
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
        self._state_changed()
        self._host_slow_in_model = None  # the loaded flag decides: read it at the next step

    def _state_changed(self):
        """After build or a load: host copies of device state are stale."""
        self._host_slow_in_model = False
        self._form.state_changed()

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
        elif trainable_variables is not None:
            self._refuse_variable_count(len(trainable_variables))
        self._form.step(grads, trainable_variables)

    # -- what the execution forms (_forms.py) call ---------------------------------------------

    def _sync_decision(self, before, after):
        """(does this step sync?, the number of syncs done before it), on the device.

        `before` and `after` are the inner optimizer's counts of applied updates around its
        step. With a constant k the count since the last sync follows from `after`; with a k
        schedule two counters of their own are advanced here (scalar ops, every step).
        """
        applied = ops.not_equal(after, before)
        if self._k_schedule is None:
            since, done = since_sync_at(after, self._sync_period)
            return sync_is_due(applied, since, self._sync_period), done
        since = ops.add(ops.convert_to_tensor(self._since_sync), ops.cast(applied, "int32"))
        done = ops.copy(self._sync_count)  # a snapshot: the variable is written below
        sync = sync_is_due(applied, since, self._k_at(done))
        self._since_sync.assign(ops.where(sync, 0, since))
        self._sync_count.assign(ops.add(done, ops.cast(sync, "int32")))
        return sync, done

    def _schedule_counters(self):
        """The k-schedule's (updates since the last sync, syncs done) variables."""
        return self._since_sync, self._sync_count

    def _k_at(self, syncs_done):
        """k from the schedule, rounded and clipped to [1, 2**30] (NaN: 2**30), as int32."""
        k = _schedule_value(self._k_schedule, syncs_done, "sync_period", 1.0, MAX_SYNC_PERIOD)
        return ops.cast(ops.round(k), "int32")

    def _sync_alpha(self, grads, syncs_done, sync=None):
        """(α, α̂ before clipping or None) for a sync: constant, scheduled or adaptive.

        `sync` is given when the caller computes α on every step (the select form): the
        adaptive estimate, which reads every weight, then runs under a cond (1 when no sync).
        """
        if self._alpha_mode == "constant":
            return self._slow_step_size, None
        if self._alpha_mode == "schedule":
            alpha = _schedule_value(self._slow_step_size, syncs_done, "slow_step_size", 0.0, 1.0)
            return alpha, None
        if sync is None:
            estimate = adaptive.estimate(self, grads)
        else:
            estimate = ops.cond(sync, lambda: adaptive.estimate(self, grads),
                                lambda: ops.ones((), "float32"))
        return ops.clip(estimate, self._min_slow_step_size, 1.0), estimate

    def _record_alpha(self, alpha, estimate, sync=None):
        """Keeps the α of the latest sync (and the adaptive estimate) in their variables.

        With `sync` (a form that runs this on every step) the variables change only at a sync.
        """
        for var, value in ((getattr(self, "_last_alpha", None), alpha),
                           (getattr(self, "_alpha_estimate", None), estimate)):
            if var is None or value is None:
                continue
            value = ops.cast(value, var.dtype)
            var.assign(value if sync is None
                       else ops.where(sync, value, ops.convert_to_tensor(var)))

    def _aligned_grads(self, grads, trainable_variables):
        """The gradients in the order of the variables the optimizer was built with."""
        if trainable_variables is None:
            return list(grads)
        aligned = [None] * len(self._built_variables())
        for g, v in zip(grads, trainable_variables):
            aligned[compat.variable_index(self, v)] = g
        return aligned

    def _built_variables(self):
        """The model variables this optimizer was built with, in build order."""
        return compat.built_variables(self)

    def _pairs(self):
        """(fast θ, slow φ) for every variable that has a slow weight."""
        return [(v, s) for v, s in zip(self._built_variables(), self._slow_weights)
                if s is not None]

    def _capture(self):
        """φ ← θ: the slow weights start from the model's weights at the first applied update."""
        for fast, slow in self._pairs():
            slow.assign(ops.cast(fast, slow.dtype))

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

    def _sync_targets(self, trainable_variables):
        """What a sync acts on, given the variables of the step that syncs.

        Only the variables the inner optimizer updates in this step move: (θ, φ) pairs and
        (m, m_prev) moments of the others (a layer frozen after build, whose variables Keras no
        longer hands to the optimizer) are *held*: the weight keeps its value and its slow
        weight (and cached moment) follows it, so that no later sync pulls it back to where it
        was before it was frozen. `trainable_variables=None` (JAX's stateless step, which Keras
        only runs with the variables the optimizer was built with) means all of them.

        Returns (pairs, held pairs, moments, held moments).
        """
        built = self._built_variables()
        if trainable_variables is None:
            active = set(range(len(built)))
        else:
            active = {compat.variable_index(self, v) for v in trainable_variables}
        pairs, held = [], []
        for i, (v, s) in enumerate(zip(built, self._slow_weights)):
            if s is not None:
                (pairs if i in active else held).append((v, s))
        moments, held_moments = [], []
        first = self._first_moments()
        for i, (m, c) in enumerate(zip(first, self._cached_moments or [None] * len(first))):
            if m is None:
                continue
            if i in active:
                moments.append((m, c))
            elif c is not None:
                held_moments.append((m, c))
        return pairs, held, moments, held_moments

    # -- config -------------------------------------------------------------------------------

    def get_config(self):
        def value(v):
            if isinstance(v, (int, float, str)) or v is None:
                return v
            return keras.saving.serialize_keras_object(v)

        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self._inner),
            "sync_period": value(self._sync_period),
            "slow_step_size": value(self._slow_step_size),
            "inner_state": self._inner_state,
            "min_slow_step_size": self._min_slow_step_size,
            "curvature": value(self._curvature),
            "slow_dtype": self._slow_dtype,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if not isinstance(config, dict) or "optimizer" not in config:
            raise ValueError(
                "Lookahead: from_config needs a dict with the inner optimizer under "
                f"'optimizer' (as get_config writes it), got {config!r}."
            )
        config = dict(config)
        optimizer = config.pop("optimizer")
        if isinstance(optimizer, dict):
            if not isinstance(optimizer.get("class_name"), str):
                _resolve_optimizer(optimizer)  # raises, naming the argument
            optimizer = _deserialize("optimizer", optimizer, custom_objects)
        for key in ("sync_period", "slow_step_size", "curvature"):
            if isinstance(config.get(key), dict):
                config[key] = _deserialize_callable(key, config[key], custom_objects)
        return cls(optimizer, **config)


def _deserialize(argument, config, custom_objects):
    """Keras's deserialization of a saved argument, its failures named after the argument."""
    try:
        return keras.saving.deserialize_keras_object(config, custom_objects=custom_objects)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ValueError(
            f"Lookahead: the saved {argument} {config!r} cannot be deserialized ({e})."
        ) from None


def _deserialize_callable(argument, config, custom_objects):
    """A saved schedule or curvature hook, if it is one; anything else is refused.

    The constructor calls a schedule (at 0 syncs), so loading a file must not produce an
    arbitrary function: a config may name any function of the Keras namespace (say
    `keras.config.set_epsilon`), and calling it would act on the whole process at load time.
    Accepted: `LearningRateSchedule` objects, and callables the user vouched for by registering
    them (`keras.saving.register_keras_serializable`) or passing them in `custom_objects`.
    """
    value = _deserialize(argument, config, custom_objects)
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return value
    # The names the config gives the object, looked up where the user puts their own: the
    # registry, `custom_objects` (also load_model's, which Keras passes as a scope).
    names = {config.get("registered_name"), config.get("class_name")}
    if isinstance(config.get("config"), str):
        names.add(config["config"])  # a function's name
    vouched = any(keras.saving.get_registered_object(n, custom_objects) is value
                  for n in names - {None, "function"})
    if not vouched:
        raise ValueError(
            f"Lookahead: the saved {argument} is {value!r}, which is not a schedule: only "
            "keras.optimizers.schedules.LearningRateSchedule objects and callables registered "
            "with keras.saving.register_keras_serializable (or passed in custom_objects) are "
            "loaded, because Lookahead calls them. Register your schedule to load it."
        )
    return value


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
    if isinstance(optimizer, dict) and not isinstance(optimizer.get("class_name"), str):
        raise ValueError(
            "Lookahead: optimizer, given as a config dict, needs a 'class_name' (e.g. "
            f"{{'class_name': 'Adam', 'config': {{'learning_rate': 0.001}}}}), got {optimizer!r}."
        )
    if isinstance(optimizer, (str, dict)):
        try:
            return keras.optimizers.get(optimizer)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(
                f"Lookahead: optimizer={optimizer!r} is not a known optimizer identifier or "
                f"config ({e})."
            ) from None
    raise ValueError(
        "Lookahead: optimizer must be a keras.optimizers.Optimizer instance, a string "
        "identifier such as 'adam', or a config dict; got "
        f"{optimizer!r} ({type(optimizer).__name__})."
    )


def _schedule_value(schedule, syncs_done, argument, low, high):
    """What a schedule returns for `syncs_done`, as a float32 scalar clipped to [low, high].

    Read where the step needs it, on the device: it cannot raise there, so a value outside the
    range is clipped and a NaN counts as `high` (α = 1: no step back; k: the longest period).
    What cannot be a number at all is refused when the step is traced.
    """
    value = schedule(syncs_done)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        # A Python number is clipped on the host: 1e300 does not fit in a float32.
        value = float(value)
        value = high if math.isnan(value) else min(max(value, low), high)
        return ops.convert_to_tensor(value, "float32")
    try:
        value = ops.cast(value, "float32")
    except Exception as e:  # whatever the backend raises for a non-number
        raise TypeError(
            f"Lookahead: the {argument} schedule {schedule!r} returned {value!r} "
            f"({type(value).__name__}); it must return a number ({e})."
        ) from None
    if len(value.shape) != 0:
        raise ValueError(
            f"Lookahead: the {argument} schedule {schedule!r} returned a tensor of shape "
            f"{tuple(value.shape)}; it must return a scalar."
        )
    return ops.where(ops.isnan(value), high, ops.clip(value, low, high))


def _at_zero(schedule, argument):
    """A schedule's value for 0 syncs done, evaluated now to catch a wrong schedule early."""
    try:
        return float(ops.convert_to_numpy(schedule(0)))
    except Exception as e:  # a schedule may fail in any way; say which argument it was
        raise ValueError(
            f"Lookahead: {argument}={schedule!r} could not be evaluated at 0 syncs ({e!r})."
        ) from None


def _check_sync_period(k):
    if callable(k):
        at_zero = _at_zero(k, "sync_period")
        if not (1 <= at_zero <= MAX_SYNC_PERIOD and at_zero == round(at_zero)):
            raise ValueError(
                f"Lookahead: sync_period schedule {k!r} must return integers >= 1 (at most "
                f"2**30); it returns {at_zero!r} at 0 syncs."
            )
        return k
    if (isinstance(k, bool) or not isinstance(k, numbers.Integral)
            or not 1 <= k <= MAX_SYNC_PERIOD):
        raise ValueError(
            f"Lookahead: sync_period must be an integer in [1, 2**30] or a schedule (a "
            f"callable of the number of syncs done), got {k!r}."
        )
    return int(k)


def _check_slow_step_size(alpha):
    if isinstance(alpha, str):
        if alpha != ADAPTIVE:
            raise ValueError(
                "Lookahead: slow_step_size must be a float in (0, 1], a schedule or "
                f"'adaptive', got {alpha!r}."
            )
        return alpha
    if callable(alpha):
        at_zero = _at_zero(alpha, "slow_step_size")
        if not 0 < at_zero <= 1:
            raise ValueError(
                f"Lookahead: slow_step_size schedule {alpha!r} must return values in (0, 1]; "
                f"it returns {at_zero!r} at 0 syncs."
            )
        return alpha
    if not _is_fraction(alpha):
        raise ValueError(
            "Lookahead: slow_step_size must be a float in (0, 1], a schedule or 'adaptive', "
            f"got {alpha!r}."
        )
    return float(alpha)


def _is_fraction(value):
    """A real number (not a bool) in (0, 1]."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and not math.isnan(value) and 0 < value <= 1)


def _check_adaptive_options(inner, slow_step_size, min_slow_step_size, curvature):
    """Validates α_low and the curvature hook; returns α_low (None unless adaptive)."""
    if slow_step_size != ADAPTIVE:
        for name, value in (("min_slow_step_size", min_slow_step_size),
                            ("curvature", curvature)):
            if value is not None:
                raise ValueError(
                    f"Lookahead: {name}={value!r} applies only to slow_step_size='adaptive', "
                    f"but slow_step_size={slow_step_size!r}."
                )
        return None
    if compat.is_wrapper(inner):
        raise ValueError(
            f"Lookahead: slow_step_size='adaptive' needs unscaled gradients, but the inner "
            f"optimizer is a {type(inner).__name__} wrapping another. Wrap the other way: "
            "LossScaleOptimizer(Lookahead(...)), which Keras builds itself under a "
            "mixed_float16 policy."
        )
    adaptive.check_curvature_source(inner, curvature)
    if min_slow_step_size is None:
        return 0.5
    if not _is_fraction(min_slow_step_size):
        raise ValueError(
            "Lookahead: min_slow_step_size must be a float in (0, 1], got "
            f"{min_slow_step_size!r}."
        )
    return float(min_slow_step_size)


def _check_kwargs(kwargs):
    for key, value in kwargs.items():
        if key not in _BASE_OPTIONS:
            raise ValueError(
                f"Lookahead: unknown argument {key}={value!r}. Lookahead takes optimizer, "
                "sync_period, slow_step_size, inner_state, min_slow_step_size, curvature and "
                "name."
            )
        default = _BASE_OPTIONS[key]
        # Only the default itself, or an equal Python scalar, is accepted: `value != default`
        # would be ambiguous for an array.
        at_default = value is default or (
            isinstance(value, (bool, int, float)) and isinstance(default, (bool, int, float))
            and value == default)
        if not at_default:
            raise ValueError(
                f"Lookahead: {key}={value!r} is an option of the inner optimizer; set it "
                f"there, e.g. Lookahead(keras.optimizers.Adam({key}={value!r})). On the "
                "wrapper it would be applied twice or not at all."
            )
