"""One Lookahead step, in the form each execution mode needs.

Every form runs the same step:

    before = inner.iterations
    if before == 0:  φ ← θ                       (capture at the first applied update)
    inner.apply(grads)
    if sync_is_due(...):  write algorithm.sync(...)

The sync itself is `algorithm.sync`, written once; a form only decides *whether* a step syncs
and writes what the sync returns, because what the "if" costs differs by mode:

- `CondStep` (TensorFlow eager and graph functions): `ops.cond`, which runs only the taken
  branch.
- `SelectStep` (XLA: TensorFlow `jit_compile=True`, and JAX, whose steps are jitted): every
  write is an element-wise select on the sync predicate, which XLA fuses into the inner
  optimizer's own pass over the weights; the capture happens at trace time or build, never per
  step.
- `HostCountedStep` (PyTorch): Python `if`s on counters kept on the host, so that a step reads
  nothing from the device, and the sync in torch's in-place multi-tensor ops (`TorchListOps`).

Why each form is what it is (what the others cost in that mode, measured), and why JAX uses
selects rather than `lax.cond`: docs/design.md, with the measurements in
benchmarks/results/performance.md and benchmarks/jax_sync_forms.py.

A step sees its Lookahead only through `lookahead.StepInterface` (`self.lookahead`).
`for_backend` is the only place that chooses; each form owns its own host state.
"""

import keras
from keras import ops

from keras_lookahead import _keras_compat as compat
from keras_lookahead import algorithm


def for_backend(lookahead):
    """The step (on TensorFlow, the per-trace choice of step) for this Keras backend;
    `lookahead` is a `StepInterface`."""
    backend = keras.backend.backend()
    if backend == "torch":
        return HostCountedStep(lookahead)
    if backend == "jax":
        return JaxSelectStep(lookahead)
    if backend == "tensorflow":
        return TensorFlowStep(lookahead)
    raise ValueError(f"Lookahead: the {backend!r} Keras backend is not supported (it has no "
                     "training); use tensorflow, jax or torch.")


class Step:
    """A form of the step for one Lookahead: `step` runs it, `state_changed` is told when the
    optimizer's state was built, loaded or assigned (host copies of it are then stale)."""

    def __init__(self, lookahead):
        self.lookahead = lookahead

    def state_changed(self):
        pass

    def step(self, grads, trainable_variables):
        raise NotImplementedError


class TensorFlowStep(Step):
    """TensorFlow: `SelectStep` in a function being compiled by XLA, `CondStep` elsewhere.

    Chosen when a step is traced, since one optimizer can be stepped in graph functions and in
    XLA-compiled ones (eagerly, every call is its own "trace").
    """

    def __init__(self, lookahead):
        super().__init__(lookahead)
        self._cond, self._selects = CondStep(lookahead), TensorFlowSelectStep(lookahead)

    def step(self, grads, trainable_variables):
        form = self._selects if compat.tf_in_xla_context() else self._cond
        form.step(grads, trainable_variables)


def _tf_restore_fast_weights_or_refuse(lookahead):
    """A step being traced restores the fast weights at trace time, before it first runs (this
    covers a model loaded from a checkpoint saved on its slow weights); an eager one refuses."""
    import tensorflow as tf

    if tf.executing_eagerly():
        lookahead.refuse_training_on_slow_weights()
        return
    with tf.init_scope():
        lookahead.restore_fast_weights()


class CondStep(Step):
    """The sync under `ops.cond`: a skipped sync costs a predicate (TF graph functions and eager).

    Selects would not be fused in a TF graph: they would read and write every weight every step.
    """

    def step(self, grads, trainable_variables):
        la = self.lookahead
        _tf_restore_fast_weights_or_refuse(la)
        before = ops.copy(la.applied_updates())  # a snapshot: convert_to_tensor may alias
        ops.cond(ops.equal(before, 0), la.capture, _nothing)
        la.inner.apply(grads, trainable_variables)
        sync, done = la.advance_counters(before, ops.copy(la.applied_updates()))
        ops.cond(sync, lambda: self._sync(grads, trainable_variables, done), _nothing)

    def _sync(self, grads, trainable_variables, syncs_done):
        self.lookahead.sync(grads, trainable_variables, syncs_done, algorithm.KerasListOps,
                            _assign)


def _assign(variables, values):
    """Writes each value into its variable (in its dtype); goes on with the values."""
    for variable, value in zip(variables, values):
        variable.assign(_cast(value, variable))
    return values


def _cast(value, variable):
    """`value` in `variable`'s dtype (where they agree, the value itself)."""
    if value.dtype == variable.dtype:
        return value
    return ops.cast(value, variable.dtype)


