"""MMSA's MAG-BERT (`MMSA/models/singleTask/BERT_MAG.py`) -> `keras_msa.models.MAGBERT`.

Layout notes (PyTorch -> Keras):

- `model.bert.{embeddings,encoder,pooler}.*` is a transformers BERT: mapped
  by `keras_msa.convert.hf_bert.bert_weight_pairs` (prefix `model.bert.`);
  `embeddings.position_ids` (a buffer) is read and left aside.
- `model.bert.MAG.W_hv` / `W_ha` (`[d, D_v + d]` / `[d, D_a + d]`, on
  `[V; Z]` / `[A; Z]`) -> the gate's `gate_vision` / `gate_audio` Dense,
  `W_v` / `W_a` -> `proj_vision` / `proj_audio`, `MAG.LayerNorm` ->
  `layer_norm`; `nn.Linear.weight` `[out, in]` -> Dense kernel `[in, out]`.
- `model.classifier` -> `sentiment_head`.

A state dict does not hold BERT's number of attention heads: the config
gives it, as `num_attention_heads`, or as MMSA's `pretrained` naming a
directory whose `config.json` has it (or `bert-base-uncased` /
`bert-base-chinese`: 12). That directory's `vocab.txt`, when present, also
gives the model a tokenizer for raw sentences.
"""

import json
import os

import numpy as np

from keras_msa.convert.hf_bert import bert_config_from_state_dict
from keras_msa.convert.hf_bert import bert_consumed_keys
from keras_msa.convert.hf_bert import bert_weight_pairs
from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_mult import StateDict
from keras_msa.convert.mmsa_mult import _dense
from keras_msa.convert.mmsa_mult import _norm
from keras_msa.convert.mmsa_mult import assign_pairs
from keras_msa.convert.mmsa_tfn import model_variables

BERT = "model.bert."
MAG = "model.bert.MAG."
#: Heads of the BERTs MMSA's bert_mag config names.
KNOWN_HEADS = {"bert-base-uncased": 12, "bert-base-chinese": 12}


def _state(state_dict):
    return state_dict if isinstance(state_dict, StateDict) else StateDict(
        {k: np.asarray(v) for k, v in state_dict.items()})


def _pretrained_config(params):
    path = params.get("pretrained")
    if isinstance(path, str) and os.path.isfile(os.path.join(path, "config.json")):
        with open(os.path.join(path, "config.json")) as f:
            return json.load(f)
    return {}


def feature_dims_from_state_dict(state_dict):
    """`(d, D_audio, D_vision)` that MAG's weights imply."""
    sd = _state(state_dict)
    d = int(sd[f"{MAG}W_a.weight"].shape[0])
    return d, int(sd[f"{MAG}W_a.weight"].shape[1]), int(sd[f"{MAG}W_v.weight"].shape[1])


def check_magbert_state_dict(params, state_dict):
    """Checks that `state_dict` is an MMSA MAG-BERT's and fits `params`
    (MMSA's `feature_dims` when given)."""
    sd = _state(state_dict)
    if f"{MAG}W_hv.weight" not in sd:
        raise CheckpointMismatchError(f"the checkpoint has no '{MAG}W_hv.weight': it is not an MMSA BERT_MAG "
                                      f"state dict (it holds e.g. {', '.join(sorted(sd)[:3])}).")
    d, audio, vision = feature_dims_from_state_dict(sd)
    dims = params.get("feature_dims")
    if dims is not None and [int(v) for v in dims] != [d, audio, vision]:
        raise CheckpointMismatchError(f"the config gives feature_dims {list(dims)} but the checkpoint's MAG reads "
                                      f"[{d}, {audio}, {vision}] (text, audio, vision).")
    return params


def num_heads_from_mmsa(params):
    if params.get("num_attention_heads") is not None:
        return int(params["num_attention_heads"])
    heads = _pretrained_config(params).get("num_attention_heads")
    if heads is None:
        heads = KNOWN_HEADS.get(params.get("pretrained", "bert-base-uncased"))
    if heads is None:
        raise CheckpointMismatchError(f"the number of BERT attention heads is not in a state dict: give "
                                      f"num_attention_heads, or pretrained=<directory with config.json> "
                                      f"(got pretrained={params.get('pretrained')!r}).")
    return int(heads)


def magbert_weight_pairs(model, state_dict, gradients=False):
    """`(pairs, consumed)` for every weight of a built `MAGBERT` from an
    MMSA BERT_MAG state dict (or its gradients, `gradients=True`)."""
    sd = _state(state_dict)
    backbone = model.text_backbone.backbone
    pairs = bert_weight_pairs(backbone, sd, BERT, gradients=gradients)
    mag = model.mag
    for key, layer in (("W_hv", mag.gate_vision), ("W_ha", mag.gate_audio), ("W_v", mag.proj_vision),
                       ("W_a", mag.proj_audio)):
        pairs += _dense(f"{MAG}{key}", layer, sd)
    pairs += _norm(f"{MAG}LayerNorm", mag.layer_norm, sd)
    pairs += _dense("model.classifier", model.head, sd)
    return pairs, ([] if gradients else bert_consumed_keys(sd, BERT))


def _tokenizer(params, sequence_length):
    path = params.get("pretrained")
    if not (isinstance(path, str) and os.path.isfile(os.path.join(path, "vocab.txt"))):
        return None
    import keras_hub

    lowercase = True
    tokenizer_config = os.path.join(path, "tokenizer_config.json")
    if os.path.isfile(tokenizer_config):
        with open(tokenizer_config) as f:
            lowercase = bool(json.load(f).get("do_lower_case", True))
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=os.path.join(path, "vocab.txt"), lowercase=lowercase)
    return keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)


def magbert_from_mmsa(state_dict, params):
    """A built `keras_msa.models.MAGBERT` holding the weights of an MMSA
    BERT_MAG.

    Args:
        state_dict: MMSA parameter names -> arrays (the AMIO `Model.` prefix
            removed, as `keras_msa.convert.mmsa.torch_state_dict` does).
        params: MMSA's flat bert_mag parameters (`beta_shift`,
            `dropout_prob`, `pretrained`, optionally `num_attention_heads`)
            or `MAGBERT` arguments (a `MAGBERT.presets` entry).
    """
    import keras_hub

    from keras_msa.layers.text_backbone import TextBackbone
    from keras_msa.models.magbert import MAGBERT

    sd = _state(state_dict)
    check_magbert_state_dict(params, sd)
    bert_args = _pretrained_config(params)
    backbone = keras_hub.models.BertBackbone(
        **bert_config_from_state_dict(sd, BERT, num_heads=num_heads_from_mmsa(params)),
        dropout=float(bert_args.get("hidden_dropout_prob", 0.1)),
    )
    sequence_length = int(params.get("sequence_length", 50))
    text_backbone = TextBackbone(backbone, _tokenizer(params, sequence_length))
    model = MAGBERT(
        text_backbone=text_backbone,
        sequence_length=sequence_length,
        beta_shift=float(params.get("beta_shift", 1.0)),
        dropout_prob=float(params.get("dropout_prob", 0.3)),
        head_dropout=float(params.get("head_dropout", bert_args.get("hidden_dropout_prob", 0.1))),
        injection_index=int(params.get("injection_index", 0)),
    )
    _, audio, vision = feature_dims_from_state_dict(sd)
    model.build({"audio": (None, None, audio), "vision": (None, None, vision)})
    pairs, consumed = magbert_weight_pairs(model, sd)
    assign_pairs(pairs, sd, model_variables(model), "MAG-BERT", consumed=consumed)
    return model
