"""One Lookahead step in the form that is fastest for the execution mode it is traced in.

Every form computes the same thing:

    before = inner.iterations
    if before == 0:  slow ← fast                 (capture at the first applied update)
    inner.apply(grads)
    if inner applied an update and inner.iterations % k == 0:
        slow ← slow + α (fast − slow);  fast ← slow;  momentum policy

They differ in how "if" is expressed, because what it costs differs by mode (25M float32
parameters, Adam, k=5, 2-core CPU; see benchmarks/results/overhead.md):

- Graph mode (`tf.function` without XLA, Keras's default on CPU and under tf.distribute):
  `tf.cond` runs only the taken branch, so a skipped sync costs a predicate. Element-wise selects
  are not fused there: they would read and write every weight every step.
- XLA (`jit_compile=True`): a `tf.cond` whose branch assigns variables makes XLA copy every
  assigned buffer on every step, taken or not (2.0-2.2x an Adam step). Selects fuse into the pass
  Adam's update already makes over the weights, but only in the right order: the slow weight is
  selected from the updated fast weight, then the fast weight from the *new* slow weight. The
  symmetric form (each select reading the other variable's old value) makes XLA copy both buffers
  every step (2.2x); the chained one measures 1.10x, the cost of the sync pass itself spread over k.
  The capture at the first update is not done per step under XLA: any select that reads the fast
  weight from before the inner update keeps that buffer alive across Adam's in-place write, and
  XLA then materializes the update (1.54x). Instead the slow weights are initialized from the
  variables when the optimizer is built, and captured again eagerly, at trace time, when an XLA
  step is traced while the inner optimizer has applied no update yet. Both happen before the
  first applied update; only a change of the weights between tracing and the first applied
  update would be missed.
- PyTorch (eager): Python `if`s, like graph mode, but deciding them must not read a counter from
  the device on every step (on a GPU each read stalls the stream). The count of applied updates
  is kept on the host: read once from the inner optimizer after build or load, then advanced by
  rule (every call applies, or every n-th with gradient accumulation). Only an inner optimizer
  that may skip steps on its own (a LossScaleOptimizer) needs one read per step, after its
  update; that optimizer has just made the same kind of read for its own skip decision.
- JAX: `stateless_apply` under `jax.jit` is XLA, so it takes the select form. `lax.cond` is no
  cheaper there: in plain JAX with donated buffers, Adam plus a k=5 sync measures 1.09-1.13x
  Adam alone in either form at 1M-16M parameters, both at the limit the sync alone sets
  (1.12x: it moves 4 weight-sized arrays to Adam's 7; benchmarks/jax_sync_forms.py). The
  target, <= 1.12x at k=5, is met from 4M parameters up (1.05-1.12x, TF XLA alike, in two runs
  of benchmarks/performance.py) and missed at 1M (1.16-1.17x), where an Adam step takes
  ~0.5 ms and its five 4 MB arrays may fit in cache: there the selects cost 1.02-1.08x on every
  step even with a sync that never comes (TF XLA 1.06-1.10x), and the sync step fused into Adam's
  pass costs more than the standalone sync. lax.cond measured no better at 1M either. Under
  `jit` the counters are traced values, so the capture at the first update only happens when
  the values are concrete (eager `apply`); in a jitted step the slow weights start from their
  value at build.

Training must start from the fast weights. While the model holds the slow weights for
evaluation (callbacks.py exchanges the two sets of values and sets a flag variable), nothing in
`apply` can repair a step: the gradient was computed on the model's weights before `apply` runs.
So the fast weights are restored *before* a step: by callbacks.py (at the start of each epoch
and before the next `fit` or `train_on_batch`), and, for a TF step being traced (graph or XLA),
eagerly at trace time, which comes before the traced step first runs (this covers a model loaded
from a checkpoint saved on its slow weights). A step that runs eagerly (TF eager, torch, eager
JAX) while the model holds the slow weights is refused with an error that says what to do; torch
reads the flag from a host-side copy, not from the device, on each step. Under `jax.jit` the flag
is a traced value and cannot be checked.

`lookahead_step` is the only place that chooses.
"""

import keras
from keras import ops


def lookahead_step(la, grads, trainable_variables):
    _restore_fast_weights_or_refuse(la)
    if keras.backend.backend() == "torch":
        return _host_counted_step(la, grads, trainable_variables)
    if _in_xla_context():
        _capture_if_no_update_yet(la)
        return _select_step(la, grads, trainable_variables)
    return _cond_step(la, grads, trainable_variables)


