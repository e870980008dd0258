"""MMSA's MulT (`MMSA/models/singleTask/MULT.py`) -> `keras_msa.models.MulT`.

One converter per architecture, as keras-hub's `utils/transformers/convert_*`:
the MMSA config becomes `MulT` arguments (`mult_config_from_mmsa`), and the
PyTorch `state_dict` (MMSA parameter names -> arrays) fills the Keras
weights (`load_mmsa_mult_weights`). Every state-dict entry must land on one
Keras weight of the same size and every Keras weight must be filled; a
mismatch is an error that names the key.

Layout notes (PyTorch -> Keras):

- `proj_<m>.weight` `[d, D_m, k]` (Conv1d, out/in/kernel) -> Conv1D kernel
  `[k, D_m, d]`.
- `*.self_attn.in_proj_weight` `[3E, E]` holds W_q, W_k, W_v stacked (rows
  are outputs); head h owns output columns h*E/H..(h+1)*E/H, so W_q^T
  reshaped to `[E, H, E/H]` is the EinsumDense kernel. `out_proj.weight`
  `[E, E]` -> `[H, E/H, E]`.
- `nn.Linear.weight` `[out, in]` -> Dense kernel `[in, out]`.
- `layer_norms.0` / `layer_norms.1` / `layer_norm`: the attention, FFN and
  final LayerNorms (weight -> gamma, bias -> beta).
- `*.version` and `*.embed_positions._float_tensor` are buffers without
  meaning for the computation and are skipped.
"""

import numpy as np

from keras_msa.models.base import MODALITIES

LETTERS = {"text": "l", "audio": "a", "vision": "v"}
_SKIPPED_SUFFIXES = (".version", "._float_tensor")


class CheckpointMismatchError(ValueError):
    """A state dict that does not fit the model built from its config."""


def mult_config_from_mmsa(params, state_dict=None):
    """`MulT` arguments from an MMSA MulT config dict (`config_regression.json`'s
    `mult.commonParams` merged with one `datasetParams` entry).

    `state_dict`, when given, checks the widths and kernel sizes it implies
    (the config could belong to another dataset).
    """
    missing = [k for k in ("dst_feature_dim_nheads", "nlevels", "conv1d_kernel_size_l",
                           "conv1d_kernel_size_a", "conv1d_kernel_size_v") if k not in params]
    if missing:
        raise CheckpointMismatchError(f"the MMSA MulT config has no {', '.join(missing)} (it holds "
                                      f"{sorted(params)}); pass mult's commonParams and datasetParams.")
    if params.get("use_bert"):
        raise CheckpointMismatchError("the MMSA config sets use_bert=true (MulT fine-tuning BERT inside): "
                                      "only MulT on precomputed text features (use_bert=false, MMSA's "
                                      "default) is converted.")
    hidden, heads = params["dst_feature_dim_nheads"]
    config = {
        "hidden_dim": int(hidden),
        "num_heads": int(heads),
        "num_layers": int(params["nlevels"]),
        "memory_layers": max(int(params["nlevels"]), 3),
        "conv_kernel_sizes": {m: int(params[f"conv1d_kernel_size_{LETTERS[m]}"]) for m in MODALITIES},
        "attention_dropout": {"text": float(params.get("attn_dropout", 0.0)),
                              "audio": float(params.get("attn_dropout_a", 0.0)),
                              "vision": float(params.get("attn_dropout_v", 0.0))},
        "relu_dropout": float(params.get("relu_dropout", 0.0)),
        "residual_dropout": float(params.get("res_dropout", 0.0)),
        "embed_dropout": float(params.get("embed_dropout", 0.0)),
        "output_dropout": float(params.get("output_dropout", 0.0)),
        "text_dropout": float(params.get("text_dropout", 0.0)),
        "causal": bool(params.get("attn_mask", True)),
        "positional_embedding": False,
        "task_loss": "mae",
    }
    if state_dict is not None:
        check_mult_state_dict(config, state_dict, params)
    return config


