"""keras_msa.data.csd: CMU-MultimodalSDK computational sequences.

Fixtures are written with h5py in the SDK's own layout (root group, `data`
and `metadata`, bytes word tokens with `sp`, float32 label rows). The real
CMU-MOSI files are used when present (../shared/data or KERAS_MSA_DATA_DIR).
"""

import json
import os

import h5py
import numpy as np
import pytest

from keras_msa.data.csd import align_sequence
from keras_msa.data.csd import overlapping_rows
from keras_msa.data.csd import read_computational_sequence
from keras_msa.data.csd import read_csd
from keras_msa.data.csd import segment_text
from keras_msa.data.errors import DataFormatError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_csd(path, root, data, metadata=None):
    """Writes a computational sequence as the SDK does."""
    with h5py.File(path, "w") as f:
        g = f.create_group(root)
        d = g.create_group("data")
        for vid, (features, intervals) in data.items():
            v = d.create_group(vid)
            v.create_dataset("features", data=features)
            v.create_dataset("intervals", data=intervals)
        m = g.create_group("metadata")
        meta = {"root name": root, "computational sequence version": "1.0", **(metadata or {})}
        for key, value in meta.items():
            m.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=bytes), data=[value.encode()])
    return str(path)


def words(tokens, times):
    return (np.array([[t.encode()] for t in tokens], dtype="S12"), np.asarray(times, np.float64))


@pytest.fixture
def mini(tmp_path):
    """Two videos: v1 with 3 segments (words, audio), v2 with 2 (words only)."""
    labels = {
        "v1": (np.array([[1.5], [-2.0], [0.4]], np.float32),
               np.array([[0.0, 2.0], [2.0, 4.0], [4.0, 6.0]], np.float32)),
        "v2": (np.array([[3.0], [-3.0]], np.float32), np.array([[1.0, 3.0], [3.0, 5.0]], np.float32)),
    }
    write_csd(tmp_path / "Toy_Labels.csd", "Opinion Segment Labels", labels)
    write_csd(tmp_path / "Toy_TimestampedWords.csd", "Toy_Words", {
        # "great" straddles 1.8-2.3 (both segments); "sp" is silence.
        "v1": words(["sp", "this", "is", "great", "sp", "not", "good", "ok"],
                    [[0, 0.5], [0.5, 1.0], [1.0, 1.8], [1.8, 2.3], [2.3, 3.0], [3.0, 3.5], [3.5, 4.0],
                     [4.5, 5.0]]),
        "v2": words(["sp", "wow", "sp", "bad"], [[0, 1.2], [1.2, 2.0], [2.0, 3.1], [3.2, 4.0]]),
    })
    audio = np.arange(12 * 3, dtype=np.float32).reshape(12, 3)
    write_csd(tmp_path / "Toy_COVAREP.csd", "Toy_COVAREP", {
        "v1": (audio, np.stack([np.arange(12) * 0.5, np.arange(12) * 0.5 + 0.5], 1)),
    })
    (tmp_path / "standard_folds.json").write_text(json.dumps({"train": ["v1"], "dev": ["v2"], "test": []}))
    return tmp_path


def test_read_computational_sequence_layout(mini):
    seq = read_computational_sequence(mini / "Toy_TimestampedWords.csd")
    assert seq.root == "Toy_Words" and seq.is_words and seq.dim == 1
    assert seq.metadata["root name"] == "Toy_Words"
    tokens, intervals = seq.data["v1"]
    assert tokens[3] == "great" and intervals.dtype == np.float64 and intervals.shape == (8, 2)
    labels = read_computational_sequence(mini / "Toy_Labels.csd")
    assert not labels.is_words and labels.dim == 1
    np.testing.assert_array_equal(labels.data["v2"][0], [[3.0], [-3.0]])


def test_overlap_rule_edges():
    iv = np.array([[0.0, 1.0], [1.0, 2.0], [1.5, 2.5], [2.0, 2.0], [3.0, 4.0], [0.5, 0.50005]])
    # [1, 2]: row 0 only touches (excluded), row 1 inside, row 2 straddles (included),
    # row 3 is a point event at the end (excluded: [s, e)), row 5 overlaps < epsilon.
    np.testing.assert_array_equal(overlapping_rows(iv, 1.0, 2.0), [1, 2])
    # [2, 3]: the straddling row 2 belongs here too; the point event at 2.0 too.
    np.testing.assert_array_equal(overlapping_rows(iv, 2.0, 3.0), [2, 3])
    np.testing.assert_array_equal(overlapping_rows(iv, 0.0, 1.0), [0])
    np.testing.assert_array_equal(overlapping_rows(iv, 0.0, 1.0, epsilon=0.0), [0, 5])
    assert overlapping_rows(np.zeros((0, 2)), 0, 1).shape == (0,)
    # Time order even when the file is not sorted.
    np.testing.assert_array_equal(overlapping_rows(np.array([[2.0, 3.0], [0.0, 1.0]]), 0, 5), [1, 0])
    feats, clipped = align_sequence(np.arange(6.0)[:, None], iv, 1.0, 2.0)
    np.testing.assert_array_equal(feats[:, 0], [1, 2])
    np.testing.assert_array_equal(clipped, [[1.0, 2.0], [1.5, 2.0]])


