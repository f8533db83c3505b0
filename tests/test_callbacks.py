"""The model on the slow weights: SwapSlowWeights in fit, use_slow_weights in custom loops.

Expectations are independent of the swap code: validation losses are recomputed in numpy from
slow weights recorded in a run without any swapping, and trajectories are compared with runs
that never swap.
"""

import numpy as np
import pytest
import keras
from keras import ops

import keras_lookahead
from keras_lookahead import Lookahead, SwapSlowWeights, use_slow_weights
from tests.execution_modes import BACKEND, MODES, make_step
from tests.faults import Interrupt

# 40 samples, batches of 8: 5 steps per epoch; k = 4, so the ends of epochs 1-3 fall between
# syncs and the fast and slow weights differ there.
K = 4
FIT = dict(batch_size=8, shuffle=False, verbose=0)
JIT = [False, True] if BACKEND != "torch" else [False]


def _data(seed=0, n=40):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32") + 0.3).astype("float32")
    return x, y


def _model(jit=False, inner=None):
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    inner = inner or keras.optimizers.SGD(0.05, momentum=0.9)
    model.compile(optimizer=Lookahead(inner, sync_period=K), loss="mse", jit_compile=jit)
    return model


def _numpy(variables):
    return [ops.convert_to_numpy(v).copy() for v in variables]


class _Record(keras.callbacks.Callback):
    """At each epoch end, the model's weights and the optimizer's slow weights."""

    def __init__(self):
        super().__init__()
        self.model_weights, self.slow = [], []

    def on_epoch_end(self, epoch, logs=None):
        opt = keras_lookahead.find_lookahead(self.model)
        self.model_weights.append(_numpy(self.model.trainable_variables))
        self.slow.append(_numpy(opt.slow_weights))


def _mse(weights, x, y):
    kernel, bias = weights
    return float(np.mean((x.astype("float64") @ kernel + bias - y) ** 2))


@pytest.mark.parametrize("jit", JIT)
def test_validation_in_fit_runs_on_the_slow_weights_and_training_is_unchanged(jit):
    x, y = _data()
    xv, yv = _data(seed=1, n=24)

    plain = _model(jit)
    rec = _Record()
    plain.fit(x, y, epochs=3, callbacks=[rec], **FIT)

    model = _model(jit)
    hist = model.fit(x, y, epochs=3, validation_data=(xv, yv),
                     callbacks=[SwapSlowWeights(at_end="fast")], **FIT)
    for epoch in range(3):
        expected = _mse(rec.slow[epoch], xv, yv)
        on_fast = _mse(rec.model_weights[epoch], xv, yv)
        assert abs(expected - on_fast) > 1e-3 * expected  # the two really differ here
        assert hist.history["val_loss"][epoch] == pytest.approx(expected, rel=1e-5)
    # Validation and swapping changed nothing in training: bit-identical weights and state.
    for a, b in zip(model.trainable_variables + model.optimizer.variables,
                    plain.trainable_variables + plain.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


@pytest.mark.parametrize("jit", JIT)
def test_fit_ends_on_slow_weights_and_the_next_fit_continues_exactly(jit):
    x, y = _data()
    reference = _model(jit)
    rec = _Record()
    reference.fit(x, y, epochs=3, callbacks=[rec], **FIT)

    model = _model(jit)
    model.fit(x, y, epochs=2, callbacks=[SwapSlowWeights()], **FIT)
    for got, want in zip(_numpy(model.trainable_variables), rec.slow[1]):
        np.testing.assert_array_equal(got, want)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(_mse(rec.slow[1], x, y), rel=1e-5)
    # No callback this time: the fast weights are restored before the first step anyway.
    model.fit(x, y, epochs=1, **FIT)
    for a, b in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_model_checkpoint_saves_the_slow_weights(tmp_path):
    x, y = _data()
    plain = _model()
    rec = _Record()
    plain.fit(x, y, epochs=2, callbacks=[rec], **FIT)

    path = str(tmp_path / "epoch{epoch}.weights.h5")
    model = _model()
    model.fit(x, y, epochs=2, callbacks=[
        SwapSlowWeights(at_end="fast"),
        keras.callbacks.ModelCheckpoint(path, save_weights_only=True),
    ], **FIT)
    for epoch in (1, 2):
        restored = _model()  # compiled, optimizer not built: its saved state is skipped, loudly
        with pytest.warns(UserWarning, match="optimizer state .* not loaded .* not built"):
            restored.load_weights(path.format(epoch=epoch))
        for got, want in zip(_numpy(restored.trainable_variables), rec.slow[epoch - 1]):
            np.testing.assert_array_equal(got, want)


def test_a_model_saved_on_its_slow_weights_loads_them_and_resumes_exactly(tmp_path):
    x, y = _data()
    reference = _model()
    rec = _Record()
    reference.fit(x, y, epochs=3, callbacks=[rec], **FIT)

    model = _model()
    model.fit(x, y, epochs=2, callbacks=[SwapSlowWeights()], **FIT)
    model.save(str(tmp_path / "m.keras"))
    keras.backend.clear_session()

    loaded = keras.models.load_model(str(tmp_path / "m.keras"))
    for got, want in zip(_numpy(loaded.trainable_variables), rec.slow[1]):
        np.testing.assert_array_equal(got, want)
    loaded.fit(x, y, epochs=1, callbacks=[SwapSlowWeights(at_end="fast")], **FIT)
    for a, b in zip(loaded.trainable_variables + loaded.optimizer.variables,
                    reference.trainable_variables + reference.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_backup_and_restore_with_the_swap_resumes_exactly(tmp_path):
    # The backup is written while the model holds the slow weights; the restart must train on
    # from the fast ones.
    x, y = _data()
    reference = _model()
    reference.fit(x, y, epochs=4, **FIT)

    def callbacks():
        return [SwapSlowWeights(at_end="fast"),
                keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))]

    model = _model()
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, epochs=4, callbacks=callbacks() + [Interrupt()], **FIT)
    keras.backend.clear_session()
    model = _model()
    model.fit(x, y, epochs=4, callbacks=callbacks(), **FIT)
    for a, b in zip(model.trainable_variables + model.optimizer.variables,
                    reference.trainable_variables + reference.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_evaluate_and_predict_outside_fit_swap_for_the_call_only():
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=1, **FIT)  # 5 steps: the model holds fast weights 2 steps past a sync
    fast = _numpy(model.trainable_variables)
    slow = _numpy(model.optimizer.slow_weights)
    loss = model.evaluate(x, y, verbose=0, callbacks=[SwapSlowWeights()])
    assert loss == pytest.approx(_mse(slow, x, y), rel=1e-5)
    pred = model.predict(x, verbose=0, callbacks=[SwapSlowWeights()])
    np.testing.assert_allclose(pred, x @ slow[0] + slow[1], rtol=1e-5, atol=1e-6)
    for got, want in zip(_numpy(model.trainable_variables), fast):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", MODES)
