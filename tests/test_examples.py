"""The examples run as documented and refuse bad arguments with a message that names them. Those
that need a process of their own (logical devices, a cluster, a kill) run as a user runs them,
as scripts; the others run their `main(argv)` in the test's process."""

import os
import re
import subprocess
import sys
import time

import pytest
from tests.execution_modes import BACKEND, tf_only


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")  # on sys.path through setup.cfg's pytest pythonpath


def _run(script, *args, env=None):
    argv = [sys.executable, os.path.join(EXAMPLES, script), *args]
    out = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, **(env or {})),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    return out.stdout


def _main(module, capsys, *args):
    """An example's main(argv) in this process; what it printed."""
    import importlib

    capsys.readouterr()
    importlib.import_module(module).main(list(args))
    return capsys.readouterr().out


def _accuracy(stdout):
    (value,) = re.findall(r"test accuracy of the slow weights ([0-9.]+)", stdout)
    return float(value)


@pytest.mark.slow
def test_quickstart_smallest_run_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    plot = tmp_path / "loss.png"
    out = _main("quickstart", capsys, "--seeds", "1", "--epochs", "2", "--lrs", "0.001", "0.1",
                "--plot", str(plot))
    rows = re.findall(r"^(Adam|Lookahead\(Adam\) k=5 α=0\.5) +(0\.001|0\.1) +([0-9.]+) ", out, re.M)
    assert sorted((name, lr) for name, lr, _ in rows) == [
        ("Adam", "0.001"), ("Adam", "0.1"),
        ("Lookahead(Adam) k=5 α=0.5", "0.001"), ("Lookahead(Adam) k=5 α=0.5", "0.1")]
    assert len(re.findall(r"^\[\d/4\] ", out, re.M)) == 4  # a progress line per run
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


COLOURS = {"cat": (200, 10, 10), "dog": (10, 200, 10), "eel": (10, 10, 200)}


def _image_tree(folder, per_class):
    import numpy as np
    import keras

    for name, colour in COLOURS.items():
        os.makedirs(folder / name)
        for i in range(per_class):
            image = np.zeros((8, 8, 3), "uint8") + np.array(colour, "uint8")
            keras.utils.save_img(str(folder / name / f"{i:03d}.png"), image, scale=False)


@pytest.mark.backend_independent
@pytest.mark.parametrize("layout", ["classes", "train and test", "archive of a wrapper"])
def test_quickstart_reads_image_folders(tmp_path, layout):
    import tarfile
    import numpy as np
    import quickstart

    if layout == "classes":
        _image_tree(tmp_path / "data", 5)
        path, n_train, n_test = tmp_path / "data", 12, 3  # 15 images, 80/20
    else:
        _image_tree(tmp_path / "wrap" / "set" / "train", 5)
        _image_tree(tmp_path / "wrap" / "set" / "test", 2)
        path, n_train, n_test = tmp_path / "wrap", 15, 3  # limit 15: 15 // 5 test images
        if layout == "archive of a wrapper":
            with tarfile.open(tmp_path / "set.tar.gz", "w:gz") as tar:
                tar.add(tmp_path / "wrap" / "set", arcname="set")
            path = tmp_path / "set.tar.gz"
    (x, y), (x_test, y_test), classes = quickstart.load_folder(str(path), limit=15,
                                                                image_size=(8, 8))
    assert classes == 3 and x.shape == (n_train, 8, 8, 3) and x_test.shape == (n_test, 8, 8, 3)
    names = sorted(COLOURS)  # labels follow the sorted class names
    for images, labels in ((x, y), (x_test, y_test)):
        want = np.array([COLOURS[names[label]] for label in labels]) / 255.0
        np.testing.assert_allclose(images[:, 0, 0, :], want, atol=1e-6)


@pytest.mark.backend_independent
def test_quickstart_refuses_a_folder_without_images(tmp_path):
    import quickstart

    os.makedirs(tmp_path / "empty" / "cat")
    with pytest.raises(SystemExit, match="--data-dir: no <class>/ folders with images"):
        quickstart.load_folder(str(tmp_path / "empty"), limit=5)