def test_segment_text_rules():
    tokens = np.array(["sp", "a", "b", "", "sp", "c"], dtype=object)
    iv = np.array([[0, 1], [1, 2], [2, 3.4], [3, 3.1], [3.4, 4], [4, 5]], np.float64)
    assert segment_text(tokens, iv, 0.0, 3.0) == "a b"
    assert segment_text(tokens, iv, 3.0, 5.0) == "b c"  # "b" straddles 3.0
    assert segment_text(tokens, iv, 3.0, 5.0, word_rule="midpoint") == "c"
    assert segment_text(tokens, iv, 0.0, 3.0, word_rule="midpoint") == "a b"
    with pytest.raises(ValueError, match="word_rule"):
        segment_text(tokens, iv, 0, 1, word_rule="nearest")


def test_read_csd_builds_examples(mini):
    splits, meta = read_csd(str(mini), dataset="toy", missing_dims={"vision": 4})
    assert sorted(splits) == ["test", "train", "valid"]
    train, valid = splits["train"], splits["valid"]
    assert [e["id"] for e in train] == ["v1_1", "v1_2", "v1_3"]
    assert [float(e["sentiment"]) for e in train] == [1.5, -2.0, np.float32(0.4)]
    assert [e["raw_text"] for e in train] == ["this is great", "great not good", "ok"]
    assert [e["raw_text"] for e in valid] == ["wow", "bad"]
    # Audio rows are 0.5 s: [0, 2] takes rows 0-3, [2, 4] rows 4-7.
    np.testing.assert_array_equal(train[1]["audio"], np.arange(12, 24, dtype=np.float32).reshape(4, 3))
    assert valid[0]["audio"].shape == (0, 3)  # v2 has no audio
    assert train[0]["vision"].shape == (0, 4) and "text" not in train[0]
    assert meta["repairs"] == {"segments_missing_audio": 2, "segments_missing_vision": 5}
    assert meta["label_ranges"] == {}
    assert any(s.endswith("Toy_COVAREP.csd") for s in meta["sources"])
    assert meta["csd"]["word_rule"] == "overlap"


def test_read_csd_repairs_nonfinite_and_counts(mini):
    audio = np.ones((4, 2), np.float32)
    audio[1, 0] = np.nan
    audio[2, 1] = -np.inf
    write_csd(mini / "Toy_COVAREP.csd", "Toy_COVAREP", {"v1": (audio, [[0, 1], [1, 2], [2, 3], [3, 4]])})
    splits, meta = read_csd(str(mini), dataset="mosi")
    assert meta["repairs"]["nonfinite_feature_values_zeroed/audio"] == 2
    assert meta["label_ranges"] == {"sentiment": [-3.0, 3.0]}
    assert np.isfinite(splits["train"][0]["audio"]).all() and splits["train"][0]["audio"][1, 0] == 0
    with pytest.raises(DataFormatError, match="Toy_COVAREP.csd.*v1/features.*NaN/inf"):
        read_csd(str(mini), nonfinite="error")


