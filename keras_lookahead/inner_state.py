"""Which slots of which inner optimizers are first moments, and what a sync does to them.

The paper (App. C.5) compares three ways to treat the inner optimizer's momentum when the fast
weights are pulled back to the slow weights: keep it ("maintain"), zero it ("reset"), or mix it
with its value at the previous sync ("interpolate", the authors' "pullback"). Second moments
(Adam's velocity, RMSprop's accumulator, ...) are never touched: they estimate curvature, which a
sync does not change.

Keras optimizers keep their first moments in differently named attributes, so this module holds a
small registry from optimizer class to that attribute. `register_first_moments` lets a user add a
custom optimizer.
"""

import keras

MAINTAIN = "maintain"
RESET = "reset"
INTERPOLATE = "interpolate"
POLICIES = (MAINTAIN, RESET, INTERPOLATE)

# class -> (attribute holding one first-moment variable per model variable (None where the
# optimizer keeps none), predicate telling whether this instance keeps first moments at all).
_REGISTRY = {}


def register_first_moments(optimizer_class, attribute, has_first_moments=None):
    """Declares where an optimizer class keeps its first moments.

    Args:
        optimizer_class: a subclass of `keras.optimizers.Optimizer`. Subclasses of it are covered
            too unless registered themselves.
        attribute: name of the attribute that, once the optimizer is built, holds a list with one
            first-moment variable per model variable, in the order the optimizer was built with
            (`None` entries are allowed, e.g. for variables updated by overwriting).
        has_first_moments: optional callable `optimizer -> bool` for classes whose first moments
            depend on a hyperparameter (e.g. SGD without momentum keeps none).

    Example:

    ```python
    keras_lookahead.register_first_moments(MyHeavyBall, "_velocities")
    ```
    """
    if not (isinstance(optimizer_class, type)
            and issubclass(optimizer_class, keras.optimizers.Optimizer)):
        raise ValueError(
            "register_first_moments: optimizer_class must be a subclass of "
            f"keras.optimizers.Optimizer, got {optimizer_class!r}."
        )
    if not isinstance(attribute, str) or not attribute:
        raise ValueError(
            f"register_first_moments: attribute must be a non-empty string, got {attribute!r}."
        )
    if has_first_moments is not None and not callable(has_first_moments):
        raise ValueError(
            "register_first_moments: has_first_moments must be callable or None, "
            f"got {has_first_moments!r}."
        )
    _REGISTRY[optimizer_class] = (attribute, has_first_moments)


def _register_keras_optimizers():
    opt = keras.optimizers
    register_first_moments(opt.SGD, "momentums", lambda o: o.momentum != 0)
    register_first_moments(opt.RMSprop, "_momentums", lambda o: o.momentum > 0)
    # AdamW subclasses Adam and is covered by it.
    for cls in (opt.Adam, opt.Nadam, opt.Lamb, opt.Lion):
        register_first_moments(cls, "_momentums")
    register_first_moments(opt.Adamax, "_m")
    if hasattr(opt, "Muon"):
        register_first_moments(opt.Muon, "momentums")
    # Not registered, on purpose: Adagrad, Adadelta, Ftrl, Adafactor keep no first moment, and
    # ScheduleFreeAdamW's "momentum" slot is its z sequence, not a momentum.


_register_keras_optimizers()


def _unwrap(optimizer):
    """The optimizer that owns the slots, looking through wrappers like LossScaleOptimizer."""
    seen = set()
    while (hasattr(optimizer, "inner_optimizer")
           and isinstance(optimizer.inner_optimizer, keras.optimizers.Optimizer)
           and id(optimizer) not in seen):
        seen.add(id(optimizer))
        optimizer = optimizer.inner_optimizer
    return optimizer


def _lookup(optimizer):
    owner = _unwrap(optimizer)
    for cls in type(owner).__mro__:
        if cls in _REGISTRY:
            attribute, predicate = _REGISTRY[cls]
            if predicate is not None and not predicate(owner):
                return owner, None
            return owner, attribute
    return owner, None


def check_policy(optimizer, policy):
    """Raises ValueError if `policy` is unknown or needs first moments `optimizer` lacks."""
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ValueError(
            f"Lookahead: inner_state must be one of {', '.join(repr(p) for p in POLICIES)}, "
            f"got {policy!r}."
        )
    if policy == MAINTAIN:
        return
    owner, attribute = _lookup(optimizer)
    if attribute is None:
        raise ValueError(
            f"Lookahead: inner_state={policy!r} acts on the inner optimizer's first moments "
            f"(momentum), but {type(owner).__name__} "
            f"{'as configured ' if _has_registered_class(owner) else ''}keeps none. "
            "Use inner_state='maintain', an inner optimizer with momentum, or declare the slot "
            "with keras_lookahead.register_first_moments()."
        )


def _has_registered_class(owner):
    return any(cls in _REGISTRY for cls in type(owner).__mro__)


def first_moments(optimizer):
    """The built optimizer's first-moment variables, one per model variable (or None)."""
    owner, attribute = _lookup(optimizer)
    if attribute is None:
        return []
    slots = getattr(owner, attribute, None)
    if slots is None:
        raise ValueError(
            f"Lookahead: {type(owner).__name__} has no attribute {attribute!r} after build; "
            "its first moments were registered under a name it does not use."
        )
    return list(slots)
