"""The workloads the performance suites time: parameter sets of a given size with fixed
gradients, the optimizer step and the sync alone in each backend's execution modes, optax's
Lookahead as the JAX peer, and a small ResNet-style CNN for whole training steps.

Used by benchmarks/performance.py (cost against size and k, peers, whole steps) and
benchmarks/distributed.py (the same under MirroredStrategy).
"""

import functools

import numpy as np

from benchmarks import _harness as h

TARGET_OPTIMIZER = 1.12  # Lookahead(Adam)/Adam at k=5 on every path (issues #2, #3)
TARGET_FIT = 1.02
ALPHA = 0.5
# Outer momentum (SNOO) as the performance suite times it: about SNOO's reported configuration
OUTER_RATE, OUTER_MOMENTUM = 0.8, 0.75


def parameter_shapes(total):
    """Layer-like shapes adding up to `total` parameters: matrices with their biases."""
    shapes, n = [], 0
    width = 2000
    while n + width * width + width <= total:
        shapes += [(width, width), (width,)]
        n += width * width + width
    if total - n > 0:
        shapes.append((total - n,))
    return shapes


def random_arrays(shapes, seed, scale=1.0):
    """Random float32 arrays of `shapes`, made once per (shapes, seed, scale) and then shared
    (drawing 64M normals takes seconds; the timings do not depend on the values)."""
    return _random_arrays(tuple(tuple(s) for s in shapes), seed, scale)


@functools.lru_cache(maxsize=8)
def _random_arrays(shapes, seed, scale):
    rng = np.random.default_rng(seed)
    return [(scale * rng.normal(size=s)).astype("float32") for s in shapes]


# -- per-backend steps: each returns a callable running one (blocking) step ------------------

def keras_inners():
    import keras

    return {
        "Adam": lambda: keras.optimizers.Adam(1e-3),
        "SGD(momentum=0.9)": lambda: keras.optimizers.SGD(1e-3, momentum=0.9),
    }


def tf_modes(shapes):
    import keras
    import tensorflow as tf

    def optimizer_step(make_opt, jit):
        variables = [keras.Variable(a) for a in random_arrays(shapes, 0, 0.01)]
        grads = [tf.constant(a) for a in random_arrays(shapes, 1)]
        opt = make_opt()
        opt.build(variables)
        return tf.function(lambda: opt.apply(grads, variables), jit_compile=jit)

    def sync_step(jit, momentum):
        fast = [tf.Variable(a) for a in random_arrays(shapes, 2)]
        slow = [tf.Variable(a) for a in random_arrays(shapes, 3)]
        buffers = [tf.Variable(a) for a in random_arrays(shapes, 4)] if momentum else []

        def sync():
            for f, s in zip(fast, slow):
                new = s + ALPHA * (f - s)
                s.assign(new)
                f.assign(new)

        def outer_sync():  # SNOO: b ← μb + (φ − θ); φ ← φ − η(μb + φ − θ); θ ← φ
            for f, s, b in zip(fast, slow, buffers):
                d = s - f
                new_b = momentum * b + d
                new = s - OUTER_RATE * (momentum * new_b + d)
                b.assign(new_b)
                s.assign(new)
                f.assign(new)

        return tf.function(outer_sync if momentum else sync, jit_compile=jit)

    return {mode: (lambda make, jit=jit: optimizer_step(make, jit),
                   lambda momentum=0.0, jit=jit: sync_step(jit, momentum))
            for mode, jit in (("XLA", True), ("graph", False))}


def jax_modes(shapes):
    import jax
    import keras

    def optimizer_step(make_opt):
        variables = [keras.Variable(a) for a in random_arrays(shapes, 0, 0.01)]
        grads = [jax.numpy.asarray(a) for a in random_arrays(shapes, 1)]
        opt = make_opt()
        opt.build(variables)
        # Donated buffers, as Keras's JAX trainer does: the step may update state in place. The
        # outputs come in the inputs' order, so that XLA aliases each buffer with its own update
        # (stateless_apply returns (variables, optimizer state), the reverse of its arguments).
        def apply(ov, tv):
            new_tv, new_ov = opt.stateless_apply(ov, grads, tv)
            return new_ov, new_tv

        step = jax.jit(apply, donate_argnums=(0, 1))
        state = {"opt": [v.value for v in opt.variables], "vars": [v.value for v in variables]}

        def run():
            state["opt"], state["vars"] = step(state["opt"], state["vars"])
            jax.block_until_ready(state["vars"])

        return run

    def sync_step(momentum=0.0):
        def sync(fast, slow, buffers):
            if not momentum:
                new = [s + ALPHA * (f - s) for f, s in zip(fast, slow)]
                return new, new, buffers  # one value, two output buffers, as two variables
            d = [s - f for f, s in zip(fast, slow)]  # SNOO's outer step
            buffers = [momentum * b + x for b, x in zip(buffers, d)]
            new = [s - OUTER_RATE * (momentum * b + x) for s, b, x in zip(slow, buffers, d)]
            return new, new, buffers

        step = jax.jit(sync, donate_argnums=(0, 1, 2))
        state = {"fast": [jax.numpy.asarray(a) for a in random_arrays(shapes, 2)],
                 "slow": [jax.numpy.asarray(a) for a in random_arrays(shapes, 3)],
                 "buffers": ([jax.numpy.asarray(a) for a in random_arrays(shapes, 4)]
                             if momentum else [])}

        def run():
            state["fast"], state["slow"], state["buffers"] = step(
                state["fast"], state["slow"], state["buffers"])
            jax.block_until_ready(state["slow"])

        return run

    return {"jit": (optimizer_step, sync_step)}


