"""Runs one tf.distribute scenario in its own process and prints JSON.

usage: [PLAIN=1] python -m tests.workers.strategy DEVICES SCENARIO [STRATEGY]
  scenarios: fit_numpy, fit_dataset, fit_spe (steps_per_execution=2), fit_xla
  (jit_compile=True); loop (strategy.run inside tf.function), loop_xla_step (the replica step,
  optimizer included, jit-compiled), loop_xla_grads (the gradient function jit-compiled, the
  optimizer applied outside XLA)
  STRATEGY: mirrored (default, over DEVICES logical CPUs) or onedevice
  PLAIN=1 trains the inner optimizer alone; MULTI=member or around, with a MultiOptimizer
  (tests/workers/strategy_model.py)

Several MirroredStrategy instances in one process collide on collective instance keys, so the
test runs each scenario here, in a fresh process: the same training on one device without a
strategy and under the strategy, then the largest relative difference of the weights, and
whether every replica holds the same slow weights. A failure under the strategy is reported as
JSON too, so that the test can compare it with the inner optimizer's.
"""

import json
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_lookahead import find_lookaheads  # noqa: E402
from tests.workers.strategy_model import GLOBAL_BATCH as BATCH, X, Y, model_and_optimizer  # noqa: E402

DEVICES, SCENARIO = int(sys.argv[1]), sys.argv[2]
STRATEGY = sys.argv[3] if len(sys.argv) > 3 else "mirrored"
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(DEVICES)])


def make_model():
    model, opt = model_and_optimizer()
    model.compile(optimizer=opt, loss="mse", jit_compile=SCENARIO == "fit_xla",
                  steps_per_execution=2 if SCENARIO == "fit_spe" else 1)
    return model


def train(model, strategy=None):
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(BATCH)
    if SCENARIO in ("fit_numpy", "fit_spe", "fit_xla"):
        model.fit(X, Y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
    elif SCENARIO == "fit_dataset":
        model.fit(ds, epochs=3, verbose=0)
    elif SCENARIO.startswith("loop"):
        opt = model.optimizer
        strategy = strategy or tf.distribute.get_strategy()
        with strategy.scope():
            opt.build(model.trainable_variables)

        def grads_of(x, y):
            with tf.GradientTape() as tape:
                # mean over the global batch, as strategy.run replicas each see a part of it
                loss = tf.reduce_sum(tf.square(model(x) - y)) / BATCH
            return tape.gradient(loss, model.trainable_variables)

        if SCENARIO == "loop_xla_grads":
            grads_of = tf.function(grads_of, jit_compile=True)

        def step(x, y):
            opt.apply(grads_of(x, y), model.trainable_variables)

        if SCENARIO == "loop_xla_step":
            step = tf.function(step, jit_compile=True)

        @tf.function
        def dist_step(x, y):
            strategy.run(step, args=(x, y))

        for _ in range(3):
            for x, y in strategy.experimental_distribute_dataset(ds):
                dist_step(x, y)
    else:
        raise SystemExit(f"unknown scenario {SCENARIO}")


single = make_model()
train(single)
strategy = (tf.distribute.OneDeviceStrategy("/cpu:0") if STRATEGY == "onedevice"
            else tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(DEVICES)]))
with strategy.scope():
    model = make_model()
try:
    train(model, strategy)
except Exception as e:  # reported, so the test can compare with the inner optimizer alone
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    # XLA's cross-device failure names the variable; keep the part that does not
    message = next((line for line in lines if "Trying to access resource" in line), lines[0])
    message = re.sub(r"resource \S+ \(defined @ [^)]*\)", "resource", message)
    print(json.dumps({"error": type(e).__name__, "message": message}))
    sys.exit(0)



def slow_weights(optimizer):
    return [s for la in find_lookaheads(optimizer) for s in la.slow_weights if s is not None]


slow = slow_weights(model.optimizer)
rel = 0.0
for a, b in zip(model.trainable_variables + slow,
                single.trainable_variables + slow_weights(single.optimizer)):
    a, b = a.numpy(), b.numpy()
    rel = max(rel, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)))
replicas_equal = all(
    all(np.array_equal(r.numpy(), s.numpy()) for r in getattr(s.value, "values", ()))
    for s in slow)
print(json.dumps({"max_rel_diff": rel, "replicas_equal": replicas_equal,
                  "iterations": int(model.optimizer.iterations.numpy()),
                  "replicas": strategy.num_replicas_in_sync, "slow_weights": len(slow)}))
