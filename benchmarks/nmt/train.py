"""English-to-German translation with a Transformer and Lookahead: the paper's WMT'14 experiment
(Sec. 4.3, Table 4, Fig. 7b), at the paper's size on an accelerator or small on a CPU.

One run trains one optimizer with one seed, epoch by epoch (each epoch its own shuffle, then
the validation loss and, with --valid-bleu, the validation set translated and scored), then
translates the test set greedily and scores it with sacreBLEU; it writes its record (training
curve, per-epoch numbers, BLEU, samples) as JSON with a checkpoint after every epoch, from which
--resume continues (the dropout seeds restored with the weights):

    python -m benchmarks.nmt.train --optimizer lookahead-adam               # paper profile
    python -m benchmarks.nmt.train --profile cpu --optimizer adam \\
        --data-dir ../shared/data/multi30k --run-dir runs/adam-s0           # CPU profile
    python -m benchmarks.nmt.train --profile cpu --optimizer lookahead-adam --lr 0.04 --k 10 \\
        --data-dir ../shared/data/multi30k --strategy mirrored --cpu-replicas 2

Profiles (every value can be overridden):
- paper: Transformer base (6+6 layers, width 512, 8 heads, feed-forward 2048, dropout 0.1),
  tfds wmt14_translate/de-en reversed to En->De, batch 256 sentence pairs, sequences of up to
  64 subwords, 100k steps.
- cpu: 2+2 layers, width 128, 4 heads, feed-forward 512, Multi30k (--data-dir), batch 64,
  sequences of up to 40 subwords, 2 epochs (906 steps, warm-up 400): about 3.5 minutes per run
  on 2 cores.
- cpu-long: the cpu model trained to a plateau (App. C.4 trains to convergence): validation
  BLEU (greedy, sacreBLEU) after every epoch, the run stopped once 3 epochs in a row bring no
  better one (--stop-patience), at most 40 epochs; the test BLEU is that of the weights of the
  best validation BLEU. About 1.4 minutes an epoch plus decoding.

Optimizers (Sec. 4.3): adam and lookahead-adam with the Transformer schedule,
lr = lr_scale * min(step^-0.5, step * warmup^-1.5) (our reading of the paper's learning rates
0.02-0.06: the constant of a warm-up then inverse-square-root schedule, peaking at
lr_scale / sqrt(warmup)); lookahead-adam-nowarmup, the same without warm-up (the rate of step
`warmup` from the start, then the same decay); adafactor (Keras's, with its relative step:
min(lr, 1/sqrt(step)) * max(1e-3, RMS of the weight), --lr defaulting to 0.01, the cap of
Shazeer & Stern 2018). The paper's grid: --lr in {0.02, 0.04, 0.06}, --k in {5, 10}, alpha 0.5.

Data: tfds by default; --data-dir reads parallel text, one sentence per line, line i of
<split>.en matching line i of <split>.de (optionally .gz), splits train, val and test (the first
file matching test*.en). Subword vocabularies (WordPiece, learned from the training text with
tensorflow-text through keras-hub, the successor of keras-nlp) are saved in --run-dir and reused.
Shapes are static: training batches are padded to one of a few lengths (--length-buckets: the
paper profile buckets WMT's sentences, the cpu profile pads everything to --max-length), so XLA
and TPUs compile once per length.
"""

import argparse
import functools
import glob
import json
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks import _harness as h
from examples import _data, _distribute
from examples._args import fill_from_profile, require_counts

PROFILES = {
    "paper": dict(layers=6, width=512, heads=8, ffn=2048, dropout=0.1, batch_size=256,
                  max_length=64, vocab_size=32000, epochs=1, steps=100_000, warmup=4000,
                  limit=0, test_limit=0, length_buckets=(16, 24, 32, 48)),
    "cpu": dict(layers=2, width=128, heads=4, ffn=512, dropout=0.1, batch_size=64,
                max_length=40, vocab_size=6000, epochs=2, steps=0, warmup=400,
                limit=0, test_limit=0, length_buckets=()),
    # the cpu model trained to a plateau: validation BLEU after every epoch, stopped once 3
    # epochs in a row bring no better one, at most 40 epochs; test BLEU on the weights of the
    # best validation BLEU
    "cpu-long": dict(layers=2, width=128, heads=4, ffn=512, dropout=0.1, batch_size=64,
                     max_length=40, vocab_size=6000, epochs=40, steps=0, warmup=400,
                     limit=0, test_limit=0, length_buckets=(), stop_patience=3, valid_bleu=1),
}
for _profile in PROFILES.values():
    _profile.setdefault("stop_patience", 0)
    _profile.setdefault("valid_bleu", 0)
