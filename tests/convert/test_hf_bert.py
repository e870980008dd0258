"""keras_msa.convert.hf_bert against transformers' own BertModel outputs
(tests/fixtures/mmsa/bert.npz, written by tests/fixtures/mmsa/tiny_bert.py)."""

import os

import keras_hub
import numpy as np
import pytest

from keras_msa.convert.hf_bert import bert_config_from_state_dict
from keras_msa.convert.hf_bert import bert_weight_pairs
from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_mult import assign_pairs

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "mmsa", "bert.npz")


def _load():
    f = np.load(FIXTURE)
    sd = {k[2:]: f[k] for k in f.files if k.startswith("w/")}
    return f, sd


def test_bert_backbone_reproduces_transformers_outputs():
    f, sd = _load()
    config = bert_config_from_state_dict(sd, num_heads=int(f["num_heads"]))
    backbone = keras_hub.models.BertBackbone(**config, dropout=0.1)
    pairs = bert_weight_pairs(backbone, sd)
    assign_pairs(pairs, sd, backbone.weights, "tiny BERT")
    out = backbone({"token_ids": f["input_ids"].astype("int32"),
                    "segment_ids": f["segment_ids"].astype("int32"),
                    "padding_mask": f["input_mask"].astype(bool)})
    mask = f["input_mask"].astype(bool)
    # Real tokens only: padded positions are never read downstream.
    np.testing.assert_allclose(np.asarray(out["sequence_output"])[mask], f["last_hidden_state"][mask], atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["pooled_output"]), f["pooler_output"], atol=1e-5)


def test_prefix_and_missing_key_are_named():
    f, sd = _load()
    prefixed = {f"text_model.model.{k}": v for k, v in sd.items()}
    config = bert_config_from_state_dict(prefixed, "text_model.model.", num_heads=2)
    assert config["num_layers"] == 2 and config["hidden_dim"] == 16
    backbone = keras_hub.models.BertBackbone(**config)
    del prefixed["text_model.model.encoder.layer.1.output.dense.bias"]
    with pytest.raises(CheckpointMismatchError, match="encoder.layer.1.output.dense.bias"):
        bert_weight_pairs(backbone, prefixed, "text_model.model.")
    with pytest.raises(CheckpointMismatchError, match="num_heads"):
        bert_config_from_state_dict(prefixed, "text_model.model.")
