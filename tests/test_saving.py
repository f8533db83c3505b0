"""Saved whole, resumed exactly: .keras files, tf.train.Checkpoint, BackupAndRestore."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import keras
from keras import ops

from keras_lookahead import Lookahead
from tests.execution_modes import tf_only
from tests.faults import Interrupt
from tests.workers import resume

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_process(phase, d, inner_state, jit):
    """A phase that writes what a later process resumes from, or the uninterrupted run."""
    resume.run_phase(phase, str(d), inner_state, bool(jit))


def fresh_process(phase, cases, backend=None):
    """The resuming phase: a new process, with nothing from the first but the files. `cases`:
    (folder, inner_state, jit) each, resumed one after the other (a process start costs
    seconds)."""
    env = dict(os.environ)
    if backend:
        env["KERAS_BACKEND"] = backend
    argv = [str(a) for case in cases for a in case]
    out = subprocess.run([sys.executable, "-m", "tests.workers.resume", phase, *argv],
                         cwd=ROOT, timeout=300, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]


def saved_then_resumed(tmp_path, configs, phases=("full", "keras", "keras2"), backend=None):
    """For each (inner_state, jit): the uninterrupted run and the save in this process, then
    every resume in one fresh process (on `backend`). The folders, one per configuration."""
    uninterrupted, save, resumed = phases
    cases = [(tmp_path / f"{inner_state}-{jit}", inner_state, jit)
             for inner_state, jit in configs]
    for d, inner_state, jit in cases:
        d.mkdir()
        in_process(uninterrupted, d, inner_state, jit)
        in_process(save, d, inner_state, jit)
    fresh_process(resumed, cases, backend)
    return [d for d, _, _ in cases]


def assert_same_state(d, exact=True):
    full, resumed = np.load(os.path.join(d, "full.npz")), np.load(os.path.join(d, "resumed.npz"))
    assert sorted(full.files) == sorted(resumed.files)
    for name in full.files:
        if exact:  # on CPU: the same ops on the same values in the same order
            np.testing.assert_array_equal(resumed[name], full[name], err_msg=f"{d}: {name}")
        else:  # different kernels for the same math: equal to float32 rounding
            np.testing.assert_allclose(resumed[name], full[name], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{d}: {name}")


@pytest.mark.slow
def test_keras_file_resume_in_a_fresh_process(tmp_path):
    # 7 steps then 6 more with k = 5: the save falls between syncs.
    # +snoo: with outer momentum; its buffers are in the compared optimizer state
    for d in saved_then_resumed(tmp_path, [("maintain", 0), ("interpolate", 0), ("reset", 1),
                                           ("interpolate+snoo", 0), ("reset+snoo", 1)]):
        assert_same_state(d)


def _installed(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


@tf_only
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_keras_file_saved_on_tensorflow_resumes_on_another_backend(tmp_path, backend):
    if not _installed(backend):
        pytest.skip(f"{backend} is not installed")
    # saved (and the uninterrupted run) on TensorFlow, resumed on the other backend
    for d in saved_then_resumed(tmp_path, [("maintain", 0), ("interpolate", 0),
                                           ("maintain+snoo", 0)], backend=backend):
        assert_same_state(d, exact=False)


@tf_only
@pytest.mark.slow
def test_tf_train_checkpoint_resume_in_a_fresh_process(tmp_path):
    for d in saved_then_resumed(tmp_path, [("interpolate", 0), ("maintain", 1),
                                           ("maintain+snoo", 1)],
                                phases=("ckptfull", "ckpt", "ckpt2")):
        assert_same_state(d)


def _fit_model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=Lookahead(keras.optimizers.SGD(0.05, momentum=0.9), sync_period=3,
                                      inner_state="interpolate"), loss="mse")
    return model


def test_backup_and_restore_resumes_exactly(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = np.sin(x.sum(axis=1, keepdims=True)).astype("float32")
    # 40 / 8 = 5 steps per epoch, k = 3: epoch boundaries fall between syncs.
    fit = dict(batch_size=8, epochs=4, shuffle=False, verbose=0)

    reference = _fit_model()
    reference.fit(x, y, **fit)

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = _fit_model()
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, callbacks=[backup, Interrupt()], **fit)
    keras.backend.clear_session()
    model = _fit_model()  # a new model and optimizer, as after a crash
    model.fit(x, y, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))], **fit)
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 20
    for a, b in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    for a, b in zip(model.optimizer.variables, reference.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def _saved(tmp_path, inner_state="maintain"):
    model = _fit_model() if inner_state == "interpolate" else None
    if model is None:
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer=Lookahead(keras.optimizers.SGD(0.1, momentum=0.9),
                                          inner_state=inner_state), loss="mse")
    model.fit(np.ones((8, 4), "float32"), np.ones((8, 1), "float32"), verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    return path


def _edit_config(path, edit):
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    edit(config["compile_config"]["optimizer"]["config"])
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)


def test_load_model_restores_lookahead_without_custom_objects(tmp_path):
    path = _saved(tmp_path)
    model = keras.models.load_model(path)
    assert isinstance(model.optimizer, Lookahead)
    assert isinstance(model.optimizer.inner_optimizer, keras.optimizers.SGD)
    assert model.optimizer.sync_period == 5


def test_saved_state_missing_slow_weights_fails_loudly(tmp_path):
    # A file saved without the cached momenta is loaded into a Lookahead that needs them: Keras
    # itself would warn and skip, leaving the optimizer fresh; we refuse.
    path = _saved(tmp_path, "maintain")

    def to_interpolate(opt_config):
        opt_config["inner_state"] = "interpolate"

    _edit_config(path, to_interpolate)
    # kernel + bias: the swap flag, 2 slow weights + SGD's iteration, learning rate and 2 momenta
    # = 7; 9 with the two cached momenta "interpolate" needs.
    with pytest.raises(ValueError, match="saved optimizer state has 7 variables, but this "
                                         "Lookahead\\(SGD, inner_state='interpolate'\\) has 9"):
        keras.models.load_model(path)


def test_saved_plain_optimizer_state_into_lookahead_fails_loudly(tmp_path):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    model.fit(np.ones((8, 4), "float32"), np.ones((8, 1), "float32"), verbose=0)
    path = str(tmp_path / "plain.weights.h5")
    model.save_weights(path)
    model2 = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model2.compile(optimizer=Lookahead(keras.optimizers.SGD(0.1, momentum=0.9)), loss="mse")
    model2.optimizer.build(model2.trainable_variables)
    with pytest.raises(ValueError, match="saved optimizer state has 4 variables"):
        model2.load_weights(path)


def test_saved_state_with_a_gap_in_its_numbering_names_what_is_missing():
    x = keras.Variable(np.array([1.0, 2.0], np.float32))
    la = Lookahead(keras.optimizers.SGD(0.1, momentum=0.9))
    la.build([x])
    before = [ops.convert_to_numpy(v).copy() for v in la.variables]
    store = {str(i): np.full(v.shape, 7, np.float32) for i, v in enumerate(la.variables)}
    store[str(len(store))] = store.pop("2")  # the same count, numbered 0, 1, 3, ..., n
    with pytest.raises(ValueError, match="with 2 missing. Nothing was loaded"):
        la.load_own_variables(store)
    for v, b in zip(la.variables, before):
        np.testing.assert_array_equal(ops.convert_to_numpy(v), b)


@tf_only
@pytest.mark.parametrize("saved, restored", [("interpolate", "maintain"),
                                             ("maintain", "interpolate")])
def test_tf_train_checkpoint_of_another_inner_state_fails_assert_consumed(tmp_path, saved,
                                                                          restored):
    # tf.train.Checkpoint matches by object path and skips the rest by design; the README says
    # to call assert_consumed() on the restore status, which must catch the mismatch.
    import tensorflow as tf

    def make(inner_state):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        opt = Lookahead(keras.optimizers.SGD(0.1, momentum=0.9), sync_period=2,
                        inner_state=inner_state)
        opt.build(model.trainable_variables)
        return model, opt

    model, opt = make(saved)
    opt.apply([ops.ones_like(v) for v in model.trainable_variables], model.trainable_variables)
    path = tf.train.Checkpoint(model=model, optimizer=opt).save(str(tmp_path / "ckpt"))
    model2, opt2 = make(restored)
    status = tf.train.Checkpoint(model=model2, optimizer=opt2).restore(path)
    with pytest.raises(AssertionError):
        status.assert_consumed()
