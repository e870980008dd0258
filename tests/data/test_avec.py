"""keras_msa.data.avec: AVEC 2019 DDS labels + per-session feature files."""

import os
import re

import numpy as np
import pytest

from keras_msa.data.avec import read_avec
from keras_msa.data.avec import read_feature_file
from keras_msa.data.avec import write_synthetic_avec
from keras_msa.data.errors import DataFormatError


@pytest.fixture
def avec_dir(tmp_path):
    truth = write_synthetic_avec(tmp_path, n_train=6, n_dev=3, n_test=3, seed=3, frames=(10, 20))
    return tmp_path, truth


def test_synthetic_avec_reads_back(avec_dir):
    d, truth = avec_dir
    splits, meta = read_avec(str(d))
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "valid": 3, "test": 3}
    assert meta["label_ranges"] == {"phq8": [0.0, 24.0]} and meta["repairs"] == {}
    for split, name in (("train", "train"), ("valid", "dev"), ("test", "test")):
        assert {e["id"]: float(e["phq8"]) for e in splits[split]} == {k: float(v) for k, v in truth[name].items()}
    ex = splits["train"][0]
    # No word-feature set: text is carried as missing (DATA.md), not left out.
    assert set(ex) == {"id", "phq8", "text", "audio", "vision"} and ex["text"].shape == (0, 768)
    assert ex["audio"].dtype == np.float32 and ex["audio"].shape[1] == 6 and ex["vision"].shape[1] == 8
    assert ex["audio"].shape[0] == ex["vision"].shape[0]
    # The known signal: frame means of channel 0 predict PHQ-8.
    a = np.array([e["audio"][:, 0].mean() + e["vision"][:, 0].mean() for v in splits.values() for e in v])
    y = np.array([float(e["phq8"]) for v in splits.values() for e in v])
    assert np.corrcoef(a, y)[0, 1] > 0.9


def test_feature_csv_parsing_and_pooling(avec_dir, tmp_path):
    d, _ = avec_dir
    x, bad = read_feature_file(str(d / "300_P" / "features" / "300_OpenSMILE2.3.0_egemaps.csv"))
    assert bad == 0 and x.shape[1] == 6  # name and frameTime dropped
    pooled, _ = read_avec(str(d), pool=4, max_len=2)
    full, _ = read_avec(str(d))
    a, b = pooled["train"][0]["audio"], full["train"][0]["audio"]
    assert a.shape == (2, 6)
    np.testing.assert_allclose(a[0], b[:4].mean(0), rtol=1e-6)
    np.save(tmp_path / "x.npy", np.arange(6, dtype=np.float64).reshape(3, 2))
    arr, _ = read_feature_file(str(tmp_path / "x.npy"))
    assert arr.dtype == np.float32 and arr.shape == (3, 2)


def test_round_trip_through_tfrecord(avec_dir, tmp_path):
    from keras_msa.data.tfrecord import read_examples
    from keras_msa.data.tfrecord import write_dataset

    d, _ = avec_dir
    splits, meta = read_avec(str(d))
    out = tmp_path / "out"
    schema = write_dataset(out, splits, dataset=meta["dataset"], sources=meta["sources"],
                           label_ranges=meta["label_ranges"], repairs=meta["repairs"], progress=False)
    assert list(schema["labels"]) == ["phq8"] and schema["dataset"] == "avec2019"
    back = list(read_examples(out, "valid"))
    for b, e in zip(back, splits["valid"]):
        assert b["id"] == e["id"] and float(b["phq8"]) == float(e["phq8"])
        np.testing.assert_array_equal(b["audio"], e["audio"])
        np.testing.assert_array_equal(b["vision"], e["vision"])


