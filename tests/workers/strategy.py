"""Runs tf.distribute scenarios in one process over DEVICES logical CPUs and prints one JSON line
per run.

usage: python -m tests.workers.strategy DEVICES RUN [RUN ...]
  RUN is SCENARIO[:STRATEGY][:plain|:member|:around][:snoo]
  scenarios: fit_numpy, fit_dataset, fit_spe (steps_per_execution=2), fit_xla
  (jit_compile=True); loop (strategy.run inside tf.function), loop_xla_step (the replica step,
  optimizer included, jit-compiled), loop_xla_grads (the gradient function jit-compiled, the
  optimizer applied outside XLA)
  STRATEGY: mirrored (default, over the DEVICES logical CPUs) or onedevice
  plain trains the inner optimizer alone; member or around, with a MultiOptimizer
  (tests/workers/strategy_model.py); snoo, Lookahead with outer momentum (its buffers are
  compared too)

Each run trains the same model on one device without a strategy and under the strategy, then
prints the largest relative difference of the weights, and whether every replica holds the same
slow weights; a failure under the strategy is printed as JSON too, so that the test can compare
it with the inner optimizer's. Logical devices are fixed at the process's start, so a process
serves one device count. Several MirroredStrategy instances in one process collide on
collective instance keys: every run of a process shares one instance of each strategy (runs
that are expected to fail go last).
"""

import json
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from keras_lookahead import find_lookaheads
from tests.workers.strategy_model import GLOBAL_BATCH as BATCH, X, Y, model_and_optimizer

DEVICES = int(sys.argv[1])
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(DEVICES)])

_strategies = {}


def strategy_named(name):
    if name not in _strategies:
        _strategies[name] = (tf.distribute.OneDeviceStrategy("/cpu:0") if name == "onedevice"
                             else tf.distribute.MirroredStrategy(
                                 [f"/cpu:{i}" for i in range(DEVICES)]))
    return _strategies[name]


def make_model(scenario, plain, multi, snoo=False):
    model, opt = model_and_optimizer(plain=plain, multi=multi, snoo=snoo)
    model.compile(optimizer=opt, loss="mse", jit_compile=scenario == "fit_xla",
                  steps_per_execution=2 if scenario == "fit_spe" else 1)
    return model


def train(model, scenario, strategy=None):
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(BATCH)
    if scenario in ("fit_numpy", "fit_spe", "fit_xla"):
        model.fit(X, Y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
    elif scenario == "fit_dataset":
        model.fit(ds, epochs=3, verbose=0)
    elif scenario.startswith("loop"):
        opt = model.optimizer
        strategy = strategy or tf.distribute.get_strategy()
        with strategy.scope():
            opt.build(model.trainable_variables)

        def grads_of(x, y):
            with tf.GradientTape() as tape:
                # mean over the global batch, as strategy.run replicas each see a part of it
                loss = tf.reduce_sum(tf.square(model(x) - y)) / BATCH
            return tape.gradient(loss, model.trainable_variables)

        if scenario == "loop_xla_grads":
            grads_of = tf.function(grads_of, jit_compile=True)

        def step(x, y):
            opt.apply(grads_of(x, y), model.trainable_variables)

        if scenario == "loop_xla_step":
            step = tf.function(step, jit_compile=True)

        @tf.function
        def dist_step(x, y):
            strategy.run(step, args=(x, y))

        for _ in range(3):
            for x, y in strategy.experimental_distribute_dataset(ds):
                dist_step(x, y)
    else:
        raise SystemExit(f"unknown scenario {scenario}")


def slow_weights(optimizer):
    """The slow weights of every Lookahead in `optimizer`, then their outer-momentum buffers."""
    las = find_lookaheads(optimizer)
    return ([s for la in las for s in la.slow_weights if s is not None]
            + [v for la in las for v in la.variables if "slow_momentum" in v.path])


def run(spec):
    scenario, *options = spec.split(":")
    name = next((o for o in options if o in ("mirrored", "onedevice")), "mirrored")
    plain = "plain" in options
    multi = next((o for o in options if o in ("member", "around")), "")
    snoo = "snoo" in options
    single = make_model(scenario, plain, multi, snoo)
    train(single, scenario)
    strategy = strategy_named(name)
    with strategy.scope():
        model = make_model(scenario, plain, multi, snoo)
    try:
        train(model, scenario, strategy)
    except Exception as e:  # reported, so the test can compare with the inner optimizer alone
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        # XLA's cross-device failure names the variable; keep the part that does not
        message = next((line for line in lines if "Trying to access resource" in line),
                       lines[0])
        message = re.sub(r"resource \S+ \(defined @ [^)]*\)", "resource", message)
        return {"error": type(e).__name__, "message": message}
    slow = slow_weights(model.optimizer)
    rel = 0.0
    for a, b in zip(model.trainable_variables + slow,
                    single.trainable_variables + slow_weights(single.optimizer)):
        a, b = a.numpy(), b.numpy()
        rel = max(rel, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)))
    replicas_equal = all(
        all(np.array_equal(r.numpy(), s.numpy()) for r in getattr(s.value, "values", ()))
        for s in slow)
    return {"max_rel_diff": rel, "replicas_equal": replicas_equal,
            "iterations": int(model.optimizer.iterations.numpy()),
            "replicas": strategy.num_replicas_in_sync, "slow_weights": len(slow)}


for spec in sys.argv[2:]:
    print(json.dumps({"run": spec, **run(spec)}), flush=True)
