import numpy as np
import tensorflow as tf

from keras_msa.losses.gaussian_entropy import class_entropy
from keras_msa.losses.gaussian_entropy import moment_statistics


def _logdet_cov(rows):
    centred = rows - rows.mean(axis=0)
    return np.linalg.slogdet(centred.T @ centred / len(rows))[1]


def test_moments_of_memory_and_batch_give_the_concatenation_entropy():
    rng = np.random.default_rng(0)
    memory = rng.uniform(-1, 1, (7, 3)).astype("float32")
    batch = rng.uniform(-1, 1, (6, 3)).astype("float32")
    labels_m = np.array([1, -1, 1, 1, -1, 1, -1.0])
    labels_b = np.array([1, -1, 0, -1, 1, -1.0])
    mem = {c: moment_statistics(memory, s * labels_m > 0) for c, s in (("pos", 1), ("neg", -1))}
    zb = tf.constant(batch)
    with tf.GradientTape() as tape:
        tape.watch(zb)
        cur = {c: moment_statistics(zb, s * labels_b > 0) for c, s in (("pos", 1), ("neg", -1))}
        h = class_entropy(*(tuple(a + b for a, b in zip(mem[c], cur[c])) for c in ("pos", "neg")))
    pos = np.concatenate([memory[labels_m > 0], batch[labels_b > 0]])
    neg = np.concatenate([memory[labels_m < 0], batch[labels_b < 0]])
    np.testing.assert_allclose(float(h), 0.25 * (_logdet_cov(pos) + _logdet_cov(neg)), rtol=1e-4)
    grad = np.asarray(tape.gradient(h, zb))
    assert np.all(grad[2] == 0) and np.all(np.isfinite(grad))  # the label-0 row is in no class


def test_too_few_rows_give_zero_not_nan():
    z = tf.constant(np.array([[0.1, 0.2], [0.3, -0.1], [np.nan, np.inf]], "float32"))
    with tf.GradientTape() as tape:
        tape.watch(z)
        pos = moment_statistics(z, np.array([True, True, False]))  # 2 rows: a singular 2x2 covariance
        h = class_entropy(pos, pos)
    assert float(h) == 0.0
    assert np.all(np.isfinite(np.asarray(tape.gradient(h, z))))


def test_rows_that_do_not_span_give_zero_not_nan():
    # Enough rows, but all the same (a modality missing from every sample has
    # one constant representation): Sigma = 0, whose Cholesky fails; and
    # rows on a line (rank 1 of 2). Neither may reach logdet.
    for rows in (np.tile([[0.3, -0.2]], (6, 1)), np.array([[t, 2 * t] for t in np.linspace(-1, 1, 6)])):
        z = tf.constant(rows.astype("float32"))
        with tf.GradientTape() as tape:
            tape.watch(z)
            stats = moment_statistics(z, np.ones(6, bool))
            h = class_entropy(stats, stats)
        assert float(h) == 0.0
        grad = np.asarray(tape.gradient(h, z))
        assert np.all(np.isfinite(grad)) and not np.any(grad)
    # A well-conditioned Sigma is still counted (and matches NumPy).
    rows = np.random.default_rng(3).normal(size=(6, 2)).astype("float32")
    stats = moment_statistics(tf.constant(rows), np.ones(6, bool))
    np.testing.assert_allclose(float(class_entropy(stats, stats)), 0.5 * _logdet_cov(rows), rtol=1e-4)
