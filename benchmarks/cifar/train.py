"""Image classification with Lookahead: the paper's CIFAR experiments (Sec. 4.1, App. C.1), at
the paper's scale on an accelerator or at a small scale on a CPU, and an ImageNet configuration.

One run trains one optimizer with one seed and writes its per-epoch record as JSON:

    python -m benchmarks.cifar.train --optimizer lookahead-sgd           # the paper profile
    python -m benchmarks.cifar.train --profile cpu --optimizer adam \\
        --data-dir ../shared/data/cifar10_jpeg.tar.gz                    # the CPU profile
    python -m benchmarks.cifar.train --profile cpu --optimizer lookahead-sgd --k 10 --alpha 0.8 \\
        --lr 0.2 --momentum 0.95 --inner-state interpolate --seed 2 --out run.json
    python -m benchmarks.cifar.train --profile imagenet --optimizer lookahead-sgd --strategy tpu

Profiles (every value can be overridden from the command line):
- paper: ResNet-18 in the wide CIFAR variant of DeVries & Taylor's Cutout repository (3x3 stem,
  no max-pool, 64-128-256-512 channels), batch 128, 200 epochs, learning rate x0.2 at epochs
  60, 120 and 160, weight decay 5e-4 (L2), tfds cifar10 (--dataset cifar100 for CIFAR-100).
- cpu: the same network at a quarter of the width, a 5,000-image subset of CIFAR-10 (2,000
  test images), 12 epochs, the same schedule shape (x0.2 at epochs 4, 7 and 10, about 30%, 60%
  and 80% of training). About 2.5 minutes per run on 2 cores.
- cpu-long: the cpu network trained until the schedule ends at a low rate: 20,000 training
  images (the same subset for every seed), the whole test set, 20 epochs, x0.2 at epochs 10,
  15 and 18 (the rate ends at 0.008 of its start). About four times the cpu profile's work per
  epoch.
- tiny: one basic block per stage (ResNet-10) at width 16, batch 16, 2 epochs: the smallest
  run that goes through every part of the harness (the tests' profile, with --synthetic). Not
  narrower: PyTorch's CPU convolutions (oneDNN) hang or crash in the backward pass of a strided
  1x1 convolution with fewer than 16 input channels (docs/backends.md, "Few channels").
- imagenet: ResNet-50, batch 256, SGD lr 0.1 momentum 0.9, weight decay 1e-4, x0.1 at epochs
  30 and 60 of 90 (--milestones 30,48,58 --epochs 60 for the paper's aggressive schedule),
  k=5, alpha=0.5, tfds imagenet2012 (which needs the manual download tfds describes).

Optimizers (App. C.1): sgd (momentum), lookahead-sgd, polyak-sgd, adamw, adam, lookahead-adam,
lookahead-adamw (decoupled --adamw-weight-decay, no L2, like adamw).
polyak-sgd is SGD whose evaluation uses the uniform (Polyak-Ruppert) average of the weights
after every step from --polyak-start on (default: the first learning-rate decay), not an
exponential moving average.

Evaluation follows App. C.1: at every epoch end the test set and the training set (without
augmentation, no updates) are evaluated on the weights the method reports: the slow weights for
Lookahead, the average for polyak-sgd, the weights themselves otherwise.

Data: tfds by default (downloads where a network is available); --data-dir reads image folders,
<root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg, or a .tar.gz of them (extracted to a
temporary folder); --synthetic N makes N random images whose class is learnable (for tests).
"""

import argparse
import contextlib
import json
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks import _harness as h
from benchmarks._polyak import PolyakAverage
from examples import _distribute
from examples._args import fill_from_profile, require_counts
from examples._data import image_folder, local_folder

