import keras
import numpy as np
import tensorflow as tf

from keras_msa.layers import PackedRNNEncoder


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _lstm_final(x, kernel, recurrent, bias):
    """NumPy LSTM (gates i, f, c, o) over the rows of `x` [n, D]: final h."""
    hdim = recurrent.shape[0]
    h, c = np.zeros(hdim), np.zeros(hdim)
    for step in x:
        z = step @ kernel + h @ recurrent + bias
        i, f, g, o = np.split(z, 4)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
    return h


def _reference(layer, x, mask):
    out = []
    for row, m in zip(x, mask):
        real = row[m]
        f = layer.forward_lstm.cell
        b = layer.backward_lstm.cell
        h = np.concatenate([
            _lstm_final(real, *(np.asarray(w) for w in (f.kernel, f.recurrent_kernel, f.bias))),
            _lstm_final(real[::-1], *(np.asarray(w) for w in (b.kernel, b.recurrent_kernel, b.bias))),
        ])
        out.append(h @ np.asarray(layer.output_dense.kernel) + np.asarray(layer.output_dense.bias))
    return np.stack(out)


def test_matches_numpy_packed_bilstm_and_ignores_padding():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    layer = PackedRNNEncoder(hidden_dim=3, output_dim=2)
    x = rng.standard_normal((4, 5, 4)).astype("float32")
    # Right-padded, holed and all-padding rows.
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 1, 1, 0, 1], [0, 0, 0, 0, 0]], bool)
    layer.build(x.shape)
    for w in layer.weights:  # biases off zero, so that each one is checked
        w.assign(np.asarray(w) + 0.1 * rng.standard_normal(w.shape))
    out = np.asarray(layer(x, mask=mask))
    assert out.shape == (4, 2)
    np.testing.assert_allclose(out, _reference(layer, x, mask), atol=1e-5)
    # inf/NaN under the mask change nothing; the missing row gives the bias.
    bad = x.copy()
    bad[~mask] = np.nan
    bad[0, 0, 0] = x[0, 0, 0]
    np.testing.assert_allclose(np.asarray(layer(bad, mask=mask)), out, atol=1e-6)
    np.testing.assert_allclose(out[3], np.asarray(layer.output_dense.bias), atol=1e-6)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(tf.constant(bad), mask=mask) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == 8
    assert all(g is not None and np.all(np.isfinite(g)) and np.any(np.asarray(g) != 0) for g in grads)


def test_unidirectional_and_config_round_trip():
    layer = PackedRNNEncoder(hidden_dim=3, output_dim=2, bidirectional=False, dropout=0.2)
    clone = PackedRNNEncoder.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and clone.backward_lstm is None
    x = np.ones((2, 3, 4), "float32")
    assert tuple(clone(x).shape) == (2, 2) and clone.output_dense.kernel.shape == (3, 2)
