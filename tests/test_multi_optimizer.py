"""Lookahead and Keras's MultiOptimizer (Keras 3.15 on), both ways round.

- Lookahead as a member: `MultiOptimizer(OptimizerMap(SGD(), {"enc/.*": Lookahead(Adam())}))`
  runs Lookahead on one group of variables with its own k and α; every group must follow its own
  numpy reference (tests/reference.py) exactly as if it were trained alone.
- Lookahead around a MultiOptimizer: one k for all groups, each group's inner optimizer its own;
  the reference is Algorithm 1 around `reference.Groups`, with the momentum policies acting on
  each member's moments and the adaptive α (one scalar per sync) using each member's curvature.

The problem is tests/quadratic.py's, one copy per group: the groups' gradients are independent.
"""

import warnings

import numpy as np
import pytest

import keras
from keras import ops

from keras_lookahead import (
    Lookahead,
    SwapSlowWeights,
    find_lookahead,
    find_lookaheads,
    use_slow_weights,
)
from tests import reference
from tests.execution_modes import BACKEND, MODES, make_step
from tests.quadratic import THETA0, grad_keras, grad_np

pytestmark = pytest.mark.skipif(
    not hasattr(keras.optimizers, "MultiOptimizer"),
    reason="keras.optimizers.MultiOptimizer appeared in Keras 3.15")

STEPS = 8
NEVER = 10**6  # a k no test reaches: the reference's plain inner optimizer


def _multi(default, mapping, **kwargs):
    return keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(default, mapping), **kwargs)


def _variables(*groups):
    """One copy of THETA0 per group, at path "<group>/w"."""
    variables = []
    for group in groups:
        with keras.name_scope(group):
            variables.append(keras.Variable(THETA0, name="w"))
    assert [v.path for v in variables] == [f"{g}/w" for g in groups]
    return variables


def _run(opt, variables, mode, steps=STEPS, scale=1.0):
    """`steps` steps on the quadratic; `scale` multiplies the gradients, as a scaled loss does."""
    opt.build(variables)
    step = make_step(opt, variables, lambda: [ops.multiply(grad_keras(v), scale)
                                              for v in variables], mode)
    for _ in range(steps):
        step()


def _np(x):
    return ops.convert_to_numpy(x)


def _assert_close(got, expected):
    np.testing.assert_allclose(_np(got), expected, rtol=2e-5, atol=2e-6)


# -- Lookahead as a member: its own k, α and policy for its group -----------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inner_state", ["maintain", "reset", "interpolate"])
def test_lookahead_members_follow_their_own_reference(mode, inner_state):
    enc_la = Lookahead(keras.optimizers.Adam(0.01), sync_period=3, slow_step_size=0.5,
                       inner_state=inner_state)
    dec_la = Lookahead(keras.optimizers.SGD(0.05, momentum=0.9), sync_period=2,
                       slow_step_size=0.8)
    opt = _multi(keras.optimizers.SGD(0.05, momentum=0.9), {"enc/.*": enc_la, "dec/.*": dec_la})
    enc, dec, head = _variables("enc", "dec", "head")
    _run(opt, [enc, dec, head], mode)

    expected = {
        "enc": reference.lookahead(reference.Adam(0.01), THETA0, grad_np, STEPS, 3, 0.5,
                                   inner_state)[-1],
        "dec": reference.lookahead(reference.SGD(0.05, 0.9), THETA0, grad_np, STEPS, 2, 0.8)[-1],
        "head": reference.lookahead(reference.SGD(0.05, 0.9), THETA0, grad_np, STEPS, NEVER,
                                    1.0)[-1],
    }
    for var, la in ((enc, enc_la), (dec, dec_la)):
        fast, slow, _ = expected[var.path.split("/")[0]]
        _assert_close(var, fast)
        _assert_close(la.slow_weight(var), slow)
    _assert_close(head, expected["head"][0])
    # Each Lookahead counts its own updates; the groups differ only in what a sync does.
    assert int(_np(enc_la.iterations)) == int(_np(dec_la.iterations)) == STEPS


