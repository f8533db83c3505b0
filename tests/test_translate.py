"""benchmarks/nmt/train.py: the parallel-text reader, tokenizer training and detokenization, the
Transformer schedule, BLEU, the tfds path on fake data, the arguments, and a tiny run from
training to BLEU."""

import argparse
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest


pytest.importorskip("keras_hub")
pytest.importorskip("tensorflow_text")
pytest.importorskip("sacrebleu")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from benchmarks.nmt import train as translate  # noqa: E402
from tests.execution_modes import tf_only  # noqa: E402

EN = ["A man is walking a dog .", "Two children play in the park .", "A woman reads a book .",
      "The dog runs on the grass .", "A man and a woman walk ."]
DE = ["Ein Mann führt einen Hund aus .", "Zwei Kinder spielen im Park .",
      "Eine Frau liest ein Buch .", "Der Hund läuft auf dem Gras .",
      "Ein Mann und eine Frau gehen ."]


def _write_corpus(folder, repeat=8, gz=False, held_out=1):
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train"), ("val", "val"), ("test", "test_2016_flickr")):
        for lang, lines in (("en", EN), ("de", DE)):
            text = "\n".join(lines * (repeat if split == "train" else held_out)) + "\n"
            path = folder / f"{name}.{lang}"
            if gz:
                with gzip.open(str(path) + ".gz", "wt", encoding="utf-8") as f:
                    f.write(text)
            else:
                path.write_text(text, encoding="utf-8")
    return folder


@pytest.mark.backend_independent
@pytest.mark.parametrize("gz", [False, True])
def test_parallel_text_reader_aligns_both_sides(tmp_path, gz):
    folder = _write_corpus(tmp_path / "text", gz=gz)
    args = translate.parse_args(["--profile", "cpu", "--data-dir", str(folder)])
    data = translate.load_text(args)
    assert data["train"] == (EN * 8, DE * 8)
    assert data["val"] == (EN, DE) and data["test"] == (EN, DE)


