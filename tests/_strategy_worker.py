"""Runs one MirroredStrategy scenario in its own process and prints JSON.

usage: [PLAIN=1] python -m tests._strategy_worker DEVICES SCENARIO
  scenarios: fit_numpy, fit_dataset, fit_spe (steps_per_execution=2), custom_loop (strategy.run
  inside tf.function); PLAIN=1 trains the inner optimizer alone

Several MirroredStrategy instances in one process collide on collective instance keys, so the
test runs each scenario here, in a fresh process: the same training on one device and under the
strategy, then the largest relative difference of the weights, and whether every replica holds
the same slow weights.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tests._strategy_model import GLOBAL_BATCH as BATCH, X, Y, model_and_optimizer  # noqa: E402

DEVICES, SCENARIO = int(sys.argv[1]), sys.argv[2]
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(DEVICES)])


def make_model():
    model, opt = model_and_optimizer()
    model.compile(optimizer=opt, loss="mse",
                  steps_per_execution=2 if SCENARIO == "fit_spe" else 1)
    return model


def train(model, strategy=None):
    if SCENARIO in ("fit_numpy", "fit_spe"):
        model.fit(X, Y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
    elif SCENARIO == "fit_dataset":
        ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(BATCH)
        model.fit(ds, epochs=3, verbose=0)
    elif SCENARIO == "custom_loop":
        ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(BATCH)
        opt = model.optimizer
        with (strategy or tf.distribute.get_strategy()).scope():
            opt.build(model.trainable_variables)

        def step(x, y):
            with tf.GradientTape() as tape:
                # mean over the global batch, as strategy.run replicas each see a part of it
                loss = tf.reduce_sum(tf.square(model(x) - y)) / BATCH
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply(grads, model.trainable_variables)

        if strategy is None:
            fn = tf.function(step)
            for _ in range(3):
                for x, y in ds:
                    fn(x, y)
        else:
            dist = strategy.experimental_distribute_dataset(ds)

            @tf.function
            def dist_step(x, y):
                strategy.run(step, args=(x, y))

            for _ in range(3):
                for x, y in dist:
                    dist_step(x, y)
    else:
        raise SystemExit(f"unknown scenario {SCENARIO}")


single = make_model()
train(single)
strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(DEVICES)])
with strategy.scope():
    model = make_model()
try:
    train(model, strategy)
except Exception as e:  # reported, so the test can compare with the inner optimizer alone
    print(json.dumps({"error": type(e).__name__, "message": str(e).strip().splitlines()[0]}))
    sys.exit(0)

slow = getattr(model.optimizer, "slow_weights", [])
rel = 0.0
for a, b in zip(model.trainable_variables + slow,
                single.trainable_variables + getattr(single.optimizer, "slow_weights", [])):
    a, b = a.numpy(), b.numpy()
    rel = max(rel, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)))
replicas_equal = all(
    all(np.array_equal(v.values[0].numpy(), r.numpy()) for r in v.values)
    for v in (s.value for s in slow))
print(json.dumps({"max_rel_diff": rel, "replicas_equal": replicas_equal,
                  "iterations": int(model.optimizer.iterations.numpy()),
                  "replicas": strategy.num_replicas_in_sync}))