@pytest.mark.parametrize("mode", MODES)
def test_a_member_with_outer_momentum_follows_the_snoo_reference(mode):
    # its buffer is state of its own group only; the other group is plain SGD
    member = Lookahead(keras.optimizers.SGD(0.05, momentum=0.9), sync_period=3,
                       slow_step_size=1.2, slow_momentum=0.9, inner_state="interpolate")
    opt = _multi(keras.optimizers.SGD(0.05, momentum=0.9), {"enc/.*": member})
    enc, head = _variables("enc", "head")
    _run(opt, [enc, head], mode)
    fast, slow, _ = reference.lookahead(reference.SGD(0.05, 0.9), THETA0, grad_np, STEPS, 3, 1.2,
                                        "interpolate", momentum=0.9)[-1]
    np.testing.assert_allclose(_np(enc), fast, rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(_np(member.slow_weight(enc)), slow, rtol=2e-5, atol=1e-5)
    _assert_close(head, reference.lookahead(reference.SGD(0.05, 0.9), THETA0, grad_np, STEPS,
                                            NEVER, 1.0)[-1][0])
    assert sum("slow_momentum" in v.path for v in opt.variables) == 1


@pytest.mark.parametrize("mode", MODES)
def test_the_multi_optimizers_loss_scale_is_undone_in_the_lookahead_group(mode):
    # MultiOptimizer sets its loss_scale_factor on every member and scales the loss by it; the
    # member Lookahead hands it to its inner optimizer, which unscales its gradients. Plain SGD
    # would otherwise step 8 times too far.
    la = Lookahead(keras.optimizers.SGD(0.05), sync_period=3, slow_step_size=0.5)
    opt = _multi(keras.optimizers.SGD(0.05), {"enc/.*": la}, loss_scale_factor=8.0)
    assert la.loss_scale_factor == la.inner_optimizer.loss_scale_factor == 8.0
    enc, head = _variables("enc", "head")
    _run(opt, [enc, head], mode, scale=8.0)
    fast, slow, _ = reference.lookahead(reference.SGD(0.05), THETA0, grad_np, STEPS, 3, 0.5)[-1]
    _assert_close(enc, fast)
    _assert_close(la.slow_weight(enc), slow)


def test_a_member_lookahead_proxies_its_learning_rate():
    la = Lookahead(keras.optimizers.Adam(0.01))
    opt = _multi(keras.optimizers.SGD(0.05), {"enc/.*": la})
    opt.build(_variables("enc", "head"))
    la.learning_rate = 0.003
    np.testing.assert_allclose(_np(la.inner_optimizer.learning_rate), 0.003, rtol=1e-6)
    with pytest.raises(AttributeError, match="MultiOptimizer"):
        _ = opt.learning_rate  # Keras's own refusal, unchanged


@pytest.mark.parametrize("factor", [2.0, None])
def test_a_lookahead_member_wrapping_a_loss_scale_optimizer_is_refused(factor):
    # Keras refuses a LossScaleOptimizer member: the MultiOptimizer scales the loss itself and
    # the member would unscale gradients that were never scaled by it. Inside a Lookahead it is
    # the same mistake, seen when the MultiOptimizer hands its factor to the member.
    if factor is None and BACKEND == "tensorflow":
        pytest.skip("TensorFlow's attribute tracking skips assigning the None already there, "
                    "so the member never sees it (docs/options.md says so)")
    inner = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())
    with pytest.raises(ValueError, match="LossScaleOptimizer.*MultiOptimizer"):
        _multi(keras.optimizers.SGD(), {"enc/.*": Lookahead(inner)}, loss_scale_factor=factor)


# -- Lookahead around a MultiOptimizer: one k, each group's inner its own ---------------------

def _around(inner_state="maintain", slow_step_size=0.5, loss_scale_factor=None):
    multi = _multi(keras.optimizers.Adam(0.02, beta_2=0.99),
                   {"enc/.*": keras.optimizers.Adam(0.01)}, loss_scale_factor=loss_scale_factor)
    return Lookahead(multi, sync_period=3, slow_step_size=slow_step_size,
                     inner_state=inner_state)


def _groups_reference():
    return reference.Groups(reference.Adam(0.01), reference.Adam(0.02, beta_2=0.99))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inner_state", ["maintain", "reset", "interpolate"])
