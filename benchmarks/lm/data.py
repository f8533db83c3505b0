"""Word-level language-model data for the paper's Penn Treebank experiment (Table 3, Fig. 7).

Two sources, one form: a vocabulary (id 0 first, by falling training frequency) and, per split,
one stream of token ids with `<eos>` closing every sentence.

- Penn Treebank in Mikolov's preprocessing, the files every LSTM language-model paper uses:
  `ptb.train.txt`, `ptb.valid.txt`, `ptb.test.txt` (lower case, 10k word types with `<unk>`
  already in the text, one sentence a line). A folder holding them at any depth, or a .tar.gz of
  one (such as Mikolov's `simple-examples.tgz`).
- The English side of Multi30k (`train.en[.gz]`, `val.en[.gz]`, `test*.en[.gz]`), for machines
  where no PTB copy can be had: lower-cased, punctuation split off, the vocabulary capped at the
  10,000 most frequent training words, the rest `<unk>`. It is not PTB (captions, 407k training
  tokens against PTB's 930k), and every results file says which source it used.

Perplexity is exp of the mean per-token cross-entropy over a whole split (`perplexity`), not a
mean of per-batch perplexities.
"""

import collections
import glob
import math
import os
import re

import numpy as np

from examples import _data

EOS = "<eos>"
UNK = "<unk>"
VOCAB_SIZE = 10_000
PTB_FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
MULTI30K_PATTERNS = {"train": "train.en", "valid": "val.en", "test": "test*.en"}
SPLITS = ("train", "valid", "test")

# A word (letters and digits, hyphenated parts kept together), a clitic split off as PTB does
# ("man's" -> man 's), or one punctuation mark.
_TOKEN = re.compile(r"[^\W_]+(?:-[^\W_]+)*|'[^\W_]+|[^\w\s]|_")


def tokenize(line):
    """Lower-cased words with punctuation split off: "A man's T-shirt." -> a man 's t-shirt ."""
    return _TOKEN.findall(line.lower())


def _find(folder, patterns, what):
    """{split: path} for each split's glob pattern under `folder` (a .gz too, at any depth), or
    None if none is there; some but not all is an error that names what is missing."""
    found = {}
    for split, pattern in patterns.items():
        paths = sorted(glob.glob(os.path.join(folder, "**", pattern), recursive=True) +
                       glob.glob(os.path.join(folder, "**", pattern + ".gz"), recursive=True))
        if paths:
            found[split] = paths[0]
    if not found:
        return None
    missing = [patterns[s] for s in SPLITS if s not in found]
    if missing:
        raise SystemExit(f"--data-dir: {folder!r} has {what}'s "
                         f"{', '.join(sorted(found.values()))} but not {', '.join(missing)}: "
                         "all three splits are needed")
    return found


def find_ptb(folder):
    """{split: path} of the three PTB files under `folder`, or None if absent."""
    return _find(folder, PTB_FILES, "PTB")


def find_multi30k(folder):
    """{split: path} of Multi30k's English files under `folder`, or None if absent."""
    return _find(folder, MULTI30K_PATTERNS, "Multi30k")


def sentences(path, source):
    """The token lists of one file: PTB's lines split on spaces as they are (Mikolov's text is
    already lower case, with `<unk>` and `N` in it); Multi30k's lines through `tokenize`. Empty
    lines are skipped."""
    lines = _data.read_lines(path)
    split = str.split if source == "ptb" else tokenize
    return [tokens for tokens in map(split, lines) if tokens]


def build_vocab(train_sentences, size=VOCAB_SIZE):
    """The vocabulary of the training sentences: `<eos>` and the most frequent words, by
    falling count (ties in alphabetical order), with `<unk>` taking the last place when words
    had to be left out. PTB's 10k types (`<unk>` and `<eos>` included) fit as they are."""
    if size < 3:
        raise ValueError(f"vocabulary size must be at least 3 (<eos>, <unk>, a word), got {size}")
    counts = collections.Counter(t for s in train_sentences for t in s)
    counts[EOS] = sum(1 for _ in train_sentences)
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    if len(ranked) <= size:
        return ranked
    kept = [t for t in ranked if t != UNK][:size - 1]
    return kept + [UNK]


def encode(sentence_list, vocab):
    """One int32 stream: each sentence's ids, then `<eos>`'s; words not in `vocab` are `<unk>`."""
    index = {t: i for i, t in enumerate(vocab)}
    unk = index.get(UNK)
    ids = []
    for tokens in sentence_list:
        for t in tokens:
            i = index.get(t, unk)
            if i is None:
                raise ValueError(f"{t!r} is not in the vocabulary, which has no {UNK}")
            ids.append(i)
        ids.append(index[EOS])
    return np.asarray(ids, np.int32)


def load(data_dir, vocab_size=VOCAB_SIZE):
    """{"source", "vocab", "train", "valid", "test"} from PTB files or Multi30k's English side
    in `data_dir` (a folder, or a .tar.gz of one)."""
    folder = _data.local_folder(data_dir)
    files, source = find_ptb(folder), "ptb"
    if files is None:
        files, source = find_multi30k(folder), "multi30k-en"
    if files is None:
        raise SystemExit(f"--data-dir: {data_dir!r} has neither the PTB files "
                         f"({', '.join(PTB_FILES.values())}) nor Multi30k's English side "
                         f"({', '.join(p + '[.gz]' for p in MULTI30K_PATTERNS.values())})")
    text = {split: sentences(path, source) for split, path in files.items()}
    vocab = build_vocab(text["train"], vocab_size)
    return {"source": source, "vocab": vocab,
            **{split: encode(text[split], vocab) for split in SPLITS}}


def batchify(stream, batch_size):
    """`stream` as `batch_size` parallel streams, (batch_size, n): row i continues across
    batches, as the stateful model reads it. The tail that does not fill a column is dropped."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = len(stream) // batch_size
    if n < 2:
        raise ValueError(f"{len(stream)} tokens make fewer than 2 per stream at batch size "
                         f"{batch_size}")
    return np.asarray(stream[:n * batch_size]).reshape(batch_size, n)


def windows(n, bptt, rng=None, p=0.95, std=5.0, minimum=5):
    """(start, length) of consecutive windows over streams of n tokens (inputs at
    [start, start + length), targets one later), as AWD-LSTM cuts them.

    Without `rng` every window is `bptt` long. With it, a window's base length is `bptt` with
    probability `p` and `bptt / 2` otherwise, and its length is drawn from N(base, std), at
    least `minimum`; AWD-LSTM then scales the learning rate by length / bptt. The last window
    stops where the targets end.
    """
    start = 0
    while start < n - 1:
        if rng is None:
            length = bptt
        else:
            base = bptt if rng.random() < p else bptt / 2
            length = max(minimum, int(rng.normal(base, std)))
        length = min(length, n - 1 - start)
        yield start, length
        start += length


def perplexity(nll_sum, tokens):
    """exp(total cross-entropy / number of tokens): the split's perplexity from sums over all
    its batches (padding excluded from both)."""
    if tokens <= 0:
        raise ValueError(f"perplexity of no tokens (got {tokens})")
    return math.exp(float(nll_sum) / float(tokens))
