"""MMSA's MISA (`MMSA/models/singleTask/MISA.py`) -> `keras_msa.models.MISA`.

Layout notes (PyTorch -> Keras):

- `bertmodel.model.*` (a transformers `BertModel`) -> the keras-hub
  `BertBackbone` of the `TextBackbone`, through `hf_bert.bert_weight_pairs`;
  the pooler is filled but unused (MISA averages the last hidden states).
  The BERT's head count is not in a state dict: it is read from
  `bert_num_heads`, else from the `config.json` of a local `pretrained`
  directory, else 12 (bert-base, MMSA's `bert-base-uncased` and
  `bert-base-chinese`).
- `vrnn1`/`vrnn2`, `arnn1`/`arnn2` (bidirectional `nn.LSTM`): `weight_ih_l0`
  `[4H, D]`, `weight_hh_l0` `[4H, H]` (`_reverse` for the backward
  direction) -> the forward/backward LSTMs of `BiLSTMUtteranceEncoder`
  (kernel `[D, 4H]`, recurrent kernel `[H, 4H]`; PyTorch's gate order
  i, f, g, o is Keras's i, f, c, o; the two biases add up to Keras's one).
  `vlayer_norm`/`alayer_norm` -> the encoder's LayerNorm.
- `project_<m>`, `private_<m>`, `shared`, `recon_<m>`, `fusion`
  (`nn.Linear` `[out, in]` -> Dense `[in, out]`; `nn.LayerNorm` -> gamma,
  beta). MMSA's `t`, `v`, `a` are text, vision, audio.
- `transformer_encoder.layers.0` (`nn.TransformerEncoderLayer`):
  `self_attn.in_proj_weight` `[3d, d]` (W_q, W_k, W_v stacked) -> the
  query/key/value kernels `[d, heads, d/heads]`, `out_proj` -> the output
  kernel `[heads, d/heads, d]`, `linear1`/`linear2` -> the feed-forward,
  `norm1`/`norm2` -> the attention and feed-forward LayerNorms of a keras-hub
  `TransformerEncoder`.
- Read and left aside (MMSA creates them but its forward pass and losses
  never use them): `tlayer_norm` (the text LSTM's norm of the non-BERT
  variant MMSA refuses), `sp_discriminator` (the shared/private
  discriminator; MMSA's trainer has no loss on it) and BERT's
  `position_ids` buffer.

The converted model reads audio and vision for the text's length
(`av_lengths="text"`), as MMSA does, and takes MMSA's token ids
(`text_token_ids`, `text_padding_mask`, `text_segment_ids`: MMSA's
`text_bert` `[B, 3, L]` split) since a state dict holds no vocabulary.
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
from keras_msa.convert.mmsa_mult import torch_attention_pairs

BERT_PREFIX = "bertmodel.model."
LETTERS = {"text": "t", "vision": "v", "audio": "a"}
#: MMSA numbers its private encoders' layers 1, 1, 3.
PRIVATE_INDEX = {"text": 1, "vision": 1, "audio": 3}
RNN = {"vision": "vrnn", "audio": "arnn"}
#: MMSA config keys -> MISA arguments.
_CONFIG_KEYS = ("hidden_size", "dropout", "diff_weight", "sim_weight", "recon_weight")


def _state(state_dict):
    return state_dict if isinstance(state_dict, StateDict) else StateDict(
        {k: np.asarray(v) for k, v in state_dict.items()})


def _bert_num_heads(params):
    if params.get("bert_num_heads") is not None:
        return int(params["bert_num_heads"])
    pretrained = params.get("pretrained")
    config = None if pretrained is None else os.path.join(os.fspath(pretrained), "config.json")
    if config is not None and os.path.isfile(config):
        try:
            with open(config) as f:
                return int(json.load(f)["num_attention_heads"])
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointMismatchError(f"{config}: no readable 'num_attention_heads' ({e}); pass "
                                          f"bert_num_heads in the config.") from e
    return 12


def misa_config_from_mmsa(params, state_dict=None):
    """`MISA` arguments (without the backbone) from an MMSA MISA config
    (`misa.commonParams` merged with one `datasetParams` entry) or from
    `MISA` arguments (a `MISA.presets` entry); `state_dict` checks the
    sizes."""
    for key, want in (("use_cmd_sim", True), ("rnncell", "lstm"), ("transformers", "bert")):
        if key in params and params[key] != want:
            raise CheckpointMismatchError(
                f"the MMSA MISA config sets {key}={params[key]!r}; only {key}={want!r} (MMSA's setting) is "
                f"converted (use_cmd_sim=false needs the adversarial discriminator, which MMSA's trainer "
                f"cannot run).")
    missing = [k for k in _CONFIG_KEYS if k not in params]
    if missing:
        raise CheckpointMismatchError(f"the MMSA MISA config has no {', '.join(missing)} (it holds "
                                      f"{sorted(params)}); pass misa's commonParams and datasetParams.")
    config = {k: params[k] for k in _CONFIG_KEYS}
    config["hidden_size"] = int(config["hidden_size"])
    if state_dict is not None:
        check_misa_state_dict(config, state_dict)
    return config


def check_misa_state_dict(config, state_dict):
    sd = _state(state_dict)
    key = "fusion.fusion_layer_1.weight"
    if key not in sd or f"{BERT_PREFIX}embeddings.word_embeddings.weight" not in sd:
        raise CheckpointMismatchError(f"the checkpoint has no '{key}' or no BERT under '{BERT_PREFIX}': it is not "
                                      f"an MMSA MISA state dict.")
    got = sd["shared.shared_1.weight"].shape[0]
    if got != int(config.get("hidden_size", 128)):
        raise CheckpointMismatchError(f"'shared.shared_1.weight' has {got} outputs but the config gives "
                                      f"hidden_size = {config.get('hidden_size', 128)}: the config is not the "
                                      f"one this MISA checkpoint was trained with.")


def _lstm(prefix, layer, sd, suffix, gradients):
    cell = layer.cell
    bias = sd[f"{prefix}.bias_ih_l0{suffix}"]
    return [(cell.kernel, sd[f"{prefix}.weight_ih_l0{suffix}"].T, f"{prefix}.weight_ih_l0{suffix}"),
            (cell.recurrent_kernel, sd[f"{prefix}.weight_hh_l0{suffix}"].T, f"{prefix}.weight_hh_l0{suffix}"),
            (cell.bias, bias if gradients else bias + sd[f"{prefix}.bias_hh_l0{suffix}"],
             f"{prefix}.bias_ih_l0{suffix}")]


def _transformer(prefix, layer, sd):
    attn = layer._self_attention_layer
    pairs = torch_attention_pairs(
        f"{prefix}.self_attn", (attn.query_dense, attn.key_dense, attn.value_dense, attn.output_dense),
        attn.num_heads, sd)
    pairs += _norm(f"{prefix}.norm1", layer._self_attention_layer_norm, sd)
    pairs += _dense(f"{prefix}.linear1", layer._feedforward_intermediate_dense, sd)
    pairs += _dense(f"{prefix}.linear2", layer._feedforward_output_dense, sd)
    pairs += _norm(f"{prefix}.norm2", layer._feedforward_layer_norm, sd)
    return pairs


def misa_weight_pairs(model, state_dict, gradients=False):
    """`(pairs, consumed)` for every weight of a built backbone-mode `MISA`
    from an MMSA MISA state dict (or its gradients, `gradients=True`)."""
    if model.text_backbone is None:
        raise CheckpointMismatchError("MMSA's MISA reads text with BERT: the keras_msa MISA must be in backbone "
                                      "mode (text_backbone=...).")
    sd = _state(state_dict)
    pairs = [p for p in bert_weight_pairs(model.text_backbone.backbone, sd, BERT_PREFIX)
             if not (gradients and p[2].startswith(f"{BERT_PREFIX}pooler."))]
    consumed = bert_consumed_keys(sd, BERT_PREFIX)
    for m, rnn in RNN.items():
        encoder = model.encoders[m]
        for i, (fwd, bwd) in enumerate(((encoder.lstm1_forward, encoder.lstm1_backward),
                                        (encoder.lstm2_forward, encoder.lstm2_backward)), start=1):
            pairs += _lstm(f"{rnn}{i}", fwd, sd, "", gradients)
            pairs += _lstm(f"{rnn}{i}", bwd, sd, "_reverse", gradients)
            if not gradients:
                consumed += [f"{rnn}{i}.bias_hh_l0", f"{rnn}{i}.bias_hh_l0_reverse"]
        pairs += _norm(f"{LETTERS[m]}layer_norm", encoder.norm, sd)
    for m, s in LETTERS.items():
        pairs += _dense(f"project_{s}.project_{s}", model.project[m], sd)
        pairs += _norm(f"project_{s}.project_{s}_layer_norm", model.project_norm[m], sd)
        pairs += _dense(f"private_{s}.private_{s}_{PRIVATE_INDEX[m]}", model.private[m], sd)
        pairs += _dense(f"recon_{s}.recon_{s}_1", model.recon[m], sd)
    pairs += _dense("shared.shared_1", model.shared, sd)
    pairs += _transformer("transformer_encoder.layers.0", model.transformer, sd)
    pairs += _dense("fusion.fusion_layer_1", model.fusion_1, sd)
    pairs += _dense("fusion.fusion_layer_3", model.sentiment_head, sd)
    if not gradients:
        consumed += [k for k in sd if k.startswith(("tlayer_norm.", "sp_discriminator."))]
    return pairs, consumed


def misa_from_mmsa(state_dict, params):
    """A built backbone-mode `keras_msa.models.MISA` holding the weights of an
    MMSA MISA, reading audio/vision for the text's length as MMSA does.

    Args:
        state_dict: MMSA parameter names -> arrays.
        params: the MMSA MISA config (see `misa_config_from_mmsa`; its
            `pretrained` directory or `bert_num_heads` gives BERT's heads) or
            `MISA` constructor arguments (a `MISA.presets` entry).
    """
    import keras_hub

    from keras_msa.layers.text_backbone import TextBackbone
    from keras_msa.models.misa import MISA

    sd = _state(state_dict)
    config = misa_config_from_mmsa(params, sd)
    bert = bert_config_from_state_dict(sd, BERT_PREFIX, num_heads=_bert_num_heads(params))
    backbone = TextBackbone(keras_hub.models.BertBackbone(**bert), fine_tune=True)
    ff = sd["transformer_encoder.layers.0.linear1.weight"].shape[0]
    model = MISA(text_backbone=backbone, transformer_ff_dim=int(ff), av_lengths="text", **config)
    dims = {m: int(sd[f"{RNN[m]}1.weight_ih_l0"].shape[1]) for m in RNN}
    model({"text_token_ids": np.zeros((1, 2), "int32"), "text_padding_mask": np.ones((1, 2), bool),
           **{m: np.zeros((1, 2, d), "float32") for m, d in dims.items()}})
    pairs, consumed = misa_weight_pairs(model, sd)
    assign_pairs(pairs, sd, [v for v in model.weights if v is not model.epoch], "MISA", consumed=consumed)
    return model
