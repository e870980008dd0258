"""central_moment_discrepancy (MISA's similarity loss) against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from keras_msa.losses import CentralMomentDiscrepancy
from keras_msa.losses import central_moment_discrepancy


def _np_cmd(x1, x2, k):
    m1, m2 = x1.mean(0), x2.mean(0)
    total = np.linalg.norm(m1 - m2)
    for j in range(2, k + 1):
        total += np.linalg.norm(((x1 - m1) ** j).mean(0) - ((x2 - m2) ** j).mean(0))
    return total


def test_cmd_matches_numpy_and_edge_cases():
    rng = np.random.default_rng(0)
    a, b = rng.random((6, 4)), rng.random((5, 4))
    for k in (1, 2, 5):
        np.testing.assert_allclose(float(central_moment_discrepancy(a, b, k)), _np_cmd(a, b, k), rtol=1e-5)
    np.testing.assert_allclose(float(CentralMomentDiscrepancy(3)(a, b)), _np_cmd(a, b, 3), rtol=1e-5)
    assert CentralMomentDiscrepancy.from_config(CentralMomentDiscrepancy(3).get_config()).n_moments == 3
    # Equal distributions (a batch of one: every central moment is 0) give 0
    # and a finite (zero) gradient, not the inf of sqrt'(0).
    x = tf.constant(a[:1], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = central_moment_discrepancy(x, x + 0.0, 5)
    assert float(loss) == 0.0
    assert np.all(np.isfinite(np.asarray(tape.gradient(loss, x))))
    with pytest.raises(ValueError, match="n_moments"):
        central_moment_discrepancy(a, b, 0)
    with pytest.raises(ValueError, match=r"\[batch, dim\]"):
        central_moment_discrepancy(a[None], b[None])
