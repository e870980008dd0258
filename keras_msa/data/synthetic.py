"""The built-in synthetic MSA benchmark: MOSI-like shapes, a known answer.

Generating process of the ``"default"`` scenario (every number below is an
argument of `make_synthetic_benchmark`, defaults in brackets):

For each sample three latent opinions are drawn independently,
``s_t, s_a, s_v ~ N(0, 1)`` (what the words, the tone and the face say), and a
valid length ``L ~ U{min_len, seq_len}`` [24, 50] shared by the modalities
(aligned) or drawn per modality (``aligned=False``, audio/vision timelines of
``audio_len``/``vision_len`` steps).

* **Text** ``[L, text_dim]`` (768): every valid step is ``s_t * u_t + n`` with
  ``u_t`` a fixed unit direction and ``n`` Gaussian noise orthogonal to
  ``u_t``. A window of ``window`` [8] "emphasised" steps starting at a random
  position ``p`` also carries a second fixed direction ``e_t`` (unit size).
* **Audio** ``[L, audio_dim]`` (5): channel 0 is the tone, equal to
  ``s_a * window_scale`` inside the window shifted by ``offset`` [3] steps
  (``[p + offset, p + offset + window)``: the voice lags the words) and 0
  elsewhere; the other channels are N(0, 1) noise.
* **Vision** ``[L, vision_dim]`` (20): every valid step is ``s_v * u_v + n``
  with ``n`` orthogonal to ``u_v``.
* **Label**: words and tone that disagree strongly read as sarcasm,
  ``sarcasm = (s_t * s_a < 0) and |s_a| > sarcasm_threshold`` [1.0]; then
  ``g = w_t * (-s_t if sarcasm else s_t) + w_a * s_a + w_v * s_v`` with
  (w_t, w_a, w_v) = ``weights`` [(1.5, 0.6, 0.6)], ``y_clean = 3 * tanh(g / 3)``
  and the label ``y = clip(y_clean + sigma * eps, -3, 3)``, ``eps ~ N(0, 1)``,
  ``sigma`` [0.3].

Every latent is an exact linear read-out of the features (mean projection of
the text and vision steps on ``u_t``/``u_v``; the tone window's sum divided by
the window size), so the best possible predictor knows ``y_clean`` and, under
absolute error, predicts the median of ``clip(y_clean + sigma*eps)``, which is
``y_clean`` itself. Its expected MAE, ``E|clip(y_clean + sigma*eps) -
y_clean|``, is computed per sample in closed form and averaged: the **Bayes
floor** reported with the data (``bayes_mae``; about ``sigma*sqrt(2/pi)``).
A model that sees the text alone cannot know ``s_a``, ``s_v`` or whether the
sample is sarcastic; its best possible MAE (``text_only_bayes_mae``, the mean
absolute deviation from the conditional median given ``s_t``, by Monte
Carlo: ``draws`` samples of the unseen latents from their law given ``s_t``
and of ``eps``, per sample) is far above the floor. Optional unimodal labels
(``unimodal_labels=True``) follow the same recipe per modality:
``sentiment_text = clip(3 tanh(w_t s_t / 3) + sigma eps)`` and likewise for
audio and vision, as CH-SIMS provides.

Scenarios
---------

``scenario=`` selects a variant of that process built so that one paper
component has something to exploit. Each changes only what is listed (the
values are the scenario's defaults, each an argument that can be overridden);
the default scenario's arrays and floors are exactly those of the process
above (a test pins their checksum).

* ``"agree"``: modalities mostly agree (``agreement`` rho = 0.8):
  ``s_a = rho s_t + sqrt(1 - rho^2) z_a`` and ``s_v = rho s_t + sqrt(1 - rho^2) z_v``
  with ``z_a, z_v ~ N(0, 1)``, so the audio and vision of a sample whose text
  is similar support its label (where TeCaFN's cross-sample replacement of
  audio/vision by a text-similar sample's should help). Sarcasm (same rule)
  becomes rare. Bayes floor: closed form as above. Text-only floor: Monte Carlo
  with ``s_a, s_v`` drawn from ``N(rho s_t, 1 - rho^2)``.
* ``"conflict"``: sarcasm-like conflicts are frequent and decisive:
  ``sarcasm_threshold`` = 0.25 (about 40% of samples are sarcastic) and
  ``weights`` = (2.0, 0.4, 0.4), so the sign of the label is the text's
  sign flipped whenever the tone disagrees; only the interaction of text and
  tone (``sign(s_t * s_a)``) reveals it. Floors as in the default.
* ``"multiscale"``: each sample's emphasis window has its own width
  ``W ~ U(windows)`` [(2, 4, 8, 16)] (``window`` is then unused), tone
  channel 0 is ``s_a * window_scale`` inside the lagged window
  ``[p + offset, p + offset + W)`` and ``tone_noise * N(0, 1)`` [1.0]
  outside it (so the tone must be read in a window of the right width, not
  averaged over the sequence), and the tone weighs most in the label,
  ``weights`` = (1.0, 1.5, 0.3). The text noise is also orthogonal to ``e_t``
  whenever ``tone_noise > 0``, so the text projection on ``e_t`` is exactly 1
  in the emphasis window and 0 elsewhere: the window (hence ``s_a``, the mean
  tone over it) is an exact read-out and the Bayes floor stays the closed
  form above. Text-only floor: as in the default (``W`` and ``p`` are
  independent of the label).
* ``"missing"``: each of audio and vision is missing, independently, in a
  share ``missing_rate`` [0.3] of samples: its features are zeros and its mask
  all False (the label still depends on the unseen latent). Latents
  ``audio_missing`` / ``vision_missing`` say which. Bayes floor: closed form for
  complete samples; for a sample with a missing modality, Monte Carlo over the
  unseen latents given what is seen (the conditional median's mean absolute
  deviation, ``draws`` per sample). Text-only floor: as in the default.

Every split carries ``scenario``, ``bayes_mae`` and ``text_only_bayes_mae``.
"""

