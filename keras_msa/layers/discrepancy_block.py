import keras
from keras import ops

from keras_msa.layers.masked_multi_head_attention import MaskedMultiHeadAttention

MODES = ("difference", "attention")


@keras.saving.register_keras_serializable(package="keras_msa")
class DiscrepancyBlock(keras.layers.Layer):
    """PS-MDL: primary-secondary modality discrepancy learning (SSGDL).

    Seed 000 (SSGDL), Sec. III-B and the PS-MDL description of the
    introduction (the seed's own section on it is cut off; ARCHITECTURES.md,
    SSGDL, fixes the details). The fused modality ``f`` `[B, T, d]` is the
    primary; each secondary ``m`` (text, audio, vision on the same timeline) is
    read by cross-attention with ``f`` as the query:

        c_m = MHA_m(query=f, key=value=m)
        delta_m = c_m - f        (mode="difference", default)
        delta_m = c_m            (mode="attention", as the official code)
        g = [delta_1, ..., delta_S] W_p + b_p                 (project to d)
        h = g + MHA_s(LN_1(g))                                (pre-LN self-attention)
        out = h + FFN(LN_2(h)),  FFN = Dense(ffn_dim, ReLU) -> Dense(d)

    Masking: `primary_mask` `[B, T]` marks real steps of ``f`` (and of the
    self-attention); `secondary_masks` (one `[B, T_m]` per secondary) mark real
    steps of each secondary. Padded steps are never attended to; a secondary
    that is entirely padding contributes ``c_m`` = the output bias of its
    attention (finite, independent of its values); outputs at padded primary
    steps are zero.

    Args:
        num_heads: heads of every attention (8 in SSGDL's alignment; the seed
            gives no number for PS-MDL, so the same by default).
        key_dim: per-head width (default d // num_heads).
        mode: `"difference"` or `"attention"`.
        ffn_dim: hidden width of the FFN (default 2 d).
        dropout: dropout on attention weights and sublayer outputs.
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        primary: float `[B, T, d]`.
        secondaries: list of float `[B, T_m, d_m]`.
        primary_mask: optional boolean `[B, T]`.
        secondary_masks: optional list of boolean `[B, T_m]` (or None entries).
        training: enables dropout.

    Example:

    >>> import numpy as np
    >>> block = DiscrepancyBlock(num_heads=2)
    >>> f = np.ones((2, 4, 8), "float32")
    >>> tuple(block(f, [f, f, f], primary_mask=np.ones((2, 4), bool)).shape)
    (2, 4, 8)
    """

    def __init__(self, num_heads=8, key_dim=None, mode="difference", ffn_dim=None, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Unknown mode '{mode}'; expected one of {MODES}.")
        self.num_heads = int(num_heads)
        self.key_dim = key_dim
        self.mode = mode
        self.ffn_dim = ffn_dim
        self.dropout = float(dropout)

    def build(self, primary_shape, secondaries_shape=None, *args, **kwargs):
        d = primary_shape[-1]
        if d is None:
            raise ValueError("DiscrepancyBlock needs a known primary width.")
        if not secondaries_shape:
            raise ValueError("DiscrepancyBlock needs at least one secondary modality.")
        d = int(d)
        policy = self.dtype_policy
        self.cross_attentions = []
        for i, shape in enumerate(secondaries_shape):
            mha = MaskedMultiHeadAttention(
                self.num_heads, self.key_dim, output_dim=d, dropout=self.dropout, name=f"cross_{i}", dtype=policy
            )
            mha.build((None, None, d), tuple(shape))
            self.cross_attentions.append(mha)
        self.project = keras.layers.Dense(d, name="project", dtype=policy)
        self.project.build((None, None, d * len(secondaries_shape)))
        self.norm_1 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm_1", dtype=policy)
        self.norm_1.build((None, None, d))
        self.self_attention = MaskedMultiHeadAttention(
            self.num_heads, self.key_dim, output_dim=d, dropout=self.dropout, name="self_attention", dtype=policy
        )
        self.self_attention.build((None, None, d))
        self.norm_2 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm_2", dtype=policy)
        self.norm_2.build((None, None, d))
        ffn = int(self.ffn_dim or 2 * d)
        self.ffn_in = keras.layers.Dense(ffn, activation="relu", name="ffn_in", dtype=policy)
        self.ffn_in.build((None, None, d))
        self.ffn_out = keras.layers.Dense(d, name="ffn_out", dtype=policy)
        self.ffn_out.build((None, None, ffn))
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy)
        self.built = True

    def call(self, primary, secondaries, primary_mask=None, secondary_masks=None, training=False):
        if len(secondaries) != len(self.cross_attentions):
            raise ValueError(
                f"DiscrepancyBlock was built for {len(self.cross_attentions)} secondary "
                f"modalities; got {len(secondaries)}."
            )
        if secondary_masks is None:
            secondary_masks = [None] * len(secondaries)
        if primary_mask is not None:
            primary_mask = ops.cast(primary_mask, "bool")
            primary = ops.where(ops.cast(primary_mask, "bool")[..., None], primary, 0)
        deltas = []
        for mha, sec, sec_mask in zip(self.cross_attentions, secondaries, secondary_masks):
            c = mha(primary, sec, query_mask=primary_mask, context_mask=sec_mask, training=training)
            deltas.append(c - primary if self.mode == "difference" else c)
        g = self.project(ops.concatenate(deltas, axis=-1))
        h = g + self.dropout_layer(
            self.self_attention(self.norm_1(g), query_mask=primary_mask, training=training), training=training
        )
        out = h + self.dropout_layer(self.ffn_out(self.ffn_in(self.norm_2(h))), training=training)
        if primary_mask is not None:
            out = ops.where(ops.cast(primary_mask, "bool")[..., None], out, 0)
        return out

    def compute_output_shape(self, primary_shape, *args, **kwargs):
        return tuple(primary_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "mode": self.mode,
                "ffn_dim": self.ffn_dim,
                "dropout": self.dropout,
            }
        )
        return config