def torch_modes(shapes):
    import keras
    import torch

    # Every tensor on the device Keras puts its variables on (the GPU where one is visible),
    # and each call waits for that device's queue: CUDA kernels return before they finish.
    wait = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    def optimizer_step(make_opt):
        variables = [keras.Variable(a) for a in random_arrays(shapes, 0, 0.01)]
        grads = [keras.ops.convert_to_tensor(a) for a in random_arrays(shapes, 1)]
        opt = make_opt()
        opt.build(variables)

        def run():
            opt.apply(grads, variables)
            wait()

        return run

    def sync_step(momentum=0.0):
        fast = [keras.ops.convert_to_tensor(a) for a in random_arrays(shapes, 2)]
        slow = [keras.ops.convert_to_tensor(a) for a in random_arrays(shapes, 3)]
        buffers = ([keras.ops.convert_to_tensor(a) for a in random_arrays(shapes, 4)]
                   if momentum else [])

        from keras_lookahead import _steps, algorithm  # the package's torch sync

        list_ops = _steps.TorchListOps()
        tensors = {"fast": [_Tensor(t) for t in fast], "slow": [_Tensor(t) for t in slow],
                   "buffer": [_Tensor(t) for t in buffers]}
        outer = (algorithm.Outer(OUTER_RATE, momentum) if momentum else algorithm.Outer(ALPHA))

        def run():
            with torch.no_grad():
                algorithm.sync(algorithm.SyncInputs(fast, slow, buffers, [], [], [], []), outer,
                               [], [], list_ops, lambda part, values: list_ops.write(
                                   tensors.get(part, []), values))
            wait()

        return run

    return {"eager": (optimizer_step, sync_step)}


class _Tensor:
    """A bare tensor where the sync's writer expects a variable (its `.value`)."""

    def __init__(self, value):
        self.value = value


def optax_rows(shapes, args, ks=(5, 10)):
    """optax.lookahead(adam) vs optax.adam, jitted with donation, in the JAX process."""
    import jax
    import optax

    rows = []
    params = {str(i): jax.numpy.asarray(a) for i, a in enumerate(random_arrays(shapes, 0, 0.01))}
    grads = {str(i): jax.numpy.asarray(a) for i, a in enumerate(random_arrays(shapes, 1))}

    def stepper(tx, wrap_params):
        p = optax.LookaheadParams.init_synced(params) if wrap_params else params
        p = jax.tree_util.tree_map(lambda x: x + 0, p)  # own buffers (donated below)
        state = {"p": p, "s": tx.init(p)}

        def update(p, s):
            updates, s = tx.update(grads, s, p)  # gradients for the fast params only
            return optax.apply_updates(p, updates), s

        update = jax.jit(update, donate_argnums=(0, 1))

        def run():
            state["p"], state["s"] = update(state["p"], state["s"])
            jax.block_until_ready(state["p"])

        return run

    base = stepper(optax.adam(1e-3), False)
    for k in ks:
        la = stepper(optax.lookahead(optax.adam(1e-3), sync_period=k, slow_step_size=ALPHA), True)
        r = h.compare(base, la, calls=args.calls, rounds=args.rounds)
        r.update(backend="jax", mode="jit", inner="optax.adam", k=k, implementation="optax",
                 limit=None)
        rows.append(r)
        h.progress(f"  jax   jit   optax.lookahead(adam)  k={k:2d}: ratio {r['ratio']:.3f}")
    return rows


def resnet_cnn(seed=0, image_size=32, width=32):
    """Three residual blocks over `image_size`² RGB images, `width` then 2 × `width` filters."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    for filters, stride in ((width, 1), (2 * width, 2), (2 * width, 1)):
        shortcut = x
        y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
        y = keras.layers.Conv2D(filters, 3, padding="same")(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = keras.layers.Conv2D(filters, 1, strides=stride)(shortcut)
        x = keras.layers.Activation("relu")(keras.layers.Add()([y, shortcut]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))
