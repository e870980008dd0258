import numpy as np

from keras_msa.data.synthetic import _clip_abs_dev
from keras_msa.data.synthetic import make_synthetic_benchmark


def _small(**kw):
    args = dict(seed=3, splits={"train": 200, "test": 100}, seq_len=20, min_len=14,
                text_dim=12, window=4, offset=2, compute_text_only_floor=False)
    args.update(kw)
    return make_synthetic_benchmark(**args)


def test_deterministic_from_seed_and_different_across_seeds():
    a, b, c = _small(), _small(), _small(seed=4)
    np.testing.assert_array_equal(a["train"].inputs["text"], b["train"].inputs["text"])
    np.testing.assert_array_equal(a["test"].targets["sentiment"], b["test"].targets["sentiment"])
    assert not np.allclose(a["train"].targets["sentiment"], c["train"].targets["sentiment"])


def test_shapes_masks_and_label_range():
    d = _small()["train"]
    assert d.inputs["text"].shape == (200, 20, 12)
    assert d.inputs["audio"].shape == (200, 20, 5)
    assert d.inputs["vision"].shape == (200, 20, 20)
    y = d.targets["sentiment"]
    assert y.shape == (200, 1) and y.min() >= -3 and y.max() <= 3
    lengths = d.inputs["text_mask"].sum(1)
    assert lengths.min() >= 14 and lengths.max() <= 20
    # Padding is exactly zero.
    assert np.all(d.inputs["text"][~d.inputs["text_mask"]] == 0)


def test_latents_are_exact_linear_readouts_of_the_features():
    d = _small(feature_noise=2.0)["train"]
    x, m = d.inputs["text"], d.inputs["text_mask"]
    # The mean text step projects onto u_t exactly as s_t: recover u_t by least squares.
    mean_t = (x * m[..., None]).sum(1) / m.sum(1, keepdims=True)
    coef, *_ = np.linalg.lstsq(mean_t, d.latents["s_t"], rcond=None)
    np.testing.assert_allclose(mean_t @ coef, d.latents["s_t"], atol=1e-4)
    # The tone channel sums to window * s_a.
    np.testing.assert_allclose(d.inputs["audio"][..., 0].sum(1) / 4, d.latents["s_a"], atol=1e-5)


def test_tone_window_lags_the_text_emphasis_by_offset():
    d = _small()["train"]
    start = d.latents["emphasis_start"]
    tone = d.inputs["audio"][..., 0] != 0
    first_tone = tone.argmax(1)
    np.testing.assert_array_equal(first_tone, start + 2)
    assert np.all(tone.sum(1) == 4)
    # The emphasised text steps carry an extra component: their mean differs.
    x = d.inputs["text"]
    idx = np.arange(len(start))
    emph_step = x[idx, start]
    other_step = x[idx, (start + 6) % 14]
    assert np.linalg.norm(emph_step.mean(0) - other_step.mean(0)) > 0.5


def test_label_follows_the_documented_process_with_sarcasm_flip():
    d = _small(sigma=0.0)["test"]
    lat = d.latents
    s_t, s_a, s_v = lat["s_t"], lat["s_a"], lat["s_v"]
    sarcasm = (s_t * s_a < 0) & (np.abs(s_a) > 1.0)
    g = 1.5 * np.where(sarcasm, -s_t, s_t) + 0.6 * s_a + 0.6 * s_v
    np.testing.assert_allclose(d.targets["sentiment"][:, 0], 3 * np.tanh(g / 3), atol=1e-6)
    assert sarcasm.any() and (~sarcasm).any()
    assert d.bayes_mae == 0.0


def test_bayes_floor_matches_monte_carlo_and_closed_form():
    mean = np.array([0.0, 1.0, 2.9, -2.95])
    mc_rng = np.random.default_rng(0)
    eps = mc_rng.standard_normal((200000, 1)) * 0.3
    mc = np.abs(np.clip(mean[None] + eps, -3, 3) - mean[None]).mean(0)
    np.testing.assert_allclose(_clip_abs_dev(mean, 0.3), mc, atol=2e-3)
    # Without clipping E|sigma*eps| = sigma*sqrt(2/pi).
    np.testing.assert_allclose(_clip_abs_dev(np.array([0.0]), 0.3)[0], 0.3 * np.sqrt(2 / np.pi), atol=1e-6)


def test_text_only_floor_is_far_above_bayes_floor():
    d = make_synthetic_benchmark(seed=0, splits={"test": 60}, seq_len=16, min_len=14,
                                 text_dim=8, window=4, offset=2)["test"]
    assert d.text_only_bayes_mae > 2.5 * d.bayes_mae


def test_unaligned_and_unimodal_options():
    d = _small(aligned=False, audio_len=30, vision_len=25, unimodal_labels=True)["train"]
    assert d.inputs["audio"].shape[1] == 30 and d.inputs["vision"].shape[1] == 25
    for k in ("sentiment_text", "sentiment_audio", "sentiment_vision"):
        assert d.targets[k].shape == (200, 1)
    # The unimodal text label is driven by s_t.
    assert np.corrcoef(d.targets["sentiment_text"][:, 0], d.latents["s_t"])[0, 1] > 0.9


def test_examples_are_unpadded():
    d = _small()["train"]
    ex = next(iter(d.examples()))
    length = int(d.inputs["text_mask"][0].sum())
    assert ex["text"].shape == (length, 12)
    assert ex["id"] == "synthetic_000000"
