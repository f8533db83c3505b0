"""benchmarks/cifar/train.py and benchmarks/cifar/run.py: the data paths (tfds on fake data, image
folders and their archive, synthetic), the input pipeline, Polyak averaging, the arguments, and
small end-to-end runs and sweeps."""

import json
import os
import tarfile

import numpy as np
import pytest


from benchmarks._polyak import PolyakAverage
from benchmarks.cifar import train as cifar
from tests.execution_modes import BACKEND, tf_only

TINY = ["--profile", "tiny", "--verbose", "0"]


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
    train, valid, test, classes, n, n_valid = cifar.load_splits(_args("--synthetic", "50"))
    items = _items(train)
    assert classes == 10 and n == 40 and len(items) == 40 and len(_items(test)) == 10
    assert valid is None and n_valid == 0
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
    train, _, test, classes, n, _ = cifar.load_splits(_args("--data-dir", path, "--limit", "0"))
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
        train, _, _, _, n, _ = cifar.load_splits(_args("--data-dir", path, "--limit", "4",
                                                       "--seed", seed))
        subsets.append(sorted(int(x[0, 0, 0]) for x, _ in _items(train)))
        assert n == 4
    assert subsets[0] == subsets[1]


@tf_only
def test_the_validation_images_are_training_images_never_trained_on(tmp_path):
    # 10 training images of distinct colours: --limit 6 --valid-limit 3 trains on 6 and
    # validates on 3 others, the same for every seed; the 6 are the ones a run without
    # validation trains on; the test images stay the test split's
    path = str(_write_folders(tmp_path, per_class=5))
    seen = {}
    for seed, valid_limit in (("0", "3"), ("1", "3"), ("0", "0")):
        train, valid, test, _, n, n_valid = cifar.load_splits(_args(
            "--data-dir", path, "--limit", "6", "--valid-limit", valid_limit, "--seed", seed))
        colours = lambda ds: sorted(int(x[0, 0, 0]) for x, _ in _items(ds))  # noqa: E731
        seen[(seed, valid_limit)] = (colours(train), colours(valid) if valid else [])
        assert (n, n_valid) == (6, int(valid_limit)) and len(_items(test)) == 10
    tr, va = seen[("0", "3")]
    assert len(tr) == 6 and len(va) == 3 and not set(tr) & set(va)
    assert seen[("1", "3")] == (tr, va) and seen[("0", "0")][0] == tr
    # without a limit, all but the last held-out images train
    train, valid, _, _, n, n_valid = cifar.load_splits(_args(
        "--data-dir", path, "--limit", "0", "--valid-limit", "4"))
    assert (n, n_valid) == (6, 4) and len(_items(train)) == 6 and len(_items(valid)) == 4
    with pytest.raises(SystemExit, match="--valid-limit 5: with --limit 6, more images"):
        cifar.load_splits(_args("--data-dir", path, "--limit", "6", "--valid-limit", "5"))
    assert cifar.parse_args(["--profile", "cpu-long"]).valid_limit == 5000
    assert cifar.parse_args(["--profile", "paper"]).valid_limit == 0


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
        train, _, test, classes, n, _ = cifar.load_splits(_args(
            "--dataset", dataset, "--limit", "0", "--test-limit", "0"))
        items = _items(train)
    assert classes == (10 if dataset == "cifar10" else 100)
    assert n == 12 and len(items) == 12
    assert all(x.shape == (32, 32, 3) and 0 <= y < classes for x, y in items)


