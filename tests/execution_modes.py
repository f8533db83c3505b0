"""The backend under test and one optimizer step as a callable, in each execution mode it offers.

- eager: `optimizer.apply` called directly (every backend).
- graph / xla (TensorFlow): the same inside `tf.function`, without or with `jit_compile`.
- jit (JAX): `optimizer.stateless_apply` inside `jax.jit`, the values written back afterwards,
  as Keras's JAX trainer does.
"""

import keras
import pytest

from keras_lookahead import _keras_compat as compat

BACKEND = keras.backend.backend()

tf_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow-only behaviour")

KERAS_VERSION = compat.KERAS_VERSION  # (major, minor)

# Keras 3.10-3.12's Muon cannot take a step on TensorFlow, with or without Lookahead: its
# update_step reads `.path` of the tf.Variable Keras hands it (test_keras_compat.py pins this).
MUON_STEPS = hasattr(keras.optimizers, "Muon") and not (
    BACKEND == "tensorflow" and (3, 10) <= KERAS_VERSION < (3, 13))

# Execution modes of an optimizer step on this backend.
MODES = {
    "tensorflow": ["eager", "graph", "xla"],
    "jax": ["eager", "jit"],
    "torch": ["eager"],
}[BACKEND]


def make_step(opt, variables, grads_fn, mode):
    """`grads_fn()` computes gradients from the current values of `variables`."""
    variables = list(variables)
    if mode == "eager":
        return lambda: opt.apply(grads_fn(), variables)
    if mode in ("graph", "xla"):
        import tensorflow as tf

        return tf.function(lambda: opt.apply(grads_fn(), variables), jit_compile=mode == "xla")
    if mode == "jit":
        import jax

        @jax.jit
        def jitted(opt_values, var_values):
            with keras.StatelessScope(state_mapping=list(zip(variables, var_values))):
                grads = grads_fn()
            return opt.stateless_apply(opt_values, grads, var_values)

        def step():
            new_vars, new_opt = jitted([v.value for v in opt.variables],
                                       [v.value for v in variables])
            for v, value in zip(variables, new_vars):
                v.assign(value)
            for v, value in zip(opt.variables, new_opt):
                v.assign(value)

        return step
    raise ValueError(f"unknown mode {mode!r}")
