"""BiLSTMUtteranceEncoder against a NumPy two-layer bidirectional LSTM over
the real steps (PyTorch's packed sequences)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import BiLSTMUtteranceEncoder
from keras_msa.layers.bi_lstm_utterance_encoder import reverse_valid_steps

MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 0, 0, 0, 0]], bool)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_lstm(xs, kernel, recurrent, bias):
    """Keras gate layout (i, f, c, o); returns per-step h and the final h."""
    h = np.zeros(recurrent.shape[0])
    c = np.zeros_like(h)
    out = []
    for x in xs:
        z = x @ kernel + h @ recurrent + bias
        i, f, g, o = np.split(z, 4)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.array(out), h


def _np_bi(xs, fwd, bwd):
    seq_f, hf = _np_lstm(xs, *fwd)
    seq_b, hb = _np_lstm(xs[::-1], *bwd)
    return np.concatenate([seq_f, seq_b[::-1]], axis=-1), hf, hb


def _np_encoder(layer, x, mask):
    w = lambda lstm: [np.asarray(v, np.float64) for v in lstm.cell.weights]  # noqa: E731
    gamma, beta = (np.asarray(v, np.float64) for v in layer.norm.weights)
    outs = []
    for row, m in zip(x, mask):
        if not m.any():
            outs.append(np.zeros(4 * layer.hidden))
            continue
        xs = row[m].astype(np.float64)
        seq1, h1f, h1b = _np_bi(xs, w(layer.lstm1_forward), w(layer.lstm1_backward))
        mu, var = seq1.mean(-1, keepdims=True), seq1.var(-1, keepdims=True)
        z = (seq1 - mu) / np.sqrt(var + layer.layer_norm_epsilon) * gamma + beta
        _, h2f, h2b = _np_bi(z, w(layer.lstm2_forward), w(layer.lstm2_backward))
        outs.append(np.concatenate([h1f, h2f, h1b, h2b]))
    return np.array(outs)


@pytest.fixture(scope="module")
def encoder():
    keras.utils.set_random_seed(0)
    layer = BiLSTMUtteranceEncoder(units=3)
    layer.build((None, None, 4))
    rng = np.random.default_rng(1)
    for v in layer.weights:  # biases and norms off their 0 / 1 start
        v.assign(np.asarray(v) + 0.2 * rng.standard_normal(v.shape).astype("float32"))
    x = rng.standard_normal((4, 5, 4)).astype("float32")
    return layer, x


def test_matches_numpy_packed_bilstm(encoder):
    layer, x = encoder
    out = np.asarray(layer(x, mask=MASK))
    assert out.shape == (4, 12)
    np.testing.assert_allclose(out, _np_encoder(layer, x, MASK), atol=1e-5)
    # units=None takes the feature width (MISA's hidden_sizes).
    assert BiLSTMUtteranceEncoder().compute_output_shape((2, 5, 4)) == (2, 16)


def test_reverse_valid_steps_mirrors_real_steps_only():
    x = np.arange(10, dtype="float32").reshape(2, 5, 1)
    mask = np.array([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1]], bool)
    got = np.asarray(reverse_valid_steps(x, mask))[..., 0]
    np.testing.assert_array_equal(got, [[3, 1, 2, 0, 4], [9, 8, 7, 6, 5]])
    np.testing.assert_array_equal(np.asarray(reverse_valid_steps(got[..., None], mask))[..., 0], x[..., 0])


def test_masking_gradients_and_config(encoder):
    layer, x = encoder
    clean = np.asarray(layer(x, mask=MASK))
    dirty = x.copy()
    dirty[~MASK] = np.array([np.nan, np.inf, -np.inf, 7.0])[np.arange((~MASK).sum()) % 4, None]
    xt = tf.constant(dirty)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = layer(xt, mask=MASK)
        loss = tf.reduce_sum(out**2)
    np.testing.assert_array_equal(np.asarray(out), clean)
    np.testing.assert_array_equal(clean[3], 0.0)  # all-padding row
    grads = tape.gradient(loss, [xt] + layer.trainable_weights)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    for w, g in zip(layer.trainable_weights, grads[1:]):
        assert np.any(np.asarray(g) != 0), w.path
    clone = BiLSTMUtteranceEncoder.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
