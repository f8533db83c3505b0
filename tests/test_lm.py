"""The language-model suite's data (benchmarks/lm/data.py): PTB files in Mikolov's format, the
Multi30k stand-in, the stateful batches, AWD-LSTM's windows and perplexity, each against a
hand computation."""

import gzip
import math
import tarfile

import numpy as np
import pytest

from benchmarks.lm import data

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


def test_ptb_files_give_the_vocabulary_and_streams_by_hand(tmp_path):
    _write_ptb(tmp_path / "simple-examples" / "data")  # found at any depth
    d = data.load(str(tmp_path))
    assert d["source"] == "ptb"
    vocab = _expected_ptb_vocab()
    assert d["vocab"] == vocab
    ids = {t: i for i, t in enumerate(vocab)}
    expected_train = [ids[t] for t in
                      "the cat sat on the mat <eos> the dog sat <eos> <unk> ate N fish <eos>".split()]
    np.testing.assert_array_equal(d["train"], expected_train)
    np.testing.assert_array_equal(d["valid"], [ids["the"], ids["cat"], ids["ate"], ids["<eos>"]])
    # a word the training text lacks is <unk> (PTB's own <unk>, which is in its vocabulary)
    np.testing.assert_array_equal(d["test"], [ids["<unk>"], ids["dog"], ids["sat"], ids["<eos>"]])
    assert d["train"].dtype == np.int32


def test_a_tar_gz_of_the_ptb_folder_reads_the_same(tmp_path):
    _write_ptb(tmp_path / "src" / "simple-examples" / "data")
    archive = tmp_path / "simple-examples.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "simple-examples", arcname="simple-examples")
    from_tar, from_folder = data.load(str(archive)), data.load(str(tmp_path / "src"))
    assert from_tar["vocab"] == from_folder["vocab"]
    for split in data.SPLITS:
        np.testing.assert_array_equal(from_tar[split], from_folder[split])


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


def test_the_whole_vocabulary_is_kept_when_it_fits():
    assert data.build_vocab([["b", "a"], ["a"]], size=10) == ["<eos>", "a", "b"]
    with pytest.raises(ValueError, match="at least 3"):
        data.build_vocab([["a"]], size=2)


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


def test_batchify_makes_parallel_streams_that_continue_across_batches():
    np.testing.assert_array_equal(data.batchify(np.arange(10), 3),
                                  [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    with pytest.raises(ValueError, match="batch_size"):
        data.batchify(np.arange(10), 0)
    with pytest.raises(ValueError, match="fewer than 2"):
        data.batchify(np.arange(5), 3)


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


def test_perplexity_is_over_tokens_not_a_mean_over_batches():
    # batch 1: two tokens at probability 1/2; batch 2: one token at 1/8. Over the split:
    # exp((2 ln 2 + ln 8) / 3) = 2^(5/3); the mean of the batches' perplexities would be 5.
    nll = 2 * math.log(2) + math.log(8)
    assert data.perplexity(nll, 3) == pytest.approx(2 ** (5 / 3), rel=1e-12)
    # a uniform model over V words has perplexity V
    assert data.perplexity(1000 * math.log(10_000), 1000) == pytest.approx(10_000, rel=1e-12)
    with pytest.raises(ValueError, match="no tokens"):
        data.perplexity(1.0, 0)