def _restore_fast_weights_or_refuse(la):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            with tf.init_scope():  # a step being traced: restore before it first runs
                la._swap_out()
            return
    elif backend == "jax":
        import jax

        if isinstance(ops.convert_to_tensor(la._slow_in_model), jax.core.Tracer):
            return  # under jax.jit: the callbacks restore before Keras reads the state
    if la._host_slow_in_model is not False and la.slow_weights_in_model():
        raise ValueError(
            "Lookahead: a training step on the slow weights. The model holds the slow weights "
            "(put there by SwapSlowWeights, or loaded from a checkpoint saved while it held "
            "them), and this step's gradient was computed on them. Call "
            "keras_lookahead.restore_fast_weights(model) before training, or pass "
            "keras_lookahead.SwapSlowWeights() to fit."
        )


def _in_xla_context():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            from tensorflow.python.ops import control_flow_util
        except ImportError:  # pragma: no cover - TF moved its private helper
            return False
        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    # Under jax.jit everything is traced and compiled by XLA.
    return backend == "jax"


def _apply_inner(inner, grads, trainable_variables):
    """The inner update.

    On JAX, when Lookahead runs inside its own `stateless_apply` (it gets no variable list then),
    the inner optimizer is driven through its `stateless_apply` as well: wrappers such as
    LossScaleOptimizer only work that way on JAX, since their stateful `apply` writes variables
    inside `lax.cond`.
    """
    if keras.backend.backend() == "jax" and trainable_variables is None:
        tvs = inner._trainable_variables
        new_tvs, new_ovs = inner.stateless_apply(
            [ops.convert_to_tensor(v) for v in inner.variables], grads,
            [ops.convert_to_tensor(v) for v in tvs])
        for v, value in zip(tvs, new_tvs):
            v.assign(value)
        for v, value in zip(inner.variables, new_ovs):
            v.assign(value)
        return
    inner.apply(grads, trainable_variables)


