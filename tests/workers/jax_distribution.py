"""Lookahead under keras.distribution on 2 JAX host devices; prints JSON.

usage: python -m tests.workers.jax_distribution DISTRIBUTION [snoo]
  DISTRIBUTION: data (DataParallel over both devices) or model (ModelParallel: a 1 x 2 mesh,
  Dense kernels split by input row, biases replicated); snoo: Lookahead with outer momentum,
  whose buffers are compared and placed like the slow weights

The host device count is an XLA flag read when JAX starts, so this runs in its own process.
It trains the same model from the same data once without a distribution and once under it, and
reports the largest relative difference of weights and slow weights and, for every trainable
variable, whether its slow weight (and cached momentum) has the variable's sharding.
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
# The two devices are host devices: where a GPU is visible JAX would otherwise pick it, one
# device (seen on an H200 machine: DeviceMesh((1, 2)) refused, and a single-device sharding).
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=2")

import jax
import keras
import numpy as np

from tests.workers.strategy_model import GLOBAL_BATCH, X, Y, model_and_optimizer

KIND = sys.argv[1]
SNOO = sys.argv[2:] == ["snoo"]


def train(distribution=None):
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(distribution)
    try:
        model, opt = model_and_optimizer(snoo=SNOO)
        model.compile(optimizer=opt, loss="mse")
        model.fit(X, Y, batch_size=GLOBAL_BATCH, epochs=3, shuffle=False, verbose=0)
    finally:
        keras.distribution.set_distribution(previous)
    return model, opt


devices = jax.devices()
if KIND == "data":
    distribution = keras.distribution.DataParallel(devices=devices)
else:
    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices)
    layouts = keras.distribution.LayoutMap(mesh)
    # both kernels of strategy_model's layers, split by input row
    layouts[".*(first|last).*kernel"] = ("model", None)
    distribution = keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch")

single_model, single_opt = train()
model, opt = train(distribution)



def buffers(optimizer):
    return [v for v in optimizer.variables if "slow_momentum" in v.path]


rel = 0.0
pairs = zip(model.trainable_variables + opt.slow_weights + buffers(opt),
            single_model.trainable_variables + single_opt.slow_weights + buffers(single_opt))
for a, b in pairs:
    a, b = np.asarray(a.value), np.asarray(b.value)
    rel = max(rel, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)))

placement = []
for i, (v, slow, cached) in enumerate(zip(model.trainable_variables, opt.slow_weights,
                                          opt._cached_moments)):
    buffer = buffers(opt)[i] if SNOO else slow
    placement.append({
        "variable": v.path, "spec": str(v.value.sharding.spec),
        "slow_spec": str(slow.value.sharding.spec),
        "devices": len(v.value.sharding.device_set),
        "slow_same": slow.value.sharding.is_equivalent_to(v.value.sharding, v.value.ndim),
        "cached_same": cached.value.sharding.is_equivalent_to(v.value.sharding, v.value.ndim),
        "buffer_same": buffer.value.sharding.is_equivalent_to(v.value.sharding, v.value.ndim),
    })
print(json.dumps({"devices": len(devices), "max_rel_diff": rel, "buffers": len(buffers(opt)),
                  "iterations": int(opt.iterations.value), "placement": placement}))
