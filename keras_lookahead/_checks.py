"""What Lookahead refuses, and why: the constructor's arguments, and what a step, the end of a
fit or a MultiOptimizer inner gives it.

Each check raises a `ValueError` (an `AttributeError` where Keras asks with `hasattr`) that names
the argument, the value and what is allowed, before any state changes. `lookahead.py` calls
them; the messages live here so that the class reads as its state and its step.
"""

import math
import numbers
import warnings

import keras
from keras import ops

from keras_lookahead import _keras_compat as compat
from keras_lookahead import adaptive
from keras_lookahead import algorithm
from keras_lookahead import inner_state as policies

ADAPTIVE = "adaptive"

# The counters of updates and syncs are int32 on the device (as Keras's own iteration counter):
# a sync period must fit with room to count past it.
MAX_SYNC_PERIOD = 2**30
# slow_dtype: None (float32 for 16-bit variables) or "variable" (the variable's own dtype)
SLOW_DTYPES = (None, "variable")

# Options of keras.optimizers.Optimizer that act on gradients or weights at each step, with their
# defaults. They belong to the inner optimizer: on the wrapper they would act twice or not at all.
BASE_OPTIONS = {
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


def resolve_optimizer(optimizer):
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


def schedule_value(schedule, syncs_done, argument, low, high):
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


def value_at_zero(schedule, argument):
    """A schedule's value for 0 syncs done, evaluated now to catch a wrong schedule early."""
    try:
        return float(ops.convert_to_numpy(schedule(0)))
    except Exception as e:  # a schedule may fail in any way; say which argument it was
        raise ValueError(
            f"Lookahead: {argument}={schedule!r} could not be evaluated at 0 syncs ({e!r})."
        ) from None


def check_sync_period(k):
    if callable(k):
        at_zero = value_at_zero(k, "sync_period")
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


def check_nesting(sync_period, levels):
    """A Lookahead around Lookaheads (Multilayer Lookahead) restarts the levels below from its
    new slow weights at each sync; that is the recursive algorithm only if each of its syncs
    falls on a sync of every level below: constant periods, each a multiple of the next."""
    for level in levels:
        inner_k = level.sync_period
        if not (isinstance(sync_period, int) and isinstance(inner_k, int)):
            raise ValueError(
                f"Lookahead: a Lookahead around another (Multilayer Lookahead) needs constant "
                f"sync periods, so that every outer sync falls on an inner one; got "
                f"sync_period={sync_period!r} around sync_period={inner_k!r}.")
        if sync_period % inner_k:
            raise ValueError(
                f"Lookahead: sync_period={sync_period} around a Lookahead with sync_period="
                f"{inner_k} (Multilayer Lookahead): the outer period must be a multiple of the "
                f"inner one, so that each outer sync falls on an inner sync (e.g. "
                f"{inner_k * max(1, round(sync_period / inner_k))}). It counts the inner "
                "optimizer's updates, like every sync period.")
        sync_period = inner_k


def check_slow_momentum(momentum, nesterov):
    """μ as a float in [0, 1), and the Nesterov flag as a bool."""
    if not (isinstance(momentum, numbers.Real) and not isinstance(momentum, bool)
            and not math.isnan(momentum) and 0 <= momentum < 1):
        raise ValueError(
            f"Lookahead: slow_momentum must be a float in [0, 1), got {momentum!r}.")
    if not isinstance(nesterov, bool):
        raise ValueError(
            f"Lookahead: slow_nesterov must be True or False, got {nesterov!r}.")
    return float(momentum), nesterov


def check_slow_step_size(alpha, momentum=0.0, nesterov=True):
    """α: "adaptive", a schedule, or a float in (0, 1] (μ = 0), in (0, limit) with outer
    momentum (algorithm.max_outer_rate says which limit and why)."""
    if isinstance(alpha, str) and alpha == ADAPTIVE:
        if momentum:
            raise ValueError(
                f"Lookahead: slow_step_size='adaptive' estimates how far the slow weights "
                f"should move towards the fast ones (paper, Sec. 2.1), which has no meaning for "
                f"an outer step with momentum: use slow_momentum=0 with it, or a float "
                f"slow_step_size with slow_momentum={momentum!r}."
            )
        return alpha
    if momentum:
        limit = algorithm.max_outer_rate(momentum, nesterov)
        form = "Nesterov" if nesterov else "plain"
        allowed = (f"in (0, {limit:.4g}) with slow_momentum={momentum!r} ({form}: "
                   f"{'2(1 + μ)/(1 + 2μ)' if nesterov else '2(1 + μ)'}, beyond which the "
                   "outer step diverges on a quadratic whose minimum the inner steps reach)")
        inside = lambda value: 0 < value < limit  # noqa: E731
    else:
        allowed, inside = "in (0, 1]", lambda value: 0 < value <= 1
    if callable(alpha):
        at_zero = value_at_zero(alpha, "slow_step_size")
        if not inside(at_zero):
            raise ValueError(
                f"Lookahead: slow_step_size schedule {alpha!r} must return values {allowed}; "
                f"it returns {at_zero!r} at 0 syncs."
            )
        return alpha
    if not (isinstance(alpha, numbers.Real) and not isinstance(alpha, bool)
            and not math.isnan(alpha) and inside(alpha)):
        raise ValueError(
            f"Lookahead: slow_step_size must be a float {allowed}, a schedule or 'adaptive', "
            f"got {alpha!r}.")
    return float(alpha)


def fraction(argument, value, allowed="a float in (0, 1]"):
    """`value` as a float if it is a real number (not a bool) in (0, 1]; refused otherwise."""
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and not math.isnan(value) and 0 < value <= 1):
        raise ValueError(f"Lookahead: {argument} must be {allowed}, got {value!r}.")
    return float(value)