@tf_only
def test_augmentation_is_seeded_and_keeps_shapes():
    args = _args("--synthetic", "64")
    train, valid, test, _, n, _ = cifar.load_splits(args)
    first = [next(iter(cifar.pipelines(args, train, valid, test, n)[0]))[0].numpy()
             for _ in range(2)]
    other = cifar.parse_args([*TINY, "--synthetic", "64", "--seed", "1"])
    third = next(iter(cifar.pipelines(other, train, valid, test, n)[0]))[0].numpy()
    assert first[0].shape == (16, 32, 32, 3) and first[0].dtype == np.float32
    np.testing.assert_array_equal(first[0], first[1])  # the same seed: the same batch
    assert not np.array_equal(first[0], third)
    # normalized: per-channel statistics of the training images map near mean 0, std 1
    _, _, test_ds, _ = cifar.pipelines(args, train, valid, test, n)
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
@pytest.mark.backend_independent
def test_bad_arguments_are_refused_with_their_names(argv, message, capsys):
    with pytest.raises(SystemExit):
        cifar.parse_args([*TINY, *argv])
    assert message in capsys.readouterr().err


def test_a_bad_alpha_is_refused_by_lookahead_with_its_name():
    # The script does not repeat Lookahead's own check of the slow step size.
    args = cifar.parse_args([*TINY, "--optimizer", "lookahead-sgd", "--alpha", "1.5"])
    with pytest.raises(ValueError, match=r"slow_step_size.*1\.5"):
        cifar.build_optimizer(args, steps_per_epoch=10)


@pytest.mark.backend_independent
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


def _run(tmp_path, *argv):
    """One run of the harness in this process (its main(argv)); its record."""
    path = tmp_path / "run.json"
    cifar.main([*TINY, *argv, "--out", str(path)])
    return json.loads(path.read_text())


def _assert_learns_and_records_every_epoch(record, epochs=2):
    assert [e["epoch"] for e in record["epochs"]] == list(range(1, epochs + 1))
    # 320 training images of --synthetic 400, of which --valid-limit are held out
    assert record["train_images"] + record["valid_images"] == 320
    assert record["steps_per_epoch"] == record["train_images"] // 16
    for e in record["epochs"] + [record["final"]]:  # evaluated every epoch when held out
        assert (0 <= e["valid_accuracy"] <= 1) == (record["valid_images"] > 0)
    assert record["final"]["test_accuracy"] > 0.3  # ten colour classes: chance is 0.1
    # the training loss fit reports falls (the evaluated one, in inference mode, can be noisy
    # after 40 steps: BatchNormalization's moving statistics are young); at SGD's lr 0.01
    # every optimizer's fell by over a fifth on every backend here (at 0.02, the rate at width
    # 4, SGD's rose by 5% on torch at the tiny profile's width 16)
    assert record["epochs"][-1]["fit_loss"] < record["epochs"][0]["fit_loss"]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["lookahead-sgd", "polyak-sgd", "lookahead-adam"])
def test_small_run_learns_and_records_every_epoch(tmp_path, optimizer):
    if optimizer == "polyak-sgd" and BACKEND == "jax":
        pytest.skip("polyak-sgd refuses JAX (tested below)")
    record = _run(tmp_path, "--synthetic", "400", "--optimizer", optimizer,
                  "--lr", "0.01" if "sgd" in optimizer else "0.003", "--valid-limit", "32")
    _assert_learns_and_records_every_epoch(record)
    assert record["args"]["profile"] == "tiny" and record["args"]["blocks"] == 1
    assert [m["cores"] for m in record["machines"]] == [os.cpu_count()]
    assert record["wall_seconds"] > sum(e["seconds"] for e in record["epochs"])


@tf_only
@pytest.mark.slow
def test_the_custom_loop_path_learns_and_records_every_epoch(tmp_path, capsys):
    # examples/_loop.py, which the harness trains with under MultiWorkerMirroredStrategy
    # (Keras's fit and evaluate cannot run there: keras #20585), here on one device; the
    # two-worker cluster itself runs in test_examples.py and test_multiworker.py
    record = _run(tmp_path, "--synthetic", "400", "--optimizer", "lookahead-sgd", "--lr", "0.01",
                  "--custom-loop")
    _assert_learns_and_records_every_epoch(record)
    assert "1 replica(s)" in capsys.readouterr().out