def test_lookahead_around_a_multi_optimizer_follows_the_reference(mode, inner_state):
    opt = _around(inner_state)
    enc, head = _variables("enc", "head")
    _run(opt, [enc, head], mode)
    fast, slow, state = reference.lookahead(_groups_reference(), np.stack([THETA0, THETA0]),
                                            grad_np, STEPS, 3, 0.5, inner_state)[-1]
    for i, var in enumerate((enc, head)):
        _assert_close(var, fast[i])
        _assert_close(opt.slow_weight(var), slow[i])
    assert int(_np(opt.iterations)) == STEPS  # the MultiOptimizer's count of steps


def _curvature(state, t):
    """Each group's Adam second moment, bias-corrected with its own β₂ (the reference's Â)."""
    return np.stack([state["v"][0] / (1 - 0.999**t), state["v"][1] / (1 - 0.99**t)])


@pytest.mark.parametrize("mode", MODES)
def test_adaptive_alpha_around_a_multi_optimizer_uses_each_groups_curvature(mode):
    # One α* per sync over both groups; the gradients come scaled by the MultiOptimizer's
    # loss_scale_factor (4), which the estimate must undo as the members do.
    opt = _around(slow_step_size="adaptive", loss_scale_factor=4.0)
    enc, head = _variables("enc", "head")
    _run(opt, [enc, head], mode, scale=4.0)
    record = {}
    fast, slow, _ = reference.lookahead(
        _groups_reference(), np.stack([THETA0, THETA0]), grad_np, STEPS, 3,
        ("adaptive", 0.5, _curvature), record=record)[-1]
    assert len(record["estimate"]) == 2
    np.testing.assert_allclose(_np(opt.slow_step_size_estimate), record["estimate"][-1],
                               rtol=1e-4)
    for i, var in enumerate((enc, head)):
        _assert_close(var, fast[i])
        _assert_close(opt.slow_weight(var), slow[i])


def test_learning_rate_of_lookahead_around_a_multi_optimizer_names_the_members():
    opt = _around()
    with pytest.raises(AttributeError, match=r"MultiOptimizer.*\.optimizers"):
        _ = opt.learning_rate
    with pytest.raises(AttributeError, match="MultiOptimizer"):
        opt.learning_rate = 0.1
    assert not hasattr(opt, "learning_rate")  # what Keras's LR callbacks ask
    # inside a LossScaleOptimizer too, with the path to the members
    scaled = Lookahead(keras.optimizers.LossScaleOptimizer(_multi(
        keras.optimizers.SGD(0.1), {"enc/.*": keras.optimizers.Adam()})))
    with pytest.raises(AttributeError, match=r"inner_optimizer\.inner_optimizer\.optimizers"):
        _ = scaled.learning_rate


def test_a_member_accumulating_gradients_is_refused_around_a_multi_optimizer():
    multi = _multi(keras.optimizers.SGD(0.1),
                   {"enc/.*": keras.optimizers.Adam(gradient_accumulation_steps=2)})
    opt = Lookahead(multi)
    variables = _variables("enc", "head")
    with pytest.raises(ValueError, match="gradient_accumulation_steps=2"):
        opt.build(variables)
    assert not opt.built and not multi.built  # nothing half-built
    # the same MultiOptimizer inside a LossScaleOptimizer is refused alike
    scaled = Lookahead(keras.optimizers.LossScaleOptimizer(multi))
    with pytest.raises(ValueError, match="gradient_accumulation_steps=2"):
        scaled.build(variables)
    assert not scaled.built and not multi.built


def test_a_selector_functions_members_are_checked_at_build():
    def selector(variable):  # members made at build, unknown before
        return keras.optimizers.SGD(0.1) if "head" in variable.path else keras.optimizers.Adam()

    opt = Lookahead(keras.optimizers.MultiOptimizer(selector), slow_step_size="adaptive")
    with pytest.raises(ValueError, match="SGD keeps none"):
        opt.build(_variables("enc", "head"))


