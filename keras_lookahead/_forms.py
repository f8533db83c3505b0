"""One Lookahead step, in the form each execution mode needs.

Every form runs the same step, Algorithm 1 as `algorithm.py` writes it:

    before = inner.iterations
    if before == 0:  φ ← θ                       (capture at the first applied update)
    inner.apply(grads)
    if sync_is_due(...):  φ ← slow_update(φ, θ, α);  θ ← φ;  m ← momentum_update(...)

They differ in how the "if" is expressed, because what it costs differs by mode:

- `Branch` (TensorFlow eager and graph functions): `ops.cond`, which runs only the taken branch.
- `Selects` (XLA: TensorFlow `jit_compile=True`, and JAX, whose steps are jitted): element-wise
  selects that XLA fuses into the inner optimizer's own pass over the weights, in a chained
  order; the capture happens at trace time or build, never per step.
- `HostCounted` (PyTorch): Python `if`s on counters kept on the host, so that a step reads
  nothing from the device, and a sync of fused multi-tensor ops.

Why each form is what it is (what the others cost in that mode, measured), and why JAX uses
selects rather than `lax.cond`: docs/design.md, with the measurements in
benchmarks/results/performance.md and benchmarks/jax_sync_forms.py.

`for_backend` is the only place that chooses; each form owns its host state.
"""

import keras
from keras import ops

from keras_lookahead import _keras_compat as compat
from keras_lookahead import algorithm


def for_backend(la):
    """The form (or, on TensorFlow, the per-trace choice of form) for this Keras backend."""
    backend = keras.backend.backend()
    if backend == "torch":
        return HostCounted(la)
    if backend == "jax":
        return JaxSelects(la)
    if backend == "tensorflow":
        return TensorFlowForms(la)
    raise ValueError(f"Lookahead: the {backend!r} Keras backend is not supported (it has no "
                     "training); use tensorflow, jax or torch.")


class _Form:
    """A form of the step for one Lookahead `la`: `step` runs it, `state_changed` is told when
    the optimizer's state was built, loaded or assigned (host copies of it are then stale)."""

    def __init__(self, la):
        self.la = la

    def state_changed(self):
        pass

    def step(self, grads, trainable_variables):
        raise NotImplementedError


class TensorFlowForms(_Form):
    """TensorFlow: `Selects` in a function being compiled by XLA, `Branch` elsewhere.

    Chosen when a step is traced, since one optimizer can be stepped in graph functions and in
    XLA-compiled ones (eagerly, every call is its own "trace").
    """

    def __init__(self, la):
        super().__init__(la)
        self._branch, self._selects = Branch(la), TensorFlowSelects(la)

    def step(self, grads, trainable_variables):
        form = self._selects if compat.tf_in_xla_context() else self._branch
        form.step(grads, trainable_variables)


def _tf_restore_fast_weights_or_refuse(la):
    """A step being traced restores the fast weights at trace time, before it first runs (this
    covers a model loaded from a checkpoint saved on its slow weights); an eager one refuses."""
    import tensorflow as tf

    if tf.executing_eagerly():
        la._refuse_training_on_slow_weights()
        return
    with tf.init_scope():
        la._swap_out()


class Branch(_Form):
    """The sync under `ops.cond`: a skipped sync costs a predicate (TF graph functions and eager).

    Selects would not be fused in a TF graph: they would read and write every weight every step.
    """

    def step(self, grads, trainable_variables):
        la, inner = self.la, self.la.inner_optimizer
        _tf_restore_fast_weights_or_refuse(la)
        before = ops.copy(la.iterations)  # a snapshot: convert_to_tensor may alias
        ops.cond(ops.equal(before, 0), la._capture, _nothing)
        inner.apply(grads, trainable_variables)
        sync, done = la._sync_decision(before, ops.copy(la.iterations))
        grads = la._aligned_grads(grads, trainable_variables)
        ops.cond(sync, lambda: self._sync(grads, done, trainable_variables), _nothing)

    def _sync(self, grads, syncs_done, trainable_variables):
        la = self.la
        pairs, held, moments, held_moments = la._sync_targets(trainable_variables)
        alpha, estimate = la._sync_alpha(grads, syncs_done)  # before any weight changes
        la._record_alpha(alpha, estimate)
        for fast, slow in pairs:
            new = algorithm.slow_update(slow, fast, alpha)
            slow.assign(new)
            fast.assign(_cast(new, fast))
        for m, cached in moments:
            new = algorithm.momentum_update(la.inner_state, m, cached, alpha)
            m.assign(_cast(new, m))
            if cached is not None:
                cached.assign(new)
        for value, follower in held + held_moments:
            follower.assign(_cast(value, follower))


def _cast(value, variable):
    """`value` in `variable`'s dtype: a float32 slow weight or cached moment written to its
    16-bit variable (slow_dtype), or the reverse; the value itself where the dtypes agree."""
    if value.dtype == variable.dtype:
        return value
    return ops.cast(value, variable.dtype)


def _nothing():
    return None