@pytest.mark.backend_independent
def test_parallel_text_reader_refuses_misaligned_or_missing_files(tmp_path):
    folder = _write_corpus(tmp_path / "text")
    (folder / "val.de").write_text("only one line\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="has 5 lines but .*val.de.* has 1"):
        translate.read_parallel(str(folder), "val")
    with pytest.raises(SystemExit, match="no dev.en"):
        translate.read_parallel(str(folder), "dev")


@pytest.mark.backend_independent
def test_tokenizers_are_learned_saved_and_reused(tmp_path):
    args = translate.parse_args(["--profile", "cpu", "--vocab-size", "120",
                                 "--run-dir", str(tmp_path)])
    toks = translate.tokenizers(args, EN * 8, DE * 8)
    vocab = toks["de"].get_vocabulary()
    assert vocab[:4] == translate.RESERVED and "Hund" in vocab and "Mann" in vocab
    assert os.path.exists(tmp_path / "vocab.de.120.txt")
    # a sentence of known words comes back exactly (pieces -> text)
    ids = toks["de"]("Der Hund läuft .")
    pieces = [vocab[int(i)] for i in np.asarray(ids)]
    assert translate.detokenize(pieces) == "Der Hund läuft ."
    mtime = os.path.getmtime(tmp_path / "vocab.de.120.txt")
    translate.tokenizers(args, ["other text"], ["anderer Text"])  # reused, not relearned
    assert os.path.getmtime(tmp_path / "vocab.de.120.txt") == mtime


@pytest.mark.backend_independent
@pytest.mark.parametrize("buckets", ["", "17,20"])
def test_training_batches_are_full_and_padded_to_their_length_bucket(tmp_path, buckets):
    args = translate.parse_args(["--profile", "cpu", "--vocab-size", "120", "--max-length", "24",
                                 "--batch-size", "4", "--length-buckets", buckets,
                                 "--run-dir", str(tmp_path)])
    toks = translate.tokenizers(args, EN * 8, DE * 8)
    start, end = toks["de"].token_to_id("[START]"), toks["de"].token_to_id("[END]")
    expected = {}  # each pair's ids, from the tokenizers directly
    for e, d in zip(EN, DE):
        d_ids = [int(i) for i in np.asarray(toks["de"](d))]
        expected[tuple(int(i) for i in np.asarray(toks["en"](e)))] = (
            [start] + d_ids, d_ids + [end])
    lengths = {max(len(k), len(v[1])) for k, v in expected.items()}
    allowed = {24} if not buckets else {17, 20, 24}  # the pairs span 16 to 23 ids
    seen = set()
    for x, y in translate.pipeline(args, toks, EN * 8, DE * 8, training=True).take(20):
        width = x["encoder"].shape[1]
        assert x["encoder"].shape == x["decoder"].shape == y.shape == (4, width)
        assert width in allowed
        seen.add(width)
        for enc, dec, out in zip(x["encoder"].numpy(), x["decoder"].numpy(), y.numpy()):
            key = tuple(int(i) for i in enc if i)
            length = max(len(key), int((out != 0).sum()))
            # the smallest bucket that holds the longest of the batch; never a smaller one
            assert length <= width
            assert [int(i) for i in dec if i] == expected[key][0]
            assert [int(i) for i in out if i] == expected[key][1]
    if buckets:  # these five sentences span more than one bucket
        smallest = {min(b for b in sorted(allowed) if b >= n) for n in lengths}
        assert seen == smallest and len(seen) > 1


@pytest.mark.backend_independent
def test_detokenize_joins_word_pieces():
    assert translate.detokenize(["Ein", "Spiel", "##haus", "aus", "Holz", "."]) == \
        "Ein Spielhaus aus Holz ."
    assert translate.detokenize([]) == ""


@pytest.mark.backend_independent
def test_bleu_of_the_references_themselves_is_100_and_of_nothing_is_0():
    assert translate.bleu(DE, DE) == pytest.approx(100.0)
    assert translate.bleu(["" for _ in DE], DE) == 0.0


def test_transformer_schedule_matches_its_formula():
    import keras

    scale, warmup = 0.04, 100
    with_warmup = translate.transformer_schedule(scale, warmup)
    without = translate.transformer_schedule(scale, warmup, use_warmup=False)
    for step in (0, 10, 99, 100, 500, 5000):
        s = step + 1.0
        expected = scale * min(s ** -0.5, s * warmup ** -1.5)
        flat = scale * max(s, warmup) ** -0.5
        got = float(keras.ops.convert_to_numpy(with_warmup(step)))
        assert got == pytest.approx(expected, rel=1e-5)
        assert float(keras.ops.convert_to_numpy(without(step))) == pytest.approx(flat, rel=1e-5)


def test_transformer_schedule_survives_an_optimizer_config_round_trip():
    import keras

    adam = keras.optimizers.Adam(translate.transformer_schedule(0.04, 100, use_warmup=False))
    again = keras.optimizers.deserialize(keras.optimizers.serialize(adam))
    rate = keras.ops.convert_to_numpy(again.learning_rate)  # at iteration 0: the flat rate
    assert float(rate) == pytest.approx(0.04 * 100 ** -0.5, rel=1e-5)
    assert again.get_config()["learning_rate"]["config"] == \
        {"scale": 0.04, "warmup": 100, "use_warmup": False}


def test_lr_default_is_each_optimizers_own_and_an_explicit_one_is_kept():
    import keras

    def lr(*argv):
        return translate.parse_args(["--profile", "cpu", *argv]).lr

    assert lr("--optimizer", "adam") == lr("--optimizer", "lookahead-adam-nowarmup") == 0.04
    assert lr("--optimizer", "adafactor") == 0.01  # Shazeer & Stern's cap on the relative step
    assert lr("--optimizer", "adafactor", "--lr", "0.03") == 0.03
    adafactor = translate.build_optimizer(translate.parse_args(["--optimizer", "adafactor"]))
    assert isinstance(adafactor, keras.optimizers.Adafactor) and adafactor.relative_step
    assert float(keras.ops.convert_to_numpy(adafactor.learning_rate)) == pytest.approx(0.01)


@pytest.mark.backend_independent
def test_sweep_report_averages_seeds_and_lists_the_grid(tmp_path):
    from benchmarks.nmt import run as nmt

    args = translate.parse_args(["--profile", "cpu"])
    runs = {"adam-s0": ("adam", 0.04, 20.0), "adam-s1": ("adam", 0.04, 23.0),
            "adafactor-s0": ("adafactor", 0.01, 11.0),
            "grid-adafactor-lr0.03": ("adafactor", 0.03, 9.5),
            "grid-lr0.06-k5": ("lookahead-adam", 0.06, 18.25)}
    for name, (optimizer, lr, bleu) in runs.items():
        folder = tmp_path / "nmt" / "runs" / "cpu" / name
        folder.mkdir(parents=True)
        record = {"args": {**vars(args), "optimizer": optimizer, "lr": lr,
                           "k": 5 if name.startswith("grid-lr") else 10},
                  "train_pairs": 100, "steps_per_epoch": 7, "params": 1234, "bleu": bleu,
                  "train_seconds": 120.0, "curve": [[1, 9.0], [2, 8.0 - bleu / 100]],
                  "epochs": [{"epoch": 1, "loss": 3.5}],
                  "samples": [{"en": "a", "reference": "b", "output": "c"}]}
        (folder / "record.json").write_text(json.dumps(record))
    nmt.write_report(argparse.Namespace(out=str(tmp_path), profile="cpu"))
    report = (tmp_path / "nmt.md").read_text()
    # mean of 20 and 23, sample standard deviation 3 / sqrt(2)
    assert "| Adam (warm-up) | 2 | 21.50 ± 2.12 | 20.00, 23.00 | 3.500 | 2.0 | 24.6 |" in report
    assert "| Adafactor | 1 | 11.00 ± 0.00 |" in report
    assert "lr scale 0.04" in report and "ρ = 0.01." in report  # the grid's 0.03 is apart
    assert "| Adafactor | 0.03 | – | 9.50 | 3.500 |" in report
    assert "| Lookahead(Adam) (warm-up) | 0.06 | 5 | 18.25 | 3.500 |" in report
    assert (tmp_path / "nmt_curves.png").stat().st_size > 0
    summary = json.loads((tmp_path / "nmt.json").read_text())["summary"]
    assert set(summary) == {"adam", "adafactor"} and summary["adam"]["bleu"] == [20.0, 23.0]


@tf_only
def test_tfds_path_on_fake_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    args = translate.parse_args(["--profile", "cpu", "--limit", "6", "--test-limit", "3"])
    with tfds.testing.mock_data(num_examples=10):
        data = translate.load_text(args)
    assert len(data["train"][0]) == len(data["train"][1]) == 6
    assert len(data["test"][0]) == 3 and len(data["val"][0]) == 10
    assert all(isinstance(t, str) for t in data["train"][0] + data["train"][1])


@pytest.mark.parametrize("argv, message", [
    (["--width", "30", "--heads", "4"], "width must divide by heads"),
    (["--max-length", "2"], "--max-length 2: must be 4 or more"),
    (["--optimizer", "sgd"], "invalid choice"),
    (["--length-buckets", "8,x"], "'8,x': comma-separated whole numbers"),
    (["--length-buckets", "20,10"], "--length-buckets 20,10: must increase"),
    (["--length-buckets", "8,40"], "--length-buckets 8,40: must increase, each from 2 to below "
                                   "--max-length 40"),
])
@pytest.mark.backend_independent
def test_bad_arguments_are_refused_with_their_names(argv, message, capsys):
    with pytest.raises(SystemExit):
        translate.parse_args(["--profile", "cpu", *argv])
    assert message in capsys.readouterr().err


def _tiny_argv(folder, run_dir, optimizer, *extra):
    return ["--profile", "cpu", "--data-dir", str(folder), "--run-dir", str(run_dir),
            "--optimizer", optimizer, "--layers", "1", "--width", "32", "--heads", "2",
            "--ffn", "64", "--vocab-size", "150", "--max-length", "12", "--batch-size", "8",
            "--epochs", "2", "--warmup", "10", "--verbose", "0", *extra]


@pytest.mark.slow
def test_tiny_run_trains_decodes_and_scores(tmp_path):
    # Lookahead(Adam); the other optimizers differ only in build_optimizer (tested above)
    folder = _write_corpus(tmp_path / "text", repeat=16)
    run_dir = tmp_path / "run"
    translate.main(_tiny_argv(folder, run_dir, "lookahead-adam", "--log-every", "2",
                              "--length-buckets", "6,9"))
    record = json.loads((run_dir / "record.json").read_text())
    assert record["train_pairs"] == 80 and record["steps_per_epoch"] == 10
    assert 0.0 <= record["bleu"] <= 100.0 + 1e-9  # sacreBLEU can round to 100.00000000000004
    assert len(record["samples"]) == 5 and all(isinstance(s["output"], str)
                                               for s in record["samples"])
    steps = [s for s, _ in record["curve"]]
    assert steps == list(range(2, 21, 2))  # every 2nd of 20 inner steps
    assert record["curve"][-1][1] < record["curve"][0][1]  # five sentences, repeated: learns


@pytest.mark.backend_independent  # shapes and arguments: the same on every backend
def test_paper_profile_is_transformer_base_with_the_papers_schedule():
    # Transformer base (6+6 layers, width 512, 8 heads) with the paper profile's schedule and
    # Lookahead, built with a tiny vocabulary and length: its configuration and its size. A step
    # at this size takes 100 s to compile here, and trains through the same code as the tiny
    # runs above.
    args = translate.parse_args(["--profile", "paper", "--optimizer", "lookahead-adam"])
    assert (args.layers, args.width, args.heads, args.ffn, args.dropout, args.batch_size,
            args.max_length, args.vocab_size, args.steps, args.warmup, args.lr, args.k,
            args.alpha, args.length_buckets) == (
        6, 512, 8, 2048, 0.1, 256, 64, 32000, 100_000, 4000, 0.04, 10, 0.5, (16, 24, 32, 48))
    args.max_length = 12
    model = translate.build_model(args, 150, 150)
    # by hand: attention 4 (512² + 512); feed-forward 512·2048 + 2048 + 2048·512 + 512;
    # LayerNorm 2·512 each; an encoder layer has one attention and 2 norms, a decoder layer two
    # attentions and 3 norms; token (150) and position (12) embeddings of width 512 on each
    # side; the output layer 512·150 + 150
    attention, ffn, norm = 4 * (512 * 512 + 512), 2 * 512 * 2048 + 2048 + 512, 2 * 512
    expected = (6 * (attention + ffn + 2 * norm) + 6 * (2 * attention + ffn + 3 * norm)
                + 2 * (150 + 12) * 512 + 512 * 150 + 150)
    assert model.count_params() == expected == 44_381_334
    optimizer = translate.build_optimizer(args)
    assert (optimizer.sync_period, optimizer.slow_step_size) == (10, 0.5)


@tf_only
@pytest.mark.slow
def test_two_mirrored_replicas_with_the_custom_loop_train_like_one_device(tmp_path):
    # The harness trains with examples/_loop.py where Keras's fit cannot run (under
    # MultiWorkerMirroredStrategy, keras #20585; the two-worker cluster itself runs in
    # test_examples.py and test_multiworker.py). Here that loop over two replicas (a process of
    # its own: logical devices) against fit on one device, no dropout: each replica averages
    # the loss over its own tokens, so the curves differ by the token counts' imbalance (about
    # 1% here), not more.
    folder = _write_corpus(tmp_path / "text", repeat=16, held_out=8)
    extra = ["--k", "3", "--dropout", "0", "--log-every", "1",
             "--vocab-dir", str(tmp_path / "vocab")]
    argv = {"replicas": _tiny_argv(folder, tmp_path / "replicas", "lookahead-adam", *extra,
                                   "--strategy", "mirrored", "--cpu-replicas", "2",
                                   "--custom-loop"),
            "one": _tiny_argv(folder, tmp_path / "one", "lookahead-adam", *extra)}
    translate.main(argv["one"])  # in this process
    out = subprocess.run([sys.executable, "-m", "benchmarks.nmt.train", *argv["replicas"]],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    two, one = (json.loads((tmp_path / name / "record.json").read_text())
                for name in ("replicas", "one"))
    assert [s for s, _ in two["curve"]] == list(range(1, 21))
    np.testing.assert_allclose([v for _, v in two["curve"]], [v for _, v in one["curve"]],
                               rtol=0.03)
    np.testing.assert_allclose([e["val_loss"] for e in two["epochs"]],
                               [e["val_loss"] for e in one["epochs"]], rtol=0.03)
    assert two["curve"][-1][1] < 0.5 * two["curve"][0][1]


@pytest.mark.slow
def test_validation_bleu_every_epoch_the_plateau_rule_and_an_exact_resume(tmp_path):
    folder = _write_corpus(tmp_path / "text", repeat=16)

    def train(run_dir, *extra):
        import keras

        keras.backend.clear_session()
        translate.main(_tiny_argv(folder, run_dir, "lookahead-adam", "--valid-bleu", "1",
                                  *extra))
        return json.loads((run_dir / "record.json").read_text())

    full = train(tmp_path / "full")  # 2 epochs
    assert [e["epoch"] for e in full["epochs"]] == [1, 2]
    assert all(0 <= e["valid_bleu"] <= 100 + 1e-9 for e in full["epochs"])
    best = max(range(2), key=lambda i: full["epochs"][i]["valid_bleu"])
    assert full["best_epoch"] == best + 1 and full["valid_bleu"] == full["epochs"][best][
        "valid_bleu"] and full["stopped"] == "epoch cap (2)"
    # stopped after epoch 1 (its checkpoint written), then resumed: the same epoch 2 exactly
    part = tmp_path / "part"
    record = train(part, "--epochs", "1")
    for key in ("bleu", "best_epoch", "valid_bleu", "stopped", "samples"):
        record.pop(key)
    (part / "record.json").write_text(json.dumps(record))
    resumed = train(part, "--resume")
    assert [e["loss"] for e in resumed["epochs"]] == [e["loss"] for e in full["epochs"]]
    assert resumed["curve"] == full["curve"] and resumed["bleu"] == full["bleu"]
    # the plateau rule: as if epoch 1 had scored above any BLEU (101; sacreBLEU's 100 can
    # round to 100.00000000000004 on this memorized corpus), the run stops after
    # --stop-patience epochs without a better one and tests epoch 1's weights
    record = json.loads((part / "record.json").read_text())
    for key in ("bleu", "best_epoch", "valid_bleu", "stopped", "samples"):
        record.pop(key)
    record["epochs"] = record["epochs"][:1]
    record["epochs"][0]["valid_bleu"] = 101.0
    record["args"]["stop_patience"] = 1  # a run made with the rule (it may not change)
    (part / "record.json").write_text(json.dumps(record))
    stopped = train(part, "--resume", "--epochs", "9", "--stop-patience", "1")
    assert len(stopped["epochs"]) == 2 and stopped["stopped"] == "plateau"
    assert stopped["best_epoch"] == 1 and not stopped["epochs"][-1]["improved"]


def test_resumes_and_plateau_arguments_are_checked(tmp_path, capsys):
    folder = _write_corpus(tmp_path / "text", repeat=2)
    with pytest.raises(SystemExit):
        translate.parse_args(["--profile", "cpu", "--stop-patience", "2"])
    assert "--stop-patience 2: the plateau rule reads the validation BLEU" in \
        capsys.readouterr().err
    long = translate.parse_args(["--profile", "cpu-long"])
    assert (long.epochs, long.stop_patience, long.valid_bleu) == (40, 3, 1)
    with pytest.raises(SystemExit, match="has no record.json"):
        translate.main(_tiny_argv(folder, tmp_path / "none", "adam", "--resume"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args = vars(translate.parse_args(_tiny_argv(folder, run_dir, "adam")))
    (run_dir / "record.json").write_text(json.dumps({"args": args, "epochs": [],
                                                     "checkpoint": "epoch1.weights.h5"}))
    with pytest.raises(SystemExit, match=r"--lr 0.04 \(now 0.02\)"):
        translate.main(_tiny_argv(folder, run_dir, "adam", "--resume", "--lr", "0.02"))
    with pytest.raises(SystemExit, match="checkpoint 'epoch1.weights.h5' of the run"):
        translate.main(_tiny_argv(folder, run_dir, "adam", "--resume"))
    with pytest.raises(SystemExit, match="holds a run already"):
        translate.main(_tiny_argv(folder, run_dir, "adam"))


@pytest.mark.backend_independent  # made-up records
def test_plateau_sweep_runs_the_pilot_then_the_grid_then_the_chosen_seeds(tmp_path):
    from benchmarks.nmt import run as sweep

    folder = tmp_path / "nmt" / "runs" / "cpu-long"

    def add(name, extra, valid, test):
        args = vars(translate.parse_args(["--profile", "cpu-long", "--data-dir", "x", *extra]))
        epochs = [{"epoch": i + 1, "loss": 3.0 - i, "val_loss": 3.0, "seconds": 60.0,
                   "valid_bleu": valid - 2 + i, "improved": True} for i in range(3)]
        record = {"args": args, "train_pairs": 29000, "steps_per_epoch": 453, "params": 1234,
                  "curve": [], "epochs": epochs, "valid_bleu": valid, "best_epoch": 3,
                  "stopped": "plateau", "bleu": test, "samples": []}
        (folder / name).mkdir(parents=True)
        (folder / name / "record.json").write_text(json.dumps(record))

    def names(runs):
        return [n for n, _ in runs]

    assert names(sweep.c4_runs({}, 2)) == ["p-adam-s0", "p-lookahead-adam-lr0.04-k10-s0"]
    add("p-adam-s0", ["--optimizer", "adam", "--seed", "0"], 30.0, 29.0)
    add("p-lookahead-adam-lr0.04-k10-s0", ["--optimizer", "lookahead-adam", "--lr", "0.04",
                                           "--k", "10"], 31.0, 33.33)
    args = argparse.Namespace(out=str(tmp_path), profile="cpu-long")
    second = names(sweep.c4_runs(sweep.load_records(args), 2))
    assert second[0] == "p-adafactor-s0" and len(second) == 6
    add("p-adafactor-s0", ["--optimizer", "adafactor"], 25.0, 24.0)
    # the grid: lr 0.06, k 5 validates best (32); its test BLEU 28.0 is the one reported
    for lr, k, valid, test in (("0.02", "5", 28.0, 27.7), ("0.02", "10", 29.0, 27.1),
                               ("0.04", "5", 30.5, 26.6), ("0.06", "5", 32.0, 28.0),
                               ("0.06", "10", 27.0, 25.5)):
        add(f"p-lookahead-adam-lr{lr}-k{k}-s0", ["--optimizer", "lookahead-adam", "--lr", lr,
                                                 "--k", k], valid, test)
    assert names(sweep.c4_runs(sweep.load_records(args), 2)) == [
        "p-adam-s1", "p-adafactor-s1", "p-lookahead-adam-lr0.06-k5-s1"]
    # seed 1: Adam 27, Adafactor 25, Lookahead 29: paired −1 and +2 against Adam, +4 and +4
    add("p-adam-s1", ["--optimizer", "adam", "--seed", "1"], 30.0, 27.0)
    add("p-adafactor-s1", ["--optimizer", "adafactor", "--seed", "1"], 25.0, 25.0)
    add("p-lookahead-adam-lr0.06-k5-s1", ["--optimizer", "lookahead-adam", "--lr", "0.06",
                                          "--k", "5", "--seed", "1"], 31.0, 29.0)
    assert sweep.c4_runs(sweep.load_records(args), 2) == []
    (folder / "unfinished").mkdir()  # a run under way (no BLEU yet) is not counted
    (folder / "unfinished" / "record.json").write_text(json.dumps({"epochs": []}))
    sweep.main(["--profile", "cpu-long", "--seeds", "2", "--report", "--out", str(tmp_path)])
    report = (tmp_path / "nmt_cpu_long.md").read_text()
    assert "| lookahead-adam-lr0.06-k5-s0 | 32.00 **chosen** | 3 | 3 | plateau |" in report
    assert ("| Lookahead(Adam), lr 0.06, k 5, α 0.5 | 2 | 28.50 ± 0.71 | 28.00, 29.00 | 3, 3 "
            "| 24.70 |") in report
    assert ("- Lookahead(Adam) − Adam (warm-up): +0.50 ± 2.12 BLEU (1 of 2 seeds higher; per "
            "seed -1.00, +2.00)") in report
    assert "33.33" not in report and "Not finished" not in report  # the pilot's 0.04 not chosen
    assert "stops once 3 epochs in a row bring no better validation BLEU" in report
    payload = json.loads((tmp_path / "nmt_cpu_long.json").read_text())
    assert payload["chosen"] == ["0.06", "5"] and payload["missing_runs"] == 0
    assert (tmp_path / "nmt_cpu_long_curves.png").stat().st_size > 0