@pytest.mark.parametrize("inner_state", ["reset", "interpolate"])
def test_a_momentum_policy_needs_a_member_with_momentum(inner_state):
    multi = _multi(keras.optimizers.SGD(0.1), {"enc/.*": keras.optimizers.Adagrad()})
    with pytest.raises(ValueError, match=f"inner_state='{inner_state}'.*no member"):
        Lookahead(multi, inner_state=inner_state)


def test_adaptive_alpha_needs_every_members_curvature():
    multi = _multi(keras.optimizers.SGD(0.1), {"enc/.*": keras.optimizers.Adam()})
    with pytest.raises(ValueError, match="adaptive.*SGD keeps none"):
        Lookahead(multi, slow_step_size="adaptive")


@pytest.mark.parametrize("mode", MODES)
def test_a_momentum_policy_leaves_a_member_without_momentum_alone(mode):
    # reset zeroes the Adam group's momentum at each sync; the plain-SGD group has none.
    multi = _multi(keras.optimizers.SGD(0.05), {"enc/.*": keras.optimizers.Adam(0.01)})
    opt = Lookahead(multi, sync_period=3, inner_state="reset")
    enc, head = _variables("enc", "head")
    _run(opt, [enc, head], mode)
    groups = reference.Groups(reference.Adam(0.01), reference.SGD(0.05))
    fast, slow, _ = reference.lookahead(groups, np.stack([THETA0, THETA0]), grad_np, STEPS, 3,
                                        0.5, "reset")[-1]
    for i, var in enumerate((enc, head)):
        _assert_close(var, fast[i])


# -- finding and swapping every Lookahead --------------------------------------------------------

def _model():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="enc")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="dec")(hidden))


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")


def _two_groups():
    return _multi(keras.optimizers.Adam(0.01), {
        "enc/.*": Lookahead(keras.optimizers.SGD(0.05, momentum=0.9), sync_period=3,
                            inner_state="interpolate", name="enc_lookahead"),
        "dec/.*": Lookahead(keras.optimizers.Adam(0.02), sync_period=4, slow_step_size=0.8,
                            name="dec_lookahead"),
    })


def _compiled(optimizer):
    keras.utils.set_random_seed(1)
    model = _model()
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _values(variables):
    return [np.array(_np(v)) for v in variables]


def test_find_lookaheads_sees_every_member_and_stops_at_a_lookahead():
    opt = _two_groups()
    assert [la.name for la in find_lookaheads(opt)] == ["enc_lookahead", "dec_lookahead"]
    with pytest.raises(ValueError, match="2 Lookahead.*find_lookaheads"):
        find_lookahead(opt)
    wrapped = keras.optimizers.LossScaleOptimizer(opt)
    assert [la.name for la in find_lookaheads(wrapped)] == ["enc_lookahead", "dec_lookahead"]
    outer = Lookahead(_two_groups(), name="outer")
    assert find_lookaheads(outer) == [outer] and find_lookahead(outer) is outer
    assert find_lookaheads(_multi(keras.optimizers.Adam(), {})) == []
    with pytest.raises(ValueError, match="no Lookahead.*MultiOptimizer"):
        find_lookahead(_multi(keras.optimizers.Adam(), {}))


def test_use_slow_weights_swaps_every_group_and_restores_the_fast_weights_exactly():
    x, y = _data()
    model = _compiled(_two_groups())
    model.fit(x, y, batch_size=8, epochs=5, verbose=0)  # 10 steps: between syncs (k = 3, 4)
    enc_la, dec_la = find_lookaheads(model)
    fast = _values(model.trainable_variables)
    slow = [_values([la.slow_weight(v)])[0] for la, v in zip(
        (enc_la, enc_la, dec_la, dec_la), model.trainable_variables)]
    assert not np.array_equal(fast[0], slow[0]) and not np.array_equal(fast[2], slow[2])
    with use_slow_weights(model) as found:
        assert found == [enc_la, dec_la]
        for got, want in zip(_values(model.trainable_variables), slow):
            np.testing.assert_array_equal(got, want)
    for got, want in zip(_values(model.trainable_variables), fast):
        np.testing.assert_array_equal(got, want)


