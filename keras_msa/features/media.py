"""Decoding one media file into what the preprocessing layers eat: a 16 kHz mono
waveform and RGB face crops.

    from keras_msa.features.media import load_clip
    clip = load_clip("Raw/video_1/0001.mp4")
    clip.waveform      # float32 [N], mono, at clip.sample_rate (empty: no audio track)
    clip.faces         # uint8 [F, 64, 64, 3] RGB, the largest face of each sampled frame
    clip.problems      # e.g. ["no face found"]

Containers and codecs are read with PyAV (FFmpeg's libraries, shipped in the
`av` wheel): `.mp4`, `.mpg`, `.avi` and `.wav` are accepted. The audio track is
resampled by FFmpeg's resampler (`av.AudioResampler`) to `sample_rate`
float32 and its channels averaged into mono; resampling is done here, before the model, so the audio converter of
`keras_msa.preprocessing` only ever sees one rate. Faces are found by OpenCV's
Haar cascade for frontal faces, whose model file ships inside the
`opencv-python-headless` wheel (`cv2.data.haarcascades`): no download, no
network. The cascade runs on the frame scaled to at most `DETECT_SIDE` pixels
on its longer side (detection cost grows with the pixel count; a face smaller
than ~24 px after that scaling is not found), and the largest box is cut from
the full-resolution frame, widened by `FACE_MARGIN` on each side, then resized
to `face_size` x `face_size`.

A clip that decodes but lacks something is not an error: it comes back with
an empty `waveform` or zero `faces` and a line in `problems` ("no audio track",
"no video track", "no face found", ...), so a dataset build can go on and list
it. A file that cannot be decoded at all raises `MediaError` with the path and
the reason.

PyAV and OpenCV are the `[media]` extra (`pip install "keras_msa[media]"`);
they are imported only when a clip is loaded, so `import keras_msa` works
without them.
"""

import dataclasses
import os

import numpy as np

#: Side of the square face crops `load_clip` returns (pixels).
FACE_SIZE = 64

#: Containers `load_clip` accepts, by file extension.
MEDIA_EXTENSIONS = (".mp4", ".mpg", ".mpeg", ".avi", ".wav")

#: Longer side (pixels) of the frame copy the face detector runs on.
DETECT_SIDE = 320

#: Fraction of the detected box's side added on each side before cropping:
#: the Haar box is tight around eyes-nose-mouth; expression CNNs (FER-2013
#: style) were trained on crops that include the brow and the chin.
FACE_MARGIN = 0.1

_CASCADE_FILE = "haarcascade_frontalface_default.xml"


