"""Lookahead inside Keras training: fit, callbacks, mixed precision, accumulation, sparse grads."""

import os

import numpy as np
import pytest
import keras
from keras import ops

from keras_lookahead import Lookahead
from tests.execution_modes import BACKEND, MODES, make_step, tf_only


def _regression_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    w = rng.normal(size=(8, 1)).astype("float32")
    y = x @ w + 0.01 * rng.normal(size=(n, 1)).astype("float32")
    return x, y


def _mlp(seed=1):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                             keras.layers.Dense(1)])


# jit_compile on TensorFlow and JAX is XLA; on PyTorch it is torch.compile, whose training
# test_torch_compile.py checks against eager training exactly (here it cost 35 s)
@pytest.mark.parametrize("jit_compile", [False, True] if BACKEND != "torch" else [False])
def test_fit_converges(jit_compile):
    x, y = _regression_data()
    model = _mlp()
    model.compile(optimizer=Lookahead(keras.optimizers.Adam(0.01)), loss="mse",
                  jit_compile=jit_compile)
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=32, epochs=15, verbose=0, shuffle=False)
    last = model.evaluate(x, y, verbose=0)
    assert last < 0.05 * first
    # 8 batches × 15 epochs = 120 updates, a multiple of k = 5: the model holds the slow weights
    for v in model.trainable_variables:
        np.testing.assert_array_equal(ops.convert_to_numpy(v),
                                      ops.convert_to_numpy(model.optimizer.slow_weight(v)))


def test_reduce_lr_on_plateau_changes_the_inner_learning_rate():
    x, y = _regression_data()
    y_noise = np.random.default_rng(3).normal(size=y.shape).astype("float32")  # nothing to learn
    inner = keras.optimizers.SGD(0.01)
    model = _mlp()
    model.compile(optimizer=Lookahead(inner), loss="mse")
    cb = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)
    hist = model.fit(x, y_noise, epochs=3, verbose=0, callbacks=[cb])
    # The first epoch improves on +inf; with min_delta = 10 no later one improves, so the rate
    # halves after epochs 2 and 3. History logs the rate each epoch trained with.
    assert float(ops.convert_to_numpy(inner.learning_rate)) == pytest.approx(0.01 / 4)
    np.testing.assert_allclose(hist.history["learning_rate"], [0.01, 0.01, 0.005], rtol=1e-6)


def test_learning_rate_scheduler():
    x, y = _regression_data()
    inner = keras.optimizers.SGD(0.1)
    model = _mlp()
    model.compile(optimizer=Lookahead(inner), loss="mse")
    cb = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    model.fit(x, y, epochs=4, verbose=0, callbacks=[cb])
    assert float(ops.convert_to_numpy(inner.learning_rate)) == pytest.approx(0.1 / 4)


