import math

import keras
from keras import ops

from keras_msa.utils.masks import attention_mask as padding_attention_mask
from keras_msa.utils.masks import masked_softmax
from keras_msa.utils.masks import softmax


@keras.saving.register_keras_serializable(package="keras_msa")
class MaskedMultiHeadAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention that is exact under padding.

    For each head h: ``A_h = softmax(Q_h K_h^T / sqrt(d_k))`` over the real
    context steps only and ``out = concat_h(A_h V_h) W_o + b_o`` with
    ``Q_h = q W_q^h + b_q^h`` (likewise K, V), the attention of Vaswani et
    al. that seed 000 (SSGDL) uses for modality alignment and for the
    cross-/self-attention of PS-MDL (Sec. III-B; ARCHITECTURES.md, SSGDL).

    It differs from `keras.layers.MultiHeadAttention` where masks are
    concerned: a query whose context is entirely padding (a missing modality)
    gets all-zero attention weights (its output is the output bias), instead of
    a uniform average over padded steps, so values under a mask never reach
    the output. Outputs at padded query steps are zero. Scores and softmax run
    in float32.

    Args:
        num_heads: number of heads.
        key_dim: width d_k of each head's queries, keys and values (default:
            output width // num_heads, at least 1).
        output_dim: width of the output (default: the query width).
        dropout: dropout on the attention weights.
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        query: float `[B, Tq, Dq]`.
        context: float `[B, Tk, Dk]`; None means self-attention (context = query).
        value: optional float `[B, Tk, Dk]`: the values, when they differ from
            the keys' input `context` (as in MulT, which drops key and value
            inputs out independently); default `context`.
        query_mask: optional boolean `[B, Tq]` (True = real step).
        context_mask: optional boolean `[B, Tk]`.
        attention_mask: optional boolean `[B, Tq, Tk]`: which context steps each
            query may attend (True = allowed), on top of `context_mask` (e.g.
            a causal pattern); a query with nothing allowed attends to nothing.
        return_attention: also return the weights `[B, heads, Tq, Tk]` (float32).
        training: enables dropout.

    Example:

    >>> import numpy as np
    >>> mha = MaskedMultiHeadAttention(num_heads=2, output_dim=8)
    >>> q = np.zeros((2, 5, 8), "float32")
    >>> c = np.ones((2, 7, 4), "float32")
    >>> tuple(mha(q, c, context_mask=np.ones((2, 7), bool)).shape)
    (2, 5, 8)
    """

    def __init__(self, num_heads=8, key_dim=None, output_dim=None, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.key_dim = key_dim
        self.output_dim = output_dim
        self.dropout = float(dropout)

    def build(self, query_shape, context_shape=None, *args, **kwargs):
        dq = query_shape[-1]
        dc = dq if context_shape is None else context_shape[-1]
        if dq is None or dc is None:
            raise ValueError("MaskedMultiHeadAttention needs known feature widths.")
        self._out_dim = int(self.output_dim or dq)
        self._dk = int(self.key_dim or max(self._out_dim // self.num_heads, 1))
        h, dk = self.num_heads, self._dk
        policy = self.dtype_policy
        self.q_proj = keras.layers.EinsumDense("btd,dhk->bthk", (None, h, dk), bias_axes="hk", name="query", dtype=policy)
        self.k_proj = keras.layers.EinsumDense("btd,dhk->bthk", (None, h, dk), bias_axes="hk", name="key", dtype=policy)
        self.v_proj = keras.layers.EinsumDense("btd,dhk->bthk", (None, h, dk), bias_axes="hk", name="value", dtype=policy)
        self.o_proj = keras.layers.EinsumDense("bthk,hkd->btd", (None, self._out_dim), bias_axes="d", name="output", dtype=policy)
        self.q_proj.build((None, None, dq))
        self.k_proj.build((None, None, dc))
        self.v_proj.build((None, None, dc))
        self.o_proj.build((None, None, h, dk))
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy)
        self.built = True

    def call(self, query, context=None, query_mask=None, context_mask=None, attention_mask=None,
             return_attention=False, training=False, value=None):
        if query_mask is not None:
            query_mask = ops.cast(query_mask, "bool")
            # Padded queries are computed (then zeroed): from zeros, so that
            # inf/NaN there cannot reach the weights' gradients either.
            query = ops.where(query_mask[..., None], query, 0)
        if context is None:
            context, context_mask = query, query_mask
        if value is None:
            value = context
        if context_mask is not None:
            context_mask = ops.cast(context_mask, "bool")
            # Zeroing padded context keeps inf/NaN under the mask from reaching
            # a real step through a zero weight (0 * inf = NaN).
            context = ops.where(ops.cast(context_mask, "bool")[..., None], context, 0)
            value = ops.where(ops.cast(context_mask, "bool")[..., None], value, 0)
        q = self.q_proj(query)
        k = self.k_proj(context)
        v = self.v_proj(value)
        if return_attention:
            weights = self._exact_weights(q, k, query, query_mask, context_mask, attention_mask)
            dropped = self.dropout_layer(weights, training=training)
            attended = ops.einsum("bhqt,bthk->bqhk", ops.cast(dropped, v.dtype), v)
        else:
            attended = self._attend(q, k, v, context_mask, attention_mask, training)
        out = self.o_proj(attended)
        if query_mask is not None:
            out = ops.where(ops.cast(query_mask, "bool")[..., None], out, 0)
        if return_attention:
            return out, weights
        return out

    def _exact_weights(self, q, k, query, query_mask, context_mask, attention_mask):
        # The weights a caller reads: exactly zero under every mask and on
        # rows with nothing to attend (renormalised by `masked_softmax`).
        scores = ops.einsum("bqhk,bthk->bhqt", ops.cast(q, "float32"), ops.cast(k, "float32"))
        scores = scores / ops.sqrt(ops.cast(self._dk, "float32"))
        mask = None
        if context_mask is not None:
            qm = query_mask if query_mask is not None else ops.ones(ops.shape(query)[:2], "bool")
            mask = padding_attention_mask(qm, context_mask)[:, None, :, :]
        if attention_mask is not None:
            allowed = ops.cast(attention_mask, "bool")[:, None, :, :]
            mask = allowed if mask is None else ops.logical_and(mask, allowed)
        return masked_softmax(scores, mask, axis=-1)

    def _attend(self, q, k, v, context_mask, attention_mask, training):
        # The same attention in fewer passes over the [B, heads, Tq, Tk]
        # score tensor, which is what the time goes into at MOSI's unaligned
        # lengths (it is memory-bound: d_k is 5 in MulT's MOSI preset): the
        # 1/sqrt(d_k) scale is applied to the queries ([B, Tq, heads, d_k]),
        # the masks become one additive bias built at [B, 1, Tq|1, Tk] (a
        # -1e9 logit underflows to an exact zero weight whenever the row has
        # a real step), and a row with nothing to attend, whose softmax is
        # uniform over the -1e9 logits, is zeroed on the attended values
        # [B, Tq, heads, d_k] instead of on the weights. Inputs under the
        # masks were zeroed before the projections, so every score is finite.
        q = ops.cast(q, "float32") * ops.cast(1.0 / math.sqrt(self._dk), "float32")
        scores = ops.einsum("bqhk,bthk->bhqt", q, ops.cast(k, "float32"))
        allowed = None
        if context_mask is not None:
            allowed = ops.cast(context_mask, "bool")[:, None, None, :]
        if attention_mask is not None:
            pattern = ops.cast(attention_mask, "bool")[:, None, :, :]
            allowed = pattern if allowed is None else ops.logical_and(allowed, pattern)
        if allowed is None:
            weights = softmax(scores, axis=-1)
        else:
            bias = ops.where(allowed, ops.zeros((), "float32"), ops.full((), -1e9, "float32"))
            weights = softmax(scores + bias, axis=-1)
        dropped = self.dropout_layer(weights, training=training)
        attended = ops.einsum("bhqt,bthk->bqhk", ops.cast(dropped, v.dtype), v)
        if allowed is not None:
            # [B, 1, Tq|1] -> [B, Tq|1, 1, 1], the layout of `attended`.
            something = ops.transpose(ops.any(allowed, axis=-1), (0, 2, 1))[..., None]
            attended = ops.where(something, attended, ops.zeros_like(attended))
        return attended

    def compute_output_shape(self, query_shape, *args, **kwargs):
        return tuple(query_shape[:-1]) + (int(self.output_dim or query_shape[-1]),)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "output_dim": self.output_dim,
                "dropout": self.dropout,
            }
        )
        return config
