"""MulT pickle reader: MOSI/MOSEI sentiment, IEMOCAP emotions, UR-FUNNY
humour, front padding, round trip, errors."""

import numpy as np
import pytest

from keras_msa.data.errors import DataFormatError
from keras_msa.data.fixtures import mult_arrays
from keras_msa.data.fixtures import write_pickle
from keras_msa.data.mult import read_mult
from keras_msa.data.tfrecord import load_split
from keras_msa.data.tfrecord import read_examples
from keras_msa.data.tfrecord import write_dataset


def _valid_len(d, i):
    rows = np.abs(np.concatenate([d["text"][i], d["audio"][i], d["vision"][i]], axis=1)).sum(axis=1) > 0
    return len(rows) - int(np.argmax(rows))


def test_mosi_front_padding_and_round_trip(tmp_path):
    raw = mult_arrays(kind="mosi")
    raw["train"]["audio"][0, -1, 0] = -np.inf
    path = write_pickle(raw, tmp_path / "mosi_data.pkl")
    splits, meta = read_mult(path)
    assert meta["dataset"] == "mosi" and meta["repairs"] == {"audio_neg_inf_to_zero": 1}
    for split, d in raw.items():
        for i, ex in enumerate(splits[split]):
            L = _valid_len(d, i)
            assert ex["id"] == f"v{split}{i}$_${i}"
            np.testing.assert_array_equal(ex["text"], d["text"][i, -L:])
            assert len(ex["audio"]) == len(ex["vision"]) == L
            assert ex["sentiment"] == d["labels"][i, 0, 0]
    assert splits["train"][0]["audio"][-1, 0] == 0
    out = tmp_path / "ds"
    write_dataset(out, splits, dataset=meta["dataset"], label_ranges=meta["label_ranges"], repairs=meta["repairs"],
                  sources=meta["sources"], progress=False)
    back = list(read_examples(out, "test"))
    for a, b in zip(splits["test"], back):
        assert a["text"].tobytes() == b["text"].tobytes() and a["sentiment"] == b["sentiment"]
    x, y = next(iter(load_split(out, "test", batch_size=4)))
    assert x["text"].shape[0] == 4 and y["sentiment"].shape == (4, 1)


def test_iemocap_emotions(tmp_path):
    raw = mult_arrays(kind="iemocap", dims=(6, 74, 35), with_ids=False)
    splits, meta = read_mult(write_pickle(raw, tmp_path / "iemocap_data.pkl"))
    assert meta["dataset"] == "iemocap" and meta["repairs"] == {"ids_generated": 13}
    for i, ex in enumerate(splits["valid"]):
        np.testing.assert_array_equal(ex["emotions"], raw["valid"]["labels"][i, :, 1])
        assert ex["id"] == f"valid_{i:06d}" and "sentiment" not in ex
    out = tmp_path / "ds"
    write_dataset(out, splits, dataset="iemocap", label_ranges=meta["label_ranges"], progress=False)
    _, y = next(iter(load_split(out, "train", batch_size=6)))
    np.testing.assert_array_equal(y["emotions"].numpy(), raw["train"]["labels"][:, :, 1])


def test_urfunny_humor(tmp_path):
    raw = mult_arrays(kind="urfunny")
    splits, meta = read_mult(write_pickle(raw, tmp_path / "data.pkl"), dataset="ur_funny")
    assert meta["dataset"] == "urfunny" and meta["label_ranges"] == {"humor": (0.0, 1.0)}
    assert [ex["humor"] for ex in splits["test"]] == list(raw["test"]["labels"][:, 0])


def test_all_zero_example_is_counted(tmp_path):
    raw = mult_arrays()
    for m in ("text", "audio", "vision"):
        raw["valid"][m][1] = 0
    splits, meta = read_mult(write_pickle(raw, tmp_path / "mosi_data.pkl"))
    assert meta["repairs"] == {"all_zero_examples": 1} and len(splits["valid"][1]["text"]) == 0


def _error(tmp_path, raw, match, name="mosi_data.pkl", **kw):
    path = write_pickle(raw, tmp_path / name)
    with pytest.raises(DataFormatError, match=match) as info:
        read_mult(path, **kw)
    assert name in str(info.value)


def test_bad_inputs(tmp_path):
    raw = mult_arrays()
    del raw["test"]
    _error(tmp_path, raw, "missing split")
    raw = mult_arrays()
    del raw["train"]["labels"]
    _error(tmp_path, raw, "train: missing key")
    raw = mult_arrays()
    raw["valid"]["audio"] = raw["valid"]["audio"][:2]
    _error(tmp_path, raw, "valid: arrays disagree")
    raw = mult_arrays()
    raw["test"]["text"][0, -1, 0] = np.nan
    _error(tmp_path, raw, "test/text: 1 non-finite")
    raw = mult_arrays()
    raw["train"]["labels"][3, 0, 0] = 4.0
    _error(tmp_path, raw, r"train/labels: 1 label\(s\) outside \[-3.0, 3.0\] \(first: example 3")
    raw = mult_arrays(kind="iemocap")
    raw["train"]["labels"][0, 0] = [0.5, 0.5]
    _error(tmp_path, raw, "0/1", name="iemocap_data.pkl")
    raw = mult_arrays()
    raw["train"]["vision"] = raw["train"]["vision"][:, :5]
    _error(tmp_path, raw, "word-aligned")
    path = write_pickle(mult_arrays(), tmp_path / "mosi_data.pkl")
    with open(path, "r+b") as f:
        f.truncate(50)
    with pytest.raises(DataFormatError, match="truncated|corrupt"):
        read_mult(path)
