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
    raw = mmsa_arrays(aligned=False, sims=True, dims=(16, 33, 709))
    path = write_pickle(raw, tmp_path / "unaligned_39.pkl", protocol=2)
    splits, meta = read_mmsa(path)  # decided by the audio and vision widths (33, 709)
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
    raw = mmsa_arrays(sims=True, dims=(16, 33, 709))
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


def test_dataset_from_content_not_from_directories(tmp_path):
    # A SIMS file under a directory named for MOSEI: before, the path made it MOSEI.
    raw = mmsa_arrays(sims=True, dims=(16, 33, 709))
    (tmp_path / "mosei_exp").mkdir()
    splits, meta = read_mmsa(write_pickle(raw, tmp_path / "mosei_exp" / "aligned_50.pkl"))
    assert meta["dataset"] == "sims" and meta["label_ranges"]["sentiment"] == (-1.0, 1.0)
    assert "audio 33, vision 709 are SIMS's" in meta["dataset_evidence"]
    # The basename speaks when the widths do not, and a contradiction is an error naming both.
    raw = mmsa_arrays(dims=(16, 7, 9))
    _, meta = read_mmsa(write_pickle(raw, tmp_path / "mosei_aligned_50.pkl"))
    assert meta["dataset"] == "mosei" and "file name 'mosei_aligned_50.pkl' says MOSEI" in meta["dataset_evidence"]
    mosi = write_pickle(mmsa_arrays(), tmp_path / "aligned_50.pkl")
    with pytest.raises(DataFormatError, match="--dataset=mosei contradicts.*audio 5, vision 20 are MOSI's"):
        read_mmsa(mosi, dataset="mosei")
    with pytest.raises(DataFormatError, match="file name says SIMS but .*MOSI's"):
        read_mmsa(write_pickle(mmsa_arrays(), tmp_path / "sims_aligned.pkl"))
    with pytest.raises(DataFormatError, match="contradicts itself: .*MOSI.s, but it has SIMS.s unimodal labels"):
        read_mmsa(write_pickle(mmsa_arrays(sims=True), tmp_path / "aligned_50.pkl"))
    with pytest.raises(DataFormatError, match="cannot tell which dataset.*pass --dataset"):
        read_mmsa(write_pickle(mmsa_arrays(dims=(16, 7, 9)), tmp_path / "aligned_50.pkl"))


def test_unknown_dataset_name_refused(tmp_path):
    path = write_pickle(mmsa_arrays(), tmp_path / "aligned_50.pkl")
    with pytest.raises(ValueError, match=r"--dataset='mosi2': unknown dataset.*\['mosei', 'mosi', 'sims', 'simsv2'\]"):
        read_mmsa(path, dataset="mosi2")
    assert read_mmsa(path, dataset="CMU-MOSI")[1]["dataset"] == "mosi"


def test_duplicate_ids(tmp_path):
    raw = mmsa_arrays()
    raw["train"]["id"][3] = raw["train"]["id"][1]
    assert "vidtrain0$_$1" in _error(tmp_path, raw, r"train/id: 1 duplicate id\(s\) in the split")
    raw = mmsa_arrays()
    raw["test"]["id"][2] = raw["train"]["id"][0]
    assert "'vidtrain0$_$0' (in train)" in _error(tmp_path, raw, "test/id: 1 id.* of split test also in another")
    raw = mmsa_arrays()
    raw["valid"]["id"][0] = None
    _error(tmp_path, raw, "valid/id: id of example 0 is None")


def test_attention_mask_and_token_checks(tmp_path):
    raw = mmsa_arrays()
    raw["train"]["text_bert"][2, 1, 0] = 2
    assert "example 2 has 2 at step 0" in _error(tmp_path, raw, r"train/text_bert: attention mask .* must be 0/1")
    raw = mmsa_arrays()
    raw["valid"]["text_bert"][1, 1, 1] = 0  # a hole: the sum would not be the length
    _error(tmp_path, raw, "valid/text_bert: attention mask .* example 1 has a 1 after a 0")
    raw = mmsa_arrays()
    raw["test"]["text_bert"][0, 0, 1] = -5
    _error(tmp_path, raw, "test/text_bert: token ids .* must be >= 0")


def test_empty_split_and_directory(tmp_path):
    raw = mmsa_arrays()
    raw["valid"] = {k: (v[:0] if isinstance(v, np.ndarray) else []) for k, v in raw["valid"].items()}
    raw["test"] = {k: [] for k in raw["test"]}  # empty lists: no rank to check
    splits, meta = read_mmsa(write_pickle(raw, tmp_path / "aligned_50.pkl"), dataset="mosi")
    assert splits["valid"] == [] and splits["test"] == [] and len(splits["train"]) == 6
    raw = {s: {k: [] for k in ("id", "text", "audio", "vision", "regression_labels")} for s in ("train", "valid", "test")}
    _error(tmp_path, raw, "every split is empty")
    with pytest.raises(DataFormatError, match=r"is a directory; expected the pickle file itself \(it holds aligned_50.pkl\)"):
        read_mmsa(tmp_path)


def test_missing_transcripts_are_missing_not_nan(tmp_path):
    raw = mmsa_arrays()
    raw["train"]["raw_text"][1] = float("nan")
    raw["train"]["raw_text"][4] = None
    splits, meta = read_mmsa(write_pickle(raw, tmp_path / "aligned_50.pkl"))
    assert "raw_text" not in splits["train"][1] and "raw_text" not in splits["train"][4]
    assert splits["train"][0]["raw_text"] == raw["train"]["raw_text"][0]
    assert meta["repairs"] == {"raw_text_missing": 2}
    raw["train"]["raw_text"][2] = 17
    _error(tmp_path, raw, "train/raw_text: transcript of example 2 is 17")


def test_float32_overflow_is_named(tmp_path):
    raw = mmsa_arrays()
    raw["train"]["audio"] = raw["train"]["audio"].astype(np.float64)
    raw["train"]["audio"][1, 2, 3] = 1e300
    msg = _error(tmp_path, raw, r"value 1e\+300 in 'audio' of split train \(index \[1, 2, 3\]\) overflows float32")
    assert "non-finite" not in msg
    raw = mmsa_arrays()
    raw["valid"]["regression_labels"] = raw["valid"]["regression_labels"].astype(np.float64)
    raw["valid"]["regression_labels"][0] = -1e40
    _error(tmp_path, raw, "value -1e\\+40 in 'regression_labels' of split valid .* overflows float32")


def test_allocation_cap_is_a_reader_option(tmp_path):
    path = write_pickle(mmsa_arrays(), tmp_path / "aligned_50.pkl")
    with pytest.raises(DataFormatError, match="cap .* max_allocation_factor 0.5 x .*reader_options"):
        read_mmsa(path, max_allocation_factor=0.5, min_allocation_bytes=0)
    assert read_mmsa(path, max_allocation_factor=8, min_allocation_bytes=0)[1]["dataset"] == "mosi"