# --lr when not given: the Transformer schedule's scale for the Adam family (the paper's best,
# Sec. 4.3), and for Adafactor the cap on its relative step size, rho_t = min(0.01, 1/sqrt(t))
# (Shazeer & Stern 2018). Keras's own Adafactor default, 0.001, trained the cpu profile
# to BLEU 4.9 where Adam reached 26 (commit b8deb89's results).
LR_DEFAULTS = {"adam": 0.04, "adafactor": 0.01}
OPTIMIZERS = ("adam", "lookahead-adam", "lookahead-adam-nowarmup", "adafactor")
RESERVED = ["[PAD]", "[UNK]", "[START]", "[END]"]

# What a record written before an argument existed ran with: its value then (benchmarks/_sweep.py
# compares a record's arguments with those a sweep asks for).
BEFORE_IT_EXISTED = {"stop_patience": 0, "valid_bleu": 0}

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="paper")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="lookahead-adam")
    p.add_argument("--data-dir", help="parallel text files (see above); default: tfds")
    p.add_argument("--tfds-dir", help="tfds data_dir")
    p.add_argument("--run-dir", default="translate_run", help="the run's record goes here")
    p.add_argument("--vocab-dir", help="where the vocabularies are learned once and reused "
                                       "(default: --run-dir)")
    for name, kind in (("layers", int), ("width", int), ("heads", int), ("ffn", int),
                       ("dropout", float), ("batch_size", int), ("max_length", int),
                       ("vocab_size", int), ("epochs", int), ("steps", int), ("warmup", int),
                       ("limit", int), ("test_limit", int)):
        p.add_argument("--" + name.replace("_", "-"), type=kind,
                       help="default: the profile's" + (" (steps: 0 = whole epochs)"
                                                        if name == "steps" else ""))
    p.add_argument("--stop-patience", type=int,
                   help="stop once this many epochs in a row bring no better validation BLEU "
                        "(0: every epoch runs; needs --valid-bleu 1)")
    p.add_argument("--valid-bleu", type=int, choices=(0, 1),
                   help="1: translate the validation set after every epoch and score it; the "
                        "test BLEU is then that of the epoch with the best (default: the "
                        "profile's)")
    p.add_argument("--resume", action="store_true",
                   help="continue from --run-dir's last finished epoch (refused if none)")
    p.add_argument("--length-buckets", type=_lengths,
                   help="training batches are padded to the smallest of these lengths (and "
                        "--max-length) that holds their longest sentence; comma-separated, "
                        "'' for none (default: the profile's)")
    p.add_argument("--lr", type=float,
                   help="Adam and Lookahead(Adam): lr_scale of the Transformer schedule "
                        f"(default {LR_DEFAULTS['adam']}); adafactor: the cap on its relative "
                        f"step (default {LR_DEFAULTS['adafactor']})")
    p.add_argument("--k", type=int, default=10, help="Lookahead's sync period (paper best: 10)")
    p.add_argument("--alpha", type=float, default=0.5, help="Lookahead's slow step size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=20, help="steps between recorded losses")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--checkpoint-dir", help="multiworker: checkpoint every epoch here and "
                                            "resume from here")
    _distribute.add_arguments(p)
    _distribute.add_custom_loop_argument(p)
    args = p.parse_args(argv)
    fill_from_profile(args, PROFILES[args.profile])
    require_counts(p, args, positive=("layers", "width", "heads", "ffn", "batch_size",
                                      "max_length", "vocab_size", "epochs", "warmup", "k",
                                      "log_every"),
                   non_negative=("steps", "limit", "test_limit", "stop_patience"))
    if args.stop_patience and not args.valid_bleu:
        p.error(f"--stop-patience {args.stop_patience}: the plateau rule reads the validation "
                "BLEU; add --valid-bleu 1")
    if args.width % args.heads:
        p.error(f"--width {args.width} / --heads {args.heads}: width must divide by heads")
    if not 0.0 <= args.dropout < 1.0:
        p.error(f"--dropout {args.dropout}: must be in [0, 1)")
    if args.lr is None:
        args.lr = LR_DEFAULTS["adafactor" if args.optimizer == "adafactor" else "adam"]
    if args.lr <= 0:
        p.error(f"--lr {args.lr}: must be positive")
    if args.max_length < 4:
        p.error(f"--max-length {args.max_length}: must be 4 or more")
    buckets = args.length_buckets
    if any(b < 2 or b >= args.max_length for b in buckets) or list(buckets) != sorted(set(buckets)):
        p.error(f"--length-buckets {','.join(map(str, buckets))}: must increase, each from 2 "
                f"to below --max-length {args.max_length}")
    return args


