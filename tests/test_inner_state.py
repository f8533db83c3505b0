"""The inner-state policies (paper, App. C.5) on every registered inner optimizer, and the
registry of first moments (keras_lookahead/inner_state.py).

Which slot holds which moment is pinned against each optimizer's update rule in
test_keras_compat.py; here, what "reset" and "interpolate" do to those slots, against the inner
optimizer run alone.
"""

import numpy as np
import pytest
import keras
from keras import ops

import keras_lookahead
from keras_lookahead import Lookahead
from keras_lookahead import _keras_compat as compat
from tests.execution_modes import BACKEND, MUON_STEPS, make_step


WITH_MOMENTUM = {
    "SGD(momentum)": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    "SGD(nesterov)": lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    "Adam": lambda: keras.optimizers.Adam(0.1),
    "Adam(amsgrad)": lambda: keras.optimizers.Adam(0.1, amsgrad=True),
    "AdamW": lambda: keras.optimizers.AdamW(0.1),
    "Adamax": lambda: keras.optimizers.Adamax(0.1),
    "Nadam": lambda: keras.optimizers.Nadam(0.1),
    "Lamb": lambda: keras.optimizers.Lamb(0.1),
    "Lion": lambda: keras.optimizers.Lion(0.1),
    "RMSprop(momentum)": lambda: keras.optimizers.RMSprop(0.1, momentum=0.9),
    "RMSprop(centered)": lambda: keras.optimizers.RMSprop(0.1, momentum=0.5, centered=True),
    "LossScaleOptimizer(Adam)": lambda: keras.optimizers.LossScaleOptimizer(
        keras.optimizers.Adam(0.1)),
}
if MUON_STEPS:
    WITH_MOMENTUM["Muon"] = lambda: keras.optimizers.Muon(0.1)

WITHOUT_MOMENTUM = {
    "SGD": lambda: keras.optimizers.SGD(0.1),
    "RMSprop": lambda: keras.optimizers.RMSprop(0.1),
    "Adagrad": lambda: keras.optimizers.Adagrad(0.1),
    "Adadelta": lambda: keras.optimizers.Adadelta(0.1),
    "Ftrl": lambda: keras.optimizers.Ftrl(0.1),
    "Adafactor": lambda: keras.optimizers.Adafactor(0.1),
}

def _grads(step):
    # Fixed gradients (not weight-dependent): second moments evolve the same with or without
    # Lookahead, so they can be compared with the inner optimizer run alone.
    rng = np.random.default_rng(step)
    return [ops.convert_to_tensor(rng.normal(size=(4, 3)).astype("float32"))]


def _run(opt, steps):
    x = keras.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), name="w")
    opt.build([x])
    # On JAX through stateless_apply under jit, as Keras's JAX trainer does (Keras's own
    # LossScaleOptimizer cannot apply eagerly there).
    counter = iter(range(steps))
    step = make_step(opt, [x], lambda: _grads(next(counter)),
                     "jit" if BACKEND == "jax" else "eager")
    for _ in range(steps):
        step()
    return {v.name: ops.convert_to_numpy(v) for v in opt.variables}


def _momentum_names(state):
    return [n for n in state if n.endswith("_momentum")]


@pytest.mark.parametrize("name", sorted(WITH_MOMENTUM))
def test_reset_zeroes_first_moments_and_keeps_second_moments(name):
    k = 3
    state = _run(Lookahead(WITH_MOMENTUM[name](), sync_period=k, inner_state="reset"), k)
    alone = _run(WITH_MOMENTUM[name](), k)
    momenta = _momentum_names(state)
    assert momenta, f"no momentum slot found for {name}: {sorted(state)}"
    for n in momenta:
        np.testing.assert_array_equal(state[n], 0.0)
        assert np.any(alone[n] != 0)
    for n, value in alone.items():
        if n in momenta or n.endswith("_slow") or n in ("iteration", "learning_rate"):
            continue
        if "velocity" in n or "norm" in n or "average_gradient" in n:
            np.testing.assert_allclose(state[n], value, rtol=1e-6, err_msg=n)


@pytest.mark.parametrize("name", sorted(WITH_MOMENTUM))
def test_interpolate_mixes_with_the_momentum_cached_at_the_previous_sync(name):
    # The first sync exactly: with m_a the momentum just before it (from a 'maintain' run that
    # stops there) and m_prev = 0, m1 = α m_a, and the cached copy equals m1. After a second sync
    # the cached copy still equals the momentum and the momentum has moved on from m1. (The
    # second sync's value, α m_b + (1 − α) m1, is checked against the numpy reference of
    # Algorithm 1 in test_reference.py.)
    alpha, k = 0.5, 2
    la = lambda policy: Lookahead(WITH_MOMENTUM[name](), sync_period=k,  # noqa: E731
                                  slow_step_size=alpha, inner_state=policy)
    interp = _run(la("interpolate"), 2 * k)
    momenta = _momentum_names(interp)
    assert momenta
    first_sync = _run(la("maintain"), k)
    for n in momenta:
        m1 = alpha * first_sync[n]
        np.testing.assert_allclose(interp[n + "_cached"], interp[n], rtol=0, atol=0)
        assert not np.allclose(interp[n], m1)
    one = _run(la("interpolate"), k)
    for n in momenta:
        np.testing.assert_allclose(one[n], alpha * first_sync[n], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(one[n + "_cached"], alpha * first_sync[n], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(WITHOUT_MOMENTUM))
@pytest.mark.parametrize("policy", ["reset", "interpolate"])
def test_policy_needing_momentum_refused_at_construction(name, policy):
    with pytest.raises(ValueError) as e:
        Lookahead(WITHOUT_MOMENTUM[name](), inner_state=policy)
    assert f"inner_state='{policy}'" in str(e.value) and "keeps none" in str(e.value)


@pytest.mark.parametrize("name", sorted(WITHOUT_MOMENTUM))
def test_maintain_works_without_momentum(name):
    state = _run(Lookahead(WITHOUT_MOMENTUM[name](), sync_period=2), 4)
    assert "w_slow" in state


def test_register_first_moments_for_a_custom_optimizer():
    class HeavyBall(keras.optimizers.Optimizer):
        def build(self, var_list):
            super().build(var_list)
            self.velocities = [self.add_variable_from_reference(v, "velocity") for v in var_list]

        def update_step(self, g, v, lr):
            m = self.velocities[compat.variable_index(self, v)]
            m.assign(0.9 * m - lr * g)
            v.assign_add(m)

    with pytest.raises(ValueError, match="keeps none"):
        Lookahead(HeavyBall(0.1), inner_state="reset")
    keras_lookahead.register_first_moments(HeavyBall, "velocities")
    opt = Lookahead(HeavyBall(0.1), sync_period=2, inner_state="reset")
    state = _run(opt, 2)
    np.testing.assert_array_equal(state["w_velocity"], 0.0)
    with pytest.raises(ValueError, match="subclass of keras.optimizers.Optimizer"):
        keras_lookahead.register_first_moments(dict, "x")
