import warnings

import keras
import numpy as np
import pytest

from keras_msa.losses import info_nce
from keras_msa.models import TeCaFN
from keras_msa.models import get_model_class
from keras_msa.testing import assert_beats_text_only_floor
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import assert_savedmodel_roundtrip
from keras_msa.testing import fusion_synthetic
from keras_msa.testing import missing_modality
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.testing import train_briefly

SMALL = dict(hidden_dim=16, unimodal_hidden=16, num_layers=1, num_heads=2, dropout=0.0, seed=0)


@pytest.fixture(scope="module")
def bench():
    return tiny_synthetic(train=256, valid=64, test=128)


@pytest.fixture(scope="module")
def batch(bench):
    b = small_batch(bench["train"], 8)
    # Ragged lengths so that masking matters.
    for m in ("text", "audio", "vision"):
        b[f"{m}_mask"] = b[f"{m}_mask"].copy()
        b[f"{m}_mask"][:4, 9:] = False
        b[m] = b[m] * b[f"{m}_mask"][..., None]
    return b


def test_registry_presets_and_ablations():
    assert get_model_class("tecafn") is TeCaFN
    mosi = TeCaFN.from_preset("mosi")
    assert mosi.replace_probability == 0.7 and mosi.num_hard_negatives == 3
    assert mosi.gates["audio"].probability == 0.7
    assert TeCaFN.from_preset("mosei").replace_probability == 0.4
    assert TeCaFN().replace_probability == 0.5 and TeCaFN().hidden_dim == 30
    assert TeCaFN().temperature == 0.1 and TeCaFN().gamma1 == 0.1 and TeCaFN().gamma2 == 0.1
    rand = TeCaFN(**TeCaFN.ABLATIONS["w/o Hardneg_ta"])
    assert rand.miners["audio"].strategy == "random" and rand.miners["vision"].strategy == "hard"
    with pytest.raises(ValueError, match="text"):
        TeCaFN(modalities=["audio", "vision"])


def test_outputs_shapes_dtypes(batch):
    model = TeCaFN(**SMALL)
    out = model(batch)
    assert set(out) == {"sentiment", "pair_logits_audio", "pair_logits_vision"}
    assert out["sentiment"].shape == (8, 1) and out["sentiment"].dtype == "float32"
    assert np.all(np.abs(np.asarray(out["sentiment"])) <= 3.0)
    train_out = model(batch, training=True)
    assert train_out["tcon_text_audio"].shape == (8, 16)
    assert train_out["pair_target_vision"].shape == (8,)
    for v in train_out.values():
        assert v.dtype == "float32" and np.all(np.isfinite(np.asarray(v)))


def test_masking_and_missing_modalities(batch):
    model = TeCaFN(**SMALL)
    base = np.asarray(model(batch)["sentiment"])
    changed = dict(batch)
    for m in ("text", "audio", "vision"):
        x = batch[m].copy()
        x[~batch[f"{m}_mask"]] = 123.0
        changed[m] = x
    np.testing.assert_allclose(np.asarray(model(changed)["sentiment"]), base, atol=1e-5)
    for m in ("audio", "vision", "text"):
        miss = missing_modality(batch, m)
        for training in (False, True):
            out = model(miss, training=training)
            assert all(np.all(np.isfinite(np.asarray(v))) for v in out.values()), (m, training)
            y = {"sentiment": np.zeros((8, 1), "float32")}
            assert np.isfinite(float(model.compute_loss(miss, y, out, training=training)))
    with pytest.raises(KeyError, match="vision"):
        model({k: v for k, v in batch.items() if not k.startswith("vision")})


def test_objective_terms_match_independent_computation(batch):
    model = TeCaFN(**SMALL)
    y = {"sentiment": np.linspace(-2, 2, 8, dtype="float32")[:, None]}
    out = model(batch, training=True)
    total = float(model.compute_loss(batch, y, out, training=True))
    comp = {k: float(v) for k, v in model.loss_components.items()}
    assert set(comp) == {"task", "tcon", "bicon", "pair"}
    o = {k: np.asarray(v, np.float64) for k, v in out.items()}
    np.testing.assert_allclose(comp["task"], np.abs(o["sentiment"] - y["sentiment"]).mean(), rtol=1e-5)
    tcon = sum(
        float(info_nce(o[f"tcon_text_{m}"], o[f"tcon_{m}"], 0.1, mask=o[f"tcon_valid_{m}"] > 0))
        for m in ("audio", "vision")
    )
    np.testing.assert_allclose(comp["tcon"], 0.1 * tcon, rtol=1e-5)
    bicon = float(info_nce(o["bicon_vision"], o["bicon_audio"], 0.1)) + float(
        info_nce(o["bicon_audio"], o["bicon_vision"], 0.1)
    )
    np.testing.assert_allclose(comp["bicon"], 0.1 * bicon, rtol=1e-5)

    def ce(logits, target):
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        return -logp[np.arange(len(target)), target.astype(int)].mean()

    pair = sum(ce(o[f"pair_logits_{m}"], o[f"pair_target_{m}"]) for m in ("audio", "vision"))
    np.testing.assert_allclose(comp["pair"], 0.1 * pair, rtol=1e-5)
    np.testing.assert_allclose(total, sum(comp.values()), rtol=1e-6)
    # Evaluation (training=False) optimises nothing but the task.
    model.compute_loss(batch, y, model(batch), training=False)
    assert set(model.loss_components) == {"task"}


