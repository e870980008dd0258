"""MMSA's LF_DNN (`MMSA/models/singleTask/LF_DNN.py`, SubNet and TextSubNet
of `subNets/FeatureNets.py`) -> `keras_msa.models.LFDNN(style="mmsa")`.

Layout notes (PyTorch -> Keras), beyond those of `mmsa_ef_lstm`:

- `audio_subnet` / `video_subnet` (`norm`, `linear_1..3`) -> the
  `audio_subnet` / `vision_subnet` Sequential (BatchNormalization, Dropout,
  three Dense).
- `text_subnet.rnn` (one-layer `nn.LSTM`) and `text_subnet.linear_1` ->
  `text_lstm`, `text_projection`.
- `post_fusion_layer_1` reads `[audio; video; text]` (MMSA's order); keras_msa
  concatenates `[text; audio; vision]`, so its kernel's rows are reordered.
"""

import numpy as np

from keras_msa.convert.mmsa_ef_lstm import batchnorm_weight_pairs
from keras_msa.convert.mmsa_ef_lstm import lstm_weight_pairs
from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_mult import StateDict
from keras_msa.convert.mmsa_mult import _dense
from keras_msa.convert.mmsa_mult import assign_pairs

_MMSA_OPTIONS = {"style": "mmsa", "batchnorm_epsilon": 1e-5, "batchnorm_momentum": 0.9, "task_loss": "mae"}
_TORCH_SUBNET = {"audio": "audio_subnet", "vision": "video_subnet"}


def lf_dnn_config_from_mmsa(params):
    """`LFDNN` arguments from MMSA's `lf_dnn` config (commonParams merged
    with one datasetParams entry). MMSA's TextSubNet drops its dropout for a
    one-layer LSTM, so the text dropout is 0 whatever `dropouts` says."""
    missing = [k for k in ("hidden_dims", "text_out", "post_fusion_dim", "dropouts") if k not in params]
    if missing:
        raise CheckpointMismatchError(f"the MMSA LF_DNN config has no {', '.join(missing)} (it holds "
                                      f"{sorted(params)}); pass lf_dnn's commonParams and datasetParams.")
    if params.get("use_bert"):
        raise CheckpointMismatchError("the MMSA config sets use_bert=true; LF_DNN reads precomputed text features.")
    text, audio, vision = (int(h) for h in params["hidden_dims"])
    p_audio, p_vision, _, p_fusion = (float(p) for p in params["dropouts"])
    return {"hidden_dims": {"text": text, "audio": audio, "vision": vision}, "text_out": int(params["text_out"]),
            "fusion_dim": int(params["post_fusion_dim"]), "dropout": p_fusion,
            "dropouts": {"audio": p_audio, "vision": p_vision, "text": 0.0, "fusion": p_fusion}, **_MMSA_OPTIONS}


def _widths(state_dict):
    return {"text": int(state_dict["text_subnet.rnn.weight_hh_l0"].shape[1]),
            "audio": int(state_dict["audio_subnet.linear_1.weight"].shape[0]),
            "vision": int(state_dict["video_subnet.linear_1.weight"].shape[0])}


def check_lf_dnn_state_dict(params, state_dict):
    """Checks that an MMSA LF_DNN `state_dict` fits `params` (MMSA's config or
    `LFDNN` arguments); returns the `LFDNN` arguments."""
    config = lf_dnn_config_from_mmsa(params) if "post_fusion_dim" in params else dict(params)
    keys = ("text_subnet.rnn.weight_hh_l0", "audio_subnet.linear_1.weight", "video_subnet.linear_1.weight",
            "text_subnet.linear_1.weight", "post_fusion_layer_1.weight")
    absent = [k for k in keys if k not in state_dict]
    if absent:
        raise CheckpointMismatchError(f"the checkpoint has no '{absent[0]}': it is not an MMSA LF_DNN state dict.")
    found = {**_widths(state_dict), "text_out": int(state_dict["text_subnet.linear_1.weight"].shape[0]),
             "fusion_dim": int(state_dict["post_fusion_layer_1.weight"].shape[0])}
    hidden = config.get("hidden_dims") or {}
    want = {**{m: int(hidden.get(m, -1)) for m in ("text", "audio", "vision")},
            "text_out": int(config.get("text_out", 128)), "fusion_dim": int(config.get("fusion_dim", 128))}
    if found != want:
        raise CheckpointMismatchError(
            f"the checkpoint's widths {found} (from 'text_subnet.rnn.weight_hh_l0', '*_subnet.linear_1.weight', "
            f"'text_subnet.linear_1.weight', 'post_fusion_layer_1.weight') differ from the config's {want}: the "
            f"config is not the one this checkpoint was trained with (another dataset?).")
    return config


