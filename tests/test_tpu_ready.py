"""What a TPU needs of the train step, checked on the compiled program here (no TPU in CI).

A TPU runs the whole step as one XLA program: no host round-trips, no Python branching on tensor
values (it would retrace or fail), static shapes. The step here is a model's forward and backward
pass plus Lookahead's update, compiled with tf.function(jit_compile=True); its HLO is inspected
with experimental_get_compiler_ir. Multi-device forms are in test_distributed.py.
"""

import re

import keras
import numpy as np
import pytest

from keras_lookahead import Lookahead
from tests.execution_modes import tf_only

pytestmark = tf_only

K = 3
CONFIGS = {
    "constant": dict(sync_period=K, slow_step_size=0.5),
    "interpolate": dict(sync_period=K, inner_state="interpolate"),
    "reset": dict(sync_period=K, inner_state="reset"),
    "k_schedule": dict(sync_period=keras.optimizers.schedules.PiecewiseConstantDecay(
        [1], [2, 4])),  # k = 2, then 4
    "alpha_schedule": dict(sync_period=K, slow_step_size=keras.optimizers.schedules.
                           ExponentialDecay(0.8, decay_steps=2, decay_rate=0.7)),
    "adaptive": dict(sync_period=K, slow_step_size="adaptive", min_slow_step_size=0.3),
}
# HLO instructions that move data between the device and the host during the step
HOST_OPS = ("send", "recv", "send-done", "recv-done", "infeed", "outfeed", "custom-call")


def _model_and_step(config):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu"),
                              keras.layers.Dense(1)])
    opt = Lookahead(keras.optimizers.Adam(0.01), **CONFIGS[config])
    opt.build(model.trainable_variables)
    loss_fn = keras.losses.MeanSquaredError()

    @tf.function(jit_compile=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x))
        opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    return model, opt, step


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_the_whole_step_is_one_static_device_program(config):
    model, opt, step = _model_and_step(config)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 6)).astype("float32")
    y = rng.normal(size=(8, 1)).astype("float32")

    hlo = step.experimental_get_compiler_ir(x, y)(stage="hlo")
    opcodes = set(re.findall(r" ([a-z][a-z0-9-]*)\(", hlo))
    assert {"dot", "select", "parameter"} <= opcodes, sorted(opcodes)  # the pattern reads HLO
    assert not opcodes & set(HOST_OPS), opcodes & set(HOST_OPS)
    # every shape static: no dynamic ("<=") or unknown ("?") dimensions
    shapes = re.findall(r"\b(?:f32|f64|s32|s64|pred|u32|u8)\[([^\]]*)\]", hlo)
    assert shapes and not [s for s in shapes if "<=" in s or "?" in s]

    slow_before = [w.numpy() for w in opt.slow_weights]
    for _ in range(12):  # covers several syncs (and several k when k is scheduled)
        step(x, y)
    # one trace serves steps with and without a sync: no Python branching on tensor values
    assert step.experimental_get_tracing_count() == 1
    assert int(opt.iterations.numpy()) == 12
    assert int(opt.slow_weights_in_model()) == 0
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(slow_before, opt.slow_weights))


def test_fit_with_xla_and_steps_per_execution_equals_one_step_per_call():
    # TPUs run several steps per host call; k = 3 does not divide steps_per_execution = 4, so
    # syncs fall inside the compiled loop at varying positions
    rng = np.random.default_rng(2)
    x = rng.normal(size=(96, 6)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(6, 1))).astype("float32")
    weights = []
    for jit, spe in ((False, 1), (True, 4)):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"),
                                  keras.layers.Dense(1)])
        opt = Lookahead(keras.optimizers.SGD(0.1, momentum=0.9), sync_period=K,
                        inner_state="interpolate")
        model.compile(optimizer=opt, loss="mse", jit_compile=jit, steps_per_execution=spe)
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        assert int(opt.iterations.numpy()) == 24
        weights.append([v.numpy() for v in model.trainable_variables + opt.slow_weights])
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
