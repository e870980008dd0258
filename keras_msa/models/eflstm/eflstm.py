import keras
from keras import layers
from keras import ops

from keras_msa.models.base import MODALITIES
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import register_model
from keras_msa.utils.masks import last_valid_step
from keras_msa.utils.masks import masked_rnn


@register_model("eflstm")
@keras.saving.register_keras_serializable(package="keras_msa")
class EFLSTM(MSAModel):
    """Early-fusion LSTM baseline (EF-LSTM, as in the MMSA framework).

    The aligned modalities are concatenated per time step and read by an
    LSTM; the state at the last real step goes through a small head. Needs
    aligned inputs (one T for all modalities); a time step is real when any
    modality has it, and the features of a missing modality are zeros.

    Args:
        hidden_dim: LSTM width.
        head_dim: width of the dense layer before the output.
        dropout: dropout rate.
        modalities: which modalities to concatenate.
        **kwargs: `MSAModel` arguments.

    Example:

    >>> import numpy as np
    >>> model = EFLSTM(hidden_dim=8)
    >>> batch = {
    ...     "text": np.zeros((2, 7, 16), "float32"), "text_mask": np.ones((2, 7), bool),
    ...     "audio": np.zeros((2, 7, 5), "float32"), "audio_mask": np.ones((2, 7), bool),
    ...     "vision": np.zeros((2, 7, 20), "float32"), "vision_mask": np.ones((2, 7), bool),
    ... }
    >>> model(batch)["sentiment"].shape
    (2, 1)
    """

    presets = {
        "mosi": {"hidden_dim": 64, "head_dim": 64, "dropout": 0.3},
        "mosei": {"hidden_dim": 128, "head_dim": 64, "dropout": 0.3},
        "sims": {"hidden_dim": 64, "head_dim": 64, "dropout": 0.3},
    }

    #: Training protocols (keras_msa/training/protocol.py): a baseline the
    #: papers compare against without giving its training; the project's
    #: defaults (Adam 1e-3, batch 32, 30 epochs, patience 10 on validation MAE).
    training_presets = {
        name: {"our choice": {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32, "epochs": 30,
                               "patience": 10, "monitor": "mae"}}
        for name in presets
    }

    def __init__(self, hidden_dim=64, head_dim=64, dropout=0.3, modalities=MODALITIES, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.head_dim = head_dim
        self.dropout = dropout
        self.modalities = tuple(modalities)
        self.norm = layers.LayerNormalization()
        self.lstm = layers.LSTM(hidden_dim, return_sequences=True)
        self.hidden = layers.Dense(head_dim, activation="relu")
        self.drop = layers.Dropout(dropout)
        self.head = layers.Dense(1, dtype="float32", name="sentiment_head")

    def call(self, inputs, training=False):
        feats, masks = [], []
        for m in self.modalities:
            # Padded steps come back as exact zeros (selected, not
            # multiplied: 0 * inf is NaN).
            x, mask = get_modality(inputs, m)
            feats.append(x)
            masks.append(mask)
        lengths = {int(f.shape[1]) for f in feats if f.shape[1] is not None}
        if len(lengths) > 1:
            raise ValueError(
                f"EFLSTM needs aligned modalities (one time length); got lengths "
                f"{dict(zip(self.modalities, [f.shape[1] for f in feats]))}."
            )
        x = self.norm(ops.concatenate(feats, axis=-1))
        mask = masks[0]
        for m in masks[1:]:
            mask = ops.logical_or(mask, m)
        # masked_rnn: a sample with every modality missing, or a left-padded
        # batch, cannot trip the cuDNN mask check on a GPU.
        h = masked_rnn(self.lstm, x, mask, training=training)
        h = last_valid_step(h, mask)
        h = self.drop(self.hidden(h), training=training)
        return {"sentiment": self.head(h)}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "head_dim": self.head_dim,
                "dropout": self.dropout,
                "modalities": list(self.modalities),
            }
        )
        return config
