"""One phase of a save/resume test: the resuming phases run in a process of their own (so that
nothing but the file is shared), the others in the test's process (`run_phase`).

usage: python -m tests.workers.resume PHASE DIR INNER_STATE JIT [DIR INNER_STATE JIT ...]
  (INNER_STATE+snoo: with outer momentum, whose buffers are saved and resumed too)
  (each DIR in turn, from a fresh Keras state; N = 7 and M = 6 steps)
  phases: full      train N+M steps, write DIR/full.npz
          keras     train N steps, model.save(DIR/m.keras)
          keras2    load DIR/m.keras, train M more, write DIR/resumed.npz (any backend:
                    the file may come from another one)
          ckpt      custom tf.function loop: N steps, tf.train.Checkpoint.save
          ckpt2     fresh model + optimizer, restore, M more, write DIR/resumed.npz
          ckptfull  custom loop N+M steps, write DIR/full.npz
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import keras

import keras_lookahead  # noqa: F401  (registers Lookahead for load_model)
from keras_lookahead import Lookahead

K = 5
BATCH = 16


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 6)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(6, 2))).astype("float32")
    return x, y


def make_model(inner_state, jit):
    inner_state, _, snoo = inner_state.partition("+")
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(12, activation="relu"),
                              keras.layers.Dense(2)])
    inner = (keras.optimizers.SGD(0.05, momentum=0.9) if inner_state == "reset"
             else keras.optimizers.Adam(0.01))
    # On torch jit_compile means torch.compile, which is not what these tests are about.
    outer = dict(slow_step_size=1.2, slow_momentum=0.75) if snoo else {}
    model.compile(optimizer=Lookahead(inner, sync_period=K, inner_state=inner_state, **outer),
                  loss="mse", jit_compile=jit and keras.backend.backend() != "torch")
    return model


def train(model, start, steps):
    x, y = data()
    nb = len(x) // BATCH
    for s in range(start, start + steps):
        i = s % nb
        model.train_on_batch(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])


def custom_loop(model, opt, start, steps):
    import tensorflow as tf

    x, y = data()
    nb = len(x) // BATCH

    @tf.function(jit_compile=model.jit_compile)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(xb, training=True) - yb) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply(grads, model.trainable_variables)

    for s in range(start, start + steps):
        i = s % nb
        step(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])


def dump(model, path):
    opt = model.optimizer
    arrays = {f"w{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.weights)}
    arrays.update({f"o{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(opt.variables)})
    np.savez(path, **arrays)


def main():
    phase, cases = sys.argv[1], sys.argv[2:]
    for i in range(0, len(cases), 3):
        d, inner_state, jit = cases[i:i + 3]
        run_phase(phase, d, inner_state, jit == "1")


def run_phase(phase, d, inner_state, jit, n=7, m=6):
    keras.backend.clear_session(free_memory=False)  # the same layer names in every phase
    if phase in ("full", "keras"):
        model = make_model(inner_state, jit)
        train(model, 0, n + m if phase == "full" else n)
        if phase == "full":
            dump(model, os.path.join(d, "full.npz"))
        else:
            model.save(os.path.join(d, "m.keras"))
    elif phase == "keras2":
        model = keras.models.load_model(os.path.join(d, "m.keras"))
        assert isinstance(model.optimizer, Lookahead), type(model.optimizer)
        assert model.optimizer.inner_state == inner_state.partition("+")[0]
        assert (model.optimizer.slow_momentum > 0) == inner_state.endswith("+snoo")
        train(model, n, m)
        dump(model, os.path.join(d, "resumed.npz"))
    elif phase in ("ckpt", "ckpt2", "ckptfull"):
        import tensorflow as tf

        model = make_model(inner_state, jit)
        opt = model.optimizer
        opt.build(model.trainable_variables)
        ckpt = tf.train.Checkpoint(model=model, optimizer=opt)
        if phase == "ckpt2":
            ckpt.restore(os.path.join(d, "ckpt-1")).assert_consumed()
            custom_loop(model, opt, n, m)
            dump(model, os.path.join(d, "resumed.npz"))
        else:
            custom_loop(model, opt, 0, n + m if phase == "ckptfull" else n)
            if phase == "ckptfull":
                dump(model, os.path.join(d, "full.npz"))
            else:
                ckpt.save(os.path.join(d, "ckpt"))
    else:
        raise SystemExit(f"unknown phase {phase!r}")


if __name__ == "__main__":
    main()
