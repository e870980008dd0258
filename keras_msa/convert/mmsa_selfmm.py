"""MMSA's SELF_MM (`MMSA/models/multiTask/SELF_MM.py`) -> `keras_msa.models.SelfMM`.

Layout notes (PyTorch -> Keras):

- `text_model.model.*` (a transformers `BertModel` inside MMSA's
  `BertTextEncoder`) -> the keras-hub `BertBackbone` of the model's
  `TextBackbone`, through `keras_msa.convert.hf_bert` (the pooler is
  loaded too, though Self-MM never reads it). The number of attention
  heads is not in a state dict: it comes from the config's `num_heads` (or
  `num_attention_heads`), else BERT's width / 64.
- `audio_model.rnn`, `video_model.rnn` (one-layer `nn.LSTM`) -> the
  `audio_lstm` / `vision_lstm` Keras LSTMs (gates i, f, g, o in both; the
  two PyTorch biases add up to the one Keras bias); `*_model.linear_1` ->
  `*_subnet_dense`. MMSA's `video` is vision.
- `post_<m>_layer_<k>` -> `post_<m>_<k>` Dense layers (`video` -> vision),
  `nn.Linear.weight` `[out, in]` -> kernel `[in, out]`.

A state dict holds no vocabulary: the model takes token ids
(`text_token_ids`, `text_padding_mask`, `text_segment_ids`, MMSA's
`text_bert` rows) unless `vocabulary` (the pretrained model's `vocab.txt`)
is given, which adds the in-graph tokenizer for raw sentences.
"""

import numpy as np

from keras_msa.convert.hf_bert import bert_config_from_state_dict
from keras_msa.convert.hf_bert import bert_consumed_keys
from keras_msa.convert.hf_bert import bert_weight_pairs
from keras_msa.convert.mmsa_ef_lstm import lstm_weight_pairs
from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_mult import StateDict
from keras_msa.convert.mmsa_mult import _dense
from keras_msa.convert.mmsa_mult import assign_pairs

BERT_PREFIX = "text_model.model."
_SUBNETS = {"audio": "audio_model", "vision": "video_model"}
_HEADS = {"fusion": "post_fusion_layer", "text": "post_text_layer", "audio": "post_audio_layer",
          "vision": "post_video_layer"}
#: MMSA config key -> SelfMM argument.
_ARGS = {"a_lstm_hidden_size": "audio_lstm_dim", "v_lstm_hidden_size": "vision_lstm_dim", "audio_out": "audio_out",
         "video_out": "vision_out", "post_fusion_dim": "fusion_dim", "post_text_dim": "text_dim",
         "post_audio_dim": "audio_dim", "post_video_dim": "vision_dim", "post_fusion_dropout": "fusion_dropout",
         "post_text_dropout": "text_dropout", "post_audio_dropout": "audio_dropout",
         "post_video_dropout": "vision_dropout", "H": "label_bound", "excludeZero": "exclude_zero",
         "a_lstm_dropout": "subnet_dropout"}


def _state(state_dict):
    return state_dict if isinstance(state_dict, StateDict) else StateDict(
        {k: np.asarray(v) for k, v in state_dict.items()})


def selfmm_config_from_mmsa(params, state_dict=None):
    """`SelfMM` arguments from MMSA's `self_mm` config (commonParams merged
    with one datasetParams entry), or from `SelfMM` arguments (a preset);
    `state_dict` checks the sizes."""
    if "post_fusion_dim" in params:
        missing = [k for k in _ARGS if k not in params and k != "excludeZero"]
        if missing:
            raise CheckpointMismatchError(f"the MMSA SELF_MM config has no {', '.join(missing)} (it holds "
                                          f"{sorted(params)}); pass self_mm's commonParams and datasetParams.")
        config = {ours: params[theirs] for theirs, ours in _ARGS.items() if theirs in params}
        if int(params.get("a_lstm_layers", 1)) != 1 or int(params.get("v_lstm_layers", 1)) != 1:
            raise CheckpointMismatchError("MMSA's SELF_MM reads the final state of a one-layer LSTM only "
                                          "(a/v_lstm_layers = 1); the config asks for more.")
    else:
        known = {"audio_lstm_dim", "vision_lstm_dim", "audio_out", "vision_out", "fusion_dim", "text_dim",
                 "audio_dim", "vision_dim", "fusion_dropout", "text_dropout", "audio_dropout", "vision_dropout",
                 "label_bound", "exclude_zero", "subnet_dropout", "use_unimodal"}
        config = {k: v for k, v in params.items() if k in known}
    config["task_loss"] = "mae"
    if state_dict is not None:
        check_selfmm_state_dict(config, state_dict)
    for key in ("num_heads", "num_attention_heads"):
        if key in params:
            config["_num_heads"] = int(params[key])
    return config


