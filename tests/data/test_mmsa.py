"""MMSA pickle reader: real layout, lengths, repairs, round trip, errors."""

import numpy as np
import pytest

from keras_msa.data.errors import DataFormatError
from keras_msa.data.fixtures import mmsa_arrays
from keras_msa.data.fixtures import write_pickle
from keras_msa.data.mmsa import read_mmsa
from keras_msa.data.tfrecord import load_split
from keras_msa.data.tfrecord import read_examples
from keras_msa.data.tfrecord import write_dataset


def test_aligned_mosi(tmp_path):
    raw = mmsa_arrays(aligned=True, neg_inf=3)
    path = write_pickle(raw, tmp_path / "aligned_50.pkl")
    splits, meta = read_mmsa(path, dataset="mosi")
    assert meta["dataset"] == "mosi" and meta["repairs"] == {"audio_neg_inf_to_zero": 3}
    assert meta["label_ranges"] == {"sentiment": (-3.0, 3.0)} and meta["sources"][0].endswith("aligned_50.pkl")
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [6, 3, 4]
    for split in ("train", "valid", "test"):
        d = raw[split]
        for i, ex in enumerate(splits[split]):
            L = int(d["text_bert"][i, 1].sum())
            assert ex["id"] == d["id"][i] and ex["raw_text"] == d["raw_text"][i]
            np.testing.assert_array_equal(ex["text"], d["text"][i, :L])
            # Aligned: audio and vision take the text length, as in MMSA.
            audio = d["audio"][i, :L].copy()
            audio[np.isneginf(audio)] = 0
            np.testing.assert_array_equal(ex["audio"], audio)
            np.testing.assert_array_equal(ex["vision"], d["vision"][i, :L])
            np.testing.assert_array_equal(ex["text_token_ids"], d["text_bert"][i, 0, :L].astype(np.int64))
            assert ex["text_token_ids"][0] == 101 and ex["text_padding_mask"].sum() == L
            assert ex["sentiment"] == d["regression_labels"][i]
            assert "sentiment_text" not in ex
    assert not np.isinf(splits["train"][0]["audio"]).any()


def test_unaligned_sims_round_trip(tmp_path):
    raw = mmsa_arrays(aligned=False, sims=True, dims=(16, 33, 7))
    path = write_pickle(raw, tmp_path / "unaligned_39.pkl", protocol=2)
    splits, meta = read_mmsa(path)  # guessed from the audio width (33)
    assert meta["dataset"] == "sims"
    assert meta["label_ranges"]["sentiment_audio"] == (-1.0, 1.0)
    for i, ex in enumerate(splits["valid"]):
        assert len(ex["audio"]) == raw["valid"]["audio_lengths"][i]
        assert len(ex["vision"]) == raw["valid"]["vision_lengths"][i]
        assert ex["sentiment_vision"] == raw["valid"]["regression_labels_V"][i]
    out = tmp_path / "sims"
    write_dataset(out, splits, dataset=meta["dataset"], sources=meta["sources"], label_ranges=meta["label_ranges"],
                  repairs=meta["repairs"], progress=False)
    back = list(read_examples(out, "valid"))
    for a, b in zip(splits["valid"], back):
        for k in a:
            if isinstance(a[k], str):
                assert a[k] == b[k]
            else:
                np.testing.assert_array_equal(np.asarray(a[k]), b[k])
                if k in ("text", "audio", "vision"):
                    assert a[k].tobytes() == b[k].tobytes()
    x, y = next(iter(load_split(out, "valid", batch_size=3)))
    assert x["audio"].shape == (3, max(raw[s]["audio_lengths"][i] for s in raw for i in range(len(raw[s]["id"]))), 33)
    assert set(y) == {"sentiment", "sentiment_text", "sentiment_audio", "sentiment_vision"}
    assert y["sentiment_text"].shape == (3, 1)
    assert x["text_segment_ids"].dtype.name == "int32"


def _error(tmp_path, raw, match, **kw):
    path = write_pickle(raw, tmp_path / "aligned_50.pkl")
    with pytest.raises(DataFormatError, match=match) as info:
        read_mmsa(path, **kw)
    assert "aligned_50.pkl" in str(info.value)
    return str(info.value)


def test_bad_inputs(tmp_path):
    raw = mmsa_arrays()
    del raw["valid"]
    assert "missing split" in _error(tmp_path, raw, "valid")
    raw = mmsa_arrays()
    del raw["test"]["vision"]
    assert "test" in _error(tmp_path, raw, "missing key")
    raw = mmsa_arrays()
    raw["train"]["regression_labels"] = raw["train"]["regression_labels"][:-1]
    assert "train" in _error(tmp_path, raw, "disagree on the number of examples")
    raw = mmsa_arrays()
    raw["valid"]["vision"][1, 0, 2] = np.nan
    assert "valid/vision" in _error(tmp_path, raw, r"non-finite .*index \[1, 0, 2\]")
    raw = mmsa_arrays()
    raw["train"]["audio"][0, 0, 0] = np.inf  # +inf is not MMSA's repair
    _error(tmp_path, raw, "train/audio: 1 non-finite")
    raw = mmsa_arrays(sims=True)
    raw["test"]["regression_labels"][2] = 1.5
    assert "test/regression_labels" in _error(tmp_path, raw, r"outside \[-1.0, 1.0\].*example 2", dataset="sims")
    raw = mmsa_arrays()
    raw["train"]["text"] = raw["train"]["text"][:, :, 0]
    _error(tmp_path, raw, "train/text: expected 3 dimensions")
    raw = mmsa_arrays(aligned=False)
    del raw["train"]["vision_lengths"]
    _error(tmp_path, raw, "vision_lengths")
    raw = mmsa_arrays()
    path = write_pickle(raw, tmp_path / "aligned_50.pkl")
    blob = open(path, "rb").read()
    open(path, "wb").write(blob[:100])
    with pytest.raises(DataFormatError, match="truncated|corrupt"):
        read_mmsa(path)


def test_overlong_lengths_are_clipped_and_counted(tmp_path):
    raw = mmsa_arrays(aligned=False, audio_len=6)
    raw["train"]["audio_lengths"][0] = 9
    splits, meta = read_mmsa(write_pickle(raw, tmp_path / "unaligned.pkl"), dataset="mosi")
    assert meta["repairs"] == {"audio_length_clipped": 1} and len(splits["train"][0]["audio"]) == 6