def _capture_if_no_update_yet(la):
    """Captures the slow weights now if the inner optimizer has applied no update yet.

    TF: runs eagerly while the XLA step is traced. JAX: only when the counter is concrete (an
    eager `apply`); under `jax.jit` it is a tracer and the build-time value stands.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.init_scope():
            if int(ops.convert_to_numpy(la.inner_optimizer.iterations)) == 0:
                _capture(la)
    elif backend == "jax":
        import jax

        count = ops.convert_to_tensor(la.inner_optimizer.iterations)
        if not isinstance(count, jax.core.Tracer) and int(count) == 0:
            _capture(la)


def _noop():
    return None


def _cond_step(la, grads, trainable_variables):
    inner = la.inner_optimizer
    before = ops.copy(inner.iterations)  # a snapshot: convert_to_tensor may alias
    ops.cond(ops.equal(before, 0), lambda: _capture(la), _noop)
    inner.apply(grads, trainable_variables)
    after = ops.copy(inner.iterations)
    sync, done = la._sync_decision(before, after)
    grads = la._aligned_grads(grads, trainable_variables)
    ops.cond(sync, lambda: _sync(la, grads, done), _noop)


def exchange(la):
    """Exchanges the values of the model variables and their slow weights, exactly."""
    for fast, slow in la._pairs():
        held = ops.copy(fast)
        fast.assign(slow)
        slow.assign(held)


def _capture(la):
    for fast, slow in la._pairs():
        slow.assign(fast)


def _record_alpha(la, alpha, estimate, sync=None):
    """Keeps the α of the latest sync (and the adaptive estimate) in their variables."""
    for var, value in ((getattr(la, "_last_alpha", None), alpha),
                       (getattr(la, "_alpha_estimate", None), estimate)):
        if var is None or value is None:
            continue
        value = ops.cast(value, var.dtype)
        var.assign(value if sync is None else ops.where(sync, value, ops.convert_to_tensor(var)))


def _sync(la, grads, syncs_done):
    alpha, estimate = la._sync_alpha(grads, syncs_done)  # before any weight changes
    _record_alpha(la, alpha, estimate)
    for fast, slow in la._pairs():
        new = la._lerp(slow, fast, alpha)
        slow.assign(new)
        fast.assign(new)
    for m, cached in la._moment_pairs():
        new = la._new_moment(m, cached, alpha)
        m.assign(new)
        if cached is not None:
            cached.assign(new)


def _select_step(la, grads, trainable_variables):
    inner = la.inner_optimizer
    before = ops.copy(inner.iterations)
    _apply_inner(inner, grads, trainable_variables)
    sync, done = la._sync_decision(before, ops.copy(inner.iterations))
    # The adaptive estimate reads every weight: it runs under a cond, at syncs only.
    alpha, estimate = la._sync_alpha(la._aligned_grads(grads, trainable_variables), done, sync)
    _record_alpha(la, alpha, estimate, sync)
    # Values, not Variables, go into the selects: jnp.where refuses Keras Variables.
    for fast_var, slow_var in la._pairs():
        fast, slow = ops.convert_to_tensor(fast_var), ops.convert_to_tensor(slow_var)
        new_slow = ops.where(sync, la._lerp(slow, fast, alpha), slow)
        slow_var.assign(new_slow)
        fast_var.assign(ops.where(sync, new_slow, fast))
    for m_var, cached_var in la._moment_pairs():
        m = ops.convert_to_tensor(m_var)
        cached = None if cached_var is None else ops.convert_to_tensor(cached_var)
        new_m = ops.where(sync, la._new_moment(m, cached, alpha), m)
        m_var.assign(new_m)
        if cached_var is not None:
            cached_var.assign(ops.where(sync, new_m, cached))


def _host_counted_step(la, grads, trainable_variables):
    inner = la.inner_optimizer
    may_skip = _may_skip_steps(inner)
    if la._host_micro_steps is None:
        # After build or load: read the device counter once.
        la._host_micro_steps = int(ops.convert_to_numpy(
            inner.iterations if may_skip else _micro_counter(inner)))
    every = 1 if may_skip else (inner.gradient_accumulation_steps or 1)
    before = la._host_micro_steps // every
    if before == 0:
        _capture(la)
    inner.apply(grads, trainable_variables)
    if may_skip:
        # The one read per step, right after the wrapper's own read for its skip decision.
        la._host_micro_steps = int(ops.convert_to_numpy(inner.iterations))
    else:
        la._host_micro_steps += 1
    after = la._host_micro_steps // every
    if after == before:
        return
    if la._k_schedule is None:
        sync, done = after % la.sync_period == 0, after // la.sync_period - 1
    else:
        sync, done = _host_k_schedule(la)
    if sync:
        _sync_torch(la, la._aligned_grads(grads, trainable_variables), done)


def _host_k_schedule(la):
    """The k-schedule counters on the host: one device read per sync, for the next k."""
    if la._host_since_sync is None:  # after build or load
        la._host_since_sync = int(ops.convert_to_numpy(la._since_sync))
        la._host_syncs = int(ops.convert_to_numpy(la._sync_count))
        la._host_k = None
    if la._host_k is None:
        la._host_k = int(ops.convert_to_numpy(la._k_at(la._host_syncs)))
    done = la._host_syncs
    la._host_since_sync += 1
    sync = la._host_since_sync >= la._host_k
    if sync:
        la._host_since_sync, la._host_syncs, la._host_k = 0, done + 1, None
        la._sync_count.assign(la._host_syncs)
    la._since_sync.assign(la._host_since_sync)
    return sync, done


def _micro_counter(inner):
    # Calls of apply, accumulation micro-steps included (`iterations` divides them out).
    return inner._iterations if inner.gradient_accumulation_steps else inner.iterations


def _may_skip_steps(inner):
    """Whether the inner optimizer may decide on the device to skip an update.

    Any wrapper (LossScaleOptimizer, a nested Lookahead, ...) is treated as such; a plain
    optimizer applies every call, or every n-th with gradient accumulation.
    """
    return hasattr(inner, "inner_optimizer")


def _sync_torch(la, grads, syncs_done):
    """The sync with torch's in-place multi-tensor ops.

    Avoids what the generic `_sync` costs in eager torch: a temporary per variable for
    φ + α(θ − φ) and a separate copy into each of the two variables. A scheduled or adaptive α
    is read to the host once per sync.
    """
    import torch

    alpha, estimate = la._sync_alpha(grads, syncs_done)
    _record_alpha(la, alpha, estimate)
    alpha = float(ops.convert_to_numpy(alpha))

    pairs = la._pairs()
    fast = [f.value for f, _ in pairs]
    slow = [s.value for _, s in pairs]
    moments = la._moment_pairs()
    with torch.no_grad():
        # lerp(φ, θ, α) = φ + α(θ − φ); at α = 1 torch computes θ − (θ − φ)·0 = θ exactly.
        torch._foreach_lerp_(slow, fast, alpha)
        torch._foreach_copy_(fast, slow)
        if not moments:
            return
        m = [mv.value for mv, _ in moments]
        if la.inner_state == "reset":
            torch._foreach_zero_(m)
        else:
            cached = [cv.value for _, cv in moments]
            # α m + (1 − α) m_prev = lerp(m, m_prev, 1 − α)
            torch._foreach_lerp_(m, cached, 1.0 - alpha)
            torch._foreach_copy_(cached, m)

