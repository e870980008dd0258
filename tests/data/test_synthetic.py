import hashlib

import numpy as np
import pytest

from keras_msa.data.synthetic import SCENARIOS
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


# --- Scenarios ---------------------------------------------------------------

SCENARIO_NAMES = ("default", "agree", "conflict", "multiscale", "missing")


def _digest(split):
    h = hashlib.sha256()
    for k in sorted(split.inputs):
        h.update(np.ascontiguousarray(split.inputs[k]).tobytes())
    for k in sorted(split.targets):
        h.update(np.ascontiguousarray(split.targets[k]).tobytes())
    return h.hexdigest()[:16]


def test_default_scenario_is_bit_identical_to_the_original_process():
    # Checksums and floors recorded from the generator before scenarios existed.
    d = make_synthetic_benchmark(seed=0, splits={"train": 48, "valid": 16, "test": 24},
                                 unimodal_labels=True)
    expected = {
        "train": ("848bc1cebd74090c", 0.23795503186065084, 0.8845163404863069),
        "valid": ("85339aa764d778db", 0.23935538502820308, 0.9174465360169457),
        "test": ("2075e5ded2b05ce1", 0.234696160479372, 0.9292298744144377),
    }
    for split, (digest, bayes, text_floor) in expected.items():
        assert d[split].scenario == "default"
        assert _digest(d[split]) == digest, split
        assert d[split].bayes_mae == bayes and d[split].text_only_bayes_mae == text_floor
    u = make_synthetic_benchmark(seed=0, splits={"train": 40}, aligned=False, text_dim=16,
                                 compute_text_only_floor=False)["train"]
    assert _digest(u) == "8424313ca7bf9e29" and u.bayes_mae == 0.2382433177531702


def _scenario(name, n=2000, seed=5, **kw):
    args = dict(seed=seed, splits={"test": n}, seq_len=24, min_len=20, text_dim=8,
                scenario=name, draws=2000)
    args.update(kw)
    return make_synthetic_benchmark(**args)["test"]


def _unseen_draws(lat, rng, draws, rho):
    """Draws of (s_a, s_v) given s_t, independently of the module's code."""
    z = rng.standard_normal((2, len(lat["s_t"]), draws))
    return rho * lat["s_t"][:, None] + np.sqrt(1 - rho**2) * z


def _label_np(s_t, s_a, s_v, w, thr):
    flip = (s_t * s_a < 0) & (np.abs(s_a) > thr)
    return 3 * np.tanh((w[0] * np.where(flip, -s_t, s_t) + w[1] * s_a + w[2] * s_v) / 3)


def _median_given(lat, know_a, know_v, params, rng, draws=1000, sigma=0.3):
    """The conditional median of y given s_t and the seen latents (oracle)."""
    a, v = _unseen_draws(lat, rng, draws, params["agreement"])
    a = np.where(know_a[:, None], lat["s_a"][:, None], a)
    v = np.where(know_v[:, None], lat["s_v"][:, None], v)
    s_t = np.broadcast_to(lat["s_t"][:, None], a.shape)
    y = _label_np(s_t, a, v, params["weights"], params["sarcasm_threshold"])
    y = np.clip(y + sigma * rng.standard_normal(y.shape), -3, 3)
    return np.median(y, axis=1)


def _assert_reaches(pred, y, floor):
    err = np.abs(pred - y)
    se = err.std() / np.sqrt(len(err))
    assert abs(err.mean() - floor) < 4 * se + 0.01, (err.mean(), floor, se)


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_oracles_from_the_latents_reach_the_bayes_and_text_only_floors(name):
    d = _scenario(name)
    lat, y, params = d.latents, d.targets["sentiment"][:, 0], SCENARIOS[name]
    rng = np.random.default_rng(123)
    n = len(y)
    # Bayes oracle: everything the features reveal (all latents, except those
    # of a missing modality).
    seen_a, seen_v = ~lat["audio_missing"], ~lat["vision_missing"]
    bayes_pred = np.where(seen_a & seen_v, lat["y_clean"],
                          _median_given(lat, seen_a, seen_v, params, rng))
    _assert_reaches(bayes_pred, y, d.bayes_mae)
    text_pred = _median_given(lat, np.zeros(n, bool), np.zeros(n, bool), params, rng)
    _assert_reaches(text_pred, y, d.text_only_bayes_mae)
    # The floors differ, so reaching both is not one check twice.
    assert d.text_only_bayes_mae > d.bayes_mae + 0.1


def test_each_scenario_is_deterministic_and_differs_from_the_default():
    base = _scenario("default", n=64)
    for name in SCENARIO_NAMES[1:]:
        a, b = _scenario(name, n=64), _scenario(name, n=64)
        for k in a.inputs:
            np.testing.assert_array_equal(a.inputs[k], b.inputs[k])
        np.testing.assert_array_equal(a.targets["sentiment"], b.targets["sentiment"])
        assert a.bayes_mae == b.bayes_mae and a.text_only_bayes_mae == b.text_only_bayes_mae
        assert a.scenario == name
        assert not np.array_equal(a.targets["sentiment"], base.targets["sentiment"]) or not all(
            np.array_equal(a.inputs[k], base.inputs[k]) for k in a.inputs
        ), name


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_scenario_shapes_masks_and_padding(name):
    d = _scenario(name, n=200, unimodal_labels=True)
    assert d.inputs["text"].shape == (200, 24, 8)
    assert d.inputs["audio"].shape == (200, 24, 5) and d.inputs["vision"].shape == (200, 24, 20)
    for m in ("text", "audio", "vision"):
        assert d.inputs[f"{m}_mask"].dtype == bool
        assert np.all(d.inputs[m][~d.inputs[f"{m}_mask"]] == 0)
        assert np.all(np.isfinite(d.inputs[m]))
    assert d.inputs["text_mask"].sum(1).min() >= 20
    for k in ("sentiment", "sentiment_text", "sentiment_audio", "sentiment_vision"):
        assert d.targets[k].shape == (200, 1) and np.abs(d.targets[k]).max() <= 3


