"""Slow weights of a bfloat16 model: in bfloat16, or in float32 (`Lookahead(slow_dtype=...)`).

Under Keras's pure "bfloat16" dtype policy the variables themselves are 16-bit, so a sync that
computes and stores φ + α(θ − φ) in bfloat16 rounds it to 8 significant bits. This trains one
small model that way with SGD (momentum 0.9), Lookahead(SGD) with bfloat16 slow weights
(`slow_dtype="variable"`) and Lookahead(SGD) with float32 slow weights (the default), over
seeds and two learning rates, with SGD under the float32 policy beside them as the reference of
what 16 bits cost. (Not Adam: Keras's Adam cannot train bfloat16 variables at all, since β₂ =
0.999 rounds to 1.0 in bfloat16, so its bias correction √(1 − β₂ᵗ) is 0 and every update is
zero; measured with Keras 3.15 on TensorFlow, JAX and PyTorch.) At every epoch end the training
loss is measured by a pass over the training set without updates, on the weights the method
reports (the slow weights for Lookahead, as the model holds them: rounded to bfloat16), and the
test accuracy likewise. Each run has its own
process (the dtype policy is global). Writes benchmarks/results/slow_dtype.{md,json,png}.

    python -m benchmarks.slow_dtype            # about 10 minutes on 2 cores
    python -m benchmarks.slow_dtype --quick    # a smoke run
    python -m benchmarks.slow_dtype --from-json

Data: scikit-learn's handwritten digits (bundled, no download), 8x8 images, 80/20 split; model:
a 3-layer MLP (64-256-256-10).
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks import _harness as h

RUNS = {  # label: (dtype policy, slow_dtype or "" for SGD alone)
    "SGD (float32 policy)": ("float32", ""),
    "SGD": ("bfloat16", ""),
    "LA(SGD), bfloat16 slow": ("bfloat16", "variable"),
    "LA(SGD), float32 slow": ("bfloat16", "default"),
}


def worker(label, lr, seed, args, out):
    """One run in this process: the policy is set before anything is built."""
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    from keras_lookahead import Lookahead, SwapSlowWeights

    policy, slow = RUNS[label]
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(seed)
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    (x_train, y_train), (x_test, y_test) = (x[:split], y[:split]), (x[split:], y[split:])
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(10),
    ])
    optimizer = keras.optimizers.SGD(lr, momentum=0.9)
    callbacks = []
    if slow:
        optimizer = Lookahead(optimizer, sync_period=args.k, slow_step_size=args.alpha,
                              slow_dtype=None if slow == "default" else slow)
        callbacks.append(SwapSlowWeights())
    model.compile(optimizer=optimizer, metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    steps = -(-len(x_train) // args.batch_size)
    curve = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # after SwapSlowWeights put the slow ones in
            train_loss, _ = self.model.evaluate(x_train, y_train, batch_size=256, verbose=0)
            test_loss, test_acc = self.model.evaluate(x_test, y_test, batch_size=256, verbose=0)
            curve.append({"step": (epoch + 1) * steps, "train_loss": float(train_loss),
                          "test_accuracy": float(test_acc)})

    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, shuffle=True,
              verbose=0, callbacks=callbacks + [Record()])
    dtypes = sorted({keras.backend.standardize_dtype(v.dtype) for v in model.trainable_variables})
    slow_dtypes = sorted({keras.backend.standardize_dtype(s.dtype)
                          for s in getattr(model.optimizer, "slow_weights", []) if s is not None})
    h.write_json(out, {"curve": curve, "variable_dtypes": dtypes, "slow_dtypes": slow_dtypes,
                       "params": int(sum(np.prod(v.shape) for v in model.trainable_variables))})


def run_all(args):
    runs = []
    for lr in args.lrs:
        for label in RUNS:
            for seed in range(args.seeds):
                with tempfile.TemporaryDirectory() as tmp:
                    out = os.path.join(tmp, "run.json")
                    cmd = h.module_command(__spec__.name, "--worker", label, "--worker-lr", lr,
                                           "--worker-seed", seed, "--worker-out", out,
                                           "--epochs", args.epochs, "--k", args.k,
                                           "--alpha", args.alpha, "--batch-size", args.batch_size)
                    subprocess.run(cmd, check=True, cwd=h.ROOT)
                    with open(out) as f:
                        run = json.load(f)
                run.update(label=label, lr=lr, seed=seed)
                runs.append(run)
                final = run["curve"][-1]
                h.progress(f"[{len(runs)}/{len(args.lrs) * len(RUNS) * args.seeds}] lr {lr:g} "
                           f"{label}, seed {seed}: train loss {final['train_loss']:.4f}, test "
                           f"accuracy {final['test_accuracy']:.4f} (variables "
                           f"{'/'.join(run['variable_dtypes'])}, slow "
                           f"{'/'.join(run['slow_dtypes']) or '-'})")
    return runs


def _mean_std(values, fmt):
    if len(values) < 2:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def write_results(payload, out):
    args, runs = payload["args"], payload["runs"]
    params = runs[0]["params"]
    lines = h.header("Slow weights of a bfloat16 model: bfloat16 or float32", payload["command"],
                     payload["machine"]) + [
        f"Data: scikit-learn's digits (1,437 training and 360 test images, 8x8). Model: an MLP "
        f"64-256-256-10 ({params:,} parameters). Under Keras's `bfloat16` dtype policy the "
        "variables are bfloat16. SGD with momentum 0.9 at each learning rate (Keras's Adam "
        "makes no update at all on bfloat16 variables: β₂ = 0.999 rounds to 1.0, so its bias "
        "correction is 0); Lookahead "
        f"k = {args['k']}, α = {args['alpha']}, with slow weights in bfloat16 "
        "(`slow_dtype=\"variable\"`) or float32 (the default). SGD under the `float32` policy "
        f"is the reference. {args['epochs']} epochs, batch {args['batch_size']}, "
        f"{args['seeds']} seeds (mean ± std). Training loss: a pass over the training set "
        "without updates at each epoch end, on the weights the method reports (Lookahead: the "
        "slow weights, which the model holds in bfloat16 for evaluation); test accuracy "
        "likewise.", "",
        "| learning rate | optimizer | final training loss | best training loss | "
        "final test accuracy |", "|---|---|---|---|---|"]
    summary = {}
    for lr in args["lrs"]:
        for label in RUNS:
            mine = [r for r in runs if r["lr"] == lr and r["label"] == label]
            if not mine:
                continue
            final = [r["curve"][-1]["train_loss"] for r in mine]
            best = [min(p["train_loss"] for p in r["curve"]) for r in mine]
            acc = [r["curve"][-1]["test_accuracy"] for r in mine]
            summary[f"{lr:g} {label}"] = {"final_train_loss": statistics.mean(final),
                                         "test_accuracy": statistics.mean(acc)}
            lines.append(f"| {lr:g} | {label} | {_mean_std(final, '.4f')} | "
                         f"{_mean_std(best, '.4f')} | {_mean_std(acc, '.3f')} |")
    pairs = []  # the two Lookahead runs of one seed share the initial weights and batch order
    for lr in args["lrs"]:
        runs_of = {label: {r["seed"]: r["curve"][-1]["train_loss"] for r in runs
                           if r["lr"] == lr and r["label"] == label} for label in RUNS}
        low, high = runs_of["LA(SGD), bfloat16 slow"], runs_of["LA(SGD), float32 slow"]
        seeds = sorted(set(low) & set(high))
        if seeds:
            diffs = ", ".join(f"{high[s] - low[s]:+.4f}" for s in seeds)
            pairs.append(f"- lr {lr:g}: float32 − bfloat16 slow weights, final training loss "
                         f"per seed: {diffs}")
    if pairs:
        lines += ["", "Seed by seed (the same initial weights and batches for both):", ""] + pairs
    lines += ["", "![training loss against steps](slow_dtype.png)", ""]
    payload["summary"] = summary
    h.write_json(os.path.join(out, "slow_dtype.json"), payload)
    plot(payload, os.path.join(out, "slow_dtype.png"))
    with open(os.path.join(out, "slow_dtype.md"), "w") as f:
        f.write("\n".join(lines))
    h.progress(f"wrote {os.path.join(out, 'slow_dtype.md')}")


def plot(payload, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lrs = payload["args"]["lrs"]
    fig, axes = plt.subplots(1, len(lrs), figsize=(5.5 * len(lrs), 4), squeeze=False)
    for ax, lr in zip(axes[0], lrs):
        for label in RUNS:
            mine = [r for r in payload["runs"] if r["lr"] == lr and r["label"] == label]
            if not mine:
                continue
            steps = [p["step"] for p in mine[0]["curve"]]
            losses = np.array([[p["train_loss"] for p in r["curve"]] for r in mine])
            mean, std = losses.mean(0), losses.std(0)
            line, = ax.plot(steps, mean, label=label,
                            linestyle=":" if "float32 policy" in label else "-")
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (mean ± std over seeds)")
        ax.set_title(f"SGD (momentum 0.9) lr {lr:g}, bfloat16 variables")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lrs", default="0.03,0.003", help="comma-separated SGD learning rates")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--quick", action="store_true", help="one seed, 2 epochs, one learning rate")
    p.add_argument("--out", default=h.RESULTS)
    p.add_argument("--from-json", action="store_true",
                   help="rewrite slow_dtype.md and .png from slow_dtype.json (no training)")
    p.add_argument("--worker", choices=tuple(RUNS), help=argparse.SUPPRESS)
    p.add_argument("--worker-lr", type=float, help=argparse.SUPPRESS)
    p.add_argument("--worker-seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.lrs = [float(v) for v in args.lrs.split(",") if v]
    except ValueError:
        p.error(f"--lrs {args.lrs!r}: must be comma-separated numbers")
    if not args.lrs or min(args.lrs) <= 0:
        p.error(f"--lrs {args.lrs}: must list positive learning rates")
    for name in ("seeds", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be 1 or more")
    if args.quick:
        args.seeds, args.epochs, args.lrs = 1, 2, args.lrs[:1]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker, args.worker_lr, args.worker_seed, args, args.worker_out)
    h.measure_or_rewrite(args, "slow_dtype", ("lrs", "seeds", "epochs", "batch_size", "k",
                                              "alpha", "quick"),
                         lambda a, payload: payload.update(runs=run_all(a)), write_results)


if __name__ == "__main__":
    main()