@pytest.mark.parametrize(
    "row, expected",
    [
        ("w/o L_ta + L_tv", {"task", "bicon", "pair"}),
        ("w/o L_bicon", {"task", "tcon", "pair"}),
        ("w/o L_tap+tvp", {"task", "tcon", "bicon"}),
        ("w/o V", {"task", "tcon", "pair"}),
        ("w/o V, A", {"task"}),
    ],
)
def test_ablations_switch_their_terms_off(batch, row, expected):
    model = TeCaFN(**SMALL, **TeCaFN.ABLATIONS[row])
    y = {"sentiment": np.zeros((8, 1), "float32")}
    out = model(batch, training=True)
    model.compute_loss(batch, y, out, training=True)
    assert set(model.loss_components) == expected
    if "replace" in str(TeCaFN.ABLATIONS[row]):
        assert np.all(np.asarray(out["pair_target_audio"]) == 1)


def test_every_ablation_row_builds_and_runs(batch):
    y = {"sentiment": np.zeros((8, 1), "float32")}
    for row, overrides in TeCaFN.ABLATIONS.items():
        model = TeCaFN(**SMALL, **overrides)
        out = model(batch, training=True)
        assert np.isfinite(float(model.compute_loss(batch, y, out, training=True))), row


def test_gradients_reach_every_weight(batch):
    import tensorflow as tf

    model = TeCaFN(**SMALL)
    model(batch)
    # The output layer starts at zero (so that tanh starts unsaturated),
    # which blocks the task gradient below it at step 0 only: give it a
    # trained-like value first.
    model.head.kernel.assign(np.random.default_rng(0).normal(0, 0.3, (16, 1)).astype("float32"))
    y = {"sentiment": np.linspace(-2, 2, 8, dtype="float32")[:, None]}
    with tf.GradientTape() as tape:
        out = model(batch, training=True)
        loss = model.compute_loss(batch, y, out, training=True)
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, grads) if g is None or not np.any(np.asarray(g))]
    assert not missing


def test_model_replacement_rate_matches_p(bench):
    """The gates inside the model replace at rate p (independently per
    modality), and pair targets are all 1 at inference."""
    model = TeCaFN(**SMALL, replace_probability=0.7)
    data = bench["train"]
    rates = {"audio": [], "vision": []}
    both = []
    for start in range(0, 256, 64):
        b = {k: v[start:start + 64] for k, v in data.inputs.items()}
        out = model(b, training=True)
        ta = 1 - np.asarray(out["pair_target_audio"])
        tv = 1 - np.asarray(out["pair_target_vision"])
        rates["audio"].append(ta)
        rates["vision"].append(tv)
        both.append(ta * tv)
    n = 256
    for m in rates:
        rate = np.concatenate(rates[m]).mean()
        assert abs(rate - 0.7) < 4 * np.sqrt(0.21 / n), (m, rate)
    assert abs(np.concatenate(both).mean() - 0.49) < 4 * np.sqrt(0.49 * 0.51 / n)