_STARTED = time.time()  # when this process loaded the harness
PROFILES = {
    "paper": dict(dataset="cifar10", model="resnet18", width=64, epochs=200, batch_size=128,
                  milestones=(60, 120, 160), lr_decay=0.2, weight_decay=5e-4, limit=0,
                  test_limit=0, image_size=32, lr=None, k=5, alpha=0.5, valid_limit=0),
    "cpu": dict(dataset="cifar10", model="resnet18", width=16, epochs=12, batch_size=128,
                milestones=(4, 7, 10), lr_decay=0.2, weight_decay=5e-4, limit=5000,
                test_limit=2000, image_size=32, lr=None, k=5, alpha=0.5),
    "cpu-long": dict(dataset="cifar10", model="resnet18", width=16, epochs=20, batch_size=128,
                     milestones=(10, 15, 18), lr_decay=0.2, weight_decay=5e-4, limit=20000,
                     test_limit=0, image_size=32, lr=None, k=5, alpha=0.5, valid_limit=5000),
    "imagenet": dict(dataset="imagenet2012", model="resnet50", width=64, epochs=90,
                     batch_size=256, milestones=(30, 60), lr_decay=0.1, weight_decay=1e-4,
                     limit=0, test_limit=0, image_size=224, lr=0.1, k=5, alpha=0.5),
    "tiny": dict(dataset="cifar10", model="resnet18", width=16, blocks=1, epochs=2,
                 batch_size=16, milestones=(), lr_decay=0.2, weight_decay=5e-4, limit=0,
                 test_limit=0, image_size=32, lr=None, k=5, alpha=0.5),
}
for _profile in PROFILES.values():
    _profile.setdefault("blocks", 2)
    _profile.setdefault("valid_limit", 0)
OPTIMIZERS = ("sgd", "lookahead-sgd", "polyak-sgd", "adamw", "adam", "lookahead-adam",
              "lookahead-adamw")
DEFAULT_LR = {"sgd": 0.1, "lookahead-sgd": 0.1, "polyak-sgd": 0.1, "adamw": 1e-3, "adam": 1e-3,
              "lookahead-adamw": 1e-3,
              "lookahead-adam": 1e-3}
STATS = {  # per-channel mean and std of the training images
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


# -- arguments -------------------------------------------------------------------------------------

def _ints(text):
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated epochs, e.g. 60,120") from None


# What a record written before an argument existed ran with: its value then (benchmarks/_sweep.py
# compares a record's arguments with those a sweep asks for).
BEFORE_IT_EXISTED = {"blocks": 2, "custom_loop": False, "local_workers": 0, "valid_limit": 0}

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="paper")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="lookahead-sgd")
    p.add_argument("--dataset", choices=sorted(STATS), help="tfds name (default: the profile's)")
    p.add_argument("--data-dir", help="image folders (train/, test/) or a .tar.gz of them")
    p.add_argument("--tfds-dir", help="tfds data_dir (where prepared datasets live)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="N noisy images with a colour per class instead of real data (tests)")
    p.add_argument("--limit", type=int, help="training images to use (0: all)")
    p.add_argument("--test-limit", type=int, help="test images to use (0: all)")
    p.add_argument("--valid-limit", type=int,
                   help="training images held out as a validation set, never trained on, "
                        "evaluated every epoch (hyperparameters are chosen on it); 0: none")
    p.add_argument("--model", choices=("resnet18", "resnet50"))
    p.add_argument("--width", type=int, help="ResNet-18's first-stage channels (paper: 64)")
    p.add_argument("--blocks", type=int, help="basic blocks per stage (ResNet-18: 2)")
    p.add_argument("--image-size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", type=int, default=0,
                   help="cap on steps per epoch (0: the whole training set; smoke runs)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="(inner) learning rate; default per optimizer")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=float,
                   help="L2 on kernels, as gradient += wd * w (not for adamw)")
    p.add_argument("--adamw-weight-decay", type=float, default=0.004,
                   help="adamw's decoupled decay (Keras's default)")
    p.add_argument("--milestones", type=_ints, help="epochs at which the lr is decayed")
    p.add_argument("--lr-decay", type=float, help="factor applied at each milestone")
    p.add_argument("--k", type=int, help="Lookahead's sync period")
    p.add_argument("--alpha", type=float, help="Lookahead's slow step size")
    p.add_argument("--inner-state", default="maintain",
                   choices=("maintain", "reset", "interpolate"))
    p.add_argument("--polyak-start", type=int, help="epoch from which polyak-sgd averages")
    p.add_argument("--no-train-eval", action="store_true",
                   help="skip the epoch-end pass over the training set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the run's record (JSON) here")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--checkpoint-dir", help="multiworker: checkpoint every epoch here and "
                                            "resume from here")
    _distribute.add_arguments(p)
    _distribute.add_custom_loop_argument(p)
    args = p.parse_args(argv)

    fill_from_profile(args, PROFILES[args.profile])
    if args.lr is None:
        args.lr = DEFAULT_LR[args.optimizer]
    if args.dataset == "imagenet2012" and args.profile != "imagenet" and args.model == "resnet18":
        p.error("--dataset imagenet2012: use --profile imagenet (ResNet-50, 224x224)")
    require_counts(p, args, positive=("epochs", "batch_size", "k", "width", "blocks",
                                      "image_size"),
                   non_negative=("limit", "test_limit", "synthetic", "steps_per_epoch",
                                 "valid_limit"))
    if args.lr <= 0 or not 0.0 <= args.momentum < 1.0:
        p.error(f"--lr {args.lr} / --momentum {args.momentum}: need lr > 0, 0 <= momentum < 1")
    if not 0.0 < args.lr_decay <= 1.0:
        p.error(f"--lr-decay {args.lr_decay}: must be in (0, 1]")
    if list(args.milestones) != sorted(set(args.milestones)) or any(
            m < 1 or m >= args.epochs for m in args.milestones):
        p.error(f"--milestones {','.join(map(str, args.milestones))}: must increase, each in "
                f"[1, {args.epochs - 1}] for {args.epochs} epochs")
    if args.polyak_start is None:
        args.polyak_start = args.milestones[0] if args.milestones else 0
    if sum(bool(x) for x in (args.data_dir, args.synthetic)) > 1:
        p.error("--data-dir and --synthetic: choose one source of data")
    return args