def _lengths(text):
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated whole numbers") from None


# -- data ------------------------------------------------------------------------------------------

def read_parallel(folder, split):
    """(English, German) sentence lists of one split of a parallel-text folder."""
    pattern = "test*" if split == "test" else split
    found = sorted(glob.glob(os.path.join(folder, f"{pattern}.en")) +
                   glob.glob(os.path.join(folder, f"{pattern}.en.gz")))
    if not found:
        raise SystemExit(f"--data-dir: no {pattern}.en[.gz] in {folder!r}")
    en_path = found[0]
    de_path = en_path.replace(".en", ".de", 1) if ".en.gz" in en_path else en_path[:-3] + ".de"
    if not os.path.exists(de_path):
        raise SystemExit(f"--data-dir: {en_path!r} has no German side {de_path!r}")
    en, de = _data.read_lines(en_path), _data.read_lines(de_path)
    if len(en) != len(de):
        raise SystemExit(f"--data-dir: {en_path!r} has {len(en)} lines but {de_path!r} has "
                         f"{len(de)}: the sides must align line by line")
    return en, de


def load_text(args):
    """{split: (English sentences, German sentences)} for train, val and test."""
    if args.data_dir:
        data = {s: read_parallel(args.data_dir, s) for s in ("train", "val", "test")}
    else:
        import tensorflow_datasets as tfds

        data = {}
        for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
            ds = tfds.load("wmt14_translate/de-en", split=name, data_dir=args.tfds_dir)
            pairs = [(ex["en"].decode(), ex["de"].decode()) for ex in tfds.as_numpy(ds)]
            data[split] = ([e for e, _ in pairs], [d for _, d in pairs])
    if args.limit:
        data["train"] = tuple(side[:args.limit] for side in data["train"])
    if args.test_limit:
        data["test"] = tuple(side[:args.test_limit] for side in data["test"])
    return data


def tokenizers(args, train_en, train_de):
    """WordPiece tokenizers per language, learned from the training text once and saved."""
    import keras_hub
    import tensorflow as tf

    folder = args.vocab_dir or args.run_dir
    os.makedirs(folder, exist_ok=True)
    out = {}
    for lang, text in (("en", train_en), ("de", train_de)):
        path = os.path.join(folder, f"vocab.{lang}.{args.vocab_size}.txt")
        if not os.path.exists(path):
            keras_hub.tokenizers.compute_word_piece_vocabulary(
                tf.data.Dataset.from_tensor_slices(text).batch(1000), args.vocab_size,
                vocabulary_output_file=path + f".{os.getpid()}.tmp", reserved_tokens=RESERVED)
            os.replace(path + f".{os.getpid()}.tmp", path)  # workers may race
        out[lang] = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=path, lowercase=False, strip_accents=False, oov_token="[UNK]")
    return out


def pipeline(args, toks, en, de, training, epoch=None):
    """Batches of ({"encoder": en ids, "decoder": [START] de ids}, de ids [END]), zero-padded.

    Every batch has a static shape: training batches are full and padded to the smallest of
    --length-buckets and --max-length that holds their longest sentence (bucketing by length:
    one compiled program per bucket under XLA or on a TPU, and less padding than one length for
    all); evaluation batches are padded to --max-length."""
    import tensorflow as tf

    n = args.max_length
    start, end = toks["de"].token_to_id("[START]"), toks["de"].token_to_id("[END]")

    def encode(e, d):
        d_ids = toks["de"](d)[:n - 1]
        return ({"encoder": toks["en"](e)[:n], "decoder": tf.concat([[start], d_ids], 0)},
                tf.concat([d_ids, [end]], 0))

    ds = tf.data.Dataset.from_tensor_slices((en, de)).map(
        encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).cache()
    if not training:
        return ds.padded_batch(args.batch_size, padded_shapes=(
            {"encoder": [n], "decoder": [n]}, [n])).prefetch(tf.data.AUTOTUNE)
    if epoch is None:  # every epoch from one iterator (the custom loop's single call)
        ds = ds.shuffle(len(en), seed=args.seed, reshuffle_each_iteration=True).repeat()
    else:  # epoch `epoch` alone, in an order of its own that a resumed run draws again
        ds = ds.shuffle(len(en), seed=args.seed * 100_003 + epoch,
                        reshuffle_each_iteration=False).repeat()
    # bucket i holds lengths below boundary i and is padded to boundary i - 1
    boundaries = [b + 1 for b in args.length_buckets] + [n + 1]
    return ds.bucket_by_sequence_length(
        lambda x, y: tf.maximum(tf.shape(x["encoder"])[0], tf.shape(y)[0]), boundaries,
        [args.batch_size] * (len(boundaries) + 1), pad_to_bucket_boundary=True,
        drop_remainder=True).prefetch(tf.data.AUTOTUNE)


