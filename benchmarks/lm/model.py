"""AWD-LSTM (Merity, Keskar & Socher, 2018), the language model of the paper's PTB experiment, in
Keras 3 layers that run on TensorFlow, JAX and PyTorch.

Its regularisers, each a layer here:

- `WeightDropLSTM`: DropConnect on the hidden-to-hidden matrix. One mask per forward pass (per
  batch of sequences), the same at every time step, drawn on the matrix itself; none at
  inference.
- `LockedDropout`: variational dropout, one mask per sequence shared over its time steps; on
  the embeddings (input dropout), between LSTM layers and on the last one's output.
- `TiedEmbedding`: embedding dropout (whole words dropped: a row mask on the matrix, scaled by
  1/(1 − p)), and the same matrix, transposed, as the softmax weights (weight tying).
- AR and TAR: α·mean(h²) on the last layer's dropped output, β·mean((h_t − h_{t−1})²) on its
  output before dropout, added as layer losses while training.

The hidden state is carried from one batch to the next (`stateful`): batch row i reads the i-th
of `batch` parallel streams of the corpus (data.batchify). `reset_state()` starts the streams
over (each epoch, and before each evaluation).
"""

import keras
from keras import ops

# The paper's profile is App. C.3's (AWD-LSTM's PTB setting); "cpu" is the same model at a size
# that trains on two cores in minutes. Sizes and dropouts only: the optimizers are train.py's.
PROFILES = {
    "paper": dict(layers=3, hidden=1150, embedding=400, dropout_e=0.1, dropout_i=0.65,
                  dropout_h=0.3, dropout_o=0.4, weight_drop=0.5, ar=2.0, tar=1.0),
    "cpu": dict(layers=2, hidden=256, embedding=128, dropout_e=0.1, dropout_i=0.4,
                dropout_h=0.25, dropout_o=0.4, weight_drop=0.5, ar=2.0, tar=1.0),
}
PROFILES["cpu-long"] = PROFILES["cpu"]  # the same model, trained to a plateau (train.py)


def _check_rate(name, rate):
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate!r}")
    return float(rate)


@keras.saving.register_keras_serializable(package="keras_lookahead_lm")
class WeightDropLSTMCell(keras.layers.Layer):
    """An LSTM step whose hidden-to-hidden matrix can be replaced for one pass (`_recurrent`).

    i, f, g, o = split(x W + h U + b);  c' = σ(f) c + σ(i) tanh(g);  h' = σ(o) tanh(c').
    The forget gate's bias starts at 1.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]
        self.output_size = units
        self._recurrent = None

    def build(self, input_shape):
        u = self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], 4 * u), name="kernel",
                                      initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(shape=(u, 4 * u), name="recurrent_kernel",
                                                initializer="orthogonal")

        def bias_init(shape, dtype=None):
            return ops.concatenate([ops.zeros((u,), dtype), ops.ones((u,), dtype),
                                    ops.zeros((2 * u,), dtype)])

        self.bias = self.add_weight(shape=(4 * u,), name="bias", initializer=bias_init)

    def call(self, inputs, states, training=False):
        h, c = states
        recurrent = self.recurrent_kernel if self._recurrent is None else self._recurrent
        z = ops.add(ops.add(ops.matmul(inputs, self.kernel), ops.matmul(h, recurrent)),
                    self.bias)
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.add(ops.multiply(ops.sigmoid(f), c), ops.multiply(ops.sigmoid(i), ops.tanh(g)))
        h = ops.multiply(ops.sigmoid(o), ops.tanh(c))
        return h, [h, c]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="keras_lookahead_lm")
class WeightDropLSTM(keras.layers.RNN):
    """An LSTM layer with DropConnect of rate `weight_drop` on its hidden-to-hidden matrix: one
    mask per call, shared by every time step and every sequence of the batch (AWD-LSTM)."""

    def __init__(self, units, weight_drop=0.0, seed=None, **kwargs):
        kwargs.pop("return_sequences", None)  # always True; a saved config repeats it
        super().__init__(WeightDropLSTMCell(units), return_sequences=True, **kwargs)
        self.weight_drop = _check_rate("weight_drop", weight_drop)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        cell = self.cell
        cell._recurrent = None
        if training and self.weight_drop > 0:
            cell._recurrent = keras.random.dropout(
                ops.convert_to_tensor(cell.recurrent_kernel), self.weight_drop,
                seed=self.seed_generator)
        try:
            return super().call(sequences, initial_state=initial_state, mask=mask,
                                training=training)
        finally:
            cell._recurrent = None

    def get_config(self):
        config = super().get_config()
        config.pop("cell", None)
        return {**config, "units": self.cell.units, "weight_drop": self.weight_drop}


@keras.saving.register_keras_serializable(package="keras_lookahead_lm")
class LockedDropout(keras.layers.Layer):
    """Dropout with one mask per sequence, the same at every time step (inputs (batch, time,
    features)); the identity at inference."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _check_rate("rate", rate)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        shape = ops.shape(inputs)
        return keras.random.dropout(inputs, self.rate, noise_shape=(shape[0], 1, shape[2]),
                                    seed=self.seed_generator)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package="keras_lookahead_lm")
