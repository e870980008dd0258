"""Generated raw media for tests and examples: a small dataset in MMSA-FET's
layout, made offline from things installed packages ship.

    from keras_msa.features.testing_media import make_test_media
    label_csv = make_test_media("/tmp/raw", n_clips=6, seed=0)
    # /tmp/raw/label.csv
    # /tmp/raw/Raw/<video_id>/<clip_id>.mp4

Each good clip is a real face and real speech: the speech is the clip's
`text` spoken by espeak-ng (`espeak-ng -w out.wav "text"`; the Debian package
`espeak-ng`), the picture is scikit-image's `data.astronaut()` photograph
(Eileen Collins, NASA, public domain), moved and scaled a little from frame
to frame so consecutive crops differ; both are muxed by PyAV into an MPEG-4
(`mpeg4` video, AAC audio) `.mp4`. Sentences come from a positive and a
negative list and the label's sign follows the sentence, so a model can learn
something from the text and the voice.

With `broken=True` (default) three more rows name clips that lack something,
as users' folders do: one with speech but no face (a moving colour gradient),
one with a face but no audio track, and one corrupt file (bytes that are not a
container). They are the last rows of `label.csv`, in the train split, and
their ids are listed by `BROKEN_CLIPS`.

Nothing here is committed: files are written under `root` when called.
"""

import csv
import os
import shutil
import subprocess
import tempfile

import numpy as np

POSITIVE = (
    "I really loved this movie",
    "What a wonderful story",
    "The acting was great",
    "This film made me happy",
    "A truly beautiful ending",
    "I enjoyed every minute",
)
NEGATIVE = (
    "I hated this movie",
    "What a boring story",
    "The acting was awful",
    "This film made me sad",
    "A truly terrible ending",
    "I regret every minute",
)

#: clip_id of each broken clip -> what `load_clip` / the extractor reports.
BROKEN_CLIPS = {
    "noface": "no face found",
    "noaudio": "no audio track",
    "corrupt": "unreadable",
}

#: The video_id the broken clips are filed under.
BROKEN_VIDEO = "broken"

LABEL_COLUMNS = ("video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode")


def espeak_binary():
    """The espeak-ng executable, or None when it is not installed."""
    return shutil.which("espeak-ng")


def missing_requirements():
    """Why test media cannot be made here (a sentence naming what to install),
    or None when the [media] extra and espeak-ng are both present."""
    import importlib.util

    for module, package in (("av", "av"), ("cv2", "opencv-python-headless"), ("skimage", "scikit-image")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install -e '.[media]', or '.[test]')"
    if espeak_binary() is None:
        return ("espeak-ng is not installed (a system package: apt-get install -y espeak-ng; .ci/run installs "
                "it when run as root)")
    return None


def speak(text, wav_path):
    """Writes `text` spoken by espeak-ng to `wav_path` (22.05 kHz mono WAV)."""
    exe = espeak_binary()
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (it speaks the test clips' text); install the Debian "
                           "package: apt-get install -y espeak-ng")
    subprocess.run([exe, "-w", wav_path, text], check=True, capture_output=True)


def _read_wav(path):
    import av  # noqa: PLC0415  (the [media] extra)
    with av.open(path) as c:
        rate = c.streams.audio[0].rate
        samples = [f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]
    x = np.concatenate(samples)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    return x.astype(np.float32), rate