def _nothing():
    return None


class SelectStep(Step):
    """Every write of the sync as an element-wise select on the sync predicate, for XLA.

    XLA fuses the selects, and the sync arithmetic they select from, into the inner update's
    pass over the weights; a skipped sync then costs almost nothing. The subclasses say how the
    step is prepared and the inner update applied in their framework.
    """

    def prepare(self):
        raise NotImplementedError

    def apply_inner(self, grads, trainable_variables):
        self.lookahead.inner.apply(grads, trainable_variables)

    def step(self, grads, trainable_variables):
        la = self.lookahead
        self.prepare()
        before = ops.copy(la.applied_updates())
        self.apply_inner(grads, trainable_variables)
        sync, done = la.advance_counters(before, ops.copy(la.applied_updates()))

        def select(variables, values):
            """Each variable gets its new value where the step syncs, its own elsewhere; the
            sync goes on from the selected values (the chained order XLA fuses in place)."""
            selected = []
            for variable, value in zip(variables, values):
                # Values, not Variables, go into the selects: jnp.where refuses Keras Variables.
                new = ops.where(sync, _cast(value, variable), ops.convert_to_tensor(variable))
                variable.assign(new)
                selected.append(new)
            return selected

        la.sync(grads, trainable_variables, done, algorithm.KerasListOps, select, sync=sync)


class TensorFlowSelectStep(SelectStep):
    """`SelectStep` in a TF function compiled by XLA: restore and capture happen at trace time.

    A select reading the fast weight from before the inner update would keep that buffer alive
    across the update's in-place write, so the capture is not done per step: the slow weights
    are initialized from the variables at build, and captured again eagerly when a step is
    traced while the inner optimizer has applied no update yet. Only a change of the weights
    between tracing and the first applied update would be missed.
    """

    def prepare(self):
        import tensorflow as tf

        _tf_restore_fast_weights_or_refuse(self.lookahead)
        with tf.init_scope():
            if int(ops.convert_to_numpy(self.lookahead.applied_updates())) == 0:
                self.lookahead.capture()


class JaxSelectStep(SelectStep):
    """`SelectStep` on JAX, eager or under `jax.jit` (Keras's JAX trainer jits `stateless_apply`).

    Under `jit` the counters and the slow-weights flag are traced values: nothing can be
    checked or captured then (the slow weights start from their value at build, and the
    callbacks restore the fast weights before Keras reads the state). Eagerly both happen.
    """

    def prepare(self):
        la = self.lookahead
        if compat.jax_is_traced(ops.convert_to_tensor(la.applied_updates())):
            return
        la.refuse_training_on_slow_weights()
        if int(ops.convert_to_numpy(la.applied_updates())) == 0:
            la.capture()

    def apply_inner(self, grads, trainable_variables):
        """Inside Lookahead's own `stateless_apply` (no variable list), the inner optimizer runs
        through its `stateless_apply` too: wrappers such as LossScaleOptimizer only work that
        way on JAX, since their stateful `apply` writes variables inside `lax.cond`."""
        if trainable_variables is not None:
            return super().apply_inner(grads, trainable_variables)
        inner = self.lookahead.inner
        built = self.lookahead.built_variables()  # what the inner was built with
        new_built, new_state = inner.stateless_apply(
            [ops.convert_to_tensor(v) for v in inner.variables], grads,
            [ops.convert_to_tensor(v) for v in built])
        for v, value in zip(built, new_built):
            v.assign(value)
        for v, value in zip(inner.variables, new_state):
            v.assign(value)


