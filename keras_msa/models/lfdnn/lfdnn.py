import keras
from keras import layers

from keras_msa.layers.masked_mean_pooling import MaskedMeanPooling
from keras_msa.models.base import MODALITIES
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import register_model


@register_model("lfdnn")
@keras.saving.register_keras_serializable(package="keras_msa")
class LFDNN(MSAModel):
    """Late-fusion DNN baseline (LF-DNN, as in the MMSA framework).

    Each modality is mean-pooled over its real steps (padding ignored, a
    missing modality pools to zeros), passed through its own two-layer MLP,
    and the three embeddings are concatenated into a regression head.

    Args:
        hidden_dims: dict modality -> hidden width of its sub-network.
        fusion_dim: width of the post-fusion layer.
        dropout: dropout rate of the sub-networks and the head.
        modalities: which modalities to use (drop one for ablations).
        **kwargs: `MSAModel` arguments (`task_loss`, `name`, ...).

    Example:

    >>> import numpy as np
    >>> model = LFDNN()
    >>> batch = {
    ...     "text": np.zeros((2, 7, 16), "float32"), "text_mask": np.ones((2, 7), bool),
    ...     "audio": np.zeros((2, 7, 5), "float32"), "audio_mask": np.ones((2, 7), bool),
    ...     "vision": np.zeros((2, 7, 20), "float32"), "vision_mask": np.ones((2, 7), bool),
    ... }
    >>> model(batch)["sentiment"].shape
    (2, 1)
    """

    presets = {
        "mosi": {"hidden_dims": {"text": 128, "audio": 16, "vision": 32}, "fusion_dim": 128, "dropout": 0.2},
        "mosei": {"hidden_dims": {"text": 128, "audio": 32, "vision": 64}, "fusion_dim": 128, "dropout": 0.2},
        "sims": {"hidden_dims": {"text": 128, "audio": 16, "vision": 128}, "fusion_dim": 128, "dropout": 0.2},
    }

    #: Training protocols (keras_msa/training/protocol.py): a baseline the
    #: papers compare against without giving its training; the project's
    #: defaults (Adam 1e-3, batch 32, 30 epochs, patience 10 on validation MAE).
    training_presets = {
        name: {"our choice": {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32, "epochs": 30,
                               "patience": 10, "monitor": "mae"}}
        for name in presets
    }

    def __init__(
        self,
        hidden_dims=None,
        fusion_dim=128,
        dropout=0.2,
        modalities=MODALITIES,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dims = dict(hidden_dims or {"text": 128, "audio": 16, "vision": 32})
        self.fusion_dim = fusion_dim
        self.dropout = dropout
        self.modalities = tuple(modalities)
        self.pool = MaskedMeanPooling()
        self.subnets = {}
        for m in self.modalities:
            h = self.hidden_dims[m]
            self.subnets[m] = keras.Sequential(
                [
                    layers.LayerNormalization(),
                    layers.Dense(h, activation="relu"),
                    layers.Dropout(dropout),
                    layers.Dense(h, activation="relu"),
                ],
                name=f"{m}_subnet",
            )
        self.fusion = layers.Dense(fusion_dim, activation="relu", name="fusion")
        self.fusion_dropout = layers.Dropout(dropout)
        self.head = layers.Dense(1, dtype="float32", name="sentiment_head")

    def call(self, inputs, training=False):
        embeddings = []
        for m in self.modalities:
            x, mask = get_modality(inputs, m)
            embeddings.append(self.subnets[m](self.pool(x, mask=mask), training=training))
        h = keras.ops.concatenate(embeddings, axis=-1)
        h = self.fusion_dropout(self.fusion(h), training=training)
        return {"sentiment": self.head(h)}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dims": self.hidden_dims,
                "fusion_dim": self.fusion_dim,
                "dropout": self.dropout,
                "modalities": list(self.modalities),
            }
        )
        return config
