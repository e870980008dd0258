"""MMSA's EF_LSTM (`MMSA/models/singleTask/EF_LSTM.py`) -> `keras_msa.models.EFLSTM`
with the `mmsa_*` options (time BatchNorm, stacked LSTMs, MMSA head).

Layout notes (PyTorch -> Keras):

- `nn.LSTM` layer k: `weight_ih_l{k}` `[4H, D]` and `weight_hh_l{k}`
  `[4H, H]` -> `kernel` `[D, 4H]` and `recurrent_kernel` `[H, 4H]` (both
  frameworks order the gates i, f, g/c, o); PyTorch's two biases act as
  their sum, Keras's one `bias`. A gradient of that sum is the gradient of
  either bias (`gradients=True` maps them so).
- `norm` (`nn.BatchNorm1d(seq_len)`): weight, bias, running_mean,
  running_var -> gamma, beta, moving_mean, moving_variance, one per step;
  `num_batches_tracked` has no Keras counterpart and is skipped.
- `linear`, `out`: `nn.Linear.weight` `[out, in]` -> Dense kernel `[in, out]`.
"""

import numpy as np

from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_mult import StateDict
from keras_msa.convert.mmsa_mult import _dense
from keras_msa.convert.mmsa_mult import assign_pairs
from keras_msa.models.base import MODALITIES

_MMSA_OPTIONS = {"time_batchnorm": True, "head": "mmsa", "batchnorm_epsilon": 1e-5, "batchnorm_momentum": 0.9,
                 "task_loss": "mae"}


def lstm_weight_pairs(prefix, layer_index, lstm, sd, gradients=False):
    """`(keras variable, array, key)` for layer `layer_index` of a PyTorch
    `nn.LSTM` (keys under `prefix`) and a built Keras LSTM, plus the keys read
    and folded into another pair."""
    k = layer_index
    bias_ih, bias_hh = sd[f"{prefix}.bias_ih_l{k}"], sd[f"{prefix}.bias_hh_l{k}"]
    cell = lstm.cell
    pairs = [(cell.kernel, sd[f"{prefix}.weight_ih_l{k}"].T, f"{prefix}.weight_ih_l{k}"),
             (cell.recurrent_kernel, sd[f"{prefix}.weight_hh_l{k}"].T, f"{prefix}.weight_hh_l{k}"),
             (cell.bias, bias_ih if gradients else bias_ih + bias_hh, f"{prefix}.bias_ih_l{k}")]
    return pairs, [f"{prefix}.bias_hh_l{k}"]


def batchnorm_weight_pairs(prefix, layer, sd, gradients=False):
    """gamma/beta (and, for weights, the moving statistics) of a Keras
    BatchNormalization from a PyTorch BatchNorm1d's keys; the keys read but
    not placed."""
    pairs = [(layer.gamma, sd[f"{prefix}.weight"], f"{prefix}.weight"),
             (layer.beta, sd[f"{prefix}.bias"], f"{prefix}.bias")]
    if gradients:
        return pairs, []
    pairs += [(layer.moving_mean, sd[f"{prefix}.running_mean"], f"{prefix}.running_mean"),
              (layer.moving_variance, sd[f"{prefix}.running_var"], f"{prefix}.running_var")]
    return pairs, [f"{prefix}.num_batches_tracked"]


def _num_lstm_layers(sd, prefix):
    return len({k for k in sd if k.startswith(f"{prefix}.weight_ih_l")})


def ef_lstm_config_from_mmsa(params):
    """`EFLSTM` arguments from MMSA's `ef_lstm` config (commonParams merged
    with one datasetParams entry)."""
    missing = [k for k in ("hidden_dims", "num_layers", "dropout") if k not in params]
    if missing:
        raise CheckpointMismatchError(f"the MMSA EF_LSTM config has no {', '.join(missing)} (it holds "
                                      f"{sorted(params)}); pass ef_lstm's commonParams and datasetParams.")
    hidden = int(params["hidden_dims"])
    return {"hidden_dim": hidden, "head_dim": hidden, "num_layers": int(params["num_layers"]),
            "dropout": float(params["dropout"]), **_MMSA_OPTIONS}


