"""Every private Keras/TF/JAX/torch name the package touches (keras_lookahead/_keras_compat.py),
pinned: each test fails if the installed framework renames the name or changes what it holds.

The expectations are the frameworks' documented update rules, not our code's output.
"""

import types

import numpy as np
import pytest
import keras
from keras import ops

from keras_lookahead import Lookahead
from keras_lookahead import _keras_compat as compat
from tests.execution_modes import BACKEND, MUON_STEPS, tf_only

G = np.arange(1, 13, dtype=np.float32).reshape(4, 3) / 10.0  # one fixed gradient


def _one_step(opt):
    x = keras.Variable(np.ones((4, 3), np.float32), name="w")
    y = keras.Variable(np.zeros((3,), np.float32), name="b")
    opt.build([x, y])
    opt.apply([ops.convert_to_tensor(G), ops.convert_to_tensor(G[0])], [x, y])
    return opt, x, y


# -- the base optimizer's bookkeeping -------------------------------------------------------------

def test_built_variables_and_their_index():
    opt, x, y = _one_step(keras.optimizers.Adam())
    built = compat.built_variables(opt)
    assert len(built) == 2 and built[0] is x and built[1] is y
    assert compat.variable_index(opt, x) == 0 and compat.variable_index(opt, y) == 1
    assert compat.variable_index(opt, keras.Variable(np.ones(2))) is None


def test_own_variables_and_base_counters():
    opt, x, _ = _one_step(keras.optimizers.Adam(0.25))
    own = compat.own_variables(opt)
    iterations, learning_rate = compat.base_counters(opt)
    assert any(v is iterations for v in own) and any(v is learning_rate for v in own)
    assert int(ops.convert_to_numpy(iterations)) == 1
    assert float(ops.convert_to_numpy(learning_rate)) == 0.25
    # Everything the optimizer made is there: 2 moments for each of 2 variables, and the two.
    assert len(own) == 2 + 4


def test_apply_calls_count_gradient_accumulation_micro_steps():
    opt = keras.optimizers.SGD(0.1, gradient_accumulation_steps=2)
    x = keras.Variable(np.ones((4, 3), np.float32))
    opt.build([x])
    for _ in range(5):
        opt.apply([ops.convert_to_tensor(G)], [x])
    assert int(ops.convert_to_numpy(compat.apply_calls(opt))) == 5
    assert int(ops.convert_to_numpy(opt.iterations)) == 2
    plain = keras.optimizers.SGD(0.1)
    assert compat.apply_calls(plain) is plain.iterations


def test_current_learning_rate_is_the_schedules_value_and_lookahead_proxies_it():
    schedule = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=1, decay_rate=0.5)
    opt, _, _ = _one_step(keras.optimizers.SGD(schedule))
    assert float(ops.convert_to_numpy(compat.current_learning_rate(opt))) == 0.5  # 1 step
    la = Lookahead(keras.optimizers.SGD(schedule))
    _one_step(la)
    # Keras's callbacks and logs call the private method on the wrapper.
    assert float(ops.convert_to_numpy(la._get_current_learning_rate())) == 0.5


def test_a_missing_name_raises_naming_the_keras_version():
    with pytest.raises(compat.KerasInternalsChanged, match=f"keras {keras.__version__}"):
        compat.built_variables(types.SimpleNamespace())
    with pytest.raises(compat.KerasInternalsChanged, match="_trainable_variables_indices"):
        compat.variable_index(types.SimpleNamespace(), None)


# -- the inner optimizers' slots ------------------------------------------------------------------

def _first_moment_after_one_step(cls, opt):
    """m after one step from zero, by each optimizer's documented rule, for gradient G and
    learning rate 0.1."""
    name = cls.__name__
    if name == "SGD":
        return -0.1 * G  # m ← β m − lr g
    if name in ("Adam", "Nadam", "Lamb", "Adamax"):
        return (1 - opt.beta_1) * G
    if name == "Lion":
        return (1 - opt.beta_2) * G
    if name == "RMSprop":
        return 0.1 * G / np.sqrt((1 - opt.rho) * G**2 + opt.epsilon)
    if name == "Muon":
        return G  # m ← m + g − (1 − momentum) m, from zero
    raise AssertionError(f"no expectation for {name}")


FIRST = {cls.__name__: (cls, attribute) for cls, attribute, _ in compat.keras_first_moments()}
SECOND = {cls.__name__: (cls, attribute, rate) for cls, attribute, rate in
          compat.keras_second_moments()}


def _make(cls):
    if cls in (keras.optimizers.SGD, keras.optimizers.RMSprop):
        return cls(0.1, momentum=0.9)  # with momentum: without, they keep none
    return cls(0.1)


