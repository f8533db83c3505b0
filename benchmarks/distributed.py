"""What does Lookahead cost under tf.distribute.MirroredStrategy? Side by side with the inner
optimizer under the same strategy, in one process.

The CPU is split into --replicas logical devices (2 by default) and one MirroredStrategy spans
them. Measured, each as Lookahead(inner) / inner, alternating call by call (benchmarks/_harness):
- the optimizer step alone: `strategy.run(opt.apply)` inside `tf.function`, fixed gradients, on
  --params float32 parameters, for Adam and SGD(momentum=0.9) at k = 5 and 10; the same without
  the strategy (one device) beside it;
- a whole train step (forward, backward, update) of the ResNet-style CNN of
  benchmarks/_workloads.py, global batch 64 split over the replicas.

Writes benchmarks/results/distributed.md and distributed.json.

    python -m benchmarks.distributed             # about 5 minutes on 2 cores
    python -m benchmarks.distributed --quick     # a smoke run
"""

import argparse
import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from benchmarks import _harness as h
from benchmarks._workloads import (
    ALPHA, keras_inners, parameter_shapes, random_arrays, resnet_cnn)

RESULTS = h.RESULTS


def optimizer_rows(strategy, label, args):
    import keras
    import tensorflow as tf

    from keras_lookahead import Lookahead

    shapes = parameter_shapes(args.params)
    grads = [tf.constant(a) for a in random_arrays(shapes, 1)]

    def step(make_opt):
        with strategy.scope():
            variables = [keras.Variable(a) for a in random_arrays(shapes, 0, 0.01)]
            opt = make_opt()
            opt.build(variables)
        def replica_step():
            opt.apply(grads, variables)

        @tf.function
        def fn():
            strategy.run(replica_step)

        fn()  # trace outside the timing
        return fn

    rows = []
    for inner_name, make_inner in keras_inners().items():
        base = step(make_inner)
        for k in (5, 10):
            la = step(lambda make_inner=make_inner, k=k: Lookahead(make_inner(), sync_period=k,
                                                                  slow_step_size=ALPHA))
            r = h.compare(base, la, calls=args.calls, rounds=args.rounds)
            r.update(strategy=label, inner=inner_name, k=k)
            rows.append(r)
            h.progress(f"  {label:28s} {inner_name:18s} k={k:2d}: ratio {r['ratio']:.3f} "
                       f"(inner {1e3 * r['baseline_s']:.1f} ms)")
            del la
        del base
    return rows


def train_step_row(strategy, label, args):
    """A whole train step, forward, backward and update, as `strategy.run` inside tf.function.

    (Timing `fit` calls instead mixes in its per-call set-up, which varies more than the
    difference being measured.)
    """
    import keras
    import tensorflow as tf

    from keras_lookahead import Lookahead

    rng = np.random.default_rng(0)
    batch = 64
    x = rng.normal(size=(8 * batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(8 * batch,))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True)
    ds = strategy.experimental_distribute_dataset(ds.cache().repeat())
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")

    def trainer(make_opt):
        with strategy.scope():
            model = resnet_cnn()
            opt = make_opt()
            opt.build(model.trainable_variables)

        def replica_step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True)) / batch
            opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            return loss

        @tf.function
        def step(x, y):
            return strategy.reduce("SUM", strategy.run(replica_step, args=(x, y)), axis=None)

        batches = iter(ds)

        def run():
            for _ in range(args.train_steps):
                loss = step(*next(batches))
            float(loss)  # wait for the last step

        return run, model

    base, model = trainer(lambda: keras.optimizers.Adam(1e-3))
    la, _ = trainer(lambda: Lookahead(keras.optimizers.Adam(1e-3), sync_period=5))
    r = h.compare(base, la, calls=2, rounds=args.train_rounds, warmup=2)
    r.update(strategy=label, steps_per_call=args.train_steps, batch=batch,
             params=int(sum(np.prod(v.shape) for v in model.trainable_variables)))
    h.progress(f"  {label:28s} train step, ResNet-style CNN: ratio {r['ratio']:.3f}")
    return r