# -- data ------------------------------------------------------------------------------------------

def _subset(n_total, limit, seed):
    import numpy as np

    order = np.random.default_rng(seed).permutation(n_total)
    return order[:limit] if limit else order


def _train_and_valid(n_total, limit, valid, seed=0):
    """(training indices, validation indices) of n_total images, disjoint, the same for every
    seed: of a fixed permutation, the first `limit` train and the next `valid` validate (the
    training subset is the one a run without validation trains on); with no limit, all but the
    last `valid` train."""
    order = _subset(n_total, 0, seed)
    if valid >= n_total or (limit and limit + valid > n_total):
        raise SystemExit(f"--valid-limit {valid}: with --limit {limit or 'all'}, more images "
                         f"than the {n_total} of the training split")
    if limit:
        return order[:limit], order[limit:limit + valid]
    return order[:n_total - valid], order[n_total - valid:]


def load_splits(args):
    """(train, validation, test, classes, training images, validation images): tf.data
    datasets of (uint8 image, int32 label), unbatched; validation is None without
    --valid-limit. The validation images are training-split images the run never trains on."""
    import numpy as np
    import tensorflow as tf

    size = args.image_size
    if args.synthetic:
        rng = np.random.default_rng(1234)  # the same data for every seed
        classes = 10
        # learnable: each class has its own mean colour, under per-pixel noise
        y = rng.integers(0, classes, size=args.synthetic).astype("int32")
        colours = rng.integers(0, 256, size=(classes, 3))
        noise = rng.integers(0, 256, size=(args.synthetic, size, size, 3))
        x = ((noise + 3 * colours[y][:, None, None, :]) // 4).astype(np.uint8)
        split = max(1, int(0.8 * args.synthetic))
        make = tf.data.Dataset.from_tensor_slices
        tr, va = _train_and_valid(split, 0, args.valid_limit)
        tr = np.sort(tr)
        valid = make((x[np.sort(va)], y[np.sort(va)])) if args.valid_limit else None
        return (make((x[tr], y[tr])), valid, make((x[split:], y[split:])), classes, len(tr),
                args.valid_limit)
    if args.data_dir:
        root = local_folder(args.data_dir)
        tr_paths, tr_labels, names = image_folder(root, "train")
        te_paths, te_labels, _ = image_folder(root, "test", names)
        if args.valid_limit:  # the same subsets for every seed, disjoint
            keep_tr, keep_va = _train_and_valid(len(tr_paths), args.limit, args.valid_limit)
        else:
            keep_tr, keep_va = _subset(len(tr_paths), args.limit, 0), []
        keep_te = _subset(len(te_paths), args.test_limit, 1)

        def read(path, label):
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            image = tf.image.resize(image, (size, size)) if args.image_size != 32 else image
            return tf.cast(tf.ensure_shape(image, (size, size, 3)), tf.uint8), label

        def make(paths, labels, keep):
            ds = tf.data.Dataset.from_tensor_slices(
                ([paths[i] for i in keep], np.asarray(labels, "int32")[keep]))
            return ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

        valid = make(tr_paths, tr_labels, keep_va) if args.valid_limit else None
        return (make(tr_paths, tr_labels, keep_tr), valid, make(te_paths, te_labels, keep_te),
                len(names), len(keep_tr), len(keep_va))
    import tensorflow_datasets as tfds

    (train, test), info = tfds.load(args.dataset, split=["train", "validation" if
                                                        args.dataset == "imagenet2012" else
                                                        "test"],
                                    as_supervised=True, with_info=True, data_dir=args.tfds_dir,
                                    shuffle_files=False)
    classes = info.features["label"].num_classes
    valid = None
    if args.valid_limit:  # held out of the training split: after the limit, or its head
        if args.limit:
            valid = train.skip(args.limit).take(args.valid_limit)
        else:
            valid, train = train.take(args.valid_limit), train.skip(args.valid_limit)
    if args.limit:
        train = train.take(args.limit)
    n_train = int(train.cardinality())
    if n_train < 0:  # unknown to tf.data (tfds's mock data, say): from the info, or counted
        try:
            n_train = info.splits["train"].num_examples
            n_train = min(n_train, args.limit) if args.limit else n_train - args.valid_limit
        except KeyError:
            n_train = int(train.reduce(0, lambda n, _: n + 1))
    if args.test_limit:
        test = test.take(args.test_limit)
    big = round(size * 8 / 7)  # ImageNet: 256 for 224; crops of `size` are taken later

    def fit_size(image, label):
        if args.dataset == "imagenet2012":  # images of every size
            image = tf.image.resize(image, (big, big))
        return tf.cast(image, tf.uint8), tf.cast(label, tf.int32)

    if valid is not None:
        valid = valid.map(fit_size, num_parallel_calls=tf.data.AUTOTUNE)
    return (train.map(fit_size, num_parallel_calls=tf.data.AUTOTUNE), valid,
            test.map(fit_size, num_parallel_calls=tf.data.AUTOTUNE), classes, n_train,
            args.valid_limit)


def pipelines(args, train, valid, test, n_train):
    """Batched input pipelines: augmentation (CIFAR: 4-pixel zero padding, random crop,
    horizontal flip; ImageNet: random crop of the resized image, flip) and per-channel
    normalization, parallel and prefetched, deterministic for a seed. Small datasets are cached
    in memory after decoding."""
    import tensorflow as tf

    mean, std = STATS.get(args.dataset if not args.synthetic else "cifar10")
    mean = tf.constant(mean, tf.float32) * 255.0
    std = tf.constant(std, tf.float32) * 255.0
    size = args.image_size
    imagenet = args.dataset == "imagenet2012" and not args.synthetic and not args.data_dir
    pad = 0 if imagenet else 4

    def normalize(image):
        return (tf.cast(image, tf.float32) - mean) / std

    def center(image, label):
        if imagenet:
            image = tf.image.resize_with_crop_or_pad(image, size, size)
        return normalize(image), label

    def augment(index, item):
        image, label = item
        seed = tf.stack([tf.cast(args.seed, tf.int64), index])
        if pad:
            image = tf.image.pad_to_bounding_box(image, pad, pad, size + 2 * pad,
                                                 size + 2 * pad)
        image = tf.image.stateless_random_crop(image, (size, size, 3), seed=seed)
        image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
        return normalize(image), label

    static = args.strategy == "tpu"  # XLA on a TPU wants one shape: full batches only
    if not imagenet:
        train, test = train.cache(), test.cache()
        valid = valid.cache() if valid is not None else None
    fit_ds = (train.shuffle(min(n_train, 10_000 if imagenet else 50_000), seed=args.seed,
                            reshuffle_each_iteration=True)
              .repeat().enumerate()  # a distinct augmentation seed for every draw
              .map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
              .batch(args.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    def plain(ds):
        return (ds.map(center, num_parallel_calls=tf.data.AUTOTUNE)
                .batch(args.batch_size, drop_remainder=static).prefetch(tf.data.AUTOTUNE))

    return fit_ds, plain(valid) if valid is not None else None, plain(test), plain(train)


# -- model -----------------------------------------------------------------------------------------

def resnet18(classes, width, weight_decay, image_size, blocks=2):
    """ResNet-18 for 32x32 images as in DeVries & Taylor's Cutout repository: a 3x3 stem without
    max-pooling, four stages of two basic blocks (width x 1, 2, 4, 8 channels; strides 1, 2, 2,
    2), 1x1 convolution shortcuts where the shape changes, global average pooling, a linear
    layer. `blocks=1` (the tiny profile's ResNet-10) keeps one block per stage."""
    import keras

    reg = keras.regularizers.L2(weight_decay / 2) if weight_decay else None  # grad = wd * w

    def conv(x, filters, kernel, stride=1):
        return keras.layers.Conv2D(filters, kernel, strides=stride, padding="same",
                                   use_bias=False, kernel_regularizer=reg)(x)

    def bn(x):
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)

    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.ReLU()(bn(conv(inputs, width, 3)))
    for stage, filters in enumerate((width, 2 * width, 4 * width, 8 * width)):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            y = keras.layers.ReLU()(bn(conv(x, filters, 3, stride)))
            y = bn(conv(y, filters, 3))
            if stride != 1 or x.shape[-1] != filters:
                x = bn(conv(x, filters, 1, stride))
            x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, kernel_regularizer=reg)(x)
    return keras.Model(inputs, outputs, name="resnet18")


def build_model(args, classes):
    import keras

    keras.utils.set_random_seed(args.seed)
    l2 = 0.0 if args.optimizer.endswith("adamw") else args.weight_decay
    if args.model == "resnet50":
        model = keras.applications.ResNet50(weights=None, classes=classes,
                                            input_shape=(args.image_size, args.image_size, 3),
                                            classifier_activation=None)
        if not l2:
            return model
        # keras.applications takes no regularizer: rebuild from the config with one on every
        # kernel (a fresh model, initialized from the same seed)
        config = model.get_config()
        for layer in config["layers"]:
            if layer["class_name"] in ("Conv2D", "Dense"):
                layer["config"]["kernel_regularizer"] = keras.saving.serialize_keras_object(
                    keras.regularizers.L2(l2 / 2))
        keras.utils.set_random_seed(args.seed)
        return keras.Model.from_config(config)
    return resnet18(classes, args.width, l2, args.image_size, args.blocks)


def learning_rate(args, steps_per_epoch):
    import keras

    boundaries = [m * steps_per_epoch for m in args.milestones]
    values = [args.lr * args.lr_decay ** i for i in range(len(boundaries) + 1)]
    if not boundaries:
        return args.lr
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def build_optimizer(args, steps_per_epoch):
    import keras

    from keras_lookahead import Lookahead

    lr = learning_rate(args, steps_per_epoch)
    name = args.optimizer
    if name.endswith("sgd"):
        inner = keras.optimizers.SGD(lr, momentum=args.momentum)
    elif name.endswith("adamw"):  # decoupled decay
        inner = keras.optimizers.AdamW(lr, weight_decay=args.adamw_weight_decay)
    else:
        inner = keras.optimizers.Adam(lr)
    if name.startswith("lookahead"):
        return Lookahead(inner, sync_period=args.k, slow_step_size=args.alpha,
                         inner_state=args.inner_state)
    return inner


# -- evaluation on the weights a method reports ------------------------------------------------

def make_callbacks(args, model, valid, test, train_eval, record, evaluate):
    """`evaluate(dataset)` returns [loss, accuracy] on the weights the model holds."""
    import keras

    from keras_lookahead import SwapSlowWeights

    polyak = None
    if args.optimizer == "polyak-sgd":
        if keras.backend.backend() == "jax":
            # JAX's fit holds the weights outside the model's variables between epoch ends
            raise SystemExit("--optimizer polyak-sgd averages after every step: use "
                             "KERAS_BACKEND=tensorflow or torch")
        polyak = PolyakAverage(model, args.polyak_start)

    class EpochEnd(keras.callbacks.Callback):
        """Evaluates validation, test and training sets on the reported weights; records the
        epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.start = epoch, time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if polyak is not None:
                polyak.update(self.epoch)

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.start
            context = polyak.swapped_in() if polyak else contextlib.nullcontext()
            with context:  # Lookahead: SwapSlowWeights, listed before, put the slow ones in
                valid_loss, valid_acc = (evaluate(valid) if valid is not None
                                         else (float("nan"),) * 2)
                test_loss, test_acc = evaluate(test)
                train_loss, train_acc = (float("nan"),) * 2
                if not args.no_train_eval:
                    train_loss, train_acc = evaluate(train_eval)
            entry = {"epoch": epoch + 1, "seconds": seconds, "valid_loss": valid_loss,
                     "valid_accuracy": valid_acc, "test_loss": test_loss,
                     "test_accuracy": test_acc, "train_loss": train_loss,
                     "train_accuracy": train_acc, "fit_loss": float(logs.get("loss", "nan"))}
            record["epochs"].append(entry)
            if args.verbose:
                if valid is not None:
                    print(f"  epoch {epoch + 1}: validation accuracy {valid_acc:.4f}")
                print(f"  epoch {epoch + 1}: test accuracy {test_acc:.4f}, test loss "
                      f"{test_loss:.4f}, train loss {train_loss:.4f} (evaluated weights)")

    callbacks = [EpochEnd()]
    if args.optimizer.startswith("lookahead"):
        # the slow weights from each epoch's end to the next epoch's start, and at the end
        callbacks.insert(0, SwapSlowWeights(at_end="slow"))
    return callbacks


# -- a run -----------------------------------------------------------------------------------------

def run(args):
    import keras

    dist = _distribute.make(args, global_batch=args.batch_size)
    keras.utils.set_random_seed(args.seed)
    train, valid, test, classes, n_train, n_valid = load_splits(args)
    fit_ds, valid_ds, test_ds, train_eval = pipelines(args, train, valid, test, n_train)
    steps = n_train // args.batch_size
    if args.steps_per_epoch:
        steps = min(steps, args.steps_per_epoch)
    if steps < 1:
        raise SystemExit(f"--batch-size {args.batch_size}: larger than the {n_train} training "
                         "images")
    with dist.scope():
        model = build_model(args, classes)
        model.compile(optimizer=build_optimizer(args, steps),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=args.jit_compile or "auto")
    record = {"args": {k: v for k, v in vars(args).items()}, "classes": classes,
              "train_images": n_train, "valid_images": n_valid, "steps_per_epoch": steps,
              "epochs": [],
              "params": int(sum(math.prod(v.shape) for v in model.trainable_variables))}
    h.record_machine(record)
    print(f"{args.optimizer} (lr {args.lr}, seed {args.seed}) on {n_train} images, "
          f"{classes} classes, {record['params']:,} parameters, {dist.replicas} replica(s)")
    if dist.custom_loop:  # always under multiworker: Keras's fit cannot run there (keras #20585)
        from examples._loop import CustomLoop

        loop = CustomLoop(dist, model, keras.losses.SparseCategoricalCrossentropy(
            from_logits=True), accuracy=True, jit_compile=args.jit_compile,
            checkpoint_dir=args.checkpoint_dir)
        loop.fit(fit_ds, args.epochs, steps, verbose=args.verbose, callbacks=make_callbacks(
            args, model, valid_ds, test_ds, train_eval, record, loop.evaluate))
    else:
        model.fit(fit_ds, epochs=args.epochs, steps_per_epoch=steps, verbose=args.verbose,
                  shuffle=False,  # the pipeline shuffles
                  callbacks=make_callbacks(args, model, valid_ds, test_ds, train_eval, record,
                                           lambda ds: model.evaluate(ds, verbose=0)))
    final = record["epochs"][-1]
    record["final"] = {k: final[k] for k in ("valid_accuracy", "valid_loss", "test_accuracy",
                                             "test_loss", "train_loss")}
    record["wall_seconds"] = time.time() - _STARTED  # the whole run: imports, data, evaluations
    if args.out and dist.is_chief:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".tmp", "w") as f:
            json.dump(record, f, indent=1)
        os.replace(args.out + ".tmp", args.out)  # a finished run's file is complete
    print(f"final test accuracy {final['test_accuracy']:.4f} ({args.optimizer}, seed "
          f"{args.seed})")
    return record


def main(argv=None):
    return _distribute.main(__spec__.name, parse_args, run, argv)


if __name__ == "__main__":
    main()