def test_agree_scenario_correlates_audio_and_vision_with_text():
    lat = _scenario("agree", compute_text_only_floor=False).latents
    for k in ("s_a", "s_v"):
        assert abs(np.corrcoef(lat["s_t"], lat[k])[0, 1] - 0.8) < 0.03
        assert abs(lat[k].std() - 1.0) < 0.05
    assert lat["sarcasm"].mean() < 0.03
    base = _scenario("default", compute_text_only_floor=False).latents
    assert abs(np.corrcoef(base["s_t"], base["s_a"])[0, 1]) < 0.06


def test_conflict_scenario_sarcasm_is_frequent_and_decides_the_sign():
    d = _scenario("conflict", sigma=0.0, compute_text_only_floor=False)
    lat = d.latents
    assert 0.35 < lat["sarcasm"].mean() < 0.45
    y = d.targets["sentiment"][:, 0]
    strong = np.abs(lat["s_t"]) > 1.0
    # Where the text is strong, the label's sign is the text's, flipped by sarcasm.
    expected_sign = np.where(lat["sarcasm"], -1, 1) * np.sign(lat["s_t"])
    assert np.mean(np.sign(y[strong]) == expected_sign[strong]) > 0.95
    assert np.abs(np.corrcoef(y, lat["s_t"])[0, 1]) < 0.5


def test_multiscale_windows_vary_and_are_exact_readouts_of_the_text():
    d = _scenario("multiscale", n=400)
    lat = d.latents
    width, start = lat["emphasis_width"], lat["emphasis_start"]
    assert set(np.unique(width)) == {2, 4, 8, 16}
    audio, mask = d.inputs["audio"][..., 0], d.inputs["audio_mask"]
    pos = np.arange(24)[None]
    tone = (pos >= start[:, None] + 3) & (pos < (start + 3 + width)[:, None])
    # Tone is s_a inside the lagged window and noise outside it.
    np.testing.assert_allclose((audio * tone).sum(1) / width, lat["s_a"], atol=1e-5)
    outside = audio[mask & ~tone]
    assert 0.9 < outside.std() < 1.1
    # The emphasis indicator is an exact linear read-out of each valid text step.
    x, tm = d.inputs["text"], d.inputs["text_mask"]
    emph = (pos >= start[:, None]) & (pos < (start + width)[:, None])
    steps = x[tm]
    coef, *_ = np.linalg.lstsq(steps, emph[tm].astype(float), rcond=None)
    np.testing.assert_allclose(steps @ coef, emph[tm], atol=1e-4)


def test_multiscale_needs_room_for_the_widest_window():
    with pytest.raises(ValueError, match="widest emphasis window \\(16\\).*at least 20"):
        make_synthetic_benchmark(splits={"test": 4}, seq_len=24, min_len=18, scenario="multiscale")
    d = make_synthetic_benchmark(splits={"test": 64}, seq_len=12, min_len=12, text_dim=8,
                                 offset=1, scenario="multiscale", windows=(2, 4),
                                 compute_text_only_floor=False)["test"]
    assert set(np.unique(d.latents["emphasis_width"])) == {2, 4}


def test_missing_scenario_zeroes_features_and_masks_of_missing_modalities():
    d = _scenario("missing", compute_text_only_floor=False)
    lat = d.latents
    for m in ("audio", "vision"):
        miss = lat[f"{m}_missing"]
        assert 0.26 < miss.mean() < 0.34
        assert not d.inputs[f"{m}_mask"][miss].any() and np.all(d.inputs[m][miss] == 0)
        assert d.inputs[f"{m}_mask"][~miss].sum(1).min() >= 20
    assert 0.05 < (lat["audio_missing"] & lat["vision_missing"]).mean() < 0.13
    assert d.inputs["text_mask"].sum(1).min() >= 20
    # Missing modalities raise the floor above that of the complete default data.
    assert d.bayes_mae > _scenario("default", compute_text_only_floor=False).bayes_mae + 0.1


def test_unknown_scenario_and_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="Unknown synthetic scenario 'sarcasm'.*agree"):
        make_synthetic_benchmark(splits={"test": 4}, scenario="sarcasm")
    with pytest.raises(ValueError, match="agreement must be in"):
        make_synthetic_benchmark(splits={"test": 4}, scenario="agree", agreement=1.0)
    with pytest.raises(ValueError, match="missing_rate must be in"):
        make_synthetic_benchmark(splits={"test": 4}, missing_rate=1.5)


def test_noise_free_labels_have_a_zero_floor_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = _small(sigma=0.0)["test"]
    assert d.bayes_mae == 0.0
