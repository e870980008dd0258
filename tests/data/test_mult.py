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
    raw = mult_arrays(kind="urfunny", dims=(12, 8, 6))  # widths of no sentiment release
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


def test_invalid_iemocap_pairs_name_example_and_emotion(tmp_path):
    # Before, (1, 1) and (0, 0) silently became "absent" (argmax 0).
    for pair in ([1.0, 1.0], [0.0, 0.0]):
        raw = mult_arrays(kind="iemocap", dims=(6, 74, 35))
        raw["valid"]["labels"][2, 1] = pair
        _error(tmp_path, raw, rf"valid/labels: example 2, emotion 'sad': \(not, is\) pair \{pair}",
               name="iemocap_data.pkl")


def test_dataset_from_content(tmp_path):
    (tmp_path / "iemocap_runs").mkdir()
    # A MOSEI file in a directory named for IEMOCAP: the content decides.
    raw = mult_arrays(dims=(12, 74, 35))
    _, meta = read_mult(write_pickle(raw, tmp_path / "iemocap_runs" / "data.pkl"))
    assert meta["dataset"] == "mosei" and "MOSEI's" in meta["dataset_evidence"]
    # IEMOCAP labels decide even with MOSEI's widths; an explicit mosei contradicts them.
    raw = mult_arrays(kind="iemocap", dims=(12, 74, 35))
    path = write_pickle(raw, tmp_path / "data.pkl")
    assert read_mult(path)[1]["dataset"] == "iemocap"
    with pytest.raises(DataFormatError, match=r"--dataset=mosei contradicts .*\(N, 4, 2\) emotion pairs"):
        read_mult(path, dataset="mosei")
    with pytest.raises(DataFormatError, match="file name says MOSI but .*MOSEI's"):
        read_mult(write_pickle(mult_arrays(dims=(12, 74, 35)), tmp_path / "mosi_data.pkl"))
    with pytest.raises(ValueError, match="unknown dataset.*'iemocap', 'mosei', 'mosi', 'urfunny'"):
        read_mult(path, dataset="meld")
    with pytest.raises(DataFormatError, match="cannot tell which dataset"):
        read_mult(write_pickle(mult_arrays(dims=(12, 8, 6)), tmp_path / "data.pkl"))


def test_ids_empty_split_overflow(tmp_path):
    raw = mult_arrays()
    raw["valid"]["id"][1] = raw["valid"]["id"][0]
    _error(tmp_path, raw, r"valid/id: 1 duplicate id\(s\) in the split: \['vvalid0\$_\$0'\]")
    raw = mult_arrays()
    raw["test"]["id"] = raw["test"]["id"].astype(object)  # wide enough for a train id
    raw["test"]["id"][0] = raw["train"]["id"][0]
    _error(tmp_path, raw, "test/id: 1 id.* also in another split: 'vtrain0\\$_\\$0' \\(in train\\)")
    raw = mult_arrays()
    raw["test"]["vision"] = raw["test"]["vision"].astype(np.float64)
    raw["test"]["vision"][0, -1, 0] = 1e300
    _error(tmp_path, raw, r"value 1e\+300 in 'vision' of split test .* overflows float32")
    raw = mult_arrays()
    raw["valid"] = {k: v[:0] for k, v in raw["valid"].items()}
    splits, _ = read_mult(write_pickle(raw, tmp_path / "mosi_data.pkl"))
    assert splits["valid"] == [] and len(splits["test"]) == 4
    with pytest.raises(DataFormatError, match="is a directory"):
        read_mult(tmp_path)