def test_swap_slow_weights_in_fit_leaves_every_group_on_its_slow_weights_and_resumes_exactly():
    x, y = _data()
    plain, swapped = _compiled(_two_groups()), _compiled(_two_groups())
    plain.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    swapped.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False,
                callbacks=[SwapSlowWeights()])
    las = find_lookaheads(plain)
    owners = (las[0], las[0], las[1], las[1])
    for got, la, v in zip(_values(swapped.trainable_variables), owners,
                          plain.trainable_variables):
        np.testing.assert_array_equal(got, _np(la.slow_weight(v)))
    # The next fit restores the fast weights first: both go on identically.
    plain.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    swapped.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for got, want in zip(_values(swapped.trainable_variables), _values(plain.trainable_variables)):
        np.testing.assert_array_equal(got, want)


def _sequential():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="enc"),
                             keras.layers.Dense(1, name="dec")])


def test_a_lookahead_member_no_key_routes_a_variable_to_is_named_when_slow_weights_are_asked():
    # A Sequential model's paths are "sequential/enc/kernel": the key "enc/.*" matches none, so
    # Keras never builds that member and the model trains on the default optimizer alone.
    x, y = _data()
    keras.utils.set_random_seed(1)
    model = _sequential()
    member = Lookahead(keras.optimizers.SGD(0.05), name="enc_lookahead")
    model.compile(optimizer=_multi(keras.optimizers.Adam(0.01), {"enc/.*": member}), loss="mse")
    with pytest.warns(UserWarning) as caught:
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y),
                  callbacks=[SwapSlowWeights()])
    said = [str(w.message) for w in caught if "was given no variable" in str(w.message)]
    assert len(said) == 1, said  # once, though asked at every epoch's validation
    assert said[0].startswith("keras_lookahead: the Lookahead member 'enc_lookahead' of "
                              "MultiOptimizer")
    assert "sequential/enc/kernel" in said[0] and "'(.*/)?encoder/.*' matches both" in said[0]
    assert not member.built
    # the key the docs give for both kinds of model routes the variables to the member there
    for make in (_sequential, _model):
        keras.utils.set_random_seed(1)
        model = make()
        member = Lookahead(keras.optimizers.SGD(0.05), name="enc_lookahead")
        model.compile(optimizer=_multi(keras.optimizers.Adam(0.01), {"(.*/)?enc/.*": member}),
                      loss="mse")
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[SwapSlowWeights()])
        assert member.built and len(member.slow_weights) == 2, make  # enc's kernel and bias
        for variable in model.trainable_variables[:2]:
            member.slow_weight(variable)  # raises for a variable it was not built with


# -- saving --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [_two_groups, lambda: Lookahead(
    _multi(keras.optimizers.SGD(0.05, momentum=0.9), {"enc/.*": keras.optimizers.Adam(0.01)}),
    sync_period=3, inner_state="interpolate")], ids=["members", "around"])
def test_keras_file_resumes_exactly(tmp_path, make):
    x, y = _data()
    full = _compiled(make())
    full.fit(x, y, batch_size=8, epochs=5, verbose=0)  # 10 steps: between syncs (k = 3, 4)
    full.save(tmp_path / "m.keras")
    full.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    resumed = keras.models.load_model(tmp_path / "m.keras")
    assert type(resumed.optimizer) is type(full.optimizer)
    assert [la.name for la in find_lookaheads(resumed)] == [
        la.name for la in find_lookaheads(full)]
    resumed.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    for got, want in zip(_values(resumed.trainable_variables), _values(full.trainable_variables)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(_values(resumed.optimizer.variables), _values(full.optimizer.variables)):
        np.testing.assert_array_equal(got, want)


def test_load_weights_into_the_trained_model_rewinds_the_member_lookaheads(tmp_path):
    # Loading goes through the MultiOptimizer, then each member's own load: the member forgets
    # what it knew of its state (on torch, its counters kept on the host), so the syncs fall
    # where the saved count says.
    x, y = _data()
    model = _compiled(_two_groups())
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 4 steps
    model.save_weights(tmp_path / "w.weights.h5")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    expected = _values(model.trainable_variables)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)  # 4 more: 12 in all
    model.load_weights(tmp_path / "w.weights.h5")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for got, want in zip(_values(model.trainable_variables), expected):
        np.testing.assert_array_equal(got, want)