def check_adaptive_options(inner, slow_step_size, min_slow_step_size, curvature):
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
    return fraction("min_slow_step_size", min_slow_step_size)


def check_kwargs(kwargs):
    for key, value in kwargs.items():
        if key not in BASE_OPTIONS:
            raise ValueError(
                f"Lookahead: unknown argument {key}={value!r}. Lookahead takes optimizer, "
                "sync_period, slow_step_size, inner_state, min_slow_step_size, curvature and "
                "name."
            )
        default = BASE_OPTIONS[key]
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


def check_slow_dtype(slow_dtype):
    if not (slow_dtype is None or (isinstance(slow_dtype, str) and slow_dtype in SLOW_DTYPES)):
        raise ValueError(
            f"Lookahead: slow_dtype must be one of {SLOW_DTYPES} (None: float32 for 16-bit "
            f"variables), got {slow_dtype!r}."
        )


def check_name(name):
    if name is not None and (not isinstance(name, str) or "/" in name):
        raise ValueError(f"Lookahead: name must be a string without '/', got {name!r}.")


def require_built(optimizer, what,
                  fix="call optimizer.build(model.trainable_variables) or train one step first"):
    if not optimizer.built:
        raise ValueError(f"Lookahead: {what} needs a built optimizer; {fix}.")


def require_adaptive(slow_step_size, what):
    if slow_step_size != ADAPTIVE:
        raise ValueError(
            f"Lookahead: {what} exists only with slow_step_size='adaptive', "
            f"not {slow_step_size!r}."
        )


def built_index(optimizer, variable, what):
    """The index of a model variable among those `optimizer` was built with; refused if none."""
    index = compat.variable_index(optimizer, variable)
    if index is None:
        raise ValueError(
            f"Lookahead: {what} got variable {getattr(variable, 'path', variable)!r}, "
            "which this optimizer was not built with."
        )
    return index


# -- what a MultiOptimizer inner allows ---------------------------------------------------------

def refuse_multi_learning_rate(inner):
    # An AttributeError, as MultiOptimizer raises: `hasattr(opt, "learning_rate")` is then
    # False, which is how Keras's learning-rate callbacks ask.
    multi = compat.innermost_multi(inner)  # also inside a LossScaleOptimizer
    if multi is not None:
        path = "inner_optimizer" + ".inner_optimizer" * (multi is not inner)
        raise AttributeError(
            f"Lookahead: the inner optimizer {multi.name!r} is a MultiOptimizer, "
            "which has no single learning rate. Read or set it on each member: "
            f"`for opt in lookahead.{path}.optimizers: opt.learning_rate = ...`."
        )


def refuse_loss_scale_factor(name, inner, value):
    """A MultiOptimizer sets its loss_scale_factor on each member: refused where the member
    wraps a LossScaleOptimizer."""
    if any(isinstance(o, keras.optimizers.LossScaleOptimizer)
           for o in compat.wrapper_chain(inner)):
        raise ValueError(
            f"Lookahead: {name!r} wraps a LossScaleOptimizer, so it cannot take a "
            f"loss_scale_factor ({value!r}), which a MultiOptimizer sets on each of its "
            "members: the MultiOptimizer scales the loss itself, and the LossScaleOptimizer "
            "would unscale gradients it never scaled (Keras refuses a LossScaleOptimizer "
            "member for this reason). Wrap the MultiOptimizer instead: "
            "LossScaleOptimizer(MultiOptimizer(...))."
        )