@pytest.mark.parametrize("args, message", [
    (["--lrs", "0"], "--lrs 0.0: each learning rate must be a finite number > 0"),
    (["--seeds", "0"], "--seeds 0: must be 1 or more"),
])
@pytest.mark.backend_independent
def test_quickstart_refuses_bad_arguments(args, message, capsys):
    import quickstart

    with pytest.raises(SystemExit):
        quickstart.main(args)
    assert message in capsys.readouterr().err


def test_custom_loop_example_trains_on_this_backend(capsys):
    out = _main("custom_loop", capsys, "--epochs", "1")
    # 1437 training images in batches of 32: 44 updates, the last of them a sync (44 = 5·8 + 4,
    # so the slow weights were last moved at update 40); well above chance (0.1) after one epoch
    assert "epoch 1: 44 updates" in out
    assert _accuracy(out) > 0.5


@pytest.mark.slow  # 13 s idle, 17 s under load
def test_mixed_precision_example_keeps_float32_slow_weights_inside_the_loss_scaler(capsys):
    out = _main("mixed_precision", capsys, "--epochs", "1")
    assert ("policy mixed_float16: compute float16, variables float32, slow weights float32; "
            "optimizer LossScaleOptimizer around Lookahead(Adam)") in out
    assert _accuracy(out) > 0.3


@tf_only  # keras-hub's model on every backend was checked by hand; here it costs ~1 minute each
@pytest.mark.slow
def test_keras_hub_fine_tuning_example_runs_with_biases_and_layernorm_out_of_weight_decay(capsys):
    out = _main("finetune_keras_hub", capsys, "--epochs", "1", "--examples", "256")
    # a smoke run: it trains and evaluates on the slow weights; the weight matrices are decayed
    # and the biases and LayerNorm variables are not (their number is keras-hub's to choose)
    (total, excluded) = re.findall(r"in (\d+) variables; (\d+) left out", out)[0]
    assert 0 < int(excluded) < int(total)
    assert re.search(r"test accuracy of the slow weights [0-9.]+ \(chance: 0.5\)", out)


@tf_only
@pytest.mark.slow
def test_mirrored_fit_on_two_cpu_replicas_learns():
    out = _run("distributed.py", "--strategy", "mirrored", "--cpu-replicas", "2", "--epochs", "2")
    assert "2 replica(s)" in out
    assert _accuracy(out) > 0.6  # ten classes: chance is 0.1


