"""MMSA's MMIM (`MMSA/models/singleTask/MMIM.py`) -> `keras_msa.models.MMIM`.

Layout notes (PyTorch -> Keras):

- `bertmodel.model.*` (transformers `BertModel`) -> the `TextBackbone`'s
  keras-hub `BertBackbone`, through `keras_msa.convert.hf_bert` (its pooler
  is loaded but unused, as in MMSA, which reads the [CLS] hidden state). A
  state dict holds no vocabulary: the imported model reads token ids
  (`text_token_ids`, `text_padding_mask`, `text_segment_ids`: MMSA's
  `text[:, 0]`, `text[:, 1]`, `text[:, 2]`).
- `acoustic_enc`, `visual_enc` (`RNNEncoder`): `rnn.weight_ih_l0[_reverse]`
  `[4H, D]`, `weight_hh_l0[_reverse]` `[4H, H]` -> the forward (backward)
  LSTM kernel `[D, 4H]` / recurrent kernel `[H, 4H]` (gate order i, f, g, o
  = Keras's i, f, c, o); the two biases add up to Keras's one;
  `linear_1` -> `output_dense`.
- `mi_tv`, `mi_ta` (, `mi_va`) (`MMILB`): `mlp_mu.0`/`.2`,
  `mlp_logvar.0`/`.2`, `entropy_prj.0` -> `mu_kernel_1`/`_2`,
  `logvar_kernel_1`/`_2`, `entropy_kernel` (and biases).
- `cpc_zt`, `cpc_zv`, `cpc_za` (`CPC`): `net` (one layer) or `net.0`,
  `net.2`, `net.3`, ... -> `predictor_0`, `predictor_1`, ...
- `fusion_prj.linear_1`/`_2`/`_3` -> `fusion_1`, `fusion_2`, `sentiment_head`.
- `nn.Linear.weight` `[out, in]` -> Dense kernel `[in, out]`.

BERT's number of heads is not in a state dict: `bert_num_heads` in the
config, else 12 for MMSA's `bert-base-*` pretrained names, else hidden / 64.
"""

import numpy as np

from keras_msa.convert.hf_bert import bert_config_from_state_dict
from keras_msa.convert.hf_bert import bert_consumed_keys
from keras_msa.convert.hf_bert import bert_weight_pairs
from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_mult import StateDict
from keras_msa.convert.mmsa_mult import _dense
from keras_msa.convert.mmsa_mult import assign_pairs

BERT_PREFIX = "bertmodel.model."
ENCODERS = {"audio": "acoustic_enc", "vision": "visual_enc"}
CPC = {"text": "cpc_zt", "vision": "cpc_zv", "audio": "cpc_za"}
_MMSA_KEYS = ("d_ah", "d_vh", "d_aout", "d_vout", "d_prjh")


def _state(state_dict):
    return state_dict if isinstance(state_dict, StateDict) else StateDict(
        {k: np.asarray(v) for k, v in state_dict.items()})


def mmim_config_from_mmsa(params, state_dict=None):
    """`MMIM` arguments from an MMSA MMIM config (`mmim.commonParams` merged
    with one `datasetParams` entry); `state_dict` checks the sizes."""
    missing = [k for k in _MMSA_KEYS if k not in params]
    if missing:
        raise CheckpointMismatchError(f"the MMSA MMIM config has no {', '.join(missing)} (it holds "
                                      f"{sorted(params)}); pass mmim's commonParams and datasetParams.")
    if int(params.get("n_layer", 1)) != 1:
        raise CheckpointMismatchError(f"the MMSA MMIM config has n_layer = {params['n_layer']}; keras_msa's MMIM "
                                      f"encoders are one LSTM layer (MMSA's presets all use 1).")
    contrast = bool(params.get("contrast", True))
    config = {"audio_hidden": int(params["d_ah"]), "vision_hidden": int(params["d_vh"]),
              "audio_out": int(params["d_aout"]), "vision_out": int(params["d_vout"]),
              "bidirectional": bool(params.get("bidirectional", True)), "fusion_dim": int(params["d_prjh"]),
              "fusion_dropout": float(params.get("dropout_prj", 0.1)),
              "cpc_layers": int(params.get("cpc_layers", 1)),
              "cpc_activation": str(params.get("cpc_activation", "Tanh")).lower(),
              "mmilb_activation": str(params.get("mmilb_mid_activation", "ReLU")).lower(),
              "add_va": bool(params.get("add_va", False)), "alpha": float(params.get("alpha", 0.1)),
              "beta": float(params.get("beta", 0.1)), "mem_size": int(params.get("mem_size", 1)),
              "use_mmilb": contrast, "use_cpc": contrast, "task_loss": "mae"}
    for key in ("bert_num_heads", "pretrained"):
        if key in params:
            config[key] = params[key]
    if state_dict is not None:
        check_mmim_state_dict(config, state_dict)
    return config


