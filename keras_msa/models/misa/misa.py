import keras
from keras import layers
from keras import ops

from keras_msa.layers.bi_lstm_utterance_encoder import BiLSTMUtteranceEncoder
from keras_msa.losses.central_moment_discrepancy import central_moment_discrepancy
from keras_msa.losses.soft_orthogonality import soft_orthogonality
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import register_model
from keras_msa.models.text_backbone_mode import TextBackboneMode
from keras_msa.utils.masks import masked_mean

#: MMSA's order of the modalities in MISA's fusion sequence and losses.
ORDER = ("text", "vision", "audio")
_AV_LENGTHS = ("own", "text")


def _mmsa_protocol(batch, clip, dropout_note):
    return {
        "MMSA": {"optimizer": "adam", "epsilon": 1e-8, "learning_rate": 1e-4, "backbone_learning_rate": 1e-4,
                 "weight_decay": 0.0, "batch_size": batch, "clipvalue": clip,
                 "gradient_accumulation_steps": 2, "patience": 8, "monitor": "loss"},
        "our choice": {"epochs": 100},
        "notes": {
            "epochs": "MMSA trains until early stopping; 100 is a ceiling",
            "backbone_learning_rate": "MMSA's trainer gives BERT the model's rate (one Adam over every parameter)",
            "weight_decay": f"config_regression.json lists weight_decay={dropout_note}, but MMSA's MISA "
                           "trainer builds Adam without it",
            "gradient_accumulation_steps": "MMSA's update_epochs=2: it sums 2 batches' gradients (clipped by "
                                           "value after each backward); Keras averages them",
            "monitor": "KeyEval 'Loss': the validation task loss (MSE), without the auxiliary terms",
        },
    }