def test_lenient_columns_missing_sessions_and_repairs(avec_dir):
    d, _ = avec_dir
    # DAIC-WOZ-style header, labels in the root folder.
    os.rename(d / "labels" / "train_split.csv", d / "train_split_Depression_AVEC2017.csv")
    text = (d / "train_split_Depression_AVEC2017.csv").read_text()
    (d / "train_split_Depression_AVEC2017.csv").write_text(
        text.replace("Participant_ID,Gender,PHQ_Binary,PHQ_Score", "Participant_ID,Gender,PHQ8_Binary,PHQ8_Score"))
    os.rename(d / "labels" / "dev_split.csv", d / "dev_split.csv")
    os.rename(d / "labels" / "test_split.csv", d / "test_split.csv")
    os.remove(d / "301_P" / "features" / "301_OpenFace2.1.0_Pose_gaze_AUs.csv")
    path = d / "302_P" / "features" / "302_OpenSMILE2.3.0_egemaps.csv"
    lines = path.read_text().splitlines()
    cells = lines[1].split(";")
    cells[2], cells[3] = "nan", "oops"
    lines[1] = ";".join(cells)
    path.write_text("\n".join(lines) + "\n")
    splits, meta = read_avec(str(d))
    assert len(splits["train"]) == 6
    assert meta["repairs"] == {"sessions_missing_vision": 1, "nonfinite_feature_values_zeroed/audio": 1,
                               "non_numeric_feature_values_zeroed/audio": 1}
    assert splits["train"][1]["vision"].shape == (0, 8)
    assert splits["train"][2]["audio"][0, 0] == 0 and splits["train"][2]["audio"][0, 1] == 0
    with pytest.raises(DataFormatError, match="302_OpenSMILE2.3.0_egemaps.csv: audio: 2 NaN/inf"):
        read_avec(str(d), nonfinite="error")


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda t: t.replace(",18\n", ",25\n", 1), r"train_split.csv: line \d+ participant \d+: PHQ-8 25.0 outside"),
        (lambda t: t.replace("PHQ_Score", "Score"), "needs a participant column"),
        (lambda t: t.replace(",18\n", ",x\n", 1), "PHQ-8 'x' is not a number"),
        (lambda t: t + t.splitlines()[1] + "\n", "participant listed twice"),
    ],
)
def test_bad_labels(avec_dir, edit, pattern):
    d, truth = avec_dir
    p = d / "labels" / "train_split.csv"
    text = p.read_text()
    if ",18\n" not in text:
        pid = next(iter(truth["train"]))
        text = text.replace(f",{truth['train'][pid]}\n", ",18\n", 1)
    p.write_text(edit(text))
    with pytest.raises(DataFormatError, match=pattern):
        read_avec(str(d))


def test_bad_features_and_layout(avec_dir):
    d, _ = avec_dir
    dev = (d / "labels" / "dev_split.csv").read_text().splitlines()[1]
    test = d / "labels" / "test_split.csv"
    test.write_text("Participant_ID,PHQ_Score\n" + ",".join(dev.split(",")[::3]) + "\n")
    with pytest.raises(DataFormatError, match="in both valid and test"):
        read_avec(str(d))
    test.write_text("Participant_ID,PHQ_Score\n")
    with pytest.raises(DataFormatError, match="no label split files"):
        read_avec(str(d / "300_P"))
    with pytest.raises(DataFormatError, match="no '<pid>_nope.csv"):
        read_avec(str(d), vision="nope")
    f = d / "300_P" / "features" / "300_OpenSMILE2.3.0_egemaps.csv"
    f.write_text("name;frameTime\n'a';0.1\n")
    with pytest.raises(DataFormatError, match="300_OpenSMILE2.3.0_egemaps.csv: no feature column"):
        read_avec(str(d))
    f.write_text("name;frameTime;x;y\n'a';0.1;1;2;3\n")
    with pytest.raises(DataFormatError, match="line 2 has 5 fields"):
        read_avec(str(d))
    f.write_text("name;frameTime;x\n'a';0.1;1\n")
    with pytest.raises(DataFormatError, match="301_OpenSMILE2.3.0_egemaps.csv: audio width 6 differs .* 1"):
        read_avec(str(d))


def test_daic_woz_style_test_files(avec_dir):
    d, truth = avec_dir
    # DAIC-WOZ ships a score-less test list next to full_test_split.csv.
    text = (d / "labels" / "test_split.csv").read_text()
    os.rename(d / "labels" / "test_split.csv", d / "labels" / "full_test_split.csv")
    ids = [line.split(",")[0] for line in text.splitlines()[1:]]
    (d / "labels" / "test_split_Depression_AVEC2017.csv").write_text(
        "participant_ID,Gender\n" + "".join(f"{i},1\n" for i in ids))
    splits, _ = read_avec(str(d))
    assert {e["id"]: float(e["phq8"]) for e in splits["test"]} == {k: float(v) for k, v in truth["test"].items()}


@pytest.mark.parametrize("pid", ["../outside", "/tmp/x", "a/b", ".."])
def test_participant_ids_cannot_lead_reads_out_of_the_input(avec_dir, pid):
    d, _ = avec_dir
    p = d / "labels" / "train_split.csv"
    lines = p.read_text().splitlines()
    lines[2] = ",".join([pid] + lines[2].split(",")[1:])
    p.write_text("\n".join(lines) + "\n")
    (d.parent / "outside_P" / "features").mkdir(parents=True, exist_ok=True)
    with pytest.raises(DataFormatError, match=rf"train_split.csv: line 3, column Participant_ID: "
                                              rf"Participant_ID '{re.escape(pid)}'"):
        read_avec(str(d))


