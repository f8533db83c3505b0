"""Quickstart: is Lookahead(Adam) less sensitive to the learning rate than Adam?

The paper's main practical claim is robustness: Lookahead's slow weights average out the
inner optimizer's oscillations, so a learning rate that is too large for the inner optimizer
alone hurts less (Zhang et al., 2019, Sec. 5). This script checks it on a problem that trains in
seconds: a small network on scikit-learn's bundled handwritten digits (1,797 8×8 images,
shipped inside scikit-learn, so no network is needed).

It trains Adam and Lookahead(Adam) from the same initial weights, at Adam's default learning
rate and at 10× and 100× that, over a few seeds; prints the final losses and test accuracy as
mean ± std over seeds; and writes a plot of the training loss against epochs. Expect Lookahead
to trail Adam at the small rate within this short budget (each sync keeps only a fraction α of
the fast weights' progress) and to hold up where Adam's own steps become too large.
Lookahead is evaluated on its slow weights, as the paper does (App. C.1): the `SwapSlowWeights`
callback leaves them in the model at the end of `fit`.

    python examples/quickstart.py
    python examples/quickstart.py --lrs 0.001 0.003 0.01 0.03 --seeds 5
    python examples/quickstart.py --data-dir ../shared/data/cifar10_jpeg.tar.gz --limit 5000

With `--data-dir` it reads an image-folder dataset instead (one sub-folder per class,
optionally `train/` and `test/` splits), for example the CIFAR-10 JPEG folders; a `.tar.gz` of
such folders is extracted to a temporary directory. A small problem says little about yours:
the benchmark suites (`benchmarks/`) run the paper's experiments, with seeds and error bars.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import keras

from keras_lookahead import Lookahead, SwapSlowWeights

from _args import require_counts
from _data import load_folder


def load_digits(seed=0):
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    return (x[:split], y[:split]), (x[split:], y[split:]), 10


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


def run(make_optimizer, train, test, classes, seed, args):
    """One training run; returns the training loss per epoch and the final evaluation."""
    model = build_model(train[0].shape[1:], classes, seed)
    optimizer = make_optimizer()
    model.compile(optimizer=optimizer, jit_compile=args.jit_compile,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    # Lookahead ends fit on (and is evaluated on) its slow weights.
    callbacks = [SwapSlowWeights()] if isinstance(optimizer, Lookahead) else []
    history = model.fit(*train, batch_size=args.batch_size, epochs=args.epochs,
                        verbose=args.verbose, callbacks=callbacks, shuffle=True)
    train_loss, _ = model.evaluate(*train, verbose=0, batch_size=256)
    test_loss, test_acc = model.evaluate(*test, verbose=0, batch_size=256)
    return history.history["loss"], (train_loss, test_loss, test_acc)


def mean_std(values, fmt):
    values = np.asarray(values, dtype="float64")
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(values.mean(), fmt)} ± {format(values.std(ddof=1), fmt)}"


def plot(curves, lrs, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(lrs), figsize=(4.5 * len(lrs), 3.6), sharey=True,
                             squeeze=False)
    epochs = np.arange(1, args.epochs + 1)
    for ax, lr in zip(axes[0], lrs):
        for (name, run_lr), runs in curves.items():
            if run_lr != lr:
                continue
            runs = np.asarray(runs)
            mean, std = runs.mean(axis=0), runs.std(axis=0)
            line, = ax.plot(epochs, mean, label=name)
            ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_title(f"learning rate {lr:g}")
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("training loss (fit, fast weights)")
    axes[0][0].legend()
    fig.suptitle(f"mean ± std over {args.seeds} seed(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="image folders (or a .tar.gz of them); default: "
                        "scikit-learn's bundled digits")
    parser.add_argument("--limit", type=int, default=5000,
                        help="images per training split read from --data-dir (default 5000)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1],
                        help="Adam's learning rates to compare (default: Keras's default 0.001, "
                        "10x and 100x that)")
    parser.add_argument("--sync-period", type=int, default=5)
    parser.add_argument("--slow-step-size", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jit-compile", action="store_true", help="compile steps with XLA")
    parser.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2],
                        help="Keras fit verbosity (default 0: one line per run; 1: progress "
                        "bars)")
    parser.add_argument("--plot", default="quickstart_loss.png",
                        help="where to write the loss curves (PNG; default: %(default)s)")
    args = parser.parse_args(argv)
    require_counts(parser, args, positive=("epochs", "batch_size", "seeds", "limit"))
    for lr in args.lrs:
        if not (lr > 0 and np.isfinite(lr)):
            parser.error(f"--lrs {lr}: each learning rate must be a finite number > 0")

    if args.data_dir:
        train, test, classes = load_folder(args.data_dir, args.limit)
        source = f"{args.data_dir} ({len(train[0])} train / {len(test[0])} test images)"
    else:
        train, test, classes = load_digits()
        source = f"scikit-learn digits ({len(train[0])} train / {len(test[0])} test images)"
    print(f"data: {source}, {classes} classes; backend {keras.backend.backend()}")

    lookahead = f"Lookahead(Adam) k={args.sync_period} α={args.slow_step_size}"
    optimizers = {
        "Adam": lambda lr: keras.optimizers.Adam(lr),
        lookahead: lambda lr: Lookahead(keras.optimizers.Adam(lr),
                                        sync_period=args.sync_period,
                                        slow_step_size=args.slow_step_size),
    }
    curves, finals = {}, {}
    total, done = len(args.lrs) * len(optimizers) * args.seeds, 0
    for lr in args.lrs:
        for seed in range(args.seeds):
            for name, make in optimizers.items():
                loss, final = run(lambda make=make, lr=lr: make(lr), train, test, classes,
                                  seed, args)
                curves.setdefault((name, lr), []).append(loss)
                finals.setdefault((name, lr), []).append(final)
                done += 1
                print(f"[{done}/{total}] {name}, lr {lr:g}, seed {seed}: training loss "
                      f"{loss[0]:.4f} -> {loss[-1]:.4f}, test accuracy {final[2]:.4f}",
                      flush=True)

    header = (f"{'optimizer':<28} {'lr':>7} {'train loss':>18} {'test loss':>18} "
              f"{'test accuracy':>18}")
    print(f"\nafter {args.epochs} epochs, mean ± std over {args.seeds} seed(s); "
          "Lookahead evaluated on its slow weights")
    print(header)
    print("-" * len(header))
    for (name, lr), rows in finals.items():
        rows = np.asarray(rows)
        print(f"{name:<28} {lr:>7g} {mean_std(rows[:, 0], '.4f'):>18} "
              f"{mean_std(rows[:, 1], '.4f'):>18} {mean_std(rows[:, 2], '.4f'):>18}")
    plot(curves, args.lrs, args, args.plot)
    print(f"\nloss curves: {args.plot}")
    print("This is one small problem. The paper's experiments with this optimizer, seeds and "
          "error bars (CIFAR-10, translation, theory, cost per step) are in benchmarks/ and on "
          "the docs site (docs/experiments.md, docs/performance.md).")


if __name__ == "__main__":
    main()
