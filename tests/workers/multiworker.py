"""One task of a MultiWorkerMirroredStrategy run; prints JSON. The same training alone, without
a cluster, is `loop(tf.distribute.get_strategy(), ...)`, which the test calls in its own process
as the reference.

usage: python -m tests.workers.multiworker SCENARIO OUT_DIR [KILL_AT]
  SCENARIO "loop": a custom training loop (strategy.run inside tf.function) that checkpoints at
    every epoch end with tf.train.CheckpointManager, one directory per worker under OUT_DIR, and
    resumes from the latest checkpoint when restarted.
  SCENARIO "fit": model.fit on a distributed dataset with the inner optimizer alone, then with
    Lookahead (both fail in Keras 3.15, see the test); prints both outcomes.
  TF_CONFIG describes the cluster and this process's task in it.
  KILL_AT="EPOCH:STEP" makes this process SIGKILL itself after that training step, as a machine
  failure would.

The data are split by hand with distribute_datasets_from_function: worker i takes rows
[8i, 8i + 8) of every global batch of 16, so the all-reduced gradient is the global-batch one.
"""

import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

from tests.workers.strategy_model import GLOBAL_BATCH, X, Y, model_and_optimizer

EPOCHS = 4
STEPS = len(X) // GLOBAL_BATCH


def dataset(context=None):
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(GLOBAL_BATCH)
    if context is None:
        return ds
    per = context.get_per_replica_batch_size(GLOBAL_BATCH)
    i = context.input_pipeline_id
    return ds.map(lambda x, y: (x[i * per:(i + 1) * per], y[i * per:(i + 1) * per]))


def distributed_data(strategy, clustered):
    return strategy.distribute_datasets_from_function(dataset) if clustered else dataset()


def fit_outcome(strategy, data, plain):
    with strategy.scope():
        model, opt = model_and_optimizer(plain=plain, multi="")
        opt.build(model.trainable_variables)
    model.compile(optimizer=opt, loss="mse")
    try:
        model.fit(data, epochs=EPOCHS, verbose=0)
    except Exception as e:  # reported, so the test can compare with the inner optimizer alone
        return {"error": type(e).__name__, "message": str(e).strip().splitlines()[0]}
    return {"epochs_run": EPOCHS}


def loop(strategy, data, checkpoint_dir, kill_at=None):
    """Trains to EPOCHS, resuming from checkpoint_dir's latest checkpoint; returns the result."""
    with strategy.scope():
        model, opt = model_and_optimizer(plain=False, multi="")
        opt.build(model.trainable_variables)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            # mean over the global batch: each replica sees a part of it, gradients are summed
            loss = tf.reduce_sum(tf.square(model(x) - y)) / GLOBAL_BATCH
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply(grads, model.trainable_variables)

    @tf.function
    def train_step(x, y):
        strategy.run(replica_step, args=(x, y))

    checkpoint = tf.train.Checkpoint(model=model, optimizer=opt)
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=2)
    checkpoint.restore(manager.latest_checkpoint)  # nothing to restore on a first start
    first_epoch = int(opt.iterations.numpy()) // STEPS
    epochs_run = 0
    for epoch in range(first_epoch, EPOCHS):
        epochs_run += 1
        for step, (x, y) in enumerate(data):
            train_step(x, y)
            if kill_at == (epoch, step):
                os.kill(os.getpid(), signal.SIGKILL)
        manager.save()  # every worker saves: the save reads the replicated variables
    return {"workers": strategy.num_replicas_in_sync, "epochs_run": epochs_run,
            "iterations": int(opt.iterations.numpy()),
            "weights": [v.numpy().tolist() for v in model.trainable_variables],
            "slow": [v.numpy().tolist() for v in opt.slow_weights]}


def main(scenario, out_dir, kill_at=None):
    # The strategy must exist before any other TensorFlow op runs in this process.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    data = distributed_data(strategy, clustered=True)
    if scenario == "fit":
        result = {"plain": fit_outcome(strategy, data, True),
                  "lookahead": fit_outcome(strategy, data, False)}
    elif scenario == "loop":
        result = loop(strategy, data, os.path.join(out_dir, f"worker-{task}"), kill_at)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps({"task": task, **result}))


if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "tensorflow"
    main(sys.argv[1], sys.argv[2],
         tuple(int(p) for p in sys.argv[3].split(":")) if len(sys.argv) > 3 else None)
