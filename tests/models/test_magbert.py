import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import TextBackbone
from keras_msa.models import MAGBERT
from keras_msa.models import get_model_class
from keras_msa.testing import assert_keras_roundtrip
from keras_msa.testing import assert_savedmodel_roundtrip
from keras_msa.training.protocol import resolve_protocol

WORDS = ["good", "bad", "film", "very", "not", "a", "boring", "great"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
L, DA, DV = 8, 3, 4


def tiny_backbone(seed=0):
    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB)
    pre = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=L)
    bert = keras_hub.models.BertBackbone(vocabulary_size=len(VOCAB), num_layers=2, num_heads=2, hidden_dim=16,
                                         intermediate_dim=32, max_sequence_length=L, dropout=0.0)
    return TextBackbone(bert, pre)


def tiny(seed=0, **kw):
    return MAGBERT(text_backbone=tiny_backbone(seed), **{"dropout_prob": 0.0, "head_dropout": 0.0, **kw})


def batch(n=6, seed=0, raw=False):
    """Token batch (or raw strings) with word-aligned audio/vision: step i is token i."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, L - 1, n)
    ids = np.zeros((n, L), "int32")
    for i, k in enumerate(lengths):
        ids[i, 0], ids[i, k + 1] = 2, 3
        ids[i, 1:k + 1] = rng.integers(5, len(VOCAB), k)
    mask = ids > 0
    out = {"audio": rng.standard_normal((n, L, DA)).astype("float32"),
           "vision": rng.standard_normal((n, L, DV)).astype("float32"),
           "audio_mask": mask, "vision_mask": mask}
    for m in ("audio", "vision"):
        out[m] = np.where(mask[..., None], out[m], 0).astype("float32")
    if raw:
        out["text_raw"] = np.array([" ".join(VOCAB[t] for t in row[1:k + 1]) for row, k in zip(ids, lengths)])
    else:
        out.update(text_token_ids=ids, text_padding_mask=mask)
    # Sentiment carried by the audio alone: text-only BERT cannot read it.
    real = mask[:, 1:]
    y = 2.5 * np.tanh(np.where(real, out["audio"][:, 1:, 0], 0).sum(1) / real.sum(1))
    return out, y[:, None].astype("float32")


@pytest.fixture(scope="module")
def model():
    m = tiny()
    m(batch()[0])
    return m


def test_registered_presets_and_mmsa_protocol():
    assert get_model_class("magbert") is MAGBERT
    for name, (dropout, lr) in {"mosi": (0.3, 2e-5), "mosei": (0.2, 1e-5), "sims": (0.1, 5e-5)}.items():
        args = MAGBERT.presets[name]
        assert (args["beta_shift"], args["dropout_prob"], args["injection_index"]) == (1.0, dropout, 0)
        m = MAGBERT.from_preset(name, text_backbone=tiny_backbone())
        assert m.dropout_prob == dropout and m.task_loss == "mae"
        p = resolve_protocol(MAGBERT, name)
        assert p["learning_rate"] == {"value": lr, "source": "MMSA"} and p["backbone_learning_rate"]["value"] == lr
        assert (p["batch_size"]["value"], p["patience"]["value"], p["monitor"]["value"]) == (32, 8, "loss")
        assert p["optimizer"]["value"] == "adam" and p["clipnorm"]["value"] is None
    with pytest.raises(ValueError, match="backbone_preset"):
        MAGBERT()
    with pytest.raises(ValueError, match=r"injection_index=3 must lie in \[0, 2\]"):
        tiny(injection_index=3)


def test_gate_is_the_only_path_of_audio_and_vision_and_errors(model):
    x, _ = batch()
    a = np.asarray(model(x)["sentiment"])
    assert not np.allclose(np.asarray(model(dict(x, audio=x["audio"] + 1.0))["sentiment"]), a)
    text_only = tiny(use_mag=False)
    b = np.asarray(text_only(x)["sentiment"])
    np.testing.assert_allclose(np.asarray(text_only(dict(x, audio=x["audio"] + 1.0))["sentiment"]), b, atol=1e-6)
    assert text_only.mag is None
    # After the last layer instead of on the embeddings: another model.
    late = tiny(injection_index=2)
    assert not np.allclose(np.asarray(late(x)["sentiment"]), a)
    with pytest.raises(ValueError, match="word-aligned audio: 6 steps for 8 text tokens"):
        model(dict(x, audio=x["audio"][:, :6], audio_mask=x["audio_mask"][:, :6]))
    with pytest.raises(KeyError, match="use_mag=False"):
        tiny()({k: v for k, v in x.items() if not k.startswith("vision")})


def test_masked_steps_and_a_missing_modality(model):
    x, y = batch()
    ref = np.asarray(model(x)["sentiment"])
    poisoned = dict(x)
    for m, value in (("audio", np.inf), ("vision", np.nan)):
        poisoned[m] = np.where(x[f"{m}_mask"][..., None], x[m], value).astype("float32")
    np.testing.assert_allclose(np.asarray(model(poisoned)["sentiment"]), ref, atol=1e-6)
    # Sample 0 without audio and vision: finite, and its values unread.
    missing = dict(poisoned, audio_mask=x["audio_mask"].copy(), vision_mask=x["vision_mask"].copy())
    missing["audio_mask"][0] = missing["vision_mask"][0] = False
    missing["audio"] = missing["audio"].copy()
    missing["audio"][0] = np.nan
    with tf.GradientTape() as tape:
        loss = model.compute_loss(missing, {"sentiment": y}, model(missing, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    assert np.isfinite(float(loss))
    for w, g in zip(model.trainable_weights, grads):
        assert g is not None and np.isfinite(np.asarray(tf.convert_to_tensor(g))).all(), w.path
    np.testing.assert_allclose(np.asarray(model(missing)["sentiment"])[1:], ref[1:], atol=1e-6)
    assert model.loss_components.keys() == {"task"}


def _fit(m, x, y, epochs, learning_rate=3e-3):
    keras.utils.set_random_seed(0)
    m.compile(optimizer=keras.optimizers.Adam(learning_rate))
    data = tf.data.Dataset.from_tensor_slices((x, {"sentiment": y})).batch(32)
    m.fit(data, epochs=epochs, shuffle=False, verbose=0)
    return m


@pytest.mark.slow
def test_it_learns_what_only_the_gate_sees():
    # The labels are a function of the audio alone, independent of the words:
    # a text-only model cannot beat the mean predictor, so beating it by far
    # means the gate carries the audio.
    x, y = batch(96, seed=1)
    xt, yt = batch(64, seed=2)
    mean_mae = np.abs(yt - y.mean()).mean()
    mae = np.abs(np.asarray(_fit(tiny(), x, y, 10, 1e-2)(xt)["sentiment"]) - yt).mean()
    print(f"MAG-BERT test MAE {mae:.3f}, mean predictor {mean_mae:.3f}")
    assert mae < 0.75 * mean_mae


@pytest.mark.slow
def test_keras_round_trip_keeps_training_and_saved_model(tmp_path):
    m = tiny(dropout_prob=0.3)
    # Raw sentences: the tokenizer's vocabulary comes back with the .keras file.
    x, y = batch(6, raw=True)
    m(x)
    restored = assert_keras_roundtrip(m, x, tmp_path)
    # It keeps training: one eager step of its own objective moves its weights
    # (an eager step: tracing a compiled one costs more than this whole test).
    before = [np.array(w) for w in restored.trainable_weights]
    with tf.GradientTape() as tape:
        loss = restored.compute_loss(x, {"sentiment": y}, restored(x, training=True))
    keras.optimizers.Adam(1e-2).apply(tape.gradient(loss, restored.trainable_weights), restored.trainable_weights)
    assert any(not np.allclose(a, np.asarray(b)) for a, b in zip(before, restored.trainable_weights))
    # The SavedModel on token ids (MMSA's input); raw-string serving of a
    # TextBackbone model is tests/models/test_crosssent.py's (the same mixin).
    assert_savedmodel_roundtrip(m, batch(6)[0], tmp_path)


@pytest.mark.slow
def test_trains_through_recipes_train_on_mmsa_aligned_data(tmp_path, load_recipe):
    """recipes/train.py --model=magbert on MMSA's aligned layout (its
    `text_bert` ids become `text_token_ids`), BERT from a preset directory."""
    import json

    from absl import flags

    from keras_msa.data.fixtures import mmsa_arrays
    from keras_msa.data.fixtures import write_pickle

    data = tmp_path / "mosi"
    load_recipe("convert").convert("mmsa", str(write_pickle(mmsa_arrays(seq=L), tmp_path / "aligned_50.pkl")),
                                   str(data), dataset="mosi")
    # MMSA's ids are bert-base-uncased's (< 30000 here): a tiny BERT of that vocabulary.
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(30000)]
    preset = str(tmp_path / "tiny_bert")
    pre = keras_hub.models.BertTextClassifierPreprocessor(keras_hub.models.BertTokenizer(vocabulary=vocab),
                                                          sequence_length=L)
    keras_hub.models.BertBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=16,
                                  intermediate_dim=16, max_sequence_length=L).save_to_preset(preset)
    pre.save_to_preset(preset)
    out = tmp_path / "run"
    recipe = load_recipe("train")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.py", "--model=magbert", "--preset=mosi", f"--data={data}", "--epochs=2", "--batch_size=4",
                 f"--model_config={json.dumps({'backbone_preset': preset, 'sequence_length': L})}",
                 f"--output_dir={out}", "--verbose=0"])
    recipe.main([])
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    assert np.isfinite(metrics["test"]["mae"])
    assert metrics["protocol"]["learning_rate"] == {"value": 2e-5, "source": "MMSA"}
    assert os.path.exists(out / "model.keras")
