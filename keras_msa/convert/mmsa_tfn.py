"""MMSA's TFN (`MMSA/models/singleTask/TFN.py`) -> `keras_msa.models.TFN`,
and the sub-network mapping LMF shares (`mmsa_lmf`).

Layout notes (PyTorch -> Keras):

- `<m>_subnet.norm` (BatchNorm1d): weight/bias -> gamma/beta,
  running_mean/running_var -> moving_mean/moving_variance;
  `num_batches_tracked` has no Keras counterpart (PyTorch uses it only when
  `momentum=None`) and is read and left aside. MMSA's `video` is vision.
- `text_subnet.rnn` (nn.LSTM): `weight_ih_l0` `[4H, D]` and `weight_hh_l0`
  `[4H, H]` -> LSTM kernel `[D, 4H]` and recurrent kernel `[H, 4H]` (the
  gate order i, f, g, o is Keras's i, f, c, o); the two biases add up to
  the one Keras bias.
- `nn.Linear.weight` `[out, in]` -> Dense kernel `[in, out]`.
- `output_range`, `output_shift` (frozen parameters) become the
  `output_range` / `output_shift` arguments.
"""

import numpy as np

from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_mult import StateDict
from keras_msa.convert.mmsa_mult import _dense
from keras_msa.convert.mmsa_mult import assign_pairs

PREFIX = {"audio": "audio_subnet", "vision": "video_subnet"}


def _state(state_dict):
    return state_dict if isinstance(state_dict, StateDict) else StateDict(
        {k: np.asarray(v) for k, v in state_dict.items()})


def hidden_dims_from_mmsa(params, owner):
    for key in ("hidden_dims", "dropouts"):
        if key not in params:
            raise CheckpointMismatchError(f"the MMSA {owner} config has no '{key}' (it holds {sorted(params)}); "
                                          f"pass {owner.lower()}'s commonParams and datasetParams.")
    text, audio, vision = (int(v) for v in params["hidden_dims"])
    audio_p, vision_p, _, post_p = (float(v) for v in params["dropouts"])
    return {"text": text, "audio": audio, "vision": vision}, {"audio": audio_p, "vision": vision_p}, post_p


def subnet_weight_pairs(model, state_dict, gradients=False):
    """`(pairs, consumed)` for the sub-networks of a built TFN or LMF.
    `gradients=True` leaves out the BatchNorm running statistics
    (for gradients, which have none)."""
    sd = _state(state_dict)
    pairs, consumed = [], []
    for m, prefix in PREFIX.items():
        norm, _, *dense = model.encoders.subnets[m]
        pairs += [(norm.gamma, sd[f"{prefix}.norm.weight"], f"{prefix}.norm.weight"),
                  (norm.beta, sd[f"{prefix}.norm.bias"], f"{prefix}.norm.bias")]
        if not gradients:
            pairs += [(norm.moving_mean, sd[f"{prefix}.norm.running_mean"], f"{prefix}.norm.running_mean"),
                      (norm.moving_variance, sd[f"{prefix}.norm.running_var"], f"{prefix}.norm.running_var")]
            consumed.append(f"{prefix}.norm.num_batches_tracked")
        for i, layer in enumerate(dense, start=1):
            pairs += _dense(f"{prefix}.linear_{i}", layer, sd)
    cell = model.encoders.text_lstm.cell
    rnn = "text_subnet.rnn"
    pairs += [(cell.kernel, sd[f"{rnn}.weight_ih_l0"].T, f"{rnn}.weight_ih_l0"),
              (cell.recurrent_kernel, sd[f"{rnn}.weight_hh_l0"].T, f"{rnn}.weight_hh_l0"),
              (cell.bias, sd[f"{rnn}.bias_ih_l0"] + (0 if gradients else sd[f"{rnn}.bias_hh_l0"]),
               f"{rnn}.bias_ih_l0")]
    consumed.append(f"{rnn}.bias_hh_l0")
    pairs += _dense("text_subnet.linear_1", model.encoders.text_dense, sd)
    return pairs, consumed


