"""Fine-tuning a keras-hub Transformer with Lookahead(AdamW).

The usual recipe for fine-tuning a pretrained Transformer is AdamW with weight decay on the
weight matrices only: biases and LayerNorm scales and offsets are left out of the decay. With
Lookahead the recipe is unchanged, because weight decay belongs to the inner optimizer: set it
up on AdamW, then wrap it.

    inner = keras.optimizers.AdamW(learning_rate, weight_decay=0.01)
    inner.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(optimizer=Lookahead(inner, sync_period=5, slow_step_size=0.5), ...)

(`Lookahead(AdamW(), weight_decay=...)` is refused with a message saying where the option
goes: on the wrapper it would decay the weights a second time, or not at all.)

With a network you would start from pretrained weights:

    keras_hub.models.BertTextClassifier.from_preset("bert_tiny_en_uncased", num_classes=2)

This script needs no network, so it builds the same kind of model (a small BERT backbone and a
classification head, from keras-hub's layers) from a config, with random weights, and trains it
on a synthetic task that needs attention over the whole sequence: is the marker token anywhere
in it? Evaluation is on Lookahead's slow weights (`SwapSlowWeights`).

    python examples/finetune_keras_hub.py
    KERAS_BACKEND=jax python examples/finetune_keras_hub.py
"""

import argparse
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import keras

from keras_lookahead import Lookahead, SwapSlowWeights

from _args import require_counts

VOCABULARY = 100
MARKER = 7
NO_DECAY = ["bias", "gamma", "beta"]  # Dense biases, LayerNorm scale and offset


def make_data(n, length, seed):
    """Token sequences (ids 10..99 and padding 0); label 1 when MARKER is among the tokens."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(10, VOCABULARY, size=(n, length))
    lengths = rng.integers(length // 2, length + 1, size=n)
    mask = np.arange(length)[None, :] < lengths[:, None]
    label = rng.integers(0, 2, size=n)
    where = (rng.random(n) * lengths).astype(int)
    tokens[label == 1, where[label == 1]] = MARKER
    tokens[~mask] = 0
    inputs = {"token_ids": tokens.astype("int32"), "padding_mask": mask,
              "segment_ids": np.zeros_like(tokens, dtype="int32")}
    return inputs, label.astype("int32")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--sequence-length", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    args = parser.parse_args(argv)
    require_counts(parser, args, positive=("epochs", "examples", "sequence_length"))

    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=64,
        intermediate_dim=128, max_sequence_length=args.sequence_length)
    model = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)

    inner = keras.optimizers.AdamW(args.learning_rate, weight_decay=args.weight_decay)
    inner.exclude_from_weight_decay(var_names=NO_DECAY)
    model.compile(optimizer=Lookahead(inner, sync_period=5, slow_step_size=0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    excluded = [v.path for v in model.trainable_variables
                if any(re.search(name, v.name) for name in NO_DECAY)]
    print(f"{model.count_params():,} parameters in {len(model.trainable_variables)} variables; "
          f"{len(excluded)} left out of weight decay (biases and LayerNorm)")

    x, y = make_data(args.examples, args.sequence_length, seed=0)
    x_test, y_test = make_data(512, args.sequence_length, seed=1)
    model.fit(x, y, batch_size=32, epochs=args.epochs, validation_data=(x_test, y_test),
              callbacks=[SwapSlowWeights()], verbose=2)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)  # the slow weights
    print(f"test accuracy of the slow weights {accuracy:.4f} (chance: 0.5)")


if __name__ == "__main__":
    main()
