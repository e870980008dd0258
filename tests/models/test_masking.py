"""Every registered model under real padding: variable lengths, a missing
modality, an all-padding sample, and +inf / -inf / NaN under every mask.

Real batches carry non-finite values under their masks (MMSA audio holds
-inf); `0 * inf = NaN`, so a model that masks by multiplying, or that runs
arithmetic on padded steps before discarding them, gives NaN outputs or NaN
gradients. Each model must give exactly its clean-padding outputs, finite,
and finite gradients of its whole objective (`compute_loss`), in inference
and in training mode.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.models.base import available_models
from keras_msa.models.base import get_model_class

B, T = 4, 6
DIMS = {"text": 8, "audio": 3, "vision": 4}

# Tiny configurations without dropout, so that training-mode outputs are
# deterministic and comparable.
TINY = {
    "lfdnn": dict(hidden_dims={"text": 4, "audio": 4, "vision": 4}, fusion_dim=4, dropout=0.0),
    "eflstm": dict(hidden_dim=4, head_dim=4, dropout=0.0),
    "mulg": dict(
        hidden_dim=4, num_layers=1, text_dropout=0.0, attention_dropout=0.0,
        residual_dropout=0.0, output_dropout=0.0,
    ),
    "m3sa": dict(hidden_dim=4, num_scales=3, ratio=2, num_heads=2, dropout=0.0),
    "tecafn": dict(
        hidden_dim=4, unimodal_hidden=4, num_layers=1, num_heads=2, num_hard_negatives=2,
        dropout=0.0, seed=0,
    ),
    "crosssent": dict(
        hidden_dim=8, num_layers=2, num_attention_heads=2, gmra_heads=2, adapter_dim=4,
        dropout=0.0, gmra_dropout=0.0,
    ),
    "mult": dict(
        hidden_dim=4, num_heads=2, num_layers=1, memory_layers=1,
        conv_kernel_sizes={"text": 2, "audio": 1, "vision": 1}, attention_dropout=0.0, embed_dropout=0.0,
        output_dropout=0.0, text_dropout=0.0,
    ),
    "tfn": dict(hidden_dims={"text": 4, "audio": 3, "vision": 3}, text_out=3, post_fusion_dim=4,
                dropouts={"audio": 0.0, "vision": 0.0, "post_fusion": 0.0}),
    "lmf": dict(hidden_dims={"text": 4, "audio": 3, "vision": 3}, rank=2, dropouts={"audio": 0.0, "vision": 0.0}),
    "ssgdl": dict(hidden_dim=8, num_heads=2, kernel_sizes=(3, 5), min_width=4, dropout=0.0),
    "selfmm": dict(train_samples=B, audio_lstm_dim=3, vision_lstm_dim=3, audio_out=3, vision_out=3, fusion_dim=4,
                   text_dim=3, audio_dim=3, vision_dim=3, text_dropout=0.0, audio_dropout=0.0),
    # A function: each model needs its own tiny BERT.
    "magbert": lambda: dict(text_backbone=_tiny_text_backbone(), dropout_prob=0.0, head_dropout=0.0),
    "mmim": dict(audio_hidden=3, vision_hidden=3, audio_out=4, vision_out=4, fusion_dim=4, fusion_dropout=0.0),
    "misa": dict(hidden_size=4, transformer_ff_dim=8, dropout=0.0, transformer_dropout=0.0),
}
#: Models that read BERT token ids (word-aligned audio/vision: T tokens).
TOKEN_MODELS = ("magbert",)


def _tiny_text_backbone():
    import keras_hub

    from keras_msa.layers import TextBackbone

    bert = keras_hub.models.BertBackbone(vocabulary_size=8, num_layers=1, num_heads=2, hidden_dim=DIMS["text"],
                                         intermediate_dim=8, max_sequence_length=T, dropout=0.0)
    return TextBackbone(bert)


def _with_tokens(batch):
    """The batch with BERT tokens where `text` has real steps ([CLS] first)."""
    mask = batch["text_mask"]
    ids = np.where(mask, 5 + np.arange(T)[None] % 3, 0).astype("int32")
    ids[:, 0] = np.where(mask[:, 0], 2, 0)
    return dict(batch, text_token_ids=ids, text_padding_mask=mask)


def test_every_registered_model_has_a_tiny_config():
    missing = sorted(set(available_models()) - set(TINY))
    assert not missing, f"add a tiny config to tests/models/test_masking.py::TINY for {missing}"


def _batch():
    rng = np.random.default_rng(0)
    lengths = {
        "text": [6, 4, 5, 0],
        "audio": [6, 0, 3, 0],  # sample 1: audio missing
        "vision": [5, 2, 0, 0],  # sample 2: vision missing; sample 3: all padding
    }
    clean, poisoned = {}, {}
    poison = np.array([np.inf, -np.inf, np.nan], "float32")
    for m, dim in DIMS.items():
        mask = np.arange(T)[None, :] < np.array(lengths[m])[:, None]
        x = rng.standard_normal((B, T, dim)).astype("float32")
        clean[m] = np.where(mask[..., None], x, 0).astype("float32")
        bad = x.copy()
        pad = ~mask
        # +inf, -inf and NaN in turn over the padded entries.
        bad[pad] = poison[np.arange(pad.sum() * dim) % 3].reshape(-1, dim)
        poisoned[m] = bad
        clean[f"{m}_mask"] = poisoned[f"{m}_mask"] = mask
    targets = {"sentiment": rng.uniform(-3, 3, (B, 1)).astype("float32")}
    return clean, poisoned, targets


def _model(name):
    keras.utils.set_random_seed(0)
    config = TINY[name]() if callable(TINY[name]) else TINY[name]
    return get_model_class(name)(**config)


def _assert_same_finite(got, want, what):
    assert set(got) == set(want), what
    for key in want:
        g, w = np.asarray(got[key], np.float64), np.asarray(want[key], np.float64)
        assert np.isfinite(g).all(), f"{what}: '{key}' is not finite"
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5, err_msg=f"{what}: '{key}'")


@pytest.mark.parametrize("name", sorted(TINY))
def test_inf_and_nan_under_masks_change_nothing_and_gradients_stay_finite(name):
    clean, poisoned, targets = _batch()
    if getattr(get_model_class(name), "needs_sample_index", False):
        # Per-sample memory (SelfMM's labels): its rows come with the batch.
        clean, poisoned = (dict(b, sample_index=np.arange(B, dtype="int32")) for b in (clean, poisoned))
    if name in TOKEN_MODELS:
        clean, poisoned = _with_tokens(clean), _with_tokens(poisoned)
    model = _model(name)
    _assert_same_finite(model(poisoned, training=False), model(clean, training=False), f"{name} inference")

    # Training mode: a second, identically seeded model, so that random
    # layers (TeCaFN's replacement gate, which draws nothing at inference)
    # draw the same numbers for both batches.
    reference = model(clean, training=True)
    model = _model(name)
    with tf.GradientTape() as tape:
        y_pred = model(poisoned, training=True)
        loss = model.compute_loss(x=poisoned, y=targets, y_pred=y_pred, training=True)
    _assert_same_finite(y_pred, reference, f"{name} training")
    assert np.isfinite(float(loss)), f"{name}: loss {float(loss)}"
    # Embedding tables get IndexedSlices: dense for the checks.
    grads = [None if g is None else tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_weights)]
    bad = [w.path for w, g in zip(model.trainable_weights, grads) if g is not None and not np.isfinite(np.asarray(g)).all()]
    assert not bad, f"{name}: non-finite gradients for {bad}"
    assert any(g is not None and np.abs(np.asarray(g)).max() > 0 for g in grads)
