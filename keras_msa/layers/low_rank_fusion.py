import math

import keras
from keras import ops

from keras_msa.layers.tensor_fusion import _with_one


@keras.saving.register_keras_serializable(package="keras_msa")
class LowRankFusion(keras.layers.Layer):
    """Low-rank multimodal fusion (LMF; Liu et al., ACL 2018, Eqs. 5-6).

    The tensor-fusion weight W (applied to [1; h_1] (x) ... (x) [1; h_M]) is
    kept in rank-r form, W = sum_i (x)_m w_m^(i), so the output never builds
    the outer product:

        f_i = prod_m ([1; h_m] W_m^(i))        (elementwise over outputs)
        y   = sum_i lambda_i f_i + b

    with one factor W_m of shape `[r, d_m + 1, output_dim]` per modality, the
    rank weights lambda `[1, r]` and the bias b `[1, output_dim]` (LMF's code
    and MMSA's `models/singleTask/LMF.py` use the weighted sum lambda where
    Eq. 6 sums with weight 1).

    Args:
        rank: r.
        output_dim: width of y.
        train_fusion_weights: whether lambda and b are trained. MMSA's LMF
            trainer leaves them out of its optimizer (they stay at their
            initial values); False reproduces that.
        factor_scale: s, the factors' learning-rate multiplier. Each factor
            is stored as V = W / s and used as W = s V. Adam's step does not
            depend on the gradient's scale, so with Adam at learning rate
            eta, V moves by about eta and W by s * eta: MMSA's separate
            `factor_lr` is `factor_scale * learning_rate` (exact up to Adam's
            epsilon; a decoupled weight decay (AdamW) shrinks W at the rate
            eta * wd, not s * eta * wd). 1 leaves W as the variable.

    Masks: `mask` is a list with one `[B]` bool (or None) per input saying
    whether the sample has that modality; a missing one enters as [1; 0].

    Example:

    >>> import numpy as np
    >>> layer = LowRankFusion(rank=2, output_dim=1)
    >>> tuple(layer([np.ones((3, 4), "float32"), np.ones((3, 2), "float32")]).shape)
    (3, 1)
    """

    def __init__(self, rank, output_dim=1, train_fusion_weights=True, factor_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.rank = int(rank)
        self.output_dim = int(output_dim)
        self.train_fusion_weights = bool(train_fusion_weights)
        self.factor_scale = float(factor_scale)
        if not self.factor_scale > 0:
            raise ValueError(f"LowRankFusion: factor_scale must be > 0; got {factor_scale}.")
        if self.rank < 1 or self.output_dim < 1:
            raise ValueError(f"LowRankFusion: rank and output_dim must be >= 1; got {rank}, {output_dim}.")
        self.supports_masking = True

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2:
            raise ValueError(f"LowRankFusion takes a list of at least two [batch, dim] tensors; got {input_shape!r}.")
        r, o = self.rank, self.output_dim
        self.factors = []
        for i, shape in enumerate(input_shape):
            d = shape[-1] + 1
            # Xavier-normal with PyTorch's fan rule for a 3-D tensor, as LMF's code.
            # (of W = s V: V's is divided by s).
            std = math.sqrt(2.0 / (d * o + r * o)) / self.factor_scale
            self.factors.append(self.add_weight(shape=(r, d, o), name=f"factor_{i}",
                                                initializer=keras.initializers.RandomNormal(stddev=std)))
        self.fusion_weights = self.add_weight(
            shape=(1, r), name="fusion_weights", trainable=self.train_fusion_weights,
            initializer=keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (r + 1))))
        self.fusion_bias = self.add_weight(shape=(1, o), name="fusion_bias", initializer="zeros",
                                           trainable=self.train_fusion_weights)

    def call(self, inputs, mask=None):
        masks = list(mask) if isinstance(mask, (list, tuple)) else [None] * len(inputs)
        fused = None
        for h, present, factor in zip(inputs, masks, self.factors):
            f = ops.einsum("bd,rdo->rbo", _with_one(h, present), self.factor_scale * factor)
            fused = f if fused is None else fused * f
        return ops.einsum("r,rbo->bo", self.fusion_weights[0], fused) + self.fusion_bias

    def factor_values(self):
        """The factors W_m = s V_m as arrays (the layout of LMF's code)."""
        return [self.factor_scale * ops.convert_to_numpy(f) for f in self.factors]

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"rank": self.rank, "output_dim": self.output_dim,
                       "train_fusion_weights": self.train_fusion_weights,
                       "factor_scale": self.factor_scale})
        return config