def write_markdown(path, payload):
    args = payload["args"]
    lines = h.header("Lookahead under MirroredStrategy", payload["command"], payload["machine"],
                     detail=f"The CPU is split into {args['replicas']} logical devices, so the "
             "replicas share its cores: what matters is the ratio, measured "
             "alternately call by call in one process "
             f"({args['rounds']} rounds of {args['calls']} calls for the optimizer, "
             f"{args['train_rounds']} rounds of two calls of {args['train_steps']} steps for the "
             "model; "
             "median of per-round ratios, min–max beside).") + [
             f"## Optimizer step only, {args['params'] / 1e6:g}M float32 parameters", "",
             "| strategy | inner | k | inner ms | Lookahead ms | Lookahead / inner (min–max) |",
             "|---|---|---|---|---|---|"]
    for r in payload["optimizer"]:
        lines.append(f"| {r['strategy']} | {r['inner']} | {r['k']} | {1e3 * r['baseline_s']:.1f} "
                     f"| {1e3 * r['candidate_s']:.1f} | {r['ratio']:.3f} "
                     f"({r['ratio_min']:.3f}–{r['ratio_max']:.3f}) |")
    lines += ["", "## Whole training step", "",
              "Forward, backward and update of the ResNet-style CNN of the performance suite "
              "(performance.md, \"Whole training step\"), global "
              "batch 64, as `strategy.run` inside `tf.function` (no XLA: over several devices "
              "it cannot compile a step that updates variables), Adam vs Lookahead(Adam, k=5):",
              "",
              "| strategy | parameters | Lookahead / inner (min–max) |", "|---|---|---|"]
    for r in payload["train_step"]:
        lines.append(f"| {r['strategy']} | {r['params']:,} | {r['ratio']:.3f} "
                     f"({r['ratio_min']:.3f}–{r['ratio_max']:.3f}) |")
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2, help="logical CPU devices")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1M params, few rounds")
    parser.add_argument("--params", type=int, default=8_000_000)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--train-rounds", type=int, default=7)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--from-json", action="store_true",
                        help="only rewrite distributed.md from --out's distributed.json")
    args = parser.parse_args(argv)
    if args.from_json:
        import json

        with open(os.path.join(args.out, "distributed.json")) as f:
            write_markdown(os.path.join(args.out, "distributed.md"), json.load(f))
        return
    if args.replicas < 2:
        parser.error(f"--replicas {args.replicas}: must be 2 or more (a strategy over one "
                     "device is measured beside it anyway)")
    if args.quick:
        args.params, args.rounds, args.calls, args.train_steps, args.train_rounds = (
            1_000_000, 3, 5, 5, 2)

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * args.replicas)
    # One MirroredStrategy for the whole process: several collide on collective instance keys.
    mirrored = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(args.replicas)])
    strategies = ((f"Mirrored, {args.replicas} CPU devices", mirrored),
                  ("none (one device)", tf.distribute.get_strategy()))
    payload = {"command": h.command_line(), "machine": h.machine(), "optimizer": [],
               "train_step": [],
               "args": {k: getattr(args, k) for k in (
                   "replicas", "params", "rounds", "calls", "train_steps", "train_rounds")}}
    h.progress(f"optimizer step, {args.params / 1e6:g}M parameters")
    for label, strategy in strategies:
        payload["optimizer"] += optimizer_rows(strategy, label, args)
    h.progress("whole train step")
    for label, strategy in strategies:
        payload["train_step"].append(train_step_row(strategy, label, args))
    os.makedirs(args.out, exist_ok=True)
    h.write_json(os.path.join(args.out, "distributed.json"), payload)
    write_markdown(os.path.join(args.out, "distributed.md"), payload)
    h.progress(f"wrote {os.path.join(args.out, 'distributed.md')}")


if __name__ == "__main__":
    main()