def test_the_custom_loop_is_refused_off_tensorflow_and_named():
    if BACKEND == "tensorflow":
        pytest.skip("the custom loop runs on TensorFlow (above)")
    with pytest.raises(SystemExit, match="--custom-loop: the loop is TensorFlow's"):
        cifar.main([*TINY, "--synthetic", "64", "--custom-loop"])


@pytest.mark.skipif(BACKEND != "jax", reason="the JAX refusal")
def test_polyak_refuses_jax_with_the_way_out():
    with pytest.raises(SystemExit, match="KERAS_BACKEND=tensorflow or torch"):
        cifar.main([*TINY, "--synthetic", "64", "--epochs", "1", "--optimizer", "polyak-sgd"])


@tf_only
def test_imagenet_profile_reads_fake_tfds_data_and_builds_resnet50_with_l2(tmp_path):
    # The profile's configuration, its data path (tfds imagenet2012, resized to --image-size)
    # and its model; a step of ResNet-50 takes a minute to compile here, and trains through the
    # same code as the tiny runs above.
    tfds = pytest.importorskip("tensorflow_datasets")
    profile = cifar.parse_args(["--profile", "imagenet"])
    assert (profile.model, profile.batch_size, profile.epochs, profile.milestones,
            profile.lr_decay, profile.lr, profile.momentum, profile.weight_decay, profile.k,
            profile.alpha, profile.image_size) == (
        "resnet50", 256, 90, (30, 60), 0.1, 0.1, 0.9, 1e-4, 5, 0.5, 224)
    args = cifar.parse_args(["--profile", "imagenet", "--optimizer", "lookahead-sgd",
                             "--image-size", "32", "--batch-size", "4", "--limit", "8",
                             "--test-limit", "4"])
    with tfds.testing.mock_data(num_examples=8):
        train, valid, test, classes, n, _ = cifar.load_splits(args)
        images = _items(train)
        # resized to 8/7 of the size (256 for 224), then cropped to the size in the pipeline
        assert all(x.shape == (37, 37, 3) and 0 <= y < 1000 for x, y in images)
        batch, _ = next(iter(cifar.pipelines(args, train, valid, test, n)[0]))
    assert classes == 1000 and n == 8 and len(images) == 8 and len(_items(test)) == 4
    assert tuple(batch.shape) == (4, 32, 32, 3)
    model = cifar.build_model(args, classes)
    assert int(sum(np.prod(v.shape) for v in model.trainable_variables)) == 25_583_592
    # keras.applications takes no regularizer: every kernel got the profile's L2 in the rebuild
    kernels = [layer for layer in model.layers if hasattr(layer, "kernel")]
    assert len(kernels) == 54 and all(  # 53 convolutions and the classifier
        layer.kernel_regularizer.get_config()["l2"] == pytest.approx(0.5e-4) for layer in kernels)
    optimizer = cifar.build_optimizer(args, steps_per_epoch=10)
    assert (optimizer.sync_period, optimizer.slow_step_size) == (5, 0.5)
    assert list(cifar.learning_rate(args, 10).values) == pytest.approx([0.1, 0.01, 0.001])


