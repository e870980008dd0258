import keras

from keras_msa.layers.low_rank_fusion import LowRankFusion
from keras_msa.models.base import MSAModel
from keras_msa.models.base import register_model
from keras_msa.models.tfn.subnets import attach
from keras_msa.models.tfn.subnets import build_encoders
from keras_msa.models.tfn.subnets import fusion_modalities
from keras_msa.models.tfn.subnets import per_modality
from keras_msa.models.tfn.tfn import FUSION_ORDER


@register_model("lmf")
@keras.saving.register_keras_serializable(package="keras_msa")
class LMF(MSAModel):
    """Low-rank Multimodal Fusion (LMF; Liu et al., ACL 2018), as MMSA builds it.

    1. The unimodal sub-networks of TFN (`FusionSubnets`): audio and vision
       averaged over real steps -> BatchNorm, dropout, three ReLU layers;
       text -> LSTM (last real step) -> linear map to h_t // 2 (MMSA's
       `text_out`).
    2. Low-rank fusion (Eqs. 5-6, `LowRankFusion`):
       y = sum_i lambda_i prod_m ([1; h_m] W_m^(i)) + b, rank r, straight to
       the one sentiment output (no post-fusion network: MMSA's LMF builds a
       post-fusion dropout but never applies it, so none is taken here).

    MMSA's training quirks, reproduced:

    - lambda and b (`fusion_weights`, `fusion_bias`) are left out of MMSA's
      optimizer and stay at their initial values; `train_fusion_weights=False`
      (default) makes them non-trainable weights.
    - the factors W_m get their own learning rate `factor_lr`, the
      sub-networks `learning_rate` (`training_presets`). One Keras optimizer
      has one learning rate, so the factors are stored scaled
      (`LowRankFusion`'s `factor_scale`): with Adam they then learn
      `factor_lr_scale` = factor_lr / learning_rate times as fast as the
      rest (the presets: 1 for MOSI and MOSEI, 0.25 for SIMS), whatever
      learning rate the run uses.

    With these settings `keras_msa.convert.mmsa_lmf` loads an MMSA LMF state
    dict and the outputs agree to 1e-4 (tests/models/test_lmf_parity.py).
    Masks as in `TFN`.

    Args:
        hidden_dims: dict modality -> sub-network width (h_t is the LSTM's).
        rank: r.
        dropouts: dict with the `audio` and `vision` sub-network dropout.
        text_out: width of the text embedding (default h_t // 2, MMSA's).
        train_fusion_weights: train lambda and b (MMSA does not).
        factor_lr_scale: the factors' learning rate over the others'.
        modalities: the modalities fused (ablation).
        task_loss: "mae" (MMSA), "mse" or "huber".
        **kwargs: `MSAModel` arguments.

    Example:

    >>> import numpy as np
    >>> model = LMF(hidden_dims={"text": 8, "audio": 4, "vision": 4}, rank=2)
    >>> batch = {"text": np.zeros((2, 7, 16), "float32"),
    ...          "audio": np.zeros((2, 9, 5), "float32"),
    ...          "vision": np.zeros((2, 6, 20), "float32")}
    >>> tuple(model(batch)["sentiment"].shape)
    (2, 1)
    """

    #: MMSA 2.2.1 `config/config_regression.json`, `lmf.datasetParams`
    #: (`hidden_dims` [text, audio, vision], `dropouts` [audio, vision, text,
    #: post-fusion]: the last two unused, see above and `FusionSubnets`).
    presets = {
        "mosi": {"hidden_dims": {"text": 128, "audio": 16, "vision": 128}, "rank": 3,
                 "dropouts": {"audio": 0.3, "vision": 0.3}},
        "mosei": {"hidden_dims": {"text": 128, "audio": 16, "vision": 128}, "rank": 4,
                  "dropouts": {"audio": 0.2, "vision": 0.2}},
        "sims": {"hidden_dims": {"text": 64, "audio": 16, "vision": 64}, "rank": 4,
                 "dropouts": {"audio": 0.2, "vision": 0.2}, "factor_lr_scale": 0.25},
    }
    #: MMSA's training protocol for LMF (`trains/singleTask/LMF.py`), as plain
    #: data: Adam with two parameter groups, the factors at
    #: `factor_learning_rate` (here: `learning_rate` times the preset's
    #: `factor_lr_scale`) and the sub-networks at `learning_rate`, both
    #: with L2 `weight_decay` (PyTorch Adam's: added to the gradient, not
    #: decoupled), lambda and b not optimised, L1 loss, no clipping, early
    #: stopping after 8 epochs without a better validation loss.
    training_presets = {
        "mosi": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 64, "learning_rate": 1e-3, "l2_weight_decay": 5e-3, "patience": 8, "monitor": "loss"},
                 "our choice": {"epochs": 100},
                 "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling", "learning_rate": "MMSA trains the fusion factors at factor_lr (1e-3); the model preset's factor_lr_scale reproduces that ratio"}},
        "mosei": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 32, "learning_rate": 1e-3, "l2_weight_decay": 1e-3, "patience": 8, "monitor": "loss"},
                 "our choice": {"epochs": 100},
                 "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling", "learning_rate": "MMSA trains the fusion factors at factor_lr (1e-3); the model preset's factor_lr_scale reproduces that ratio"}},
        "sims": {"MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 64, "learning_rate": 2e-3, "l2_weight_decay": 5e-3, "patience": 8, "monitor": "loss"},
                 "our choice": {"epochs": 100},
                 "notes": {"epochs": "MMSA trains until early stopping; 100 is a ceiling", "learning_rate": "MMSA trains the fusion factors at factor_lr (5e-4); the model preset's factor_lr_scale reproduces that ratio"}},
    }

    def __init__(
        self,
        hidden_dims=None,
        rank=3,
        dropouts=None,
        text_out=None,
        train_fusion_weights=False,
        factor_lr_scale=1.0,
        modalities=FUSION_ORDER,
        task_loss="mae",
        **kwargs,
    ):
        super().__init__(task_loss=task_loss, **kwargs)
        self.hidden_dims = {m: int(v) for m, v in per_modality(
            hidden_dims or {"text": 128, "audio": 16, "vision": 128}, "hidden_dims", "LMF").items()}
        self.rank = int(rank)
        dropouts = dict(dropouts or {"audio": 0.3, "vision": 0.3})
        if set(dropouts) != {"audio", "vision"}:
            raise ValueError(f"LMF: dropouts must name 'audio' and 'vision'; got {sorted(dropouts)}.")
        self.dropouts = {k: float(v) for k, v in dropouts.items()}
        self.text_out = self.hidden_dims["text"] // 2 if text_out is None else int(text_out)
        self.train_fusion_weights = bool(train_fusion_weights)
        self.factor_lr_scale = float(factor_lr_scale)
        self.modalities = fusion_modalities(modalities, "LMF", FUSION_ORDER)
        attach(self, self.hidden_dims, self.text_out, self.dropouts)
        self.fusion = LowRankFusion(self.rank, 1, train_fusion_weights=self.train_fusion_weights,
                                    factor_scale=self.factor_lr_scale, dtype="float32", name="low_rank_fusion")

    def build(self, input_shape):
        build_encoders(self, input_shape, "LMF")
        widths = {"audio": self.hidden_dims["audio"], "vision": self.hidden_dims["vision"], "text": self.text_out}
        self.fusion.build([(None, widths[m]) for m in self.modalities])
        self.built = True

    def factor_variables(self):
        """The factors W_m (MMSA's `factor_lr` group)."""
        return list(self.fusion.factors)

    def call(self, inputs, training=False):
        h, present = self.encoders(inputs, training=training)
        y = self.fusion([h[m] for m in self.modalities], mask=[present[m] for m in self.modalities])
        return {"sentiment": y}

    def get_config(self):
        config = super().get_config()
        config.update({
            "hidden_dims": dict(self.hidden_dims),
            "rank": self.rank,
            "dropouts": dict(self.dropouts),
            "text_out": self.text_out,
            "train_fusion_weights": self.train_fusion_weights,
            "factor_lr_scale": self.factor_lr_scale,
            "modalities": list(self.modalities),
        })
        return config