@tf_only
@pytest.mark.multiworker
@pytest.mark.slow
def test_local_two_worker_cluster_equals_two_mirrored_replicas():
    # Both split every global batch of 64 over two replicas and train with the same custom loop,
    # so the slow weights, and the accuracy, come out the same.
    cluster = _run("distributed.py", "--strategy", "multiworker", "--local-workers", "2",
                   "--epochs", "2")
    mirrored = _run("distributed.py", "--strategy", "mirrored", "--cpu-replicas", "2",
                    "--custom-loop", "--jit-compile", "--epochs", "2")
    assert "multiworker, 2 replica(s)" in cluster
    assert _accuracy(cluster) == _accuracy(mirrored) > 0.6


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution runs on JAX")
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["data-parallel", "model-parallel"])
def test_jax_distributions_learn(strategy):
    out = _run("distributed.py", "--strategy", strategy, "--epochs", "2",
               env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert _accuracy(out) > 0.6


@pytest.mark.parametrize("args, message", [
    (["--cpu-replicas", "2"], "--cpu-replicas 2: only with --strategy mirrored"),
    (["--local-workers", "2"], "--local-workers: only with --strategy multiworker"),
    (["--epochs", "0"], "--epochs 0: must be 1 or more"),
    (["--strategy", "data-parallel", "--custom-loop"], "--custom-loop: for TensorFlow"),
])
@pytest.mark.backend_independent
def test_distributed_example_refuses_bad_arguments(args, message, capsys):
    import distributed
    import _distribute

    with pytest.raises(SystemExit) as exit_:
        _distribute.make(distributed.parse_args(args))
    said = capsys.readouterr().err + str(exit_.value.code)  # argparse prints; make() raises
    assert message in said, said


def test_strategy_for_the_other_backend_is_refused_with_the_fix():
    import _distribute
    import distributed

    other = "mirrored" if BACKEND != "tensorflow" else "data-parallel"
    with pytest.raises(SystemExit, match=f"--strategy {other} .*KERAS_BACKEND="):
        _distribute.make(distributed.parse_args(["--strategy", other]))


@tf_only
def test_custom_loop_resumes_from_its_checkpoint_exactly(tmp_path):
    # examples/_loop.py, on one device: 2 epochs, then a fresh model and optimizer resume from
    # the checkpoint for the 3rd; the weights and slow weights equal an uninterrupted 3-epoch
    # run. 4 steps per epoch and k=3: the epoch ends fall between syncs. The resumed model starts
    # from other initial weights, so only a restored checkpoint can make it equal.
    import keras
    import numpy as np
    import tensorflow as tf

    import _distribute
    from _loop import CustomLoop
    from keras_lookahead import Lookahead

    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    dist = _distribute.Distribution("default", tf_strategy=tf.distribute.get_strategy())

    def trained(epochs, directory, seed=1):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=Lookahead(keras.optimizers.SGD(0.05, momentum=0.9),
                                          sync_period=3))
        loop = CustomLoop(dist, model, keras.losses.MeanSquaredError(),
                          checkpoint_dir=directory)
        loop.fit(data, epochs, 4, verbose=0)
        return model

    straight = trained(3, None)
    trained(2, str(tmp_path))
    resumed = trained(3, str(tmp_path), seed=2)  # other initial weights: all from the file
    assert int(resumed.optimizer.iterations.numpy()) == 12
    for a, b in zip(straight.weights + straight.optimizer.slow_weights,
                    resumed.weights + resumed.optimizer.slow_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


@tf_only
@pytest.mark.slow
def test_custom_loop_killed_at_random_points_resumes_exactly(tmp_path):
    # examples/_loop.py saves a checkpoint after every epoch. SIGKILL at 5 seeded random points
    # (after a random number of epochs, then a random delay that often lands in the next save),
    # then a run to the end: it equals an uninterrupted run. Each restart starts from other
    # initial weights, so only the restored checkpoints can make it equal.
    import random
    import signal

    import numpy as np

    epochs, rng = 40, random.Random(20)

    def command(seed, out):
        return [sys.executable, "-m", "tests.workers.killed_loop", str(tmp_path / "ckpt"),
                str(epochs), str(seed), str(tmp_path / out)]

    from tests.workers import killed_loop

    killed_loop.main("", epochs, 1, str(tmp_path / "straight.npz"))  # uninterrupted, here
    reached = 0
    for kill in range(5):
        # the first run starts as the uninterrupted one (seed 1) and is killed after its first
        # checkpoint is written (at "epoch 2" or later): every restart has one to resume from
        proc = subprocess.Popen(command(1 if kill == 0 else 1 + kill, "unused.npz"), cwd=ROOT,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        target = reached + rng.randint(2 if kill == 0 else 1, 3)
        while True:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()[-3000:]  # it died or finished before the kill
            if line.startswith("resuming from"):
                # "epoch N" is printed just before N's checkpoint is written: a kill after it
                # may cost that epoch, never more
                done = int(line.split()[-1]) - 1
                assert done >= reached - 1, (line, reached)
            if line.startswith("epoch "):
                reached = int(line.split()[1])
                if reached >= target:
                    break
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert reached < epochs
    out = subprocess.run(command(9, "resumed.npz"), cwd=ROOT, timeout=300, text=True,
                         capture_output=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming from" in out.stdout
    full, resumed = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed.npz")
    assert sorted(full.files) == sorted(resumed.files)
    for name in full.files:
        np.testing.assert_allclose(resumed[name], full[name], rtol=1e-6, err_msg=name)
