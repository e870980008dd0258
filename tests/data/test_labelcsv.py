"""keras_msa.data.labelcsv: MMSA-FET label.csv + per-clip .npy/.npz."""

import os

import numpy as np
import pytest

from keras_msa.data.errors import DataFormatError
from keras_msa.data.labelcsv import read_labelcsv

HEADER = "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"


def write_fixture(d, unimodal=True, rows=None):
    rows = rows or [
        ("vA", "1", "i love it", 0.8, 0.6, 0.2, 1.0, "Positive", "train"),
        ("vA", "2", "not, really", -0.4, -0.2, 0.0, -0.6, "Negative", "train"),
        ("vB", "1", "so so", 0.0, 0.2, -0.2, 0.0, "Neutral", "valid"),
        ("vB", "2", "great", 1.0, 1.0, 0.8, 0.6, "Positive", "test"),
    ]
    lines = [HEADER]
    for vid, cid, text, y, yt, ya, yv, ann, mode in rows:
        uni = f"{yt},{ya},{yv}" if unimodal else ",,"
        lines.append(f'{vid},{cid},"{text}",{y},{uni},{ann},{mode}\n')
    (d / "label.csv").write_text("".join(lines))
    rng = np.random.default_rng(0)
    arrays = {}
    for i, (vid, cid, *_rest) in enumerate(rows):
        t, a, v = (rng.standard_normal((3 + i, 4)).astype(np.float32), rng.standard_normal((5, 2)).astype(np.float32),
                   rng.standard_normal(6).astype(np.float32))
        arrays[(vid, cid)] = {"text": t, "audio": a, "vision": v[None]}
        if i % 2 == 0:  # one .npz per clip
            os.makedirs(d / "features" / vid, exist_ok=True)
            np.savez(d / "features" / vid / f"{cid}.npz", text=t, audio=a, vision=v)
        else:  # one .npy per modality
            for m, x in (("text", t), ("audio", a), ("vision", v)):
                os.makedirs(d / "features" / m / vid, exist_ok=True)
                np.save(d / "features" / m / vid / f"{cid}.npy", x)
    return arrays


def test_reads_both_layouts_and_unimodal_labels(tmp_path):
    arrays = write_fixture(tmp_path)
    splits, meta = read_labelcsv(str(tmp_path), dataset="sims")
    assert {k: len(v) for k, v in splits.items()} == {"train": 2, "valid": 1, "test": 1}
    ex = splits["train"][1]
    assert ex["id"] == "vA$_$2" and ex["raw_text"] == "not, really"
    assert float(ex["sentiment"]) == np.float32(-0.4) and float(ex["sentiment_vision"]) == np.float32(-0.6)
    for e in [x for v in splits.values() for x in v]:
        vid, cid = e["id"].split("$_$")
        for m in ("text", "audio", "vision"):
            np.testing.assert_array_equal(e[m], arrays[(vid, cid)][m])
    assert meta["label_ranges"]["sentiment"] == [-1.0, 1.0] and "sentiment_text" in meta["label_ranges"]
    assert meta["repairs"] == {}
    assert meta["sources"][0].endswith("label.csv") and len(meta["sources"]) == 1 + 2 + 6


def test_empty_unimodal_columns_missing_clips_and_nonfinite(tmp_path):
    write_fixture(tmp_path, unimodal=False)
    os.remove(tmp_path / "features" / "audio" / "vA" / "2.npy")
    x = np.load(tmp_path / "features" / "text" / "vB" / "2.npy")
    x[0, 0] = np.inf
    np.save(tmp_path / "features" / "text" / "vB" / "2.npy", x)
    splits, meta = read_labelcsv(str(tmp_path), dataset="mosi")
    ex = splits["train"][1]
    assert "sentiment_text" not in ex and ex["audio"].shape == (0, 2)
    assert splits["test"][0]["text"][0, 0] == 0
    assert meta["repairs"] == {"clips_missing_audio": 1, "nonfinite_feature_values_zeroed/text": 1}
    assert meta["label_ranges"] == {"sentiment": [-3.0, 3.0]}
    with pytest.raises(DataFormatError, match=r"features/text/vB/2.npy: text: 1 NaN/inf"):
        read_labelcsv(str(tmp_path), nonfinite="error")


def test_round_trip_through_tfrecord(tmp_path):
    from keras_msa.data.tfrecord import read_examples
    from keras_msa.data.tfrecord import write_dataset

    (tmp_path / "in").mkdir()
    write_fixture(tmp_path / "in")
    splits, meta = read_labelcsv(str(tmp_path / "in"), dataset="sims")
    out = tmp_path / "out"
    write_dataset(out, splits, dataset="sims", sources=meta["sources"], label_ranges=meta["label_ranges"],
                  repairs=meta["repairs"], progress=False)
    for split, examples in splits.items():
        for b, e in zip(read_examples(out, split), examples):
            assert b["id"] == e["id"] and b["raw_text"] == e["raw_text"]
            for k in ("sentiment", "sentiment_text", "sentiment_audio", "sentiment_vision"):
                assert float(b[k]) == float(e[k])
            for m in ("text", "audio", "vision"):
                np.testing.assert_array_equal(b[m], e[m])


@pytest.mark.parametrize(
    "mutate, pattern",
    [
        (lambda t: t.replace(",train\n", ",training\n", 1), r"label.csv: line 2 \(vA\$_\$1\): mode 'training'"),
        (lambda t: t.replace("0.8,0.6", "4.0,0.6", 1), r"line 2 \(vA\$_\$1\): label 4.0 outside \[-3.0, 3.0\]"),
        (lambda t: t.replace("0.8,0.6", "abc,0.6", 1), "label 'abc' is not a number"),
        (lambda t: t.replace(",mode", ",split", 1), r"missing columns \['mode'\]"),
        (lambda t: t.replace("vB,2", "vB,1", 1), r"line 5 \(vB\$_\$1\): duplicate"),
        (lambda t: t.replace("0.6,0.2,1.0", ",0.2,1.0", 1), "label_T is filled for some rows but empty on line 2"),
    ],
)
def test_bad_label_csv(tmp_path, mutate, pattern):
    write_fixture(tmp_path)
    p = tmp_path / "label.csv"
    p.write_text(mutate(p.read_text()))
    with pytest.raises(DataFormatError, match=pattern):
        read_labelcsv(str(tmp_path), dataset="mosi")


def test_bad_arrays(tmp_path):
    write_fixture(tmp_path)
    bad = tmp_path / "features" / "vA" / "1.npz"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataFormatError, match=r"vA/1.npz: text: cannot read the array"):
        read_labelcsv(str(tmp_path))
    np.savez(bad, text=np.zeros((2, 2, 2), np.float32))
    with pytest.raises(DataFormatError, match=r"expected \(L, D\) or \(D,\)"):
        read_labelcsv(str(tmp_path))
    np.savez(bad, text=np.zeros((2, 9), np.float32))
    with pytest.raises(DataFormatError, match="text width 4 differs from other clips' 9"):
        read_labelcsv(str(tmp_path))
    np.save(tmp_path / "features" / "text" / "vA" / "2.npy", np.array(["a", "b"]))
    np.savez(bad, text=np.zeros((2, 4), np.float32))
    with pytest.raises(DataFormatError, match="expected numbers"):
        read_labelcsv(str(tmp_path))
    with pytest.raises(DataFormatError, match="no label.csv"):
        read_labelcsv(str(tmp_path / "features"))
