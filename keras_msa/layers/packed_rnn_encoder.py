import keras
from keras import layers
from keras import ops

from keras_msa.utils.masks import masked_rnn
from keras_msa.utils.masks import reverse_real_steps


@keras.saving.register_keras_serializable(package="keras_msa")
class PackedRNNEncoder(keras.layers.Layer):
    """A (bi)LSTM read at its final states over the real steps, then a
    linear map (MMIM's unimodal audio/vision encoder, Han et al. 2021 Sec.
    3.2; MMSA's `RNNEncoder` over `pack_padded_sequence`).

        h_fwd = LSTM_fwd(x_1, ..., x_n)[n]
        h_bwd = LSTM_bwd(x_n, ..., x_1)[1]          (bidirectional)
        y = W_o dropout([h_fwd; h_bwd]) + b_o

    where n is the number of real steps of the row (the mask's True steps,
    in order): padded steps are never read, as with a packed sequence. A row
    with no real step (a missing modality) gives y = b_o.

    Kernels start Xavier-normal, as MMSA's trainer re-initialises every
    matrix of the model (`nn.init.xavier_normal_`).

    Args:
        hidden_dim: LSTM width (per direction).
        output_dim: width of y.
        bidirectional: add the backward LSTM (MMSA's MMIM presets: True).
        dropout: dropout on the final states (MMSA passes 0 for its
            one-layer encoders).

    Example:

    >>> import numpy as np
    >>> enc = PackedRNNEncoder(hidden_dim=4, output_dim=3)
    >>> x = np.zeros((2, 5, 6), "float32")
    >>> tuple(enc(x, mask=np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)).shape)
    (2, 3)
    """

    def __init__(self, hidden_dim, output_dim, bidirectional=True, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.output_dim = int(output_dim)
        self.bidirectional = bool(bidirectional)
        self.dropout = float(dropout)
        self.supports_masking = True
        lstm = dict(kernel_initializer="glorot_normal", recurrent_initializer="glorot_normal",
                    unit_forget_bias=False)
        self.forward_lstm = layers.LSTM(self.hidden_dim, name="forward_lstm", **lstm)
        self.backward_lstm = (layers.LSTM(self.hidden_dim, name="backward_lstm", **lstm)
                              if self.bidirectional else None)
        self.state_dropout = layers.Dropout(self.dropout)
        self.output_dense = layers.Dense(self.output_dim, kernel_initializer="glorot_normal", name="output_dense")

    def build(self, input_shape):
        self.forward_lstm.build((None, None, input_shape[-1]))
        if self.backward_lstm is not None:
            self.backward_lstm.build((None, None, input_shape[-1]))
        self.output_dense.build((None, self.hidden_dim * (2 if self.bidirectional else 1)))
        self.built = True

    def call(self, inputs, mask=None, training=False):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        h = masked_rnn(self.forward_lstm, inputs, mask, training=training)
        if self.backward_lstm is not None:
            reversed_inputs, reversed_mask = reverse_real_steps(inputs, mask)
            h_bwd = masked_rnn(self.backward_lstm, reversed_inputs, reversed_mask, training=training)
            h = ops.concatenate([h, h_bwd], axis=-1)
        return self.output_dense(self.state_dropout(h, training=training))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "output_dim": self.output_dim,
                       "bidirectional": self.bidirectional, "dropout": self.dropout})
        return config