def lf_dnn_weight_pairs(model, state_dict, gradients=False):
    """`(pairs, consumed)` for a built `LFDNN(style="mmsa")` from an MMSA
    LF_DNN state dict (or its gradients, `gradients=True`)."""
    sd = state_dict if isinstance(state_dict, StateDict) else StateDict(
        {k: np.asarray(v) for k, v in state_dict.items()})
    if model.style != "mmsa" or tuple(model.modalities) != ("text", "audio", "vision"):
        raise CheckpointMismatchError("an MMSA LF_DNN needs LFDNN(style='mmsa') on text, audio and vision "
                                      "(the mmsa_* presets).")
    pairs, consumed = [], []
    for m, prefix in _TORCH_SUBNET.items():
        norm, _, dense_1, dense_2, dense_3 = model.subnets[m].layers
        p, c = batchnorm_weight_pairs(f"{prefix}.norm", norm, sd, gradients)
        pairs += p
        consumed += c
        for i, dense in enumerate((dense_1, dense_2, dense_3), start=1):
            pairs += _dense(f"{prefix}.linear_{i}", dense, sd)
    p, c = lstm_weight_pairs("text_subnet.rnn", 0, model.text_lstm, sd, gradients)
    pairs += p
    consumed += c
    pairs += _dense("text_subnet.linear_1", model.text_projection, sd)
    widths = _widths(sd)
    w = sd["post_fusion_layer_1.weight"].T
    a, v = widths["audio"], widths["vision"]
    blocks = {"audio": w[:a], "vision": w[a:a + v], "text": w[a + v:]}
    pairs.append((model.fusion.kernel, np.concatenate([blocks[m] for m in model.modalities]),
                  "post_fusion_layer_1.weight"))
    pairs.append((model.fusion.bias, sd["post_fusion_layer_1.bias"], "post_fusion_layer_1.bias"))
    pairs += _dense("post_fusion_layer_2", model.fusion_2, sd)
    pairs += _dense("post_fusion_layer_3", model.head, sd)
    return pairs, consumed


def load_mmsa_lf_dnn_weights(model, state_dict):
    """Fills a built `LFDNN(style="mmsa")` from an MMSA LF_DNN `state_dict`."""
    if not model.built:
        raise CheckpointMismatchError("load_mmsa_lf_dnn_weights: build the LFDNN first (call it on a batch).")
    sd = StateDict({k: np.asarray(v) for k, v in state_dict.items()})
    pairs, consumed = lf_dnn_weight_pairs(model, sd)
    stats = [v for m in _TORCH_SUBNET for v in (model.subnets[m].layers[0].moving_mean,
                                                 model.subnets[m].layers[0].moving_variance)]
    assign_pairs(pairs, sd, [*model.trainable_weights, *stats], "LFDNN", consumed=consumed)
    return model


def lf_dnn_from_mmsa(state_dict, params):
    """A built `keras_msa.models.LFDNN(style="mmsa")` holding the weights of
    an MMSA LF_DNN.

    Args:
        state_dict: MMSA parameter names -> arrays.
        params: MMSA's `lf_dnn` config the checkpoint was trained with, or
            `LFDNN` arguments (an `LFDNN.presets["mmsa_*"]` entry).
    """
    from keras_msa.models.lfdnn import LFDNN

    sd = StateDict({k: np.asarray(v) for k, v in state_dict.items()})
    config = check_lf_dnn_state_dict(params, sd)
    dims = {"text": int(sd["text_subnet.rnn.weight_ih_l0"].shape[1]),
            "audio": int(sd["audio_subnet.norm.weight"].shape[0]),
            "vision": int(sd["video_subnet.norm.weight"].shape[0])}
    model = LFDNN(**config)
    model({m: np.zeros((2, 2, d), "float32") for m, d in dims.items()})
    return load_mmsa_lf_dnn_weights(model, sd)
