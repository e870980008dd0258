"""The optional audio feature sets of the extractor (openSMILE, librosa),
checked against the libraries called directly."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest


def _tone(rate=16000):
    t = np.arange(rate) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("opensmile") is None,
                    reason="opensmile is not installed (pip install -e '.[media-extra]' or '.[test]')")
def test_egemaps_through_the_worker_equals_opensmile_alone(tmp_path):
    from keras_msa.features.extract import AudioFeaturizer

    x = _tone()
    np.save(tmp_path / "x.npy", x)
    # openSMILE in a fresh interpreter that never loads TensorFlow.
    code = ("import sys, numpy as np, opensmile; s = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, "
            "opensmile.FeatureLevel.LowLevelDescriptors); "
            "np.save(sys.argv[2], s.process_signal(np.load(sys.argv[1]), 16000).to_numpy(np.float32))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npy"), str(tmp_path / "ref.npy")], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    featurizer = AudioFeaturizer("egemaps")
    try:
        out = featurizer(x)
        again = featurizer(x[:8000])
    finally:
        featurizer.close()
    ref = np.load(tmp_path / "ref.npy")
    assert out.shape == ref.shape and out.shape[1] == 25 and featurizer.settings["dim"] == 25
    np.testing.assert_array_equal(out, ref)
    assert again.shape[0] < out.shape[0]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("librosa") is None,
                    reason="librosa is not installed (pip install -e '.[media-extra]' or '.[test]')")
def test_librosa_features():
    import librosa

    from keras_msa.features.extract import AudioFeaturizer

    x = _tone()
    out = AudioFeaturizer("librosa")(x)
    assert out.shape == (101, 38) and np.isfinite(out).all()
    mfcc = librosa.feature.mfcc(y=x, sr=16000, n_mfcc=20, n_fft=512, win_length=400, hop_length=160)
    np.testing.assert_allclose(out[:, :20], mfcc.T, rtol=1e-5, atol=1e-4)
    # Chroma bins are normalised per frame (max 1).
    np.testing.assert_allclose(out[:, 26:].max(axis=1), 1.0, rtol=1e-5)