def test_use_slow_weights_in_a_custom_loop(mode):
    rng = np.random.default_rng(2)
    target = rng.normal(size=(3, 4)).astype("float32")

    def run(swap_every):
        keras.backend.clear_session()
        w = keras.Variable(np.zeros((3, 4), "float32"), name="w")
        opt = Lookahead(keras.optimizers.Adam(0.1), sync_period=K)
        opt.build([w])
        step = make_step(opt, [w], lambda: [ops.subtract(w, target)], mode)
        seen = []
        for t in range(1, 12):
            step()
            if swap_every and t % swap_every == 0:
                fast, slow = _numpy([w])[0], ops.convert_to_numpy(opt.slow_weight(w)).copy()
                with use_slow_weights(opt) as la:
                    assert la is opt
                    np.testing.assert_array_equal(ops.convert_to_numpy(w), slow)
                    with use_slow_weights(opt):  # nested: still the slow weights
                        pass
                    np.testing.assert_array_equal(ops.convert_to_numpy(w), slow)
                    seen.append(slow)
                np.testing.assert_array_equal(ops.convert_to_numpy(w), fast)
        return _numpy([w])[0], seen

    plain, _ = run(None)
    swapped, seen = run(2)
    np.testing.assert_array_equal(swapped, plain)
    assert any(not np.array_equal(s, plain) for s in seen)


@pytest.mark.parametrize("mode", [m for m in MODES if m != "jit"])
def test_a_step_on_the_slow_weights_is_restored_when_traced_and_refused_when_eager(mode):
    # A gradient computed on the slow weights cannot be repaired inside apply. A TF step traced
    # while the model holds them restores the fast weights before it first runs; an eager step
    # is refused, changing nothing. (Under jax.jit the step cannot see the flag: fit's callbacks
    # restore the weights there.)
    target = np.linspace(-1, 1, 6).astype("float32")

    def run(swap_at):
        keras.backend.clear_session()
        w = keras.Variable(np.zeros(6, "float32"), name="w")
        opt = Lookahead(keras.optimizers.SGD(0.2, momentum=0.5), sync_period=K)
        grads = lambda: [ops.subtract(w, target)]  # noqa: E731
        step = make_step(opt, [w], grads, mode)
        for t in range(1, 10):
            step()
            if t == swap_at:
                opt._swap_in()
                step = make_step(opt, [w], grads, mode)  # a new step, traced from now on
                if mode == "eager":
                    before = _numpy([w] + opt.variables)
                    with pytest.raises(ValueError, match="training step on the slow weights.*"
                                       "restore_fast_weights"):
                        step()
                    for a, b in zip(_numpy([w] + opt.variables), before):
                        np.testing.assert_array_equal(a, b)
                    keras_lookahead.restore_fast_weights(opt)
        return ops.convert_to_numpy(w), ops.convert_to_numpy(opt.slow_weight(w))

    for a, b in zip(run(5), run(None)):
        np.testing.assert_array_equal(a, b)


def test_mixed_precision_finds_the_lookahead_inside_the_loss_scale_optimizer():
    keras.mixed_precision.set_global_policy("mixed_float16")
    x, y = _data()
    plain = _model()
    rec = _Record()
    plain.fit(x, y, epochs=3, callbacks=[rec], **FIT)
    # The loss scaler skips some of the first steps, so find an epoch that ends between syncs.
    e = next(e for e in range(3)
             if any(not np.array_equal(a, b) for a, b in zip(rec.slow[e], rec.model_weights[e])))

    model = _model()
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    la = keras_lookahead.find_lookahead(model)
    assert isinstance(la, Lookahead) and la is model.optimizer.inner_optimizer
    model.fit(x, y, epochs=e + 1, callbacks=[SwapSlowWeights()], **FIT)
    assert la.slow_weights_in_model()
    for got, want in zip(_numpy(model.trainable_variables), rec.slow[e]):
        np.testing.assert_array_equal(got, want)
    keras_lookahead.restore_fast_weights(model)
    assert not la.slow_weights_in_model()
    for got, want in zip(_numpy(model.trainable_variables), rec.model_weights[e]):
        np.testing.assert_array_equal(got, want)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at_end must be one of .*got 'best'"):
        SwapSlowWeights(at_end="best")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x, y = _data()
    with pytest.raises(ValueError, match="no Lookahead optimizer found in Sequential .*Adam"):
        model.fit(x, y, callbacks=[SwapSlowWeights()], **FIT)
    with pytest.raises(ValueError, match="no Lookahead"):
        with use_slow_weights(model):
            pass