def test_batch_without_a_valid_pair(batch):
    """Edge cases of the objective: a batch of one has no negative (InfoNCE
    terms 0) and no hard-negative candidate (never replaced, pair targets
    all 1, i.e. all-equal labels for the pair loss); a batch whose audio is
    all padding has no valid (t, a) pair. Everything stays finite."""
    model = TeCaFN(**SMALL, replace_probability=1.0)
    one = {k: v[:1] for k, v in batch.items()}
    y = {"sentiment": np.ones((1, 1), "float32")}
    out = model(one, training=True)
    assert float(out["pair_target_audio"][0]) == 1.0 and float(out["pair_target_vision"][0]) == 1.0
    total = float(model.compute_loss(one, y, out, training=True))
    comp = {k: float(v) for k, v in model.loss_components.items()}
    assert np.isfinite(total)
    np.testing.assert_allclose([comp["tcon"], comp["bicon"]], [0.0, 0.0], atol=1e-6)
    # All targets 1: the pair loss is the cross-entropy of class 1 alone.
    logits = {m: np.asarray(out[f"pair_logits_{m}"], np.float64) for m in ("audio", "vision")}
    ce = sum(np.log(np.exp(l).sum()) - l[0, 1] for l in logits.values())
    np.testing.assert_allclose(comp["pair"], 0.1 * ce, rtol=1e-5)
    # No valid audio anywhere: L_ta has no valid pair (0), audio is never
    # replaced (no candidate), and the loss is finite.
    silent = missing_modality(batch, "audio")
    y8 = {"sentiment": np.zeros((8, 1), "float32")}
    out = model(silent, training=True)
    assert np.all(np.asarray(out["pair_target_audio"]) == 1)
    assert not np.all(np.asarray(out["pair_target_vision"]) == 1)  # p = 1 still acts on vision
    assert np.isfinite(float(model.compute_loss(silent, y8, out, training=True)))
    ta = info_nce(out["tcon_text_audio"], out["tcon_audio"], 0.1, mask=np.asarray(out["tcon_valid_audio"]) > 0)
    assert float(ta) == 0.0


@pytest.fixture(scope="module")
def fusion():
    return fusion_synthetic(train=256, valid=64)


def test_learns_to_fuse_beyond_the_text_only_floor(fusion):
    """Audio and vision carry as much of the label as the text, so only a
    model that reads them gets far below the best text-only MAE (trained on
    the same data with audio and vision missing, TeCaFN stays at the floor).

    p = 0.2 (the low end of the seed's Table 6 range), not the default 0.5:
    the gate trains the task on samples whose audio/vision came from another
    sample, under the original label. Where the modalities are independent
    that teaches the model to ignore them: at p = 0.5 one seed in three ended
    at the text-only floor (MAE 1.128, floor 1.133, 12 epochs), while the
    same run without the gate reached 0.724. The gate's own ablation is not
    asserted: on the "agree" scenario built for it, a short run was better
    without it (MAE 0.341 vs 0.380, text-only floor 0.369)."""
    model = TeCaFN(**SMALL, replace_probability=0.2)
    mae, mean_mae = train_briefly(model, fusion, epochs=8, batch_size=32, learning_rate=5e-3)
    assert mae < 0.85 * mean_mae, (mae, mean_mae)
    assert_beats_text_only_floor(mae, fusion, margin=0.1)


def test_keras_and_savedmodel_round_trips(bench, batch, tmp_path):
    model = TeCaFN(**SMALL)
    model(batch)
    train_ds = bench["train"].to_tf_dataset(32).take(2)
    restored = assert_keras_roundtrip(model, batch, tmp_path, train_data=train_ds)
    assert restored.get_config() == model.get_config()
    assert_savedmodel_roundtrip(model, batch, tmp_path, atol=1e-5)


def test_mixed_precision_outputs_float32(batch):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = TeCaFN(**SMALL)
        out = model(batch, training=True)
        assert out["sentiment"].dtype == "float32"
        assert all(np.all(np.isfinite(np.asarray(v))) for v in out.values())
        y = {"sentiment": np.zeros((8, 1), "float32")}
        assert np.isfinite(float(model.compute_loss(batch, y, out, training=True)))
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_trains_with_xla_and_the_runner(tmp_path):
    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import train

    config = TrainConfig(
        model="tecafn",
        preset="mosi",
        model_config=dict(SMALL),
        epochs=2,
        batch_size=32,
        learning_rate=3e-3,
        synthetic_sizes={"train": 128, "valid": 32, "test": 32},
        output_dir=str(tmp_path / "run"),
        jit_compile=True,
        # Deterministic ops make Keras fall back to no XLA; this test is
        # about the XLA path (the gates' random ops inside the compiled step).
        deterministic=False,
        verbose=0,
    )
    # Keras silently drops XLA while op determinism is on (conftest turns it
    # on process-wide), so it is switched off for this run only.
    from tensorflow.python.framework import config as tf_config

    was_deterministic = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*jit_compile.*")
            results, model = train(config)
    finally:
        if was_deterministic:
            tf_config.enable_op_determinism()
    assert model.jit_compile
    assert np.isfinite(results["test"]["mae"])
    assert (tmp_path / "run" / "model.keras").exists()
