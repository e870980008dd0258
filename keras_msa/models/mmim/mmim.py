import keras
from keras import layers
from keras import ops

from keras_msa.layers.contrastive_predictive_coding import ContrastivePredictiveCoding
from keras_msa.layers.mutual_information_lower_bound import MutualInformationLowerBound
from keras_msa.layers.packed_rnn_encoder import PackedRNNEncoder
from keras_msa.losses.gaussian_entropy import class_entropy
from keras_msa.losses.gaussian_entropy import moment_statistics
from keras_msa.models.base import MSAModel
from keras_msa.models.base import get_modality
from keras_msa.models.base import register_model
from keras_msa.models.text_backbone_mode import TextBackboneMode
from keras_msa.utils.masks import masked_mean

#: MMILB pairs: name -> (x modality, y modality), MMSA's `mi_tv`, `mi_ta`, `mi_va`.
PAIRS = {"tv": ("text", "vision"), "ta": ("text", "audio"), "va": ("vision", "audio")}
_FEATURES = {m: f"mmim_{m}" for m in ("text", "audio", "vision", "fusion")}


def _mmsa_model(**overrides):
    # MMSA 2.2.1 config_regression.json, `mmim.datasetParams` (the three
    # datasets share every model setting; SIMS reads bert-base-chinese).
    config = {"audio_hidden": 16, "vision_hidden": 16, "audio_out": 16, "vision_out": 16,
              "bidirectional": True, "fusion_dim": 128, "fusion_dropout": 0.1, "cpc_layers": 1,
              "cpc_activation": "tanh", "mmilb_activation": "relu", "add_va": False,
              "alpha": 0.1, "beta": 0.1, "mem_size": 1}
    config.update(overrides)
    return config


def _mmsa_protocol():
    return {
        # trains/singleTask/MMIM.py: Adam (PyTorch's coupled weight decay)
        # with lr_main 1e-3 / lr_bert 5e-5 / lr_mmilb 1e-3 and every
        # weight_decay 1e-4; clip_grad_norm_(1.0); early stop after 8 epochs
        # without a better validation loss (KeyEval "Loss", the L1).
        "MMSA": {"optimizer": "adam", "epsilon": 1e-8, "batch_size": 32, "learning_rate": 1e-3,
                 "backbone_learning_rate": 5e-5, "l2_weight_decay": 1e-4, "clipnorm": 1.0,
                 "patience": 8, "monitor": "loss"},
        "our choice": {"epochs": 100},
        "notes": {
            "epochs": "MMSA trains until early stopping; 100 is a ceiling",
            "learning_rate": "lr_main and lr_mmilb (both 1e-3); MMSA's ReduceLROnPlateau (patience 20) "
                             "never fires before its early stop (8)",
            "clipnorm": "MMSA clips each of its two stages' gradients separately; here one norm over the "
                        "joint gradient",
        },
    }