def check_selfmm_state_dict(config, state_dict):
    """Sizes the state dict implies against `config` (`SelfMM` arguments)."""
    sd = _state(state_dict)
    if "post_fusion_layer_1.weight" not in sd or "audio_model.rnn.weight_hh_l0" not in sd:
        raise CheckpointMismatchError("the checkpoint has no 'post_fusion_layer_1.weight'/'audio_model.rnn."
                                      "weight_hh_l0': it is not an MMSA SELF_MM state dict.")
    if f"{BERT_PREFIX}embeddings.word_embeddings.weight" not in sd:
        raise CheckpointMismatchError(f"the checkpoint holds no BERT under '{BERT_PREFIX}' (MMSA's "
                                      f"BertTextEncoder): it is not an MMSA SELF_MM state dict.")
    checks = [("audio_model.rnn.weight_hh_l0", 1, "audio_lstm_dim", 16),
              ("video_model.rnn.weight_hh_l0", 1, "vision_lstm_dim", 32),
              ("audio_model.linear_1.weight", 0, "audio_out", 16),
              ("video_model.linear_1.weight", 0, "vision_out", 32)]
    checks += [(f"{prefix}_1.weight", 0, f"{m}_dim", default)
               for (m, prefix), default in zip(_HEADS.items(), (128, 32, 16, 32))]
    for key, axis, arg, default in checks:
        got, want = int(sd[key].shape[axis]), int(config.get(arg, default))
        if got != want:
            raise CheckpointMismatchError(f"'{key}' has size {got} but the config gives {arg} = {want}: the "
                                          f"config is not the one this SELF_MM checkpoint was trained with.")
    return config


def selfmm_weight_pairs(model, state_dict, gradients=False):
    """`(pairs, consumed)` for every weight of a built `SelfMM` (the ULGM
    memory and the epoch counter aside) from an MMSA SELF_MM state dict, or
    its gradients with `gradients=True`."""
    sd = _state(state_dict)
    pairs = list(bert_weight_pairs(model.text_backbone.backbone, sd, BERT_PREFIX))
    consumed = bert_consumed_keys(sd, BERT_PREFIX)
    for m, prefix in _SUBNETS.items():
        lstm_pairs, folded = lstm_weight_pairs(f"{prefix}.rnn", 0, model.lstms[m], sd, gradients=gradients)
        pairs += lstm_pairs
        consumed += folded
        pairs += _dense(f"{prefix}.linear_1", model.subnet_dense[m], sd)
    for m, prefix in _HEADS.items():
        for k, layer in enumerate(model.heads[m], start=1):
            pairs += _dense(f"{prefix}_{k}", layer, sd)
    return pairs, consumed


def _text_backbone(sd, num_heads, sequence_length, vocabulary):
    import keras_hub

    from keras_msa.layers.text_backbone import TextBackbone

    hidden = int(sd[f"{BERT_PREFIX}embeddings.word_embeddings.weight"].shape[1])
    if num_heads is None:
        if hidden % 64:
            raise CheckpointMismatchError(f"the BERT of the checkpoint is {hidden} wide, not a multiple of 64: "
                                          f"pass its number of attention heads as 'num_heads' in the config.")
        num_heads = hidden // 64
    config = bert_config_from_state_dict(sd, BERT_PREFIX, num_heads=num_heads)
    backbone = keras_hub.models.BertBackbone(**config, dropout=0.1)
    preprocessor = None
    if vocabulary is not None:
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=min(sequence_length, config["max_sequence_length"]))
    return TextBackbone(backbone, preprocessor, fine_tune=True)


def selfmm_from_mmsa(state_dict, params, vocabulary=None, sequence_length=50):
    """A built `keras_msa.models.SelfMM` holding the weights of an MMSA
    SELF_MM (no ULGM memory: it predicts; pass `train_samples` by building
    a `SelfMM` from its config to train further).

    Args:
        state_dict: MMSA parameter names -> arrays.
        params: the MMSA self_mm config (see `selfmm_config_from_mmsa`) or
            `SelfMM` arguments (a `SelfMM.presets` entry).
        vocabulary: optional `vocab.txt` path (or token list) of the BERT,
            for raw-sentence input.
        sequence_length: tokens per sentence for that tokenizer.
    """
    from keras_msa.models.selfmm import SelfMM

    sd = _state(state_dict)
    config = selfmm_config_from_mmsa(params, sd)
    num_heads = config.pop("_num_heads", None)
    backbone = _text_backbone(sd, num_heads, int(params.get("sequence_length", sequence_length)), vocabulary)
    model = SelfMM(text_backbone=backbone, **config)
    dims = {m: int(sd[f"{p}.rnn.weight_ih_l0"].shape[1]) for m, p in _SUBNETS.items()}
    length = 4
    model({"text_token_ids": np.zeros((2, length), "int32"), "text_padding_mask": np.ones((2, length), bool),
           "text_segment_ids": np.zeros((2, length), "int32"),
           **{m: np.zeros((2, 3, d), "float32") for m, d in dims.items()}})
    pairs, consumed = selfmm_weight_pairs(model, sd)
    variables = [v for v in model.weights if v is not model.epoch]
    assign_pairs(pairs, sd, variables, "SelfMM", consumed=consumed)
    return model


def mmsa_selfmm_inputs(text, audio, audio_lengths, vision, vision_lengths):
    """A keras_msa batch from MMSA's SELF_MM inputs: `text` `[B, 3, L]`
    (ids, mask, segments), sequences with their lengths (MMSA packs them;
    here the masks say which steps are real)."""
    text = np.asarray(text)
    batch = {"text_token_ids": text[:, 0].astype("int32"), "text_padding_mask": text[:, 1] > 0,
             "text_segment_ids": text[:, 2].astype("int32")}
    for m, x, n in (("audio", audio, audio_lengths), ("vision", vision, vision_lengths)):
        x = np.asarray(x, "float32")
        batch[m] = x
        batch[f"{m}_mask"] = np.arange(x.shape[1])[None, :] < np.asarray(n).reshape(-1, 1)
    return batch
