import keras
from keras import layers
from keras import ops

from keras_msa.layers.tensor_fusion import TensorFusion
from keras_msa.models.base import MSAModel
from keras_msa.models.base import register_model
from keras_msa.models.tfn.subnets import attach
from keras_msa.models.tfn.subnets import build_encoders
from keras_msa.models.tfn.subnets import fusion_modalities
from keras_msa.models.tfn.subnets import per_modality

#: The fusion order of MMSA's outer product (its flattened layout).
FUSION_ORDER = ("audio", "vision", "text")


@register_model("tfn")
@keras.saving.register_keras_serializable(package="keras_msa")
class TFN(MSAModel):
    """Tensor Fusion Network (TFN; Zadeh et al., EMNLP 2017), as MMSA builds it.

    1. Modality embedding sub-networks (Sec. 3.1, `FusionSubnets`): audio and
       vision averaged over their real steps, then BatchNorm, dropout and
       three ReLU layers (width h_a, h_v); text through an LSTM read at its
       last real step and a linear map to `text_out`.
    2. Tensor fusion (Eq. 1, `TensorFusion`):
       z = [1; h_a] (x) [1; h_v] (x) [1; h_t].
    3. Sentiment inference (Sec. 3.3): dropout on z, two ReLU layers of
       width `post_fusion_dim`, a linear output o, and (MMSA's, and TFN's
       code's, constrained regression) y = sigmoid(o) * output_range +
       output_shift, which maps into (-3, 3) with the defaults 6 and -3.
       `output_range=None` gives the unconstrained y = o (SIMS labels lie in
       [-1, 1]: MMSA keeps (-3, 3) there too, so the presets keep it).

    The task loss is L1 (MMSA's). With these settings
    `keras_msa.convert.mmsa_tfn` loads an MMSA TFN state dict and the
    outputs agree to 1e-4 (tests/models/test_tfn_parity.py).

    Masks: the audio/vision mean and the LSTM see real steps only; a
    modality a sample lacks (all-False mask) enters the fusion as [1; 0], so
    only its constant term remains. MMSA has no masks (it averages padded
    steps too); on unpadded data the two agree.

    Args:
        hidden_dims: dict modality -> sub-network width (h_t is the LSTM's).
        text_out: width of the text embedding.
        post_fusion_dim: width of the two post-fusion layers.
        dropouts: dict with the `audio`, `vision` sub-network dropout and the
            `post_fusion` dropout on z.
        output_range, output_shift: the sigmoid output's scale and offset
            (None: a linear output).
        modalities: the modalities fused (ablation: the paper's bimodal
            TFNs drop one; a dropped modality is not read).
        task_loss: "mae" (MMSA), "mse" or "huber".
        **kwargs: `MSAModel` arguments.

    Example:

    >>> import numpy as np
    >>> model = TFN(hidden_dims={"text": 8, "audio": 4, "vision": 4}, text_out=4, post_fusion_dim=8)
    >>> batch = {"text": np.zeros((2, 7, 16), "float32"),
    ...          "audio": np.zeros((2, 9, 5), "float32"),
    ...          "vision": np.zeros((2, 6, 20), "float32")}
    >>> tuple(model(batch)["sentiment"].shape)
    (2, 1)
    """

    #: MMSA 2.2.1 `config/config_regression.json`, `tfn.datasetParams`
    #: (its `hidden_dims` are [text, audio, vision]; `dropouts` [audio,
    #: vision, text, post-fusion], the text one unused: see `FusionSubnets`).
    presets = {
        "mosi": {"hidden_dims": {"text": 128, "audio": 32, "vision": 128}, "text_out": 32,
                 "post_fusion_dim": 64, "dropouts": {"audio": 0.3, "vision": 0.3, "post_fusion": 0.5}},
        "mosei": {"hidden_dims": {"text": 128, "audio": 16, "vision": 128}, "text_out": 128,
                  "post_fusion_dim": 16, "dropouts": {"audio": 0.4, "vision": 0.4, "post_fusion": 0.4}},
        "sims": {"hidden_dims": {"text": 128, "audio": 32, "vision": 128}, "text_out": 256,
                 "post_fusion_dim": 32, "dropouts": {"audio": 0.4, "vision": 0.4, "post_fusion": 0.4}},
    }
    #: MMSA's training protocol for TFN (`trains/singleTask/TFN.py`), as plain
    #: data: Adam without weight decay on every parameter but the fixed
    #: output range/shift, L1 loss, no clipping, and early stopping after
    #: `early_stop` = 8 epochs without a better validation loss
    #: (KeyEval "Loss" for regression).
    training_presets = {
        "mosi": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 32, "learning_rate": 1e-3, "patience": 8, "monitor": "loss"},
                 "our choice": {"epochs": 100},
                 "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling"}},
        "mosei": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 128, "learning_rate": 5e-3, "patience": 8, "monitor": "loss"},
                 "our choice": {"epochs": 100},
                 "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling"}},
        "sims": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 32, "learning_rate": 5e-4, "patience": 8, "monitor": "loss"},
                 "our choice": {"epochs": 100},
                 "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling"}},
    }

    def __init__(
        self,
        hidden_dims=None,
        text_out=32,
        post_fusion_dim=64,
        dropouts=None,
        output_range=6.0,
        output_shift=-3.0,
        modalities=FUSION_ORDER,
        task_loss="mae",
        **kwargs,
    ):
        super().__init__(task_loss=task_loss, **kwargs)
        self.hidden_dims = {m: int(v) for m, v in per_modality(
            hidden_dims or {"text": 128, "audio": 32, "vision": 128}, "hidden_dims", "TFN").items()}
        self.text_out = int(text_out)
        self.post_fusion_dim = int(post_fusion_dim)
        dropouts = dict(dropouts or {"audio": 0.3, "vision": 0.3, "post_fusion": 0.5})
        if set(dropouts) != {"audio", "vision", "post_fusion"}:
            raise ValueError(f"TFN: dropouts must name 'audio', 'vision' and 'post_fusion'; got {sorted(dropouts)}.")
        self.dropouts = {k: float(v) for k, v in dropouts.items()}
        self.output_range = None if output_range is None else float(output_range)
        self.output_shift = float(output_shift)
        self.modalities = fusion_modalities(modalities, "TFN", FUSION_ORDER)
        attach(self, self.hidden_dims, self.text_out, self.dropouts)
        self.fusion = TensorFusion(name="tensor_fusion")
        self.fusion_drop = layers.Dropout(self.dropouts["post_fusion"])
        self.post_fusion_1 = layers.Dense(self.post_fusion_dim, activation="relu", name="post_fusion_1")
        self.post_fusion_2 = layers.Dense(self.post_fusion_dim, activation="relu", name="post_fusion_2")
        self.sentiment_head = layers.Dense(1, dtype="float32", name="sentiment_head")

    def fusion_width(self):
        widths = {"audio": self.hidden_dims["audio"], "vision": self.hidden_dims["vision"], "text": self.text_out}
        size = 1
        for m in self.modalities:
            size *= widths[m] + 1
        return size

    def build(self, input_shape):
        # Every weight is made here from the input widths, so that a reloaded
        # `.keras` model has them all before its weights are restored.
        build_encoders(self, input_shape, "TFN")
        self.post_fusion_1.build((None, self.fusion_width()))
        self.post_fusion_2.build((None, self.post_fusion_dim))
        self.sentiment_head.build((None, self.post_fusion_dim))
        self.built = True

    def call(self, inputs, training=False):
        h, present = self.encoders(inputs, training=training)
        z = self.fusion([h[m] for m in self.modalities], mask=[present[m] for m in self.modalities])
        z = self.fusion_drop(z, training=training)
        o = self.sentiment_head(self.post_fusion_2(self.post_fusion_1(z)))
        if self.output_range is not None:
            o = ops.sigmoid(o) * self.output_range + self.output_shift
        return {"sentiment": o}

    def get_config(self):
        config = super().get_config()
        config.update({
            "hidden_dims": dict(self.hidden_dims),
            "text_out": self.text_out,
            "post_fusion_dim": self.post_fusion_dim,
            "dropouts": dict(self.dropouts),
            "output_range": self.output_range,
            "output_shift": self.output_shift,
            "modalities": list(self.modalities),
        })
        return config
