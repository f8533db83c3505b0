"""The one place that names private Keras, TensorFlow, JAX and PyTorch internals.

Every touch below says why no public API serves, and on which versions it was checked:
Keras 3.8.0 to 3.15.1 (TensorFlow 2.18.1 and 2.21.0; JAX 0.10.2 and PyTorch 2.13.0 with the
newest Keras). `tests/test_keras_compat.py` pins each one, so a Keras release that renames or
changes one fails a test instead of changing our behaviour. None of them has a silent fallback:
a missing name raises `KerasInternalsChanged`, which names the installed versions.

Public conventions the package also relies on, named here so there is one place to look:
`inner_optimizer` (the wrapped optimizer of a wrapper such as `LossScaleOptimizer`, followed
by `wrapper_chain`), `MultiOptimizer.optimizers` (its members, from Keras 3.15, followed by
`multi_members`) and `Variable.overwrite_with_gradient`.
"""

import keras

KERAS_VERSION = tuple(int(p) for p in keras.__version__.split(".")[:2] if p.isdigit())


class KerasInternalsChanged(RuntimeError):
    """A private name keras_lookahead relies on is missing from the installed framework."""


def _missing(what, framework="keras", detail=""):
    versions = f"keras {keras.__version__}"
    if framework != "keras":
        module = __import__(framework)
        versions += f", {framework} {getattr(module, '__version__', '?')}"
    return KerasInternalsChanged(
        f"keras_lookahead: {what} is missing from the installed frameworks ({versions}). "
        f"keras_lookahead was checked on Keras 3.8-3.15.{detail} Please report this with the "
        "versions, and pin the last working version meanwhile."
    )


# -- wrappers -------------------------------------------------------------------------------------

def wrapper_chain(optimizer):
    """The optimizer, then what it wraps (`inner_optimizer`), and so on down to a plain one.

    Keras's `LossScaleOptimizer` and our `Lookahead` both expose the wrapped optimizer as
    `inner_optimizer`; a cycle (which no Keras wrapper makes) ends the chain.
    """
    chain, seen = [], set()
    while isinstance(optimizer, keras.optimizers.Optimizer) and id(optimizer) not in seen:
        chain.append(optimizer)
        seen.add(id(optimizer))
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return chain


def is_wrapper(optimizer):
    """Whether the optimizer wraps another (and may decide on the device to skip an update)."""
    return len(wrapper_chain(optimizer)) > 1


def innermost(optimizer):
    """The plain optimizer at the end of the wrapper chain: the one that owns the slots."""
    return wrapper_chain(optimizer)[-1]


def multi_members(optimizer):
    """The members of a `keras.optimizers.MultiOptimizer` (its public `optimizers`), or None for
    any other optimizer. Keras has MultiOptimizer from 3.15; before, nothing is one."""
    multi = getattr(keras.optimizers, "MultiOptimizer", None)
    if multi is None or not isinstance(optimizer, multi):
        return None
    return list(optimizer.optimizers)


def innermost_multi(optimizer):
    """The MultiOptimizer at the end of `optimizer`'s wrapper chain, or None if it ends in a
    plain optimizer."""
    owner = innermost(optimizer)
    return owner if multi_members(owner) is not None else None


def member_of(multi, variable):
    """(the member of a built MultiOptimizer that updates `variable`, its index there).

    Read from the members themselves (each is built on its own variables), not from
    MultiOptimizer's private routing table.
    """
    for member in multi_members(multi):
        if member.built:
            index = variable_index(member, variable)
            if index is not None:
                return member, index
    raise ValueError(
        f"Lookahead: no member of {multi.name!r} (a MultiOptimizer) was built with "
        f"{getattr(variable, 'path', variable)!r}."
    )


def per_member(multi, slots_of):
    """One entry per variable a built MultiOptimizer was built with: `slots_of(member)` (a list
    per member variable, or [] for none) at the variable's index in its member."""
    found, result = {}, []
    for variable in built_variables(multi):
        member, index = member_of(multi, variable)
        if id(member) not in found:
            found[id(member)] = slots_of(member)
        slots = found[id(member)]
        result.append(slots[index] if slots else None)
    return result


def applied_updates(optimizer):
    """The count of updates the optimizer applied: the plain optimizer's `iterations`.

    It is read at the end of the wrapper chain because Keras 3.8's `LossScaleOptimizer` does
    not proxy `iterations` to the optimizer it wraps (3.9 on does): its own counter stays 0.
    """
    return innermost(optimizer).iterations


