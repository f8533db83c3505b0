"""Custom training loops: Lookahead in a loop you write yourself, on each Keras backend.

`model.fit` is not the only way to train. When you write the loop yourself (for a GAN, a
reinforcement-learning agent, or just to see every step), Lookahead is used like any Keras
optimizer: compute the gradients the backend's way, then hand them to the optimizer. The
sync every k-th update happens inside that call, whatever the backend:

- TensorFlow: `tf.GradientTape`, then `optimizer.apply(grads, variables)`, inside `tf.function`
  (add `jit_compile=True` for XLA);
- JAX: `jax.value_and_grad` of a pure function, then `optimizer.stateless_apply(...)`, all
  inside `jax.jit`: the variables go in and come out as arrays;
- PyTorch: `loss.backward()`, then `optimizer.apply(grads, variables)`.

Between syncs the model holds the fast weights. The paper evaluates the slow ones (App. C.1):
`keras_lookahead.use_slow_weights(optimizer)` puts them in the model for a block and restores the
fast weights, exactly, when the block ends.

    python examples/custom_loop.py
    KERAS_BACKEND=jax python examples/custom_loop.py
    KERAS_BACKEND=torch python examples/custom_loop.py

The data is scikit-learn's bundled handwritten digits (no network needed).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import keras

import keras_lookahead
from keras_lookahead import Lookahead

from _args import require_counts

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def tensorflow_step(model, optimizer):
    import tensorflow as tf

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = LOSS(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    return step


def torch_step(model, optimizer):
    import torch

    def step(x, y):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        model.zero_grad()
        loss = LOSS(y, model(x, training=True))
        loss.backward()
        variables = model.trainable_variables
        optimizer.apply([v.value.grad for v in variables], variables)
        return loss.detach()

    return step


def jax_step(model, optimizer):
    import jax

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return LOSS(y, logits), non_trainable

    @jax.jit
    def jitted(state, x, y):
        trainable, non_trainable, optimizer_vars = state
        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, x, y)
        trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_vars)

    # JAX steps are pure: the state lives in arrays between steps, and goes back into the
    # Keras variables at the end of each epoch (`sync`).
    state = {}

    def step(x, y):
        if not state:
            state["now"] = ([v.value for v in model.trainable_variables],
                            [v.value for v in model.non_trainable_variables],
                            [v.value for v in optimizer.variables])
        loss, state["now"] = jitted(state["now"], x, y)
        return loss

    def sync():
        if state:
            trainable, non_trainable, optimizer_vars = state.pop("now")
            for variables, values in ((model.trainable_variables, trainable),
                                      (model.non_trainable_variables, non_trainable),
                                      (optimizer.variables, optimizer_vars)):
                for variable, value in zip(variables, values):
                    variable.assign(value)

    step.sync = sync
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    args = parser.parse_args(argv)
    require_counts(parser, args, positive=("epochs", "batch_size"))

    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.reshape(len(digits.images), -1) / 16.0).astype("float32")
    y = digits.target.astype("int32")
    split = int(0.8 * len(x))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10)])
    optimizer = Lookahead(keras.optimizers.Adam(args.learning_rate), sync_period=5,
                          slow_step_size=0.5)
    optimizer.build(model.trainable_variables)  # JAX reads optimizer.variables before a step

    backend = keras.backend.backend()
    make_step = {"tensorflow": tensorflow_step, "jax": jax_step, "torch": torch_step}[backend]
    step = make_step(model, optimizer)
    order = np.random.default_rng(0)
    steps_per_epoch = split // args.batch_size
    for epoch in range(args.epochs):
        bar = keras.utils.Progbar(steps_per_epoch, stateful_metrics=["loss"])
        indices = order.permutation(split)
        for i in range(steps_per_epoch):
            batch = indices[i * args.batch_size:(i + 1) * args.batch_size]
            loss = step(x[batch], y[batch])
            bar.update(i + 1, [("loss", float(keras.ops.convert_to_numpy(loss)))])
        if hasattr(step, "sync"):
            step.sync()
        with keras_lookahead.use_slow_weights(optimizer):
            logits = model.predict(x[split:], verbose=0)
        accuracy = float(np.mean(np.argmax(logits, axis=-1) == y[split:]))
        print(f"epoch {epoch + 1}: {int(optimizer.iterations)} updates, "
              f"test accuracy of the slow weights {accuracy:.4f}")


if __name__ == "__main__":
    main()