def check_mult_state_dict(config, state_dict, params=None):
    """Checks that `state_dict` (an MMSA MulT's) fits `MulT(**config)`: the
    width, Conv1D kernels and layer counts it implies. `params` (the MMSA
    config) only sharpens the messages."""
    nlevels = (params or {}).get("nlevels", config.get("num_layers"))
    hidden = int(config.get("hidden_dim", 50))
    kernels = config.get("conv_kernel_sizes", 5)
    kernels = kernels if isinstance(kernels, dict) else {m: kernels for m in MODALITIES}
    num_layers = int(config.get("num_layers", 4))
    memory_layers = config.get("memory_layers")
    memory_layers = max(num_layers, 3) if memory_layers is None else int(memory_layers)
    for m in MODALITIES:
        key = f"proj_{LETTERS[m]}.weight"
        if key not in state_dict:
            raise CheckpointMismatchError(f"the checkpoint has no '{key}': it is not an MMSA MulT state dict.")
        shape = tuple(state_dict[key].shape)
        want = (hidden, int(kernels[m]))
        if len(shape) != 3 or (shape[0], shape[2]) != want:
            raise CheckpointMismatchError(
                f"'{key}' has shape {shape} but the config gives width {want[0]} and kernel {want[1]} "
                f"(expected [{want[0]}, D_{m}, {want[1]}]): the config is not the one this checkpoint was "
                f"trained with (another dataset?).")
    for name, want in (("trans_l_with_a", num_layers), ("trans_l_mem", memory_layers)):
        found = {k.split(".")[2] for k in state_dict if k.startswith(f"{name}.layers.")}
        if len(found) != want:
            raise CheckpointMismatchError(
                f"the checkpoint's '{name}' has {len(found)} layers ({name}.layers.0..) but the config's "
                f"nlevels={nlevels} gives {want}: the config is not the one this checkpoint was trained with.")


def feature_dims_from_state_dict(state_dict):
    """The input width of each modality, from the Conv1d projections
    (MMSA creates them even when unused)."""
    return {m: int(state_dict[f"proj_{LETTERS[m]}.weight"].shape[1]) for m in MODALITIES}


