"""The Lookahead optimizer wrapper (Zhang, Lucas, Hinton & Ba, 2019): its state and its step.

Where the rest lives: the sync on values (Algorithm 1, with outer momentum) in `algorithm.py`;
the step, in the form each execution mode needs, in `_steps.py` (every form gates and writes
`algorithm.sync`, and sees this class only through `StepInterface`, below); what is refused, and
the messages that say so, in `_checks.py`; the config in `_config.py`; the exchange of slow and
fast weights in the model in `_swap.py`.
"""

import keras
from keras import ops

from keras_lookahead import _checks as checks
from keras_lookahead import _config as config_io
from keras_lookahead import _keras_compat as compat
from keras_lookahead import _steps
from keras_lookahead import _swap
from keras_lookahead import adaptive
from keras_lookahead import algorithm
from keras_lookahead import inner_state as policies
from keras_lookahead._checks import ADAPTIVE


@compat.proxy_current_learning_rate
@keras.saving.register_keras_serializable(package="keras_lookahead")
class Lookahead(_swap.ModelOnSlowWeights, keras.optimizers.Optimizer):
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
    inner optimizer its own); docs/options.md says what each form does. A Lookahead around a
    Lookahead is Multilayer Lookahead: each outer sync restarts the level below from the new
    slow weights (the outer k a multiple of the inner one).

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
        slow_momentum: μ in [0, 1): momentum of the slow weights' step (default 0: Lookahead).
            With μ > 0 a sync is SNOO's outer step (DiLoCo's, on one worker): with s = φ − θ,
            b ← μ b + s and φ ← φ − α (μ b + s) (Nesterov) or φ ← φ − α b, then θ ← φ; α
            (`slow_step_size`) may then exceed 1, up to 2(1 + μ)/(1 + 2μ) (Nesterov) or
            2(1 + μ) (plain), where the outer step diverges on a quadratic the inner steps
            solve. The buffer b is one more copy of the weights, in the slow weights' dtype.
            Not with `slow_step_size="adaptive"`.
        slow_nesterov: with `slow_momentum` > 0, Nesterov's form (default, SNOO's) or plain
            momentum.
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
        - [Kallusky, Rao, Nandavanam & Shi, 2025. SNOO: Step-K Nesterov Outer Optimizer.
          ](https://arxiv.org/abs/2510.15830)
        - [Pushkin & Barba, 2021. Multilayer Lookahead: a nested version of Lookahead.
          ](https://arxiv.org/abs/2110.14254)
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
        slow_momentum=0.0,
        slow_nesterov=True,
        name=None,
        **kwargs,
    ):
        inner = checks.resolve_optimizer(optimizer)
        sync_period = checks.check_sync_period(sync_period)
        checks.check_nesting(sync_period, nested_lookaheads(inner))
        slow_momentum, slow_nesterov = checks.check_slow_momentum(slow_momentum, slow_nesterov)
        slow_step_size = checks.check_slow_step_size(slow_step_size, slow_momentum,
                                                     slow_nesterov)
        policies.check_policy(inner, inner_state)
        min_slow_step_size = checks.check_adaptive_options(
            inner, slow_step_size, min_slow_step_size, curvature)
        checks.check_kwargs(kwargs)
        checks.check_slow_dtype(slow_dtype)
        checks.check_name(name)
        super().__init__(learning_rate=0.0, name=name)
        self._inner = inner
        self._sync_period = sync_period
        self._slow_step_size = slow_step_size
        self._inner_state = inner_state
        self._min_slow_step_size = min_slow_step_size
        self._curvature = curvature
        self._slow_dtype = slow_dtype
        self._slow_momentum = slow_momentum
        self._slow_nesterov = slow_nesterov
        self._slow_weights = []
        self._cached_moments = []
        self._slow_buffers = []  # the outer momentum's b, one per slow weight (μ > 0 only)
        # Where the fast weights of variables whose slow weights have another dtype wait while
        # the model holds the slow ones (an exchange would round the slow weights); None for
        # the others. See `_exchange`.
        self._fast_while_swapped = []
        # 1 while the model variables hold the slow weights and the slow-weight variables the
        # fast ones (callbacks.py swaps them by exchange). Saved with the state, so a checkpoint
        # written during the swap resumes exactly. Made here, eagerly, like the base class's
        # iteration counter: a variable made while a step is traced has no value until the step
        # runs, and the flag is read at trace time (_steps.py).
        with keras.name_scope(self.name, caller=self):
            self._slow_in_model = keras.Variable(
                0, name="slow_weights_in_model", dtype="int32", trainable=False,
                aggregation="only_first_replica",
            )
        # Whether the model variables hold the slow weights (callbacks.py), mirrored on the host
        # so that the per-step check of an eager step reads nothing; None means "read the flag".
        self._host_slow_in_model = False
        # How a step runs in this backend's execution modes, with its own host state (_steps.py).
        self._step = _steps.for_backend(StepInterface(self))

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
    def slow_momentum(self):
        """μ: the momentum of the slow weights' outer step (0: Lookahead; see the class)."""
        return self._slow_momentum

    @property
    def slow_nesterov(self):
        """Whether the outer momentum takes Nesterov's form (only with `slow_momentum` > 0)."""
        return self._slow_nesterov

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
        checks.require_built(self, "last_slow_step_size")
        return self._last_alpha

    @property
    def slow_step_size_estimate(self):
        """The adaptive α̂ of the latest sync *before* clipping (a variable), for diagnostics."""
        checks.require_adaptive(self._slow_step_size, "slow_step_size_estimate")
        checks.require_built(self, "slow_step_size_estimate")
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

    @property
    def inner_state(self):
        """What a sync does to the inner optimizer's momentum: maintain, reset or interpolate."""
        return self._inner_state

    # -- proxies to the inner optimizer ------------------------------------------------------

    @property
    def learning_rate(self):
        checks.refuse_multi_learning_rate(self._inner)
        return self._inner.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        checks.refuse_multi_learning_rate(self._inner)
        self._inner.learning_rate = learning_rate

    @property
    def loss_scale_factor(self):
        """The inner optimizer's: it scales the loss (`scale_loss`) and unscales the gradients."""
        inner = getattr(self, "_inner", None)
        return None if inner is None else inner.loss_scale_factor

    @loss_scale_factor.setter
    def loss_scale_factor(self, value):
        # A MultiOptimizer sets its own factor on each member; the member's inner optimizer is
        # the one that unscales the gradients. (The base constructor sets None before the inner
        # exists; any other value there was refused by checks.check_kwargs.)
        inner = getattr(self, "_inner", None)
        if inner is None:
            return
        checks.refuse_loss_scale_factor(self.name, inner, value)
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
        checks.check_the_models_variables(self, var_list)
        self._inner.finalize_variable_values(var_list)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        # Keras's JAX trainer: the step sees arrays, one per trainable variable of the model
        # at fit's start; Keras requires exactly the built count, and says so in terms of
        # `optimizer_variables`. Named here first.
        if self.built:
            checks.refuse_variable_count(self, len(trainable_variables), exactly=True)
        return super().stateless_apply(optimizer_variables, grads, trainable_variables)

    # -- state --------------------------------------------------------------------------------

    def build(self, var_list):
        """Creates the slow weights (and cached momenta) after building the inner optimizer."""
        if self.built:
            return
        var_list = list(var_list)
        # The members of a MultiOptimizer inner known so far, before anything is built, and
        # those a selector function made in build.
        members = (self._inner, self._inner_state, self._alpha_mode, self._curvature)
        checks.check_multi_members(*members)
        self._inner.build(var_list)
        checks.check_multi_members(*members)
        # One slow weight per trainable variable, placed like it (add_variable_from_reference).
        # It starts as the variable's current value so that `slow_weight` means something before
        # training; the value is captured again at the first applied update (_steps.py says how
        # in each execution mode). Variables that Keras overwrites with their "gradient" (e.g.
        # float8 scaling factors) are state, not weights: no slow copy.
        self._slow_weights = [
            None if getattr(v, "overwrite_with_gradient", False)
            else self._add_slot(v, "slow", _CurrentValue(v))
            for v in var_list
        ]
        self._fast_while_swapped = [
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
        if self._slow_momentum:
            # In the slow weights' dtype (float32 for a 16-bit variable unless slow_dtype says
            # otherwise): it accumulates the moves of the slow weights.
            self._slow_buffers = [
                None if s is None else self._add_slot(v, "slow_momentum", "zeros")
                for v, s in zip(var_list, self._slow_weights)
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
        checks.require_built(self, "slow_weight()")
        index = checks.built_index(self, variable, "slow_weight()")
        slow = self._slow_weights[index]
        if (slow is not None and self._fast_while_swapped[index] is None
                and self.slow_weights_in_model()):
            return variable
        return slow

    # -- the model on the slow weights (callbacks.py is the public interface; _swap.py) --------

    def slow_weights_in_model(self):
        """Whether the model variables hold the slow weights right now (reads one scalar).

        The flag variable is read, not a host-side copy: a compiled training step may have
        restored the fast weights on the device (see `_steps.py`).
        """
        if not self.built:
            return False
        self._host_slow_in_model = bool(ops.convert_to_numpy(self._slow_in_model))
        return self._host_slow_in_model

    def load_own_variables(self, store):
        # Keras only warns and skips when a saved optimizer does not match; a Lookahead resumed
        # without its slow weights would silently restart from the fast ones, so refuse. An
        # optimizer not built yet (`load_weights` into a model compiled but not trained) is
        # skipped with a warning, as Keras does: there is nothing yet to load into.
        if not self.built:
            checks.warn_state_not_loaded(len(store.keys()))
            return
        keys = list(store.keys())
        checks.check_saved_keys(keys)
        self._assign_state([store[str(i)] for i in range(len(keys))],
                           "the saved optimizer state")

    def set_weights(self, weights):
        """Sets every value in `variables` (slow weights, cached momenta, the inner's state)."""
        checks.require_built(self, "set_weights()",
                             "call optimizer.build(model.trainable_variables) first")
        self._assign_state(list(weights), "set_weights()")

    def _assign_state(self, values, source):
        """Checks count and shapes against `variables` before assigning anything."""
        for value, variable in zip(values, checks.check_state(self, values, source)):
            variable.assign(value)
        self._state_changed()
        self._host_slow_in_model = None  # the loaded flag decides: read it at the next step

    def _state_changed(self):
        """After build or a load: host copies of device state are stale."""
        self._host_slow_in_model = False
        self._step.state_changed()

    # -- the step -----------------------------------------------------------------------------

    def apply(self, grads, trainable_variables=None):
        """Applies the inner optimizer's update, then syncs when the k-th update is done."""
        if len(grads) == 0:
            return  # as Keras optimizers do: nothing to apply, nothing counted
        if not self.built:
            if trainable_variables is None:
                checks.require_built(self, "apply() without trainable_variables",
                                     "pass the variables on the first call or call build() first")
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
        elif trainable_variables is not None:
            checks.refuse_variable_count(self, len(trainable_variables))
        self._step.step(grads, trainable_variables)

    # -- what the steps (_steps.py) use, through StepInterface ----------------------------------

    def _advance_counters(self, before, after):
        """(does this step sync?, the number of syncs done before it), on the device; with a k
        schedule, advances its two counters (writes them: scalar ops, every step).

        `before` and `after` are the inner optimizer's counts of applied updates around its
        step. With a constant k the count since the last sync follows from `after`.
        """
        applied = ops.not_equal(after, before)
        if self._k_schedule is None:
            since, done = algorithm.since_sync_at(after, self._sync_period)
            return algorithm.sync_is_due(applied, since, self._sync_period), done
        since = ops.add(ops.convert_to_tensor(self._since_sync), ops.cast(applied, "int32"))
        done = ops.copy(self._sync_count)  # a snapshot: the variable is written below
        sync = algorithm.sync_is_due(applied, since, self._k_at(done))
        self._since_sync.assign(ops.where(sync, 0, since))
        self._sync_count.assign(ops.add(done, ops.cast(sync, "int32")))
        return sync, done

    def _k_at(self, syncs_done):
        """k from the schedule, rounded and clipped to [1, 2**30] (NaN: 2**30), as int32."""
        k = checks.schedule_value(self._k_schedule, syncs_done, "sync_period", 1.0,
                                  checks.MAX_SYNC_PERIOD)
        return ops.cast(ops.round(k), "int32")

    def _sync_alpha(self, grads, syncs_done, sync=None):
        """(α, α̂ before clipping or None) for a sync: constant, scheduled or adaptive.

        `sync` is given when the caller computes α on every step (the select form): the
        adaptive estimate, which reads every weight, then runs under a cond (1 when no sync).
        """
        if self._alpha_mode == "constant":
            return self._slow_step_size, None
        if self._alpha_mode == "schedule":
            alpha = checks.schedule_value(self._slow_step_size, syncs_done, "slow_step_size",
                                          0.0, algorithm.max_outer_rate(self._slow_momentum,
                                                                        self._slow_nesterov))
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
        checks.check_first_moments(self._inner_state, self._inner, moments, n)
        return moments

    def _sync_targets(self, trainable_variables):
        """What a sync acts on, given the variables of the step that syncs.

        Only the variables the inner optimizer updates in this step move: (θ, φ) pairs and
        (m, m_prev) moments of the others (a layer frozen after build, whose variables Keras no
        longer hands to the optimizer) are *held*: the weight keeps its value and its slow
        weight (and cached moment) follows it, so that no later sync pulls it back to where it
        was before it was frozen. `trainable_variables=None` (JAX's stateless step, which Keras
        only runs with the variables the optimizer was built with) means all of them.

        Returns (weights, held weights, moments, held moments): (θ, φ, b) triples, b the outer
        momentum buffer (None when μ = 0), of the variables that move; (θ, φ) pairs of those
        held (their buffers are left as they are: no pseudo-gradient reaches them); (m, m_prev)
        pairs, m_prev None unless "interpolate"; and (m, m_prev) pairs of the held variables.
        """
        built = self._built_variables()
        if trainable_variables is None:
            active = set(range(len(built)))
        else:
            active = {compat.variable_index(self, v) for v in trainable_variables}
        buffers = self._slow_buffers or [None] * len(built)
        pairs, held = [], []
        for i, (v, s, b) in enumerate(zip(built, self._slow_weights, buffers)):
            if s is None:
                continue
            if i in active:
                pairs.append((v, s, b))
            else:
                held.append((v, s))
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

    def _sync(self, grads, trainable_variables, syncs_done, list_ops, write, sync=None):
        """This step's sync (`algorithm.sync`), written through the step's `write(variables,
        values)`, which stores values in variables and returns what they hold now.

        α is found (and recorded) before anything is computed; `sync` is the predicate of a
        form that runs this on every step (see `_sync_alpha`). `list_ops` reads the variables
        and does the arithmetic (`algorithm.KerasListOps`, or `_steps.TorchListOps`, which
        works in place). The levels of a Multilayer Lookahead below restart last.
        """
        grads = self._aligned_grads(grads, trainable_variables)
        pairs, held, moments, held_moments = self._sync_targets(trainable_variables)
        alpha, estimate = self._sync_alpha(grads, syncs_done, sync)
        self._record_alpha(alpha, estimate, sync)
        outer = algorithm.Outer(list_ops.scalar(alpha), self._slow_momentum,
                                self._slow_nesterov, self._inner_state)
        read = list_ops.read
        cached = [c for _, c in moments if c is not None]
        inputs = algorithm.SyncInputs(
            fast=[read(f) for f, _, _ in pairs], slow=[read(s) for _, s, _ in pairs],
            buffer=[read(b) for _, _, b in pairs if b is not None],
            moment=[read(m) for m, _ in moments], cached=[read(c) for c in cached],
            held_fast=[read(f) for f, _ in held], held_moment=[read(m) for m, _ in held_moments])
        targets = {
            "fast": [f for f, _, _ in pairs], "slow": [s for _, s, _ in pairs],
            "buffer": [b for _, _, b in pairs if b is not None],
            "moment": [m for m, _ in moments], "cached": cached,
            "held_slow": [s for _, s in held], "held_cached": [c for _, c in held_moments]}
        new = algorithm.sync(inputs, outer, [read(s) for _, s in held],
                             [read(c) for _, c in held_moments], list_ops,
                             lambda part, values: write(targets[part], values))
        for variables, values in self._restart_levels_below(targets["fast"], new.slow):
            write(variables, values)

    def _restart_levels_below(self, fast, new_slow):
        """Multilayer Lookahead (a Lookahead whose inner optimizer is a Lookahead): every level
        below restarts from the new slow weights, as the recursive definition starts each of its
        periods there. [(that level's slow weights, their new values)] for the variables `fast`
        (new values `new_slow`), one pair of lists per level; none when nothing is nested."""
        writes = []
        position = {id(v): i for i, v in enumerate(fast)}
        for level in nested_lookaheads(self._inner):
            pairs = [(level_slow, new_slow[position[id(v)]])
                     for v, level_slow in zip(level._built_variables(), level._slow_weights)
                     if level_slow is not None and id(v) in position]
            writes.append(([s for s, _ in pairs], [x for _, x in pairs]))
        return writes

    # -- config -------------------------------------------------------------------------------

    def get_config(self):
        return config_io.serialize({
            "name": self.name,
            "optimizer": self._inner,
            "sync_period": self._sync_period,
            "slow_step_size": self._slow_step_size,
            "inner_state": self._inner_state,
            "min_slow_step_size": self._min_slow_step_size,
            "curvature": self._curvature,
            "slow_dtype": self._slow_dtype,
            "slow_momentum": self._slow_momentum,
            "slow_nesterov": self._slow_nesterov,
        })

    @classmethod
    def from_config(cls, config, custom_objects=None):
        optimizer, arguments = config_io.arguments_of(config, custom_objects)
        return cls(optimizer, **arguments)


class _CurrentValue(keras.initializers.Initializer):
    """Initializes a slow weight to its model variable's value at build time."""

    def __init__(self, variable):
        self._variable = variable

    def __call__(self, shape, dtype=None):
        # A copy: on torch the variable's tensor would otherwise become the slow weight's storage.
        return ops.cast(ops.copy(self._variable), dtype)


def nested_lookaheads(optimizer):
    """The Lookaheads in `optimizer`'s chain of wrapped optimizers, outermost first (for a
    Multilayer Lookahead: the levels below the one whose inner optimizer this is)."""
    return [o for o in compat.wrapper_chain(optimizer) if isinstance(o, Lookahead)]


class StepInterface:
    """What the steps (`_steps.py`) use of a Lookahead, and nothing else.

    A step decides whether it syncs and writes the sync's values; everything that reads or
    changes the optimizer's own state goes through these methods.
    """

    def __init__(self, lookahead):
        self._lookahead = lookahead

    @property
    def inner(self):
        """The inner optimizer, whose `apply` updates the fast weights."""
        return self._lookahead.inner_optimizer

    @property
    def constant_k(self):
        """k when it is a constant integer; None with a k schedule (`schedule_counters`)."""
        la = self._lookahead
        return None if la._k_schedule is not None else la.sync_period

    def applied_updates(self):
        """The inner optimizer's count of applied updates (a variable on the device)."""
        return self._lookahead.iterations

    def built_variables(self):
        """The model variables the optimizer was built with, in build order."""
        return self._lookahead._built_variables()

    def refuse_training_on_slow_weights(self):
        """Raises if the model holds the slow weights (an eager step cannot repair that)."""
        self._lookahead._refuse_training_on_slow_weights()

    def restore_fast_weights(self):
        """Puts the fast weights back in the model if the slow ones are there."""
        self._lookahead._swap_out()

    def capture(self):
        """φ ← θ: the slow weights start from the model's weights at the first applied update."""
        self._lookahead._capture()

    def advance_counters(self, before, after):
        """(does this step sync?, syncs done before it), on the device; writes the k-schedule
        counters. `before`, `after`: the applied-update counts around the inner step."""
        return self._lookahead._advance_counters(before, after)

    def schedule_counters(self):
        """The k schedule's (updates since the last sync, syncs done) variables."""
        la = self._lookahead
        return la._since_sync, la._sync_count

    def k_after(self, syncs_done):
        """The k schedule's period after `syncs_done` syncs, as an int32 scalar."""
        return self._lookahead._k_at(syncs_done)

    def sync(self, grads, trainable_variables, syncs_done, list_ops, write, sync=None):
        """Runs this step's sync, writing through `write(variables, values)` (which returns
        what the variables hold after it); see `Lookahead._sync`."""
        self._lookahead._sync(grads, trainable_variables, syncs_done, list_ops, write, sync)
