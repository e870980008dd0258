import keras
from keras import layers
from keras import ops

from keras_msa.layers.unimodal_label_generator import ULGM_MODES
from keras_msa.layers.unimodal_label_generator import UnimodalLabelGenerator
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import register_model
from keras_msa.models.text_backbone_mode import TextBackboneMode
from keras_msa.utils.masks import masked_mean

#: Output keys of the unimodal predictions and of the four representations.
UNIMODAL_OUTPUTS = {"text": "sentiment_text", "audio": "sentiment_audio", "vision": "sentiment_vision"}
FEATURE_OUTPUTS = {m: f"feature_{m}" for m in ULGM_MODES}
#: MMSA's config_regression.json `self_mm` model settings per dataset.
_MMSA = {
    "mosi": dict(audio_lstm_dim=16, vision_lstm_dim=32, audio_out=16, vision_out=32, fusion_dim=128,
                 text_dim=32, audio_dim=16, vision_dim=32, fusion_dropout=0.0, text_dropout=0.1,
                 audio_dropout=0.1, vision_dropout=0.0, label_bound=3.0),
    "mosei": dict(audio_lstm_dim=16, vision_lstm_dim=32, audio_out=16, vision_out=32, fusion_dim=128,
                  text_dim=32, audio_dim=16, vision_dim=32, fusion_dropout=0.1, text_dropout=0.0,
                  audio_dropout=0.0, vision_dropout=0.0, label_bound=3.0),
    "sims": dict(audio_lstm_dim=16, vision_lstm_dim=64, audio_out=16, vision_out=32, fusion_dim=128,
                 text_dim=64, audio_dim=16, vision_dim=32, fusion_dropout=0.0, text_dropout=0.1,
                 audio_dropout=0.1, vision_dropout=0.0, label_bound=1.0),
}


def _protocol(batch, l2):
    return {
        "MMSA": {"optimizer": "adam", "epsilon": 1e-8, "learning_rate": 1e-3, "backbone_learning_rate": 5e-5,
                 "l2_weight_decay": l2, "gradient_accumulation_steps": 4, "batch_size": batch,
                 "patience": 8, "monitor": "loss"},
        "our choice": {"epochs": 100},
        "notes": {
            "learning_rate": "MMSA's learning_rate_other; its audio/video LSTM groups' own rates are not "
                             "kept (README: differences)",
            "backbone_learning_rate": "MMSA's learning_rate_bert",
            "l2_weight_decay": "MMSA's weight_decay_other (torch Adam's L2), on every weight",
            "gradient_accumulation_steps": "MMSA's update_epochs: one optimizer step per 4 batches",
            "epochs": "MMSA trains until early stopping; 100 is a ceiling",
        },
    }