class Selects(_Form):
    """The sync as element-wise selects on every step, for XLA.

    The order is what makes XLA fuse them into the inner update's pass: the slow weight is
    selected from the updated fast weight, then the fast weight from the *new* slow weight. The
    subclasses say how the step is prepared and the inner update applied in their framework.
    """

    def prepare(self):
        raise NotImplementedError

    def apply_inner(self, grads, trainable_variables):
        self.la.inner_optimizer.apply(grads, trainable_variables)

    def step(self, grads, trainable_variables):
        la = self.la
        self.prepare()
        before = ops.copy(la.iterations)
        self.apply_inner(grads, trainable_variables)
        sync, done = la._sync_decision(before, ops.copy(la.iterations))
        alpha, estimate = la._sync_alpha(la._aligned_grads(grads, trainable_variables), done, sync)
        la._record_alpha(alpha, estimate, sync)
        pairs, held, moments, held_moments = la._sync_targets(trainable_variables)
        # Values, not Variables, go into the selects: jnp.where refuses Keras Variables.
        for fast_var, slow_var in pairs:
            fast, slow = ops.convert_to_tensor(fast_var), ops.convert_to_tensor(slow_var)
            new_slow = ops.where(sync, algorithm.slow_update(slow, fast, alpha), slow)
            slow_var.assign(new_slow)
            fast_var.assign(ops.where(sync, _cast(new_slow, fast), fast))
        for value, follower in held + held_moments:
            follower.assign(ops.where(sync, _cast(ops.convert_to_tensor(value), follower),
                                      ops.convert_to_tensor(follower)))
        for m_var, cached_var in moments:
            m = ops.convert_to_tensor(m_var)
            cached = None if cached_var is None else ops.convert_to_tensor(cached_var)
            new = algorithm.momentum_update(la.inner_state, m, cached, alpha)
            m_var.assign(ops.where(sync, _cast(new, m), m))
            if cached_var is not None:
                cached_var.assign(ops.where(sync, _cast(new, cached), cached))


class TensorFlowSelects(Selects):
    """`Selects` in a TF function compiled by XLA: restore and capture happen at trace time.

    A select reading the fast weight from before the inner update would keep that buffer alive
    across the update's in-place write, so the capture is not done per step: the slow weights
    are initialized from the variables at build, and captured again eagerly when a step is
    traced while the inner optimizer has applied no update yet. Only a change of the weights
    between tracing and the first applied update would be missed.
    """

    def prepare(self):
        import tensorflow as tf

        _tf_restore_fast_weights_or_refuse(self.la)
        with tf.init_scope():
            if int(ops.convert_to_numpy(self.la.iterations)) == 0:
                self.la._capture()


class JaxSelects(Selects):
    """`Selects` on JAX, eager or under `jax.jit` (Keras's JAX trainer jits `stateless_apply`).

    Under `jit` the counters and the slow-weights flag are traced values: nothing can be
    checked or captured then (the slow weights start from their value at build, and the
    callbacks restore the fast weights before Keras reads the state). Eagerly both happen.
    """

    def prepare(self):
        la = self.la
        if compat.jax_is_traced(ops.convert_to_tensor(la.iterations)):
            return
        la._refuse_training_on_slow_weights()
        if int(ops.convert_to_numpy(la.iterations)) == 0:
            la._capture()

    def apply_inner(self, grads, trainable_variables):
        """Inside Lookahead's own `stateless_apply` (no variable list), the inner optimizer runs
        through its `stateless_apply` too: wrappers such as LossScaleOptimizer only work that
        way on JAX, since their stateful `apply` writes variables inside `lax.cond`."""
        if trainable_variables is not None:
            return super().apply_inner(grads, trainable_variables)
        inner = self.la.inner_optimizer
        built = self.la._built_variables()  # what the inner was built with, by Lookahead's build
        new_built, new_state = inner.stateless_apply(
            [ops.convert_to_tensor(v) for v in inner.variables], grads,
            [ops.convert_to_tensor(v) for v in built])
        for v, value in zip(built, new_built):
            v.assign(value)
        for v, value in zip(inner.variables, new_state):
            v.assign(value)


