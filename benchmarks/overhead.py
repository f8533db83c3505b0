"""What does Lookahead cost per step? Lookahead(inner) against inner alone, side by side.

Optimizer-only steps on 25M float32 parameters (gradients fixed, no model), for Adam and
SGD(momentum=0.9), k in {5, 10}, under XLA (`tf.function(jit_compile=True)`) and plain graph mode
(`tf.function`), plus the measured limit: the sync alone (slow ← slow + α(fast − slow);
fast ← slow), timed in the same mode and divided by k. Then a whole `model.fit` step of a small
ResNet-style CNN with `jit_compile=True`, and the optimizer state each inner_state mode adds.

Writes benchmarks/results/overhead.md, overhead.json and overhead.png.

    python benchmarks/overhead.py            # about 5 minutes on 2 cores
    python benchmarks/overhead.py --quick    # a smoke run (4M parameters, few rounds)
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _harness as h  # noqa: E402
from keras_lookahead import Lookahead  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TARGET_OPTIMIZER = 1.12  # Lookahead(Adam)/Adam at k=5, both modes (issue #2)
TARGET_FIT = 1.02

INNERS = {
    "Adam": lambda: keras.optimizers.Adam(1e-3),
    "SGD(momentum=0.9)": lambda: keras.optimizers.SGD(1e-3, momentum=0.9),
}


def parameter_shapes(total):
    """Layer-like shapes adding up to `total` parameters: matrices with their biases."""
    shapes, n = [], 0
    width = 2000
    while n + width * width + width <= total:
        shapes += [(width, width), (width,)]
        n += width * width + width
    rest = total - n
    if rest > 0:
        shapes.append((rest,))
    return shapes


def optimizer_step(opt, shapes, jit, seed=0):
    rng = np.random.default_rng(seed)
    variables = [keras.Variable(rng.normal(scale=0.01, size=s).astype("float32")) for s in shapes]
    grads = [tf.constant(rng.normal(size=s).astype("float32")) for s in shapes]
    opt.build(variables)
    return tf.function(lambda: opt.apply(grads, variables), jit_compile=jit)


def sync_only_step(shapes, jit, alpha=0.5, seed=1):
    """The sync by itself, the floor of what Lookahead must add every k steps."""
    rng = np.random.default_rng(seed)
    fast = [tf.Variable(rng.normal(size=s).astype("float32")) for s in shapes]
    slow = [tf.Variable(rng.normal(size=s).astype("float32")) for s in shapes]

    def sync():
        for f, s in zip(fast, slow):
            new = s + alpha * (f - s)
            s.assign(new)
            f.assign(new)

    return tf.function(sync, jit_compile=jit)


def bench_optimizer(args):
    shapes = parameter_shapes(args.params)
    rows = []
    for mode, jit in (("XLA", True), ("graph", False)):
        for inner_name, make_inner in INNERS.items():
            base = optimizer_step(make_inner(), shapes, jit)
            sync = sync_only_step(shapes, jit)
            # sync alone against the inner step: the limit for every k at once
            floor = h.compare(base, sync, calls=args.calls, rounds=args.rounds)
            for k in (5, 10):
                la = optimizer_step(Lookahead(make_inner(), sync_period=k), shapes, jit)
                r = h.compare(base, la, calls=args.calls, rounds=args.rounds)
                r.update(mode=mode, inner=inner_name, k=k, limit=1 + floor["ratio"] / k,
                         sync_over_inner=floor["ratio"])
                rows.append(r)
                h.progress(f"  {mode:5s} {inner_name:18s} k={k:2d}: ratio {r['ratio']:.3f} "
                           f"(limit {r['limit']:.3f}; inner {1e3 * r['baseline_s']:.1f} ms)")
                del la
            del base, sync
    return rows


def resnet_cnn(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    for filters, stride in ((32, 1), (64, 2), (64, 1)):
        shortcut = x
        y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
        y = keras.layers.Conv2D(filters, 3, padding="same")(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = keras.layers.Conv2D(filters, 1, strides=stride)(shortcut)
        x = keras.layers.Activation("relu")(keras.layers.Add()([y, shortcut]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def bench_fit(args):
    rng = np.random.default_rng(0)
    steps, batch = args.fit_steps, 64
    x = rng.normal(size=(steps * batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(steps * batch,))

    def fitter(opt):
        model = resnet_cnn()
        model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True), jit_compile=True)
        return lambda: model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0), model

    base, model = fitter(keras.optimizers.Adam(1e-3))
    la, _ = fitter(Lookahead(keras.optimizers.Adam(1e-3), sync_period=5))
    r = h.compare(base, la, calls=2, rounds=args.fit_rounds, warmup=2)
    r.update(params=int(sum(np.prod(v.shape) for v in model.trainable_variables)),
             steps_per_call=steps, batch=batch)
    h.progress(f"  fit step, ResNet-style CNN ({r['params']:,} params, jit_compile=True): "
               f"ratio {r['ratio']:.3f}")
    return r


def memory_rows():
    """Optimizer state bytes per inner_state mode, from optimizer.variables."""
    shapes = [(1000, 1000), (1000,), (1000, 10), (10,)]
    params = sum(int(np.prod(s)) for s in shapes)

    def state_bytes(opt):
        vs = [keras.Variable(np.zeros(s, "float32")) for s in shapes]
        opt.build(vs)
        return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in opt.variables)

    rows = []
    for inner_name, make in INNERS.items():
        alone = state_bytes(make())
        for mode in ("maintain", "reset", "interpolate"):
            extra = state_bytes(Lookahead(make(), inner_state=mode)) - alone
            rows.append({"inner": inner_name, "inner_state": mode, "inner_bytes": alone,
                         "extra_bytes": extra, "extra_in_params": extra / (4 * params)})
    return rows, params


def plot(rows, fit, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{r['mode']}\n{r['inner'].split('(')[0]} k={r['k']}" for r in rows]
    xs = np.arange(len(rows))
    err = [[r["ratio"] - r["ratio_min"] for r in rows], [r["ratio_max"] - r["ratio"] for r in rows]]
    ax.bar(xs, [r["ratio"] - 1 for r in rows], bottom=1, yerr=err, capsize=3, color="#4c78a8",
           ecolor="#888888", label="Lookahead(inner) / inner (median, min-max over rounds)")
    ax.scatter(xs, [r["limit"] for r in rows], marker="_", s=500, linewidths=3, color="#f58518",
               zorder=3, label="limit: 1 + (sync alone)/k")
    ax.axhline(TARGET_OPTIMIZER, color="#e45756", ls="--", lw=1, label=f"target {TARGET_OPTIMIZER}")
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("step time ratio")
    ax.set_ylim(0.95, max(1.3, max(r["ratio_max"] for r in rows) + 0.05))
    ax.set_title(f"Optimizer step, {rows[0].get('params', 0) / 1e6:.0f}M parameters; "
                 f"whole fit step: {fit['ratio']:.3f}x")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def verdict(ok):
    return "meets target" if ok else "**misses target**"


def write_markdown(path, rows, fit, mem, mem_params, info, args, command=None):
    lines = ["# Lookahead overhead per step", "",
             f"Written by `{command or h.command_line()}`; do not edit by hand.", "",
             f"Machine: {info['cpu']}, {info['cores']} cores; keras {info.get('keras')}, "
             f"tensorflow {info.get('tensorflow')}, numpy {info.get('numpy')}, "
             f"commit {info.get('commit')}.", "",
             "Each ratio is the median over rounds of (Lookahead(inner) time / inner time), the "
             "two timed alternately in one process after warm-up "
             f"({args.rounds} rounds of {args.calls} calls for the optimizer; "
             f"{args.fit_rounds} rounds of two {args.fit_steps}-step fits each for the model).",
             "",
             f"## Optimizer step only, {args.params / 1e6:g}M float32 parameters", "",
             "| mode | inner | k | inner ms | Lookahead ms | ratio (min–max) | limit | target |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        target = f"≤ {TARGET_OPTIMIZER}: {verdict(r['ratio'] <= TARGET_OPTIMIZER)}" if (
            r["inner"] == "Adam" and r["k"] == 5) else "–"
        lines.append(f"| {r['mode']} | {r['inner']} | {r['k']} | {1e3 * r['baseline_s']:.1f} | "
                     f"{1e3 * r['candidate_s']:.1f} | {r['ratio']:.3f} ({r['ratio_min']:.3f}–"
                     f"{r['ratio_max']:.3f}) | {r['limit']:.3f} | {target} |")
    lines += ["", "*limit*: 1 + (time of the sync alone / time of the inner step) / k, the sync "
              "timed by itself in the same mode: what Lookahead must cost if it does nothing but "
              "the sync every k-th step.", "",
              "## Whole training step", "",
              f"`model.fit` of a ResNet-style CNN ({fit['params']:,} parameters, batch "
              f"{fit['batch']}, 32×32×3 inputs, `jit_compile=True`), Adam vs Lookahead(Adam, k=5): "
              f"**{fit['ratio']:.3f}×** (min {fit['ratio_min']:.3f}, max {fit['ratio_max']:.3f}); "
              f"target ≤ {TARGET_FIT}: {verdict(fit['ratio'] <= TARGET_FIT)}.", "",
              "## Optimizer state", "",
              f"Bytes of `optimizer.variables` on a {mem_params:,}-parameter model, minus the "
              "inner optimizer's own:", "",
              "| inner | inner_state | inner state bytes | extra bytes | extra / parameter bytes |",
              "|---|---|---|---|---|"]
    for m in mem:
        lines.append(f"| {m['inner']} | {m['inner_state']} | {m['inner_bytes']:,} | "
                     f"{m['extra_bytes']:,} | {m['extra_in_params']:.3f} |")
    lines += ["", "Expected: one copy of the parameters (the slow weights), two with "
              "\"interpolate\" (plus the cached momentum).", "", "![overhead](overhead.png)", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 4M params, few rounds")
    parser.add_argument("--params", type=int, default=25_000_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--fit-steps", type=int, default=20)
    parser.add_argument("--fit-rounds", type=int, default=7)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--from-json", action="store_true",
                        help="rewrite overhead.md and .png from the raw numbers in overhead.json "
                        "(no timing)")
    args = parser.parse_args(argv)
    if args.from_json:
        import json

        with open(os.path.join(args.out, "overhead.json")) as f:
            payload = json.load(f)
        for key, value in payload["args"].items():
            setattr(args, key, value)
        mem, mem_params = memory_rows()
        plot(payload["optimizer"], payload["fit"], os.path.join(args.out, "overhead.png"))
        write_markdown(os.path.join(args.out, "overhead.md"), payload["optimizer"],
                       payload["fit"], mem, mem_params, payload["machine"], args,
                       command=payload["command"])
        return
    if args.quick:
        args.params, args.rounds, args.calls, args.fit_steps, args.fit_rounds = (
            4_000_000, 3, 5, 5, 3)
    os.makedirs(args.out, exist_ok=True)
    info = h.machine()
    h.progress(f"optimizer step, {args.params / 1e6:g}M parameters")
    rows = bench_optimizer(args)
    for r in rows:
        r["params"] = args.params
    h.progress("whole fit step")
    fit = bench_fit(args)
    mem, mem_params = memory_rows()
    payload = {"machine": info, "command": h.command_line(), "optimizer": rows, "fit": fit,
               "memory": mem, "args": {k: getattr(args, k) for k in (
                   "params", "rounds", "calls", "fit_steps", "fit_rounds")}}
    h.write_json(os.path.join(args.out, "overhead.json"), payload)
    plot(rows, fit, os.path.join(args.out, "overhead.png"))
    write_markdown(os.path.join(args.out, "overhead.md"), rows, fit, mem, mem_params, info, args)
    h.progress(f"wrote {os.path.join(args.out, 'overhead.md')}")


if __name__ == "__main__":
    main()