@pytest.mark.slow
@pytest.mark.backend_independent  # every run is a process of its own (each backend's: above)
def test_sweep_keeps_finished_runs_runs_the_rest_and_reports(tmp_path, capsys):
    from benchmarks.cifar import run as sweep

    runs = tmp_path / "cifar" / "runs" / "tiny"
    runs.mkdir(parents=True)
    # two runs of the inner-state suite finished before, as a stopped sweep leaves them; the
    # third is run by the sweep, in a process of its own
    kept = {"state-maintain": 0.41, "state-interpolate": 0.47}
    for name, accuracy in kept.items():
        (runs / f"{name}.json").write_text(json.dumps(_record(name.split("-")[1], accuracy)))
    argv = ["--profile", "tiny", "--suite", "inner-state", "--out", str(tmp_path), "--",
            "--synthetic", "96", "--epochs", "1", "--no-train-eval"]
    sweep.main(argv)
    out = capsys.readouterr().out
    assert out.count("done before, kept") == 2
    assert "[3/3] state-reset: test accuracy" in out  # its progress line
    record = json.loads((runs / "state-reset.json").read_text())
    assert record["args"]["inner_state"] == "reset" and record["args"]["epochs"] == 1
    # what the made-up records hold is what the harness writes
    assert set(_record("reset", 0.5)) <= set(record)
    assert set(_record("reset", 0.5)["args"]) <= set(record["args"])
    report = (tmp_path / "cifar.md").read_text()
    assert "| interpolate | 47.00 |" in report and "| maintain | 41.00 |" in report
    assert "| reset |" in report
    assert "Zhang et al. 2019" in report
    assert set(json.loads((tmp_path / "cifar.json").read_text())["runs"]) == {
        "state-maintain", "state-interpolate", "state-reset"}
    sweep.main(argv)  # everything is done: nothing runs again
    assert capsys.readouterr().out.count("done before, kept") == 3


@pytest.mark.backend_independent  # a report from made-up records: the same on every backend
def test_the_report_pairs_seeds_and_says_what_is_missing_and_how_flat_the_end_is(tmp_path):
    from benchmarks.cifar import run as sweep

    runs = tmp_path / "cifar" / "runs" / "tiny"
    runs.mkdir(parents=True)
    # test accuracy at epochs 1, 2, 3 (the rate decays once, after epoch 1); Lookahead(Adam)
    # seed 1 has not run
    curves = {"sgd-s0": (.30, .45, .50), "sgd-s1": (.32, .50, .52),
              "lookahead-sgd-s0": (.31, .50, .53), "lookahead-sgd-s1": (.29, .49, .51),
              "adam-s0": (.35, .52, .55), "adam-s1": (.34, .50, .54),
              "lookahead-adam-s0": (.36, .55, .56)}
    for name, accs in curves.items():
        opt, seed = name.rsplit("-s", 1)
        rec = _record("maintain", accs[-1])
        rec["args"].update(optimizer=opt, seed=int(seed), epochs=3, milestones=[1])
        rec["epochs"] = [{**rec["epochs"][0], "epoch": i + 1, "test_accuracy": a}
                         for i, a in enumerate(accs)]
        if opt == "sgd":  # the others as records made before they named their machine
            rec["machines"] = [{"cpu": "Some CPU", "cores": 2, "commit": "1234abc"}]
        walls = {"sgd-s0": 600, "sgd-s1": 660, "lookahead-sgd-s0": 720}  # the others: none
        if name in walls:
            rec["wall_seconds"] = walls[name]
        (runs / f"main-{name}.json").write_text(json.dumps(rec))
    sweep.main(["--profile", "tiny", "--seeds", "2", "--report", "--out", str(tmp_path)])
    report = (tmp_path / "cifar.md").read_text()
    assert ("Runs made on: Some CPU, 2 cores, commit 1234abc (2 runs); not recorded (made "
            "before records named their machine) (5 runs).") in report
    assert ("**A partial sweep**: 1 run of the main comparison (2 seeds) not finished yet: "
            "main-lookahead-adam-s1.") in report
    assert "| 50.00, 52.00 | not evaluated |" in report and "| 53.00, 51.00 |" in report
    # minutes per run, training (3 epochs of 1 s) and whole run (its mean where recorded)
    assert "| 0.1, 10.5 |" in report and "| 0.1, 12.0 (1 of 2 runs recorded it) |" in report
    assert "| 0.1, – |" in report  # Adam: no run recorded it
    # +3 and -1 points: mean +1, sample std sqrt(8) = 2.83
    assert ("Lookahead(SGD) − SGD: +1.00 ± 2.83 points (1 of 2 seeds higher; per seed +3.00, "
            "-1.00)") in report
    assert "Lookahead(Adam) − Adam: +1.00 ± 0.00 points (1 of 1 seeds higher" in report
    # epoch 1 to 3: +20 (SGD s0, s1; Adam s0, s1; Lookahead(Adam)) to +22 (Lookahead(SGD))
    assert ("From epoch 1 to epoch 3 (the final rate from epoch 2 on), each run's test "
            "accuracy changed by +20.00 to +22.00 points.") in report
    summary = json.loads((tmp_path / "cifar.json").read_text())["summary"]
    assert summary["sgd"]["test_accuracy"] == pytest.approx([50.0, 52.0])


