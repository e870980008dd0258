"""keras_msa.data.labelcsv: MMSA-FET label.csv + per-clip .npy/.npz."""

import os
import re

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


def _set_ids(d, vid, cid, line=0):
    """Rewrites the ids of data row `line` (0-based) of label.csv."""
    p = d / "label.csv"
    lines = p.read_text().splitlines(keepends=True)
    cells = lines[1 + line].split(",")
    cells[0], cells[1] = vid, cid
    lines[1 + line] = ",".join(cells)
    p.write_text("".join(lines))


def _secret_npz(tmp_path, name="1"):
    secret = tmp_path / "secret"
    secret.mkdir(exist_ok=True)
    np.savez(secret / f"{name}.npz", text=np.full((2, 4), 7.0, np.float32))
    return secret


@pytest.mark.parametrize("where", ["dotdot_video", "dotdot_clip", "absolute", "separator", "dot"])
def test_ids_cannot_lead_reads_out_of_the_input(tmp_path, where):
    d = tmp_path / "in"
    d.mkdir()
    write_fixture(d)
    secret = _secret_npz(tmp_path, "x")
    vid, cid, column = {
        "dotdot_video": ("../../secret", "x", "video_id"),
        "dotdot_clip": ("vA", "../../../secret/x", "clip_id"),
        "absolute": (str(secret), "x", "video_id"),
        "separator": ("vA", "sub/1", "clip_id"),
        "dot": ("..", "x", "video_id"),
    }[where]
    _set_ids(d, vid, cid, line=2)
    bad = cid if column == "clip_id" else vid
    with pytest.raises(DataFormatError, match=rf"label.csv: line 4, column {column}: {column} '{re.escape(bad)}'"):
        read_labelcsv(str(d), dataset="sims")


