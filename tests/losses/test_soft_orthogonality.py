"""soft_orthogonality (MISA's difference loss) against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from keras_msa.losses import SoftOrthogonality
from keras_msa.losses import soft_orthogonality


def _np_diff(x1, x2, eps=1e-6):
    def norm(x):
        x = x - x.mean(0, keepdims=True)
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + eps)

    return np.mean((norm(x1).T @ norm(x2)) ** 2)


def test_soft_orthogonality_matches_numpy_and_detaches_norms():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))
    np.testing.assert_allclose(float(soft_orthogonality(a, b)), _np_diff(a, b), rtol=1e-5)
    np.testing.assert_allclose(float(SoftOrthogonality()(a, b)), _np_diff(a, b), rtol=1e-5)
    # The row norms are constants (MMSA's .detach()): the gradient is that of
    # mean((X1n^T X2n)^2) with the norms fixed.
    x1, x2 = tf.constant(a, tf.float32), tf.constant(b, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x1)
        loss = soft_orthogonality(x1, x2)
    got = np.asarray(tape.gradient(loss, x1))
    c1, c2 = a - a.mean(0), b - b.mean(0)
    n1 = np.linalg.norm(c1, axis=1, keepdims=True) + 1e-6
    y2 = c2 / (np.linalg.norm(c2, axis=1, keepdims=True) + 1e-6)
    m = (c1 / n1).T @ y2
    g_y1 = y2 @ (2 * m / m.size).T
    g_c1 = g_y1 / n1
    want = g_c1 - g_c1.mean(0, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # A constant batch (every row equal) centres to zero: zero loss, finite.
    assert float(soft_orthogonality(np.ones((3, 2)), b[:3])) == 0.0
    with pytest.raises(ValueError, match="same size"):
        soft_orthogonality(a, b[:4])
