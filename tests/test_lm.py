"""The language-model suite (benchmarks/lm/): the data (PTB files in Mikolov's format, the
Multi30k stand-in, the stateful batches, AWD-LSTM's windows, perplexity), each against a hand
computation; and AWD-LSTM's layers against a numpy LSTM written from the equations."""

import argparse
import gzip
import math
import tarfile

import keras
import numpy as np
import pytest
from keras import ops

from benchmarks.lm import data
from benchmarks.lm import model as awd

# Mikolov's format: lower case, a leading space, <unk> and N in the text, no final <eos>.
PTB = {
    "train": " the cat sat on the mat \n the dog sat \n <unk> ate N fish \n",
    "valid": " the cat ate \n",
    "test": " a dog sat \n",  # "a" is not in the training text
}


def _write_ptb(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in PTB.items():
        (folder / f"ptb.{split}.txt").write_text(text)


def _expected_ptb_vocab():
    # counts: the 3, <eos> 3, sat 2, then 1 each, ties in alphabetical order ("<" sorts first)
    return ["<eos>", "the", "sat", "<unk>", "N", "ate", "cat", "dog", "fish", "mat", "on"]


@pytest.mark.backend_independent
def test_ptb_files_give_the_vocabulary_and_streams_by_hand(tmp_path):
    _write_ptb(tmp_path / "simple-examples" / "data")  # found at any depth
    d = data.load(str(tmp_path))
    assert d["source"] == "ptb"
    vocab = _expected_ptb_vocab()
    assert d["vocab"] == vocab
    ids = {t: i for i, t in enumerate(vocab)}
    text = "the cat sat on the mat <eos> the dog sat <eos> <unk> ate N fish <eos>"
    expected_train = [ids[t] for t in text.split()]
    np.testing.assert_array_equal(d["train"], expected_train)
    np.testing.assert_array_equal(d["valid"], [ids["the"], ids["cat"], ids["ate"], ids["<eos>"]])
    # a word the training text lacks is <unk> (PTB's own <unk>, which is in its vocabulary)
    np.testing.assert_array_equal(d["test"], [ids["<unk>"], ids["dog"], ids["sat"], ids["<eos>"]])
    assert d["train"].dtype == np.int32


@pytest.mark.backend_independent
def test_a_tar_gz_of_the_ptb_folder_reads_the_same(tmp_path):
    _write_ptb(tmp_path / "src" / "simple-examples" / "data")
    archive = tmp_path / "simple-examples.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "simple-examples", arcname="simple-examples")
    from_tar, from_folder = data.load(str(archive)), data.load(str(tmp_path / "src"))
    assert from_tar["vocab"] == from_folder["vocab"]
    for split in data.SPLITS:
        np.testing.assert_array_equal(from_tar[split], from_folder[split])


@pytest.mark.backend_independent
def test_multi30k_english_is_tokenized_lowercased_and_capped(tmp_path):
    assert data.tokenize("Two young, White males' T-shirts.") == [
        "two", "young", ",", "white", "males", "'", "t-shirts", "."]
    assert data.tokenize("A man's hat") == ["a", "man", "'s", "hat"]
    lines = {"train.en.gz": "A dog runs.\nA dog sits.\nThe cat runs!\n",
             "val.en.gz": "A cat sits.\n", "test_2016_flickr.en.gz": "A bird flies.\n"}
    for name, text in lines.items():
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as f:
            f.write(text)
    (tmp_path / "train.de.gz").write_bytes(b"")  # the German side is ignored
    d = data.load(str(tmp_path), vocab_size=5)
    assert d["source"] == "multi30k-en"
    # counts: <eos> 3, a 2, dog 2, runs 2, . 2, then 1 each; 4 kept, then <unk>
    assert d["vocab"] == ["<eos>", ".", "a", "dog", "<unk>"]
    ids = {t: i for i, t in enumerate(d["vocab"])}
    unk = ids["<unk>"]
    np.testing.assert_array_equal(d["valid"], [ids["a"], unk, unk, ids["."], ids["<eos>"]])
    np.testing.assert_array_equal(d["test"], [ids["a"], unk, unk, ids["."], ids["<eos>"]])


@pytest.mark.backend_independent
def test_the_whole_vocabulary_is_kept_when_it_fits():
    assert data.build_vocab([["b", "a"], ["a"]], size=10) == ["<eos>", "a", "b"]
    with pytest.raises(ValueError, match="at least 3"):
        data.build_vocab([["a"]], size=2)


@pytest.mark.backend_independent
def test_missing_files_and_folders_are_named(tmp_path):
    with pytest.raises(SystemExit, match="neither a folder"):
        data.load(str(tmp_path / "nowhere"))
    (tmp_path / "ptb.train.txt").write_text(" a b \n")
    with pytest.raises(SystemExit, match="ptb.test.txt, ptb.valid.txt|ptb.valid.txt, ptb.test"):
        data.load(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="neither the PTB files"):
        data.load(str(empty))


@pytest.mark.backend_independent
def test_batchify_makes_parallel_streams_that_continue_across_batches():
    np.testing.assert_array_equal(data.batchify(np.arange(10), 3),
                                  [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    with pytest.raises(ValueError, match="batch_size"):
        data.batchify(np.arange(10), 0)
    with pytest.raises(ValueError, match="fewer than 2"):
        data.batchify(np.arange(5), 3)


@pytest.mark.backend_independent
def test_windows_tile_the_streams_and_follow_awd_lstm_lengths():
    assert list(data.windows(10, 4)) == [(0, 4), (4, 4), (8, 1)]  # the targets end at 9
    rng = np.random.default_rng(0)
    cut = list(data.windows(5000, 70, rng))
    starts = [s for s, _ in cut]
    lengths = [n for _, n in cut]
    assert starts[0] == 0 and sum(lengths) == 4999
    assert all(a + n == b for (a, n), b in zip(cut, starts[1:]))
    assert min(lengths[:-1]) >= 5
    # both base lengths occur: around 70 mostly, around 35 about one time in twenty
    short = sum(n < 52 for n in lengths[:-1])
    assert 0 < short < len(lengths) // 4


@pytest.mark.backend_independent
def test_perplexity_is_over_tokens_not_a_mean_over_batches():
    # batch 1: two tokens at probability 1/2; batch 2: one token at 1/8. Over the split:
    # exp((2 ln 2 + ln 8) / 3) = 2^(5/3); the mean of the batches' perplexities would be 5.
    nll = 2 * math.log(2) + math.log(8)
    assert data.perplexity(nll, 3) == pytest.approx(2 ** (5 / 3), rel=1e-12)
    # a uniform model over V words has perplexity V
    assert data.perplexity(1000 * math.log(10_000), 1000) == pytest.approx(10_000, rel=1e-12)
    with pytest.raises(ValueError, match="no tokens"):
        data.perplexity(1.0, 0)


# -- the model's layers ---------------------------------------------------------------------------

def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _numpy_lstm(x, kernel, recurrent, bias):
    """The LSTM equations, in float64: i, f, g, o = split(x W + h U + b)."""
    batch, steps, _ = x.shape
    u = recurrent.shape[0]
    h, c = np.zeros((batch, u)), np.zeros((batch, u))
    out = []
    for t in range(steps):
        i, f, g, o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), np.float64)


def test_weight_drop_uses_one_recurrent_mask_for_every_time_step():
    x = np.random.default_rng(0).normal(size=(3, 7, 4)).astype("float32")
    layer = awd.WeightDropLSTM(5, weight_drop=0.5, seed=3)
    out = _np(layer(x, training=True))
    cell = layer.cell
    kernel, recurrent, bias = _np(cell.kernel), _np(cell.recurrent_kernel), _np(cell.bias)
    # the layer's first draw, repeated with a generator of the same seed
    dropped = _np(keras.random.dropout(ops.convert_to_tensor(cell.recurrent_kernel), 0.5,
                                       seed=keras.random.SeedGenerator(3)))
    kept = dropped != 0
    np.testing.assert_allclose(dropped[kept], 2 * recurrent[kept], rtol=1e-6)
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(out, _numpy_lstm(x, kernel, dropped, bias), rtol=1e-4, atol=1e-5)
    # and none at inference: the matrix itself
    np.testing.assert_allclose(_np(layer(x, training=False)),
                               _numpy_lstm(x, kernel, recurrent, bias), rtol=1e-4, atol=1e-5)
    assert not np.allclose(out, _np(layer(x, training=False)), atol=1e-3)


def test_locked_dropout_shares_each_sequences_mask_over_time():
    x = np.ones((4, 9, 6), "float32")
    out = _np(awd.LockedDropout(0.5, seed=1)(x, training=True))
    np.testing.assert_array_equal(out, np.repeat(out[:, :1], 9, axis=1))  # same at every step
    assert set(np.unique(out)) == {0.0, 2.0}
    assert not np.array_equal(out[0], out[1])  # but not the same for every sequence
    np.testing.assert_array_equal(_np(awd.LockedDropout(0.5)(x, training=False)), x)


def test_embedding_dropout_drops_whole_words_and_ties_the_softmax():
    layer = awd.TiedEmbedding(50, 8, dropout=0.5, seed=2)
    ids = np.tile(np.arange(50, dtype="int32"), (2, 1))  # every word twice
    out = _np(layer(ids, training=True))
    table = _np(layer.embeddings)
    np.testing.assert_array_equal(out[0], out[1])  # a word is dropped everywhere or nowhere
    dropped = np.all(out[0] == 0, axis=1)
    assert 0 < dropped.sum() < 50
    np.testing.assert_allclose(out[0][~dropped], 2 * table[~dropped], rtol=1e-6)
    np.testing.assert_allclose(_np(layer(ids, training=False))[0], table, rtol=1e-6)
    hidden = np.random.default_rng(1).normal(size=(3, 8)).astype("float32")
    np.testing.assert_allclose(_np(layer.logits(hidden)), hidden @ table.T + _np(layer.output_bias),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.backend_independent  # sizes are shapes; the steps' code is the tiny runs' (below)
def test_the_paper_profile_has_awd_lstms_parameter_count_and_takes_two_steps():
    # AWD-LSTM on PTB: embedding 10,000 × 400 tied to the softmax, LSTMs 400 → 1150 → 1150 → 400,
    # one bias per gate, and the softmax bias: 4,000,000 + 7,134,600 + 10,584,600 + 2,481,600 +
    # 10,000 = 24,210,800 (PyTorch's two biases per gate add 10,800: 24,221,600, the "24M" of
    # Merity et al. 2018, Table 1).
    assert awd.paper_parameter_count() == 24_210_800
    model = awd.build(10_000, "paper", batch_size=2)
    assert model.count_params() == 24_210_800
    assert len(model.rnns) == 3 and [r.cell.units for r in model.rnns] == [1150, 1150, 400]
    ids = np.random.default_rng(0).integers(0, 10_000, size=(2, 6)).astype("int32")
    model.compile(keras.optimizers.SGD(1.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ids[:, :5], ids[:, 1:], batch_size=2, epochs=2, verbose=0, shuffle=False)
    assert all(np.isfinite(history.history["loss"]))


def test_the_state_is_carried_from_batch_to_batch_until_reset():
    model = awd.build(30, "cpu", batch_size=2, layers=2, hidden=6, embedding=4)
    ids = np.arange(10, dtype="int32").reshape(2, 5)
    first, second = _np(model(ids)), _np(model(ids))
    assert not np.allclose(first, second, atol=1e-6)  # the second read continues the streams
    model.reset_state()
    np.testing.assert_allclose(_np(model(ids)), first, rtol=1e-6, atol=1e-7)


def test_a_window_of_one_token_trains_without_tar():
    # the last window of an epoch can be a single token: TAR has no step to penalise there
    model = awd.build(30, "cpu", batch_size=2, layers=1, hidden=4, embedding=4)
    model(np.zeros((2, 1), "int32"), training=True)
    assert all(np.isfinite(_np(loss)) for loss in model.losses)
    assert _np(model.losses[-1]) == 0.0


def test_bad_model_arguments_are_named():
    with pytest.raises(ValueError, match="weight_drop must be in"):
        awd.WeightDropLSTM(4, weight_drop=1.0)
    with pytest.raises(ValueError, match="rate must be in"):
        awd.LockedDropout(-0.1)
    with pytest.raises(ValueError, match="profile must be one of"):
        awd.build(100, "huge", batch_size=2)


# -- one run (benchmarks/lm/train.py) -------------------------------------------------------------

# Fixed windows (JAX compiles a step per window length) except where the random lengths are the
# point. 1,256 tokens: 251 per training stream, 31 per validation and test stream, so that fixed
# windows of 10 are all of one length (25 training windows an epoch) and JAX compiles each step
# once; every run here still learns from it.
TOKENS = 1256
TINY = ["--profile", "cpu", "--synthetic", str(TOKENS), "--optimizer", "lookahead-sgd", "--lr", "2",
        "--layers", "1", "--hidden", "16", "--embedding", "16", "--batch-size", "4",
        "--bptt", "10", "--variable-bptt", "0", "--k", "3", "--verbose", "0"]
RANDOM_WINDOWS = ["--variable-bptt", "1"]


def _train(run_dir, *extra):
    from benchmarks.lm import train

    keras.backend.clear_session()
    return train.main([*TINY, "--run-dir", str(run_dir), *extra])


@pytest.mark.slow
def test_a_tiny_run_learns_and_resumes_exactly(tmp_path):
    full = _train(tmp_path / "full", "--epochs", "3")
    ppl = [e["valid_ppl"] for e in full["epochs"]]
    assert ppl[-1] < ppl[0] and ppl[-1] < 50  # below a uniform guess over the 50 words
    assert full["best_epoch"] == 3 and math.isfinite(full["test_ppl"])
    _train(tmp_path / "cut", "--epochs", "2")  # a run stopped after two epochs, resumed
    resumed = _train(tmp_path / "cut", "--epochs", "3", "--resume")
    _assert_same_run(resumed, full)


# The windows are numpy's, and a resume is exact on every backend (above): once. (On JAX, which
# compiles a training step per window length, it took ~4 minutes.)
@pytest.mark.backend_independent
@pytest.mark.slow
def test_random_windows_are_the_same_in_a_resumed_run(tmp_path):
    full = _train(tmp_path / "full", "--epochs", "2", *RANDOM_WINDOWS)
    assert len({e["windows"] for e in full["epochs"]}) == 2  # each epoch cuts its own
    _train(tmp_path / "cut", "--epochs", "1", *RANDOM_WINDOWS)
    _assert_same_run(_train(tmp_path / "cut", "--epochs", "2", "--resume", *RANDOM_WINDOWS),
                     full)


def _assert_same_run(resumed, full):
    for key in ("loss", "valid_ppl", "lr", "windows"):
        assert [e[key] for e in resumed["epochs"]] == [e[key] for e in full["epochs"]], key
    assert resumed["test_ppl"] == full["test_ppl"]


def test_the_kept_weights_give_the_best_epochs_validation_back(tmp_path):
    full = _train(tmp_path / "full", "--epochs", "1")
    # the kept checkpoint is the best epoch's, and gives its validation perplexity back
    from benchmarks.lm import train

    args = train.parse_args([*TINY, "--run-dir", str(tmp_path / "full")])
    from examples._distribute import Distribution

    model = train.restored(args, Distribution("default"), full["vocab_size"],
                           str(tmp_path / "full" / "best.weights.h5"))
    streams = data.batchify(train.synthetic_corpus(TOKENS)["valid"], 4)
    with train.reported_weights(model, args, None):
        assert data.perplexity(*train.evaluate(model, streams, 10)) == full["valid_ppl"]


def test_the_plateau_rule_halves_the_inner_rate_through_the_wrapper():
    from benchmarks.lm import train

    args = train.parse_args([*TINY, "--patience", "2"])
    corpus = train.synthetic_corpus(TOKENS)
    streams = {s: data.batchify(corpus[s], 4) for s in data.SPLITS}
    model = train.build(args, train.SYNTHETIC_VOCAB)
    # an earlier epoch no run can beat (perplexity 1), one epoch ago without improvement
    record = {"epochs": [{"valid_ppl": 1.0, "waited": 1}]}
    entry = train.train_epoch(args, model, streams, 1, record, polyak=None)
    assert not entry["improved"] and entry["waited"] == 0  # 2 epochs waited: halved, restarted
    inner = model.optimizer.inner_optimizer
    assert float(ops.convert_to_numpy(inner.learning_rate)) == 1.0  # --lr 2, halved
    assert entry["lr"] == 2.0  # the rate the epoch trained with


def test_from_decay_from_on_the_rate_halves_after_every_epoch():
    from benchmarks.lm import train

    args = train.parse_args([*TINY, "--patience", "5", "--decay-from", "2"])
    corpus = train.synthetic_corpus(TOKENS)
    streams = {s: data.batchify(corpus[s], 4) for s in data.SPLITS}
    model = train.build(args, train.SYNTHETIC_VOCAB)
    inner = model.optimizer.inner_optimizer

    def rate_after(epoch, earlier):
        model.optimizer.learning_rate = 2.0
        entry = train.train_epoch(args, model, streams, epoch, {"epochs": earlier}, polyak=None)
        return float(ops.convert_to_numpy(inner.learning_rate)), entry

    # epoch 1 (index 0) improves on nothing before it: before --decay-from, no rule halves
    assert rate_after(0, [])[0] == 2.0
    # epoch 2 improves (on an infinite perplexity) and waited nothing: halved by --decay-from
    rate, entry = rate_after(1, [{"valid_ppl": math.inf, "waited": 0}])
    assert rate == 1.0 and entry["improved"] and entry["waited"] == 0
    # both rules at once (patience 1, an earlier perplexity of 1 that no epoch beats): halved
    # once, not twice, and the plateau rule's count restarts
    args.patience = 1
    rate, entry = rate_after(2, [{"valid_ppl": 1.0, "waited": 0}])
    assert rate == 1.0 and not entry["improved"] and entry["waited"] == 0


@pytest.mark.slow
def test_polyak_averaging_leaves_training_alone_and_resumes_exactly(tmp_path):
    sgd = ["--optimizer", "sgd", "--epochs", "3"]
    polyak = ["--optimizer", "polyak-sgd", "--polyak-start", "1"]
    plain = _train(tmp_path / "sgd", *sgd)
    full = _train(tmp_path / "full", *polyak, "--epochs", "3")
    # the same steps: averaging only changes what is evaluated, and not before its start
    assert [e["loss"] for e in full["epochs"]] == [e["loss"] for e in plain["epochs"]]
    assert full["epochs"][0]["valid_ppl"] == plain["epochs"][0]["valid_ppl"]
    assert [e["valid_ppl"] for e in full["epochs"][1:]] != [
        e["valid_ppl"] for e in plain["epochs"][1:]]
    assert full["polyak_count"] == 2 * full["epochs"][0]["windows"]  # every step of epochs 2, 3
    # stopped with the average under way, resumed: the average comes back from its file
    _train(tmp_path / "cut", *polyak, "--epochs", "2")
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == [
        "best.weights.h5", "epoch2.polyak.npz", "epoch2.weights.h5", "record.json"]
    # the default start follows --epochs: a resume that would move it is refused, by name
    with pytest.raises(SystemExit, match=r"--polyak-start 1 \(now 2\)"):
        _train(tmp_path / "cut", "--optimizer", "polyak-sgd", "--epochs", "4", "--resume")
    _assert_same_run(_train(tmp_path / "cut", *polyak, "--epochs", "3", "--resume"), full)


def test_bad_run_arguments_and_resumes_are_refused(tmp_path, capsys):
    from benchmarks.lm import train

    for argv, message in (
            (["--lr", "-1"], "--lr -1.0: must be positive"),
            (["--data-dir", "x"], "exactly one of --data-dir"),
            (["--bptt", "0"], "--bptt 0: must be 1 or more"),
            (["--hidden", "0"], "--hidden 0: must be 1 or more"),
            (["--decay-from", "-1"], "--decay-from -1: must be 0 or more"),
            (["--polyak-start", "1"], "--polyak-start 1: only polyak-sgd averages"),
            (["--optimizer", "polyak-sgd", "--epochs", "2", "--polyak-start", "2"],
             "--polyak-start 2: must be from 0 to --epochs - 1 (1)"),
            (["--slow-momentum", "0.5"], "--slow-momentum 0.5: snoo-adam needs one in (0, 1), "
             "the other optimizers none (--optimizer lookahead-sgd)"),
            (["--optimizer", "snoo-adam"], "--slow-momentum 0.0: snoo-adam needs one"),
            (["--optimizer", "snoo-adam", "--slow-momentum", "1"],
             "--slow-momentum 1.0: must be in [0, 1)")):
        with pytest.raises(SystemExit):
            train.parse_args([*TINY, *argv])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no record.json"):
        _train(tmp_path / "none", "--resume")
    _train(tmp_path / "run", "--epochs", "1")
    with pytest.raises(SystemExit, match=r"--lr 2.0 \(now 3.0\)"):
        _train(tmp_path / "run", "--epochs", "2", "--resume", "--lr", "3")
    with pytest.raises(SystemExit, match="holds a run already"):
        _train(tmp_path / "run", "--epochs", "2")
    # a record from before --decay-from existed ran without it: resumed as 0, refused otherwise
    import json

    path = tmp_path / "run" / "record.json"
    record = json.loads(path.read_text())
    del record["args"]["decay_from"]
    path.write_text(json.dumps(record))
    with pytest.raises(SystemExit, match=r"--decay-from 0 \(now 3\)"):
        _train(tmp_path / "run", "--epochs", "2", "--resume", "--decay-from", "3")
    assert len(_train(tmp_path / "run", "--epochs", "2", "--resume")["epochs"]) == 2
    # a record whose checkpoint is gone (they stay out of git) is refused by the file's name
    (tmp_path / "run" / "epoch2.weights.h5").unlink()
    with pytest.raises(SystemExit, match=r"continues from epoch2\.weights\.h5, which is not"):
        _train(tmp_path / "run", "--epochs", "3", "--resume")
    with pytest.raises(SystemExit, match="neither a folder"):
        train.main(["--data-dir", str(tmp_path / "missing"), "--run-dir", str(tmp_path / "x")])


class _HalfOnTheNextId:
    """A stand-in model: for input word w it gives the next id (w + 1) mod V probability 1/2
    and every other word 1/(2(V − 1))."""

    def __init__(self, vocab):
        self.vocab = vocab

    def reset_state(self):
        pass

    def __call__(self, x, training=False):
        probs = np.full(x.shape + (self.vocab,), 0.5 / (self.vocab - 1))
        np.put_along_axis(probs, ((x + 1) % self.vocab)[..., None], 0.5, axis=-1)
        return np.log(probs)


@pytest.mark.backend_independent
def test_evaluation_sums_cross_entropy_over_every_token_of_the_split():
    from benchmarks.lm import train

    vocab = 5
    # two streams of 8 tokens, 7 targets each: in stream 0 every next word is w + 1 (4 → 0
    # too); in stream 1 only 0 → 1 and 1 → 2 are
    streams = np.array([[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 0, 0, 0, 0, 0]])
    hits = 7 + 2
    total, tokens = train.evaluate(_HalfOnTheNextId(vocab), streams, bptt=3)  # windows 3, 3, 1
    assert tokens == 14
    misses = tokens - hits
    expected = hits * math.log(2) + misses * math.log(2 * (vocab - 1))
    assert total == pytest.approx(expected, rel=1e-12)
    assert data.perplexity(total, tokens) == pytest.approx(math.exp(expected / 14), rel=1e-12)


# -- the sweep (benchmarks/lm/run.py) --------------------------------------------------------------

def _fake_record(folder, optimizer, lr, seed, test_ppl, k=5, alpha=0.5, name=None,
                 profile="cpu", source="synthetic", argv=("--synthetic", "100")):
    """A finished run's record as train.py writes it, with chosen perplexities (validation:
    the test perplexity at the last of three epochs), in folder/name (by default, the grid's
    name for it); `argv`: the arguments of its sweep."""
    import json

    from benchmarks.lm import train

    args = vars(train.parse_args([*argv, "--profile", profile, "--optimizer",
                                  optimizer, "--lr", str(lr), "--seed", str(seed), "--k",
                                  str(k), "--alpha", str(alpha)]))
    epochs = [{"epoch": i + 1, "loss": 5.0 - i, "valid_ppl": test_ppl + 3 - i, "lr": lr,
               "windows": 10, "seconds": 30.0, "improved": True, "waited": 0}
              for i in range(3)]
    record = {"args": args, "source": source, "vocab_size": 50, "params": 1234,
              "tokens": {"train": 80, "valid": 10, "test": 10}, "epochs": epochs,
              "best_epoch": 3, "valid_ppl": epochs[-1]["valid_ppl"], "test_ppl": test_ppl}
    name = name or f"{optimizer}-lr{lr}-k{k}-a{alpha}-s{seed}"
    (folder / name).mkdir(parents=True)
    (folder / name / "record.json").write_text(json.dumps(record))


@pytest.mark.backend_independent
def test_the_report_gives_mean_std_and_paired_differences_by_hand(tmp_path):
    import json

    from benchmarks.lm import run

    folder = tmp_path / "lm" / "runs" / "cpu"
    # SGD 60, 62, 64 (mean 62, std 2); Lookahead(SGD) 59, 62, 62 (mean 61, std √3):
    # paired differences −1, 0, −2 (mean −1, std 1; two of three seeds lower)
    for seed, (plain, la) in enumerate(((60, 59), (62, 62), (64, 62))):
        _fake_record(folder, "sgd", 30, seed, plain)
        _fake_record(folder, "lookahead-sgd", 30, seed, la)
    _fake_record(folder, "lookahead-sgd", 30, 0, 70, k=10, alpha=0.8)  # a grid point
    _fake_record(folder, "adam", 0.003, 0, 50)  # one seed
    (folder / "unfinished").mkdir()  # a record without a test perplexity is left out
    (folder / "unfinished" / "record.json").write_text(json.dumps({"epochs": []}))
    run.main(["--report", "--out", str(tmp_path)])
    report = (tmp_path / "lm_cpu.md").read_text()
    assert ("| SGD lr 30 | 3 | 62.00 ± 2.00 | 60.00, 62.00, 64.00 | 63.00 | 3, 3, 3 | "
            f"1.5, 1.5, 1.5 | {run.PAPER['sgd']} |") in report
    assert f"| Lookahead(SGD) lr 30 | 3 | 61.00 ± {math.sqrt(3):.2f} |" in report
    assert ("Lookahead(SGD) − SGD at lr 30: -1.00 ± 1.00 (2 of 3 seeds lower; per seed -1.00, "
            "+0.00, -2.00)") in report
    assert "| Adam lr 0.003 | 1 | 50.00 ± 0.00 |" in report
    assert "chose each optimizer's rate" not in report  # this profile runs fixed rates
    # the grid table: validation perplexity only (70 + 1), test read for chosen settings only
    assert "| Lookahead(SGD) | 30 | 10 | 0.8 | 71.00 | 3 |" in report and "70.00" not in report
    assert "not Penn Treebank" in report and "63.90" in report and "57.72" in report
    assert (tmp_path / "lm_cpu_curves.png").stat().st_size > 0
    payload = json.loads((tmp_path / "lm_cpu.json").read_text())
    assert payload["summary"]["sgd-lr30"]["test_ppl"] == [60, 62, 64]
    assert "unfinished" not in payload["runs"]


@pytest.mark.backend_independent
def test_sweep_arguments_are_checked(capsys, tmp_path):
    from benchmarks.lm import run

    for argv, message in ((["--adam-lrs", "0.003,x"], "--adam-lrs '0.003,x': give positive"),
                          (["--adam-lrs", "-1"], "--adam-lrs '-1'"),
                          (["--seeds", "0"], "--seeds 0: must be 1 or more")):
        with pytest.raises(SystemExit):
            run.main([*argv, "--out", str(tmp_path)])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no finished runs"):
        run.main(["--report", "--out", str(tmp_path)])
    # the suites: the main one's configurations for each seed, the grid's without repeats
    args = argparse.Namespace(profile="cpu", suite="all", seeds=2, adam_lrs="0.003,0.01")
    names = [name for name, _ in run.runs_for(args)]
    assert len(names) == len(set(names))
    assert {n for n in names if n.endswith("-s1")} == {
        "sgd-lr30-s1", "lookahead-sgd-lr30-s1", "polyak-sgd-lr30-s1", "adam-lr0.003-s1",
        "lookahead-adam-lr0.003-s1", "adam-lr0.01-s1", "lookahead-adam-lr0.01-s1"}
    assert "lookahead-adam-lr0.003-k20-a0.8-s0" in names and "adam-lr0.001-s0" in names


@pytest.mark.slow
@pytest.mark.backend_independent  # the run it resumes is a process of its own
def test_sweep_keeps_finished_runs_resumes_a_stopped_one_and_reports(tmp_path, capsys):
    import json

    from benchmarks.lm import run

    folder = tmp_path / "lm" / "runs" / "cpu"
    # TINY without its optimizer, rate and k: each run's own come from the sweep (a rate given
    # here, 2, must not win over the sweep's)
    tiny = [a for i, a in enumerate(TINY) if a not in ("--optimizer", "--k")
            and TINY[i - 1] not in ("--optimizer", "--k")]
    argv = ["--seeds", "1", "--adam-lrs", "0.01", "--out", str(tmp_path), "--", *tiny,
            "--epochs", "2"]
    # four runs of the main suite finished before, as a stopped sweep leaves them
    for optimizer, lr, ppl in (("sgd", 30, 40.0), ("lookahead-sgd", 30, 41.0),
                               ("polyak-sgd", 30, 42.0), ("lookahead-adam", 0.01, 43.0)):
        _fake_record(folder, optimizer, lr, 0, ppl, name=f"{optimizer}-lr{lr}-s0",
                     argv=argv[argv.index("--") + 1:])
    # the fifth stopped inside its run, after its last epoch's checkpoint: started as the
    # sweep starts it (its arguments, then the run's own), here
    stopped = folder / "adam-lr0.01-s0"
    train_argv = ["--profile", "cpu", "--verbose", "0", *argv[argv.index("--") + 1:],
                  "--optimizer", "adam", "--lr", "0.01", "--seed", "0", "--run-dir", str(stopped)]
    from benchmarks.lm import train

    keras.backend.clear_session()
    record = train.main(train_argv)
    test_ppl = record.pop("test_ppl")
    (stopped / "record.json").write_text(json.dumps(record))

    run.main(argv)  # resumes that run in a process of its own
    out = capsys.readouterr().out
    assert out.count("done before, kept") == 4
    assert "[4/5] adam-lr0.01-s0: test perplexity" in out  # its progress line
    resumed = json.loads((stopped / "record.json").read_text())
    assert resumed["test_ppl"] == test_ppl  # resumed from its checkpoint, not redone
    assert [e["loss"] for e in resumed["epochs"]] == [e["loss"] for e in record["epochs"]]
    assert resumed["args"]["lr"] == 0.01  # the sweep's rate, not the 2 of the arguments
    # what the made-up records hold is what the harness writes
    fake = json.loads((folder / "sgd-lr30-s0" / "record.json").read_text())
    assert set(fake) <= set(resumed) and set(fake["args"]) <= set(resumed["args"])
    report = (tmp_path / "lm_cpu.md").read_text()
    assert "| Polyak(SGD) lr 30 | 1 | 42.00 ± 0.00 |" in report
    assert f"| Adam lr 0.01 | 1 | {test_ppl:.2f} ± 0.00 |" in report


@pytest.mark.backend_independent
def test_a_run_stops_after_stop_patience_epochs_without_improvement():
    from benchmarks.lm import train

    def epochs(*improved):
        return {"epochs": [{"improved": i} for i in improved]}

    assert train.plateaued(epochs(True, False, False), 2)
    assert not train.plateaued(epochs(False, True, False), 2)  # improved one epoch ago
    assert not train.plateaued(epochs(False), 2)  # fewer epochs than the patience
    assert not train.plateaued(epochs(False, False, False), 0)  # 0: every epoch runs
    long = train.parse_args(["--profile", "cpu-long", "--data-dir", "x"])
    short = train.parse_args(["--profile", "cpu", "--data-dir", "x"])
    assert (long.epochs, long.patience, long.decay_from, long.stop_patience) == (15, 1, 8, 3)
    assert short.stop_patience == short.decay_from == 0 and long.batch_size == short.batch_size
    assert awd.PROFILES["cpu-long"] == awd.PROFILES["cpu"]  # the same model, trained longer


def test_a_run_stopped_by_the_plateau_rule_ends_and_says_so(tmp_path):
    import json

    run_dir = tmp_path / "run"
    _train(run_dir, "--epochs", "2", "--stop-patience", "2")
    # As if the first epoch had been perfect (perplexity 1, which no epoch can go below) and
    # the second no better: the next epoch cannot improve either, so the run stops after it.
    path = run_dir / "record.json"
    record = json.loads(path.read_text())
    record["epochs"][0]["valid_ppl"], record["epochs"][1]["improved"] = 1.0, False
    path.write_text(json.dumps(record))
    record = _train(run_dir, "--epochs", "8", "--stop-patience", "2", "--resume")
    assert [e["improved"] for e in record["epochs"]] == [True, False, False]
    assert record["stopped"] == "plateau" and record["best_epoch"] == 1
    assert _train(tmp_path / "capped", "--epochs", "1")["stopped"] == "epoch cap (1)"


@pytest.mark.backend_independent
def test_cpu_long_runs_each_optimizer_at_its_best_grid_rate(tmp_path):
    import json

    from benchmarks.lm import run

    folder = tmp_path / "lm" / "runs" / "cpu-long"
    args = argparse.Namespace(profile="cpu-long", suite="main", seeds=2, adam_lrs="0.01")
    grid = [name for name, _ in run.runs_for(args)]  # before the grid: the grid itself
    assert len(grid) == 3 * 2 + 2 * 4 and all(n.endswith("-s0") for n in grid)
    # the grid on seed 0, validation perplexity = test + 1 at the last epoch (_fake_record):
    # SGD best at 10, Lookahead(SGD) at 30, Polyak(SGD) a tie (the lower rate, 10), Adam at
    # 0.003, Lookahead(Adam) at 0.01
    ppl = {("sgd", 10): 90, ("sgd", 30): 95, ("lookahead-sgd", 10): 92,
           ("lookahead-sgd", 30): 88, ("polyak-sgd", 10): 91, ("polyak-sgd", 30): 91,
           ("adam", 0.001): 99, ("adam", 0.003): 85, ("adam", 0.005): 86, ("adam", 0.01): 87,
           ("lookahead-adam", 0.001): 98, ("lookahead-adam", 0.003): 86,
           ("lookahead-adam", 0.005): 85, ("lookahead-adam", 0.01): 84}

    def add(opt, lr, value, seed=0):
        _fake_record(folder, opt, lr, seed, value, name=f"{opt}-lr{lr:g}-s{seed}",
                     profile="cpu-long", source="ptb")

    def load():
        return run.load_records(argparse.Namespace(**vars(args), out=str(tmp_path)))

    for (opt, lr), value in ppl.items():
        if (opt, lr) != ("lookahead-adam", 0.01):
            add(opt, lr, value)
    records = load()
    # one grid point missing: its optimizer has no best rate yet, the others whose best lies
    # inside their grid have one, and the others run the paper's next rate beyond
    assert run.best_rates(args, records) == {"adam": 0.003}
    assert [n for n, _ in run.grid_runs(args, records)] == [
        "sgd-lr5-s0", "lookahead-sgd-lr50-s0", "polyak-sgd-lr5-s0", "lookahead-adam-lr0.01-s0"]
    # the runs still to do: the grid's, and one seed more of each of the 5 optimizers, counted
    # though their rates are not known yet
    run.main(["--profile", "cpu-long", "--seeds", "2", "--report", "--out", str(tmp_path)])
    assert ("**A partial sweep**: 9 runs of the main comparison (2 seeds) not finished yet: "
            "sgd-lr5-s0, lookahead-sgd-lr50-s0, polyak-sgd-lr5-s0, lookahead-adam-lr0.01-s0, "
            "seed 1 of each optimizer at the rate the grid search picks (and any rate the "
            "search adds beyond the grid's end where a best rate lies).") \
        in (tmp_path / "lm.md").read_text()
    # SGD's 5 is worse than its 10: 10 stays, inside what it tried; Lookahead(SGD)'s 50, the
    # top of the paper's grid, is better: nothing beyond to try; Polyak's 5 is better, so 2.5
    # is tried next, which is worse; Lookahead(Adam)'s 0.01, its best, brings 0.03, worse
    add("lookahead-adam", 0.01, 84)
    for opt, lr, value in (("sgd", 5, 93), ("lookahead-sgd", 50, 87), ("polyak-sgd", 5, 89)):
        add(opt, lr, value)
    assert [n for n, _ in run.grid_runs(args, load())] == ["polyak-sgd-lr2.5-s0",
                                                           "lookahead-adam-lr0.03-s0"]
    add("polyak-sgd", 2.5, 95)
    add("lookahead-adam", 0.03, 89)
    records = load()
    assert run.grid_runs(args, records) == []
    assert run.best_rates(args, records) == {"sgd": 10, "lookahead-sgd": 50, "polyak-sgd": 5,
                                             "adam": 0.003, "lookahead-adam": 0.01}
    best = {o: f"{lr:g}" for o, lr in run.best_rates(args, records).items()}
    assert [n for n, _ in run.runs_for(args, best)] == [
        "sgd-lr10-s0", "lookahead-sgd-lr50-s0", "polyak-sgd-lr5-s0", "adam-lr0.003-s0",
        "lookahead-adam-lr0.01-s0", "sgd-lr10-s1", "lookahead-sgd-lr50-s1", "polyak-sgd-lr5-s1",
        "adam-lr0.003-s1", "lookahead-adam-lr0.01-s1"]
    _fake_record(folder, "sgd", 10, 1, 80, name="sgd-lr10-s1", profile="cpu-long",
                 source="ptb")
    run.main(["--profile", "cpu-long", "--seeds", "2", "--report", "--out", str(tmp_path)])
    report = (tmp_path / "lm.md").read_text()
    assert "at the rate of its best validation perplexity on seed 0" in report
    assert "| SGD lr 10 | 2 | 85.00 ± 7.07 |" in report  # seeds 90 and 80
    assert "| Lookahead(Adam) lr 0.01 | 1 | 84.00 ± 0.00 |" in report
    # the runs still to do, named; the baseline beside the published LSTMs (85 − 114.5 ...)
    assert ("4 runs of the main comparison (2 seeds) not finished yet: "
            "lookahead-sgd-lr50-s1, polyak-sgd-lr5-s1, adam-lr0.003-s1, "
            "lookahead-adam-lr0.01-s1") in report
    assert "| Zaremba et al. 2014, 2 × 200 LSTM, no dropout | 5M | 114.5 | -29.50 |" in report
    # paired by seed, each at its own best rate: only seed 0 has both (87 − 90, 84 − 85)
    assert ("- Lookahead(SGD) − SGD (lr 50 against lr 10, each at its best rate): "
            "-3.00 ± 0.00 (1 of 1 seeds lower; per seed -3.00)") in report
    assert ("- Lookahead(Adam) − Adam (lr 0.01 against lr 0.003, each at its best rate): "
            "-1.00 ± 0.00 (1 of 1 seeds lower; per seed -1.00)") in report
    assert "Seed 0's runs also chose each optimizer's rate" in report
    # only Lookahead(SGD)'s 50 is at an end of what the search may try
    assert ("Best rates at an end of the paper's grid, where a rate beyond was not tried: "
            "Lookahead(SGD) 50 (highest).") in report
    assert ("the search starts from {10, 30} for the SGD family and {0.001, 0.003, 0.005, "
            "0.01} for the Adam family") in report
    assert "| Merity et al. 2018, AWD-LSTM 3 × 1150, fine-tuned | 24M | 57.3 | +27.70 |" in report
    assert "halved after 1 epoch without a better validation perplexity and after every " \
        "epoch from epoch 8 on." in report
    # the last of three epochs: validation t + 1 after t + 2, so −100 / (t + 2) %, from
    # t = 80 (−1.22 %) to t = 90 (−1.09 %) among the main comparison's runs
    assert ("0 of these 6 runs ended on the plateau rule, 6 at the cap of 15 epochs. In its "
            "last epoch, each run's validation perplexity changed by -1.22 % to -1.09 %.") \
        in report
    assert json.loads((tmp_path / "lm.json").read_text())["profile"] == "cpu-long"
    assert not (tmp_path / "lm_cpu.md").exists()  # the cpu profile's report is left alone


@pytest.mark.backend_independent
def test_cpu_long_tunes_lookahead_over_k_and_alpha_at_its_inner_optimizers_rate(tmp_path):
    """App. C.3's protocol, by hand: the inner optimizer's rate is chosen first; Lookahead runs
    there over k × α on seed 0, the setting of best validation perplexity is chosen, and it and
    its inner optimizer run the other seeds; test perplexity is reported for those only."""
    import json

    from benchmarks.lm import run

    folder = tmp_path / "lm" / "runs" / "cpu-long"
    args = argparse.Namespace(profile="cpu-long", suite="all", seeds=2, adam_lrs="0.01",
                              out=str(tmp_path))

    def add(opt, lr, seed, value, k=5, alpha=0.5):
        name = run._la_run(opt, f"{lr:g}", str(k), str(alpha), seed)[0]
        _fake_record(folder, opt, lr, seed, value, k=k, alpha=alpha, name=name,
                     profile="cpu-long", source="ptb")

    # the rate grids (validation = test + 1): SGD best at 10, Adam at 0.003; the Lookaheads'
    # own best rates (30, 0.01) are not the ones their k × α grids take
    for opt, rates in (("sgd", {10: 90, 30: 95, 5: 93}), ("lookahead-sgd", {10: 92, 30: 88,
                                                                           50: 89}),
                       ("polyak-sgd", {10: 94, 30: 96, 5: 97}),
                       ("adam", {0.001: 99, 0.003: 85, 0.005: 86, 0.01: 87}),
                       ("lookahead-adam", {0.001: 98, 0.003: 86, 0.005: 85, 0.01: 84,
                                           0.03: 90})):
        for lr, value in rates.items():
            add(opt, lr, 0, value)
    assert run.best_rates(args, run.load_records(args)) == {
        "sgd": 10, "lookahead-sgd": 30, "polyak-sgd": 10, "adam": 0.003, "lookahead-adam": 0.01}
    # k 5, α 0.5 at the inner's rate is a run of the rate grid: three settings left for each
    assert [n for n, _ in run.k_alpha_runs(args, run.load_records(args))] == [
        "lookahead-sgd-lr10-k5-a0.8-s0", "lookahead-sgd-lr10-k10-a0.5-s0",
        "lookahead-sgd-lr10-k10-a0.8-s0", "lookahead-adam-lr0.003-k5-a0.8-s0",
        "lookahead-adam-lr0.003-k10-a0.5-s0", "lookahead-adam-lr0.003-k10-a0.8-s0"]
    # Lookahead(SGD): k 5, α 0.8 the best validation (90); Lookahead(Adam): k 10, α 0.5 (84)
    for k, alpha, value in ((5, 0.8, 89), (10, 0.5, 97.25), (10, 0.8, 90)):
        add("lookahead-sgd", 10, 0, value, k, alpha)
    for k, alpha, value in ((5, 0.8, 87), (10, 0.5, 83), (10, 0.8, 84)):
        add("lookahead-adam", 0.003, 0, value, k, alpha)
    assert [n for n, _ in run.k_alpha_runs(args, run.load_records(args))] == [
        "sgd-lr10-s1", "lookahead-sgd-lr10-k5-a0.8-s1", "adam-lr0.003-s1",
        "lookahead-adam-lr0.003-k10-a0.5-s1"]
    run.main(["--profile", "cpu-long", "--seeds", "2", "--report", "--out", str(tmp_path)])
    report = (tmp_path / "lm.md").read_text()
    assert "**Not finished**: 4 runs of this protocol" in report
    assert "| Lookahead(SGD) | 10 | 5 | 0.8 | 90.00 **chosen** |" in report
    assert "| Lookahead(SGD) | 10 | 10 | 0.5 | 98.25 |" in report
    assert "| Lookahead(Adam) | 0.003 | 10 | 0.5 | 84.00 **chosen** |" in report
    # seed 1: SGD 80, Lookahead(SGD) 82; Adam 86, Lookahead(Adam) 81. Paired: SGD −1, +2
    # (mean +0.5, std 1.5·√2); Adam −2, −5 (mean −3.5, the same std)
    for opt, lr, value, k, alpha in (("sgd", 10, 80, 5, 0.5), ("lookahead-sgd", 10, 82, 5, 0.8),
                                     ("adam", 0.003, 86, 5, 0.5),
                                     ("lookahead-adam", 0.003, 81, 10, 0.5)):
        add(opt, lr, 1, value, k, alpha)
    assert run.k_alpha_runs(args, run.load_records(args)) == []
    run.main(["--profile", "cpu-long", "--seeds", "2", "--report", "--out", str(tmp_path)])
    report = (tmp_path / "lm.md").read_text()
    assert "Not finished" not in report.split("## Outer momentum")[0]  # the protocol's part
    std = f"{1.5 * math.sqrt(2):.2f}"
    assert (f"Lookahead(SGD) − SGD at lr 10: **+0.50 ± {std}** (1 of 2 seeds lower; per seed "
            "-1.00, +2.00)") in report
    assert (f"Lookahead(Adam) − Adam at lr 0.003: **-3.50 ± {std}** (2 of 2 seeds lower; per "
            "seed -2.00, -5.00)") in report
    assert "| Lookahead(Adam) lr 0.003, k=10, α=0.5 | 2 | 82.00 ± 1.41 | 83.00, 81.00 |" in report
    protocol = json.loads((tmp_path / "lm.json").read_text())["protocol"]
    assert protocol["lookahead-adam"] == {
        "lr": 0.003, "k": 10, "alpha": 0.5, "seeds": 2, "test_ppl": [83, 81],
        "inner_test_ppl": [85, 86], "difference_mean": -3.5,
        "difference_std": pytest.approx(1.5 * math.sqrt(2))}
    # a setting that was not chosen shows no test perplexity anywhere (k 10, α 0.5: 97.25)
    assert "97.25" not in report


@pytest.mark.backend_independent
def test_a_sweep_refuses_a_record_made_with_other_arguments(tmp_path):
    """Arguments after `--` are not part of a run's name: a record made without them is not
    taken for a run that asks for them; the sweep stops before running anything."""
    from benchmarks.lm import run

    folder = tmp_path / "lm" / "runs" / "cpu"
    _fake_record(folder, "sgd", 30, 0, 60, name="sgd-lr30-s0")  # made at the cpu profile's 3
    argv = ["--seeds", "1", "--out", str(tmp_path), "--", "--synthetic", "100"]
    with pytest.raises(SystemExit) as refused:
        run.main(argv + ["--epochs", "2", "--clipnorm", "0.5"])
    message = str(refused.value)
    assert "sgd-lr30-s0: the record" in message and str(folder / "sgd-lr30-s0") in message
    assert "--epochs 3 (asked: 2); --clipnorm 0.25 (asked: 0.5)" in message
    assert not list(folder.glob("*.log"))  # nothing ran
    # the same arguments: the record is kept (the sweep goes on to the runs it lacks, which
    # the report-only call below does not run)
    run.main(["--report", *argv])
    assert "| SGD lr 30 | 1 | 60.00 ± 0.00 |" in (tmp_path / "lm_cpu.md").read_text()


@pytest.mark.slow
def test_a_tiny_snoo_run_trains_with_outer_momentum_and_reports_its_slow_weights(tmp_path):
    from benchmarks.lm import train

    args = train.parse_args([*TINY, "--optimizer", "snoo-adam", "--lr", "0.01",
                             "--slow-momentum", "0.5", "--alpha", "1.2"])
    opt = train.build_optimizer(args)
    assert (opt.slow_momentum, opt.slow_step_size, opt.sync_period) == (0.5, 1.2, 3)
    record = _train(tmp_path / "run", "--optimizer", "snoo-adam", "--lr", "0.01",
                    "--slow-momentum", "0.5", "--alpha", "1.2", "--epochs", "1")
    assert record["args"]["slow_momentum"] == 0.5 and math.isfinite(record["test_ppl"])


@pytest.mark.backend_independent
def test_outer_momentum_is_chosen_on_validation_and_set_beside_lookahead_and_adam(tmp_path):
    """The SNOO suite by hand: at Adam's chosen rate, its k × μ grid on seed 0, the choice by
    validation perplexity, its seeds, and the three arms' paired differences."""
    import json

    from benchmarks.lm import run

    folder = tmp_path / "lm" / "runs" / "cpu-long"
    args = argparse.Namespace(profile="cpu-long", suite="all", seeds=2, adam_lrs="0.01",
                              out=str(tmp_path))

    def add(opt, lr, seed, value, k=5, alpha=0.5, mu=None):
        if mu is None:
            name = run._la_run(opt, f"{lr:g}", str(k), str(alpha), seed)[0]
            argv = ("--synthetic", "100")
        else:
            name = run._outer_run(f"{lr:g}", str(k), str(alpha), str(mu), seed)[0]
            argv = ("--synthetic", "100", "--slow-momentum", str(mu))
        _fake_record(folder, opt, lr, seed, value, k=k, alpha=alpha, name=name,
                     profile="cpu-long", source="ptb", argv=argv)

    for lr, value in {0.001: 99, 0.003: 85, 0.005: 86, 0.01: 87}.items():
        add("adam", lr, 0, value)
    # Lookahead(Adam) at Adam's 0.003: k 10, α 0.5 chosen (validation 84)
    for (k, alpha), value in {(5, 0.5): 86, (5, 0.8): 87, (10, 0.5): 83, (10, 0.8): 84}.items():
        add("lookahead-adam", 0.003, 0, value, k, alpha)
    assert [n for n, _ in run.outer_runs(args, run.load_records(args))] == [
        "snoo-adam-lr0.003-k20-a0.8-m0.5-s0", "snoo-adam-lr0.003-k20-a0.8-m0.75-s0",
        "snoo-adam-lr0.003-k100-a0.8-m0.5-s0", "snoo-adam-lr0.003-k100-a0.8-m0.75-s0"]
    for (k, mu), value in {(20, 0.5): 82, (20, 0.75): 80, (100, 0.5): 84, (100, 0.75): 83}.items():
        add("snoo-adam", 0.003, 0, value, k, 0.8, mu)
    assert [n for n, _ in run.outer_runs(args, run.load_records(args))] == [
        "snoo-adam-lr0.003-k20-a0.8-m0.75-s1"]
    # seed 1: Adam 86, Lookahead(Adam) 81, SNOO 79
    add("adam", 0.003, 1, 86)
    add("lookahead-adam", 0.003, 1, 81, 10, 0.5)
    add("snoo-adam", 0.003, 1, 79, 20, 0.8, 0.75)
    assert run.outer_runs(args, run.load_records(args)) == []
    run.main(["--profile", "cpu-long", "--seeds", "2", "--report", "--out", str(tmp_path)])
    section = (tmp_path / "lm.md").read_text().split("## Outer momentum (SNOO)")[1]
    section = section.split("\n## ")[0]
    assert "| 20 | 0.8 | 0.75 | 81.00 **chosen** |" in section
    assert "| 100 | 0.8 | 0.5 | 85.00 |" in section
    assert ("| SNOO(Adam), k=20, outer rate 0.8, μ 0.75 at lr 0.003 | 2 | 79.50 ± 0.71 | "
            "80.00, 79.00 |") in section
    # paired by seed: SNOO − Adam −5, −7; SNOO − Lookahead −3, −2; Lookahead − Adam −2, −5
    assert ("- SNOO(Adam) − Adam: -6.00 ± 1.41 (2 of 2 seeds lower; per seed -5.00, -7.00)"
            in section)
    assert ("- SNOO(Adam) − Lookahead(Adam): -2.50 ± 0.71 (2 of 2 seeds lower; per seed -3.00, "
            "-2.00)") in section
    assert ("- Lookahead(Adam) − Adam: -3.50 ± 2.12 (2 of 2 seeds lower; per seed -2.00, -5.00)"
            in section)
    assert "compute-factor gains of 1.5–2.5×" in section and "Not finished" not in section
    assert (tmp_path / "lm_outer_curves.png").stat().st_size > 0
    outer = json.loads((tmp_path / "lm.json").read_text())["outer_momentum"]
    assert (outer["k"], outer["outer_rate"], outer["momentum"]) == (20, 0.8, 0.75)
    assert outer["arms"]["SNOO(Adam) - Adam"] == [-5, -7]
