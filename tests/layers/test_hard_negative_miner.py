import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import HardNegativeMiner


def numpy_mine(q, k, num, valid=None):
    """Eq. 7 + Algorithm 1: cosine similarities, top-num other samples."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    s = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (k / np.linalg.norm(k, axis=1, keepdims=True)).T
    n = len(q)
    valid = np.ones(n, bool) if valid is None else valid
    out = []
    for i in range(n):
        others = [j for j in np.argsort(-s[i], kind="stable") if j != i and valid[j]]
        out.append(others[:num])
    return s, out


@pytest.fixture
def emb():
    rng = np.random.default_rng(0)
    return rng.standard_normal((9, 6)).astype("float32"), rng.standard_normal((9, 6)).astype("float32")


def test_matches_numpy(emb):
    q, k = emb
    miner = HardNegativeMiner(num=3)
    s_ref, idx_ref = numpy_mine(q, k, 3)
    np.testing.assert_allclose(np.asarray(miner.similarity(q, k)), s_ref, atol=1e-5)
    idx, ok = miner(q, k)
    assert idx.shape == (9, 3) and ok.shape == (9, 3)
    assert idx.dtype == "int32"
    np.testing.assert_array_equal(np.asarray(idx), np.array(idx_ref))
    assert np.all(np.asarray(ok))
    # Never the sample itself.
    assert not np.any(np.asarray(idx) == np.arange(9)[:, None])
    assert miner.compute_output_shape((9, 6), (9, 6)) == ((9, 3), (9, 3))


def test_sample_mask_excludes_candidates(emb):
    q, k = emb
    valid = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0], bool)
    idx, ok = HardNegativeMiner(num=4)(q, k, sample_mask=valid)
    _, idx_ref = numpy_mine(q, k, 4, valid)
    np.testing.assert_array_equal(np.asarray(idx), np.array(idx_ref))
    assert np.all(valid[np.asarray(idx)])
    # Key embeddings of excluded samples change nothing.
    k2 = k.copy()
    k2[~valid] = q[0] * 100  # would be the best match of sample 0
    idx2, _ = HardNegativeMiner(num=4)(q, k2, sample_mask=valid)
    np.testing.assert_array_equal(np.asarray(idx2), np.asarray(idx))


def test_fewer_candidates_than_num():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((3, 4)).astype("float32")
    idx, ok = HardNegativeMiner(num=5)(q, q)
    ok = np.asarray(ok)
    idx = np.asarray(idx)
    np.testing.assert_array_equal(ok.sum(1), [2, 2, 2])
    assert np.all(ok[:, :2]) and not np.any(ok[:, 2:])
    # Unusable slots point at the sample itself (safe to gather).
    np.testing.assert_array_equal(idx[:, 2:], np.repeat(np.arange(3)[:, None], 3, 1))
    # A batch of one has no candidate at all; an all-masked batch neither.
    idx1, ok1 = HardNegativeMiner(num=3)(q[:1], q[:1])
    assert not np.any(np.asarray(ok1)) and np.all(np.asarray(idx1) == 0)
    _, ok0 = HardNegativeMiner(num=2)(q, q, sample_mask=np.zeros(3, bool))
    assert not np.any(np.asarray(ok0))


def test_ties_and_zero_vectors():
    # All embeddings equal: every other sample ties; lower index first.
    same = np.ones((4, 3), "float32")
    idx, ok = HardNegativeMiner(num=2)(same, same)
    np.testing.assert_array_equal(np.asarray(idx), [[1, 2], [0, 2], [0, 1], [0, 1]])
    # Zero embeddings (all-padding modality) give finite similarities.
    z = np.zeros((4, 3), "float32")
    s = np.asarray(HardNegativeMiner().similarity(z, same))
    assert np.all(np.isfinite(s)) and np.all(s == 0)


def test_random_strategy_is_uniform_reproducible_and_never_self():
    q = np.zeros((6, 2), "float32")
    miner = HardNegativeMiner(num=2, strategy="random", seed=3)
    again = HardNegativeMiner(num=2, strategy="random", seed=3)
    counts = np.zeros((6, 6))
    for _ in range(300):
        idx, ok = miner(q, q)
        idx2, _ = again(q, q)
        idx = np.asarray(idx)
        np.testing.assert_array_equal(idx, np.asarray(idx2))
        assert np.all(np.asarray(ok))
        assert not np.any(idx == np.arange(6)[:, None])
        assert np.all(idx[:, 0] != idx[:, 1])
        for i in range(6):
            counts[i, idx[i]] += 1
    # Each of the 5 others is drawn with probability 2/5 per call.
    off = counts[~np.eye(6, dtype=bool)]
    expected = 300 * 2 / 5
    assert np.all(np.abs(off - expected) < 5 * np.sqrt(300 * 0.4 * 0.6))


def test_no_weights_and_xla(emb):
    q, k = emb
    miner = HardNegativeMiner(num=3)
    idx, _ = miner(q, k)
    # Mining only selects indices: nothing to train (the embeddings it ranks
    # are trained by the InfoNCE loss).
    assert miner.weights == []
    fn = tf.function(lambda a, b: miner(a, b), jit_compile=True)
    np.testing.assert_array_equal(np.asarray(fn(q, k)[0]), np.asarray(idx))
    # Dynamic batch inside a graph.
    fn2 = tf.function(
        lambda a, b: miner(a, b),
        input_signature=[tf.TensorSpec([None, 6]), tf.TensorSpec([None, 6])],
    )
    np.testing.assert_array_equal(np.asarray(fn2(q[:4], k[:4])[0]), np.array(numpy_mine(q[:4], k[:4], 3)[1]))


def test_config_and_errors():
    miner = HardNegativeMiner(num=5, strategy="random", seed=7, name="m")
    clone = HardNegativeMiner.from_config(miner.get_config())
    assert clone.get_config() == miner.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(miner))
    assert restored.num == 5 and restored.strategy == "random"
    with pytest.raises(ValueError, match="num"):
        HardNegativeMiner(num=0)
    with pytest.raises(ValueError, match="strategy"):
        HardNegativeMiner(strategy="easy")
    with pytest.raises(ValueError, match="batch, dim"):
        HardNegativeMiner()(np.zeros((2, 3, 4), "float32"), np.zeros((2, 3, 4), "float32"))