class MediaError(ValueError):
    """A media file that cannot be decoded (missing, unreadable, corrupt,
    unsupported). `path` and `reason` are kept as attributes; the message
    names both."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclasses.dataclass
class Clip:
    """One decoded clip.

    Attributes:
        waveform: float32 [N], mono, at `sample_rate`; empty when the file
            has no audio track.
        sample_rate: samples per second of `waveform`.
        faces: uint8 [F, S, S, 3] RGB crops of the largest face of each
            sampled frame where a face was found (F may be 0).
        fps: frames per second of the video track (0.0 without one).
        duration_s: length of the clip in seconds (the longer of the tracks).
        problems: what the clip lacks, one short sentence each ("no audio
            track", "no video track", "no face found").
        face_times: float32 [F], the time (s) of the frame each crop came from.
        frames_sampled: how many video frames the detector looked at.
    """

    waveform: np.ndarray
    sample_rate: int
    faces: np.ndarray
    fps: float
    duration_s: float
    problems: list
    face_times: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0,), np.float32))
    frames_sampled: int = 0


def _import(name):
    try:
        if name == "av":
            import av
            return av
        import cv2
        return cv2
    except ImportError as e:
        package = {"av": "av", "cv2": "opencv-python-headless"}[name]
        raise ImportError(f"Decoding media needs the '{package}' package ({e}); install the media extra: "
                          f"pip install \"keras_msa[media]\"") from e


_DETECTOR = {}


def face_detector():
    """OpenCV's frontal-face Haar cascade from the `opencv-python-headless`
    wheel (loaded once per process)."""
    if "cascade" not in _DETECTOR:
        cv2 = _import("cv2")
        path = os.path.join(cv2.data.haarcascades, _CASCADE_FILE)
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise ImportError(f"OpenCV's face cascade {path} is missing or unreadable; this OpenCV build "
                              f"({cv2.__version__}) does not ship it: install opencv-python-headless>=4.8,<5")
        _DETECTOR["cascade"] = cascade
    return _DETECTOR["cascade"]


def largest_face(rgb, face_size=FACE_SIZE):
    """The largest frontal face in `rgb` (uint8 [H, W, 3]) as a uint8
    [face_size, face_size, 3] crop, or None when no face is found."""
    cv2 = _import("cv2")
    h, w = rgb.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = rgb if scale == 1.0 else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    boxes = face_detector().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    if len(boxes) == 0:
        return None
    x, y, bw, bh = max((tuple(int(v) for v in b) for b in boxes), key=lambda b: (b[2] * b[3], -b[0], -b[1]))
    x, y, bw, bh = x / scale, y / scale, bw / scale, bh / scale
    x0, y0 = max(0, int(round(x - FACE_MARGIN * bw))), max(0, int(round(y - FACE_MARGIN * bh)))
    x1, y1 = min(w, int(round(x + bw * (1 + FACE_MARGIN)))), min(h, int(round(y + bh * (1 + FACE_MARGIN))))
    crop = rgb[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if crop.shape[0] > face_size else cv2.INTER_LINEAR
    return cv2.resize(crop, (face_size, face_size), interpolation=interpolation)


def _sample_indices(n_frames, max_frames):
    """Evenly spaced frame indices (first and last included) when a clip has
    more frames than `max_frames`; None means every frame."""
    if max_frames is None or n_frames <= 0 or n_frames <= max_frames:
        return None
    return set(np.linspace(0, n_frames - 1, max_frames).round().astype(int).tolist())


def _even_subset(items, k):
    if k is None or len(items) <= k:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, k).round().astype(int)]


def load_clip(path, sample_rate=16000, face_size=FACE_SIZE, max_frames=None):
    """Decodes `path` into a `Clip` (module docstring).

    Args:
        path: a `.mp4`, `.mpg`, `.avi` or `.wav` file.
        sample_rate: rate (Hz) the audio track is resampled to.
        face_size: side of the square face crops.
        max_frames: at most this many video frames, evenly spaced over the
            clip, are searched for a face (None: every frame). Decoding still
            reads every frame (codecs need them); only detection is skipped.

    Returns:
        A `Clip`.

    Raises:
        MediaError: the file is missing, has an unsupported extension, or
            cannot be decoded (corrupt, truncated, no audio or video track).
        ImportError: PyAV or OpenCV is not installed.
    """
    path = os.fspath(path)
    if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int; got {sample_rate!r}")
    if not isinstance(face_size, int) or isinstance(face_size, bool) or face_size <= 0:
        raise ValueError(f"face_size must be a positive int; got {face_size!r}")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames <= 0):
        raise ValueError(f"max_frames must be None or a positive int; got {max_frames!r}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in MEDIA_EXTENSIONS:
        raise MediaError(path, f"unsupported extension {ext or '(none)'!r}; expected one of "
                               f"{', '.join(MEDIA_EXTENSIONS)}")
    if not os.path.isfile(path):
        raise MediaError(path, "no such file")
    av = _import("av")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(path, f"unreadable (corrupt or not a media file): {e}") from None
    problems = []
    chunks = []
    crops, times = [], []
    fps, frames_seen, video_end, keep = 0.0, 0, 0.0, None
    with container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = container.streams.video[0] if container.streams.video else None
        if audio is None and video is None:
            raise MediaError(path, "no audio or video track")
        if video is not None:
            # Frames are decoded on the codec's threads; detection runs here.
            video.thread_type = "AUTO"
            fps = float(video.average_rate or video.guessed_rate or 0.0)
            n_est = video.frames or (int(round(float(video.duration * video.time_base) * fps))
                                     if video.duration and fps else 0)
            keep = _sample_indices(n_est, max_frames)
        # Channels are kept through the resampler and averaged here: FFmpeg's
        # own stereo -> mono rematrix scales by 1/sqrt(2)-ish centre levels, so
        # a clip with the same signal on both channels would come out quieter.
        resampler = (av.AudioResampler(format="fltp", layout=audio.layout.name, rate=sample_rate)
                     if audio is not None else None)
        streams = [s for s in (audio, video) if s is not None]
        try:
            for packet in container.demux(streams):
                for frame in packet.decode():
                    if packet.stream is audio:
                        for out in resampler.resample(frame):
                            chunks.append(out.to_ndarray().mean(axis=0))
                        continue
                    index = frames_seen
                    frames_seen += 1
                    t = float(frame.time) if frame.time is not None else index / (fps or 1.0)
                    video_end = max(video_end, t + (1.0 / fps if fps else 0.0))
                    if keep is not None and index not in keep:
                        continue
                    crop = largest_face(frame.to_ndarray(format="rgb24"), face_size)
                    if crop is not None:
                        crops.append(crop)
                        times.append(t)
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().mean(axis=0))
        except (av.FFmpegError, OSError, ValueError) as e:
            if not chunks and not frames_seen:
                raise MediaError(path, f"cannot be decoded: {e}") from None
            problems.append(f"decoding stopped early: {e}")
    waveform = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0,), np.float32)
    sampled = frames_seen if keep is None else sum(1 for i in keep if i < frames_seen)
    if max_frames is not None and keep is None and len(crops) > max_frames:
        # The frame count was unknown before decoding: keep an even subset.
        pairs = _even_subset(list(zip(crops, times)), max_frames)
        crops, times = [c for c, _ in pairs], [t for _, t in pairs]
    if audio is None:
        problems.append("no audio track")
    elif not waveform.size:
        problems.append("empty audio track")
    if video is None:
        problems.append("no video track")
    elif not frames_seen:
        problems.append("empty video track")
    elif not crops:
        problems.append("no face found")
    faces = np.stack(crops).astype(np.uint8) if crops else np.zeros((0, face_size, face_size, 3), np.uint8)
    return Clip(waveform=waveform, sample_rate=sample_rate, faces=faces, fps=fps,
                duration_s=max(waveform.size / sample_rate, video_end), problems=problems,
                face_times=np.asarray(times, np.float32), frames_sampled=sampled)