# -- the base optimizer's bookkeeping -------------------------------------------------------------
# keras.optimizers.Optimizer keeps the variables it was built with, their index by identity, its
# own variables and its counters in private attributes; there is no public accessor for the list a
# built optimizer works on (`variables` is its *state*), nor for the count of apply calls under
# gradient accumulation (`iterations` counts applied updates). Checked on 3.8-3.15.

def built_variables(optimizer):
    """The model variables a built optimizer was built with, in build order."""
    try:
        return optimizer._trainable_variables
    except AttributeError:
        raise _missing("Optimizer._trainable_variables") from None


def variable_index(optimizer, variable):
    """The index of `variable` in `built_variables(optimizer)`, or None if it is not there."""
    try:
        indices, key = optimizer._trainable_variables_indices, optimizer._var_key
    except AttributeError:
        raise _missing("Optimizer._trainable_variables_indices / _var_key") from None
    return indices.get(key(variable))


def own_variables(optimizer):
    """Every variable the optimizer made itself, in creation order (the list TF tracks)."""
    try:
        return optimizer._variables
    except AttributeError:
        raise _missing("Optimizer._variables") from None


def base_counters(optimizer):
    """(iteration counter, learning-rate variable) that the base class makes for every optimizer.

    A wrapper's pair is unused (both live in its inner optimizer): Lookahead leaves them out of
    its `variables`.
    """
    try:
        return optimizer._iterations, optimizer._learning_rate
    except AttributeError:
        raise _missing("Optimizer._iterations / _learning_rate") from None


def add_variable_like(optimizer, reference, name, dtype, initializer="zeros"):
    """`optimizer.add_variable_from_reference(reference, name, initializer)` in another dtype:
    float32 slow weights for a bfloat16 variable (Lookahead's `slow_dtype`).

    No Keras version from 3.8 to 3.15 lets `add_variable_from_reference` take a dtype (it uses
    the reference's), so its steps are repeated with the public `add_variable`: the same name;
    on TensorFlow the same colocation with the reference, under the strategy the TF optimizer
    captured at construction (`_distribution_strategy`, private: the variable must sit on the
    reference's devices, as the optimizer's own slots do); from Keras 3.10 the reference's
    layout (`_layout`, private, read with a default as Keras itself reads it; 3.8 and 3.9 have
    no `layout` argument, and their JAX variables take their layout from the distribution by
    path, as the reference-made slots there do).
    """
    if hasattr(reference, "path"):
        full_name = f"{reference.path.replace('/', '_')}_{name}"
    else:
        full_name = f"{str(reference.name).replace('/', '_').replace(':', '_')}_{name}"
    options = {}
    if KERAS_VERSION >= (3, 10):
        options["layout"] = getattr(reference, "_layout", None)

    def make():
        return optimizer.add_variable(shape=reference.shape, initializer=initializer,
                                      dtype=dtype, name=full_name, **options)

    if keras.backend.backend() != "tensorflow":
        return make()
    try:
        strategy = optimizer._distribution_strategy
    except AttributeError:
        raise _missing("the TensorFlow optimizer's _distribution_strategy") from None
    value = reference.value if isinstance(reference, keras.Variable) else reference
    with strategy.extended.colocate_vars_with(value):
        return make()


def apply_calls(optimizer):
    """The count of `apply` calls, gradient-accumulation micro-steps included.

    `iterations` divides the micro-steps out when `gradient_accumulation_steps` is set; the base
    class keeps the raw count in `_iterations` (the same variable otherwise).
    """
    if not optimizer.gradient_accumulation_steps:
        return optimizer.iterations
    try:
        return optimizer._iterations
    except AttributeError:
        raise _missing("Optimizer._iterations") from None


def current_learning_rate(optimizer):
    """The learning rate of this step, a schedule evaluated at the optimizer's count.

    Keras's own callbacks and the TF trainer's logs call `_get_current_learning_rate`; a wrapper
    must answer it with its inner optimizer's value (`LossScaleOptimizer` does the same).
    """
    try:
        method = optimizer._get_current_learning_rate
    except AttributeError:
        raise _missing("Optimizer._get_current_learning_rate") from None
    return method()


def proxy_current_learning_rate(cls):
    """Class decorator: `cls._get_current_learning_rate` answers with `cls.inner_optimizer`'s."""
    if not hasattr(keras.optimizers.Optimizer, "_get_current_learning_rate"):
        raise _missing("Optimizer._get_current_learning_rate")
    cls._get_current_learning_rate = lambda self: current_learning_rate(self.inner_optimizer)
    return cls


