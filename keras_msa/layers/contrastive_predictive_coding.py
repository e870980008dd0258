import keras
from keras import layers

from keras_msa.losses.info_nce import info_nce


@keras.saving.register_keras_serializable(package="keras_msa")
class ContrastivePredictiveCoding(keras.layers.Layer):
    """MMIM's fusion-to-modality CPC bound (Han et al., EMNLP 2021, Sec. 3.4,
    Eqs. 9-10; MMSA's `CPC`).

    A predictor G maps the fusion z back to a modality's representation x;
    the score of a pair is the cosine of prediction and target, and each
    sample's own pair is contrasted with the batch:

        x_hat_i = G(z_i)
        s_ij    = <x_i / |x_i|, x_hat_j / |x_hat_j|>
        nce     = -mean_i (s_ii - log sum_j exp(s_ij))

    i.e. InfoNCE at temperature 1 (`keras_msa.losses.info_nce`), whose
    minimisation maximises a lower bound of I(x; z). G is one linear map
    (`num_layers` = 1, MMSA's MMIM presets) or `Dense(x_dim, activation)`
    followed by `num_layers - 1` linear maps of width x_dim.

    `call(x, z, sample_mask=None)` returns `nce`; `sample_mask` `[B]` removes samples
    (e.g. ones lacking the modality) from anchors and negatives.

    Args:
        num_layers: depth of G.
        activation: G's activation after its first layer when deeper than 1.

    Example:

    >>> import numpy as np
    >>> cpc = ContrastivePredictiveCoding()
    >>> x, z = np.eye(3, 4, dtype="float32"), np.ones((3, 5), "float32")
    >>> tuple(cpc(x, z).shape)
    ()
    """

    def __init__(self, num_layers=1, activation="tanh", **kwargs):
        super().__init__(**kwargs)
        self.num_layers = int(num_layers)
        if self.num_layers < 1:
            raise ValueError(f"ContrastivePredictiveCoding: num_layers must be >= 1; got {num_layers}.")
        self.activation = activation
        self.predictor = None

    def build(self, x_shape, z_shape):
        width = int(x_shape[-1])
        self.predictor = [
            layers.Dense(width, activation=self.activation if (i == 0 and self.num_layers > 1) else None,
                         kernel_initializer="glorot_normal", name=f"predictor_{i}")
            for i in range(self.num_layers)
        ]
        shape = (None, int(z_shape[-1]))
        for dense in self.predictor:
            dense.build(shape)
            shape = (None, width)
        self.built = True

    def predict_target(self, z):
        """G(z) `[B, x_dim]`."""
        for dense in self.predictor:
            z = dense(z)
        return z

    def call(self, x, z, sample_mask=None):
        return info_nce(x, self.predict_target(z), temperature=1.0, mask=sample_mask)

    def compute_output_shape(self, x_shape, z_shape):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update({"num_layers": self.num_layers, "activation": self.activation})
        return config