@pytest.mark.parametrize("name", sorted(FIRST))
def test_first_moment_slots_hold_each_variables_first_moment(name):
    if name == "Muon" and not MUON_STEPS:
        pytest.skip("this Keras's Muon cannot step on TensorFlow (pinned below)")
    cls, attribute = FIRST[name]
    opt, x, _ = _one_step(_make(cls))
    slots = compat.slots(opt, attribute)
    assert len(slots) == 2 and slots[0] is not None
    assert tuple(slots[0].shape) == (4, 3)
    expected = _first_moment_after_one_step(cls, opt)
    np.testing.assert_allclose(ops.convert_to_numpy(slots[0]), expected, rtol=1e-5, atol=1e-7)
    assert any(v is slots[0] for v in opt.variables)


@pytest.mark.skipif(MUON_STEPS or not hasattr(keras.optimizers, "Muon"),
                    reason="this Keras's Muon steps on this backend")
def test_muon_of_keras_3_10_to_3_12_cannot_step_on_tensorflow_by_itself():
    # So Lookahead(Muon) cannot either; its slots (a dict by path, `adam_momentums`) are checked
    # on JAX for these versions.
    with pytest.raises(AttributeError, match="path"):
        _one_step(keras.optimizers.Muon(0.1))


def test_the_registry_covers_keras_optimizers_with_momentum():
    names = set(FIRST)
    assert {"SGD", "RMSprop", "Adam", "Nadam", "Lamb", "Lion", "Adamax"} <= names
    assert ("Muon" in names) == hasattr(keras.optimizers, "Muon")


@pytest.mark.parametrize("name", sorted(SECOND))
def test_second_moment_slots_hold_the_average_of_squared_gradients(name):
    cls, attribute, rate = SECOND[name]
    opt, _, _ = _one_step(cls(0.1))
    slots = compat.slots(opt, attribute)
    assert len(slots) == 2
    expected = (1 - getattr(opt, rate)) * G**2
    np.testing.assert_allclose(ops.convert_to_numpy(slots[0]), expected, rtol=1e-5, atol=1e-8)


def test_a_slot_attribute_the_optimizer_lacks_is_a_clear_error():
    opt, _, _ = _one_step(keras.optimizers.Adam())
    with pytest.raises(ValueError, match="has no attribute '_nope' after build"):
        compat.slots(opt, "_nope")


# -- wrappers -------------------------------------------------------------------------------------

def test_wrapper_chain_follows_inner_optimizer():
    adam = keras.optimizers.Adam()
    lso = keras.optimizers.LossScaleOptimizer(adam)
    la = Lookahead(lso)
    assert compat.wrapper_chain(la) == [la, lso, adam]
    assert compat.innermost(la) is adam and compat.is_wrapper(lso)
    assert compat.wrapper_chain(adam) == [adam] and not compat.is_wrapper(adam)
    assert compat.wrapper_chain(None) == []


@pytest.mark.skipif(BACKEND == "jax", reason="LossScaleOptimizer applies only statelessly on "
                    "JAX; test_training.py counts its updates through Lookahead there")
def test_applied_updates_of_a_wrapper_are_its_inner_optimizers():
    lso = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    x = keras.Variable(np.ones((4, 3), np.float32))
    lso.build([x])
    lso.apply([ops.convert_to_tensor(G)], [x])
    lso.apply([ops.convert_to_tensor(np.full((4, 3), np.inf, np.float32))], [x])  # skipped
    assert int(ops.convert_to_numpy(compat.applied_updates(lso))) == 1


# -- frameworks -----------------------------------------------------------------------------------

@tf_only
def test_tf_xla_context_is_seen_only_inside_jit_compiled_functions():
    import tensorflow as tf

    seen = {}

    def probe(key):
        seen[key] = compat.tf_in_xla_context()
        return tf.constant(0)

    tf.function(lambda: probe("xla"), jit_compile=True)()
    tf.function(lambda: probe("graph"))()
    probe("eager")
    assert seen == {"xla": True, "graph": False, "eager": False}


