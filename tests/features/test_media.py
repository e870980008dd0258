"""keras_msa.features.media.load_clip: decoding, 16 kHz mono audio, face crops,
and what it says about clips that lack something."""

import os
import subprocess
import sys
import wave

import numpy as np
import pytest



def require_media():
    from keras_msa.features.testing_media import missing_requirements

    reason = missing_requirements()
    if reason:
        pytest.skip(reason)


def _write_wav(path, channels, rate=22050, seconds=1.0):
    """A 16-bit WAV written with the standard library (independent of PyAV):
    channel c holds 0.5 sin(2 pi 440 t) times gains[c]."""
    t = np.arange(int(rate * seconds)) / rate
    gains = [1.0, 0.0][:channels]
    data = np.stack([np.round(g * 0.5 * np.sin(2 * np.pi * 440 * t) * 32767) for g in gains], 1).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.reshape(-1).tobytes())
    return np.mean(gains)


@pytest.mark.parametrize("channels", [1, 2])
def test_wav_is_resampled_to_16k_and_channels_averaged(tmp_path, channels):
    require_media()
    from keras_msa.features.media import load_clip

    gain = _write_wav(tmp_path / "tone.wav", channels)
    clip = load_clip(str(tmp_path / "tone.wav"))
    assert clip.sample_rate == 16000 and clip.waveform.dtype == np.float32
    assert clip.waveform.shape == (16000,)
    expected = gain * 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    # Away from the edges (the resampling filter's support), FFmpeg's
    # resampler reproduces the band-limited tone to 16-bit precision.
    np.testing.assert_allclose(clip.waveform[200:-200], expected[200:-200], atol=2e-4)
    assert clip.faces.shape == (0, 64, 64, 3) and clip.faces.dtype == np.uint8
    assert clip.problems == ["no video track"] and clip.fps == 0.0
    assert clip.duration_s == pytest.approx(1.0)


def test_generated_clip_has_the_speech_and_the_face(raw_media, tmp_path):
    from scipy.signal import resample_poly

    from keras_msa.features.media import load_clip
    from keras_msa.features.testing_media import speak

    root = os.path.dirname(raw_media)
    clip = load_clip(os.path.join(root, "Raw", "video_1", "0001.mp4"))
    assert clip.problems == [] and clip.fps == 15.0
    # The audio track is espeak-ng's speech of the row's text (AAC-coded):
    # resampled independently (scipy), it matches at the best lag.
    speak("I enjoyed every minute", str(tmp_path / "s.wav"))
    with wave.open(str(tmp_path / "s.wav")) as w:
        ref = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768
        rate = w.getframerate()
    ref = resample_poly(ref, 16000 // 50, rate // 50)
    n = min(len(ref), len(clip.waveform)) - 2048
    y = clip.waveform.astype(np.float64)
    corr = max(np.corrcoef(y[lag:lag + n], ref[:n])[0, 1] for lag in range(0, 2048, 8))
    assert corr > 0.9, corr
    # One face per frame, RGB (skin: red over blue).
    assert clip.faces.shape == (clip.frames_sampled, 64, 64, 3) and clip.frames_sampled >= 20
    assert clip.faces[..., 0].mean() > clip.faces[..., 2].mean() + 20
    assert clip.face_times[0] == 0.0 and np.all(np.diff(clip.face_times) > 0)


def test_crops_of_the_decoded_frames_are_the_crops_of_the_frames_encoded(tmp_path):
    require_media()
    from keras_msa.features.media import largest_face
    from keras_msa.features.media import load_clip
    from keras_msa.features.testing_media import face_frames
    from keras_msa.features.testing_media import write_clip

    frame = face_frames(1, 144, np.random.default_rng(3))[0]
    write_clip(str(tmp_path / "still.mp4"), [frame] * 6, fps=10)
    clip = load_clip(str(tmp_path / "still.mp4"))
    expected = largest_face(frame)
    assert expected is not None and clip.faces.shape == (6, 64, 64, 3)
    # Same box on the decoded frames: only the codec's error remains (9.3
    # grey levels measured: MPEG-4 at 400 kbit/s, 4:2:0 chroma); the frame
    # moved by 3 pixels gives 16, BGR for RGB 33.
    assert np.abs(clip.faces.astype(float) - expected.astype(float)).mean() < 12
    assert clip.problems == ["no audio track"]


@pytest.mark.parametrize("ext,fps", [(".avi", 10), (".mpg", 25)])
def test_avi_and_mpg_containers(tmp_path, ext, fps):
    require_media()
    from keras_msa.features.media import load_clip
    from keras_msa.features.testing_media import face_frames
    from keras_msa.features.testing_media import write_clip

    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.float32)
    write_clip(str(tmp_path / f"c{ext}"), face_frames(6, 144, np.random.default_rng(0)), fps, tone)
    clip = load_clip(str(tmp_path / f"c{ext}"))
    assert clip.problems == [] and clip.fps == fps and clip.faces.shape == (6, 64, 64, 3)
    # Lossy audio codecs (AAC, MP2) delay and smear the tone a little: it
    # must still be the tone at the best lag.
    y = clip.waveform.astype(np.float64)
    n = 12000
    corr = max(np.corrcoef(y[lag:lag + n], tone[2000:2000 + n])[0, 1] for lag in range(0, 4000, 4))
    assert corr > 0.99, corr


