"""Word-level language modelling with AWD-LSTM and Lookahead: the paper's Penn Treebank
experiment (Table 3, Fig. 7), at the paper's size on an accelerator or small on a CPU.

One run trains one optimizer with one seed and writes its record (per epoch: training loss,
validation perplexity on the slow weights for Lookahead, learning rate; at the end, test
perplexity at the best validation epoch) as JSON in --run-dir, with a checkpoint after every
epoch, from which an interrupted run resumes exactly:

    python -m benchmarks.lm.train --data-dir DIR --optimizer lookahead-sgd --lr 30   # paper
    python -m benchmarks.lm.train --profile cpu --data-dir ../shared/data/multi30k \\
        --optimizer adam --lr 0.003 --run-dir runs/adam-s0

Profiles (every value can be overridden):
- paper: AWD-LSTM (3 LSTM layers of 1150 units, embeddings of 400 tied to the softmax; dropouts
  and AR/TAR in benchmarks/lm/model.py), batch 80, windows of N(70, 5) tokens (N(35, 5) one time
  in twenty) with the learning rate scaled by length / 70, gradient norm clipped at 0.25 and
  weight decay 1.2e-6 on the inner optimizer, 750 epochs, the learning rate halved when the
  validation perplexity has not improved for 15 epochs.
- cpu: 2 layers of 256, embeddings of 128, batch 40, windows of 35, 3 epochs, halving after 1
  epoch without improvement (sized so that run.py's main sweep, 21 runs of about 2 minutes,
  takes about 45 minutes on 2 cores).
- cpu-long: the cpu model and batches trained to a plateau in 15 epochs: the rate halved after
  each epoch without a better validation perplexity and, from epoch 8 on, after every epoch
  (--decay-from, the schedule of Zaremba et al. 2014), so that the last epoch trains at 1/128
  of the rate or less; the run stopped early after 3 epochs in a row without a better validation
  perplexity (--stop-patience). About 30 minutes a run on PTB on 2 cores. The record says which
  rule ended it ("stopped").

Optimizers: sgd (no momentum, as AWD-LSTM), adam, lookahead-sgd and lookahead-adam (--k,
--alpha; evaluated on the slow weights), snoo-adam (Lookahead(adam) with outer momentum
--slow-momentum, Nesterov, outer rate --alpha: SNOO), and polyak-sgd: SGD evaluated on the
uniform average of the weights after every step once --polyak-start epochs are done (default:
half the epochs; AWD-LSTM's NT-ASGD starts averaging at a non-monotone trigger on validation
instead). Weight
decay is Keras's, which is decoupled: for SGD without momentum the same step as AWD-LSTM's L2
term, for Adam AdamW's form.

Data (--data-dir, required: no PTB copy comes with tfds): Mikolov's ptb.{train,valid,test}.txt
in a folder or a .tar.gz, or Multi30k's English side as a stand-in (benchmarks/lm/data.py);
--synthetic for a small generated corpus (tests and trying it out).

Perplexity is exp of the mean cross-entropy per token over the whole split, `<eos>` included,
evaluated with the training batch size (the streams' tail that does not fill a column is left
out, fewer than --batch-size tokens).
"""

import argparse
import contextlib
import json
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from benchmarks import _harness as h
from benchmarks.lm import data as lm_data
from examples import _distribute
from examples._args import fill_from_profile, require_counts