def check_mmim_state_dict(config, state_dict):
    """Checks the widths a state dict implies against `MMIM(**config)`'s."""
    sd = _state(state_dict)
    if "fusion_prj.linear_1.weight" not in sd or "mi_tv.mlp_mu.0.weight" not in sd:
        raise CheckpointMismatchError("the checkpoint has no 'fusion_prj.linear_1.weight' / 'mi_tv.mlp_mu.0.weight': "
                                      "it is not an MMSA MMIM state dict.")
    for m, prefix in ENCODERS.items():
        hidden = sd[f"{prefix}.rnn.weight_hh_l0"].shape[1]
        out = sd[f"{prefix}.linear_1.weight"].shape[0]
        if hidden != config.get(f"{m}_hidden", 16) or out != config.get(f"{m}_out", 16):
            raise CheckpointMismatchError(
                f"'{prefix}' is an LSTM of width {hidden} with {out} outputs but the config gives "
                f"{m}_hidden = {config.get(f'{m}_hidden', 16)}, {m}_out = {config.get(f'{m}_out', 16)}: the config "
                f"is not the one this MMIM checkpoint was trained with.")
        if (f"{prefix}.rnn.weight_ih_l0_reverse" in sd) != bool(config.get("bidirectional", True)):
            raise CheckpointMismatchError(f"'{prefix}.rnn' is {'' if f'{prefix}.rnn.weight_ih_l0_reverse' in sd else 'not '}"
                                          f"bidirectional but the config says bidirectional = "
                                          f"{config.get('bidirectional', True)}.")
    got = sd["fusion_prj.linear_1.weight"].shape[0]
    if got != config.get("fusion_dim", 128):
        raise CheckpointMismatchError(f"'fusion_prj.linear_1.weight' has {got} outputs but the config gives "
                                      f"fusion_dim (d_prjh) = {config.get('fusion_dim', 128)}.")
    if ("mi_va.mlp_mu.0.weight" in sd) != bool(config.get("add_va", False)):
        raise CheckpointMismatchError(f"the checkpoint {'has' if 'mi_va.mlp_mu.0.weight' in sd else 'has no'} "
                                      f"'mi_va' but the config says add_va = {config.get('add_va', False)}.")


