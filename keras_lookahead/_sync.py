"""One Lookahead step in the form that is fastest for the execution mode it is traced in.

Both forms compute the same thing:

    before = inner.iterations
    if before == 0:  slow ← fast                 (capture at the first applied update)
    inner.apply(grads)
    if inner applied an update and inner.iterations % k == 0:
        slow ← slow + α (fast − slow);  fast ← slow;  momentum policy

They differ in how "if" is expressed, because the costs are opposite in the two TF modes
(25M float32 parameters, Adam, k=5, 2-core CPU; see benchmarks/results/overhead.md):

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

`lookahead_step` is the only place that chooses.
"""

import keras
from keras import ops


def lookahead_step(la, grads, trainable_variables):
    if _in_xla_context():
        _capture_at_trace_time(la)
        return _select_step(la, grads, trainable_variables)
    return _cond_step(la, grads, trainable_variables)


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


def _capture_at_trace_time(la):
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    with tf.init_scope():
        if int(ops.convert_to_numpy(la.inner_optimizer.iterations)) == 0:
            _capture(la)


def _noop():
    return None


def _cond_step(la, grads, trainable_variables):
    inner = la.inner_optimizer
    before = ops.copy(inner.iterations)  # a snapshot: convert_to_tensor may alias
    ops.cond(ops.equal(before, 0), lambda: _capture(la), _noop)
    inner.apply(grads, trainable_variables)
    after = ops.copy(inner.iterations)
    ops.cond(la._is_sync_step(before, after), lambda: _sync(la), _noop)


def _capture(la):
    for fast, slow in la._pairs():
        slow.assign(fast)


def _sync(la):
    for fast, slow in la._pairs():
        new = la._lerp(slow, fast)
        slow.assign(new)
        fast.assign(new)
    for m, cached in la._moment_pairs():
        new = la._new_moment(m, cached)
        m.assign(new)
        if cached is not None:
            cached.assign(new)


def _select_step(la, grads, trainable_variables):
    inner = la.inner_optimizer
    before = ops.copy(inner.iterations)
    inner.apply(grads, trainable_variables)
    sync = la._is_sync_step(before, ops.copy(inner.iterations))
    for fast, slow in la._pairs():
        new_slow = ops.where(sync, la._lerp(slow, fast), slow)
        slow.assign(new_slow)
        fast.assign(ops.where(sync, new_slow, fast))
    for m, cached in la._moment_pairs():
        new_m = ops.where(sync, la._new_moment(m, cached), m)
        m.assign(new_m)
        if cached is not None:
            cached.assign(ops.where(sync, new_m, cached))