def _record(inner_state, accuracy):
    """A finished one-epoch run's record, with the fields train.py writes."""
    args = vars(cifar.parse_args([*TINY, "--synthetic", "96", "--epochs", "1", "--optimizer",
                                  "lookahead-sgd", "--inner-state", inner_state,
                                  "--no-train-eval"]))
    epoch = {"epoch": 1, "seconds": 1.0, "test_loss": 2.0, "test_accuracy": accuracy,
             "train_loss": float("nan"), "train_accuracy": float("nan"), "fit_loss": 2.1}
    return {"args": args, "classes": 10, "train_images": 76, "steps_per_epoch": 4,
            "epochs": [epoch], "params": 1234,
            "final": {k: epoch[k] for k in ("test_accuracy", "test_loss", "train_loss")}}


@pytest.mark.backend_independent  # a list of names: the same on every backend
def test_the_main_suite_runs_seed_by_seed():
    # a sweep stopped part-way has every optimizer at the seeds it reached, paired
    from benchmarks.cifar import run as sweep

    names = [name for name, _ in sweep.runs_for("main", 2)]
    opts = ["sgd", "lookahead-sgd", "adam", "lookahead-adam"]
    assert names == [f"main-{o}-s0" for o in opts] + [f"main-{o}-s1" for o in opts]


@pytest.mark.backend_independent  # shapes and arguments: the same on every backend
def test_paper_profile_is_the_papers_resnet18_and_schedule():
    # The full-width ResNet-18 of the paper profile: its configuration and its size. A step
    # at this width (16 s to compile here) trains through the same code as the tiny runs.
    args = cifar.parse_args(["--optimizer", "lookahead-sgd"])
    assert (args.width, args.blocks, args.batch_size, args.weight_decay, args.epochs,
            args.milestones, args.lr_decay, args.lr, args.momentum, args.k, args.alpha) == (
        64, 2, 128, 5e-4, 200, (60, 120, 160), 0.2, 0.1, 0.9, 5, 0.5)
    model = cifar.build_model(args, 10)
    params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    assert params == 11_173_962  # ResNet-18, CIFAR variant, 10 classes
    schedule = cifar.learning_rate(args, steps_per_epoch=391)
    assert list(schedule.boundaries) == [60 * 391, 120 * 391, 160 * 391]
    assert list(schedule.values) == pytest.approx([0.1, 0.02, 0.004, 0.0008])


@pytest.mark.backend_independent  # layer shapes: the same on every backend
def test_tiny_models_keep_clear_of_the_onednn_strided_1x1_bug():
    # On torch, the backward of a strided 1x1 convolution with fewer than 16 input channels
    # hangs or crashes on CPUs (oneDNN issue 6035; docs/backends.md, "Few channels"): at width
    # 4 the tiny profile hung the CI run. Every model the suite trains on torch at its smallest
    # gives such convolutions 16 channels or more.
    import keras

    from benchmarks import _workloads, performance

    tiny = cifar.build_model(cifar.parse_args(["--profile", "tiny"]), 10)
    cnn = _workloads.resnet_cnn(image_size=8, width=performance.TINY_CNN_WIDTH)
    for model in (tiny, cnn):
        strided = [(layer.name, layer.input.shape[-1]) for layer in model.layers
                   if isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (1, 1)
                   and layer.strides != (1, 1)]
        assert strided and min(channels for _, channels in strided) >= 16, strided


