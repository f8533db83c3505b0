"""Adaptive slow step size (paper, Sec. 2.1, Prop. 1 and Fig. 2).

At a sync the slow weights can move to any point φ + α(θ − φ) on the line between the slow and
the fast weights. With d = φ − θ (θ_{t,0} − θ_{t,k} in the paper's notation) the point is
θ + (1 − α) d, and a quadratic model of the loss around θ with gradient g and diagonal curvature
Â gives the best α in closed form:

    α* = 1 + gᵀd / (dᵀ Â d),   clipped to [α_low, 1],

one scalar per sync over all parameters. Â is the inner optimizer's diagonal empirical Fisher:
the bias-corrected second-moment estimate v / (1 − β₂ᵗ) of Adam-family optimizers. The paper's g
is the gradient at θ_{t,k}; no gradient there exists until the next step, so the gradient the
step received (at θ_{t,k−1}) is used.
"""

import inspect

import keras
from keras import ops

from keras_lookahead import _keras_compat as compat

# class -> (attribute with one second-moment variable per model variable, attribute with its
# decay rate, used for the bias correction 1 − rate^t). Keras's slot names: _keras_compat.py.
# AdamW subclasses Adam and is covered by it.
_SECOND_MOMENTS = {cls: (slot, rate) for cls, slot, rate in compat.keras_second_moments()}


def register_second_moments(optimizer_class, attribute, rate_attribute):
    """Declares an optimizer class of this package whose second moments are Adam's kind: one
    variable per model variable under `attribute`, decaying at the rate `rate_attribute`."""
    _SECOND_MOMENTS[optimizer_class] = (attribute, rate_attribute)


def _lookup(optimizer):
    owner = compat.innermost(optimizer)
    for cls in type(owner).__mro__:
        if cls in _SECOND_MOMENTS:
            return owner, _SECOND_MOMENTS[cls]
    return owner, None


def check_curvature_source(optimizer, curvature):
    """Raises ValueError unless there is a curvature estimate: a callable, or the inner's."""
    if curvature is not None:
        if isinstance(curvature, keras.optimizers.schedules.LearningRateSchedule):
            # callable with one argument, so the checks below would let it through to the sync
            raise ValueError(
                f"Lookahead: curvature={curvature!r} is a LearningRateSchedule, a function of "
                "the step; curvature is a function of the variables: a callable `variables -> "
                "list of tensors` (the diagonal of Â for each variable), or None to read the "
                "inner optimizer's second moments."
            )
        if not callable(curvature):
            raise ValueError(
                "Lookahead: curvature must be a callable `variables -> list of tensors` (the "
                f"diagonal of Â for each variable) or None, got {curvature!r}."
            )
        try:
            inspect.signature(curvature).bind([])
        except TypeError:
            raise ValueError(
                f"Lookahead: curvature={curvature!r} must take one argument, the list of "
                "variables the optimizer was built with (it is called at each sync)."
            ) from None
        except ValueError:
            pass  # no signature to read (some builtins): its result is checked at the sync
        return
    multi = compat.innermost_multi(optimizer)
    if multi is not None:
        # every group needs its curvature (members a selector makes at build: checked then)
        for member in compat.multi_members(multi):
            check_curvature_source(member, None)
        return
    owner, found = _lookup(optimizer)
    if found is None:
        names = ", ".join(sorted(c.__name__ for c in _SECOND_MOMENTS))
        raise ValueError(
            "Lookahead: slow_step_size='adaptive' needs a diagonal curvature estimate: the "
            f"second moments of the inner optimizer ({names}, and their subclasses), but "
            f"{type(owner).__name__} keeps none. Use one of those, or pass "
            "curvature=lambda variables: [...] with one diagonal per variable."
        )


def _inner_curvature(optimizer):
    """The bias-corrected second moments of the (built) inner optimizer, one per variable.

    For a MultiOptimizer, each variable's comes from its member, with that member's rate and
    count."""
    multi = compat.innermost_multi(optimizer)
    if multi is not None:
        return compat.per_member(multi, _inner_curvature)
    owner, (attribute, rate_name) = _lookup(optimizer)
    t = ops.cast(owner.iterations, "float32")
    rate = ops.cast(getattr(owner, rate_name), "float32")
    correction = ops.subtract(1.0, ops.power(rate, t))
    return [None if v is None else ops.divide(ops.cast(v, "float32"), correction)
            for v in compat.slots(owner, attribute)]


def estimate(la, grads):
    """α* before clipping, from the current fast and slow weights and the step's gradients.

    `grads` are aligned with the variables the optimizer was built with. They are the gradients
    of the scaled loss where the inner optimizer has a `loss_scale_factor` (it scaled the loss,
    and unscales them in its own step): the estimate unscales them too.
    """
    variables = la._built_variables()
    if la._curvature is not None:
        diag = la._curvature(list(variables))
        if not isinstance(diag, (list, tuple)) or len(diag) != len(variables):
            raise ValueError(
                f"Lookahead: curvature={la._curvature!r} must return a list with one tensor "
                f"per variable ({len(variables)}), got {diag!r}."
            )
        for v, a in zip(variables, diag):
            if a is not None and tuple(ops.shape(a)) != tuple(v.shape):
                raise ValueError(
                    f"Lookahead: curvature={la._curvature!r} returned a tensor of shape "
                    f"{tuple(ops.shape(a))} for {v.path}, of shape {tuple(v.shape)}."
                )
    else:
        diag = _inner_curvature(la.inner_optimizer)
    num = ops.zeros((), "float32")
    den = ops.zeros((), "float32")
    for fast, slow, g, a in zip(variables, la.slow_weights, grads, diag):
        if slow is None or g is None or a is None:
            continue
        d = ops.subtract(ops.cast(slow, "float32"), ops.cast(fast, "float32"))
        num = ops.add(num, ops.sum(ops.multiply(ops.cast(g, "float32"), d)))
        den = ops.add(den, ops.sum(ops.multiply(ops.cast(a, "float32"), ops.square(d))))
    scale = la.inner_optimizer.loss_scale_factor
    if scale is not None:
        num = ops.divide(num, ops.cast(scale, "float32"))
    # d = 0 (the fast weights did not move) or no curvature along d: any α gives the same point
    # or the model has no minimum along the line; take a full step, the upper clip.
    safe = ops.where(ops.greater(den, 0.0), den, 1.0)
    return ops.where(ops.greater(den, 0.0), ops.add(1.0, ops.divide(num, safe)), 1.0)
