"""AudioConverter against a NumPy computation written from the formulas
(STFT with a periodic Hann window, HTK mel filterbank, DCT-II, regression
deltas with clamped edges)."""

import numpy as np
import pytest

from keras_msa.preprocessing import AudioConverter


def _hz_to_mel(f):
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)


def _mel_matrix(num_mel, fft_length, rate, low, high):
    bins = fft_length // 2 + 1
    # Bin 0 (DC) gets no weight; the others' frequencies span 0..Nyquist.
    freqs = np.linspace(0.0, rate / 2.0, bins)[1:]
    mel = _hz_to_mel(freqs)[:, None]
    edges = np.linspace(_hz_to_mel(low), _hz_to_mel(high), num_mel + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (mel - lower) / (center - lower)
    down = (upper - mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(up, down))
    return np.concatenate([np.zeros((1, num_mel)), weights], axis=0)


def _numpy_features(x, features="mfcc", num_mel=40, num_mfcc=13, order=2, width=2):
    """One waveform alone (no batch padding) -> [T, D]."""
    frame, step, nfft, rate = 400, 160, 512, 16000
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return np.zeros((0, (num_mfcc if features == "mfcc" else num_mel) * (order + 1)))
    n_frames = -(-len(x) // step)
    padded = np.zeros((n_frames - 1) * step + frame)
    padded[: len(x)] = x
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)  # periodic Hann
    frames = np.stack([padded[t * step: t * step + frame] * window for t in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, n=nfft)) ** 2
    logmel = np.log(power @ _mel_matrix(num_mel, nfft, rate, 20.0, 7600.0) + 1e-6)
    if features == "mfcc":
        m = np.arange(num_mel)
        dct = np.cos(np.pi * np.arange(num_mel)[:, None] * (m[None, :] + 0.5) / num_mel)
        base = (logmel @ dct.T * np.sqrt(2.0 / num_mel))[:, :num_mfcc]
    else:
        base = logmel
    blocks = [base]
    for _ in range(order):
        c = blocks[-1]
        idx = np.arange(len(c))
        d = sum(n * (c[np.clip(idx + n, 0, len(c) - 1)] - c[np.clip(idx - n, 0, len(c) - 1)])
                for n in range(1, width + 1))
        blocks.append(d / (2.0 * sum(n * n for n in range(1, width + 1))))
    return np.concatenate(blocks, axis=1)


@pytest.mark.parametrize("features,order", [("mfcc", 2), ("log_mel", 1)])
def test_frames_match_numpy_and_ignore_padding(features, order):
    rng = np.random.default_rng(0)
    lengths = np.array([3200, 1750, 0], np.int32)
    n = 3300
    # Speech-like: a tone plus noise; padding holds garbage (even NaN) that
    # must change nothing.
    t = np.arange(n) / 16000.0
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)[None, :] + 0.05 * rng.standard_normal((3, n))).astype("float32")
    garbage = wave.copy()
    for i, L in enumerate(lengths):
        garbage[i, L:] = np.nan if i == 1 else 7.0
    conv = AudioConverter(features=features, delta_order=order)
    out = conv(garbage, lengths)
    x, mask = np.asarray(out["features"]), np.asarray(out["mask"])
    assert x.shape == (3, -(-n // 160), conv.feature_dim)
    assert mask.sum(axis=1).tolist() == [20, 11, 0]  # ceil(L / 160): 100 frames a second
    assert np.isfinite(x).all()
    for i, L in enumerate(lengths):
        want = _numpy_features(wave[i, :L], features=features, order=order)
        got = x[i, : len(want)]
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-3 * max(1.0, np.abs(want).max(initial=0.0)))
        assert (x[i, len(want):] == 0).all()


def test_config_roundtrip_and_bad_arguments():
    conv = AudioConverter(features="log_mel", num_mel_bins=24, delta_order=1)
    again = AudioConverter.from_config(conv.get_config())
    assert again.feature_dim == conv.feature_dim == 48
    with pytest.raises(ValueError, match="features must be one of"):
        AudioConverter(features="spectrogram")
    with pytest.raises(ValueError, match="num_mfcc must be in 1..num_mel_bins=40"):
        AudioConverter(num_mfcc=41)
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        AudioConverter()(np.zeros((16000,), "float32"))