def face_frames(n_frames, size, rng):
    """`n_frames` uint8 [size, size, 3] frames of the astronaut photograph,
    each a slightly shifted and scaled window around the face."""
    import cv2  # noqa: PLC0415
    from skimage import data  # noqa: PLC0415
    photo = data.astronaut()  # 512 x 512; the face lies around rows 40-200, columns 150-290
    cy, cx, half = 150.0, 220.0, 150.0
    phase = rng.uniform(0, 2 * np.pi, size=3)
    frames = []
    for i in range(n_frames):
        t = i / max(1, n_frames - 1)
        s = half * (1.0 + 0.06 * np.sin(2 * np.pi * t + phase[0]))
        y = cy + 10.0 * np.sin(2 * np.pi * t + phase[1])
        x = cx + 10.0 * np.cos(2 * np.pi * t + phase[2])
        y0, x0 = int(round(max(0.0, y - s))), int(round(max(0.0, x - s)))
        y1, x1 = int(round(min(512.0, y + s))), int(round(min(512.0, x + s)))
        frames.append(cv2.resize(photo[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA))
    return frames


def gradient_frames(n_frames, size, rng):
    """Frames with no face: a colour gradient sliding sideways."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    frames = []
    for i in range(n_frames):
        shift = (ramp + 8 * i) % 256
        img = np.empty((size, size, 3), np.float32)
        img[..., 0] = shift[None, :]
        img[..., 1] = shift[:, None]
        img[..., 2] = base[2]
        frames.append(np.clip(img * 0.5 + base * 0.5, 0, 255).astype(np.uint8))
    return frames


def write_clip(path, frames, fps, waveform=None, sample_rate=16000):
    """Muxes RGB `frames` (and, when given, a float32 mono `waveform`) into
    `path`: MPEG-4 video + AAC in `.mp4` / `.avi`, MPEG-1 video + MP2 in
    `.mpg` (what an MPEG program stream holds; MPEG-1 takes only the
    standard frame rates: 24, 25, 30...)."""
    import av  # noqa: PLC0415
    h, w = frames[0].shape[:2]
    mpeg_ps = os.path.splitext(path)[1].lower() in (".mpg", ".mpeg")
    with av.open(path, "w") as out:
        vs = out.add_stream("mpeg1video" if mpeg_ps else "mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.bit_rate = 400_000
        aus = None
        if waveform is not None:
            aus = out.add_stream("mp2" if mpeg_ps else "aac", rate=sample_rate, layout="mono")
        for f in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        if aus is not None:
            pcm = waveform.astype(np.float32)[None, :]
            if mpeg_ps:  # FFmpeg's MP2 encoder takes 16-bit samples
                pcm = np.round(np.clip(pcm, -1, 1) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16" if mpeg_ps else "fltp", layout="mono")
            frame.sample_rate = sample_rate
            for p in aus.encode(frame):
                out.mux(p)
            for p in aus.encode(None):
                out.mux(p)


def _resample(x, rate, target):
    """Linear resampling (enough for generated test speech)."""
    if rate == target:
        return x
    n = int(round(len(x) * target / rate))
    return np.interp(np.arange(n) * (rate / target), np.arange(len(x)), x).astype(np.float32)


def make_test_media(root, n_clips=6, seed=0, fps=15, frame_size=144, sample_rate=16000, broken=True,
                    splits=None):
    """Writes a raw dataset in MMSA-FET's layout under `root` (module docstring).

    Args:
        root: output folder (created; existing files of the same names are
            replaced).
        n_clips: how many good clips (face + speech).
        seed: chooses sentences, labels and the face's motion.
        fps: video frame rate.
        frame_size: side (pixels) of the square video frames.
        sample_rate: rate of the muxed audio track.
        broken: also write the three broken clips (`BROKEN_CLIPS`).
        splits: a `mode` per good clip; by default the last two good clips
            are `test` and the two before `valid` (one each for 3 to 5
            clips, none below 3), the rest `train` (as the broken clips).

    Returns:
        The path of `label.csv`.

    Raises:
        RuntimeError: espeak-ng is not installed.
        ImportError: PyAV, OpenCV or scikit-image is not installed.
    """
    if n_clips < 1:
        raise ValueError(f"n_clips must be >= 1; got {n_clips}")
    if splits is None:
        # Validation metrics need two clips at least (a correlation).
        held = 2 if n_clips >= 6 else 1 if n_clips >= 3 else 0
        splits = ["train"] * (n_clips - 2 * held) + ["valid"] * held + ["test"] * held
    if len(splits) != n_clips:
        raise ValueError(f"splits names {len(splits)} modes for {n_clips} clips")
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "Raw"), exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        def speech(text):
            wav = os.path.join(tmp, "speech.wav")
            speak(text, wav)
            x, rate = _read_wav(wav)
            return _resample(x, rate, sample_rate)

        for i in range(n_clips):
            positive = i % 2 == 0  # both signs in every split
            pool = POSITIVE if positive else NEGATIVE
            text = pool[int(rng.integers(len(pool)))]
            label = float(np.round(rng.uniform(0.4, 3.0) * (1 if positive else -1), 1))
            video_id, clip_id = f"video_{i // 2 + 1}", f"{i % 2 + 1:04d}"
            wave = speech(text)
            n_frames = max(2, int(np.ceil(len(wave) / sample_rate * fps)))
            path = os.path.join(root, "Raw", video_id, f"{clip_id}.mp4")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_clip(path, face_frames(n_frames, frame_size, rng), fps, wave, sample_rate)
            rows.append((video_id, clip_id, text, label, splits[i]))
        if broken:
            folder = os.path.join(root, "Raw", BROKEN_VIDEO)
            os.makedirs(folder, exist_ok=True)
            text = POSITIVE[0]
            wave = speech(text)
            n_frames = max(2, int(np.ceil(len(wave) / sample_rate * fps)))
            write_clip(os.path.join(folder, "noface.mp4"), gradient_frames(n_frames, frame_size, rng), fps, wave,
                       sample_rate)
            rows.append((BROKEN_VIDEO, "noface", text, 1.0, "train"))
            write_clip(os.path.join(folder, "noaudio.mp4"), face_frames(n_frames, frame_size, rng), fps)
            rows.append((BROKEN_VIDEO, "noaudio", NEGATIVE[0], -1.0, "train"))
            with open(os.path.join(folder, "corrupt.mp4"), "wb") as f:
                f.write(b"\x00\x00\x00\x18ftypmp42" + rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
            rows.append((BROKEN_VIDEO, "corrupt", NEGATIVE[1], -1.5, "train"))
    label_csv = os.path.join(root, "label.csv")
    with open(label_csv, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(LABEL_COLUMNS)
        for video_id, clip_id, text, label, mode in rows:
            annotation = "Positive" if label > 0 else "Negative"
            writer.writerow([video_id, clip_id, text, f"{label:.1f}", "", "", "", annotation, mode])
    return label_csv