def test_max_frames_samples_evenly(raw_media):
    from keras_msa.features.media import load_clip

    path = os.path.join(os.path.dirname(raw_media), "Raw", "video_1", "0001.mp4")
    every = load_clip(path)
    four = load_clip(path, max_frames=4)
    assert four.frames_sampled == 4 and four.faces.shape == (4, 64, 64, 3)
    n = every.frames_sampled
    np.testing.assert_allclose(four.face_times, every.face_times[np.linspace(0, n - 1, 4).round().astype(int)])
    np.testing.assert_array_equal(four.faces, every.faces[np.linspace(0, n - 1, 4).round().astype(int)])
    np.testing.assert_array_equal(four.waveform, every.waveform)
    small = load_clip(path, face_size=32)
    assert small.faces.shape[1:] == (32, 32, 3)


def test_broken_clips_say_what_they_lack(raw_media):
    from keras_msa.features.media import MediaError
    from keras_msa.features.media import load_clip

    raw = os.path.join(os.path.dirname(raw_media), "Raw", "broken")
    noface = load_clip(os.path.join(raw, "noface.mp4"))
    assert noface.problems == ["no face found"] and noface.faces.shape == (0, 64, 64, 3)
    assert noface.waveform.size > 16000
    noaudio = load_clip(os.path.join(raw, "noaudio.mp4"))
    assert noaudio.problems == ["no audio track"] and noaudio.waveform.shape == (0,)
    assert len(noaudio.faces) == noaudio.frames_sampled > 0
    corrupt = os.path.join(raw, "corrupt.mp4")
    with pytest.raises(MediaError, match="unreadable") as e:
        load_clip(corrupt)
    assert e.value.path == corrupt and corrupt in str(e.value)
    with pytest.raises(MediaError, match="no such file"):
        load_clip(os.path.join(raw, "absent.mp4"))
    with pytest.raises(MediaError, match="unsupported extension '.txt'"):
        load_clip(raw_media.replace("label.csv", "notes.txt"))
    with pytest.raises(ValueError, match="max_frames"):
        load_clip(corrupt, max_frames=0)


@pytest.mark.slow
def test_importing_keras_msa_does_not_import_the_media_packages():
    # Keras itself imports cv2 when it is installed (keras.visualization), so
    # what counts is what keras_msa adds on top of keras.
    code = ("import sys, keras; before = set(sys.modules); "
            "import keras_msa, keras_msa.features, keras_msa.features.extract; "
            "bad = [m for m in ('av', 'cv2', 'skimage', 'opensmile', 'librosa') "
            "if m in sys.modules and m not in before]; assert not bad, bad")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