def _bert_heads(config, hidden):
    if config.get("bert_num_heads") is not None:
        return int(config["bert_num_heads"])
    if str(config.get("pretrained", "bert-base")).startswith("bert-base") or hidden % 64 == 0:
        return max(1, hidden // 64)
    raise CheckpointMismatchError(f"the checkpoint's BERT has width {hidden}: pass its number of heads as "
                                  f"'bert_num_heads' in the config (a state dict does not record it).")


def _lstm(prefix, lstm, sd, suffix, gradients):
    cell = lstm.cell
    bias = sd[f"{prefix}.bias_ih_l0{suffix}"]
    return [(cell.kernel, sd[f"{prefix}.weight_ih_l0{suffix}"].T, f"{prefix}.weight_ih_l0{suffix}"),
            (cell.recurrent_kernel, sd[f"{prefix}.weight_hh_l0{suffix}"].T, f"{prefix}.weight_hh_l0{suffix}"),
            # A gradient reaches both PyTorch biases equally: one of them is Keras's.
            (cell.bias, bias if gradients else bias + sd[f"{prefix}.bias_hh_l0{suffix}"],
             f"{prefix}.bias_ih_l0{suffix}")]


def mmim_weight_pairs(model, state_dict, gradients=False):
    """`(pairs, consumed)` for every weight of a built `MMIM` from an MMSA
    MMIM state dict (or its gradients, `gradients=True`, which have no
    entropy projection: it is never stepped)."""
    sd = _state(state_dict)
    pairs, consumed = [], []
    if model.text_backbone is not None:
        pairs += [p for p in bert_weight_pairs(model.text_backbone.backbone, sd, BERT_PREFIX)
                  if not (gradients and p[2].startswith(BERT_PREFIX + "pooler."))]
        consumed += bert_consumed_keys(sd, BERT_PREFIX)
    for m, prefix in ENCODERS.items():
        enc = getattr(model, f"{m}_encoder")
        pairs += _lstm(f"{prefix}.rnn", enc.forward_lstm, sd, "", gradients)
        consumed.append(f"{prefix}.rnn.bias_hh_l0")
        if enc.backward_lstm is not None:
            pairs += _lstm(f"{prefix}.rnn", enc.backward_lstm, sd, "_reverse", gradients)
            consumed.append(f"{prefix}.rnn.bias_hh_l0_reverse")
        pairs += _dense(f"{prefix}.linear_1", enc.output_dense, sd)
    for p, bound in model.bounds.items():
        for part, name in (("mu", "mlp_mu"), ("logvar", "mlp_logvar")):
            for i, index in ((1, 0), (2, 2)):
                key = f"mi_{p}.{name}.{index}"
                pairs += [(getattr(bound, f"{part}_kernel_{i}"), sd[f"{key}.weight"].T, f"{key}.weight"),
                          (getattr(bound, f"{part}_bias_{i}"), sd[f"{key}.bias"], f"{key}.bias")]
        if not gradients:
            pairs += [(bound.entropy_kernel, sd[f"mi_{p}.entropy_prj.0.weight"].T, f"mi_{p}.entropy_prj.0.weight"),
                      (bound.entropy_bias, sd[f"mi_{p}.entropy_prj.0.bias"], f"mi_{p}.entropy_prj.0.bias")]
    for m, prefix in CPC.items():
        predictor = model.cpc[m].predictor
        names = [f"{prefix}.net"] if len(predictor) == 1 else [f"{prefix}.net.{0 if i == 0 else i + 1}"
                                                                for i in range(len(predictor))]
        for name, dense in zip(names, predictor):
            pairs += _dense(name, dense, sd)
    for name, dense in (("linear_1", model.fusion_1), ("linear_2", model.fusion_2), ("linear_3", model.sentiment_head)):
        pairs += _dense(f"fusion_prj.{name}", dense, sd)
    return pairs, consumed


def model_variables(model):
    """Every weight the checkpoint must fill (the epoch counter and the
    entropy memory, training state, aside)."""
    skip = {id(v) for v in [model.epoch, *model.memory_variables()]}
    return [v for v in model.weights if id(v) not in skip]


def _build_model(sd, config):
    import keras_hub

    from keras_msa.layers.text_backbone import TextBackbone
    from keras_msa.models.mmim import MMIM

    config = dict(config)
    heads_config = {k: config.pop(k) for k in ("bert_num_heads", "pretrained") if k in config}
    if config.get("text_backbone") is None and config.get("backbone_preset") is None:
        bert = bert_config_from_state_dict(sd, BERT_PREFIX, num_heads=1)
        bert["num_heads"] = _bert_heads(heads_config, bert["hidden_dim"])
        config["text_backbone"] = TextBackbone(keras_hub.models.BertBackbone(**bert))
    model = MMIM(**config)
    length = 4
    dims = {m: int(sd[f"{ENCODERS[m]}.rnn.weight_ih_l0"].shape[1]) for m in ENCODERS}
    model({"text_token_ids": np.zeros((2, length), "int32"), "text_padding_mask": np.ones((2, length), bool),
           "text_segment_ids": np.zeros((2, length), "int32"),
           **{m: np.zeros((2, 3, d), "float32") for m, d in dims.items()}})
    return model


def mmim_from_mmsa(state_dict, params):
    """A built `keras_msa.models.MMIM` holding the weights of an MMSA MMIM.

    Args:
        state_dict: MMSA parameter names -> arrays.
        params: the MMSA MMIM config (see `mmim_config_from_mmsa`; add
            `bert_num_heads` for a BERT that is not `bert-base-*`) or `MMIM`
            constructor arguments (an `MMIM.presets` entry).
    """
    sd = _state(state_dict)
    config = mmim_config_from_mmsa(params, sd) if "d_prjh" in params else dict(params)
    check_mmim_state_dict(config, sd)
    model = _build_model(sd, config)
    pairs, consumed = mmim_weight_pairs(model, sd)
    assign_pairs(pairs, sd, model_variables(model), "MMIM", consumed=consumed)
    return model
