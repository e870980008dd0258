import math

import keras
from keras import ops

from keras_msa.layers.masked_multi_head_attention import MaskedMultiHeadAttention
from keras_msa.layers.sinusoidal_positional_embedding import SinusoidalPositionalEmbedding
from keras_msa.utils.masks import zero_masked


def shifted_causal_mask(query_mask, context_mask, query_steps, context_steps):
    """Boolean `[B, Tq, Tk]`: query i may attend context step j when
    ``j - i <= |L_k - L_q|``, with L the number of real steps of each row.

    This is MulT's `attn_mask` (the reference builds it from the padded
    lengths, ``triu(-inf, 1 + |Tk - Tq|)``); counting real steps instead
    keeps the pattern the same however much padding a batch carries, and
    equals the reference's when nothing is padded.
    """
    lq = ops.sum(ops.cast(query_mask, "int32"), axis=1)
    lk = ops.sum(ops.cast(context_mask, "int32"), axis=1)
    offset = ops.abs(lk - lq)[:, None, None]
    i = ops.arange(query_steps, dtype="int32")[None, :, None]
    j = ops.arange(context_steps, dtype="int32")[None, None, :]
    return (j - i) <= offset


@keras.saving.register_keras_serializable(package="keras_msa")
class CrossModalTransformer(keras.layers.Layer):
    """MulT's cross-modal transformer (Tsai et al., ACL 2019, Sec. 3.2), or its
    self-attention memory transformer when no context is given.

    With Z^[0] = sqrt(d) X_beta (+ PE) the target stream and
    X_alpha' = sqrt(d) X_alpha (+ PE) the source stream (Eq. 2's embedding,
    the scaling of the authors' code), each of the D layers i = 1..D does,
    pre-LN (Eqs. 3-4):

        Zhat^[i] = CM(LN(Z^[i-1]), LN(X_alpha')) + Z^[i-1]
        Z^[i]    = f(LN(Zhat^[i])) + Zhat^[i]

    with CM the multi-head attention of Eq. 1, softmax(Q K^T / sqrt(d_k)) V,
    queries from the target and keys/values from the source (one LayerNorm
    per layer serves both sides, as in the reference), and f the position-wise
    feed-forward Dense(4d, ReLU) -> Dense(d). A final LayerNorm closes the
    stack. Without a context the same stack is self-attention (MulT's
    Sec. 3.3 memory transformers over the concatenated cross-modal outputs).

    Dropout sits where the reference puts it: `embed_dropout` on the scaled
    inputs (query, key and value inputs dropped independently),
    `attention_dropout` on the attention weights, `relu_dropout` after the
    ReLU and `residual_dropout` on each block's output before the residual
    sum. LayerNorm epsilon is 1e-5 (PyTorch's), for parity.

    `causal=True` is MMSA's `attn_mask`: query i sees context step j only when
    j - i <= |L_k - L_q| (plain causal attention when the lengths match),
    with L counted on real steps (see `shifted_causal_mask`).

    Masking: `query_mask` `[B, Tq]` and `context_mask` `[B, Tk]` (True = real
    step). Padded context steps get zero attention weight; a query whose
    context is all padding attends to nothing (its attention output is the
    output bias, finite); outputs at padded query steps are zero. Values under
    a mask, inf and NaN included, change nothing at real steps.

    Args:
        num_layers: D, the number of layers.
        num_heads: attention heads (the width must divide by it).
        attention_dropout: dropout on the attention weights.
        relu_dropout: dropout after the feed-forward ReLU.
        residual_dropout: dropout on each block's output.
        embed_dropout: dropout on the scaled inputs.
        causal: MMSA's `attn_mask` pattern (see above).
        positional_embedding: add `SinusoidalPositionalEmbedding` codes to
            the scaled inputs. The MulT paper and its authors' code do;
            MMSA's MulT does not (its `TransformerEncoder` defaults to
            `position_embedding=False`), so `MulT` leaves it off by default.
        padding_from_first_channel: the positional codes' padding rule of
            the reference (see `SinusoidalPositionalEmbedding`).
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        query: float `[B, Tq, d]`, the target modality.
        context: float `[B, Tk, d]`, the source modality, or None.
        query_mask: optional boolean `[B, Tq]`.
        context_mask: optional boolean `[B, Tk]`.
        training: enables dropout.

    Returns:
        `[B, Tq, d]`.

    Example:

    >>> import numpy as np
    >>> text = np.random.rand(2, 5, 8).astype("float32")
    >>> audio = np.random.rand(2, 7, 8).astype("float32")
    >>> layer = CrossModalTransformer(num_layers=2, num_heads=2)
    >>> tuple(layer(text, audio).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        num_layers=4,
        num_heads=8,
        attention_dropout=0.0,
        relu_dropout=0.0,
        residual_dropout=0.0,
        embed_dropout=0.0,
        causal=False,
        positional_embedding=False,
        padding_from_first_channel=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_layers) < 1 or int(num_heads) < 1:
            raise ValueError(f"CrossModalTransformer: num_layers and num_heads must be >= 1; got "
                             f"{num_layers} and {num_heads}.")
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.attention_dropout = float(attention_dropout)
        self.relu_dropout = float(relu_dropout)
        self.residual_dropout = float(residual_dropout)
        self.embed_dropout = float(embed_dropout)
        self.causal = bool(causal)
        self.positional_embedding = bool(positional_embedding)
        self.padding_from_first_channel = bool(padding_from_first_channel)

    def build(self, query_shape, context_shape=None, *args, **kwargs):
        dim = query_shape[-1]
        if dim is None or dim % self.num_heads:
            raise ValueError(f"CrossModalTransformer: the width ({dim}) must be known and divisible by "
                             f"num_heads={self.num_heads}; got query shape {tuple(query_shape)}.")
        if context_shape is not None and context_shape[-1] != dim:
            raise ValueError(f"CrossModalTransformer: the context width ({context_shape[-1]}) must equal the "
                             f"query width ({dim}); project both modalities to one width first (MulT's Conv1D).")
        self._dim = int(dim)
        policy = self.dtype_policy
        self.positions = (SinusoidalPositionalEmbedding(self.padding_from_first_channel, name="positions")
                          if self.positional_embedding else None)
        if self.positions is not None:
            self.positions.build((None, None, dim))
        self.embed_drop = keras.layers.Dropout(self.embed_dropout, dtype=policy)
        self.relu_drop = keras.layers.Dropout(self.relu_dropout, dtype=policy)
        self.residual_drop = keras.layers.Dropout(self.residual_dropout, dtype=policy)
        self.attention_norms, self.attentions, self.ffn_norms, self.ffn_in, self.ffn_out = [], [], [], [], []
        for i in range(self.num_layers):
            norm = keras.layers.LayerNormalization(epsilon=1e-5, name=f"attention_norm_{i}", dtype=policy)
            norm.build((None, None, dim))
            attention = MaskedMultiHeadAttention(self.num_heads, key_dim=dim // self.num_heads, output_dim=dim,
                                                 dropout=self.attention_dropout, name=f"attention_{i}",
                                                 dtype=policy)
            attention.build((None, None, dim), (None, None, dim))
            ffn_norm = keras.layers.LayerNormalization(epsilon=1e-5, name=f"ffn_norm_{i}", dtype=policy)
            ffn_norm.build((None, None, dim))
            ffn_in = keras.layers.Dense(4 * dim, activation="relu", name=f"ffn_in_{i}", dtype=policy)
            ffn_in.build((None, None, dim))
            ffn_out = keras.layers.Dense(dim, name=f"ffn_out_{i}", dtype=policy)
            ffn_out.build((None, None, 4 * dim))
            self.attention_norms.append(norm)
            self.attentions.append(attention)
            self.ffn_norms.append(ffn_norm)
            self.ffn_in.append(ffn_in)
            self.ffn_out.append(ffn_out)
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm", dtype=policy)
        self.final_norm.build((None, None, dim))
        self.built = True

    def _embed(self, x, mask):
        # sqrt(d) scaling puts the inputs on the scale of the unit-variance
        # positional codes (Vaswani et al. Sec. 3.4; the reference does it
        # with or without the codes).
        x = ops.cast(math.sqrt(self._dim), x.dtype) * x
        if self.positions is not None:
            x = x + ops.cast(self.positions(x, mask=mask), x.dtype)
        return x

    def call(self, query, context=None, query_mask=None, context_mask=None, training=False):
        query = ops.convert_to_tensor(query)
        qm = (ops.ones(ops.shape(query)[:2], "bool") if query_mask is None else ops.cast(query_mask, "bool"))
        query = zero_masked(query, qm)
        cross = context is not None
        x = self.embed_drop(self._embed(query, qm), training=training)
        if cross:
            context = ops.convert_to_tensor(context)
            cm = (ops.ones(ops.shape(context)[:2], "bool") if context_mask is None
                  else ops.cast(context_mask, "bool"))
            context = zero_masked(context, cm)
            c = self._embed(context, cm)
            # Key and value inputs are dropped out independently, as in the reference.
            ck = self.embed_drop(c, training=training)
            cv = self.embed_drop(c, training=training)
        else:
            cm = qm
        allowed = None
        if self.causal:
            allowed = shifted_causal_mask(qm, cm, ops.shape(query)[1],
                                          ops.shape(context)[1] if cross else ops.shape(query)[1])
        for i in range(self.num_layers):
            norm = self.attention_norms[i]
            h = norm(x)
            if cross:
                key, value = norm(ck), norm(cv)
            else:
                key = value = h
            h = self.attentions[i](h, key, query_mask=qm, context_mask=cm, attention_mask=allowed,
                                   value=value, training=training)
            x = x + self.residual_drop(h, training=training)
            h = self.ffn_in[i](self.ffn_norms[i](x))
            h = self.ffn_out[i](self.relu_drop(h, training=training))
            x = x + self.residual_drop(h, training=training)
        return zero_masked(self.final_norm(x), qm)

    def compute_output_shape(self, query_shape, *args, **kwargs):
        return tuple(query_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "attention_dropout": self.attention_dropout,
                "relu_dropout": self.relu_dropout,
                "residual_dropout": self.residual_dropout,
                "embed_dropout": self.embed_dropout,
                "causal": self.causal,
                "positional_embedding": self.positional_embedding,
                "padding_from_first_channel": self.padding_from_first_channel,
            }
        )
        return config
