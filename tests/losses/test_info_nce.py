import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.losses import InfoNCE
from keras_msa.losses import info_nce


def numpy_info_nce(q, k, tau, symmetric=False, mask=None, normalize=True):
    """Per-sample losses and their mean over valid samples, by explicit loops."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    if normalize:
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        k = k / np.linalg.norm(k, axis=1, keepdims=True)
    n = len(q)
    valid = np.ones(n, bool) if mask is None else np.asarray(mask, bool)

    def direction(a, b):
        out = np.zeros(n)
        for i in range(n):
            if not valid[i]:
                continue
            num = np.exp(a[i] @ b[i] / tau)
            den = sum(np.exp(a[i] @ b[j] / tau) for j in range(n) if valid[j])
            out[i] = -np.log(num / den)
        return out

    per = direction(q, k)
    if symmetric:
        per = 0.5 * (per + direction(k, q))
    mean = per[valid].mean() if valid.any() else 0.0
    return per, mean


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_numpy(symmetric, normalize):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((6, 5)).astype("float32")
    k = rng.standard_normal((6, 5)).astype("float32")
    tau = 0.1 if normalize else 2.0
    per_ref, mean_ref = numpy_info_nce(q, k, tau, symmetric, normalize=normalize)
    loss = InfoNCE(temperature=tau, symmetric=symmetric, normalize=normalize)
    np.testing.assert_allclose(float(loss(q, k)), mean_ref, rtol=1e-5, atol=1e-5)
    per = info_nce(q, k, tau, symmetric, normalize=normalize, reduction="none")
    np.testing.assert_allclose(np.asarray(per), per_ref, rtol=1e-5, atol=1e-5)
    total = info_nce(q, k, tau, symmetric, normalize=normalize, reduction="sum")
    np.testing.assert_allclose(float(total), per_ref.sum(), rtol=1e-5, atol=1e-5)


def test_asymmetric_differs_from_reverse_direction():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((5, 4)).astype("float32")
    k = rng.standard_normal((5, 4)).astype("float32")
    a = float(info_nce(q, k))
    b = float(info_nce(k, q))
    assert abs(a - b) > 1e-3
    np.testing.assert_allclose(float(info_nce(q, k, symmetric=True)), 0.5 * (a + b), rtol=1e-6)


def test_mask_removes_samples_as_anchors_and_negatives():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((7, 3)).astype("float32")
    k = rng.standard_normal((7, 3)).astype("float32")
    mask = np.array([1, 0, 1, 1, 0, 1, 1], bool)
    per_ref, mean_ref = numpy_info_nce(q, k, 0.2, True, mask)
    np.testing.assert_allclose(float(info_nce(q, k, 0.2, True, mask)), mean_ref, rtol=1e-5, atol=1e-5)
    per = np.asarray(info_nce(q, k, 0.2, True, mask, reduction="none"))
    np.testing.assert_allclose(per, per_ref, rtol=1e-5, atol=1e-5)
    assert np.all(per[~mask] == 0)
    # Equal to the loss on the valid sub-batch alone.
    sub = float(info_nce(q[mask], k[mask], 0.2, True))
    np.testing.assert_allclose(float(info_nce(q, k, 0.2, True, mask)), sub, rtol=1e-6)
    # Values of masked samples change nothing.
    q2, k2 = q.copy(), k.copy()
    q2[~mask] = 50.0
    k2[~mask] = -3.0
    np.testing.assert_allclose(float(info_nce(q2, k2, 0.2, True, mask)), sub, rtol=1e-6)


def test_edge_cases():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((4, 3)).astype("float32")
    # No valid sample: no pair to contrast, loss is 0 and finite.
    none_valid = info_nce(q, q, mask=np.zeros(4, bool))
    assert float(none_valid) == 0.0
    # One valid sample: it has no negative, so -log(1) = 0.
    np.testing.assert_allclose(float(info_nce(q, q, mask=np.array([1, 0, 0, 0], bool))), 0.0, atol=1e-7)
    # Ties: all embeddings equal -> every logit equal -> log(B).
    same = np.ones((5, 3), "float32")
    np.testing.assert_allclose(float(info_nce(same, same, symmetric=True)), np.log(5), rtol=1e-6)
    # Zero vectors (the pooled embedding of an all-padding modality) stay finite.
    zeros = np.zeros((4, 3), "float32")
    assert np.isfinite(float(info_nce(zeros, q)))
    np.testing.assert_allclose(float(info_nce(zeros, q)), np.log(4), rtol=1e-6)
    # Perfectly separated, aligned embeddings -> near-zero loss.
    assert float(info_nce(np.eye(4, dtype="float32"), np.eye(4, dtype="float32"), 0.05)) < 1e-6
    # A batch of one.
    assert float(info_nce(q[:1], q[:1])) == pytest.approx(0.0, abs=1e-7)


def test_bad_inputs_raise_clear_errors():
    q = np.zeros((4, 3), "float32")
    with pytest.raises(ValueError, match="batch size"):
        info_nce(q, np.zeros((5, 3), "float32"))
    with pytest.raises(ValueError, match="embedding width"):
        info_nce(q, np.zeros((4, 2), "float32"))
    with pytest.raises(ValueError, match="rank 2"):
        info_nce(q[None], q[None])
    with pytest.raises(ValueError, match="temperature"):
        InfoNCE(temperature=0.0)
    with pytest.raises(ValueError, match="reduction"):
        InfoNCE(reduction="avg")


def test_config_round_trip_and_serialization():
    loss = InfoNCE(temperature=0.3, symmetric=True, normalize=False, reduction="sum", name="x")
    clone = InfoNCE.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, InfoNCE)
    assert restored.get_config() == loss.get_config()


def test_gradients_match_numpy_and_work_in_tf_function():
    rng = np.random.default_rng(4)
    q0 = rng.standard_normal((5, 4)).astype("float32")
    k0 = rng.standard_normal((5, 4)).astype("float32")
    mask = np.array([1, 1, 0, 1, 1], bool)
    q = tf.Variable(q0)
    k = tf.Variable(k0)

    @tf.function(jit_compile=True)
    def step(mask):
        with tf.GradientTape() as tape:
            loss = info_nce(q, k, 0.1, True, mask)
        return loss, tape.gradient(loss, [q, k])

    loss, (gq, gk) = step(tf.constant(mask))
    _, mean_ref = numpy_info_nce(q0, k0, 0.1, True, mask)
    np.testing.assert_allclose(float(loss), mean_ref, rtol=1e-5)
    # Central differences on the float64 reference.
    eps = 1e-4
    for var, g, which in ((q0, gq, 0), (k0, gk, 1)):
        num = np.zeros_like(var, dtype=np.float64)
        for idx in np.ndindex(var.shape):
            plus = var.astype(np.float64).copy()
            minus = plus.copy()
            plus[idx] += eps
            minus[idx] -= eps
            args_p = (plus, k0) if which == 0 else (q0, plus)
            args_m = (minus, k0) if which == 0 else (q0, minus)
            num[idx] = (
                numpy_info_nce(*args_p, 0.1, True, mask)[1] - numpy_info_nce(*args_m, 0.1, True, mask)[1]
            ) / (2 * eps)
        np.testing.assert_allclose(np.asarray(g), num, atol=2e-3)
        # Masked samples receive no gradient.
        assert np.all(np.asarray(g)[~mask] == 0)


def test_float16_inputs_give_float32_loss():
    rng = np.random.default_rng(5)
    q = rng.standard_normal((4, 3)).astype("float16")
    loss = info_nce(q, q)
    assert loss.dtype == "float32"
    assert np.isfinite(float(loss))
