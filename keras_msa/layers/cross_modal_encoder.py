import keras
from keras import ops

from keras_msa.utils.masks import attention_mask
from keras_msa.utils.masks import masked_softmax
from keras_msa.utils.masks import zero_masked


@keras.saving.register_keras_serializable(package="keras_msa")
class CrossModalEncoder(keras.layers.Layer):
    """L-layer pre-LN (cross-)attention encoder; the query stream is updated.

    Implements seed 004 (TeCaFN) Eqs. 8-12, the text-centred cross-modal
    attention CoAt_{m->t}: with h^0 the query sequence (text X_t) and X_m the
    context (audio or vision after the replacement gate), each layer i does

        x      = LN(h^{i-1})
        h_hat  = MHA(x, c, c) + x                      (Eqs. 8-11)
        y      = LN(h_hat)
        h^i    = FFN(y) + y                            (Eq. 12)

    with MHA the multi-head attention of Eqs. 8-9 (h heads of width d_k,
    scaled dot product, output projection W_o) and FFN = Dense(ffn_dim, ReLU)
    -> Dense(query width). As the seed writes it, the residual adds the
    *normalised* input. The context c is X_m passed through a per-layer
    LayerNormalization (`normalize_context=True`, as in MulT [9], which the
    seed builds on; the seed is silent on it).

    With `context=None` the layer is the pre-LN self-attention encoder of the
    seed's Eqs. 2-3 (c = x), which TeCaFN uses for audio and vision.

    Masking: `query_mask` `[B, Tq]` and `context_mask` `[B, Tk]` (True = real
    step). Padded context steps get zero attention weight; a query whose
    context is entirely padding (a missing modality) attends to nothing (its
    attention output is zero, so the layer stays finite); outputs at padded
    query steps are set to zero. Values under either mask, inf and NaN
    included, change nothing (padding is zeroed by selection before any
    arithmetic). Attention scores and softmax run in float32.

    Args:
        num_layers: L, the number of layers.
        num_heads: h, attention heads.
        key_dim: d_k per head (default: query width // num_heads, at least 1).
        value_dim: d_v per head (default: key_dim).
        ffn_dim: hidden width of the FFN (default: 4 x query width).
        dropout: dropout after the attention and FFN outputs.
        attention_dropout: dropout on the attention weights.
        normalize_context: LayerNorm the context per layer.
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        query: float `[B, Tq, Dq]`.
        context: float `[B, Tk, Dk]`, or None for self-attention.
        query_mask: optional boolean `[B, Tq]`.
        context_mask: optional boolean `[B, Tk]`.
        training: enables dropout.
        return_attention: also return the attention weights of every layer,
            `[B, L, h, Tq, Tk]` float32 (before attention dropout): each
            query row sums to 1 over the real context steps and is exactly 0
            at padded ones (all 0 when the context is all padding).

    Returns:
        `[B, Tq, Dq]`, or `([B, Tq, Dq], weights)` with `return_attention`.

    Example:

    >>> import numpy as np
    >>> text = np.random.rand(2, 5, 8).astype("float32")
    >>> audio = np.random.rand(2, 7, 6).astype("float32")
    >>> enc = CrossModalEncoder(num_layers=2, num_heads=2)
    >>> tuple(enc(text, audio, context_mask=np.ones((2, 7), bool)).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        num_layers=2,
        num_heads=5,
        key_dim=None,
        value_dim=None,
        ffn_dim=None,
        dropout=0.0,
        attention_dropout=0.0,
        normalize_context=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_layers) < 1 or int(num_heads) < 1:
            raise ValueError(
                f"CrossModalEncoder: num_layers and num_heads must be >= 1; got "
                f"{num_layers} and {num_heads}."
            )
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.ffn_dim = ffn_dim
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.normalize_context = bool(normalize_context)

    def build(self, query_shape, context_shape=None, *args, **kwargs):
        dq = query_shape[-1]
        if dq is None:
            raise ValueError("CrossModalEncoder needs a known query feature width.")
        self._self_attention = context_shape is None
        dc = dq if self._self_attention else context_shape[-1]
        if dc is None:
            raise ValueError("CrossModalEncoder needs a known context feature width.")
        dk = self.key_dim or max(dq // self.num_heads, 1)
        dv = self.value_dim or dk
        ffn = self.ffn_dim or 4 * dq
        self._dk, self._dv = dk, dv
        h = self.num_heads
        # One list per component (not a list of dicts) so that Keras tracks
        # every sublayer exactly once for saving.
        self.query_norms, self.context_norms = [], []
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = [], [], [], []
        self.ffn_norms, self.ffn_in, self.ffn_out = [], [], []
        seq_q = (query_shape[0], query_shape[1], dq)
        seq_c = (query_shape[0], None, dc)
        use_context_norm = self.normalize_context and not self._self_attention
        # Sublayers follow this layer's policy (mixed precision included).
        policy = self.dtype_policy
        for i in range(self.num_layers):
            layers = [
                (self.query_norms, keras.layers.LayerNormalization(epsilon=1e-5, name=f"query_norm_{i}", dtype=policy), seq_q),
                (self.q_proj, keras.layers.EinsumDense("btd,dhk->bthk", (None, h, dk), bias_axes="hk", name=f"q_{i}", dtype=policy), seq_q),
                (self.k_proj, keras.layers.EinsumDense("btd,dhk->bthk", (None, h, dk), bias_axes="hk", name=f"k_{i}", dtype=policy), seq_c),
                (self.v_proj, keras.layers.EinsumDense("btd,dhk->bthk", (None, h, dv), bias_axes="hk", name=f"v_{i}", dtype=policy), seq_c),
                (self.o_proj, keras.layers.EinsumDense("bthk,hkd->btd", (None, dq), bias_axes="d", name=f"o_{i}", dtype=policy), (query_shape[0], query_shape[1], h, dv)),
                (self.ffn_norms, keras.layers.LayerNormalization(epsilon=1e-5, name=f"ffn_norm_{i}", dtype=policy), seq_q),
                (self.ffn_in, keras.layers.Dense(ffn, activation="relu", name=f"ffn_in_{i}", dtype=policy), seq_q),
                (self.ffn_out, keras.layers.Dense(dq, name=f"ffn_out_{i}", dtype=policy), (query_shape[0], query_shape[1], ffn)),
            ]
            if use_context_norm:
                layers.append(
                    (self.context_norms, keras.layers.LayerNormalization(epsilon=1e-5, name=f"context_norm_{i}", dtype=policy), seq_c)
                )
            for bucket, layer, shape in layers:
                layer.build(shape)
                bucket.append(layer)
        self.attention_dropout_layer = keras.layers.Dropout(self.attention_dropout, dtype=policy)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy)
        self.built = True

    def _attend(self, i, x, context, mask, training):
        q = self.q_proj[i](x)
        k = self.k_proj[i](context)
        v = self.v_proj[i](context)
        # float32 scores: a float16 softmax over long padded rows loses the
        # small weights and the -inf fill overflows.
        scores = ops.einsum("bqhk,bthk->bhqt", ops.cast(q, "float32"), ops.cast(k, "float32"))
        scores = scores / ops.sqrt(ops.cast(self._dk, "float32"))
        if mask is not None:
            mask = mask[:, None, :, :]
        weights = masked_softmax(scores, mask, axis=-1)
        dropped = self.attention_dropout_layer(weights, training=training)
        attended = ops.einsum("bhqt,bthk->bqhk", ops.cast(dropped, v.dtype), v)
        return self.o_proj[i](attended), weights

    def call(self, query, context=None, query_mask=None, context_mask=None, training=False, return_attention=False):
        if (context is None) != self._self_attention:
            raise ValueError(
                "CrossModalEncoder was built for "
                f"{'self' if self._self_attention else 'cross'}-attention; call it "
                f"{'without' if self._self_attention else 'with'} a context."
            )
        if self._self_attention:
            context_mask = query_mask
        if query_mask is not None:
            query_mask = ops.cast(query_mask, "bool")
            query = zero_masked(query, query_mask)
        if context_mask is not None:
            context_mask = ops.cast(context_mask, "bool")
        if context is not None and context_mask is not None:
            # Zero the padding (by selection: 0 * inf is NaN) so that
            # LayerNorm/projections of garbage never reach a real step
            # through a zero attention weight, nor a gradient.
            context = zero_masked(context, context_mask)
        if context_mask is None:
            mask = None
        else:
            if query_mask is None:
                query_mask_for_attn = ops.ones(ops.shape(query)[:2], dtype="bool")
            else:
                query_mask_for_attn = query_mask
            mask = attention_mask(query_mask_for_attn, context_mask)

        h = query
        attention = []
        for i in range(self.num_layers):
            x = self.query_norms[i](h)
            if self._self_attention:
                c = x
            elif self.context_norms:
                c = self.context_norms[i](context)
            else:
                c = context
            attended, weights = self._attend(i, x, c, mask, training)
            attention.append(weights)
            h_hat = self.dropout_layer(attended, training=training) + x
            y = self.ffn_norms[i](h_hat)
            h = self.dropout_layer(self.ffn_out[i](self.ffn_in[i](y)), training=training) + y
        if query_mask is not None:
            h = zero_masked(h, query_mask)
        if return_attention:
            return h, ops.stack(attention, axis=1)
        return h

    def compute_output_shape(self, query_shape, *args, **kwargs):
        return tuple(query_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "ffn_dim": self.ffn_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "normalize_context": self.normalize_context,
            }
        )
        return config