def check_subnets(config, sd, owner):
    """Sizes the state dict implies against the config's."""
    hidden = config["hidden_dims"]
    for m, prefix in PREFIX.items():
        got = sd[f"{prefix}.linear_1.weight"].shape[0]
        if got != hidden[m]:
            raise CheckpointMismatchError(
                f"'{prefix}.linear_1.weight' has {got} outputs but the config gives hidden_dims[{m}] = "
                f"{hidden[m]}: the config is not the one this {owner} checkpoint was trained with.")
    got = sd["text_subnet.rnn.weight_hh_l0"].shape[1]
    if got != hidden["text"]:
        raise CheckpointMismatchError(f"'text_subnet.rnn.weight_hh_l0' is an LSTM of width {got} but the config "
                                      f"gives hidden_dims[text] = {hidden['text']} ({owner}).")
    got = sd["text_subnet.linear_1.weight"].shape[0]
    if config.get("text_out") is not None and got != config["text_out"]:
        raise CheckpointMismatchError(f"'text_subnet.linear_1.weight' has {got} outputs but the config gives "
                                      f"text_out = {config['text_out']} ({owner}).")


def feature_dims_from_state_dict(sd):
    return {"text": int(sd["text_subnet.rnn.weight_ih_l0"].shape[1]),
            "audio": int(sd["audio_subnet.norm.weight"].shape[0]),
            "vision": int(sd["video_subnet.norm.weight"].shape[0])}


def build_on_state_dict(model, sd):
    dims = feature_dims_from_state_dict(sd)
    model({m: np.zeros((2, 2, dims[m]), "float32") for m in ("text", "audio", "vision")})
    return model


def model_variables(model):
    """Every weight the checkpoint must fill (the epoch counter aside)."""
    return [v for v in model.weights if v is not model.epoch]


def tfn_config_from_mmsa(params, state_dict=None):
    """`TFN` arguments from an MMSA TFN config (`tfn.commonParams` merged
    with one `datasetParams` entry); `state_dict` checks the sizes."""
    hidden, dropouts, post = hidden_dims_from_mmsa(params, "TFN")
    missing = [k for k in ("text_out", "post_fusion_dim") if k not in params]
    if missing:
        raise CheckpointMismatchError(f"the MMSA TFN config has no {', '.join(missing)} (it holds {sorted(params)}).")
    config = {"hidden_dims": hidden, "text_out": int(params["text_out"]),
              "post_fusion_dim": int(params["post_fusion_dim"]),
              "dropouts": {**dropouts, "post_fusion": post}, "task_loss": "mae"}
    if state_dict is not None:
        check_tfn_state_dict(config, state_dict)
    return config


def check_tfn_state_dict(config, state_dict):
    sd = _state(state_dict)
    if "post_fusion_layer_1.weight" not in sd:
        raise CheckpointMismatchError("the checkpoint has no 'post_fusion_layer_1.weight': it is not an MMSA "
                                      "TFN state dict.")
    check_subnets(config, sd, "TFN")
    got = sd["post_fusion_layer_1.weight"].shape[0]
    if got != config.get("post_fusion_dim", 64):
        raise CheckpointMismatchError(f"'post_fusion_layer_1.weight' has {got} outputs but the config gives "
                                      f"post_fusion_dim = {config.get('post_fusion_dim', 64)} (TFN).")


def tfn_weight_pairs(model, state_dict, gradients=False):
    """`(pairs, consumed)` for every weight of a built `TFN` from an MMSA
    TFN state dict (or its gradients, with `gradients=True`)."""
    sd = _state(state_dict)
    pairs, consumed = subnet_weight_pairs(model, sd, gradients)
    pairs += _dense("post_fusion_layer_1", model.post_fusion_1, sd)
    pairs += _dense("post_fusion_layer_2", model.post_fusion_2, sd)
    pairs += _dense("post_fusion_layer_3", model.sentiment_head, sd)
    if not gradients:
        consumed += ["output_range", "output_shift"]
    return pairs, consumed


def tfn_from_mmsa(state_dict, params):
    """A built `keras_msa.models.TFN` holding the weights of an MMSA TFN.

    Args:
        state_dict: MMSA parameter names -> arrays.
        params: the MMSA TFN config (see `tfn_config_from_mmsa`) or `TFN`
            constructor arguments (a `TFN.presets` entry).
    """
    from keras_msa.models.tfn import TFN

    sd = _state(state_dict)
    config = tfn_config_from_mmsa(params, sd) if "post_fusion_dim" in params and isinstance(
        params.get("hidden_dims"), (list, tuple)) else dict(params)
    check_tfn_state_dict(config, sd)
    config["output_range"] = float(sd["output_range"].reshape(-1)[0])
    config["output_shift"] = float(sd["output_shift"].reshape(-1)[0])
    model = build_on_state_dict(TFN(**config), sd)
    pairs, consumed = tfn_weight_pairs(model, sd)
    assign_pairs(pairs, sd, model_variables(model), "TFN", consumed=consumed)
    return model