# -- model -----------------------------------------------------------------------------------------

def build_model(args, src_vocab, tgt_vocab):
    """An encoder-decoder Transformer from keras-hub layers (post-norm, as Vaswani et al.)."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(args.seed)
    n = args.max_length  # the longest input; shorter batches (length buckets) are fine
    enc_ids = keras.Input((None,), dtype="int32", name="encoder")
    dec_ids = keras.Input((None,), dtype="int32", name="decoder")
    x = keras_hub.layers.TokenAndPositionEmbedding(src_vocab, n, args.width,
                                                   mask_zero=True)(enc_ids)
    for _ in range(args.layers):
        x = keras_hub.layers.TransformerEncoder(args.ffn, args.heads, dropout=args.dropout)(x)
    y = keras_hub.layers.TokenAndPositionEmbedding(tgt_vocab, n, args.width,
                                                   mask_zero=True)(dec_ids)
    for _ in range(args.layers):
        y = keras_hub.layers.TransformerDecoder(args.ffn, args.heads, dropout=args.dropout)(
            y, x)
    logits = keras.layers.Dense(tgt_vocab, name="logits")(y)
    return keras.Model([enc_ids, dec_ids], logits, name="transformer")


def transformer_schedule(scale, warmup, use_warmup=True):
    """lr_scale * min(step^-0.5, step * warmup^-1.5): linear warm-up, then inverse square-root
    decay (Vaswani et al.'s shape; the width factor is left out, so that lr_scale / sqrt(warmup)
    is the peak rate: 0.04 with warm-up 4000 peaks at 6.3e-4). Without warm-up, the rate at step
    `warmup` until then. A Keras LearningRateSchedule, registered so that a saved optimizer
    loads again (the class is made on first use: this script imports Keras lazily)."""
    return _schedule_class()(scale, warmup, use_warmup)


@functools.cache
def _schedule_class():
    import keras

    @keras.saving.register_keras_serializable(package="keras_lookahead_examples")
    class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self, scale, warmup, use_warmup=True):
            self.scale, self.warmup, self.use_warmup = float(scale), int(warmup), bool(use_warmup)

        def __call__(self, step):
            step = keras.ops.cast(step, "float32") + 1.0
            if self.use_warmup:
                decay = keras.ops.minimum(keras.ops.rsqrt(step), step * self.warmup ** -1.5)
            else:
                decay = keras.ops.rsqrt(keras.ops.maximum(step, float(self.warmup)))
            return self.scale * decay

        def get_config(self):
            return {"scale": self.scale, "warmup": self.warmup, "use_warmup": self.use_warmup}

    return TransformerSchedule


def build_optimizer(args):
    import keras

    from keras_lookahead import Lookahead

    if args.optimizer == "adafactor":
        return keras.optimizers.Adafactor(args.lr)
    schedule = transformer_schedule(args.lr, args.warmup,
                                    use_warmup=args.optimizer != "lookahead-adam-nowarmup")
    adam = keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9)
    if args.optimizer == "adam":
        return adam
    return Lookahead(adam, sync_period=args.k, slow_step_size=args.alpha)


def masked_loss(y_true, logits):
    import keras

    loss = keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True)
    mask = keras.ops.cast(keras.ops.not_equal(y_true, 0), loss.dtype)
    return keras.ops.sum(loss * mask) / keras.ops.maximum(keras.ops.sum(mask), 1.0)


# -- decoding and BLEU -------------------------------------------------------------------------

def translate(model, toks, sentences, args, batch=128):
    """Greedy decoding with keras-hub's GreedySampler, then detokenization."""
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    n = args.max_length
    start, end = toks["de"].token_to_id("[START]"), toks["de"].token_to_id("[END]")
    sampler = keras_hub.samplers.GreedySampler()
    vocab = toks["de"].get_vocabulary()
    out = []
    for i in range(0, len(sentences), batch):
        rows = toks["en"](tf.constant(sentences[i:i + batch]))
        rows = rows.to_list() if hasattr(rows, "to_list") else [list(r) for r in rows]
        enc = np.zeros((len(rows), n), "int32")
        for j, r in enumerate(rows):
            enc[j, :min(n, len(r))] = r[:n]
        enc = keras.ops.convert_to_tensor(enc)
        prompt = np.zeros((len(rows), n), "int32")
        prompt[:, 0] = start

        def next_token(prompt, cache, index, enc=enc):
            logits = model([enc, keras.ops.convert_to_tensor(prompt, "int32")],
                           training=False)[:, index - 1, :]
            return logits, None, cache

        ids = keras.ops.convert_to_numpy(sampler(
            next=next_token, prompt=keras.ops.convert_to_tensor(prompt), index=1,
            stop_token_ids=[end]))
        for row in ids:
            row = list(row[1:])
            row = row[:row.index(end)] if end in row else row
            out.append(detokenize([vocab[t] for t in row if t != 0]))
    return out