def _train_until(model, counter, target, x, y, max_steps=40):
    """Trains on good batches until the inner optimizer has applied `target` updates.

    Under mixed_float16 the loss scaler skips steps whose scaled gradients overflow (its default
    initial scale 2^15 usually overflows at first), so the number of calls is not known ahead.
    Returns how many calls it took.
    """
    calls = 0
    while int(ops.convert_to_numpy(counter.iterations)) < target:
        i = calls % (len(x) // 32)
        model.train_on_batch(x[32 * i: 32 * i + 32], y[32 * i: 32 * i + 32])
        calls += 1
        assert calls < max_steps
    return calls


def test_mixed_float16_skipped_step_neither_counts_nor_moves_slow_weights():
    keras.mixed_precision.set_global_policy("mixed_float16")
    x, y = _regression_data(64)
    model = _mlp()
    la = Lookahead(keras.optimizers.SGD(0.01), sync_period=3)
    model.compile(optimizer=la, loss="mse")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.optimizer.inner_optimizer is la
    # the learning rate set through the LossScaleOptimizer reaches the inner optimizer
    model.optimizer.learning_rate = 0.02
    assert float(ops.convert_to_numpy(la.inner_optimizer.learning_rate)) == pytest.approx(0.02)

    _train_until(model, la, 2, x, y)
    weights = [ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
    slow = [ops.convert_to_numpy(s).copy() for s in la.slow_weights]
    bad = x[:32].copy()
    bad[0, 0] = np.inf
    model.train_on_batch(bad, y[:32])
    assert int(ops.convert_to_numpy(la.iterations)) == 2  # skipped: not counted
    for v, w in zip(model.trainable_variables, weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(v), w)
    for s, w in zip(la.slow_weights, slow):
        np.testing.assert_array_equal(ops.convert_to_numpy(s), w)
    # The third applied update is the k-th: it syncs; slow weights are finite and the model's.
    _train_until(model, la, 3, x, y)
    for v, s in zip(model.trainable_variables, la.slow_weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(v), ops.convert_to_numpy(s))
        assert np.all(np.isfinite(ops.convert_to_numpy(s)))


def test_first_step_skipped_by_loss_scaler_leaves_slow_weights_right():
    # TF Addons bug #2351: slow weights set at the first apply call stayed zero when that step was
    # skipped. Expected here: φ1 = θ0 + ½(θ2 − θ0), with θ2 from plain SGD fed the same batches
    # (the loss scaler sees the same gradients, so it skips the same steps).
    keras.mixed_precision.set_global_policy("mixed_float16")
    x, y = _regression_data(64)
    bad = x[:32].copy()
    bad[0, 0] = np.nan

    def run(make_opt):
        model = _mlp()
        opt = make_opt()
        model.compile(optimizer=opt, loss="mse")
        theta0 = [ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
        model.train_on_batch(bad, y[:32])
        assert int(ops.convert_to_numpy(opt.iterations)) == 0
        calls = _train_until(model, opt, 2, x, y)
        return model, opt, theta0, calls

    la_model, la, theta0, calls = run(
        lambda: Lookahead(keras.optimizers.SGD(0.01), sync_period=2, slow_step_size=0.5))
    sgd_model, _, theta0_sgd, sgd_calls = run(lambda: keras.optimizers.SGD(0.01))
    assert calls == sgd_calls
    for s, v, w0, w0_sgd, theta2 in zip(la.slow_weights, la_model.trainable_variables, theta0,
                                        theta0_sgd, sgd_model.trainable_variables):
        np.testing.assert_array_equal(w0, w0_sgd)
        expected = w0 + 0.5 * (ops.convert_to_numpy(theta2) - w0)
        np.testing.assert_allclose(ops.convert_to_numpy(s), expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(ops.convert_to_numpy(v), ops.convert_to_numpy(s))


@pytest.mark.parametrize("mode", MODES)
def test_gradient_accumulation_syncs_after_k_applied_updates(mode):
    # gradient_accumulation_steps = 2 and k = 3: the sync happens after 6 micro-steps.
    x = keras.Variable(np.array([1.0, -1.0], np.float32))
    inner = keras.optimizers.SGD(0.1, gradient_accumulation_steps=2)
    la = Lookahead(inner, sync_period=3, slow_step_size=0.5)
    la.build([x])
    step = make_step(la, [x], lambda: [ops.ones(2)], mode)
    seen = []
    for _ in range(6):
        step()
        seen.append(ops.convert_to_numpy(x).copy())
    # micro-steps 2, 4, 6 apply θ ← θ − 0.1; only after the 6th does φ ← φ + ½(θ − φ) happen
    np.testing.assert_allclose(seen[1], [0.9, -1.1], rtol=1e-6)
    np.testing.assert_allclose(seen[4], [0.8, -1.2], rtol=1e-6)
    np.testing.assert_allclose(seen[5], [0.85, -1.15], rtol=1e-6)  # 1 + ½(0.7 − 1)
    np.testing.assert_allclose(ops.convert_to_numpy(la.slow_weight(x)), [0.85, -1.15], rtol=1e-6)
    assert int(ops.convert_to_numpy(la.iterations)) == 3


@tf_only
@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_sparse_gradients_equal_their_dense_form(mode):
    # Embedding lookups give tf.IndexedSlices gradients; Lookahead must give exactly what the same
    # gradients in dense form give.
    import tensorflow as tf

    def run(densify):
        keras.utils.set_random_seed(0)
        table = keras.Variable(np.random.default_rng(0).normal(size=(10, 4)).astype("float32"))
        opt = Lookahead(keras.optimizers.SGD(0.1, momentum=0.9), sync_period=2,
                        inner_state="interpolate")
        opt.build([table])
        ids = tf.constant([1, 3, 3, 7])

        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.gather(table.value, ids) ** 2)
            (g,) = tape.gradient(loss, [table.value])
            assert isinstance(g, tf.IndexedSlices)
            opt.apply([tf.convert_to_tensor(g) if densify else g], [table])

        if mode != "eager":
            step = tf.function(step, jit_compile=(mode == "xla"))
        for _ in range(5):
            step()
        return ops.convert_to_numpy(table), ops.convert_to_numpy(opt.slow_weight(table))

    sparse, dense = run(False), run(True)
    np.testing.assert_allclose(sparse[0], dense[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sparse[1], dense[1], rtol=1e-6, atol=1e-7)
    assert not np.allclose(sparse[0][[1, 3, 7]], np.random.default_rng(0).normal(size=(10, 4))
                           .astype("float32")[[1, 3, 7]])


def test_embedding_model_trains():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=(512, 6))
    y = (ids.sum(axis=1) % 2).astype("float32")[:, None]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(50, 8),
                              keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=Lookahead(keras.optimizers.Adam(0.01)), loss="binary_crossentropy")
    first = model.evaluate(ids, y, verbose=0)
    model.fit(ids, y, epochs=20, batch_size=64, verbose=0)
    assert model.evaluate(ids, y, verbose=0) < 0.7 * first


@tf_only
def test_tensorboard_logs_the_inner_learning_rate(tmp_path):
    import tensorflow as tf

    x, y = _regression_data(64)
    model = _mlp()
    model.compile(optimizer=Lookahead(keras.optimizers.SGD(0.0375)), loss="mse")
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[keras.callbacks.TensorBoard(str(tmp_path), update_freq="epoch")])
    values = []
    for root, _, files in tf.io.gfile.walk(str(tmp_path / "train")):
        for name in files:
            for record in tf.data.TFRecordDataset(os.path.join(root, name)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for v in event.summary.value:
                    if "learning_rate" in v.tag:
                        values.append(float(tf.make_ndarray(v.tensor)))
    assert values == pytest.approx([0.0375, 0.0375])


def test_skip_by_an_inner_loss_scale_optimizer_is_not_counted():
    # Lookahead(LossScaleOptimizer(SGD)): the inner wrapper unscales by its dynamic scale (2^15,
    # halved after a non-finite step) and skips non-finite steps. k = 2, α = ½, lr 0.1:
    #   step 1: g = 2^15 → update 1 → θ = (0.9, −1.1); 1 applied
    #   step 2: g = (inf, 2^15) → skipped, scale → 2^14; θ unchanged; still 1 applied
    #   step 3: g = 2^14 → update 1 → θ2 = (0.8, −1.2); 2 applied → sync:
    #           φ = θ0 + ½(θ2 − θ0) = (0.9, −1.1)
    x = keras.Variable(np.array([1.0, -1.0], np.float32))
    inner = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    la = Lookahead(inner, sync_period=2, slow_step_size=0.5)
    la.build([x])

    def apply(g):
        g = [ops.convert_to_tensor(np.asarray(g, np.float32))]
        if BACKEND == "jax":  # Keras's LossScaleOptimizer only applies statelessly on JAX
            new_x, new_opt = la.stateless_apply([v.value for v in la.variables], g, [x.value])
            x.assign(new_x[0])
            for v, value in zip(la.variables, new_opt):
                v.assign(value)
        else:
            la.apply(g, [x])

    apply([2.0**15, 2.0**15])
    np.testing.assert_allclose(ops.convert_to_numpy(x), [0.9, -1.1], rtol=1e-6)
    apply([np.inf, 2.0**15])
    np.testing.assert_allclose(ops.convert_to_numpy(x), [0.9, -1.1], rtol=1e-6)
    assert int(ops.convert_to_numpy(la.iterations)) == 1
    apply([2.0**14, 2.0**14])
    assert int(ops.convert_to_numpy(la.iterations)) == 2
    np.testing.assert_allclose(ops.convert_to_numpy(x), [0.9, -1.1], rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(la.slow_weight(x)), [0.9, -1.1], rtol=1e-6)