def torch_attention_pairs(prefix, projections, num_heads, sd):
    """Pairs for a PyTorch `nn.MultiheadAttention` under `prefix` (its packed
    `in_proj_weight` / `in_proj_bias` and `out_proj`) onto the four Keras
    `EinsumDense`-style projections `(query, key, value, output)` of an
    attention with `num_heads` heads."""
    w = sd[f"{prefix}.in_proj_weight"]
    b = sd[f"{prefix}.in_proj_bias"]
    dim = w.shape[1]
    heads = num_heads
    if w.shape != (3 * dim, dim) or dim % heads:
        raise CheckpointMismatchError(f"'{prefix}.in_proj_weight' has shape {w.shape}; expected "
                                      f"[3E, E] with E divisible by {heads} heads.")
    *qkv, output = projections
    pairs = []
    for i, proj in enumerate(qkv):
        rows = slice(i * dim, (i + 1) * dim)
        pairs.append((proj.kernel, w[rows].T.reshape(dim, heads, dim // heads), f"{prefix}.in_proj_weight"))
        pairs.append((proj.bias, b[rows].reshape(heads, dim // heads), f"{prefix}.in_proj_bias"))
    out_w = sd[f"{prefix}.out_proj.weight"]
    pairs.append((output.kernel, out_w.T.reshape(heads, dim // heads, out_w.shape[0]),
                  f"{prefix}.out_proj.weight"))
    pairs.append((output.bias, sd[f"{prefix}.out_proj.bias"], f"{prefix}.out_proj.bias"))
    return pairs


def _attention(prefix, attention, sd):
    return torch_attention_pairs(
        prefix, (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj), attention.num_heads, sd)


def _dense(prefix, layer, sd):
    return [(layer.kernel, sd[f"{prefix}.weight"].T, f"{prefix}.weight"),
            (layer.bias, sd[f"{prefix}.bias"], f"{prefix}.bias")]


def _norm(prefix, layer, sd):
    return [(layer.gamma, sd[f"{prefix}.weight"], f"{prefix}.weight"),
            (layer.beta, sd[f"{prefix}.bias"], f"{prefix}.bias")]


def transformer_weight_pairs(prefix, layer, sd):
    """`(keras variable, array, state-dict key)` for one MMSA
    `TransformerEncoder` (keys under `prefix`) and a built
    `CrossModalTransformer`."""
    pairs = []
    for i in range(layer.num_layers):
        p = f"{prefix}.layers.{i}"
        pairs += _norm(f"{p}.layer_norms.0", layer.attention_norms[i], sd)
        pairs += _attention(f"{p}.self_attn", layer.attentions[i], sd)
        pairs += _norm(f"{p}.layer_norms.1", layer.ffn_norms[i], sd)
        pairs += _dense(f"{p}.fc1", layer.ffn_in[i], sd)
        pairs += _dense(f"{p}.fc2", layer.ffn_out[i], sd)
    pairs += _norm(f"{prefix}.layer_norm", layer.final_norm, sd)
    return pairs


def assign_pairs(pairs, state_dict, variables, what, consumed=()):
    """Assigns every pair after checking shapes, and that the pairs (with the
    keys in `consumed`, read and left aside) use every state-dict key but
    the skipped buffers, and fill every variable."""
    for var, value, key in pairs:
        value = np.asarray(value, dtype="float32")
        if tuple(var.shape) != value.shape:
            raise CheckpointMismatchError(f"'{key}' gives shape {value.shape} for the Keras weight "
                                          f"'{var.path}' of shape {tuple(var.shape)} ({what}).")
    used = {key for _, _, key in pairs} | set(consumed)
    unused = sorted(k for k in state_dict if k not in used and not k.endswith(_SKIPPED_SUFFIXES))
    if unused:
        raise CheckpointMismatchError(f"{len(unused)} state-dict entries have no place in the {what} "
                                      f"(first: {', '.join(unused[:5])}); the checkpoint was trained with "
                                      f"other settings (nlevels? targets?).")
    filled = {id(var) for var, _, _ in pairs}
    empty = [v.path for v in variables if id(v) not in filled]
    if empty:
        raise CheckpointMismatchError(f"the checkpoint fills no value for {len(empty)} Keras weights of the "
                                      f"{what} (first: {', '.join(empty[:5])}).")
    for var, value, _ in pairs:
        var.assign(np.asarray(value, dtype="float32"))


class StateDict(dict):
    """A state dict (name -> numpy array) whose missing keys raise
    `CheckpointMismatchError` naming the key."""

    def __missing__(self, key):
        raise CheckpointMismatchError(f"the checkpoint has no '{key}' (the MMSA model built from this config "
                                      f"has it); it holds {len(self)} entries, e.g. "
                                      f"{', '.join(sorted(self)[:5])}.")


def mult_weight_pairs(model, state_dict):
    """`(pairs, consumed)`: `(keras variable, array, key)` for every weight of
    a built `MulT`, taken from an MMSA MulT `state_dict` (or from anything
    keyed and shaped like one, such as its gradients), and the keys read but
    not needed (MMSA's unused projections)."""
    sd = state_dict if isinstance(state_dict, StateDict) else StateDict(
        {k: np.asarray(v) for k, v in state_dict.items()})
    pairs, consumed = [], []
    for m in MODALITIES:
        layer = model.projections[m]
        key = f"proj_{LETTERS[m]}.weight"
        if layer.built:
            pairs.append((layer.kernel, sd[key].transpose(2, 1, 0), key))
        else:
            # MMSA keeps an unused projection when the width already is d.
            consumed.append(key)
    for (target, source), layer in model.crossmodal.items():
        pairs += transformer_weight_pairs(f"trans_{LETTERS[target]}_with_{LETTERS[source]}", layer, sd)
    for target, layer in model.memory.items():
        pairs += transformer_weight_pairs(f"trans_{LETTERS[target]}_mem", layer, sd)
    pairs += _dense("proj1", model.head_in, sd)
    pairs += _dense("proj2", model.head_out, sd)
    pairs += _dense("out_layer", model.sentiment_head, sd)
    return pairs, consumed


def load_mmsa_mult_weights(model, state_dict):
    """Fills a built `keras_msa.models.MulT` from an MMSA MulT `state_dict`
    (a mapping of MMSA's parameter names to arrays)."""
    if not model.built:
        raise CheckpointMismatchError("load_mmsa_mult_weights: build the MulT first (call it on a batch).")
    sd = StateDict({k: np.asarray(v) for k, v in state_dict.items()})
    pairs, consumed = mult_weight_pairs(model, sd)
    assign_pairs(pairs, sd, model.trainable_weights, "MulT", consumed=consumed)
    return model


def mult_from_mmsa(state_dict, params):
    """A built `keras_msa.models.MulT` holding the weights of an MMSA MulT.

    Args:
        state_dict: MMSA parameter names -> arrays (`load_torch_checkpoint`
            of the `.pth` MMSA's trainer saved, or any mapping of numpy arrays).
        params: the MMSA MulT config the checkpoint was trained with (see
            `mult_config_from_mmsa`), or `MulT` constructor arguments (a
            `MulT.presets` entry).
    """
    from keras_msa.models.mult import MulT

    sd = StateDict({k: np.asarray(v) for k, v in state_dict.items()})
    if "dst_feature_dim_nheads" in params:
        config = mult_config_from_mmsa(params, sd)
    else:
        config = dict(params)
        check_mult_state_dict(config, sd)
    model = MulT(**config)
    dims = feature_dims_from_state_dict(sd)
    # Two steps after the widest Conv1D: attention over one step is a
    # softmax of size 1, which Keras warns about.
    steps = max(model.conv_kernel_sizes.values()) + 1
    model({m: np.zeros((1, steps, dims[m]), "float32") for m in MODALITIES})
    return load_mmsa_mult_weights(model, sd)
