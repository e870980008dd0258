import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import TextBackbone
from keras_msa.models import MMIM
from keras_msa.models import get_model_class
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import assert_savedmodel_roundtrip
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.testing import train_briefly
from keras_msa.training.protocol import make_optimizer
from keras_msa.training.protocol import resolve_protocol

TINY = dict(audio_hidden=4, vision_hidden=4, audio_out=8, vision_out=8, fusion_dim=8, fusion_dropout=0.0)


def _model(**overrides):
    keras.utils.set_random_seed(0)
    return MMIM(**{**TINY, **overrides})


def _terms(model, batch, y, training=True):
    model.compute_loss(batch, {"sentiment": y}, model(batch, training=training), training=training)
    return {k: float(v) for k, v in model.loss_components.items()}


@pytest.fixture(scope="module")
def bench():
    return tiny_synthetic(train=128, valid=16, test=64, missing_rate=0.05)


def test_presets_protocol_and_config():
    assert get_model_class("mmim") is MMIM
    mosi = MMIM.from_preset("mosi")
    assert (mosi.audio_hidden, mosi.vision_out, mosi.fusion_dim, mosi.alpha, mosi.beta, mosi.mem_size) == (
        16, 16, 128, 0.1, 0.1, 1)
    protocol = resolve_protocol(MMIM, "sims")
    assert protocol["backbone_learning_rate"] == {"value": 5e-5, "source": "MMSA"}
    assert (protocol["learning_rate"]["value"], protocol["l2_weight_decay"]["value"],
            protocol["clipnorm"]["value"], protocol["patience"]["value"]) == (1e-3, 1e-4, 1.0, 8)
    assert MMIM.from_config(mosi.get_config()).get_config() == mosi.get_config()
    with pytest.raises(ValueError, match="mem_size"):
        MMIM(mem_size=0)
    with pytest.raises(KeyError, match="vision"):
        _model()({"text": np.zeros((1, 3, 4), "float32"), "audio": np.zeros((1, 3, 2), "float32")})


def test_objective_terms_memory_and_ablations(bench):
    batch = small_batch(bench["train"], 8)
    y = np.array([[1.0], [-1.0], [2.0], [-2.0], [0.5], [-0.5], [1.5], [-1.5]], "float32")
    model = _model(add_va=True)
    first = _terms(model, batch, y)
    assert set(first) == {"task", "nce", "lld", "mmilb_estimator", "entropy"}
    # MMSA counts H from the third batch of an epoch (memory size 1) ...
    assert first["entropy"] == 0.0 and _terms(model, batch, y)["entropy"] == 0.0
    third = _terms(model, batch, y)["entropy"]
    assert third != 0.0 and np.isfinite(third)
    # ... and the memory restarts with each epoch.
    model.set_epoch(1)
    assert _terms(model, batch, y)["entropy"] == 0.0
    assert float(model.memory_step) == 1.0
    assert set(model.bounds) == {"tv", "ta", "va"}
    assert not any("entropy" in w.path for w in model.trainable_weights)
    # Evaluation's loss is MMSA's validation L1, and the memory stays put.
    assert set(_terms(model, batch, y, training=False)) == {"task"} and float(model.memory_step) == 1.0
    assert set(_terms(_model(use_mmilb=False), batch, y)) == {"task", "nce"}
    assert set(_terms(_model(use_cpc=False), batch, y)) == {"task", "lld", "mmilb_estimator", "entropy"}


def test_stop_gradients_route_each_term_to_its_weights(bench):
    batch = small_batch(bench["train"], 8)
    y = np.linspace(-2, 2, 8, dtype="float32")[:, None]
    model = _model()
    model(batch)
    estimator = {id(w) for b in model.bounds.values() for w in b.trainable_weights}
    with tf.GradientTape(persistent=True) as tape:
        model.compute_loss(batch, {"sentiment": y}, model(batch, training=True))
        terms = dict(model.loss_components)
    for name, reaches_estimator in (("mmilb_estimator", True), ("lld", False), ("task", False)):
        grads = tape.gradient(terms[name], model.trainable_weights)
        for w, g in zip(model.trainable_weights, grads):
            if id(w) in estimator and not reaches_estimator or id(w) not in estimator and name == "mmilb_estimator":
                assert g is None or not np.any(np.asarray(g)), (name, w.path)
        assert any(g is not None and np.any(np.asarray(g)) for g in grads), name