def test_symlinks_out_of_the_input_are_refused(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_fixture(d)
    secret = _secret_npz(tmp_path, "1")
    import shutil

    shutil.rmtree(d / "features" / "vA")
    os.symlink(secret, d / "features" / "vA")
    with pytest.raises(DataFormatError, match=r"vA/1.npz: line 2 \(vA\$_\$1\): resolves to .*secret/1.npz, outside"):
        read_labelcsv(str(d), dataset="sims")
    # A symlink that stays inside the input directory is fine.
    os.remove(d / "features" / "vA")
    os.rename(secret, d / "features" / "elsewhere")
    np.savez(d / "features" / "elsewhere" / "1.npz", text=np.ones((3, 4), np.float32),
             audio=np.ones((5, 2), np.float32), vision=np.ones(6, np.float32))
    os.symlink(d / "features" / "elsewhere", d / "features" / "vA")
    splits, _ = read_labelcsv(str(d), dataset="sims")
    assert splits["train"][0]["text"].shape == (3, 4)


def test_field_counts_header_only_and_na_text(tmp_path):
    write_fixture(tmp_path)
    p = tmp_path / "label.csv"
    good = p.read_text()
    lines = good.splitlines(keepends=True)
    lines[1] = lines[1].replace('"i love it"', "i, love, it")  # two unquoted commas
    lines[3] = lines[3].replace('"so so"', "so, so")
    p.write_text("".join(lines))
    with pytest.raises(DataFormatError, match=r"label.csv: 2 row\(s\) do not have the header's 9 fields: "
                                              r"line 2 \(11 fields\), line 4 \(10 fields\); a comma .* quoted"):
        read_labelcsv(str(tmp_path))
    p.write_text(HEADER)
    with pytest.raises(DataFormatError, match="label.csv: no rows after the header"):
        read_labelcsv(str(tmp_path))
    # A quoted text spanning two lines shifts the line numbers of what follows.
    p.write_text(good.replace('"not, really"', '"not,\nreally"').replace('"so so"', "nan"))
    splits, meta = read_labelcsv(str(tmp_path), dataset="sims")
    assert splits["valid"][0]["raw_text"] == "" and meta["repairs"] == {"text_na_markers_emptied": 1}
    assert splits["train"][1]["raw_text"] == "not,\nreally"
    assert meta["holds"]["raw_text"] == "raw text for 3 of 4 clips"
    p.write_text(good.replace("vB,2", "vB,1", 1).replace('"not, really"', '"not,\nreally"'))
    with pytest.raises(DataFormatError, match=r"line 6 \(vB\$_\$1\): duplicate \(video_id, clip_id\) of line 5"):
        read_labelcsv(str(tmp_path))


def test_missing_modality_is_carried_as_missing(tmp_path):
    """No audio file for any clip: audio is still in every example (empty,
    masked out), as the .csd reader does; the width comes from the dataset or
    `modality_dims`, and the error names that option."""
    import shutil

    from keras_msa.data.tfrecord import load_split
    from keras_msa.data.tfrecord import write_dataset

    d = tmp_path / "in"
    d.mkdir()
    write_fixture(d)
    shutil.rmtree(d / "features" / "audio")
    for npz in (d / "features").glob("*/*.npz"):
        with np.load(npz) as z:
            kept = {k: z[k] for k in z.files if k != "audio"}
        np.savez(npz, **kept)
    with pytest.raises(DataFormatError, match=r"no audio feature file for any clip .* pass modality_dims=\{'audio': D\}"):
        read_labelcsv(str(d), dataset="custom")
    splits, meta = read_labelcsv(str(d), dataset="custom", modality_dims={"audio": 33})
    assert all(e["audio"].shape == (0, 33) for v in splits.values() for e in v)
    assert meta["repairs"]["clips_missing_audio"] == 4 and "dim 33 reserved" in meta["holds"]["audio"]
    splits, meta = read_labelcsv(str(d), dataset="sims")  # SIMS: MMSA's audio width
    assert splits["test"][0]["audio"].shape == (0, 33)
    with pytest.raises(DataFormatError, match=r"text width 4 differs from modality_dims\['text'\]=768"):
        read_labelcsv(str(d), dataset="custom", modality_dims={"audio": 33, "text": 768})
    out = tmp_path / "out"
    write_dataset(out, splits, dataset="sims", sources=meta["sources"], label_ranges=meta["label_ranges"],
                  repairs=meta["repairs"], progress=False)
    inputs, _ = next(iter(load_split(out, "train", batch_size=2)))
    assert inputs["audio"].shape[-1] == 33 and not inputs["audio_mask"].numpy().any()
    assert inputs["text_mask"].numpy().any()


def test_no_feature_files_at_all(tmp_path):
    import shutil

    write_fixture(tmp_path)
    shutil.rmtree(tmp_path / "features")
    with pytest.raises(DataFormatError, match=r"no feature file for any of the 4 clips \(expected features/"):
        read_labelcsv(str(tmp_path), dataset="sims")
    splits, meta = read_labelcsv(str(tmp_path), dataset="sims",
                                 modality_dims={"text": 768, "audio": 33, "vision": 709})
    assert splits["train"][0]["vision"].shape == (0, 709) and splits["train"][0]["raw_text"] == "i love it"
    assert "extract_text_features.py" in meta["holds"]["text"]


def test_forged_array_headers_and_values(tmp_path):
    import zipfile

    write_fixture(tmp_path)
    npy = tmp_path / "features" / "text" / "vA" / "2.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 4), np.float32))
    header["shape"] = (10**6, 10**5)  # 400 GB declared, 16 bytes of body
    with open(npy, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 16)
    with pytest.raises(DataFormatError, match=r"2.npy: the header declares \(1000000, 100000\) float32 .*truncated or forged"):
        read_labelcsv(str(tmp_path))
    np.save(npy, np.ones((3, 4)))
    npz = tmp_path / "features" / "vA" / "1.npz"
    with zipfile.ZipFile(npz, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("text.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
    with pytest.raises(DataFormatError, match=r"1.npz: text: the array declares .* over the cap of 256.0 MiB; "
                                              r"pass max_array_bytes"):
        read_labelcsv(str(tmp_path))
    np.savez(npz, text=np.zeros((0, 4)), audio=np.ones((5, 2)), vision=np.ones(6))
    _, meta = read_labelcsv(str(tmp_path))
    assert meta["repairs"] == {"clips_with_empty_text_array": 1}
    np.savez(npz, text=np.full((3, 4), 1e39), audio=np.ones((5, 2)), vision=np.ones(6))
    with pytest.raises(DataFormatError, match=r"1.npz: text: 12 finite values exceed the float32 range"):
        read_labelcsv(str(tmp_path))


def test_nan_label_without_range_is_a_clear_error(tmp_path):
    write_fixture(tmp_path)
    p = tmp_path / "label.csv"
    p.write_text(p.read_text().replace("0.8,0.6", "nan,0.6", 1))
    with pytest.raises(DataFormatError, match=r"line 2 \(vA\$_\$1\): label is 'nan': a label must be a finite"):
        read_labelcsv(str(tmp_path), label_range=None)