def _first(path):
    return read_computational_sequence(path)


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("truncated", "not a readable HDF5"),
        ("garbage", "not a readable HDF5"),
        ("no_data", "missing the 'data' group"),
        ("no_intervals", r"data/v1: missing 'intervals'"),
        ("mismatch", r"data/v1: features have 3 rows but intervals have 2"),
        ("bad_shape", r"v1/intervals: intervals must be \(n, 2\)"),
        ("nan_time", r"v1/intervals: non-finite time in row 1"),
        ("backwards", r"v1/intervals: row 0 ends before it starts"),
        ("two_roots", "exactly one root group"),
    ],
)
def test_bad_computational_sequences(tmp_path, case, pattern):
    path = tmp_path / "bad.csd"
    good = {"v1": (np.zeros((2, 2), np.float32), np.array([[0, 1], [1, 2]], np.float64))}
    if case == "truncated":
        write_csd(path, "R", {"v1": (np.zeros((500, 8), np.float32), np.zeros((500, 2)))})
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "garbage":
        path.write_bytes(b"this is not hdf5" * 10)
    elif case == "no_data":
        with h5py.File(path, "w") as f:
            f.create_group("R").create_group("metadata")
    elif case == "no_intervals":
        with h5py.File(path, "w") as f:
            f.create_group("R/data/v1").create_dataset("features", data=np.zeros((2, 2)))
    elif case == "mismatch":
        write_csd(path, "R", {"v1": (np.zeros((3, 2), np.float32), np.zeros((2, 2)))})
    elif case == "bad_shape":
        write_csd(path, "R", {"v1": (np.zeros((2, 2), np.float32), np.zeros((2, 3)))})
    elif case == "nan_time":
        write_csd(path, "R", {"v1": (np.zeros((2, 2), np.float32), np.array([[0, 1], [np.nan, 2]]))})
    elif case == "backwards":
        write_csd(path, "R", {"v1": (np.zeros((2, 2), np.float32), np.array([[1, 0], [1, 2]]))})
    elif case == "two_roots":
        write_csd(path, "R", good)
        with h5py.File(path, "a") as f:
            f.create_group("Other")
    with pytest.raises(DataFormatError, match=pattern) as err:
        read_computational_sequence(path)
    assert str(path) in str(err.value)


def test_bad_labels_and_folds(mini):
    def labels(values):
        write_csd(mini / "Toy_Labels.csd", "L", {
            "v1": (np.array(values, np.float32)[:, None], np.array([[0, 2], [2, 4]], np.float32)),
            "v2": (np.array([[0.0]], np.float32), np.array([[1, 3]], np.float32)),
        })

    labels([1.0, 3.5])
    with pytest.raises(DataFormatError, match=r"Toy_Labels.csd: /L/data/v1/features: row 1: label 3.5 outside"):
        read_csd(str(mini), dataset="mosi")
    read_csd(str(mini), dataset="mosi", label_range=None)  # range check off
    labels([np.nan, 1.0])
    with pytest.raises(DataFormatError, match="row 0: label is nan"):
        read_csd(str(mini), dataset="mosi")
    labels([1.0, 1.0])
    with pytest.raises(DataFormatError, match="'v1' is in both 'train' and 'valid'"):
        read_csd(str(mini), folds={"train": ["v1"], "valid": ["v1"]})
    splits, meta = read_csd(str(mini), folds={"train": ["v1", "ghost"], "test": []})
    assert meta["repairs"]["fold_videos_without_labels"] == 1
    assert meta["repairs"]["labelled_videos_not_in_folds"] == 1
    assert len(splits["train"]) == 2 and splits["test"] == []
    with pytest.raises(DataFormatError, match="bytes tokens"):
        read_csd(str(mini), labels="Toy_TimestampedWords.csd")
    os.remove(mini / "standard_folds.json")
    with pytest.raises(DataFormatError, match="standard_folds.json"):
        read_csd(str(mini))


def test_round_trip_through_tfrecord(mini, tmp_path):
    from keras_msa.data.tfrecord import load_split
    from keras_msa.data.tfrecord import read_examples
    from keras_msa.data.tfrecord import write_dataset

    splits, meta = read_csd(str(mini), dataset="mosi")
    out = tmp_path / "out"
    schema = write_dataset(out, splits, dataset=meta["dataset"], sources=meta["sources"],
                           label_ranges=meta["label_ranges"], repairs=meta["repairs"], progress=False)
    assert schema["splits"] == {"train": 3, "valid": 2, "test": 0}
    assert schema["modalities"]["audio"]["dim"] == 3 and schema["modalities"]["vision"]["missing"] == 5
    for split, examples in splits.items():
        back = list(read_examples(out, split))
        assert [b["id"] for b in back] == [e["id"] for e in examples]
        for b, e in zip(back, examples):
            assert b["raw_text"] == e["raw_text"] and float(b["sentiment"]) == float(e["sentiment"])
            for m in ("text", "audio", "vision"):
                np.testing.assert_array_equal(b[m], e[m])
    inputs, targets = next(iter(load_split(out, "train", batch_size=3)))
    assert not inputs["vision_mask"].numpy().any() and not inputs["text_mask"].numpy().any()
    assert inputs["audio_mask"].numpy().sum(1).tolist() == [4, 4, 4]


