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

from keras_lookahead import _keras_compat as compat

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
            (`None` entries are allowed, e.g. for variables updated by overwriting), or a dict
            from variable path to that variable.
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
    # Their (private) slot names, and the ones left out on purpose, are in _keras_compat.py.
    for cls, attribute, predicate in compat.keras_first_moments():
        register_first_moments(cls, attribute, predicate)


_register_keras_optimizers()


def _lookup(optimizer):
    owner = compat.innermost(optimizer)
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
    multi = compat.innermost_multi(optimizer)
    if multi is not None:
        members = compat.multi_members(multi)
        # Each group's moments are its member's; a member without any keeps its momentum-free
        # update. Members a selector function makes at build are checked then.
        if members and all(_lookup(m)[1] is None for m in members):
            raise ValueError(
                f"Lookahead: inner_state={policy!r} acts on the inner optimizer's first "
                "moments (momentum), but no member of the MultiOptimizer keeps any ("
                + ", ".join(type(compat.innermost(m)).__name__ for m in members) + "). Use "
                "inner_state='maintain' or give a member momentum."
            )
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
    """The built optimizer's first-moment variables, one per model variable (or None).

    For a MultiOptimizer, each variable's moment is the one its member keeps for it.
    """
    multi = compat.innermost_multi(optimizer)
    if multi is not None:
        return compat.per_member(multi, first_moments)
    owner, attribute = _lookup(optimizer)
    if attribute is None:
        return []
    return compat.slots(owner, attribute)