def test_symlinked_session_outside_the_input_is_refused(avec_dir, tmp_path_factory):
    d, _ = avec_dir
    outside = tmp_path_factory.mktemp("outside")
    os.rename(d / "301_P", outside / "301_P")
    os.symlink(outside / "301_P", d / "301_P")
    with pytest.raises(DataFormatError, match=r"301_P/features/301_OpenSMILE2.3.0_egemaps.csv: participant 301: "
                                              r"resolves to .*, outside the input directory"):
        read_avec(str(d))


def test_modality_without_feature_set_is_carried_as_missing(avec_dir, tmp_path):
    from keras_msa.data.tfrecord import load_split
    from keras_msa.data.tfrecord import write_dataset

    d, _ = avec_dir
    with pytest.raises(DataFormatError, match=r"vision=None leaves vision without a feature file.*"
                                              r"pass modality_dims=\{'vision': D\}"):
        read_avec(str(d), vision=None)
    splits, meta = read_avec(str(d), vision=None, modality_dims={"vision": 49, "text": 384})
    ex = splits["valid"][0]
    assert ex["vision"].shape == (0, 49) and ex["text"].shape == (0, 384) and ex["audio"].shape[0] > 0
    assert "dim 49 reserved" in meta["holds"]["vision"]
    write_dataset(tmp_path / "out", splits, dataset="avec2019", sources=meta["sources"],
                  label_ranges=meta["label_ranges"], repairs=meta["repairs"], progress=False)
    inputs, _ = next(iter(load_split(tmp_path / "out", "train", batch_size=3)))
    assert inputs["vision"].shape[-1] == 49 and not inputs["vision_mask"].numpy().any()
    assert inputs["audio_mask"].numpy().any(axis=1).all()


def test_feature_file_oddities(avec_dir, tmp_path):
    d, _ = avec_dir
    f = d / "300_P" / "features" / "300_OpenSMILE2.3.0_egemaps.csv"
    f.write_text("name;frameTime;x;y\n'a';0.1;1e39;2\n")
    with pytest.raises(DataFormatError, match=r"300_OpenSMILE2.3.0_egemaps.csv: 1 finite values exceed the float32"):
        read_avec(str(d))
    os.remove(f)
    npy = d / "300_P" / "features" / "300_OpenSMILE2.3.0_egemaps.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 6), np.float32))
    header["shape"] = (10**7, 10**4)  # 400 GB declared
    with open(npy, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 24)
    with pytest.raises(DataFormatError, match=r"300_OpenSMILE2.3.0_egemaps.npy: the header declares .*truncated or forged"):
        read_avec(str(d))
    np.save(npy, np.ones((4, 6)) * (1 + 1j))
    with pytest.raises(DataFormatError, match="expected a real numeric"):
        read_avec(str(d))
    np.save(npy, np.ones((4, 6)))
    with pytest.raises(ValueError, match="max_len must be None or an int >= 1; got -1"):
        read_avec(str(d), max_len=-1)
    with pytest.raises(ValueError, match="pool must be an int >= 1"):
        read_avec(str(d), pool=0)
    (d / "301_P" / "features" / "301_OpenSMILE2.3.0_egemaps.csv").write_text("name;frameTime;" + ";".join("abcdef") + "\n")
    splits, meta = read_avec(str(d))
    assert splits["train"][1]["audio"].shape == (0, 6) and meta["repairs"] == {"sessions_with_empty_audio_file": 1}
    t = d / "300_P" / "300_Transcript.csv"
    t.write_bytes(b"Start_Time,End_Time,Text\n0,1,\xff\xfe bad\n")
    with pytest.raises(DataFormatError, match=r"300_Transcript.csv: cannot read the transcript"):
        read_avec(str(d), transcripts=True)
    t.write_text("Start_Time,End_Time,Text\n0,1,hello\n")
    splits, meta = read_avec(str(d), transcripts=True)
    assert splits["train"][0]["raw_text"] == "hello"
    assert meta["holds"]["raw_text"].startswith("transcripts for 1 of 12 sessions")
    for split in ("train", "dev", "test"):
        (d / "labels" / f"{split}_split.csv").write_text("Participant_ID,PHQ_Score\n")
    with pytest.raises(DataFormatError, match="no participant in any split file"):
        read_avec(str(d))