@register_model("misa")
@keras.saving.register_keras_serializable(package="keras_msa")
class MISA(TextBackboneMode, MSAModel):
    """MISA: Modality-Invariant and -Specific representations (Hazarika et
    al., ACM MM 2020), as MMSA 2.2.1 builds and trains it
    (`models/singleTask/MISA.py`, `trains/singleTask/MISA.py`).

    1. Utterance vectors (Sec. 3.2): text is BERT's last hidden states
       averaged over the real tokens (backbone mode), or, in features mode,
       the paper's sLSTM over the `text` features; audio and vision go
       through `BiLSTMUtteranceEncoder` (two bidirectional LSTMs of the
       feature width with a LayerNorm between, final states: 4 x width).
    2. Projection to one width d_h: `u_m = LayerNorm(ReLU(W_m u_m + b_m))`.
    3. Shared and private encoders (Eqs. 1-2): `h_m^c = sigmoid(W_c u_m)`
       (one W_c for all modalities), `h_m^p = sigmoid(W_m^p u_m)`.
    4. Fusion (Sec. 3.4): a one-layer transformer encoder (2 heads, ReLU
       feed-forward of `transformer_ff_dim` = PyTorch's default 2048,
       post-LayerNorm) over the six codes `[h_t^p, h_v^p, h_a^p, h_t^c,
       h_v^c, h_a^c]`, concatenated, then `Linear(6d, 3d) -> dropout -> ReLU
       -> Linear(3d, 1)`.
    5. Objective (Eq. 6, in `compute_loss` while training):
       `L = MSE + diff_weight * L_diff + sim_weight * L_sim + recon_weight * L_recon`
       - `L_sim` (Eq. 4): CMD with K = 5 moments between the shared codes of
         each modality pair, averaged over the 3 pairs;
       - `L_diff` (Eq. 5): soft orthogonality of each private code with its
         shared code and of each pair of private codes, summed (6 terms);
       - `L_recon` (Eq. 7): MSE between `W_m^r (h_m^p + h_m^c)` and `u_m`,
         averaged over the modalities.
       Each term is logged (`diff_loss`, `similarity_loss`,
       `reconstruction_loss`); validation reports the task loss only, as
       MMSA's `KeyEval = "Loss"`.

    Outputs: `sentiment` `[B, 1]` and the codes the losses read
    (`misa_private_<m>`, `misa_shared_<m>`, `misa_projected_<m>`,
    `misa_reconstructed_<m>`, `[B, d_h]`), all float32.

    Masks: audio and vision LSTMs read the real steps only (PyTorch's packed
    sequences); the text mean counts real tokens. `av_lengths="text"` reads
    audio and vision for as many steps as the text has tokens, which is what
    MMSA does (it packs every modality with the BERT mask's length); the
    default `"own"` uses each modality's own mask. A modality a sample
    lacks (all-False mask) gives a zero utterance vector.

    Args:
        text_backbone, backbone_preset, sequence_length, fine_tune: the BERT
            (see `TextBackboneMode`; MMSA: bert-base-uncased, fine-tuned).
            Without them, features mode.
        hidden_size: d_h (MMSA: 128).
        dropout: the fusion head's dropout (MMSA: 0.2 MOSI, 0.5 MOSEI, 0 SIMS).
        transformer_heads, transformer_ff_dim, transformer_dropout: the fusion
            transformer (MMSA: `nn.TransformerEncoderLayer(d, nhead=2)`'s
            defaults 2, 2048, 0.1).
        diff_weight, sim_weight, recon_weight: the loss weights (ablation:
            0 removes a term).
        cmd_moments: K of the CMD (5).
        av_lengths: "own" or "text" (see Masks).
        **kwargs: `MSAModel` arguments.

    Example (features mode):

    >>> import numpy as np
    >>> model = MISA(hidden_size=8, transformer_ff_dim=16)
    >>> batch = {"text": np.zeros((2, 5, 6), "float32"), "audio": np.zeros((2, 5, 3), "float32"),
    ...          "vision": np.zeros((2, 5, 4), "float32")}
    >>> tuple(model(batch)["sentiment"].shape)
    (2, 1)
    """

    #: MMSA 2.2.1 `config/config_regression.json`, `misa.datasetParams`
    #: (model part; `pretrained` is the backbone directory the user passes).
    presets = {
        "mosi": {"hidden_size": 128, "dropout": 0.2, "diff_weight": 0.1, "sim_weight": 0.3, "recon_weight": 1.0},
        "mosei": {"hidden_size": 128, "dropout": 0.5, "diff_weight": 0.3, "sim_weight": 0.8, "recon_weight": 1.0},
        "sims": {"hidden_size": 128, "dropout": 0.0, "diff_weight": 0.3, "sim_weight": 1.0, "recon_weight": 0.8},
    }
    #: MMSA's training protocol for MISA (`trains/singleTask/MISA.py` with
    #: `misa.commonParams`/`datasetParams`).
    training_presets = {
        "mosi": _mmsa_protocol(16, 0.8, "0.0"),
        "mosei": _mmsa_protocol(64, 0.8, "5e-05"),
        "sims": _mmsa_protocol(64, 1.0, "5e-05"),
    }

    def __init__(
        self,
        text_backbone=None,
        backbone_preset=None,
        sequence_length=50,
        fine_tune=None,
        hidden_size=128,
        dropout=0.2,
        transformer_heads=2,
        transformer_ff_dim=2048,
        transformer_dropout=0.1,
        diff_weight=0.1,
        sim_weight=0.3,
        recon_weight=1.0,
        cmd_moments=5,
        av_lengths="own",
        task_loss="mse",
        **kwargs,
    ):
        super().__init__(task_loss=task_loss, **kwargs)
        if av_lengths not in _AV_LENGTHS:
            raise ValueError(f"MISA: av_lengths must be one of {_AV_LENGTHS}; got {av_lengths!r}.")
        self._init_text_backbone(text_backbone, backbone_preset, sequence_length, fine_tune)
        self.hidden_size = int(hidden_size)
        self.dropout = float(dropout)
        self.transformer_heads = int(transformer_heads)
        self.transformer_ff_dim = int(transformer_ff_dim)
        self.transformer_dropout = float(transformer_dropout)
        self.diff_weight = float(diff_weight)
        self.sim_weight = float(sim_weight)
        self.recon_weight = float(recon_weight)
        self.cmd_moments = int(cmd_moments)
        self.av_lengths = av_lengths
        d = self.hidden_size

        modalities = ORDER if self.text_backbone is None else ("vision", "audio")
        self.encoders = {m: BiLSTMUtteranceEncoder(name=f"{m}_encoder") for m in modalities}
        self.project = {m: layers.Dense(d, activation="relu", name=f"project_{m}") for m in ORDER}
        self.project_norm = {m: layers.LayerNormalization(epsilon=1e-5, name=f"project_{m}_norm") for m in ORDER}
        self.private = {m: layers.Dense(d, activation="sigmoid", name=f"private_{m}") for m in ORDER}
        self.shared = layers.Dense(d, activation="sigmoid", name="shared")
        self.recon = {m: layers.Dense(d, name=f"recon_{m}") for m in ORDER}
        import keras_hub

        self.transformer = keras_hub.layers.TransformerEncoder(
            intermediate_dim=self.transformer_ff_dim,
            num_heads=self.transformer_heads,
            dropout=self.transformer_dropout,
            activation="relu",
            layer_norm_epsilon=1e-5,
            name="fusion_transformer",
        )
        self.fusion_1 = layers.Dense(3 * d, name="fusion_1")
        self.fusion_dropout = layers.Dropout(self.dropout)
        self.sentiment_head = layers.Dense(1, dtype="float32", name="sentiment_head")

    def build(self, input_shape):
        # Every weight is made here, so that a reloaded `.keras` file has them
        # all before its weights are restored.
        if not isinstance(input_shape, dict):
            raise TypeError(f"MISA is built from a batch dict of shapes; got {input_shape!r}.")
        widths = {}
        for m in ("audio", "vision"):
            if m not in input_shape:
                raise KeyError(f"MISA needs '{m}' [batch, time, dim] (a missing modality is zeros with an "
                               f"all-False mask); the batch holds {sorted(input_shape)}.")
        for m, encoder in self.encoders.items():
            shape = self.text_feature_shape(input_shape) if m == "text" else tuple(input_shape[m])
            encoder.build((None, None, shape[-1]))
            widths[m] = 4 * int(shape[-1])
        if self.text_backbone is not None:
            widths["text"] = self.text_width
        d = self.hidden_size
        for m in ORDER:
            self.project[m].build((None, widths[m]))
            self.project_norm[m].build((None, d))
            self.private[m].build((None, d))
            self.recon[m].build((None, d))
        self.shared.build((None, d))
        self.transformer.build((None, 2 * len(ORDER), d))
        self.fusion_1.build((None, 2 * len(ORDER) * d))
        self.sentiment_head.build((None, 3 * d))
        self.built = True

    def _utterances(self, inputs, training):
        if self.text_backbone is not None:
            hidden, text_mask = self.text_sequence(inputs, training=training)
            utterances = {"text": masked_mean(hidden, text_mask, axis=1)}
        else:
            text, text_mask = get_modality(inputs, "text")
            utterances = {"text": self.encoders["text"](text, mask=text_mask, training=training)}
        text_count = ops.sum(ops.cast(text_mask, "int32"), axis=1, keepdims=True)
        for m in ("vision", "audio"):
            x, mask = get_modality(inputs, m)
            if self.av_lengths == "text":
                positions = ops.arange(ops.shape(x)[1], dtype="int32")[None, :]
                mask = ops.logical_and(mask, positions < text_count)
            utterances[m] = self.encoders[m](x, mask=mask, training=training)
        return utterances

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            raise TypeError(f"MISA takes a batch dict (docs/data.md keys); got {type(inputs).__name__}.")
        utterances = self._utterances(inputs, training)
        outputs, private, shared = {}, {}, {}
        for m in ORDER:
            projected = self.project_norm[m](self.project[m](utterances[m]))
            private[m] = self.private[m](projected)
            shared[m] = self.shared(projected)
            outputs[f"misa_projected_{m}"] = projected
            outputs[f"misa_reconstructed_{m}"] = self.recon[m](private[m] + shared[m])
        codes = ops.stack([private[m] for m in ORDER] + [shared[m] for m in ORDER], axis=1)
        fused = self.transformer(codes, training=training)
        fused = ops.reshape(fused, (-1, 2 * len(ORDER) * self.hidden_size))
        h = ops.relu(self.fusion_dropout(self.fusion_1(fused), training=training))
        outputs["sentiment"] = self.sentiment_head(h)
        for m in ORDER:
            outputs[f"misa_private_{m}"] = private[m]
            outputs[f"misa_shared_{m}"] = shared[m]
        return {k: ops.cast(v, "float32") for k, v in outputs.items()}

    def auxiliary_losses(self, x, y, y_pred, training=True):
        if not training:
            # MMSA selects and reports on the task loss alone (KeyEval "Loss").
            return {}
        private = {m: y_pred[f"misa_private_{m}"] for m in ORDER}
        shared = {m: y_pred[f"misa_shared_{m}"] for m in ORDER}
        losses = {}
        if self.diff_weight:
            pairs = [(private[m], shared[m]) for m in ORDER] + [
                (private["audio"], private["text"]), (private["audio"], private["vision"]),
                (private["text"], private["vision"])]
            losses["diff"] = self.diff_weight * ops.sum(ops.stack([soft_orthogonality(a, b) for a, b in pairs]))
        if self.sim_weight:
            pairs = (("text", "vision"), ("text", "audio"), ("audio", "vision"))
            cmd = [central_moment_discrepancy(shared[a], shared[b], self.cmd_moments) for a, b in pairs]
            losses["similarity"] = self.sim_weight * ops.mean(ops.stack(cmd))
        if self.recon_weight:
            recon = [ops.mean(ops.square(y_pred[f"misa_reconstructed_{m}"] - y_pred[f"misa_projected_{m}"]))
                     for m in ORDER]
            losses["reconstruction"] = self.recon_weight * ops.mean(ops.stack(recon))
        return losses

    def get_config(self):
        config = super().get_config()
        config.update({
            **self._text_backbone_config(),
            "hidden_size": self.hidden_size,
            "dropout": self.dropout,
            "transformer_heads": self.transformer_heads,
            "transformer_ff_dim": self.transformer_ff_dim,
            "transformer_dropout": self.transformer_dropout,
            "diff_weight": self.diff_weight,
            "sim_weight": self.sim_weight,
            "recon_weight": self.recon_weight,
            "cmd_moments": self.cmd_moments,
            "av_lengths": self.av_lengths,
        })
        return config