@pytest.mark.skipif(BACKEND != "jax", reason="JAX-only behaviour")
def test_jax_tracers_are_recognised():
    import jax
    import jax.numpy as jnp

    seen = []
    jax.jit(lambda v: seen.append(compat.jax_is_traced(v)) or v)(jnp.ones(2))
    assert seen == [True] and not compat.jax_is_traced(jnp.ones(2))


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch-only behaviour")
def test_torch_foreach_ops_compute_in_place():
    import torch

    op = compat.torch_foreach()
    assert set(op) == {"lerp_", "mul_", "add_", "copy_", "zero_", "sub"}
    a, b = [torch.tensor([1.0, 2.0])], [torch.tensor([5.0, -2.0])]
    d = op["sub"](a, b)  # new tensors, the inputs left alone (the outer momentum's φ − θ)
    np.testing.assert_allclose(d[0].numpy(), [-4.0, 4.0])
    np.testing.assert_allclose(a[0].numpy(), [1.0, 2.0])
    op["lerp_"](a, b, 0.25)
    np.testing.assert_allclose(a[0].numpy(), [2.0, 1.0])
    op["mul_"](a, 3.0)
    np.testing.assert_allclose(a[0].numpy(), [6.0, 3.0])
    op["add_"](a, b, alpha=0.5)
    np.testing.assert_allclose(a[0].numpy(), [8.5, 2.0])
    op["copy_"](b, a)
    np.testing.assert_allclose(b[0].numpy(), [8.5, 2.0])
    op["zero_"](a)
    np.testing.assert_array_equal(a[0].numpy(), [0.0, 0.0])
    # why lerp_ is used only for weights below 0.5: beyond, an infinite end gives NaN
    c = [torch.tensor([0.0])]
    op["lerp_"](c, [torch.tensor([float("inf")])], 0.75)
    assert torch.isnan(c[0]).all()


# -- an optimizer variable in another dtype (Lookahead's slow_dtype) ------------------------------

def test_add_variable_like_is_add_variable_from_reference_in_another_dtype():
    ref = keras.Variable(np.ones((4, 3)), dtype="bfloat16", name="kernel")
    opt = keras.optimizers.SGD()
    keras_made = opt.add_variable_from_reference(ref, name="slow")
    ours = compat.add_variable_like(opt, ref, "slow", "float32", initializer="ones")
    assert keras.backend.standardize_dtype(keras_made.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(ours.dtype) == "float32"
    assert ours.name == keras_made.name and tuple(ours.shape) == tuple(keras_made.shape)
    assert any(v is ours for v in opt.variables)  # tracked as the optimizer's own
    np.testing.assert_array_equal(ops.convert_to_numpy(ours), np.ones((4, 3)))
    if compat.KERAS_VERSION >= (3, 10):  # add_variable takes the layout from 3.10 on
        assert getattr(ours, "_layout", None) is getattr(ref, "_layout", None)


@tf_only
def test_add_variable_like_colocates_under_a_tf_strategy():
    import tensorflow as tf

    # the strategy the TF optimizer captured at construction: what its own slots colocate with
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        ref = keras.Variable(np.ones(3), dtype="bfloat16", name="w")
        opt = keras.optimizers.SGD()
        assert opt._distribution_strategy is strategy
        ours = compat.add_variable_like(opt, ref, "slow", "float32")
    assert ours.value.device == ref.value.device


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch-only behaviour")
def test_torch_foreach_copy_converts_dtypes():
    # the sync of a bfloat16 variable with float32 slow weights copies across dtypes
    import torch

    op = compat.torch_foreach()
    a = [torch.zeros(2, dtype=torch.bfloat16)]
    op["copy_"](a, [torch.tensor([1 - 2.0 ** -9, 1 - 3 * 2.0 ** -10])])  # float32 values
    assert a[0].dtype == torch.bfloat16
    np.testing.assert_array_equal(a[0].float().numpy(), [1.0, 1 - 2.0 ** -8])  # rounded


def test_multi_optimizer_exists_from_keras_3_15_only():
    # docs/options.md says per-group Lookahead needs Keras 3.15; the seam loop in .ci/run runs
    # this on every minor version from 3.8.
    assert hasattr(keras.optimizers, "MultiOptimizer") == (compat.KERAS_VERSION >= (3, 15))
    assert compat.multi_members(keras.optimizers.Adam()) is None
    assert compat.multi_members(Lookahead(keras.optimizers.Adam())) is None


@pytest.mark.skipif(not hasattr(keras.optimizers, "MultiOptimizer"),
                    reason="keras.optimizers.MultiOptimizer appeared in Keras 3.15")
def test_multi_optimizer_members_and_who_updates_each_variable():
    adam, sgd = keras.optimizers.Adam(), keras.optimizers.SGD()
    multi = keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(sgd, {"enc/.*": adam}))
    assert compat.multi_members(multi) == [adam, sgd]  # the map's values, then the default
    with keras.name_scope("enc"):
        enc = keras.Variable(np.zeros(2), name="w")
    head = keras.Variable(np.zeros(3), name="head")
    multi.build([head, enc])
    assert compat.member_of(multi, enc) == (adam, 0)
    assert compat.member_of(multi, head) == (sgd, 0)
    slots = compat.per_member(multi, lambda m: compat.slots(m, "momentums" if m is sgd
                                                            else "_momentums"))
    assert slots[0] is None  # SGD without momentum keeps no slot
    assert slots[1] is adam._momentums[0]
    with pytest.raises(ValueError, match="no member"):
        compat.member_of(multi, keras.Variable(np.zeros(1), name="other"))