# patience: epochs without a better validation perplexity before the rate is halved;
# decay_from: the epoch from which the rate is halved after every epoch, better or not (0: never);
# stop_patience: epochs in a row without one before the run stops (0: it runs every epoch).
# "cpu-long" trains the cpu model to a plateau in 15 epochs, about 30 minutes on PTB on two
# cores: on the plateau rule alone, SGD at lr 10 and 30 still gained 2-3 % an epoch at epoch
# 15 with its rate never halved, so from epoch 8 the rate halves every epoch (as Zaremba et
# al. 2014's small model from epoch 5 of 13), and epoch 15 trains at 1/128 of it or less.
PROFILES = {
    "paper": dict(batch_size=80, bptt=70, variable_bptt=True, epochs=750, patience=15,
                  decay_from=0, stop_patience=0, clipnorm=0.25, weight_decay=1.2e-6),
    "cpu": dict(batch_size=40, bptt=35, variable_bptt=False, epochs=3, patience=1,
                decay_from=0, stop_patience=0, clipnorm=0.25, weight_decay=1.2e-6),
    "cpu-long": dict(batch_size=40, bptt=35, variable_bptt=False, epochs=15, patience=1,
                     decay_from=8, stop_patience=3, clipnorm=0.25, weight_decay=1.2e-6),
}
OPTIMIZERS = ("sgd", "adam", "lookahead-sgd", "lookahead-adam", "snoo-adam", "polyak-sgd")
DEFAULT_LR = {"sgd": 30.0, "adam": 0.003}  # AWD-LSTM's SGD rate; Adam: see run.py's grid
SYNTHETIC_VOCAB = 50


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="paper")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="lookahead-sgd")
    p.add_argument("--data-dir", help="PTB files or Multi30k (see above)")
    p.add_argument("--synthetic", type=int, default=0, metavar="TOKENS",
                   help="train on a generated corpus of this many tokens instead of --data-dir")
    p.add_argument("--run-dir", default="lm_run", help="the record and checkpoint go here")
    p.add_argument("--resume", action="store_true",
                   help="continue from --run-dir's checkpoint (refused if there is none)")
    for name, kind in (("batch_size", int), ("bptt", int), ("epochs", int), ("patience", int),
                       ("decay_from", int), ("stop_patience", int), ("clipnorm", float),
                       ("weight_decay", float)):
        p.add_argument("--" + name.replace("_", "-"), type=kind, help="default: the profile's")
    p.add_argument("--variable-bptt", type=int, choices=(0, 1),
                   help="1: AWD-LSTM's random window lengths (default: the profile's)")
    for name in ("layers", "hidden", "embedding"):
        p.add_argument("--" + name, type=int, help="model size (default: the profile's)")
    p.add_argument("--lr", type=float, help="the inner learning rate (default: sgd "
                   f"{DEFAULT_LR['sgd']}, adam {DEFAULT_LR['adam']})")
    p.add_argument("--k", type=int, default=5, help="Lookahead's sync period")
    p.add_argument("--alpha", type=float, default=0.5,
                   help="Lookahead's slow step size (snoo-adam: the outer rate)")
    p.add_argument("--slow-momentum", type=float, default=0.0,
                   help="snoo-adam's outer momentum μ in (0, 1)")
    p.add_argument("--polyak-start", type=int, metavar="EPOCHS",
                   help="polyak-sgd averages the steps after this many epochs (default: half)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    _distribute.add_arguments(p)
    args = p.parse_args(argv)
    fill_from_profile(args, PROFILES[args.profile])
    require_counts(p, args, positive=("batch_size", "bptt", "epochs", "patience", "k"),
                   non_negative=("synthetic", "stop_patience", "decay_from"))
    for name in ("layers", "hidden", "embedding"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} {value}: must be 1 or more")
    if not 0 <= args.slow_momentum < 1:
        p.error(f"--slow-momentum {args.slow_momentum}: must be in [0, 1)")
    if (args.optimizer == "snoo-adam") != (args.slow_momentum > 0):
        p.error(f"--slow-momentum {args.slow_momentum}: snoo-adam needs one in (0, 1), the "
                f"other optimizers none (--optimizer {args.optimizer})")
    if args.polyak_start is None:
        args.polyak_start = args.epochs // 2
    elif args.optimizer != "polyak-sgd":
        p.error(f"--polyak-start {args.polyak_start}: only polyak-sgd averages (--optimizer "
                f"{args.optimizer})")
    if not 0 <= args.polyak_start < args.epochs:
        p.error(f"--polyak-start {args.polyak_start}: must be from 0 to --epochs - 1 "
                f"({args.epochs - 1})")
    if args.variable_bptt is None:
        args.variable_bptt = int(PROFILES[args.profile]["variable_bptt"])
    for name in ("clipnorm", "weight_decay"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be 0 or more")
    if args.lr is None:
        args.lr = DEFAULT_LR[args.optimizer.split("-")[-1]]
    if not args.lr > 0:
        p.error(f"--lr {args.lr}: must be positive")
    if bool(args.data_dir) == bool(args.synthetic):
        p.error("give exactly one of --data-dir DIR and --synthetic TOKENS")
    return args


# -- data ------------------------------------------------------------------------------------------

def synthetic_corpus(tokens, seed=0):
    """A learnable corpus: a random sparse Markov chain over SYNTHETIC_VOCAB words (each word has
    three likely successors), as id streams with the same splits as the real data."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, SYNTHETIC_VOCAB, size=(SYNTHETIC_VOCAB, 3))
    ids = np.empty(tokens, np.int32)
    ids[0] = 0
    for i in range(1, tokens):
        ids[i] = successors[ids[i - 1], rng.integers(0, 3)]
    a, b = int(tokens * 0.8), int(tokens * 0.9)
    vocab = [f"w{i}" for i in range(SYNTHETIC_VOCAB)]
    return {"source": "synthetic", "vocab": vocab, "train": ids[:a], "valid": ids[a:b],
            "test": ids[b:]}


def load_corpus(args):
    if args.synthetic:
        return synthetic_corpus(args.synthetic, args.seed)
    return lm_data.load(args.data_dir)


def epoch_windows(args, epoch, n):
    """The (start, length) windows of one epoch: AWD-LSTM's random lengths drawn from a
    generator of (seed, epoch), so that a resumed run cuts the same windows."""
    rng = np.random.default_rng([args.seed, epoch]) if args.variable_bptt else None
    return list(lm_data.windows(n, args.bptt, rng))


# -- model and optimizer ---------------------------------------------------------------------------

def build_optimizer(args):
    import keras

    from keras_lookahead import Lookahead

    options = dict(global_clipnorm=args.clipnorm or None, weight_decay=args.weight_decay or None)
    if args.optimizer.endswith("sgd"):
        inner = keras.optimizers.SGD(args.lr, **options)
    else:
        inner = keras.optimizers.Adam(args.lr, **options)
    if args.optimizer.startswith(("lookahead", "snoo")):
        return Lookahead(inner, sync_period=args.k, slow_step_size=args.alpha,
                         slow_momentum=args.slow_momentum)
    return inner


def build(args, vocab_size):
    import keras

    from benchmarks.lm import model as awd

    sizes = {n: getattr(args, n) for n in ("layers", "hidden", "embedding")
             if getattr(args, n) is not None}
    model = awd.build(vocab_size, args.profile, args.batch_size, seed=args.seed, **sizes)
    model.compile(optimizer=build_optimizer(args),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=args.jit_compile or "auto")
    return model


def evaluate(model, streams, bptt):
    """(cross-entropy summed over every token of `streams`, number of tokens), with the state
    carried window to window from a reset, on the weights the model holds now."""
    from keras import ops

    model.reset_state()
    total, tokens = 0.0, 0
    for start, length in lm_data.windows(streams.shape[1], bptt):
        x = streams[:, start:start + length]
        y = streams[:, start + 1:start + 1 + length]
        logits = ops.convert_to_numpy(model(x, training=False)).astype(np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        total -= float(np.take_along_axis(log_probs, y[..., None], axis=-1).sum())
        tokens += y.size
    model.reset_state()
    return total, tokens


def reported_weights(model, args, polyak):
    """A context with the weights the method reports in the model: the slow weights for
    Lookahead, the average for polyak-sgd (once it has begun), the weights themselves
    otherwise."""
    import contextlib

    from keras_lookahead import use_slow_weights

    if args.optimizer.startswith(("lookahead", "snoo")):
        return use_slow_weights(model)
    return polyak.swapped_in() if polyak else contextlib.nullcontext()


def make_polyak(args, model):
    """polyak-sgd's average of the trainable weights (the LSTM's carried state and the dropout
    seeds are not weights to average); None for the other optimizers."""
    if args.optimizer != "polyak-sgd":
        return None
    from benchmarks._polyak import PolyakAverage

    return PolyakAverage(model, args.polyak_start, model.trainable_variables)


# -- the run ---------------------------------------------------------------------------------------

def _polyak_path(args, checkpoint):
    """polyak-sgd's average beside the checkpoint it goes with."""
    return os.path.join(args.run_dir, checkpoint.replace(".weights.h5", ".polyak.npz"))


def _paths(args):
    """The record, and the weights (with the optimizer's state) of the best epoch."""
    return (os.path.join(args.run_dir, "record.json"),
            os.path.join(args.run_dir, "best.weights.h5"))


def restored(args, dist, vocab_size, path):
    """The model and optimizer of `args`, built, with the state saved in `path`
    (`save_weights` keeps both; the optimizer must be built to take its part)."""
    with dist.scope():
        model = build(args, vocab_size)
        model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    return model


def random_states(model):
    """The model's variables that are not weights: its dropout layers' seed generators. The
    weights file leaves them out; a resumed run must draw the masks the full run would."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


# What a resumed run must share with the run it continues.
_SAME_FOR_RESUME = ("profile", "optimizer", "data_dir", "synthetic", "batch_size", "bptt",
                    "variable_bptt", "patience", "decay_from", "stop_patience", "clipnorm",
                    "weight_decay", "layers", "hidden", "embedding", "lr", "k", "alpha",
                    "polyak_start", "seed", "slow_momentum")
# What a record written before an argument existed ran with: its value then.
BEFORE_IT_EXISTED = {"decay_from": 0, "stop_patience": 0, "slow_momentum": 0.0}


def run(args):
    import keras

    dist = _distribute.make(args, global_batch=args.batch_size)
    if dist.replicas > 1:
        raise SystemExit(f"--strategy {args.strategy}: the LSTM's state is carried from batch to "
                         "batch in each batch row, which a strategy splitting batches over "
                         f"{dist.replicas} replicas does not keep; use one device")
    keras.utils.set_random_seed(args.seed)
    corpus = load_corpus(args)
    streams = {split: lm_data.batchify(corpus[split], args.batch_size)
               for split in lm_data.SPLITS}
    record_path, best = _paths(args)
    if args.resume:
        if not os.path.exists(record_path):
            raise SystemExit(f"--resume: {args.run_dir!r} has no record.json of an earlier run")
        with open(record_path) as f:
            record = json.load(f)
        then = {k: record["args"].get(k, BEFORE_IT_EXISTED.get(k)) for k in _SAME_FOR_RESUME}
        changed = [f"--{k.replace('_', '-')} {then[k]!r} (now {getattr(args, k)!r})"
                   for k in _SAME_FOR_RESUME if then[k] != getattr(args, k)
                   # only polyak-sgd uses its start (whose default follows --epochs)
                   and (k != "polyak_start" or args.optimizer == "polyak-sgd")]
        if changed:
            raise SystemExit(f"--resume: the run in {args.run_dir!r} was started with "
                             f"{', '.join(changed)}; resume it with the same arguments")
        checkpoint = os.path.join(args.run_dir, record["checkpoint"])
        average = (_polyak_path(args, record["checkpoint"]) if args.optimizer == "polyak-sgd"
                   else None)
        if lost := [os.path.basename(p) for p in (checkpoint, average)
                    if p and not os.path.exists(p)]:
            # checkpoints stay out of git: a record committed or copied without its folder
            raise SystemExit(f"--resume: {args.run_dir!r}'s record.json continues from "
                             f"{' and '.join(lost)}, which {'is' if len(lost) == 1 else 'are'} "
                             "not there; remove the folder to run it again from the start")
        model = restored(args, dist, record["vocab_size"], checkpoint)
        for variable, value in zip(random_states(model), record["random_states"]):
            variable.assign(np.asarray(value, keras.backend.standardize_dtype(variable.dtype)))
        polyak = make_polyak(args, model)
        if polyak:
            with np.load(average) as saved:
                polyak.restore(record["polyak_count"],
                               [saved[f"a{i}"] for i in range(len(saved.files))])
    else:
        if os.path.exists(record_path):
            raise SystemExit(f"--run-dir {args.run_dir!r} holds a run already: pass --resume "
                             "to continue it, or choose another --run-dir")
        record = {"args": dict(vars(args)), "source": corpus["source"],
                  "vocab_size": len(corpus["vocab"]),
                  "tokens": {s: int(len(corpus[s])) for s in lm_data.SPLITS}, "epochs": []}
        with dist.scope():
            model = build(args, len(corpus["vocab"]))
        record["params"] = int(model.count_params())
        polyak = make_polyak(args, model)
    h.record_machine(record)  # the machine it starts on, or another it resumes on
    print(f"{args.optimizer} (lr {args.lr}, seed {args.seed}): {record['source']}, "
          f"{record['tokens']['train']:,} training tokens, {record['params']:,} parameters")
    while len(record["epochs"]) < args.epochs and not plateaued(record, args.stop_patience):
        epoch = len(record["epochs"])
        entry = train_epoch(args, model, streams, epoch, record, polyak)
        os.makedirs(args.run_dir, exist_ok=True)
        if entry["improved"]:  # polyak-sgd: the average, which finish() then tests as it is
            with polyak.swapped_in() if polyak else contextlib.nullcontext():
                model.save_weights(best + ".tmp.weights.h5")
            os.replace(best + ".tmp.weights.h5", best)
        record["epochs"].append(entry)
        # The record names the checkpoint it goes with, and is replaced in one step: a run
        # stopped anywhere here resumes from a consistent pair.
        previous = record.get("checkpoint")
        record["checkpoint"] = f"epoch{epoch + 1}.weights.h5"
        model.save_weights(os.path.join(args.run_dir, record["checkpoint"]))
        record["random_states"] = [keras.ops.convert_to_numpy(v).tolist()
                                   for v in random_states(model)]
        if polyak:
            record["polyak_count"], arrays = polyak.state()
            path = _polyak_path(args, record["checkpoint"])
            with open(path + ".tmp", "wb") as f:
                np.savez(f, **{f"a{i}": a for i, a in enumerate(arrays)})
            os.replace(path + ".tmp", path)
        h.write_json(record_path, record)
        if previous:
            os.remove(os.path.join(args.run_dir, previous))
            if polyak:
                os.remove(_polyak_path(args, previous))
    record["stopped"] = ("plateau" if plateaued(record, args.stop_patience)
                         else f"epoch cap ({args.epochs})")
    finish(args, dist, streams, record, len(corpus["vocab"]))
    h.write_json(record_path, record)
    return record


def plateaued(record, stop_patience):
    """Have the last `stop_patience` epochs all failed to improve validation (0: never)?"""
    last = record["epochs"][-stop_patience:] if stop_patience else []
    return len(last) == stop_patience > 0 and not any(e["improved"] for e in last)


def train_epoch(args, model, streams, epoch, record, polyak):
    """One pass over the training streams from a reset state, then validation and the rate for
    the next epoch (the plateau rule, --decay-from); returns the epoch's entry of the record."""
    import keras

    opt = model.optimizer
    base_lr = float(keras.ops.convert_to_numpy(opt.learning_rate))
    cut = epoch_windows(args, epoch, streams["train"].shape[1])
    train = streams["train"]
    # One train_on_batch per window: windows differ in length (AWD-LSTM's random lengths, and
    # the last one), which fit's data adapters do not take within an epoch.
    bar = keras.utils.Progbar(len(cut), verbose=args.verbose, stateful_metrics=["loss"])
    model.reset_state()
    start, losses, weights = time.time(), 0.0, 0
    for i, (begin, length) in enumerate(cut):
        if args.variable_bptt:  # AWD-LSTM scales a window's rate by its length / bptt
            opt.learning_rate = base_lr * length / args.bptt
        loss = float(model.train_on_batch(train[:, begin:begin + length],
                                          train[:, begin + 1:begin + 1 + length]))
        if polyak:
            polyak.update(epoch)
        losses, weights = losses + loss * length, weights + length
        bar.update(i + 1, [("loss", losses / weights)])
    opt.learning_rate = base_lr
    seconds = time.time() - start
    with reported_weights(model, args, polyak):
        valid = lm_data.perplexity(*evaluate(model, streams["valid"], args.bptt))
    entry = {"epoch": epoch + 1, "loss": losses / weights,
             "valid_ppl": valid, "lr": base_lr, "windows": len(cut), "seconds": seconds}
    entry["improved"] = valid < min([e["valid_ppl"] for e in record["epochs"]] + [math.inf])
    waited = 0 if entry["improved"] else record["epochs"][-1]["waited"] + 1
    plateau = waited >= args.patience
    if plateau or 0 < args.decay_from <= epoch + 1:  # once, if both rules say so; on the
        opt.learning_rate = base_lr / 2              # inner rate through the wrapper
    if plateau:
        waited = 0
    entry["waited"] = waited
    print(f"epoch {epoch + 1}: loss {entry['loss']:.4f}, valid perplexity {valid:.2f}, "
          f"lr {base_lr:g}")
    return entry


def finish(args, dist, streams, record, vocab_size):
    """Test perplexity at the best validation epoch, on the weights kept from that epoch (for
    polyak-sgd, the average kept then)."""
    best = min(range(len(record["epochs"])), key=lambda i: record["epochs"][i]["valid_ppl"])
    model = restored(args, dist, vocab_size, _paths(args)[1])
    record["best_epoch"] = best + 1
    record["valid_ppl"] = record["epochs"][best]["valid_ppl"]
    with reported_weights(model, args, None):
        record["test_ppl"] = lm_data.perplexity(*evaluate(model, streams["test"], args.bptt))
    print(f"test perplexity {record['test_ppl']:.2f} at the best validation epoch "
          f"({best + 1}, validation {record['valid_ppl']:.2f})")


def main(argv=None):
    return _distribute.main(__spec__.name, parse_args, run, argv)


if __name__ == "__main__":
    main()
