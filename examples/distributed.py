"""Lookahead on several GPUs, several machines, a TPU, or with JAX's distribution API.

Trains a small CNN on scikit-learn's bundled handwritten digits (no network needed) with
Lookahead(Adam) under the strategy named by --strategy, then reports the test accuracy of the
slow weights (the paper evaluates those, App. C.1).

    python examples/distributed.py                                   # one device
    python examples/distributed.py --strategy mirrored               # every local GPU
    python examples/distributed.py --strategy mirrored --cpu-replicas 2   # try it on a CPU
    python examples/distributed.py --strategy multiworker --local-workers 2
        # a two-worker cluster on this machine (127.0.0.1), started and stopped by the script
    TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]},
                "task": {"type": "worker", "index": 0}}' \\
        python examples/distributed.py --strategy multiworker --checkpoint-dir /shared/ckpt
        # one worker of a real cluster: run it on every host with its own index
    python examples/distributed.py --strategy tpu --tpu my-tpu --steps-per-execution 32
    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
        python examples/distributed.py --strategy data-parallel       # or model-parallel

How it trains:
- `model.fit` with the `SwapSlowWeights` callback (validation on the slow weights) for one
  device, mirrored, TPU and the JAX distributions. `--backup-dir` adds `BackupAndRestore`.
- A custom loop (`strategy.run` inside `tf.function`) for multiworker, where Keras 3's `fit` does
  not run for any optimizer (keras #20585), or for any TensorFlow strategy with --custom-loop.
  It checkpoints every epoch with tf.train.CheckpointManager (slow weights and the inner
  optimizer's state included) and resumes from the latest checkpoint when restarted.

Limits measured with TF 2.21 / Keras 3.15 (tests/test_distributed.py pins each, for plain SGD
too, so none is Lookahead's): under MirroredStrategy over several devices, `steps_per_execution`
> 1 and XLA-compiled steps that update variables fail; gradients compiled with XLA and applied
outside it work (--custom-loop --jit-compile does that).
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _distribute


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _distribute.add_arguments(p)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64, help="global batch size")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--sync-period", type=int, default=5, help="Lookahead's k")
    p.add_argument("--slow-step-size", type=float, default=0.5, help="Lookahead's alpha")
    p.add_argument("--steps-per-execution", type=int, default=1,
                   help="train steps per host call (TPU: 32 or more)")
    _distribute.add_custom_loop_argument(p)
    p.add_argument("--checkpoint-dir", default=None,
                   help="custom loop: checkpoint here every epoch, resume from here")
    p.add_argument("--backup-dir", default=None,
                   help="fit: keras.callbacks.BackupAndRestore directory")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    # --sync-period and --slow-step-size are checked by Lookahead itself, which names them
    for name in ("epochs", "batch_size", "steps_per_execution"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be 1 or more")
    if args.custom_loop and args.strategy in _distribute.JAX_STRATEGIES:
        p.error(f"--custom-loop: for TensorFlow strategies, not --strategy {args.strategy}")
    return args


def datasets(batch_size, seed):
    """tf.data pipelines of the digits; every batch full, so shapes are static (TPU, XLA)."""
    import tensorflow as tf
    from quickstart import load_digits

    (x_train, y_train), (x_test, y_test), classes = load_digits(seed)

    def make(x, y, shuffle):
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return make(x_train, y_train, True), make(x_test, y_test, False), classes


def build_model(args, classes):
    import keras

    from keras_lookahead import Lookahead

    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu", name="hidden"),
        keras.layers.Dense(classes),
    ])
    opt = Lookahead(keras.optimizers.Adam(args.learning_rate), sync_period=args.sync_period,
                    slow_step_size=args.slow_step_size)
    return model, opt


def layout_map(mesh):
    """--strategy model-parallel: the hidden layer split by its units over the 'model' axis."""
    import keras

    layouts = keras.distribution.LayoutMap(mesh)
    layouts[".*hidden.*kernel"] = (None, "model")
    layouts[".*hidden.*bias"] = ("model",)
    return layouts


def train_with_fit(args, dist, model, opt, train, test):
    import keras

    from keras_lookahead import SwapSlowWeights

    if dist.name == "mirrored" and dist.replicas > 1 and args.steps_per_execution > 1:
        raise SystemExit("--steps-per-execution > 1 fails under MirroredStrategy over several "
                         "devices in Keras 3.15, for any optimizer: leave it at 1 there")
    with dist.scope():
        model.compile(optimizer=opt, jit_compile=args.jit_compile or "auto",
                      steps_per_execution=args.steps_per_execution,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    callbacks = [SwapSlowWeights()]  # validation on the slow weights; they stay at the end
    if args.backup_dir:
        callbacks.append(keras.callbacks.BackupAndRestore(args.backup_dir))
    model.fit(train, validation_data=test, epochs=args.epochs, callbacks=callbacks, verbose=2,
              shuffle=False)  # the dataset shuffles itself
    return model.evaluate(test, verbose=0, return_dict=True)["accuracy"]


def train_with_custom_loop(args, dist, model, opt, train, test):
    import keras

    from _loop import CustomLoop
    from keras_lookahead import SwapSlowWeights

    with dist.scope():
        model.compile(optimizer=opt)  # the loop trains model.optimizer
    loop = CustomLoop(dist, model, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      accuracy=True, jit_compile=args.jit_compile,
                      checkpoint_dir=args.checkpoint_dir
                      or tempfile.mkdtemp(prefix="lookahead_ckpt_"))
    callbacks = [SwapSlowWeights()]  # the slow weights at the end, as with fit
    loop.fit(train, args.epochs, int(train.cardinality()), callbacks=callbacks, verbose=2)
    return loop.evaluate(test)[1]


def run(args):
    dist = _distribute.make(args, layout_map=layout_map, global_batch=args.batch_size)
    train, test, classes = datasets(args.batch_size, args.seed)
    with dist.scope():
        model, opt = build_model(args, classes)
    if dist.custom_loop:
        accuracy = train_with_custom_loop(args, dist, model, opt, train, test)
    else:
        accuracy = train_with_fit(args, dist, model, opt, train, test)
    if dist.is_chief:
        print(f"strategy {dist.name}, {dist.replicas} replica(s): test accuracy of the slow "
              f"weights {accuracy:.4f}")
    return accuracy


def cluster_argv(args):
    """--local-workers: the workers share one checkpoint folder (a new one unless given)."""
    if args.checkpoint_dir:
        return []
    return ["--checkpoint-dir", tempfile.mkdtemp(prefix="lookahead_cluster_")]


def main(argv=None):
    return _distribute.main(__file__, parse_args, run, argv, cluster_argv)


if __name__ == "__main__":
    main()
