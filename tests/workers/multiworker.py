"""One task of a MultiWorkerMirroredStrategy run, or the single-process reference; prints JSON.

usage: [PLAIN=1] python -m tests.workers.multiworker SCENARIO OUT_DIR [KILL_AT]
  SCENARIO "loop": a custom training loop (strategy.run inside tf.function) that checkpoints at
    every epoch end with tf.train.CheckpointManager, one directory per worker under OUT_DIR, and
    resumes from the latest checkpoint when restarted.
  SCENARIO "fit": model.fit on a distributed dataset (fails in Keras 3.15, see the test).
  With TF_CONFIG set, this process is one worker of the cluster it describes; without it, it
  trains the same model alone on the same global batches (the reference).
  KILL_AT="EPOCH:STEP" makes this process SIGKILL itself after that training step, as a machine
  failure would. PLAIN=1 trains the inner optimizer alone.

The data are split by hand with distribute_datasets_from_function: worker i takes rows
[8i, 8i + 8) of every global batch of 16, so the all-reduced gradient is the global-batch one.
"""

import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import tensorflow as tf  # noqa: E402

SCENARIO, OUT_DIR = sys.argv[1], sys.argv[2]
KILL_AT = tuple(int(p) for p in sys.argv[3].split(":")) if len(sys.argv) > 3 else None
CLUSTER = json.loads(os.environ["TF_CONFIG"]) if "TF_CONFIG" in os.environ else None

# The strategy must exist before any other TensorFlow op runs in this process.
strategy = (tf.distribute.MultiWorkerMirroredStrategy() if CLUSTER
            else tf.distribute.get_strategy())

from tests.workers.strategy_model import GLOBAL_BATCH, X, Y, model_and_optimizer  # noqa: E402

EPOCHS = 4
STEPS = len(X) // GLOBAL_BATCH
TASK = CLUSTER["task"]["index"] if CLUSTER else 0


def dataset(context=None):
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(GLOBAL_BATCH)
    if context is None:
        return ds
    per = context.get_per_replica_batch_size(GLOBAL_BATCH)
    i = context.input_pipeline_id
    return ds.map(lambda x, y: (x[i * per:(i + 1) * per], y[i * per:(i + 1) * per]))


with strategy.scope():
    model, opt = model_and_optimizer()
    opt.build(model.trainable_variables)
data = strategy.distribute_datasets_from_function(dataset) if CLUSTER else dataset()
epochs_run = 0

if SCENARIO == "fit":
    model.compile(optimizer=opt, loss="mse")
    try:
        model.fit(data, epochs=EPOCHS, verbose=0)
    except Exception as e:  # reported, so the test can compare with the inner optimizer alone
        print(json.dumps({"error": type(e).__name__, "message": str(e).strip().splitlines()[0]}))
        sys.exit(0)
    epochs_run = EPOCHS
elif SCENARIO == "loop":
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
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(OUT_DIR, f"worker-{TASK}"), max_to_keep=2)
    checkpoint.restore(manager.latest_checkpoint)  # nothing to restore on a first start
    first_epoch = int(opt.iterations.numpy()) // STEPS
    for epoch in range(first_epoch, EPOCHS):
        epochs_run += 1
        for step, (x, y) in enumerate(data):
            train_step(x, y)
            if KILL_AT == (epoch, step):
                os.kill(os.getpid(), signal.SIGKILL)
        manager.save()  # every worker saves: the save reads the replicated variables
else:
    raise SystemExit(f"unknown scenario {SCENARIO}")

print(json.dumps({
    "task": TASK, "workers": strategy.num_replicas_in_sync, "epochs_run": epochs_run,
    "iterations": int(opt.iterations.numpy()),
    "weights": [v.numpy().tolist() for v in model.trainable_variables],
    "slow": [v.numpy().tolist() for v in getattr(opt, "slow_weights", [])],
}))
