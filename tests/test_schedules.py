"""Schedules for α and k, against the numpy reference extended with schedules."""

import numpy as np
import pytest
import keras
from keras import ops

import keras_lookahead  # noqa: F401  (registers Lookahead for load_model)
from keras_lookahead import Lookahead
from tests import reference
from tests.execution_modes import BACKEND, MODES, make_step
from tests.quadratic import INNERS, THETA0, grad_keras, grad_np

STEPS = 16


def alpha_schedule():
    # α_n = 0.9 · 0.8ⁿ for the n-th sync (n = 0, 1, ...)
    return keras.optimizers.schedules.ExponentialDecay(0.9, decay_steps=1, decay_rate=0.8)


def alpha_np(n):
    return 0.9 * 0.8**n


def k_schedule():
    # k = 2 for the first two syncs, 3 for the third, 4 after: syncs after updates 2, 4, 7, 11, 15
    return keras.optimizers.schedules.PiecewiseConstantDecay([1, 2], [2, 3, 4])


def k_np(n):
    return 2 if n <= 1 else 3 if n == 2 else 4


def run_keras(make_inner, k, alpha, inner_state, mode):
    x = keras.Variable(THETA0.copy())
    opt = Lookahead(make_inner(), sync_period=k, slow_step_size=alpha, inner_state=inner_state)
    opt.build([x])
    step = make_step(opt, [x], lambda: [grad_keras(x)], mode)
    fast, slow, alphas = [], [], []
    for _ in range(STEPS):
        step()
        fast.append(ops.convert_to_numpy(x).copy())
        slow.append(ops.convert_to_numpy(opt.slow_weight(x)).copy())
        alphas.append(float(ops.convert_to_numpy(opt.last_slow_step_size)))
    return np.array(fast), np.array(slow), alphas, opt


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("which", ["alpha", "k", "both"])
@pytest.mark.parametrize("inner_state", ["maintain", "interpolate"])
@pytest.mark.parametrize("inner", sorted(INNERS))
def test_schedules_match_the_reference(inner, inner_state, which, mode):
    make_keras, make_ref = INNERS[inner]
    k, k_ref = (k_schedule(), k_np) if which in ("k", "both") else (3, 3)
    alpha, alpha_ref = (alpha_schedule(), alpha_np) if which in ("alpha", "both") else (0.5, 0.5)
    fast, slow, alphas, opt = run_keras(make_keras, k, alpha, inner_state, mode)
    record = {}
    history = reference.lookahead(make_ref(), THETA0, grad_np, STEPS, k_ref, alpha_ref,
                                  inner_state, record=record)
    np.testing.assert_allclose(fast, [h[0] for h in history], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(slow, [h[1] for h in history], rtol=2e-5, atol=2e-6)
    if which != "k":
        np.testing.assert_allclose(alphas[-1], record["alpha"][-1], rtol=1e-6)
    if which != "alpha":
        # the syncs fall where the schedule puts them: fast == slow right after each
        synced = [t + 1 for t in range(STEPS) if np.array_equal(fast[t], slow[t])]
        assert synced == [2, 4, 7, 11, 15]


def test_schedule_values_are_per_sync_not_per_step():
    # ExponentialDecay with α_0 = 0.5, halving per sync; k = 2, SGD lr 0.5 on ½x²: θ halves per
    # step, so over a cycle θ = φ/4 and φ ← φ(1 − 3α/4): α = 0.5, 0.25, 0.125.
    x = keras.Variable(np.array([1.0], np.float32))
    sched = keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=1, decay_rate=0.5)
    opt = Lookahead(keras.optimizers.SGD(0.5), sync_period=2, slow_step_size=sched)
    for _ in range(6):
        opt.apply([ops.convert_to_tensor(x)], [x])
    expected = (1 - 3 * 0.5 / 4) * (1 - 3 * 0.25 / 4) * (1 - 3 * 0.125 / 4)
    np.testing.assert_allclose(ops.convert_to_numpy(x), [expected], rtol=1e-6)
    assert float(ops.convert_to_numpy(opt.last_slow_step_size)) == pytest.approx(0.125)


def _fit_model(jit):
    keras.utils.set_random_seed(11)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=Lookahead(keras.optimizers.Adam(0.02), sync_period=k_schedule(),
                                      slow_step_size=alpha_schedule(), inner_state="interpolate"),
                  loss="mse", jit_compile=jit)
    return model


@pytest.mark.parametrize("jit", [False, True] if BACKEND != "torch" else [False])
def test_schedules_survive_save_load_and_resume_exactly(tmp_path, jit):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = np.cos(x.sum(axis=1, keepdims=True)).astype("float32")
    fit = dict(batch_size=8, shuffle=False, verbose=0)  # 5 steps per epoch

    reference_model = _fit_model(jit)
    reference_model.fit(x, y, epochs=3, **fit)

    model = _fit_model(jit)
    model.fit(x, y, epochs=2, **fit)  # 10 updates: 2 updates past the sync at 7 (k = 3)
    model.save(str(tmp_path / "m.keras"))
    keras.backend.clear_session()
    loaded = keras.models.load_model(str(tmp_path / "m.keras"))
    opt = loaded.optimizer
    assert isinstance(opt.sync_period, keras.optimizers.schedules.PiecewiseConstantDecay)
    assert isinstance(opt.slow_step_size, keras.optimizers.schedules.ExponentialDecay)
    assert opt.get_config() == model.optimizer.get_config()
    loaded.fit(x, y, epochs=1, **fit)
    for a, b in zip(loaded.trainable_variables + loaded.optimizer.variables,
                    reference_model.trainable_variables + reference_model.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