def detokenize(pieces):
    """WordPiece pieces back to text: a "##" piece continues the previous word."""
    words = []
    for piece in pieces:
        if piece.startswith("##") and words:
            words[-1] += piece[2:]
        else:
            words.append(piece)
    return " ".join(words)


def bleu(hypotheses, references):
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


# -- a run -----------------------------------------------------------------------------------------

# What a resumed run may change: where it writes, how loud it is, and its epoch cap.
_NOT_FOR_RESUME = ("resume", "verbose", "run_dir", "vocab_dir", "tfds_dir", "checkpoint_dir",
                   "epochs")


def run(args):
    import keras

    dist = _distribute.make(args, global_batch=args.batch_size)
    if dist.custom_loop and (args.valid_bleu or args.resume):
        raise SystemExit("--valid-bleu / --resume: the epoch-by-epoch run (validation BLEU, "
                         "resuming) is fit's; the custom loop (multiworker) trains its epochs "
                         "in one call and resumes from --checkpoint-dir")
    keras.utils.set_random_seed(args.seed)
    data = load_text(args)
    toks = tokenizers(args, *data["train"])
    val = pipeline(args, toks, *data["val"], training=False)
    steps_per_epoch = len(data["train"][0]) // args.batch_size
    if args.steps:
        steps_per_epoch = min(steps_per_epoch, max(1, args.steps // args.epochs))
    record_path = os.path.join(args.run_dir, "record.json")
    if args.resume:
        record = _resumable(args, record_path)
        model = _restored(args, dist, toks, record)
    else:
        if os.path.exists(record_path):
            raise SystemExit(f"--run-dir {args.run_dir!r} holds a run already: --resume it, "
                             "or give another folder")
        with dist.scope():
            model = _built(args, toks)
        record = {"args": dict(vars(args)), "train_pairs": len(data["train"][0]),
                  "steps_per_epoch": steps_per_epoch, "curve": [], "epochs": [],
                  "params": int(sum(math.prod(v.shape) for v in model.trainable_variables))}
    h.record_machine(record)
    print(f"{args.optimizer} (lr scale {args.lr}, seed {args.seed}): "
          f"{record['train_pairs']:,} pairs, {record['params']:,} parameters")
    if dist.custom_loop:  # always under multiworker: Keras's fit cannot run there (keras #20585)
        _custom_loop_epochs(args, dist, model, toks, data, val, steps_per_epoch, record)
    else:
        while len(record["epochs"]) < args.epochs and not plateaued(record, args.stop_patience):
            _epoch(args, model, toks, data, val, steps_per_epoch, record)
            if dist.is_chief:
                _checkpoint(args, model, record, record_path)
        record["stopped"] = ("plateau" if plateaued(record, args.stop_patience)
                             else f"epoch cap ({args.epochs})")
    _test(args, model, toks, data, record)
    if dist.is_chief:
        os.makedirs(args.run_dir, exist_ok=True)
        h.write_json(record_path, record)
    print(f"test BLEU {record['bleu']:.2f} ({args.optimizer}, seed {args.seed})")
    return record


def _built(args, toks):
    import keras

    model = build_model(args, toks["en"].vocabulary_size(), toks["de"].vocabulary_size())
    model.compile(optimizer=build_optimizer(args), loss=masked_loss,
                  jit_compile=args.jit_compile or "auto")
    keras.utils.set_random_seed(args.seed)
    return model


def _paths(args):
    """The weights of the best validation BLEU (the evaluated weights: Lookahead's slow ones)."""
    return os.path.join(args.run_dir, "best.weights.h5")


def _resumable(args, record_path):
    """The record of the run to continue, checked to be the run asked for."""
    if not os.path.exists(record_path):
        raise SystemExit(f"--resume: {args.run_dir!r} has no record.json of an earlier run")
    with open(record_path) as f:
        record = json.load(f)
    if "bleu" in record:
        raise SystemExit(f"--resume: the run in {args.run_dir!r} has finished")
    then = {k: v for k, v in record["args"].items() if k not in _NOT_FOR_RESUME}
    changed = [f"--{k.replace('_', '-')} {v!r} (now {getattr(args, k, None)!r})"
               for k, v in then.items() if _plain(v) != _plain(getattr(args, k, None))]
    if changed:
        raise SystemExit(f"--resume: the run in {args.run_dir!r} was made with other "
                         f"arguments: {'; '.join(changed)}")
    if not record.get("checkpoint") or not os.path.exists(
            os.path.join(args.run_dir, record["checkpoint"])):
        raise SystemExit(f"--resume: the checkpoint {record.get('checkpoint')!r} of the run in "
                         f"{args.run_dir!r} is missing (checkpoints stay out of git); start "
                         "the run again in a fresh folder")
    return record


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _restored(args, dist, toks, record):
    """The model and optimizer, with the weights, optimizer state and dropout seeds of the
    record's last finished epoch."""
    import keras

    with dist.scope():
        model = _built(args, toks)
        model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(args.run_dir, record["checkpoint"]))
    for variable, value in zip(_random_states(model), record["random_states"]):
        variable.assign(keras.ops.convert_to_tensor(value, variable.dtype))
    return model


def _reseed_unseeded_dropout(args, epoch):
    """On PyTorch, Keras's dropout without a seed draws from torch's global generator
    (keras/src/backend/torch/random.py takes its unseeded fast path), which Keras's first fit
    call in a process draws from too: so each epoch reseeds it from (seed, epoch) at its first
    batch, and a resumed run draws the masks an uninterrupted one does. Nothing on the other
    backends, whose dropout draws from the layers' seed generators (checkpointed with them)."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(args.seed * 100_003 + epoch)


def _random_states(model):
    """The model's variables that are not weights: its dropout layers' seed generators."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _reported(args, model):
    """A context with the weights the method reports in the model (Lookahead: the slow)."""
    import contextlib

    from keras_lookahead import use_slow_weights

    if args.optimizer.startswith("lookahead"):
        return use_slow_weights(model)
    return contextlib.nullcontext()


def _epoch(args, model, toks, data, val, steps_per_epoch, record):
    """One epoch of fit (its own shuffle: the same order in a resumed run), validation loss
    and, with --valid-bleu, validation BLEU on the reported weights; appends its entry."""
    import keras

    epoch = len(record["epochs"])
    train = pipeline(args, toks, *data["train"], training=True, epoch=epoch)

    class Curve(keras.callbacks.Callback):
        """Training loss every --log-every steps (Fig. 7b plots loss against inner steps)."""

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                _reseed_unseeded_dropout(args, epoch)

        def on_train_batch_end(self, batch, logs=None):
            step = epoch * steps_per_epoch + batch + 1
            if step % args.log_every == 0:
                record["curve"].append([step, float(logs["loss"])])

    from keras_lookahead import SwapSlowWeights

    callbacks = [Curve()]
    if args.optimizer.startswith("lookahead"):
        callbacks.insert(0, SwapSlowWeights(at_end="fast"))  # validation on the slow weights
    start = time.time()
    history = model.fit(train, epochs=1, steps_per_epoch=steps_per_epoch, validation_data=val,
                        callbacks=callbacks, verbose=args.verbose, shuffle=False)
    entry = {"epoch": epoch + 1, "loss": float(history.history["loss"][-1]),
             "val_loss": float(history.history["val_loss"][-1]),
             "seconds": time.time() - start}
    if args.valid_bleu:
        start = time.time()
        en, de = data["val"]
        with _reported(args, model):
            entry["valid_bleu"] = bleu(translate(model, toks, en, args), de)
            best = max([e["valid_bleu"] for e in record["epochs"]], default=-1.0)
            entry["improved"] = entry["valid_bleu"] > best
            if entry["improved"]:
                os.makedirs(args.run_dir, exist_ok=True)
                path = _paths(args)
                model.save_weights(path + ".tmp.weights.h5")
                os.replace(path + ".tmp.weights.h5", path)
        entry["decode_seconds"] = time.time() - start
        print(f"  epoch {epoch + 1}: validation BLEU {entry['valid_bleu']:.2f}"
              + (" (best so far)" if entry["improved"] else ""))
    record["epochs"].append(entry)


def _checkpoint(args, model, record, record_path):
    """The fast weights, optimizer state and dropout seeds of the epoch just finished, and the
    record naming them, replaced in one step each (a run stopped anywhere here resumes from a
    consistent pair)."""
    import keras

    os.makedirs(args.run_dir, exist_ok=True)
    previous = record.get("checkpoint")
    record["checkpoint"] = f"epoch{len(record['epochs'])}.weights.h5"
    model.save_weights(os.path.join(args.run_dir, record["checkpoint"]))
    record["random_states"] = [keras.ops.convert_to_numpy(v).tolist()
                               for v in _random_states(model)]
    h.write_json(record_path, record)
    if previous and previous != record["checkpoint"]:
        os.remove(os.path.join(args.run_dir, previous))


def plateaued(record, stop_patience):
    """Have the last `stop_patience` epochs all failed to improve validation BLEU (0: never)?"""
    last = record["epochs"][-stop_patience:] if stop_patience else []
    return len(last) == stop_patience > 0 and not any(e.get("improved") for e in last)


def _test(args, model, toks, data, record):
    """Test BLEU on the reported weights: of the best validation BLEU with --valid-bleu (the
    saved weights), else of the last epoch; and a few sample translations."""
    import contextlib

    en, de = data["test"]
    if args.valid_bleu and record.get("epochs"):
        best = max(range(len(record["epochs"])), key=lambda i: record["epochs"][i]["valid_bleu"])
        record["best_epoch"] = best + 1
        record["valid_bleu"] = record["epochs"][best]["valid_bleu"]
        model.load_weights(_paths(args))  # the reported weights of that epoch, as they were
        context = contextlib.nullcontext()
    else:
        context = _reported(args, model)
    start = time.time()
    with context:
        hyps = translate(model, toks, en, args)
    record["bleu"] = bleu(hyps, de)
    record["test_decode_seconds"] = time.time() - start
    record["train_seconds"] = sum(e["seconds"] for e in record["epochs"])
    record["samples"] = [{"en": e, "reference": d, "output": hyp}
                         for e, d, hyp in list(zip(en, de, hyps))[:5]]


def _custom_loop_epochs(args, dist, model, toks, data, val, steps_per_epoch, record):
    """Under a multiworker strategy: every epoch in one call of examples/_loop.py's loop."""
    import keras

    from examples._loop import CustomLoop
    from keras_lookahead import SwapSlowWeights

    class Curve(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            step = self.epoch * steps_per_epoch + batch + 1
            if step % args.log_every == 0:
                record["curve"].append([step, float(logs["loss"])])

        def on_epoch_end(self, epoch, logs=None):
            record["epochs"].append({"epoch": epoch + 1, "loss": float(logs["loss"]),
                                     "val_loss": float(logs.get("val_loss", "nan"))})

    callbacks = [Curve()]
    if args.optimizer.startswith("lookahead"):
        callbacks.insert(0, SwapSlowWeights(at_end="fast"))
    train = pipeline(args, toks, *data["train"], training=True)
    start = time.time()
    CustomLoop(dist, model, masked_loss, jit_compile=args.jit_compile,
               checkpoint_dir=args.checkpoint_dir).fit(
        train, args.epochs, steps_per_epoch, validation_data=val, callbacks=callbacks,
        verbose=args.verbose)
    for e in record["epochs"]:
        e["seconds"] = (time.time() - start) / len(record["epochs"])
    record["stopped"] = f"epoch cap ({args.epochs})"


def main(argv=None):
    return _distribute.main(__spec__.name, parse_args, run, argv)


if __name__ == "__main__":
    main()