class HostCountedStep(Step):
    """PyTorch (eager): Python `if`s on counters kept on the host, and a fused sync.

    Deciding must not read a counter from the device on every step (on a GPU each read stalls
    the stream). The count of applied updates is read once from the inner optimizer after build
    or load, then advanced by rule (every call applies, or every n-th with gradient
    accumulation). Only an inner optimizer that may skip steps on its own (a wrapper such as
    LossScaleOptimizer) needs one read per step, after its update; that optimizer has just made
    the same kind of read for its own skip decision. A k schedule's counters are mirrored too,
    with one read of the next k per sync.
    """

    def __init__(self, lookahead):
        super().__init__(lookahead)
        import torch

        self._may_skip = compat.is_wrapper(lookahead.inner)  # fixed with the inner optimizer
        # Under torch.compile (Keras's jit_compile=True) the capture runs eagerly, at a graph
        # break: in a compiled graph, inductor may move the copy θ → φ after the inner
        # optimizer's in-place update of θ, so the slow weights would start one update late.
        self._capture = torch.compiler.disable(lookahead.capture)
        self._ops = TorchListOps()
        self.state_changed()

    def state_changed(self):
        # None: read from the device at the next step.
        self._calls = None  # the inner optimizer's apply calls (its count, if it may skip)
        self._since_sync = self._syncs = self._k = None  # the k schedule's counters

    def step(self, grads, trainable_variables):
        la = self.lookahead
        inner = la.inner
        la.refuse_training_on_slow_weights()
        may_skip = self._may_skip
        if self._calls is None:
            counter = la.applied_updates() if may_skip else compat.apply_calls(inner)
            self._calls = int(ops.convert_to_numpy(counter))
        every = 1 if may_skip else (inner.gradient_accumulation_steps or 1)
        before = self._calls // every
        if before == 0:
            self._capture()
        inner.apply(grads, trainable_variables)
        if may_skip:
            # The one read per step, right after the wrapper's own read for its skip decision.
            self._calls = int(ops.convert_to_numpy(la.applied_updates()))
        else:
            self._calls += 1
        after = self._calls // every
        if after == before:
            return
        if la.constant_k is not None:
            since, done = algorithm.since_sync_at(after, la.constant_k)
            sync = algorithm.sync_is_due(True, since, la.constant_k)
        else:
            sync, done = self._schedule_step()
        if sync:
            import torch

            with torch.no_grad():  # in-place ops on the variables' own (leaf) tensors
                la.sync(grads, trainable_variables, done, self._ops, self._ops.write)

    def _schedule_step(self):
        """Advances the k-schedule counters by one applied update: (sync?, syncs done)."""
        since_var, syncs_var = self.lookahead.schedule_counters()
        if self._since_sync is None:  # after build or load
            self._since_sync = int(ops.convert_to_numpy(since_var))
            self._syncs = int(ops.convert_to_numpy(syncs_var))
        if self._k is None:
            self._k = int(ops.convert_to_numpy(self.lookahead.k_after(self._syncs)))
        done = self._syncs
        self._since_sync += 1
        sync = algorithm.sync_is_due(True, self._since_sync, self._k)
        if sync:
            self._since_sync, self._syncs, self._k = 0, done + 1, None
            syncs_var.assign(self._syncs)
        since_var.assign(self._since_sync)
        return sync, done


class TorchListOps:
    """The list operations of `algorithm.sync` in torch's multi-tensor ops, in place: each
    writes its result into its first argument (the variables' own storage, where `sync` passes
    a slow weight, a buffer or a moment), with one kernel launch per operation for all tensors
    and no temporary per variable. Scalars are Python floats: a scheduled or adaptive α is read
    to the host once per sync (`scalar`)."""

    def __init__(self):
        self._op = compat.torch_foreach()

    @staticmethod
    def read(variable):
        return variable.value

    @staticmethod
    def scalar(value):
        return value if isinstance(value, float) else float(ops.convert_to_numpy(value))

    @staticmethod
    def cast_like(values, likes):
        return [v if v.dtype == like.dtype else v.to(like.dtype) for v, like in zip(values, likes)]

    def lerp(self, a, b, t):
        """a + t (b − a). torch's lerp computes that form only for t < 0.5 (beyond, it computes
        b − (1 − t)(b − a), which turns an infinite b into NaN); there the same point is
        (1 − t) a + t b."""
        if t < 0.5:
            self._op["lerp_"](a, b, t)
        else:
            self._op["mul_"](a, 1.0 - t)
            self._op["add_"](a, b, alpha=t)
        return a

    def blend(self, a, b, t):
        """t a + (1 − t) b."""
        self._op["mul_"](a, t)
        self._op["add_"](a, b, alpha=1.0 - t)
        return a

    def scale_add(self, a, t, b):
        """t a + b."""
        self._op["mul_"](a, t)
        self._op["add_"](a, b)
        return a

    def add_scaled(self, a, b, t):
        """a + t b."""
        self._op["add_"](a, b, alpha=t)
        return a

    def sub(self, a, b):
        return self._op["sub"](a, b)

    def zeros_like(self, a):
        self._op["zero_"](a)
        return a

    def write(self, variables, values):
        """Copies each value into its variable, in one multi-tensor copy (casting where the
        dtypes differ), skipping a value that is the variable's own storage (written in place);
        returns the variables' tensors."""
        targets = [v.value for v in variables]
        copies = [(t, x) for t, x in zip(targets, values) if x is not t]
        if copies:
            self._op["copy_"]([t for t, _ in copies], [x for _, x in copies])
        return targets
