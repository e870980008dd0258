import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import MultimodalAdaptationGate

B, T, D, DA, DV = 3, 5, 6, 3, 4


def reference(gate, z, a, v, beta, a_mask=None, v_mask=None):
    """Eqs. 1-5 of Rahman et al. (2020) in NumPy, dropout off."""
    w = {k: (np.asarray(l.kernel), np.asarray(l.bias)) for k, l in (
        ("gv", gate.gate_vision), ("ga", gate.gate_audio), ("v", gate.proj_vision), ("a", gate.proj_audio))}
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    g_v = relu(np.concatenate([v, z], -1) @ w["gv"][0] + w["gv"][1])
    g_a = relu(np.concatenate([a, z], -1) @ w["ga"][0] + w["ga"][1])
    t_v, t_a = g_v * (v @ w["v"][0] + w["v"][1]), g_a * (a @ w["a"][0] + w["a"][1])
    if v_mask is not None:
        t_v = np.where(v_mask[..., None], t_v, 0)
    if a_mask is not None:
        t_a = np.where(a_mask[..., None], t_a, 0)
    h = t_v + t_a
    h_norm = np.linalg.norm(h, axis=-1)
    h_norm = np.where(h_norm == 0, 1.0, h_norm)
    alpha = np.minimum(np.linalg.norm(z, axis=-1) / (h_norm + 1e-6) * beta, 1.0)
    x = z + alpha[..., None] * h
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    gamma, b = np.asarray(gate.layer_norm.gamma), np.asarray(gate.layer_norm.beta)
    return (x - mu) / np.sqrt(var + 1e-5) * gamma + b, alpha


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((B, T, D)).astype("float32")
    a = rng.standard_normal((B, T, DA)).astype("float32")
    v = rng.standard_normal((B, T, DV)).astype("float32")
    return z, a, v


@pytest.fixture(scope="module")
def gate():
    keras.utils.set_random_seed(0)
    layer = MultimodalAdaptationGate(beta_shift=0.5, dropout=0.3)
    layer.build((None, None, D), (None, None, DA), (None, None, DV))
    rng = np.random.default_rng(1)
    for w in layer.weights:  # biases and LayerNorm off their 0/1 start
        w.assign(np.asarray(w) + 0.3 * rng.standard_normal(w.shape).astype("float32"))
    return layer


def test_matches_numpy_equations_in_both_regimes(gate):
    z, a, v = inputs()
    a[0] *= 20.0  # large displacements: alpha < 1 on those words
    want, alpha = reference(gate, z, a, v, 0.5)
    assert (alpha < 1).any() and (alpha == 1).any()
    got = np.asarray(gate(z, a, v))
    assert got.shape == (B, T, D)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_masks_select_and_an_all_padding_word_gets_no_shift(gate):
    z, a, v = inputs(2)
    a_mask = np.arange(T)[None] < np.array([5, 2, 0])[:, None]
    v_mask = np.arange(T)[None] < np.array([4, 0, 0])[:, None]
    want, _ = reference(gate, z, a, v, 0.5, a_mask, v_mask)
    bad_a, bad_v = a.copy(), v.copy()
    bad_a[~a_mask], bad_v[~v_mask] = np.inf, np.nan
    got = np.asarray(gate(z, bad_a, bad_v, audio_mask=a_mask, vision_mask=v_mask))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Sample 2 has neither modality: LayerNorm(Z) exactly (H = 0, alpha H = 0).
    plain, _ = reference(gate, z, np.zeros_like(a), np.zeros_like(v), 0.5, a_mask & False, v_mask & False)
    np.testing.assert_allclose(got[2], plain[2], atol=1e-5)
    # Gradients stay finite through the zero-norm H (sqrt at 0).
    with tf.GradientTape() as tape:
        out = gate(z, bad_a, bad_v, audio_mask=a_mask, vision_mask=v_mask)
    grads = tape.gradient(out, gate.trainable_weights)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_gradient_reaches_every_weight_and_dropout_only_in_training(gate):
    z, a, v = inputs(3)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(gate(z, a, v) * np.arange(D, dtype="float32"))
    for w, g in zip(gate.trainable_weights, tape.gradient(loss, gate.trainable_weights)):
        assert g is not None and np.abs(np.asarray(g)).max() > 0, w.path
    np.testing.assert_array_equal(np.asarray(gate(z, a, v)), np.asarray(gate(z, a, v, training=False)))
    assert not np.allclose(np.asarray(gate(z, a, v, training=True)), np.asarray(gate(z, a, v)))


def test_config_round_trip_and_unaligned_lengths_are_refused(gate):
    clone = MultimodalAdaptationGate.from_config(gate.get_config())
    assert (clone.beta_shift, clone.dropout, clone.epsilon) == (0.5, 0.3, 1e-6)
    clone.build((None, None, D), (None, None, DA), (None, None, DV))
    clone.set_weights(gate.get_weights())
    z, a, v = inputs(4)
    np.testing.assert_allclose(np.asarray(clone(z, a, v)), np.asarray(gate(z, a, v)), atol=1e-6)
    with pytest.raises(ValueError, match="word-aligned audio: 4 steps for 5 text tokens"):
        gate(z, a[:, :4], v)
