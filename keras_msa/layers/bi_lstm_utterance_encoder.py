"""MISA's utterance encoder: two bidirectional LSTMs with a LayerNorm between,
read at their final states (Hazarika et al., ACM MM 2020, Sec. 3.2)."""

import keras
from keras import layers
from keras import ops

from keras_msa.utils.masks import last_valid_step
from keras_msa.utils.masks import masked_rnn
from keras_msa.utils.masks import zero_masked


def reverse_valid_steps(x, mask):
    """`x` `[B, T, D]` with each row's real steps in reverse order, put back
    on the same real positions; padded steps stay where they are. Applying it
    twice gives `x` back."""
    mask = ops.cast(mask, "bool")
    steps = ops.shape(x)[1]
    positions = ops.arange(steps, dtype="int32")[None, :]
    # order[b, k]: position of the k-th real step (real steps sort first).
    order = ops.argsort(ops.where(mask, positions, positions + steps), axis=1)
    count = ops.sum(ops.cast(mask, "int32"), axis=1, keepdims=True)
    rank = ops.cumsum(ops.cast(mask, "int32"), axis=1) - 1
    mirrored = ops.take_along_axis(order, ops.clip(count - 1 - rank, 0, steps - 1), axis=1)
    source = ops.where(mask, mirrored, positions + ops.zeros_like(mirrored))
    return ops.take_along_axis(x, source[:, :, None], axis=1)


@keras.saving.register_keras_serializable(package="keras_msa")
class BiLSTMUtteranceEncoder(layers.Layer):
    """Two stacked bidirectional LSTMs over the real steps of a sequence, with
    a LayerNorm on the first one's outputs, summarised by the final hidden
    states of both layers and both directions (MISA, Sec. 3.2: `u_m =
    sLSTM(U_m)`; MMSA's `MISA.extract_features` over packed sequences).

        (s1_t^f, s1_t^b) = BiLSTM_1(x_t),        h1^f, h1^b: its final states
        z_t = LayerNorm([s1_t^f; s1_t^b])
        h2^f, h2^b = final states of BiLSTM_2(z_t)
        u = [h1^f; h2^f; h1^b; h2^b]              (width 4 * units)

    The forward final state is the one after the last real step, the
    backward one after the first real step, as PyTorch's packed sequences
    give (`pack_padded_sequence`); the output layout is MMSA's
    (`cat(final_h1, final_h2, dim=2).permute(1, 0, 2)`: both layers of the
    forward direction, then both of the backward one).

    Masks: padded steps are zeroed by selection and skipped (each
    direction runs over the real steps only, in order: `masked_rnn`), so
    any value under the mask (inf, NaN) changes nothing; holed masks read
    the real steps in order. A row with no real step (a missing modality)
    gives zeros.

    Args:
        units: LSTM width H (per direction); None: the input's feature width
            (MISA's `hidden_sizes` = the feature sizes).
        layer_norm_epsilon: epsilon of the LayerNorm (PyTorch's 1e-5).
        **kwargs: `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> enc = BiLSTMUtteranceEncoder(units=3)
    >>> x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    >>> mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    >>> tuple(enc(x, mask=mask).shape)
    (2, 12)
    """

    def __init__(self, units=None, layer_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.units = None if units is None else int(units)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.supports_masking = True

    def build(self, input_shape):
        width = input_shape[-1]
        if width is None:
            raise ValueError(f"{self.name}: the feature width of the input must be known; got {input_shape}.")
        self.hidden = int(self.units or width)
        h = self.hidden

        def lstm(name):
            return layers.LSTM(h, return_sequences=True, name=name, dtype=self.dtype_policy)

        self.lstm1_forward, self.lstm1_backward = lstm("lstm1_forward"), lstm("lstm1_backward")
        self.lstm2_forward, self.lstm2_backward = lstm("lstm2_forward"), lstm("lstm2_backward")
        self.norm = layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm", dtype=self.dtype_policy)
        self.lstm1_forward.build((None, None, width))
        self.lstm1_backward.build((None, None, width))
        self.norm.build((None, None, 2 * h))
        self.lstm2_forward.build((None, None, 2 * h))
        self.lstm2_backward.build((None, None, 2 * h))
        self.built = True

    def _bidirectional(self, forward, backward, x, mask, training):
        """Per-step outputs `[B, T, 2H]` (zeros at padded steps) and the final
        states `(h^f, h^b)`."""
        seq_f = masked_rnn(forward, x, mask, training=training)
        seq_b_reversed = masked_rnn(backward, reverse_valid_steps(x, mask), mask, training=training)
        seq_b = reverse_valid_steps(seq_b_reversed, mask)
        return (
            ops.concatenate([seq_f, seq_b], axis=-1),
            last_valid_step(seq_f, mask),
            last_valid_step(seq_b_reversed, mask),
        )

    def call(self, inputs, mask=None, training=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], "bool")
        mask = ops.cast(mask, "bool")
        x = zero_masked(inputs, mask)
        seq1, h1f, h1b = self._bidirectional(self.lstm1_forward, self.lstm1_backward, x, mask, training)
        z = zero_masked(self.norm(seq1), mask)
        _, h2f, h2b = self._bidirectional(self.lstm2_forward, self.lstm2_backward, z, mask, training)
        return ops.concatenate([h1f, h2f, h1b, h2b], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 4 * int(self.units or input_shape[-1]))

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "layer_norm_epsilon": self.layer_norm_epsilon})
        return config