import math

import numpy as np

DEFAULT_SPLITS = {"train": 1284, "valid": 229, "test": 686}

# What each scenario sets; an argument of `make_synthetic_benchmark` left at
# None takes its scenario's value from here (module docstring).
SCENARIOS = {
    "default": dict(
        weights=(1.5, 0.6, 0.6), sarcasm_threshold=1.0, agreement=0.0, windows=None,
        tone_noise=0.0, missing_rate=0.0,
    ),
    "agree": dict(
        weights=(1.5, 0.6, 0.6), sarcasm_threshold=1.0, agreement=0.8, windows=None,
        tone_noise=0.0, missing_rate=0.0,
    ),
    "conflict": dict(
        weights=(2.0, 0.4, 0.4), sarcasm_threshold=0.25, agreement=0.0, windows=None,
        tone_noise=0.0, missing_rate=0.0,
    ),
    "multiscale": dict(
        weights=(1.0, 1.5, 0.3), sarcasm_threshold=1.0, agreement=0.0, windows=(2, 4, 8, 16),
        tone_noise=1.0, missing_rate=0.0,
    ),
    "missing": dict(
        weights=(1.5, 0.6, 0.6), sarcasm_threshold=1.0, agreement=0.0, windows=None,
        tone_noise=0.0, missing_rate=0.3,
    ),
}


def _unit(rng, dim):
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def _orthogonal_noise(rng, shape, direction, scale):
    """Gaussian noise with its component along `direction` removed."""
    n = rng.standard_normal(shape).astype(np.float64) * scale
    n -= np.einsum("...d,d->...", n, direction)[..., None] * direction
    return n


def _clip_abs_dev(mean, sigma, lo=-3.0, hi=3.0):
    """E|clip(m + sigma*eps, lo, hi) - m| for eps ~ N(0, 1), m in [lo, hi], exactly.

    With a = (lo - m)/sigma and b = (hi - m)/sigma the expectation splits into
    the unclipped part, sigma * (2 phi(0) - phi(a) - phi(b)), and the two
    clipped tails, (m - lo) Phi(a) + (hi - m) (1 - Phi(b)).
    """
    m = np.clip(np.asarray(mean, np.float64), lo, hi)
    if sigma == 0:
        # Noise-free labels: the clipped label is m itself.
        return np.zeros_like(m)
    a = (lo - m) / sigma
    b = (hi - m) / sigma
    phi = lambda z: np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = np.vectorize(lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))))
    return sigma * (2 * phi(0.0) - phi(a) - phi(b)) + (m - lo) * cdf(a) + (hi - m) * (1 - cdf(b))


