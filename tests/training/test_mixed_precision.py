"""Every registered model trains under mixed_float16 and mixed_bfloat16 on
CPU: finite losses, float32 outputs, and predictions close to float32's."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.models import available_models
from keras_msa.models import get_model_class
from keras_msa.testing import tiny_synthetic
from keras_msa.training.distributed import CustomLoop
from keras_msa.training.precision import maybe_loss_scale
from keras_msa.training.precision import precision_policy

# Tiny constructor configs, one per registered model. A model that registers
# itself without an entry here fails `test_every_registered_model_has_a_config`.
TINY_CONFIGS = {
    "lfdnn": dict(hidden_dims={"text": 8, "audio": 4, "vision": 4}, fusion_dim=8),
    "eflstm": dict(hidden_dim=8, head_dim=8),
    "mulg": dict(hidden_dim=8),
    "tecafn": dict(hidden_dim=16, unimodal_hidden=16, num_layers=1, num_heads=2, seed=0),
    "crosssent": dict(hidden_dim=16, num_layers=1, injection_index=0, num_attention_heads=2, gmra_heads=2, adapter_dim=4,
                      warmup_proportion=0),
    "m3sa": dict(hidden_dim=10, num_heads=5, num_scales=2),
    "ssgdl": dict(hidden_dim=8, num_heads=2, min_width=4),
    "tfn": dict(hidden_dims={"text": 8, "audio": 4, "vision": 4}, text_out=4, post_fusion_dim=8),
    "lmf": dict(hidden_dims={"text": 8, "audio": 4, "vision": 4}, rank=2),
    "mult": dict(hidden_dim=4, num_heads=2, num_layers=1, memory_layers=1,
                 conv_kernel_sizes={"text": 2, "audio": 1, "vision": 1}),
    "selfmm": dict(train_samples=16, audio_lstm_dim=4, vision_lstm_dim=4, audio_out=4, vision_out=4, fusion_dim=8,
                   text_dim=4, audio_dim=4, vision_dim=4),
    # A function: each model needs its own tiny BERT.
    "magbert": lambda: dict(text_backbone=_tiny_text_backbone()),
    "mmim": dict(audio_hidden=4, vision_hidden=4, audio_out=8, vision_out=8, fusion_dim=8),
    "misa": dict(hidden_size=4, transformer_ff_dim=8),
}
#: Models that read BERT token ids: their batches get tokens where `text` is
#: real (audio and vision are word-aligned: the synthetic data has one T).
TOKEN_MODELS = ("magbert",)


def _tiny_text_backbone():
    import keras_hub

    from keras_msa.layers import TextBackbone

    return TextBackbone(keras_hub.models.BertBackbone(vocabulary_size=8, num_layers=1, num_heads=2, hidden_dim=16,
                                                      intermediate_dim=16, max_sequence_length=12))


def _with_tokens(x, y):
    ids = tf.where(x["text_mask"], 5, 0)
    return dict(x, text_token_ids=ids, text_padding_mask=x["text_mask"]), y

# Half precision keeps ~3 (float16) or ~2 (bfloat16) significant digits per op.
TOLERANCE = {"mixed_float16": 0.03, "mixed_bfloat16": 0.12}
STEPS = 2
# float16's dynamic loss scale starts at 2**15 and halves on every overflowing
# step, which skips that step; a few more steps let it settle below overflow.
FLOAT16_STEPS = 6
# Models whose steps take seconds on CPU: slow-marked (CI still runs them).
FAST_MODELS = ("lfdnn", "eflstm")


@pytest.fixture(scope="module")
def data():
    bench = tiny_synthetic(train=16, valid=8, test=8, unimodal_labels=True)
    base = bench["train"].to_tf_dataset(8)
    # Models with per-sample memory (SelfMM) get the rows' `sample_index`.
    indexed = bench["train"].to_tf_dataset(8, include_index=True)
    return {False: (base, next(iter(base))), True: (indexed, next(iter(indexed)))}


def test_every_registered_model_has_a_config():
    missing = [m for m in available_models() if m not in TINY_CONFIGS]
    assert not missing, f"Add tiny constructor configs for {missing} to TINY_CONFIGS in {__file__}."


def _build(name, batch):
    keras.utils.set_random_seed(0)
    config = TINY_CONFIGS[name]() if callable(TINY_CONFIGS[name]) else TINY_CONFIGS[name]
    model = get_model_class(name)(**config)
    model(batch[0])
    policy = keras.mixed_precision.global_policy().name
    # Eager steps: a few of them cost less than tracing the larger models'
    # gradient graphs; the graph path is exercised by the runner tests.
    model.compile(optimizer=maybe_loss_scale(keras.optimizers.Adam(1e-3), policy), run_eagerly=True)
    return model


def _sentiment(model, batch):
    out = model(batch[0], training=False)["sentiment"]
    assert out.dtype == "float32", f"sentiment output is {out.dtype}, expected float32"
    return np.asarray(out)


def _copy_variables(dst, src):
    for a, b in zip(dst.variables, src.variables):
        a.assign(np.asarray(b))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize(
    "name",
    [n if n in FAST_MODELS else pytest.param(n, marks=pytest.mark.slow) for n in sorted(TINY_CONFIGS)],
)
def test_model_trains_under_mixed_precision(name, policy, data):
    if name not in available_models():
        pytest.skip(f"{name} is not registered (yet)")
    base, batch = data[bool(getattr(get_model_class(name), "needs_sample_index", False))]
    if name in TOKEN_MODELS:
        base = base.map(_with_tokens)
        batch = next(iter(base))
    reference = _build(name, batch)
    with precision_policy(policy):
        mixed = _build(name, batch)
    assert keras.mixed_precision.global_policy().name == "float32", "policy leaked out of the block"
    assert mixed.compute_dtype == policy.split("_")[1]
    assert all(v.dtype == "float32" for v in mixed.trainable_variables)
    if policy == "mixed_float16":
        assert isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer)

    # Same weights and dropout seeds: half-precision predictions and the
    # objective stay close to float32's.
    if getattr(reference, "needs_sample_index", False):
        # Per-sample memory (SelfMM): one pass fills it; in a later epoch the
        # unimodal heads get gradients (their loss weights are 0 in epoch 1).
        reference.set_epoch(1)
        for x, y in base:
            reference.compute_loss(x, y, reference(x, training=True), training=True)
    _copy_variables(mixed, reference)
    y32 = _sentiment(reference, batch)
    tol = TOLERANCE[policy] * max(1.0, float(np.abs(y32).max()))
    np.testing.assert_allclose(_sentiment(mixed, batch), y32, atol=tol, rtol=0)
    loss32 = float(reference.compute_loss(batch[0], batch[1], reference(batch[0]), training=False))
    loss16 = float(mixed.compute_loss(batch[0], batch[1], mixed(batch[0]), training=False))
    np.testing.assert_allclose(loss16, loss32, rtol=TOLERANCE[policy])

    # A few optimizer steps (float16: dynamically loss-scaled, so the first
    # step may be skipped while the scale settles).
    before = [np.array(v) for v in mixed.trainable_variables]
    steps = FLOAT16_STEPS if policy == "mixed_float16" else STEPS
    history = CustomLoop(mixed).fit(lambda epoch: base.repeat(), steps_per_epoch=steps, epochs=1)
    after_loss = float(mixed.compute_loss(batch[0], batch[1], mixed(batch[0], training=True), training=True))
    assert np.isfinite(history[0]["loss"]) and np.isfinite(after_loss), (history, after_loss)
    moved = [not np.array_equal(b, np.array(v)) for b, v in zip(before, mixed.trainable_variables)]
    assert np.mean(moved) > 0.5, f"{name} under {policy}: most weights did not move"
    assert all(np.all(np.isfinite(np.array(v))) for v in mixed.trainable_variables)

    # The trained weights in float32 give nearly the predictions of the
    # half-precision model.
    _copy_variables(reference, mixed)
    np.testing.assert_allclose(_sentiment(mixed, batch), _sentiment(reference, batch), atol=tol, rtol=0)