class TiedEmbedding(keras.layers.Layer):
    """Word embeddings with embedding dropout (whole rows of the matrix, scaled by 1/(1 − p),
    one mask per call), whose matrix is also the output layer's (`logits`)."""

    def __init__(self, vocab_size, dim, dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.dim = vocab_size, dim
        self.dropout = _check_rate("dropout_e", dropout)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.embeddings = self.add_weight(shape=(self.vocab_size, self.dim), name="embeddings",
                                          initializer=keras.initializers.RandomUniform(-0.1, 0.1))
        self.output_bias = self.add_weight(shape=(self.vocab_size,), name="output_bias",
                                           initializer="zeros")

    def call(self, ids, training=False):
        table = ops.convert_to_tensor(self.embeddings)
        if training and self.dropout > 0:
            table = keras.random.dropout(table, self.dropout, noise_shape=(self.vocab_size, 1),
                                         seed=self.seed_generator)
        return ops.take(table, ops.cast(ids, "int32"), axis=0)

    def logits(self, hidden):
        return ops.add(ops.matmul(hidden, ops.transpose(self.embeddings)), self.output_bias)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim,
                "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="keras_lookahead_lm")
class AWDLSTM(keras.Model):
    """Token ids (batch, time) → next-token logits (batch, time, vocab).

    The last LSTM layer has the embedding size, so that the softmax can share the embedding
    matrix (tying).
    """

    def __init__(self, vocab_size, layers=3, hidden=1150, embedding=400, dropout_e=0.1,
                 dropout_i=0.65, dropout_h=0.3, dropout_o=0.4, weight_drop=0.5, ar=2.0,
                 tar=1.0, seed=0, **kwargs):
        super().__init__(**kwargs)
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        self.settings = dict(vocab_size=vocab_size, layers=layers, hidden=hidden,
                             embedding=embedding, dropout_e=dropout_e, dropout_i=dropout_i,
                             dropout_h=dropout_h, dropout_o=dropout_o, weight_drop=weight_drop,
                             ar=ar, tar=tar, seed=seed)
        self.ar, self.tar = float(ar), float(tar)
        self.embed = TiedEmbedding(vocab_size, embedding, dropout_e, seed=seed)
        self.input_dropout = LockedDropout(dropout_i, seed=seed + 1)
        sizes = [hidden] * (layers - 1) + [embedding]
        self.rnns = [WeightDropLSTM(u, weight_drop, seed=seed + 2 + i, stateful=True)
                     for i, u in enumerate(sizes)]
        self.between = [LockedDropout(dropout_h, seed=seed + 2 + layers + i)
                        for i in range(layers - 1)]
        self.output_dropout = LockedDropout(dropout_o, seed=seed + 2 + 2 * layers)

    def call(self, ids, training=False):
        x = self.input_dropout(self.embed(ids, training=training), training=training)
        for i, rnn in enumerate(self.rnns):
            raw = rnn(x, training=training)
            last = i == len(self.rnns) - 1
            x = (self.output_dropout if last else self.between[i])(raw, training=training)
        if training and self.ar:
            self.add_loss(ops.multiply(self.ar, ops.mean(ops.square(x))))
        if training and self.tar:
            # over the window's steps; none in a window of one token (a mean would be NaN)
            step = ops.subtract(raw[:, 1:], raw[:, :-1])
            count = ops.maximum(ops.sum(ops.ones_like(step)), 1.0)
            self.add_loss(ops.multiply(self.tar, ops.divide(ops.sum(ops.square(step)), count)))
        return self.embed.logits(x)

    def reset_state(self):
        """Starts every stream over: zero hidden and cell states in every layer."""
        for rnn in self.rnns:
            rnn.reset_state()

    def get_config(self):
        return {**super().get_config(), **self.settings}


def build(vocab_size, profile, batch_size, seed=0, **overrides):
    """The AWD-LSTM of `profile` (a key of PROFILES), built for `batch_size` parallel streams."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    model = AWDLSTM(vocab_size, seed=seed, **{**PROFILES[profile], **overrides})
    model(ops.zeros((batch_size, 2), "int32"))  # builds the weights and the carried states
    model.reset_state()
    return model


def paper_parameter_count(vocab_size=10_000, layers=3, hidden=1150, embedding=400):
    """AWD-LSTM's parameters in closed form, with one bias per LSTM gate as Keras has (PyTorch's
    LSTM has two, 8u more per layer): the embedding V·E (shared by the softmax), each LSTM layer
    4u(input + u + 1), and the softmax bias V."""
    sizes = [hidden] * (layers - 1) + [embedding]
    inputs = [embedding] + sizes[:-1]
    lstm = sum(4 * u * (n + u + 1) for n, u in zip(inputs, sizes))
    return vocab_size * embedding + lstm + vocab_size