class SyntheticBenchmark:
    """Arrays of one synthetic split plus the facts of its generating process.

    Attributes:
        inputs: dict of numpy arrays in the batch layout of docs/data.md (padded,
            with boolean masks).
        targets: dict of float32 `[N, 1]` arrays (`sentiment`, and unimodal
            labels when asked for).
        latents: dict of the latent variables (`s_t`, `s_a`, `s_v`,
            `sarcasm`, `y_clean`, `emphasis_start`, `emphasis_width`,
            `audio_missing`, `vision_missing`) for analysis.
        bayes_mae: Bayes-optimal MAE of this split.
        text_only_bayes_mae: best MAE a text-only predictor can reach.
        scenario: name of the generating scenario (module docstring).
    """

    def __init__(self, inputs, targets, latents, bayes_mae, text_only_bayes_mae, scenario="default"):
        self.inputs = inputs
        self.targets = targets
        self.latents = latents
        self.bayes_mae = bayes_mae
        self.text_only_bayes_mae = text_only_bayes_mae
        self.scenario = scenario

    def __len__(self):
        return len(self.targets["sentiment"])

    def to_tf_dataset(self, batch_size=32, shuffle=False, seed=0, include_index=False):
        """A `tf.data.Dataset` of `(inputs, targets)` batches; `include_index`
        adds `sample_index` (int32 `[B]`, the example's row in the split)."""
        import tensorflow as tf

        inputs = dict(self.inputs)
        if include_index:
            inputs["sample_index"] = np.arange(len(self), dtype="int32")
        ds = tf.data.Dataset.from_tensor_slices((inputs, self.targets))
        if shuffle:
            ds = ds.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def examples(self):
        """Yields one unpadded example dict per sample (for TFRecord writing)."""
        n = len(self)
        for i in range(n):
            ex = {"id": f"synthetic_{i:06d}"}
            for m in ("text", "audio", "vision"):
                length = int(self.inputs[f"{m}_mask"][i].sum())
                ex[m] = self.inputs[m][i, :length]
            for k, v in self.targets.items():
                ex[k] = v[i]
            yield ex


def _conditional_floor(s_t, s_a, s_v, know_a, know_v, w, sigma, threshold, agreement, rng, draws):
    """Per-sample mean |y - median(y | seen latents)| by Monte Carlo.

    `s_t` is always seen; `s_a` / `s_v` are seen where `know_a` / `know_v`.
    An unseen latent is drawn from its law given `s_t`, N(rho s_t, 1 - rho^2).
    Three streams of `draws` normals are taken per sample whatever is seen, so
    that the default scenario's text-only floor stays what it always was.
    """
    rest = math.sqrt(1.0 - agreement * agreement)
    out = np.empty(len(s_t))
    for i, st in enumerate(s_t):
        za = rng.standard_normal(draws)
        zv = rng.standard_normal(draws)
        eps = rng.standard_normal(draws)
        if agreement:
            za = agreement * st + rest * za
            zv = agreement * st + rest * zv
        a = np.full(draws, s_a[i]) if know_a[i] else za
        v = np.full(draws, s_v[i]) if know_v[i] else zv
        y = _label(np.full(draws, st), a, v, w, threshold)
        y = np.clip(y + sigma * eps, -3.0, 3.0)
        out[i] = np.mean(np.abs(y - np.median(y)))
    return out


def _label(s_t, s_a, s_v, w, threshold):
    sarcasm = (s_t * s_a < 0) & (np.abs(s_a) > threshold)
    g = w[0] * np.where(sarcasm, -s_t, s_t) + w[1] * s_a + w[2] * s_v
    return 3.0 * np.tanh(g / 3.0)


