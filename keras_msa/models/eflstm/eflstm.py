import keras
from keras import layers
from keras import ops

from keras_msa.models.base import MODALITIES
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import register_model
from keras_msa.utils.masks import last_valid_step
from keras_msa.utils.masks import masked_rnn


#: What makes an EFLSTM MMSA's EF_LSTM (PyTorch BatchNorm1d's eps and
#: momentum 0.1, which is Keras's 0.9).
_MMSA = {"time_batchnorm": True, "head": "mmsa", "batchnorm_epsilon": 1e-5, "batchnorm_momentum": 0.9,
         "task_loss": "mae"}


@register_model("eflstm")
@keras.saving.register_keras_serializable(package="keras_msa")
class EFLSTM(MSAModel):
    """Early-fusion LSTM baseline (EF-LSTM, as in the MMSA framework).

    The aligned modalities are concatenated per time step and read by an
    LSTM; the state at the last real step goes through a small head. Needs
    aligned inputs (one T for all modalities); a time step is real when any
    modality has it, and the features of a missing modality are zeros.

        x_t = [t_t; a_t; v_t],   h_T = LSTM^L(norm(x))_T,
        y = W_2 drop(ReLU(W_1 drop_mmsa(h_T) + b_1)) + b_2

    The `mmsa_*` presets are MMSA 2.2.1's EF_LSTM
    (`models/singleTask/EF_LSTM.py`, `config_regression.json` `ef_lstm`):
    `norm` is a BatchNorm over the *time* axis (one mean/variance per step,
    over the batch and the features, as `nn.BatchNorm1d(seq_len)` on
    `[B, T, D]`; PyTorch's eps 1e-5 and momentum 0.1, i.e. Keras momentum
    0.9), `num_layers` stacked LSTMs with dropout between them (PyTorch's
    `nn.LSTM(dropout=...)`), and dropout before both head layers
    (`drop_mmsa`, `head="mmsa"`). Where they differ from MMSA:

    - MMSA reads every step, padding included (its loader zero-pads to
      `seq_len`), and takes the state after the last padded step; here
      padded steps are skipped and the state after the last *real* step is
      used. On unpadded batches the two are the same computation.
    - MMSA aligns unaligned inputs to the text length by average pooling
      (`subNets/AlignNets.py`, `avg_pool`) inside the model; this model
      needs aligned inputs (MMSA's `aligned_50` features), and SIMS, which
      MMSA only ships unaligned, must be aligned by the data pipeline.
    - The time BatchNorm has one weight per step, so the model only runs
      on the time length it was built with (50 in MMSA's aligned data).
    - Keras updates the moving variance with the biased batch variance,
      PyTorch with the unbiased one (a factor n/(n-1), n = B*D): training
      statistics and gradients are identical, the running averages differ
      by that factor.

    Args:
        hidden_dim: LSTM width.
        head_dim: width of the dense layer before the output.
        dropout: dropout rate (head, and between stacked LSTMs).
        modalities: which modalities to concatenate.
        num_layers: stacked LSTM layers.
        time_batchnorm: BatchNorm over the time axis (MMSA) instead of a
            LayerNorm over the features (default).
        head: `"default"` (dense, dropout, output) or `"mmsa"` (dropout,
            dense, dropout, output).
        batchnorm_epsilon, batchnorm_momentum: of the time BatchNorm
            (Keras convention: momentum is the moving average's decay).
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
        # MMSA 2.2.1 config_regression.json, ef_lstm.datasetParams.
        "mmsa_mosi": {"hidden_dim": 128, "head_dim": 128, "num_layers": 4, "dropout": 0.5, **_MMSA},
        "mmsa_mosei": {"hidden_dim": 256, "head_dim": 256, "num_layers": 2, "dropout": 0.4, **_MMSA},
        "mmsa_sims": {"hidden_dim": 32, "head_dim": 32, "num_layers": 3, "dropout": 0.5, **_MMSA},
    }
    #: Training protocols (keras_msa/training/protocol.py). The paper
    #: presets: a baseline the papers compare against without giving its
    #: training, so the project's defaults. The `mmsa_*` presets: MMSA's
    #: trainer (`trains/singleTask/EF_LSTM.py`) with its config's values:
    #: Adam whose `weight_decay` is PyTorch's coupled L2 term
    #: (`l2_weight_decay`: wd * w added to every gradient, biases and
    #: BatchNorm included), L1 loss (the model preset), no clipping or
    #: schedule, early stopping after 8 epochs without a better validation loss.
    training_presets = {
        **{name: {"our choice": {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32, "epochs": 30,
                                  "patience": 10, "monitor": "mae"}}
           for name in ("mosi", "mosei", "sims")},
        "mmsa_mosi": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 32, "learning_rate": 1e-3, "l2_weight_decay": 5e-3, "patience": 8, "monitor": "loss"},
                  "our choice": {"epochs": 100},
                  "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling"}},
        "mmsa_mosei": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 128, "learning_rate": 5e-3, "l2_weight_decay": 1e-4, "patience": 8, "monitor": "loss"},
                  "our choice": {"epochs": 100},
                  "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling"}},
        "mmsa_sims": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 128, "learning_rate": 5e-4, "l2_weight_decay": 1e-3, "patience": 8, "monitor": "loss"},
                  "our choice": {"epochs": 100},
                  "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling"}},
    }

    def __init__(
        self,
        hidden_dim=64,
        head_dim=64,
        dropout=0.3,
        modalities=MODALITIES,
        num_layers=1,
        time_batchnorm=False,
        head="default",
        batchnorm_epsilon=1e-3,
        batchnorm_momentum=0.99,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if head not in ("default", "mmsa"):
            raise ValueError(f"EFLSTM: head must be 'default' or 'mmsa', got {head!r}.")
        if int(num_layers) < 1:
            raise ValueError(f"EFLSTM: num_layers must be >= 1, got {num_layers}.")
        self.hidden_dim = hidden_dim
        self.head_dim = head_dim
        self.dropout = dropout
        self.modalities = tuple(modalities)
        self.num_layers = int(num_layers)
        self.time_batchnorm = bool(time_batchnorm)
        self.head_style = head
        self.batchnorm_epsilon = batchnorm_epsilon
        self.batchnorm_momentum = batchnorm_momentum
        if self.time_batchnorm:
            # axis=1: the steps are the channels, as nn.BatchNorm1d(seq_len).
            self.norm = layers.BatchNormalization(axis=1, epsilon=batchnorm_epsilon, momentum=batchnorm_momentum)
        else:
            self.norm = layers.LayerNormalization()
        self.lstm = layers.LSTM(hidden_dim, return_sequences=True)
        self.stacked_lstms = [
            layers.LSTM(hidden_dim, return_sequences=True, name=f"lstm_{i}") for i in range(1, self.num_layers)
        ]
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
        x = ops.concatenate(feats, axis=-1)
        if (self.time_batchnorm and self.norm.built and x.shape[1] is not None
                and x.shape[1] != self.norm.gamma.shape[0]):
            raise ValueError(
                f"EFLSTM with time_batchnorm was built on {self.norm.gamma.shape[0]} steps (one BatchNorm "
                f"channel per step, as MMSA's nn.BatchNorm1d(seq_len)); got {x.shape[1]} steps."
            )
        x = self.norm(x, training=training)
        mask = masks[0]
        for m in masks[1:]:
            mask = ops.logical_or(mask, m)
        # masked_rnn: a sample with every modality missing, or a left-padded
        # batch, cannot trip the cuDNN mask check on a GPU.
        h = masked_rnn(self.lstm, x, mask, training=training)
        for lstm in self.stacked_lstms:
            h = masked_rnn(lstm, self.drop(h, training=training), mask, training=training)
        h = last_valid_step(h, mask)
        if self.head_style == "mmsa":
            h = self.drop(h, training=training)
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
                "num_layers": self.num_layers,
                "time_batchnorm": self.time_batchnorm,
                "head": self.head_style,
                "batchnorm_epsilon": self.batchnorm_epsilon,
                "batchnorm_momentum": self.batchnorm_momentum,
            }
        )
        return config