def mosi_dir():
    candidates = [os.path.join(os.environ["KERAS_MSA_DATA_DIR"], "cmu_mosi")] if "KERAS_MSA_DATA_DIR" in os.environ else []
    candidates.append(os.path.join(ROOT, "..", "shared", "data", "cmu_mosi"))
    for c in candidates:
        if os.path.isfile(os.path.join(c, "CMU_MOSI_Opinion_Labels.csd")):
            return c
    return None


def test_real_cmu_mosi():
    d = mosi_dir()
    if d is None:
        pytest.skip("real CMU-MOSI .csd files not found: put CMU_MOSI_Opinion_Labels.csd, "
                    "CMU_MOSI_ModifiedTimestampedWords.csd and standard_folds.json in "
                    "../shared/data/cmu_mosi or $KERAS_MSA_DATA_DIR/cmu_mosi")
    splits, meta = read_csd(d, dataset="mosi")
    sizes = {k: len(v) for k, v in splits.items()}
    assert sizes == {"train": 1284, "valid": 229, "test": 686}
    labels = read_computational_sequence(os.path.join(d, "CMU_MOSI_Opinion_Labels.csd"))
    examples = [e for v in splits.values() for e in v]
    assert len({e["id"] for e in examples}) == 2199
    for e in examples:
        vid, k = e["id"].rsplit("_", 1)
        assert float(e["sentiment"]) == float(labels.data[vid][0][int(k) - 1, 0])
    with_text = np.mean([bool(e["raw_text"]) for e in examples])
    assert with_text >= 0.99
    assert meta["repairs"]["segments_without_words"] == round((1 - with_text) * 2199)
    for e in examples[:5]:
        vid, k = e["id"].rsplit("_", 1)
        print(f"{vid}\t{k}\t{e['raw_text']}\t{float(e['sentiment']):+.2f}")


def test_discovery_by_sdk_file_names(mini):
    from keras_msa.data.csd import discover_features

    write_csd(mini / "Toy_Visual_Facet_41.csd", "F", {"v1": (np.ones((2, 4), np.float32), [[0, 3], [3, 6]])})
    write_csd(mini / "Toy_TimestampedWordVectors.csd", "G", {"v1": (np.ones((2, 6), np.float32), [[0, 3], [3, 6]])})
    found = {m: os.path.basename(p) for m, p in discover_features(str(mini)).items()}
    assert found == {"audio": "Toy_COVAREP.csd", "vision": "Toy_Visual_Facet_41.csd",
                     "text": "Toy_TimestampedWordVectors.csd"}
    splits, meta = read_csd(str(mini))
    assert splits["train"][0]["text"].shape == (1, 6) and splits["train"][0]["raw_text"] == "this is great"
    write_csd(mini / "Toy_OpenFace2.csd", "O", {"v1": (np.ones((2, 4), np.float32), [[0, 3], [3, 6]])})
    with pytest.raises(DataFormatError, match="two vision feature files"):
        read_csd(str(mini))


def test_without_words(mini):
    splits, meta = read_csd(str(mini), words=False, features={}, missing_dims=None)
    assert "raw_text" not in splits["train"][0] and set(splits["train"][0]) == {"id", "sentiment"}
    assert not any(s.endswith("Words.csd") for s in meta["sources"])


def test_summary_says_what_the_dataset_holds(mini, tmp_path_factory, load_recipe):
    """Raw text but no text features is what a words-only .csd holds; the
    summary says so instead of "text: length 0..0, missing in 5"."""
    convert = load_recipe("convert")
    tmp_path = tmp_path_factory.mktemp("converted")  # outside the input, as convert asks
    out = tmp_path / "out"
    schema = convert.convert("csd", str(mini), str(out), dataset="mosi", progress=False)
    holds = schema["extra"]["holds"]
    assert holds["raw_text"] == "raw text for 5 of 5 segments (from Toy_TimestampedWords.csd)"
    assert holds["audio"] == "features for 3 of 5 segments (from Toy_COVAREP.csd, dim 3)"
    text = convert.summary(schema, str(out))
    assert "  raw_text: raw text for 5 of 5 segments" in text
    assert ("  text: no text features in the source: every segment carries text as missing (dim 768 reserved, "
            "all-False mask); extract them from the raw text with recipes/extract_text_features.py") in text
    assert "  audio: dim 3, length 0..4, missing in 2 (features for 3 of 5 segments" in text
    d = mosi_dir()
    if d is not None:
        schema = convert.convert("csd", d, str(tmp_path / "mosi"), dataset="mosi", progress=False)
        text = convert.summary(schema, str(tmp_path / "mosi"))
        assert "raw_text: raw text for 2198 of 2199 segments" in text and "missing in 2199" not in text
