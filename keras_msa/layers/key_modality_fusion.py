import keras
from keras import ops

from keras_msa.utils.masks import attention_mask
from keras_msa.utils.masks import masked_mean
from keras_msa.utils.masks import zero_masked

MODALITIES = ("text", "audio", "vision")


@keras.saving.register_keras_serializable(package="keras_msa")
class KeyModalityFusion(keras.layers.Layer):
    """Fusion around a key modality: key self-attention + key-queried cross-attention.

    Implements seed 003 (M³SA) Eqs. 11-23. With key modality β and the other
    modalities α, γ (features `X_m` `[B, T_m, d]`):

    * Eqs. 13-17: `X_ββ = MHA(Q=X_β, K=X_β, V=X_β)` (multi-head self-attention
      on the key, h heads).
    * Eqs. 18-22: `X_βα = MHA(Q=X_β, K=X_α, V=X_α)` and likewise `X_βγ`
      (cross-modal attention, the key is always the query, so every output
      lives on the key's time axis).
    * Eq. 23: `X_f = Concat(X_βα, X_βγ, X_ββ)` `[B, T_β, 3d]` on the feature
      axis, then mean-pooled over the key's real steps to `[B, 3d]` for the
      fused head (Eq. 24).

    `key=None` gives the paper's "Equal" fusion of Fig. 8: self-attention on
    every modality (`X_tt, X_aa, X_vv`, each pooled over its own real steps),
    concatenated in modality order.

    Masking: `masks[m]` `[B, T_m]` (True = real step). Keys/values at padded
    steps are zeroed and excluded from attention, and pooling counts only the
    key's real steps, so padded values (inf and NaN included) change nothing.
    A modality whose mask
    is all False gives finite outputs: attended as keys it contributes a
    constant (its value projection of zeros), as the key it pools to zeros.

    Args:
        key: the key modality (`"text"`, `"audio"`, `"vision"`) or None for
            equal fusion.
        modalities: the modalities fused, in concatenation order.
        num_heads: h, attention heads (paper: 5).
        key_dim: per-head width (default `d // num_heads`, at least 1).
        dropout: attention dropout.
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        features: dict modality -> float `[B, T_m, d]`.
        masks: dict modality -> boolean `[B, T_m]` (missing = all real).
        training: enables attention dropout.
        return_attention: also return the attention weights
            `{"<query>_from_<key/value>": [B, h, T_query, T_kv]}` (float32,
            Keras' `return_attention_scores`, i.e. after the softmax): each
            query row sums to 1 over the real steps of the attended modality
            and is exactly 0 at its padded steps (all 0 when it has none).

    Returns:
        `[B, len(modalities) * d]` fused vector, or `(fused, weights)` with
        `return_attention`.

    Example:

    >>> import numpy as np
    >>> fusion = KeyModalityFusion(key="text", num_heads=5)
    >>> feats = {m: np.ones((2, t, 10), "float32") for m, t in (("text", 4), ("audio", 6), ("vision", 3))}
    >>> fusion(feats).shape
    (2, 30)
    """

    def __init__(self, key="text", modalities=MODALITIES, num_heads=5, key_dim=None, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.modalities = tuple(modalities)
        if key is not None and key not in self.modalities:
            raise ValueError(
                f"KeyModalityFusion: key must be one of {self.modalities} or None (equal "
                f"fusion); got {key!r}."
            )
        self.key = key
        self.num_heads = int(num_heads)
        self.key_dim = None if key_dim is None else int(key_dim)
        self.dropout = float(dropout)

    def pairs(self):
        """(query, key/value) modality pairs, in the order of Eq. 23."""
        if self.key is None:
            return [(m, m) for m in self.modalities]
        others = [(self.key, m) for m in self.modalities if m != self.key]
        return others + [(self.key, self.key)]

    def build(self, input_shape):
        missing = [m for m in self.modalities if m not in input_shape]
        if missing:
            raise KeyError(
                f"KeyModalityFusion expects features for {self.modalities}; missing {missing}."
            )
        widths = {m: input_shape[m][-1] for m in self.modalities}
        if len(set(widths.values())) != 1:
            raise ValueError(
                f"KeyModalityFusion needs one feature width d for every modality; got {widths}."
            )
        d = int(widths[self.modalities[0]])
        self.dim = d
        key_dim = self.key_dim or max(1, d // self.num_heads)
        self.attention = {}
        for q, kv in self.pairs():
            name = f"{q}_self_attention" if q == kv else f"{q}_to_{kv}_attention"
            mha = keras.layers.MultiHeadAttention(
                self.num_heads, key_dim, dropout=self.dropout, dtype=self.dtype_policy, name=name
            )
            mha.build((None, None, d), (None, None, d))
            self.attention[name] = mha

    def call(self, features, masks=None, training=False, return_attention=False):
        masks = dict(masks or {})
        feats, ms = {}, {}
        for m in self.modalities:
            if m not in features:
                raise KeyError(
                    f"KeyModalityFusion: no features for '{m}'; got {sorted(features)}."
                )
            x = features[m]
            mask = masks.get(m)
            if mask is None:
                mask = ops.ones(ops.shape(x)[:2], dtype="bool")
            mask = ops.cast(mask, "bool")
            # Zeroing padded steps keeps them out even where an all-padding
            # row makes the attention softmax uniform; by selection, since
            # 0 * inf is NaN.
            feats[m] = zero_masked(x, mask)
            ms[m] = mask
        pooled, weights = [], {}
        for q, kv in self.pairs():
            name = f"{q}_self_attention" if q == kv else f"{q}_to_{kv}_attention"
            out = self.attention[name](
                feats[q],
                feats[kv],
                feats[kv],
                attention_mask=attention_mask(ms[q], ms[kv]),
                return_attention_scores=return_attention,
                training=training,
            )
            if return_attention:
                out, scores = out
                weights[f"{q}_from_{kv}"] = ops.cast(scores, "float32")
            pooled.append(masked_mean(out, ms[q], axis=1))
        fused = ops.concatenate(pooled, axis=-1)
        if return_attention:
            return fused, weights
        return fused

    def compute_output_shape(self, input_shape):
        first = input_shape[self.modalities[0]]
        return (first[0], len(self.modalities) * first[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "key": self.key,
                "modalities": list(self.modalities),
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "dropout": self.dropout,
            }
        )
        return config