def check_multi_members(inner, inner_state, alpha_mode, curvature):
    """Refuses the members of a MultiOptimizer inner that Lookahead around it cannot count
    or read correctly. Called before and after the inner's build: a selector function
    makes its members there."""
    multi = compat.innermost_multi(inner)  # also inside a LossScaleOptimizer
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
    policies.check_policy(inner, inner_state)
    if alpha_mode == ADAPTIVE:
        adaptive.check_curvature_source(inner, curvature)


def check_first_moments(inner_state, inner, moments, count):
    """The policy needs one first-moment slot per variable (`count` of them)."""
    if len(moments) != count or all(m is None for m in moments):
        raise ValueError(
            f"Lookahead: inner_state={inner_state!r} needs one first-moment slot per "
            f"variable, but {type(inner).__name__} has "
            f"{sum(m is not None for m in moments)} for {count} variables."
        )


# -- the variables a step or the end of a fit gives ---------------------------------------------

def refuse_variable_count(optimizer, given, exactly=False):
    """At the step: more trainable variables than `optimizer` was built with (a subset is fine:
    Keras optimizers take one), or, `exactly`, any other number."""
    built = len(compat.built_variables(optimizer))
    if given > built or (exactly and given != built):
        raise ValueError(
            f"Lookahead: the step got {given} trainable variables, but this optimizer was "
            f"built with {built}: a layer's `trainable` was changed after the optimizer "
            "was built (compile the model again with a new optimizer: a built optimizer "
            "keeps the variables it was built with), or the optimizer is given another "
            "model's variables (give each model its own optimizer)."
        )


def check_the_models_variables(optimizer, var_list):
    """At the end of fit: the model's trainable variables against those `optimizer` was built
    with. Raises only where the step could not have told (two models on JAX)."""
    if not optimizer.built:
        return
    unknown = [v for v in var_list if compat.variable_index(optimizer, v) is None]
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
    if len(var_list) != len(compat.built_variables(optimizer)):
        return  # the step refused it (stateless_apply): that error is on its way
    raise ValueError(
        f"Lookahead: this optimizer was built with other variables than {first!r} "
        f"({len(unknown)} of {len(var_list)} unknown): one Lookahead is training two "
        "models. On JAX Keras's stateless step cannot tell them apart, so the training "
        "that just ended mixed the two models' slow weights and optimizer state. Give each "
        "model its own optimizer."
    )


def refuse_training_on_slow_weights():
    raise ValueError(
        "Lookahead: a training step on the slow weights. The model holds the slow "
        "weights (put there by SwapSlowWeights, or loaded from a checkpoint saved while "
        "it held them), and this step's gradient was computed on them. Call "
        "keras_lookahead.restore_fast_weights(model) before training, or pass "
        "keras_lookahead.SwapSlowWeights() to fit."
    )


# -- state given to load ------------------------------------------------------------------------

def warn_state_not_loaded(count):
    # Keras only warns and skips when there is nothing yet to load into, and so does Lookahead.
    warnings.warn(
        f"Lookahead: the saved optimizer state ({count} variables) is not "
        "loaded because this optimizer is not built yet; only the model's weights are. "
        "To resume training, build it first (optimizer.build(model.trainable_variables)) "
        "or use keras.models.load_model.",
        stacklevel=3,  # the caller of load_own_variables
    )


def check_saved_keys(keys):
    """A saved optimizer state numbers its variables 0..n−1; a gap means it is damaged."""
    missing = [str(i) for i in range(len(keys)) if str(i) not in keys]
    if missing:
        raise ValueError(
            f"Lookahead: the saved optimizer state is damaged: it has {len(keys)} "
            f"variables, numbered {sorted(keys, key=lambda k: (len(k), k))}, with "
            f"{', '.join(missing)} missing. Nothing was loaded."
        )


def check_state(optimizer, values, source):
    """`values` against `optimizer.variables`, count and shapes, before anything is assigned."""
    expected = optimizer.variables
    if len(values) != len(expected):
        raise ValueError(
            f"Lookahead: {source} has {len(values)} variables, but this "
            f"Lookahead({type(optimizer.inner_optimizer).__name__}, "
            f"inner_state={optimizer.inner_state!r}) has {len(expected)}"
            + ("" if optimizer.built else " (it is not built yet)")
            + ". The state comes from a different optimizer configuration."
        )
    for i, (value, variable) in enumerate(zip(values, expected)):
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"Lookahead: {source}: variable {i} has shape {tuple(value.shape)}, but "
                f"{variable.path} has shape {tuple(variable.shape)}."
            )
    return expected