# -- the inner optimizers' slots ------------------------------------------------------------------
# Keras optimizers keep their moments in private attributes whose names differ by class, and no
# public API says which slot is a first or a second moment (`variables` is a flat list whose
# order and names are not documented as stable). The attribute holds one variable per model
# variable in build order (None where an optimizer keeps none), or, for Muon before Keras 3.13,
# a dict keyed by variable path. Checked on 3.8-3.15 (Muon from 3.10, where it appeared).

def _muon_first_moments():
    # Keras 3.10-3.12: `adam_momentums`, a dict by path, for Muon and AdamW variables alike;
    # 3.13 on: `momentums`, a list.
    return "adam_momentums" if KERAS_VERSION < (3, 13) else "momentums"


def keras_first_moments():
    """[(optimizer class, slot attribute, predicate or None)] for Keras's optimizers.

    Not listed, on purpose: Adagrad, Adadelta, Ftrl and Adafactor keep no first moment, and
    ScheduleFreeAdamW's "momentum" slot is its z sequence, not a momentum.
    """
    opt = keras.optimizers
    table = [
        (opt.SGD, "momentums", lambda o: o.momentum != 0),
        (opt.RMSprop, "_momentums", lambda o: o.momentum > 0),
        # AdamW subclasses Adam and is covered by it.
        (opt.Adam, "_momentums", None),
        (opt.Nadam, "_momentums", None),
        (opt.Lamb, "_momentums", None),
        (opt.Lion, "_momentums", None),
        (opt.Adamax, "_m", None),
    ]
    if hasattr(opt, "Muon"):
        table.append((opt.Muon, _muon_first_moments(), None))
    return table


def keras_second_moments():
    """[(optimizer class, slot attribute, attribute of its decay rate)] for Keras's optimizers.

    The second moments are averages of squared gradients started at zero, so the decay rate
    gives their bias correction 1 − rate^t. RMSprop's accumulator is the same kind of average.
    """
    opt = keras.optimizers
    return [(opt.Adam, "_velocities", "beta_2"), (opt.Nadam, "_velocities", "beta_2"),
            (opt.Lamb, "_velocities", "beta_2"), (opt.RMSprop, "_velocities", "rho")]


def slots(optimizer, attribute):
    """The slot variables under `attribute` of a built optimizer, one per built variable."""
    held = getattr(optimizer, attribute, None)
    if held is None:
        raise ValueError(
            f"Lookahead: {type(optimizer).__name__} has no attribute {attribute!r} after "
            "build; its moments were registered under a name it does not use."
        )
    if isinstance(held, dict):
        return [held.get(v.path) for v in built_variables(optimizer)]
    return list(held)


# -- TensorFlow -----------------------------------------------------------------------------------

def tf_in_xla_context():
    """Whether TensorFlow is tracing inside an XLA-compiled function (`jit_compile=True`).

    TensorFlow has no public way to ask; the choice of step form depends on it (`_steps.py`).
    `control_flow_util.GraphOrParentsInXlaContext` is what TF's own `tf.cond` lowering asks.
    Checked on TF 2.18.1 and 2.21.0.
    """
    import tensorflow as tf

    try:
        from tensorflow.python.ops import control_flow_util
        check = control_flow_util.GraphOrParentsInXlaContext
    except (ImportError, AttributeError):
        raise _missing("tensorflow.python.ops.control_flow_util.GraphOrParentsInXlaContext",
                       "tensorflow") from None
    return bool(check(tf.compat.v1.get_default_graph()))


# -- JAX ------------------------------------------------------------------------------------------

def jax_is_traced(value):
    """Whether a JAX value is abstract (inside `jax.jit`): its content cannot be read."""
    import jax

    try:
        tracer = jax.core.Tracer
    except AttributeError:
        raise _missing("jax.core.Tracer", "jax") from None
    return isinstance(value, tracer)


# -- PyTorch --------------------------------------------------------------------------------------

TORCH_FOREACH = ("_foreach_lerp_", "_foreach_mul_", "_foreach_add_", "_foreach_copy_",
                 "_foreach_zero_", "_foreach_sub")


def torch_foreach():
    """torch's multi-tensor ops, by name without the prefix: in place (lerp_, mul_, add_, copy_,
    zero_) and one that returns new tensors (sub, for the outer momentum's pseudo-gradient).

    torch.optim's own optimizers use them; they have no public name. One fused kernel launch per
    op for all tensors, and no temporaries for the in-place ones. Checked on PyTorch 2.13.0.
    """
    import torch

    try:
        return {name[len("_foreach_"):]: getattr(torch, name) for name in TORCH_FOREACH}
    except AttributeError:
        raise _missing(" / ".join(f"torch.{n}" for n in TORCH_FOREACH), "torch") from None
