"""Hugging Face `transformers` BERT weights -> a keras-hub `BertBackbone`.

MMSA's text-backbone models (MISA, Self-MM, MAG-BERT, MMIM) hold a
`transformers.BertModel` under a prefix of their state dict (e.g.
`text_model.model.` for MMSA's `BertTextEncoder`). These helpers read that
part of a state dict (name -> numpy array, torch's `[out, in]` Linear
layout) and give the `(keras variable, array, key)` pairs that
`keras_msa.convert.mmsa_mult.assign_pairs` checks and assigns, so a model
converter lists the BERT pairs beside its own.

    pairs = bert_weight_pairs(text_backbone.backbone, state_dict, "text_model.model.")

The mapping is keras-hub's own layout (`BertBackbone`: `token_embedding`,
`position_embedding`, `segment_embedding`, `embeddings_layer_norm`,
`transformer_layer_<i>`, `pooled_dense`); both LayerNorm namings
(`gamma/beta` of old TF-converted checkpoints, `weight/bias`) are read.
"""

import numpy as np

from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_mult import StateDict


def _layer_norm_names(sd, prefix):
    if f"{prefix}embeddings.LayerNorm.gamma" in sd:
        return "gamma", "beta"
    return "weight", "bias"


def bert_config_from_state_dict(state_dict, prefix="", num_heads=None):
    """`keras_hub.models.BertBackbone` arguments read off the shapes of a
    transformers BERT state dict (`num_heads` is not in the shapes: pass it,
    or the transformers config's `num_attention_heads`)."""
    sd = state_dict
    key = f"{prefix}embeddings.word_embeddings.weight"
    if key not in sd:
        raise CheckpointMismatchError(f"no '{key}': the state dict holds no BERT under prefix '{prefix}'.")
    vocab, hidden = np.shape(sd[key])
    layers = 0
    while f"{prefix}encoder.layer.{layers}.attention.self.query.weight" in sd:
        layers += 1
    if num_heads is None:
        raise CheckpointMismatchError("the number of attention heads is not in a BERT state dict: pass num_heads.")
    return {
        "vocabulary_size": int(vocab),
        "num_layers": layers,
        "num_heads": int(num_heads),
        "hidden_dim": int(hidden),
        "intermediate_dim": int(np.shape(sd[f"{prefix}encoder.layer.0.intermediate.dense.weight"])[0]),
        "max_sequence_length": int(np.shape(sd[f"{prefix}embeddings.position_embeddings.weight"])[0]),
        "num_segments": int(np.shape(sd[f"{prefix}embeddings.token_type_embeddings.weight"])[0]),
    }


def bert_weight_pairs(backbone, state_dict, prefix="", gradients=False):
    """`(keras variable, array, key)` for every weight of a keras-hub
    `BertBackbone` from a transformers `BertModel` state dict whose keys
    start with `prefix`. `gradients=True` maps a dict of gradients keyed the
    same way (every map here is a transpose or reshape, so it is the same).
    A missing key raises `CheckpointMismatchError` naming it."""
    del gradients  # Linear maps only: gradients map like weights.
    sd = state_dict if isinstance(state_dict, StateDict) else StateDict(
        {k: np.asarray(v) for k, v in state_dict.items()})
    g, b = _layer_norm_names(sd, prefix)
    pairs = []

    def add(var, key, fn=None):
        value = sd[prefix + key]
        pairs.append((var, value if fn is None else fn(value, tuple(var.shape)), prefix + key))

    def heads(value, shape):
        # torch Linear [out, in] -> EinsumDense [in, heads, head_dim]
        return np.reshape(np.transpose(value), shape)

    def out_heads(value, shape):
        # torch Linear [d, heads * head_dim] -> [heads, head_dim, d]
        return np.reshape(np.transpose(value), shape)

    def reshape(value, shape):
        return np.reshape(value, shape)

    def transpose(value, shape):
        return np.transpose(value)

    add(backbone.get_layer("token_embedding").embeddings, "embeddings.word_embeddings.weight")
    add(backbone.get_layer("position_embedding").position_embeddings, "embeddings.position_embeddings.weight")
    add(backbone.get_layer("segment_embedding").embeddings, "embeddings.token_type_embeddings.weight")
    norm = backbone.get_layer("embeddings_layer_norm")
    add(norm.gamma, f"embeddings.LayerNorm.{g}")
    add(norm.beta, f"embeddings.LayerNorm.{b}")
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        attn = block._self_attention_layer
        p = f"encoder.layer.{i}."
        for name, dense in (("query", attn.query_dense), ("key", attn.key_dense), ("value", attn.value_dense)):
            add(dense.kernel, f"{p}attention.self.{name}.weight", heads)
            add(dense.bias, f"{p}attention.self.{name}.bias", reshape)
        add(attn.output_dense.kernel, f"{p}attention.output.dense.weight", out_heads)
        add(attn.output_dense.bias, f"{p}attention.output.dense.bias", reshape)
        add(block._self_attention_layer_norm.gamma, f"{p}attention.output.LayerNorm.{g}")
        add(block._self_attention_layer_norm.beta, f"{p}attention.output.LayerNorm.{b}")
        add(block._feedforward_intermediate_dense.kernel, f"{p}intermediate.dense.weight", transpose)
        add(block._feedforward_intermediate_dense.bias, f"{p}intermediate.dense.bias")
        add(block._feedforward_output_dense.kernel, f"{p}output.dense.weight", transpose)
        add(block._feedforward_output_dense.bias, f"{p}output.dense.bias")
        add(block._feedforward_layer_norm.gamma, f"{p}output.LayerNorm.{g}")
        add(block._feedforward_layer_norm.beta, f"{p}output.LayerNorm.{b}")
    pooled = backbone.get_layer("pooled_dense")
    if f"{prefix}pooler.dense.weight" in sd:
        add(pooled.kernel, "pooler.dense.weight", transpose)
        add(pooled.bias, "pooler.dense.bias")
    return pairs


def bert_consumed_keys(state_dict, prefix=""):
    """BERT keys a converter may read and leave aside (`position_ids`, and
    the pooler when the keras model does not use it)."""
    return [k for k in state_dict if k.startswith(prefix) and k.endswith("position_ids")]