@register_model("selfmm")
@keras.saving.register_keras_serializable(package="keras_msa")
class SelfMM(TextBackboneMode, MSAModel):
    """Self-MM: a multimodal head and three unimodal heads, the unimodal ones
    trained on labels the model generates itself.

    Yu et al., "Learning Modality-Specific Representations with
    Self-Supervised Multi-Task Learning for Multimodal Sentiment Analysis",
    AAAI 2021; the MMSA 2.2.1 implementation (`models/multiTask/SELF_MM.py`,
    `trains/multiTask/SELF_MM.py`). Text is the first-token state of a BERT
    (`TextBackbone`, last layer, no pooler); audio and vision each run an
    LSTM whose last real state goes through dropout and a Dense layer
    (MMSA's `AuViSubNet`, padding removed by the masks as MMSA's packed
    sequences do). Then

        F_f = ReLU(W_f1 drop([h_t; h_a; h_v])),   y_f = W_f3 ReLU(W_f2 F_f)
        F_s = ReLU(W_s1 drop(h_s)),               y_s = W_s3 ReLU(W_s2 F_s)

    for s in text, audio, vision. The objective (Eq. 12) is

        L = mean|y_f - y| + sum_s mean(tanh(|y*_s - y|) |y_s - y*_s|)

    with the unimodal labels y*_s of a `UnimodalLabelGenerator` (ULGM), whose
    per-sample memory `compute_loss` updates after every training batch (the
    model's `epoch` counter gives MMSA's epoch number). Training batches
    must carry `sample_index` (int `[B]`: the example's position in the
    training split; `recipes/train.py` adds it, docs/data.md); evaluation
    needs none and touches no memory. Loss terms: `task` (the fusion L1) and
    `unimodal_text`, `unimodal_audio`, `unimodal_vision`.

    Outputs: `sentiment` (y_f), `sentiment_text`/`_audio`/`_vision` and the
    representations `feature_fusion`/`_text`/`_audio`/`_vision`, all float32.

    Args:
        text_backbone, backbone_preset, sequence_length, fine_tune: the
            BERT (see `TextBackboneMode`); without one, precomputed `text`
            features `[B, T, D]` are averaged over their real steps.
        train_samples: rows of the ULGM memory (the training split's size);
            None builds a model that predicts but cannot train.
        audio_lstm_dim, vision_lstm_dim: LSTM widths (MMSA `a/v_lstm_hidden_size`).
        audio_out, vision_out: sub-network outputs (MMSA `audio_out`, `video_out`).
        subnet_dropout: dropout on the LSTM state (MMSA `a/v_lstm_dropout`, 0).
        fusion_dim, text_dim, audio_dim, vision_dim: head widths (MMSA
            `post_fusion_dim`, `post_text_dim`, ...).
        fusion_dropout, text_dropout, audio_dropout, vision_dropout: head
            input dropouts (MMSA `post_*_dropout`).
        label_bound: ULGM's H; exclude_zero: ULGM's positive-centre rule.
        use_unimodal: False drops the three unimodal terms (the paper's
            "M" row of Table 4: the multimodal task alone).
        **kwargs: `MSAModel` arguments (`task_loss` defaults to "mae", MMSA's L1).

    Example:

    >>> import numpy as np
    >>> model = SelfMM(train_samples=4, audio_lstm_dim=4, vision_lstm_dim=4, audio_out=3, vision_out=3,
    ...                fusion_dim=8, text_dim=4, audio_dim=3, vision_dim=3)
    >>> batch = {
    ...     "text": np.zeros((2, 5, 6), "float32"),
    ...     "audio": np.zeros((2, 7, 5), "float32"), "audio_mask": np.ones((2, 7), bool),
    ...     "vision": np.zeros((2, 6, 4), "float32"), "vision_mask": np.ones((2, 6), bool),
    ... }
    >>> tuple(model(batch)["sentiment"].shape), tuple(model(batch)["feature_fusion"].shape)
    ((2, 1), (2, 8))
    """

    presets = {name: dict(config, sequence_length=50) for name, config in _MMSA.items()}

    #: MMSA's trainer (Adam over five groups, update_epochs = 4, early stop
    #: 8 on the validation loss) with config_regression.json's batch sizes
    #: and weight decays.
    training_presets = {"mosi": _protocol(16, 1e-3), "mosei": _protocol(32, 1e-2), "sims": _protocol(32, 1e-3)}

    #: Training batches need `sample_index` (recipes/train.py adds it).
    needs_sample_index = True

    def __init__(
        self,
        text_backbone=None,
        backbone_preset=None,
        sequence_length=50,
        fine_tune=None,
        train_samples=None,
        audio_lstm_dim=16,
        vision_lstm_dim=32,
        audio_out=16,
        vision_out=32,
        subnet_dropout=0.0,
        fusion_dim=128,
        text_dim=32,
        audio_dim=16,
        vision_dim=32,
        fusion_dropout=0.0,
        text_dropout=0.1,
        audio_dropout=0.1,
        vision_dropout=0.0,
        label_bound=3.0,
        exclude_zero=True,
        use_unimodal=True,
        task_loss="mae",
        **kwargs,
    ):
        super().__init__(task_loss=task_loss, **kwargs)
        self._init_text_backbone(text_backbone, backbone_preset, sequence_length, fine_tune, uses_pooler=False)
        self.train_samples = None if train_samples is None else int(train_samples)
        self.audio_lstm_dim = audio_lstm_dim
        self.vision_lstm_dim = vision_lstm_dim
        self.audio_out = audio_out
        self.vision_out = vision_out
        self.subnet_dropout = subnet_dropout
        self.fusion_dim = fusion_dim
        self.text_dim = text_dim
        self.audio_dim = audio_dim
        self.vision_dim = vision_dim
        self.fusion_dropout = fusion_dropout
        self.text_dropout = text_dropout
        self.audio_dropout = audio_dropout
        self.vision_dropout = vision_dropout
        self.label_bound = label_bound
        self.exclude_zero = exclude_zero
        self.use_unimodal = use_unimodal

        self.lstms, self.subnet_dropouts, self.subnet_dense = {}, {}, {}
        for m, width, out in (("audio", audio_lstm_dim, audio_out), ("vision", vision_lstm_dim, vision_out)):
            self.lstms[m] = layers.LSTM(width, name=f"{m}_lstm")
            self.subnet_dropouts[m] = layers.Dropout(subnet_dropout)
            self.subnet_dense[m] = layers.Dense(out, name=f"{m}_subnet_dense")
        dims = {"fusion": fusion_dim, "text": text_dim, "audio": audio_dim, "vision": vision_dim}
        drops = {"fusion": fusion_dropout, "text": text_dropout, "audio": audio_dropout, "vision": vision_dropout}
        self.head_dropouts, self.heads = {}, {}
        for m in ULGM_MODES:
            self.head_dropouts[m] = layers.Dropout(drops[m])
            self.heads[m] = [layers.Dense(dims[m], activation="relu", name=f"post_{m}_1"),
                             layers.Dense(dims[m], activation="relu", name=f"post_{m}_2"),
                             layers.Dense(1, dtype="float32", name=f"post_{m}_3")]
        self.ulgm = None
        if self.train_samples is not None:
            self.ulgm = UnimodalLabelGenerator(self.train_samples, dims, label_bound, exclude_zero, name="ulgm")

    def build(self, input_shape):
        self._build_by_dummy_call(input_shape)
        if self.ulgm is not None and not self.ulgm.built:
            self.ulgm.build()
        self.built = True

    def get_build_config(self):
        config = super().get_build_config()
        shapes = (config or {}).get("input_shape")
        if isinstance(shapes, dict) and "sample_index" in shapes:
            # Training bookkeeping, not an input: a reloaded or exported model
            # (recipes/export.py's probe batch) does not ask for it.
            config = dict(config, input_shape={k: v for k, v in shapes.items() if k != "sample_index"})
        return config

    def encode_text(self, inputs, training=False):
        if self.text_backbone is None:
            text, mask = get_modality(inputs, "text")
            return masked_mean(text, mask, axis=1)
        return self.text_sequence(inputs, training=training)[0][:, 0, :]

    def call(self, inputs, training=False):
        h = {"text": self.encode_text(inputs, training)}
        for m in ("audio", "vision"):
            x, mask = get_modality(inputs, m)
            state = self.lstms[m](x, mask=mask, training=training)
            h[m] = self.subnet_dense[m](self.subnet_dropouts[m](state, training=training))
        h["fusion"] = ops.concatenate([h["text"], h["audio"], h["vision"]], axis=-1)
        outputs = {}
        for m in ULGM_MODES:
            first, second, last = self.heads[m]
            feature = first(self.head_dropouts[m](h[m], training=training))
            outputs[FEATURE_OUTPUTS[m]] = ops.cast(feature, "float32")
            outputs["sentiment" if m == "fusion" else UNIMODAL_OUTPUTS[m]] = last(second(feature))
        return outputs

    def auxiliary_losses(self, x, y, y_pred, training=True):
        if not training or not self.use_unimodal:
            return {}
        if self.ulgm is None:
            raise ValueError("SelfMM was built without train_samples, so it has no unimodal label memory to "
                             "train with: pass train_samples=<size of the training split> (recipes/train.py "
                             "does).")
        if "sample_index" not in x:
            raise KeyError("SelfMM's training batches need 'sample_index' (int [batch], the example's position "
                           f"in the training split, docs/data.md); the batch holds {sorted(x)}.")
        index = x["sample_index"]
        labels, weights = self.ulgm(index, y["sentiment"])
        losses = {}
        for m, key in UNIMODAL_OUTPUTS.items():
            pred = ops.reshape(ops.cast(y_pred[key], "float32"), (-1,))
            losses[f"unimodal_{m}"] = ops.mean(weights[m] * ops.abs(pred - labels[m]))
        # After the loss, as MMSA's trainer: this batch's labels came from the
        # memory as it stood before the batch.
        self.ulgm.update(index, y["sentiment"], {m: y_pred[FEATURE_OUTPUTS[m]] for m in ULGM_MODES},
                         self.epoch + 1.0)
        return losses

    def get_config(self):
        config = super().get_config()
        config.update({
            **self._text_backbone_config(),
            "train_samples": self.train_samples,
            "audio_lstm_dim": self.audio_lstm_dim,
            "vision_lstm_dim": self.vision_lstm_dim,
            "audio_out": self.audio_out,
            "vision_out": self.vision_out,
            "subnet_dropout": self.subnet_dropout,
            "fusion_dim": self.fusion_dim,
            "text_dim": self.text_dim,
            "audio_dim": self.audio_dim,
            "vision_dim": self.vision_dim,
            "fusion_dropout": self.fusion_dropout,
            "text_dropout": self.text_dropout,
            "audio_dropout": self.audio_dropout,
            "vision_dropout": self.vision_dropout,
            "label_bound": self.label_bound,
            "exclude_zero": self.exclude_zero,
            "use_unimodal": self.use_unimodal,
        })
        return config
