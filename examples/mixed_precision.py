"""Mixed precision: Lookahead under Keras's `mixed_float16` and `mixed_bfloat16` policies.

With a mixed policy, layers compute in 16 bits and keep their variables in float32. Lookahead
needs nothing special there: its slow weights are float32 copies of float32 variables, and the
sync runs in float32.

Under `mixed_float16`, `compile` wraps the optimizer in a `keras.optimizers.LossScaleOptimizer`
(a float16 gradient can underflow to zero, so the loss is scaled up and the gradients back
down). The wrapping is outside Lookahead: `LossScaleOptimizer(Lookahead(Adam()))`. Two things
follow, both handled for you:

- a step whose scaled gradients overflow is skipped by the loss scaler, and a skipped step is
  not an update: Lookahead counts only the updates its inner optimizer applied, so a skipped
  step does not bring the sync closer;
- `SwapSlowWeights` and `use_slow_weights` find the Lookahead inside the loss scaler, and the
  learning rate (for `ReduceLROnPlateau`, say) is the inner optimizer's.

    python examples/mixed_precision.py                       # mixed_float16
    python examples/mixed_precision.py --policy mixed_bfloat16

On a CPU, 16-bit arithmetic is emulated and slower than float32: the point of this script is
that training and evaluation on the slow weights work; the speed-up needs a GPU or TPU.
The data is scikit-learn's bundled handwritten digits (no network needed).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import keras

from keras_lookahead import Lookahead, SwapSlowWeights, find_lookahead

from _args import require_counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="mixed_float16",
                        choices=["mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    require_counts(parser, args, positive=("epochs", "batch_size"))

    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    split = int(0.8 * len(x))

    keras.config.set_dtype_policy(args.policy)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        # The logits in float32: a softmax cross-entropy in 16 bits loses precision.
        keras.layers.Dense(10, dtype="float32"),
    ])
    model.compile(optimizer=Lookahead(keras.optimizers.Adam(1e-3)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x[:split], y[:split], batch_size=args.batch_size, epochs=args.epochs,
              validation_data=(x[split:], y[split:]), callbacks=[SwapSlowWeights()], verbose=2)

    lookahead = find_lookahead(model)
    print(f"policy {args.policy}: compute {model.layers[0].compute_dtype}, variables "
          f"{model.layers[0].kernel.dtype}, slow weights {lookahead.slow_weights[0].dtype}; "
          f"optimizer {type(model.optimizer).__name__} around "
          f"{type(lookahead).__name__}({type(lookahead.inner_optimizer).__name__})")
    loss, accuracy = model.evaluate(x[split:], y[split:], verbose=0)  # on the slow weights
    print(f"{int(lookahead.iterations)} updates; test accuracy of the slow weights "
          f"{accuracy:.4f}")
    assert np.isfinite(loss)


if __name__ == "__main__":
    main()
