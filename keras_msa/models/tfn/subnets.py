"""The pre-fusion sub-networks TFN and LMF share (MMSA's
`models/subNets/FeatureNets.py`: `SubNet`, `TextSubNet`)."""

from keras import layers
from keras import ops

from keras_msa.layers.masked_mean_pooling import MaskedMeanPooling
from keras_msa.models.base import MODALITIES
from keras_msa.models.base import get_modality
from keras_msa.utils.masks import last_valid_step
from keras_msa.utils.masks import masked_rnn


class FusionSubnets:
    """Builds, and runs, the three unimodal encoders of TFN/LMF on a model.

    - audio, vision: the mean over real steps (MMSA's data loader averages
      over all steps for `need_normalized` models: the same on unpadded
      data), then BatchNorm -> Dropout -> 3 x (Dense + ReLU) of width h_m;
    - text: an LSTM of width h_t read at its last real step, then a Dense to
      `text_out`. MMSA's `TextSubNet` builds its dropout with rate 0 for a
      one-layer LSTM, so the configured text dropout has no effect there and
      none is applied here.

    BatchNorm uses PyTorch's epsilon (1e-5) and momentum (0.1, Keras 0.9).
    """

    def __init__(self, hidden_dims, text_out, dropouts):
        self.pool = MaskedMeanPooling()
        self.subnets = {}
        for m in ("audio", "vision"):
            h = hidden_dims[m]
            self.subnets[m] = [
                layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{m}_norm"),
                layers.Dropout(dropouts[m]),
                layers.Dense(h, activation="relu", name=f"{m}_dense_1"),
                layers.Dense(h, activation="relu", name=f"{m}_dense_2"),
                layers.Dense(h, activation="relu", name=f"{m}_dense_3"),
            ]
        self.text_lstm = layers.LSTM(hidden_dims["text"], return_sequences=True, name="text_lstm")
        self.text_dense = layers.Dense(text_out, name="text_dense")

    def build(self, input_shape, hidden_dims):
        for m in MODALITIES:
            if m not in input_shape:
                raise KeyError(f"needs '{m}' features [batch, time, dim]; the batch holds {sorted(input_shape)}.")
            if input_shape[m][-1] is None:
                raise ValueError(f"needs a known feature width for '{m}'; got shape {input_shape[m]}.")
        for m in ("audio", "vision"):
            width = input_shape[m][-1]
            for layer in self.subnets[m]:
                layer.build((None, width))
                width = hidden_dims[m] if isinstance(layer, layers.Dense) else width
        self.text_lstm.build((None, None, input_shape["text"][-1]))
        self.text_dense.build((None, hidden_dims["text"]))

    def __call__(self, inputs, training=False):
        """`({modality: [B, h_m]}, {modality: [B] bool present})`."""
        embeddings, present = {}, {}
        for m in ("audio", "vision"):
            x, mask = get_modality(inputs, m)
            h = self.pool(x, mask=mask)
            for layer in self.subnets[m]:
                h = layer(h, training=training)
            embeddings[m], present[m] = h, ops.any(mask, axis=1)
        x, mask = get_modality(inputs, "text")
        h = last_valid_step(masked_rnn(self.text_lstm, x, mask, training=training), mask)
        embeddings["text"], present["text"] = self.text_dense(h), ops.any(mask, axis=1)
        return embeddings, present


def attach(model, hidden_dims, text_out, dropouts):
    """Gives `model` its `FusionSubnets` as `model.encoders`, with the layers
    also held as model attributes so that Keras tracks (and saves) them."""
    model.encoders = FusionSubnets(hidden_dims, text_out, dropouts)
    model.subnet_layers = model.encoders.subnets["audio"] + model.encoders.subnets["vision"]
    model.text_lstm = model.encoders.text_lstm
    model.text_dense = model.encoders.text_dense


def build_encoders(model, input_shape, owner):
    if not isinstance(input_shape, dict):
        raise TypeError(f"{owner} is built from a batch dict of shapes; got {input_shape!r}.")
    try:
        model.encoders.build(input_shape, model.hidden_dims)
    except (KeyError, ValueError) as e:
        raise type(e)(f"{owner} {e.args[0]}") from None


def fusion_modalities(modalities, owner, order):
    """The fused modalities, validated, in the fusion `order`."""
    modalities = tuple(modalities)
    if len(modalities) < 2 or set(modalities) - set(order) or len(set(modalities)) != len(modalities):
        raise ValueError(f"{owner}: modalities must be two or three distinct names of {list(order)}; "
                         f"got {list(modalities)}.")
    return tuple(m for m in order if m in modalities)


def per_modality(value, what, owner):
    if not isinstance(value, dict) or set(value) != set(MODALITIES):
        raise ValueError(f"{owner}: {what} must be a dict naming exactly {list(MODALITIES)}; got {value!r}.")
    return {m: value[m] for m in MODALITIES}
