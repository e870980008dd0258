"""MMSA's LMF (`MMSA/models/singleTask/LMF.py`) -> `keras_msa.models.LMF`.

The sub-networks map as TFN's (`mmsa_tfn`). The factors `audio_factor`,
`video_factor`, `text_factor` `[r, d + 1, 1]` are `LowRankFusion`'s
factors for (audio, vision, text), stored divided by the model's
`factor_lr_scale` (MMSA's `factor_lr / learning_rate`, see `LowRankFusion`);
`fusion_weights` `[1, r]` and `fusion_bias` `[1, 1]` as they are.
"""

from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_mult import assign_pairs
from keras_msa.convert.mmsa_tfn import _state
from keras_msa.convert.mmsa_tfn import build_on_state_dict
from keras_msa.convert.mmsa_tfn import check_subnets
from keras_msa.convert.mmsa_tfn import hidden_dims_from_mmsa
from keras_msa.convert.mmsa_tfn import model_variables
from keras_msa.convert.mmsa_tfn import subnet_weight_pairs

FACTORS = {"audio": "audio_factor", "vision": "video_factor", "text": "text_factor"}


def lmf_config_from_mmsa(params, state_dict=None):
    """`LMF` arguments from an MMSA LMF config; `state_dict` checks the sizes."""
    hidden, dropouts, _ = hidden_dims_from_mmsa(params, "LMF")
    if "rank" not in params:
        raise CheckpointMismatchError(f"the MMSA LMF config has no 'rank' (it holds {sorted(params)}).")
    config = {"hidden_dims": hidden, "rank": int(params["rank"]), "dropouts": dropouts, "task_loss": "mae"}
    if "factor_lr" in params and "learning_rate" in params:
        config["factor_lr_scale"] = float(params["factor_lr"]) / float(params["learning_rate"])
    if state_dict is not None:
        check_lmf_state_dict(config, state_dict)
    return config


def check_lmf_state_dict(config, state_dict):
    sd = _state(state_dict)
    if "text_factor" not in sd:
        raise CheckpointMismatchError("the checkpoint has no 'text_factor': it is not an MMSA LMF state dict.")
    check_subnets({**config, "text_out": config.get("text_out") or config["hidden_dims"]["text"] // 2}, sd, "LMF")
    got = sd["text_factor"].shape[0]
    if got != config.get("rank", 3):
        raise CheckpointMismatchError(f"'text_factor' has rank {got} but the config gives rank = "
                                      f"{config.get('rank', 3)} (LMF).")


def lmf_weight_pairs(model, state_dict, gradients=False):
    """`(pairs, consumed)` for every weight of a built `LMF` (from MMSA's
    gradients with `gradients=True`: the stored factor V = W / s has the
    gradient s dL/dW)."""
    sd = _state(state_dict)
    pairs, consumed = subnet_weight_pairs(model, sd, gradients)
    s = model.fusion.factor_scale
    for m, factor in zip(model.modalities, model.fusion.factors):
        pairs.append((factor, sd[FACTORS[m]] * s if gradients else sd[FACTORS[m]] / s, FACTORS[m]))
    pairs += [(model.fusion.fusion_weights, sd["fusion_weights"], "fusion_weights"),
              (model.fusion.fusion_bias, sd["fusion_bias"], "fusion_bias")]
    return pairs, consumed


def lmf_from_mmsa(state_dict, params):
    """A built `keras_msa.models.LMF` holding the weights of an MMSA LMF
    (`params`: MMSA's LMF config or `LMF` constructor arguments)."""
    from keras_msa.models.lmf import LMF

    sd = _state(state_dict)
    config = lmf_config_from_mmsa(params, sd) if isinstance(params.get("hidden_dims"), (list, tuple)) else dict(params)
    check_lmf_state_dict(config, sd)
    model = build_on_state_dict(LMF(**config), sd)
    pairs, consumed = lmf_weight_pairs(model, sd)
    assign_pairs(pairs, sd, model_variables(model), "LMF", consumed=consumed)
    return model