def check_ef_lstm_state_dict(params, state_dict):
    """Checks that an MMSA EF_LSTM `state_dict` fits the config `params`
    (MMSA's, or `EFLSTM` arguments); returns the `EFLSTM` arguments."""
    config = ef_lstm_config_from_mmsa(params) if "hidden_dims" in params else dict(params)
    if "lstm.weight_hh_l0" not in state_dict or "norm.running_mean" not in state_dict:
        raise CheckpointMismatchError("the checkpoint has no 'lstm.weight_hh_l0'/'norm.running_mean': it is not "
                                      "an MMSA EF_LSTM state dict.")
    hidden = int(state_dict["lstm.weight_hh_l0"].shape[1])
    layers = _num_lstm_layers(state_dict, "lstm")
    want = (int(config.get("hidden_dim", 64)), int(config.get("num_layers", 1)))
    if (hidden, layers) != want:
        raise CheckpointMismatchError(
            f"the checkpoint's LSTM has width {hidden} and {layers} layers ('lstm.weight_hh_l*') but the config "
            f"gives width {want[0]} and {want[1]} layers: the config is not the one this checkpoint was trained "
            f"with (another dataset?).")
    return config


def ef_lstm_weight_pairs(model, state_dict, gradients=False):
    """`(pairs, consumed)` for a built mmsa-style `EFLSTM` from an MMSA
    EF_LSTM state dict (or its gradients, `gradients=True`: no running
    statistics, and the LSTM bias gradient taken once)."""
    sd = state_dict if isinstance(state_dict, StateDict) else StateDict(
        {k: np.asarray(v) for k, v in state_dict.items()})
    if not model.time_batchnorm or model.head_style != "mmsa":
        raise CheckpointMismatchError("an MMSA EF_LSTM needs EFLSTM(time_batchnorm=True, head='mmsa') (the "
                                      "mmsa_* presets).")
    pairs, consumed = batchnorm_weight_pairs("norm", model.norm, sd, gradients)
    for k, lstm in enumerate([model.lstm, *model.stacked_lstms]):
        p, c = lstm_weight_pairs("lstm", k, lstm, sd, gradients)
        pairs += p
        consumed += c
    pairs += _dense("linear", model.hidden, sd)
    pairs += _dense("out", model.head, sd)
    return pairs, consumed


def load_mmsa_ef_lstm_weights(model, state_dict):
    """Fills a built mmsa-style `EFLSTM` from an MMSA EF_LSTM `state_dict`."""
    if not model.built:
        raise CheckpointMismatchError("load_mmsa_ef_lstm_weights: build the EFLSTM first (call it on a batch).")
    sd = StateDict({k: np.asarray(v) for k, v in state_dict.items()})
    pairs, consumed = ef_lstm_weight_pairs(model, sd)
    variables = [*model.trainable_weights, model.norm.moving_mean, model.norm.moving_variance]
    assign_pairs(pairs, sd, variables, "EFLSTM", consumed=consumed)
    return model


def ef_lstm_from_mmsa(state_dict, params):
    """A built `keras_msa.models.EFLSTM` holding the weights of an MMSA EF_LSTM.

    Args:
        state_dict: MMSA parameter names -> arrays.
        params: MMSA's `ef_lstm` config the checkpoint was trained with, or
            `EFLSTM` arguments (an `EFLSTM.presets["mmsa_*"]` entry). Its
            `feature_dims` ([text, audio, vision], as MMSA's args), when
            given, set the input widths the model is built on; the LSTM only
            sees their sum, which the checkpoint fixes.
    """
    from keras_msa.models.eflstm import EFLSTM

    sd = StateDict({k: np.asarray(v) for k, v in state_dict.items()})
    config = check_ef_lstm_state_dict(params, sd)
    total = int(sd["lstm.weight_ih_l0"].shape[1])
    steps = int(sd["norm.running_mean"].shape[0])
    dims = params.get("feature_dims")
    if dims is None:
        if total < 3:
            raise CheckpointMismatchError(f"'lstm.weight_ih_l0' reads {total} features; three modalities need 3.")
        dims = [total - 2, 1, 1]
    if sum(int(d) for d in dims) != total:
        raise CheckpointMismatchError(f"feature_dims {list(dims)} sum to {sum(dims)} but the checkpoint's "
                                      f"'lstm.weight_ih_l0' reads {total} features.")
    model = EFLSTM(**{k: v for k, v in config.items() if k != "feature_dims"})
    model({m: np.zeros((1, steps, int(d)), "float32") for m, d in zip(MODALITIES, dims)})
    return load_mmsa_ef_lstm_weights(model, sd)