@pytest.mark.backend_independent
def test_the_long_cpu_profile_and_its_own_report(tmp_path):
    from benchmarks.cifar import run as sweep

    long = cifar.parse_args(["--profile", "cpu-long", "--optimizer", "sgd"])
    short = cifar.parse_args(["--profile", "cpu", "--optimizer", "sgd"])
    assert (long.limit, long.test_limit, long.epochs, long.milestones) == (
        20000, 0, 20, (10, 15, 18))
    assert (long.width, long.blocks, long.batch_size) == (short.width, short.blocks, 128)
    # the schedule ends at 0.2³ of the start: 0.1 → 0.0008 (steps per epoch: 20,000 // 128)
    rates = cifar.learning_rate(long, 20000 // 128).values
    assert list(rates) == pytest.approx([0.1, 0.02, 0.004, 0.0008])
    # its report is written beside the cpu profile's, which it leaves alone
    runs = tmp_path / "cifar" / "runs" / "cpu-long"
    runs.mkdir(parents=True)
    (runs / "state-reset.json").write_text(json.dumps(_record("reset", 0.5)))
    sweep.main(["--profile", "cpu-long", "--suite", "inner-state", "--report", "--out",
                str(tmp_path)])
    assert "| reset | 50.00 |" in (tmp_path / "cifar_cpu_long.md").read_text()
    assert (tmp_path / "cifar_cpu_long.json").exists() and not (tmp_path / "cifar.md").exists()


def _c1_write(folder, opt, config, seed, valid, test):
    """A finished run of App. C.1's protocol, as train.py writes it, with chosen accuracies."""
    from benchmarks.cifar import run as sweep

    name, extra = sweep.c1_run(opt, config, seed)
    args = vars(cifar.parse_args([*TINY, "--synthetic", "96", "--valid-limit", "16", *extra]))
    final = {"valid_accuracy": valid, "valid_loss": 1.0, "test_accuracy": test,
             "test_loss": 1.0, "train_loss": float("nan")}
    epoch = {"epoch": 1, "seconds": 1.0, "train_accuracy": float("nan"), "fit_loss": 2.0,
             **final}
    record = {"args": args, "classes": 10, "train_images": 60, "valid_images": 16,
              "steps_per_epoch": 3, "epochs": [epoch], "params": 1234, "final": final}
    (folder / f"{name}.json").write_text(json.dumps(record))
    return args


@pytest.mark.backend_independent  # made-up records: the same on every backend
def test_app_c1_protocol_chooses_on_validation_stage_by_stage_and_reports_test_for_choices(
        tmp_path):
    from benchmarks.cifar import run as sweep

    folder = tmp_path / "cifar" / "runs" / "tiny"
    folder.mkdir(parents=True)

    def names(runs):
        return [n for n, _ in runs]

    def load():
        return sweep.load_runs(str(tmp_path), "tiny")

    first = sweep.c1_runs({}, 2)
    assert len(first) == 9 and all(n.startswith("c1-sgd-") and n.endswith("-s0")
                                   for n in names(first))
    # SGD's grid: lr 0.1 with decay 1e-3 validates best (80 %); test accuracies that differ,
    # none of which may appear in the report but the chosen one's
    for i, (lr, wd) in enumerate((lr, wd) for lr in ("0.05", "0.1", "0.2")
                                 for wd in ("3e-4", "1e-3", "3e-3")):
        best = (lr, wd) == ("0.1", "1e-3")
        _c1_write(folder, "sgd", {"lr": lr, "wd": wd}, 0, 0.80 if best else 0.70 + i / 1000,
                  0.90 if best else 0.7771 + i / 10000)
    la = sweep.c1_runs(load(), 2)
    assert len(la) == 8 and la[0] == (
        "c1-lookahead-sgd-lr0.1-wd1e-3-k5-a0.5-s0",
        ["--optimizer", "lookahead-sgd", "--lr", "0.1", "--seed", "0", "--weight-decay",
         "1e-3", "--k", "5", "--alpha", "0.5", "--inner-state", "reset"])
    # Lookahead(SGD): lr 0.2, k 10, α 0.8 best, at the far edge of every dimension
    for lr in ("0.1", "0.2"):
        for k in ("5", "10"):
            for alpha in ("0.5", "0.8"):
                best = (lr, k, alpha) == ("0.2", "10", "0.8")
                _c1_write(folder, "lookahead-sgd", {"lr": lr, "wd": "1e-3", "k": k,
                                                    "alpha": alpha}, 0,
                          0.82 if best else 0.75, 0.91 if best else 0.6661)
    assert names(sweep.c1_runs(load(), 2)) == [
        "c1-sgd-lr0.1-wd1e-3-s1", "c1-lookahead-sgd-lr0.2-wd1e-3-k10-a0.8-s1"]
    _c1_write(folder, "sgd", {"lr": "0.1", "wd": "1e-3"}, 1, 0.79, 0.92)
    _c1_write(folder, "lookahead-sgd", {"lr": "0.2", "wd": "1e-3", "k": "10", "alpha": "0.8"},
              1, 0.81, 0.95)
    nxt = names(sweep.c1_runs(load(), 2))
    assert len(nxt) == 9 and all(n.startswith("c1-adamw-") for n in nxt)  # the next stage
    assert "--adamw-weight-decay" in sweep.c1_run("adamw", {"lr": "1e-3", "wd": "0.3"}, 0)[1]

    sweep.main(["--profile", "tiny", "--suite", "protocol", "--seeds", "2", "--report",
                "--out", str(tmp_path)])
    report = (tmp_path / "cifar.md").read_text()
    assert "| SGD | lr | 0.05, 0.1, 0.2 | 0.03, 0.05, 0.1, 0.2, 0.3 |" in report
    assert "| lr 0.1, decay 1e-3 | 80.00 **chosen** |" in report
    assert "| lr 0.2, decay 1e-3, k 10, α 0.8 | 82.00 **chosen** |" in report
    assert "edge of the grid in lr, k, alpha" in report
    assert "**Not finished**: the sweep's next stage has 9 runs" in report
    # test accuracy for the chosen ones only; paired: +1.00 and +3.00 points
    assert ("| SGD | lr 0.1, decay 1e-3 | 2 | 91.00 ± 1.41 | 90.00, 92.00 | 95.23 ± .19 |"
            in report)
    assert ("- Lookahead(SGD), momentum reset − SGD: +2.00 ± 1.41 points (2 of 2 seeds "
            "higher; per seed +1.00, +3.00)") in report
    assert "77.7" not in report and "66.61" not in report
    protocol = json.loads((tmp_path / "cifar.json").read_text())["protocol"]
    assert protocol["lookahead-sgd - sgd"] == pytest.approx([1.0, 3.0])


def test_lookahead_adamw_decays_decoupled_and_adds_no_l2():
    import keras

    args = cifar.parse_args([*TINY, "--optimizer", "lookahead-adamw", "--lr", "3e-4",
                             "--adamw-weight-decay", "0.3", "--k", "10", "--alpha", "0.8"])
    opt = cifar.build_optimizer(args, 10)
    inner = opt.inner_optimizer
    assert isinstance(inner, keras.optimizers.AdamW) and inner.weight_decay == 0.3
    assert (opt.sync_period, opt.slow_step_size) == (10, 0.8)
    model = cifar.build_model(args, 10)
    assert all(getattr(layer, "kernel_regularizer", None) is None for layer in model.layers)
