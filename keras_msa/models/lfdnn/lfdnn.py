import keras
from keras import layers

from keras_msa.layers.masked_mean_pooling import MaskedMeanPooling
from keras_msa.models.base import MODALITIES
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import register_model
from keras_msa.utils.masks import masked_rnn


_MMSA = {"style": "mmsa", "batchnorm_epsilon": 1e-5, "batchnorm_momentum": 0.9, "task_loss": "mae"}


@register_model("lfdnn")
@keras.saving.register_keras_serializable(package="keras_msa")
class LFDNN(MSAModel):
    """Late-fusion DNN baseline (LF-DNN, as in the MMSA framework).

    Each modality is mean-pooled over its real steps (padding ignored, a
    missing modality pools to zeros), passed through its own two-layer MLP,
    and the three embeddings are concatenated into a regression head.

    `style="mmsa"` (the `mmsa_*` presets) is MMSA 2.2.1's LF_DNN
    (`models/singleTask/LF_DNN.py`, `subNets/FeatureNets.py`,
    `config_regression.json` `lf_dnn`):

        a = SubNet_a(mean_t audio),  v = SubNet_v(mean_t vision),
        SubNet(x) = ReLU(W_3 ReLU(W_2 ReLU(W_1 drop(BN(x)))))
        t = W_t drop_t(h_T),  h = LSTM(text)
        y = W_6 ReLU(W_5 ReLU(W_4 drop_f([a; v; t])))

    MMSA's loader time-averages audio and vision (`need_normalized`); here
    the average is over the real steps (masked). MMSA's `np.mean` runs over
    the padded length, so on zero-padded sequences its averages are this
    one's times (real steps / padded length); on unpadded inputs they are
    the same. The text LSTM's state after the last real step stands for
    MMSA's state after the last (padded) step. MMSA's TextSubNet turns its
    dropout off for a one-layer LSTM, so the presets' text dropout is 0.
    The BatchNorms take PyTorch's eps 1e-5 and momentum 0.1 (Keras 0.9).

    Args:
        hidden_dims: dict modality -> hidden width of its sub-network (the
            text LSTM's width in the mmsa style).
        fusion_dim: width of the post-fusion layer(s).
        dropout: dropout rate of the sub-networks and the head.
        modalities: which modalities to use (drop one for ablations).
        style: `"default"` or `"mmsa"` (above).
        text_out: mmsa style, width of the text embedding (MMSA's `text_out`).
        dropouts: mmsa style, dict with the rates of `"audio"`, `"vision"`,
            `"text"` and `"fusion"` (default: `dropout` for each).
        batchnorm_epsilon, batchnorm_momentum: of the mmsa SubNets'
            BatchNorms (Keras convention).
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
        # MMSA 2.2.1 config_regression.json, lf_dnn.datasetParams (hidden_dims
        # is MMSA's [text, audio, video]; dropouts its [audio, video, text,
        # post_fusion], the text one unused by MMSA for a one-layer LSTM).
        "mmsa_mosi": {"hidden_dims": {"text": 128, "audio": 16, "vision": 128}, "text_out": 256,
                      "fusion_dim": 128, "dropout": 0.2,
                      "dropouts": {"audio": 0.2, "vision": 0.2, "text": 0.0, "fusion": 0.2}, **_MMSA},
        "mmsa_mosei": {"hidden_dims": {"text": 128, "audio": 32, "vision": 128}, "text_out": 128,
                       "fusion_dim": 128, "dropout": 0.2,
                       "dropouts": {"audio": 0.2, "vision": 0.2, "text": 0.0, "fusion": 0.2}, **_MMSA},
        "mmsa_sims": {"hidden_dims": {"text": 128, "audio": 32, "vision": 128}, "text_out": 256,
                      "fusion_dim": 32, "dropout": 0.3,
                      "dropouts": {"audio": 0.3, "vision": 0.3, "text": 0.0, "fusion": 0.5}, **_MMSA},
    }
    #: MMSA's training protocol for LF_DNN (`trains/singleTask/LF_DNN.py`):
    #: Adam with the config's `weight_decay` given to `torch.optim.Adam`, an
    #: L2 term added to the gradient (coupled; Keras's Adam `weight_decay` is
    #: decoupled, so it is named `l2_weight_decay` here and `weight_decay`
    #: is 0), L1 loss, no clipping or schedule, early stopping after
    #: `early_stop` = 8 epochs without a better validation loss.
    #: Training protocols (keras_msa/training/protocol.py). The paper
    #: presets: a baseline the papers compare against without giving its
    #: training, so the project's defaults. The `mmsa_*` presets: MMSA's
    #: trainer (`trains/singleTask/LF_DNN.py`) with its config's values:
    #: Adam whose `weight_decay` is PyTorch's coupled L2 term
    #: (`l2_weight_decay`), L1 loss (the model preset), no clipping or
    #: schedule, early stopping after 8 epochs without a better validation loss.
    training_presets = {
        **{name: {"our choice": {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32, "epochs": 30,
                                  "patience": 10, "monitor": "mae"}}
           for name in ("mosi", "mosei", "sims")},
        "mmsa_mosi": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 128, "learning_rate": 1e-3, "l2_weight_decay": 1e-2, "patience": 8, "monitor": "loss"},
                  "our choice": {"epochs": 100},
                  "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling"}},
        "mmsa_mosei": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 64, "learning_rate": 2e-3, "l2_weight_decay": 1e-3, "patience": 8, "monitor": "loss"},
                  "our choice": {"epochs": 100},
                  "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling"}},
        "mmsa_sims": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 128, "learning_rate": 5e-3, "l2_weight_decay": 5e-3, "patience": 8, "monitor": "loss"},
                  "our choice": {"epochs": 100},
                  "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling"}},
    }

    def __init__(
        self,
        hidden_dims=None,
        fusion_dim=128,
        dropout=0.2,
        modalities=MODALITIES,
        style="default",
        text_out=128,
        dropouts=None,
        batchnorm_epsilon=1e-3,
        batchnorm_momentum=0.99,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if style not in ("default", "mmsa"):
            raise ValueError(f"LFDNN: style must be 'default' or 'mmsa', got {style!r}.")
        self.hidden_dims = dict(hidden_dims or {"text": 128, "audio": 16, "vision": 32})
        self.fusion_dim = fusion_dim
        self.dropout = dropout
        self.modalities = tuple(modalities)
        self.style = style
        self.text_out = text_out
        self.dropouts = {k: dropout for k in ("text", "audio", "vision", "fusion")}
        unknown = sorted(set(dropouts or {}) - set(self.dropouts))
        if unknown:
            raise ValueError(f"LFDNN: dropouts has unknown keys {unknown}; expected text, audio, vision, fusion.")
        self.dropouts.update(dropouts or {})
        self.batchnorm_epsilon = batchnorm_epsilon
        self.batchnorm_momentum = batchnorm_momentum
        self.pool = MaskedMeanPooling()
        self.subnets = {}
        if style == "mmsa":
            self._build_mmsa_layers()
            return
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

    def _build_mmsa_layers(self):
        for m in self.modalities:
            h = self.hidden_dims[m]
            if m == "text":
                self.text_lstm = layers.LSTM(h, name="text_lstm")
                self.text_dropout = layers.Dropout(self.dropouts["text"])
                self.text_projection = layers.Dense(self.text_out, name="text_projection")
                continue
            self.subnets[m] = keras.Sequential(
                [
                    layers.BatchNormalization(epsilon=self.batchnorm_epsilon, momentum=self.batchnorm_momentum),
                    layers.Dropout(self.dropouts[m]),
                    layers.Dense(h, activation="relu"),
                    layers.Dense(h, activation="relu"),
                    layers.Dense(h, activation="relu"),
                ],
                name=f"{m}_subnet",
            )
        self.fusion_dropout = layers.Dropout(self.dropouts["fusion"])
        self.fusion = layers.Dense(self.fusion_dim, activation="relu", name="fusion")
        self.fusion_2 = layers.Dense(self.fusion_dim, activation="relu", name="fusion_2")
        self.head = layers.Dense(1, dtype="float32", name="sentiment_head")

    def _call_mmsa(self, inputs, training):
        embeddings = []
        for m in self.modalities:
            x, mask = get_modality(inputs, m)
            if m == "text":
                # masked_rnn: an all-padding row or a left-padded batch cannot
                # trip the cuDNN mask check on a GPU.
                h = masked_rnn(self.text_lstm, x, mask, training=training)
                embeddings.append(self.text_projection(self.text_dropout(h, training=training)))
            else:
                embeddings.append(self.subnets[m](self.pool(x, mask=mask), training=training))
        h = self.fusion_dropout(keras.ops.concatenate(embeddings, axis=-1), training=training)
        h = self.fusion_2(self.fusion(h))
        return {"sentiment": self.head(h)}

    def call(self, inputs, training=False):
        if self.style == "mmsa":
            return self._call_mmsa(inputs, training)
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
                "style": self.style,
                "text_out": self.text_out,
                "dropouts": dict(self.dropouts),
                "batchnorm_epsilon": self.batchnorm_epsilon,
                "batchnorm_momentum": self.batchnorm_momentum,
            }
        )
        return config