@register_model("mmim")
@keras.saving.register_keras_serializable(package="keras_msa")
class MMIM(TextBackboneMode, MSAModel):
    """MultiModal InfoMax (MMIM; Han, Chen and Poria, "Improving Multimodal
    Fusion with Hierarchical Mutual Information Maximization for Multimodal
    Sentiment Analysis", EMNLP 2021), as MMSA 2.2.1 builds and trains it.

    1. Encoders (Sec. 3.2): text h_t = the BERT [CLS] hidden state
       (`TextBackbone`; features mode: the masked mean of the `text`
       features); audio and vision h_a, h_v = a bidirectional LSTM's final
       states over the real steps and a linear map (`PackedRNNEncoder`).
    2. Fusion (Sec. 3.5): u = tanh(W_1 dropout([h_t; h_a; h_v]) + b_1),
       z = tanh(W_2 u + b_2), y_hat = W_3 z + b_3.
    3. Input-level MI (Sec. 3.3, `MutualInformationLowerBound`): a Gaussian
       q(h_v | h_t), q(h_a | h_t) (and q(h_a | h_v) with `add_va`) gives the
       lower bound lld = sum over pairs of the mean log-likelihood, and the
       entropy H = sum over pairs of 1/4 (log det Sigma_pos + log det
       Sigma_neg) of the projected y modality over the positive / negative
       samples of the batch and a memory of the last `mem_size` batches
       (`keras_msa.losses.gaussian_entropy`).
    4. Fusion-level MI (Sec. 3.4, `ContrastivePredictiveCoding`):
       nce = CPC(h_t, z) + CPC(h_v, z) + CPC(h_a, z).

    Objective. MMSA alternates two optimisers: the estimator (the MMILB
    MLPs) minimises -lld; BERT and the rest minimise
    L1 + alpha * nce - beta * lld - beta * H. One `compute_loss` carries both
    with stop-gradients, so that each weight gets exactly its stage's
    gradient:

        loss = L1 + alpha * nce                       (`task`, `nce`)
               - beta * lld(h; stop(theta_mmilb))     (`lld`)
               - lld(stop(h); theta_mmilb)            (`mmilb_estimator`)
               - beta * H                             (`entropy`)

    The estimator's weights see only the fourth term (as MMSA's first
    stage); every other weight sees the rest (the second stage; the
    estimator's term holds its inputs fixed). The entropy projection is
    never stepped by MMSA and is non-trainable here. H counts from the third
    batch of an epoch (MMSA: `i_batch > mem_size`), and the memory restarts
    each epoch (driven by `self.epoch`). The auxiliary terms exist in
    training only: evaluation's loss is the L1, MMSA's validation loss.

    Masks: audio/vision padding is never read (packed-sequence semantics);
    text padding goes to BERT's attention mask. A sample lacking audio or
    vision (an all-False mask) gets the encoder's bias as h_a / h_v, so
    every output and gradient stays finite.

    Args:
        text_backbone, backbone_preset, sequence_length, fine_tune: the
            BERT (see `TextBackboneMode`; MMSA fine-tunes it).
        audio_hidden, vision_hidden: LSTM widths (MMSA's d_ah, d_vh).
        audio_out, vision_out: h_a, h_v widths (d_aout, d_vout).
        bidirectional: bidirectional LSTMs.
        fusion_dim: width of u and z (d_prjh).
        fusion_dropout: dropout on [h_t; h_a; h_v] (dropout_prj).
        cpc_layers, cpc_activation: the CPC predictors' depth / activation.
        mmilb_activation: the MMILB MLPs' hidden activation.
        add_va: also bound I(h_v; h_a).
        alpha, beta: weights of nce and of lld and H.
        mem_size: batches held in the entropy memory.
        use_mmilb: ablation "w/o MMILB" (no lld, estimator nor H).
        use_cpc: ablation "w/o CPC" (no nce).
        **kwargs: `MSAModel` arguments (`task_loss`: MMSA's "mae").

    Example (features mode; backbone mode: `backbone_preset=<keras-hub BERT
    directory>` and `text_raw` strings or token ids):

    >>> import numpy as np
    >>> model = MMIM(audio_hidden=4, vision_hidden=4, audio_out=8, vision_out=8, fusion_dim=8)
    >>> batch = {"text": np.zeros((2, 5, 12), "float32"),
    ...          "audio": np.zeros((2, 6, 5), "float32"),
    ...          "vision": np.zeros((2, 4, 7), "float32")}
    >>> tuple(model(batch)["sentiment"].shape)
    (2, 1)
    """

    presets = {"mosi": _mmsa_model(), "mosei": _mmsa_model(), "sims": _mmsa_model()}
    training_presets = {"mosi": _mmsa_protocol(), "mosei": _mmsa_protocol(), "sims": _mmsa_protocol()}

    def __init__(
        self,
        text_backbone=None,
        backbone_preset=None,
        sequence_length=50,
        fine_tune=None,
        audio_hidden=16,
        vision_hidden=16,
        audio_out=16,
        vision_out=16,
        bidirectional=True,
        fusion_dim=128,
        fusion_dropout=0.1,
        cpc_layers=1,
        cpc_activation="tanh",
        mmilb_activation="relu",
        add_va=False,
        alpha=0.1,
        beta=0.1,
        mem_size=1,
        use_mmilb=True,
        use_cpc=True,
        task_loss="mae",
        **kwargs,
    ):
        super().__init__(task_loss=task_loss, **kwargs)
        self._init_text_backbone(text_backbone, backbone_preset, sequence_length, fine_tune)
        self.audio_hidden, self.vision_hidden = int(audio_hidden), int(vision_hidden)
        self.audio_out, self.vision_out = int(audio_out), int(vision_out)
        self.bidirectional = bool(bidirectional)
        self.fusion_dim = int(fusion_dim)
        self.fusion_dropout = float(fusion_dropout)
        self.cpc_layers, self.cpc_activation = int(cpc_layers), cpc_activation
        self.mmilb_activation = mmilb_activation
        self.add_va = bool(add_va)
        self.alpha, self.beta = float(alpha), float(beta)
        self.mem_size = int(mem_size)
        if self.mem_size < 1:
            raise ValueError(f"MMIM: mem_size must be >= 1; got {mem_size}.")
        self.use_mmilb, self.use_cpc = bool(use_mmilb), bool(use_cpc)
        self.pairs = ("tv", "ta", "va") if self.add_va else ("tv", "ta")

        self.audio_encoder = PackedRNNEncoder(self.audio_hidden, self.audio_out, self.bidirectional,
                                              name="audio_encoder")
        self.vision_encoder = PackedRNNEncoder(self.vision_hidden, self.vision_out, self.bidirectional,
                                               name="vision_encoder")
        self.fusion_drop = layers.Dropout(self.fusion_dropout)
        dense = dict(kernel_initializer="glorot_normal")
        self.fusion_1 = layers.Dense(self.fusion_dim, activation="tanh", name="fusion_1", **dense)
        self.fusion_2 = layers.Dense(self.fusion_dim, activation="tanh", name="fusion_2", **dense)
        self.sentiment_head = layers.Dense(1, dtype="float32", name="sentiment_head", **dense)
        # The bounds and their memory in float32 (log det, exp(-logvar)).
        self.bounds = {p: MutualInformationLowerBound(self.mmilb_activation, dtype="float32", name=f"mmilb_{p}")
                       for p in self.pairs}
        self.cpc = {m: ContrastivePredictiveCoding(self.cpc_layers, self.cpc_activation, dtype="float32",
                                                   name=f"cpc_{m}") for m in ("text", "vision", "audio")}

    def _width(self, modality, text_width):
        return {"text": text_width, "audio": self.audio_out, "vision": self.vision_out}[modality]

    def build(self, input_shape):
        if not isinstance(input_shape, dict):
            raise TypeError(f"MMIM is built from a batch dict of shapes; got {input_shape!r}.")
        for m in ("audio", "vision"):
            if m not in input_shape or input_shape[m][-1] is None:
                raise KeyError(f"MMIM needs '{m}' [batch, time, dim] with a known dim (a missing modality is "
                               f"zeros with an all-False mask); the batch holds {sorted(input_shape)}.")
        text_width = self.text_feature_shape(input_shape)[-1]
        if self.text_backbone is not None and not self.text_backbone.built:
            self.text_backbone.build()
        self.audio_encoder.build(tuple(input_shape["audio"]))
        self.vision_encoder.build(tuple(input_shape["vision"]))
        fused = text_width + self.audio_out + self.vision_out
        self.fusion_1.build((None, fused))
        self.fusion_2.build((None, self.fusion_dim))
        self.sentiment_head.build((None, self.fusion_dim))
        for p, (mx, my) in PAIRS.items():
            if p in self.bounds:
                self.bounds[p].build((None, self._width(mx, text_width)), (None, self._width(my, text_width)))
        for m, cpc in self.cpc.items():
            cpc.build((None, self._width(m, text_width)), (None, self.fusion_dim))
        # The entropy memory: per pair and class, the moments of the last
        # mem_size batches (fixed size, whatever the batch size), and the
        # epoch and batch counters that MMSA's per-epoch memory follows.
        self.memory = {}
        for p in self.pairs:
            e = self.bounds[p].entropy_kernel.shape[-1]
            for c in ("pos", "neg"):
                self.memory[(p, c)] = (
                    self.add_weight(name=f"memory_{p}_{c}_count", shape=(self.mem_size,), initializer="zeros",
                                    trainable=False),
                    self.add_weight(name=f"memory_{p}_{c}_total", shape=(self.mem_size, e), initializer="zeros",
                                    trainable=False),
                    self.add_weight(name=f"memory_{p}_{c}_outer", shape=(self.mem_size, e, e),
                                    initializer="zeros", trainable=False),
                )
        self.memory_step = self.add_weight(name="memory_step", shape=(), initializer="zeros", trainable=False)
        self.memory_epoch = self.add_weight(name="memory_epoch", shape=(),
                                            initializer=keras.initializers.Constant(-1.0), trainable=False)
        self.built = True

    def memory_variables(self):
        """The entropy memory's state (not weights a checkpoint carries)."""
        out = [self.memory_step, self.memory_epoch]
        for triple in self.memory.values():
            out += list(triple)
        return out

    def encode(self, inputs, training=False):
        """`{text, audio, vision}` representations h_m `[B, d_m]`."""
        if not isinstance(inputs, dict):
            raise TypeError(f"MMIM takes a batch dict (docs/data.md keys); got {type(inputs).__name__}.")
        hidden, mask = self.text_sequence(inputs, training=training)
        text = hidden[:, 0, :] if self.text_backbone is not None else masked_mean(hidden, mask, axis=1)
        # Features-mode text is the raw (float32) input: the encoders' dtype for the concatenation.
        text = ops.cast(text, self.compute_dtype)
        audio, audio_mask = get_modality(inputs, "audio")
        vision, vision_mask = get_modality(inputs, "vision")
        return {"text": text,
                "audio": self.audio_encoder(audio, mask=audio_mask, training=training),
                "vision": self.vision_encoder(vision, mask=vision_mask, training=training)}

    def call(self, inputs, training=False):
        h = self.encode(inputs, training=training)
        u = self.fusion_1(self.fusion_drop(ops.concatenate([h["text"], h["audio"], h["vision"]], axis=-1),
                                           training=training))
        z = self.fusion_2(u)
        outputs = {"sentiment": self.sentiment_head(z)}
        if training:
            # The terms of the objective read these (compute_loss).
            for m in ("text", "audio", "vision"):
                outputs[_FEATURES[m]] = ops.cast(h[m], "float32")
            outputs[_FEATURES["fusion"]] = ops.cast(z, "float32")
        return outputs

    def auxiliary_losses(self, x, y, y_pred, training=True):
        if not training or _FEATURES["text"] not in y_pred:
            return {}
        h = {m: y_pred[_FEATURES[m]] for m in ("text", "audio", "vision")}
        z = y_pred[_FEATURES["fusion"]]
        losses = {}
        if self.use_cpc:
            nce = self.cpc["text"](h["text"], z) + self.cpc["vision"](h["vision"], z) + self.cpc["audio"](h["audio"], z)
            losses["nce"] = self.alpha * nce
        if self.use_mmilb:
            lld_encoders, lld_estimator = 0.0, 0.0
            for p in self.pairs:
                mx, my = PAIRS[p]
                lld_encoders = lld_encoders + self.bounds[p](h[mx], h[my], stop_weights=True)
                lld_estimator = lld_estimator + self.bounds[p](ops.stop_gradient(h[mx]), ops.stop_gradient(h[my]))
            losses["lld"] = -self.beta * lld_encoders
            losses["mmilb_estimator"] = -lld_estimator
            # A sample whose modality is missing (no real step) has no
            # representation of it to count in that modality's entropy.
            present = {m: ops.any(ops.cast(get_modality(x, m)[1], "bool"), axis=1) for m in ("audio", "vision")}
            losses["entropy"] = -self.beta * self._entropy_with_memory(h, y["sentiment"], present)
        return losses

    def _entropy_with_memory(self, h, labels, present):
        """H over the batch and the memory, 0 before MMSA counts it; pushes
        the batch's moments into the memory. `present[m]` `[B]`: the rows
        whose modality m has a real step (only they are counted)."""
        labels = ops.reshape(ops.cast(labels, "float32"), (-1,))
        fresh = ops.not_equal(self.epoch, self.memory_epoch)
        step = ops.where(fresh, 0.0, self.memory_step)
        slot = ops.cast(ops.arange(self.mem_size), "float32") == ops.mod(step, float(self.mem_size))
        total_h = 0.0
        updates = []
        for p in self.pairs:
            target = PAIRS[p][1]
            zp = self.bounds[p].entropy_projection(h[target])
            classes = {"pos": ops.logical_and(labels > 0, present[target]),
                       "neg": ops.logical_and(labels < 0, present[target])}
            stats = {}
            for c, mask in classes.items():
                current = moment_statistics(zp, mask)
                stored = [ops.where(fresh, ops.zeros_like(v), v) for v in self.memory[(p, c)]]
                stats[c] = tuple(ops.sum(s, axis=0) + cur for s, cur in zip(stored, current))
                for var, old, cur in zip(self.memory[(p, c)], stored, current):
                    where = ops.reshape(slot, (-1,) + (1,) * (len(old.shape) - 1))
                    updates.append((var, ops.where(where, ops.stop_gradient(cur)[None], old)))
            total_h = total_h + class_entropy(stats["pos"], stats["neg"])
        for var, value in updates:
            var.assign(value)
        self.memory_step.assign(step + 1.0)
        self.memory_epoch.assign(self.epoch)
        return ops.where(step > float(self.mem_size), total_h, 0.0)

    def get_config(self):
        config = super().get_config()
        config.update({
            **self._text_backbone_config(),
            "audio_hidden": self.audio_hidden, "vision_hidden": self.vision_hidden,
            "audio_out": self.audio_out, "vision_out": self.vision_out,
            "bidirectional": self.bidirectional, "fusion_dim": self.fusion_dim,
            "fusion_dropout": self.fusion_dropout, "cpc_layers": self.cpc_layers,
            "cpc_activation": self.cpc_activation, "mmilb_activation": self.mmilb_activation,
            "add_va": self.add_va, "alpha": self.alpha, "beta": self.beta, "mem_size": self.mem_size,
            "use_mmilb": self.use_mmilb, "use_cpc": self.use_cpc,
        })
        return config