def _without(batch, rows, modalities=("audio", "vision")):
    """`batch` with `modalities` missing (all-False mask, NaN under it) at `rows`."""
    out = dict(batch)
    for m in modalities:
        mask = np.array(batch[f"{m}_mask"], bool)
        mask[rows] = False
        out[f"{m}_mask"] = mask
        out[m] = np.where(mask[..., None], np.asarray(batch[m]), np.nan).astype("float32")
    return out


def test_missing_modalities_are_not_counted_in_the_entropy(bench):
    batch = small_batch(bench["train"], 16)
    for m in ("audio", "vision"):
        batch[f"{m}_mask"] = np.ones_like(np.asarray(batch[f"{m}_mask"]), bool)
    y = np.tile([[1.0], [-1.0]], (8, 1)).astype("float32")
    # Rows 12-15 lack audio and vision: H must be that of rows 0-11 alone
    # (each row's representations do not depend on the others').
    part = _without(batch, slice(12, 16))
    first = {k: np.asarray(v)[:12] for k, v in batch.items()}
    entropies = []
    for b, labels in ((part, y), (first, y[:12])):
        model = _model()
        entropies.append([_terms(model, b, labels)["entropy"] for _ in range(3)][-1])
    assert entropies[0] != 0.0 and np.isfinite(entropies[0])
    np.testing.assert_allclose(entropies[0], entropies[1], rtol=1e-5)
    # Audio and vision missing from every sample (real MOSI text alone):
    # the entropy has no rows, and every term and gradient stays finite.
    model = _model()
    empty = _without(batch, slice(None))
    for _ in range(3):
        with tf.GradientTape() as tape:
            out = model(empty, training=True)
            loss = model.compute_loss(empty, {"sentiment": y}, out, training=True)
        assert np.isfinite(float(loss)) and float(model.loss_components["entropy"]) == 0.0
        for w, g in zip(model.trainable_weights, tape.gradient(loss, model.trainable_weights)):
            assert g is None or np.all(np.isfinite(np.asarray(g))), w.path


@pytest.mark.slow
def test_learns_and_round_trips(bench, tmp_path):
    model = _model()
    mae, mean_mae = train_briefly(model, bench, epochs=5, learning_rate=1e-2)
    assert mae < 0.85 * mean_mae, (mae, mean_mae)
    batch = small_batch(bench["test"], 4)
    assert_keras_roundtrip(model, batch, tmp_path, train_data=bench["valid"].to_tf_dataset(16))
    assert_savedmodel_roundtrip(model, batch, tmp_path)


def test_backbone_mode_fine_tunes_bert_with_its_own_group(tmp_path):
    keras.utils.set_random_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "not"]
    pre = keras_hub.models.BertTextClassifierPreprocessor(keras_hub.models.BertTokenizer(vocabulary=vocab),
                                                          sequence_length=6)
    bert = keras_hub.models.BertBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=8,
                                         intermediate_dim=8, max_sequence_length=6)
    model = MMIM(text_backbone=TextBackbone(bert, pre), **TINY)
    rng = np.random.default_rng(0)
    batch = {"text_raw": np.array(["good film", "bad film", "not good", "film"]),
             "audio": rng.standard_normal((4, 5, 3)).astype("float32"),
             "vision": rng.standard_normal((4, 4, 2)).astype("float32")}
    y = np.array([[1.0], [-1.0], [-0.5], [0.2]], "float32")
    assert model(batch)["sentiment"].shape == (4, 1) and model.mode == "backbone"
    group = {id(w) for w in model.parameter_groups()["text_backbone"]}
    assert group and group <= {id(w) for w in model.trainable_weights}
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, {"sentiment": y}, model(batch, training=True))
    grads = dict(zip([id(w) for w in model.trainable_weights], tape.gradient(loss, model.trainable_weights)))
    # BERT is fine-tuned (MMSA's use_finetune): the whole objective reaches its layers.
    reached = [w for w in model.parameter_groups()["text_backbone"] if grads[id(w)] is not None
               and np.any(np.asarray(tf.convert_to_tensor(grads[id(w)])))]
    assert len(reached) == len(group)
    # MMSA's groups: BERT at lr_bert (5e-5), the estimator and the rest at 1e-3.
    optimizer = make_optimizer(resolve_protocol(MMIM, "mosi"), 4, model.parameter_groups())
    optimizer.build(model.trainable_weights)
    rates = [optimizer.variable_multiplier(w) * 1e-3 for w in model.trainable_weights if id(w) in group]
    np.testing.assert_allclose(rates, 5e-5, rtol=1e-6)
    assert optimizer.variable_multiplier(model.bounds["tv"].mu_kernel_1) == 1.0
    assert_keras_roundtrip(model, batch, tmp_path)