class HostCounted(_Form):
    """PyTorch (eager): Python `if`s on counters kept on the host, and a fused sync.

    Deciding must not read a counter from the device on every step (on a GPU each read stalls
    the stream). The count of applied updates is read once from the inner optimizer after build
    or load, then advanced by rule (every call applies, or every n-th with gradient
    accumulation). Only an inner optimizer that may skip steps on its own (a wrapper such as
    LossScaleOptimizer) needs one read per step, after its update; that optimizer has just made
    the same kind of read for its own skip decision. A k schedule's counters are mirrored too,
    with one read of the next k per sync.
    """

    def __init__(self, la):
        super().__init__(la)
        import torch

        self._may_skip = compat.is_wrapper(la.inner_optimizer)  # fixed with the inner optimizer
        # Under torch.compile (Keras's jit_compile=True) the capture runs eagerly, at a graph
        # break: in a compiled graph, inductor may move the copy θ → φ after the inner
        # optimizer's in-place update of θ, so the slow weights would start one update late.
        self._capture = torch.compiler.disable(la._capture)
        self.state_changed()

    def state_changed(self):
        # None: read from the device at the next step.
        self._calls = None  # the inner optimizer's apply calls (its count, if it may skip)
        self._since_sync = self._syncs = self._k = None  # the k schedule's counters

    def step(self, grads, trainable_variables):
        la, inner = self.la, self.la.inner_optimizer
        la._refuse_training_on_slow_weights()
        may_skip = self._may_skip
        if self._calls is None:
            counter = la.iterations if may_skip else compat.apply_calls(inner)
            self._calls = int(ops.convert_to_numpy(counter))
        every = 1 if may_skip else (inner.gradient_accumulation_steps or 1)
        before = self._calls // every
        if before == 0:
            self._capture()
        inner.apply(grads, trainable_variables)
        if may_skip:
            # The one read per step, right after the wrapper's own read for its skip decision.
            self._calls = int(ops.convert_to_numpy(la.iterations))
        else:
            self._calls += 1
        after = self._calls // every
        if after == before:
            return
        if la._k_schedule is None:
            since, done = algorithm.since_sync_at(after, la.sync_period)
            sync = algorithm.sync_is_due(True, since, la.sync_period)
        else:
            sync, done = self._schedule_step()
        if sync:
            self._sync(la._aligned_grads(grads, trainable_variables), done, trainable_variables)

    def _schedule_step(self):
        """Advances the k-schedule counters by one applied update: (sync?, syncs done)."""
        since_var, syncs_var = self.la._schedule_counters()
        if self._since_sync is None:  # after build or load
            self._since_sync = int(ops.convert_to_numpy(since_var))
            self._syncs = int(ops.convert_to_numpy(syncs_var))
        if self._k is None:
            self._k = int(ops.convert_to_numpy(self.la._k_at(self._syncs)))
        done = self._syncs
        self._since_sync += 1
        sync = algorithm.sync_is_due(True, self._since_sync, self._k)
        if sync:
            self._since_sync, self._syncs, self._k = 0, done + 1, None
            syncs_var.assign(self._syncs)
        since_var.assign(self._since_sync)
        return sync, done

    def _sync(self, grads, syncs_done, trainable_variables):
        """The sync with torch's in-place multi-tensor ops: no temporary per variable for
        φ + α(θ − φ), no separate copy into each variable. A scheduled or adaptive α is read to
        the host once per sync."""
        import torch

        op = compat.torch_foreach()
        la = self.la
        pairs, held, moments, held_moments = la._sync_targets(trainable_variables)
        alpha, estimate = la._sync_alpha(grads, syncs_done)
        la._record_alpha(alpha, estimate)
        if not isinstance(alpha, float):  # a scheduled or adaptive α: one read per sync
            alpha = float(ops.convert_to_numpy(alpha))
        # Pairs of one dtype are synced in place; a 16-bit variable with float32 slow weights
        # (slow_dtype) is synced on a float32 copy, then gets the rounded result.
        same = [(f.value, s.value) for f, s in pairs if f.dtype == s.dtype]
        mixed = [(f.value, s.value) for f, s in pairs if f.dtype != s.dtype]
        with torch.no_grad():
            if held or held_moments:
                op["copy_"]([f.value for _, f in held + held_moments],
                            [v.value for v, _ in held + held_moments])
            if same:
                torch_slow_update(op, [s for _, s in same], [f for f, _ in same], alpha)
            if mixed:
                up = [f.to(s.dtype) for f, s in mixed]
                torch_slow_update(op, [s for _, s in mixed], up, alpha)
                op["copy_"]([f for f, _ in mixed], [s for _, s in mixed])
            if not moments:
                return
            m = [mv.value for mv, _ in moments]
            if la.inner_state == "reset":
                op["zero_"](m)
                return
            cached = [cv.value for _, cv in moments]
            # momentum_update: α m + (1 − α) m_prev, in place (in the cache's dtype: a 16-bit
            # moment with a float32 cache is computed on a float32 copy, then copied back)
            up = [x if x.dtype == c.dtype else x.to(c.dtype) for x, c in zip(m, cached)]
            op["mul_"](up, alpha)
            op["add_"](up, cached, alpha=1.0 - alpha)
            op["copy_"](cached, up)
            copies = [(x, u) for x, u in zip(m, up) if x is not u]
            if copies:
                op["copy_"]([x for x, _ in copies], [u for _, u in copies])


def torch_slow_update(op, slow, fast, alpha):
    """`slow_update` in place on lists of torch tensors (`op`: compat.torch_foreach()), then θ ← φ.

    torch's lerp computes φ + α(θ − φ) only for α < 0.5 (beyond, it computes θ − (1 − α)(θ − φ),
    which turns an infinite θ into NaN); there the same point is (1 − α)φ + αθ, in place too. At
    α = 1 the fast weights are kept as they are, and become the slow ones.
    """
    if alpha == 1.0:
        op["copy_"](slow, fast)
        return
    if alpha < 0.5:
        op["lerp_"](slow, fast, alpha)
    else:
        op["mul_"](slow, 1.0 - alpha)
        op["add_"](slow, fast, alpha=alpha)
    op["copy_"](fast, slow)