def make_synthetic_benchmark(
    seed=0,
    splits=None,
    seq_len=50,
    min_len=24,
    text_dim=768,
    audio_dim=5,
    vision_dim=20,
    aligned=True,
    audio_len=60,
    vision_len=40,
    window=8,
    offset=3,
    window_scale=1.0,
    weights=None,
    sarcasm_threshold=None,
    sigma=0.3,
    feature_noise=1.0,
    unimodal_labels=False,
    compute_text_only_floor=True,
    scenario="default",
    agreement=None,
    windows=None,
    tone_noise=None,
    missing_rate=None,
    draws=4000,
):
    """Generates the synthetic benchmark; returns `{split: SyntheticBenchmark}`.

    The generating process and the scenarios (`"default"`, `"agree"`,
    `"conflict"`, `"multiscale"`, `"missing"`) are documented in the module
    docstring; `weights`, `sarcasm_threshold`, `agreement`, `windows`,
    `tone_noise` and `missing_rate` left at None take the scenario's values
    (`SCENARIOS`). Every split is drawn from its own stream derived from
    `seed`, so the same arguments always give the same arrays. `draws` is the
    Monte Carlo size per sample of the floors that need one.

    Example:

    >>> data = make_synthetic_benchmark(seed=0, splits={"train": 64, "test": 32})
    >>> data["train"].inputs["text"].shape
    (64, 50, 768)
    >>> ms = make_synthetic_benchmark(splits={"test": 8}, seq_len=24, min_len=20,
    ...                               text_dim=16, scenario="multiscale")["test"]
    >>> set(int(w) for w in ms.latents["emphasis_width"]) <= {2, 4, 8, 16}
    True
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"Unknown synthetic scenario {scenario!r}; expected one of {sorted(SCENARIOS)}.")
    given = dict(
        weights=weights, sarcasm_threshold=sarcasm_threshold, agreement=agreement,
        windows=windows, tone_noise=tone_noise, missing_rate=missing_rate,
    )
    p = {k: (SCENARIOS[scenario][k] if v is None else v) for k, v in given.items()}
    agreement, tone_noise, missing_rate = float(p["agreement"]), float(p["tone_noise"]), float(p["missing_rate"])
    sarcasm_threshold = float(p["sarcasm_threshold"])
    if not 0.0 <= agreement < 1.0:
        raise ValueError(f"agreement must be in [0, 1); got {agreement}.")
    if not 0.0 <= missing_rate <= 1.0:
        raise ValueError(f"missing_rate must be in [0, 1]; got {missing_rate}.")
    if tone_noise < 0.0:
        raise ValueError(f"tone_noise must be >= 0; got {tone_noise}.")
    widths = None if p["windows"] is None else np.asarray(p["windows"], np.int64)
    if widths is not None and (widths.ndim != 1 or widths.size == 0 or widths.min() < 1):
        raise ValueError(f"windows must be a non-empty list of positive widths; got {p['windows']}.")
    longest = window if widths is None else int(widths.max())
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    if min_len < longest + offset + 1:
        raise ValueError(
            f"min_len={min_len} is too short for the widest emphasis window ({longest}) and "
            f"offset={offset}: it must be at least {longest + offset + 1} (pass a larger min_len "
            f"or smaller window/windows)."
        )
    if not aligned and min(audio_len, vision_len) < longest + offset + 1:
        raise ValueError("audio_len and vision_len must exceed window + offset.")
    root = np.random.default_rng(seed)
    # Fixed directions shared by every split (part of the "world").
    u_t = _unit(root, text_dim)
    e_t = _orthogonal_noise(root, (text_dim,), u_t, 1.0)
    e_t /= np.linalg.norm(e_t)
    u_v = _unit(root, vision_dim)
    w = np.asarray(p["weights"], np.float64)

    out = {}
    for split_index, (split, n) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, split_index, 7919])
        # Scenario-only draws come from their own stream, so that the default
        # scenario consumes `rng` exactly as it always did.
        srng = np.random.default_rng([seed, split_index, 7919, 1])
        s_t, s_a, s_v = rng.standard_normal((3, n))
        if agreement:
            rest = math.sqrt(1.0 - agreement * agreement)
            s_a = agreement * s_t + rest * s_a
            s_v = agreement * s_t + rest * s_v
        t_len = seq_len
        a_len = seq_len if aligned else audio_len
        v_len = seq_len if aligned else vision_len
        len_t = rng.integers(min_len, seq_len + 1, size=n)
        if aligned:
            len_a = len_v = len_t
        else:
            len_a = rng.integers(min(min_len, a_len), a_len + 1, size=n)
            len_v = rng.integers(min(min_len, v_len), v_len + 1, size=n)
        width = window if widths is None else srng.choice(widths, size=n)
        width_col = width if widths is None else width[:, None]

        pos = np.arange(t_len)[None, :]
        text_mask = pos < len_t[:, None]
        text = _orthogonal_noise(rng, (n, t_len, text_dim), u_t, feature_noise)
        if tone_noise > 0:
            # The tone no longer marks its window, so the text must, exactly.
            text -= np.einsum("...d,d->...", text, e_t)[..., None] * e_t
        text += s_t[:, None, None] * u_t[None, None, :]
        # The emphasis window must leave room for the lagging tone window on
        # the (possibly shorter) audio timeline.
        room = np.minimum(len_t, len_a) - width - offset
        start = (rng.random(n) * (room + 1)).astype(np.int64)
        emph = (pos >= start[:, None]) & (pos < start[:, None] + width_col)
        text += emph[..., None] * e_t[None, None, :]
        text *= text_mask[..., None]

        apos = np.arange(a_len)[None, :]
        audio_mask = apos < len_a[:, None]
        audio = rng.standard_normal((n, a_len, audio_dim))
        tone = (apos >= start[:, None] + offset) & (apos < start[:, None] + offset + width_col)
        if tone_noise > 0:
            audio[..., 0] = np.where(tone, s_a[:, None] * window_scale, tone_noise * audio[..., 0])
        else:
            audio[..., 0] = tone * s_a[:, None] * window_scale
        audio *= audio_mask[..., None]

        vpos = np.arange(v_len)[None, :]
        vision_mask = vpos < len_v[:, None]
        vision = _orthogonal_noise(rng, (n, v_len, vision_dim), u_v, feature_noise)
        vision += s_v[:, None, None] * u_v[None, None, :]
        vision *= vision_mask[..., None]

        y_clean = _label(s_t, s_a, s_v, w, sarcasm_threshold)
        y = np.clip(y_clean + sigma * rng.standard_normal(n), -3.0, 3.0)
        targets = {"sentiment": y.astype(np.float32)[:, None]}
        if unimodal_labels:
            for name, s, wk in (("text", s_t, w[0]), ("audio", s_a, w[1]), ("vision", s_v, w[2])):
                yu = 3.0 * np.tanh(wk * s / 3.0) + sigma * rng.standard_normal(n)
                targets[f"sentiment_{name}"] = np.clip(yu, -3.0, 3.0).astype(np.float32)[:, None]

        audio_missing = np.zeros(n, bool)
        vision_missing = np.zeros(n, bool)
        if missing_rate > 0:
            audio_missing = srng.random(n) < missing_rate
            vision_missing = srng.random(n) < missing_rate
            audio[audio_missing] = 0.0
            audio_mask[audio_missing] = False
            vision[vision_missing] = 0.0
            vision_mask[vision_missing] = False

        inputs = {
            "text": text.astype(np.float32),
            "text_mask": text_mask,
            "audio": audio.astype(np.float32),
            "audio_mask": audio_mask,
            "vision": vision.astype(np.float32),
            "vision_mask": vision_mask,
        }
        sarcasm = (s_t * s_a < 0) & (np.abs(s_a) > sarcasm_threshold)
        latents = {
            "s_t": s_t, "s_a": s_a, "s_v": s_v, "sarcasm": sarcasm, "y_clean": y_clean,
            "emphasis_start": start, "emphasis_width": np.broadcast_to(width, (n,)).copy(),
            "audio_missing": audio_missing, "vision_missing": vision_missing,
        }
        per_sample = _clip_abs_dev(y_clean, sigma)
        partial = audio_missing | vision_missing
        if partial.any():
            idx = np.flatnonzero(partial)
            per_sample[idx] = _conditional_floor(
                s_t[idx], s_a[idx], s_v[idx], ~audio_missing[idx], ~vision_missing[idx], w, sigma,
                sarcasm_threshold, agreement, np.random.default_rng([seed, split_index, 37]), draws,
            )
        bayes = float(per_sample.mean())
        if compute_text_only_floor:
            unseen = np.zeros(n, bool)
            text_floor = float(
                _conditional_floor(
                    s_t, s_a, s_v, unseen, unseen, w, sigma, sarcasm_threshold, agreement,
                    np.random.default_rng([seed, split_index, 31]), draws,
                ).mean()
            )
        else:
            text_floor = math.nan
        out[split] = SyntheticBenchmark(inputs, targets, latents, bayes, text_floor, scenario)
    return out
