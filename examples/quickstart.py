"""Quickstart: Adam vs Lookahead(Adam) on a real dataset that needs no network.

By default it trains a small network on scikit-learn's bundled handwritten digits (1,797 8×8
images, shipped inside scikit-learn) with both optimizers from the same initial weights, over a
few seeds, and prints a side-by-side table. With `--data-dir` it reads an image-folder dataset
instead (one sub-folder per class, optionally `train/` and `test/` splits), for example the
CIFAR-10 JPEG folders: a `.tar.gz` of such folders is extracted to a temporary directory.

    python examples/quickstart.py
    python examples/quickstart.py --data-dir ../shared/data/cifar10_jpeg.tar.gz --limit 5000

Lookahead is evaluated on its slow weights, as the paper does (App. C.1): the `SwapSlowWeights`
callback leaves them in the model at the end of `fit`.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import keras  # noqa: E402

from keras_lookahead import Lookahead, SwapSlowWeights  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _data import local_folder  # noqa: E402


def load_digits(seed=0):
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    return (x[:split], y[:split]), (x[split:], y[split:]), 10


def _find_root(path):
    """The folder holding class sub-folders (or train/ and test/), extracting a tarball first."""
    path = local_folder(path)
    # Descend through single-folder wrappers such as cifar10/.
    while True:
        entries = [e for e in os.listdir(path) if os.path.isdir(os.path.join(path, e))]
        if len(entries) == 1 and not _has_images(os.path.join(path, entries[0])):
            path = os.path.join(path, entries[0])
        else:
            return path


def _has_images(folder):
    return any(f.lower().endswith((".jpg", ".jpeg", ".png")) for f in os.listdir(folder))


def _read_split(folder, limit, image_size, seed):
    ds = keras.utils.image_dataset_from_directory(
        folder, image_size=image_size, batch_size=None, shuffle=True, seed=seed, verbose=False)
    classes = len(ds.class_names)
    xs, ys = [], []
    for x, y in ds.take(limit):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return (np.stack(xs).astype("float32") / 255.0, np.array(ys, "int32")), classes


def load_folder(path, limit, image_size=(32, 32), seed=0):
    root = _find_root(path)
    if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "test")):
        train, classes = _read_split(os.path.join(root, "train"), limit, image_size, seed)
        test, _ = _read_split(os.path.join(root, "test"), max(limit // 5, 1), image_size, seed)
    else:
        data, classes = _read_split(root, limit, image_size, seed)
        split = int(0.8 * len(data[0]))
        train, test = (data[0][:split], data[1][:split]), (data[0][split:], data[1][split:])
    return train, test, classes


def build_model(input_shape, classes, seed):
    keras.utils.set_random_seed(seed)
    if input_shape[0] <= 8:  # digits: a small MLP is enough
        layers = [keras.layers.Flatten(), keras.layers.Dense(64, activation="relu")]
    else:
        layers = [
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(64, activation="relu"),
        ]
    return keras.Sequential([keras.Input(input_shape), *layers, keras.layers.Dense(classes)])


class StepTimer(keras.callbacks.Callback):
    """Wall time of each training batch after the first epoch (which includes tracing)."""

    def on_train_begin(self, logs=None):
        self.times, self.epoch = [], 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch > 0:
            self.times.append(time.perf_counter() - self._start)


def run(name, make_optimizer, train, test, classes, seed, args):
    model = build_model(train[0].shape[1:], classes, seed)
    model.compile(optimizer=make_optimizer(), jit_compile=args.jit_compile,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    timer = StepTimer()
    callbacks = [timer]
    if isinstance(model.optimizer, Lookahead):
        callbacks.insert(0, SwapSlowWeights())  # ends fit on the slow weights
    print(f"-- {name}, seed {seed}")
    model.fit(*train, batch_size=args.batch_size, epochs=args.epochs, verbose=args.verbose,
              callbacks=callbacks, shuffle=True)
    train_loss, _ = model.evaluate(*train, verbose=0, batch_size=256)
    test_loss, test_acc = model.evaluate(*test, verbose=0, batch_size=256)
    return train_loss, test_loss, test_acc, float(np.median(timer.times)) if timer.times else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="image folders (or a .tar.gz of them); default: "
                        "scikit-learn's bundled digits")
    parser.add_argument("--limit", type=int, default=5000,
                        help="images per training split read from --data-dir (default 5000)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--sync-period", type=int, default=5)
    parser.add_argument("--slow-step-size", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jit-compile", action="store_true", help="compile steps with XLA")
    parser.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2],
                        help="Keras fit verbosity: 1 progress bar, 2 one line per epoch")
    args = parser.parse_args(argv)

    if args.data_dir:
        train, test, classes = load_folder(args.data_dir, args.limit)
        source = f"{args.data_dir} ({len(train[0])} train / {len(test[0])} test images)"
    else:
        train, test, classes = load_digits()
        source = f"scikit-learn digits ({len(train[0])} train / {len(test[0])} test images)"
    print(f"data: {source}, {classes} classes; backend {keras.backend.backend()}")

    optimizers = {
        "Adam": lambda: keras.optimizers.Adam(args.lr),
        f"Lookahead(Adam) k={args.sync_period} α={args.slow_step_size}": lambda: Lookahead(
            keras.optimizers.Adam(args.lr), sync_period=args.sync_period,
            slow_step_size=args.slow_step_size),
    }
    results = {name: [] for name in optimizers}
    for seed in range(args.seeds):
        for name, make in optimizers.items():
            results[name].append(run(name, make, train, test, classes, seed, args))

    def cell(values, fmt):
        values = np.array(values)
        if len(values) == 1:
            return format(values[0], fmt)
        return f"{format(values.mean(), fmt)} ± {format(values.std(ddof=1), fmt)}"

    header = f"{'optimizer':<32} {'train loss':>18} {'test loss':>18} {'test acc':>18} {'ms/step':>16}"
    print(f"\nafter {args.epochs} epochs, mean ± std over {args.seeds} seed(s); "
          "Lookahead evaluated on its slow weights")
    print(header)
    print("-" * len(header))
    base_time = None
    for name, rows in results.items():
        rows = np.array(rows)
        ms = rows[:, 3] * 1000
        base_time = base_time if base_time is not None else np.median(ms)
        print(f"{name:<32} {cell(rows[:, 0], '.4f'):>18} {cell(rows[:, 1], '.4f'):>18} "
              f"{cell(rows[:, 2], '.4f'):>18} {cell(ms, '.2f'):>16}")
    la_ms = np.median(np.array(results[list(results)[1]])[:, 3]) * 1000
    print(f"\nstep time Lookahead/Adam: {la_ms / base_time:.3f}x (median ms/step; includes "
          "Keras's per-batch overhead, see benchmarks/overhead.py for the optimizer alone)")


if __name__ == "__main__":
    main()
