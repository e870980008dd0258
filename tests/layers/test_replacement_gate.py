import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import HardNegativeMiner
from keras_msa.layers import ReplacementGate

B, T, D, NUM = 32, 6, 3, 3


def _batch(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, D)).astype("float32")
    lengths = rng.integers(1, T + 1, size=B)
    mask = np.arange(T)[None, :] < lengths[:, None]
    x = x * mask[..., None]
    # Candidates: NUM distinct other samples, some slots unusable.
    cand = np.stack([rng.choice([j for j in range(B) if j != i], NUM, replace=False) for i in range(B)])
    cand_mask = rng.random((B, NUM)) < 0.8
    cand_mask[0] = False  # sample 0 has no usable candidate
    return x, mask, cand.astype("int32"), cand_mask


@pytest.mark.parametrize("p", [0.3, 0.7])
def test_gate_statistics(p):
    """Over many batches: replacement rate = p within sampling error, a
    replaced sample is never replaced by itself, only usable candidates are
    drawn (uniformly), and outputs/targets match what was done."""
    gate = ReplacementGate(probability=p, seed=11)
    replaced = trials = 0
    slot_counts = np.zeros(NUM)
    slot_trials = np.zeros(NUM)
    for step in range(150):
        x, mask, cand, cand_mask = _batch(step)
        out, out_mask, target, source = [np.asarray(v) for v in gate(x, mask, cand, cand_mask, training=True)]
        has = cand_mask.any(1)
        rep = source != np.arange(B)
        # Targets are 1 kept / 0 replaced, exactly as done.
        np.testing.assert_array_equal(target, (~rep).astype("int32"))
        # The gated rows are the source rows, sequence and mask together.
        np.testing.assert_array_equal(out, x[source])
        np.testing.assert_array_equal(out_mask, mask[source])
        # Never replaced by itself; never replaced without a usable candidate.
        assert not np.any(rep[~has])
        for i in np.where(rep)[0]:
            assert source[i] != i
            slots = np.where((cand[i] == source[i]) & cand_mask[i])[0]
            assert len(slots) == 1, "drew an unusable candidate"
            slot_counts[slots[0]] += 1.0 / cand_mask[i].sum()
        for i in np.where(rep)[0]:
            slot_trials[cand_mask[i]] += 1.0 / cand_mask[i].sum() ** 2
        replaced += rep[has].sum()
        trials += has.sum()
    rate = replaced / trials
    sigma = np.sqrt(p * (1 - p) / trials)
    assert abs(rate - p) < 4 * sigma, (rate, p, sigma)
    # Uniform among usable candidates: each usable slot drawn ~equally often.
    shares = slot_counts / slot_counts.sum()
    np.testing.assert_allclose(shares, np.full(NUM, 1 / NUM), atol=0.05)


def test_identity_at_inference_and_extremes():
    x, mask, cand, cand_mask = _batch(0)
    gate = ReplacementGate(probability=1.0, seed=0)
    out, out_mask, target, source = gate(x, mask, cand, cand_mask)
    np.testing.assert_array_equal(np.asarray(out), x)
    np.testing.assert_array_equal(np.asarray(out_mask), mask)
    assert np.all(np.asarray(target) == 1)
    np.testing.assert_array_equal(np.asarray(source), np.arange(B))
    # p = 1 replaces every sample that has a candidate.
    _, _, target, _ = gate(x, mask, cand, cand_mask, training=True)
    np.testing.assert_array_equal(np.asarray(target), (~cand_mask.any(1)).astype("int32"))
    # p = 0 never replaces.
    _, _, target, _ = ReplacementGate(0.0)(x, mask, cand, cand_mask, training=True)
    assert np.all(np.asarray(target) == 1)
    # No mask given: all steps real; no candidate mask: all usable.
    out, out_mask, target, _ = gate(x, None, cand, training=True)
    assert np.all(np.asarray(out_mask)) and np.all(np.asarray(target) == 0)


def test_reproducible_seeded_and_independent_streams():
    x, mask, cand, cand_mask = _batch(3)
    a, b, c = ReplacementGate(0.5, seed=5), ReplacementGate(0.5, seed=5), ReplacementGate(0.5, seed=6)
    sa = [np.asarray(a(x, mask, cand, cand_mask, training=True)[3]) for _ in range(5)]
    sb = [np.asarray(b(x, mask, cand, cand_mask, training=True)[3]) for _ in range(5)]
    sc = [np.asarray(c(x, mask, cand, cand_mask, training=True)[3]) for _ in range(5)]
    for u, v in zip(sa, sb):
        np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(u, w) for u, w in zip(sa, sc))
    # Successive calls draw fresh randomness.
    assert any(not np.array_equal(sa[0], u) for u in sa[1:])


def test_runs_in_tf_function_and_xla_with_miner():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 5, 4)).astype("float32")
    mask = np.ones((8, 5), bool)
    emb = rng.standard_normal((8, 6)).astype("float32")
    miner = HardNegativeMiner(num=3)

    def compiled(seed):
        gate = ReplacementGate(0.5, seed=seed)

        @tf.function(jit_compile=True)
        def step(x, mask, emb):
            cand, ok = miner(emb, emb)
            return gate(x, mask, cand, ok, training=True)

        return step

    # XLA may pick another counter-based generator than eager TF, so the
    # reproducibility is checked within XLA: same seed, same draws.
    step_a, step_b = compiled(1), compiled(1)
    cand, _ = miner(emb, emb)
    sources = []
    for _ in range(4):
        out, out_mask, target, source = step_a(x, mask, emb)
        _, _, _, source_b = step_b(x, mask, emb)
        source = np.asarray(source)
        np.testing.assert_array_equal(source, np.asarray(source_b))
        np.testing.assert_array_equal(np.asarray(out), x[source])
        rep = source != np.arange(8)
        np.testing.assert_array_equal(np.asarray(target), (~rep).astype("int32"))
        for i in np.where(rep)[0]:
            assert source[i] in np.asarray(cand)[i]
        sources.append(source)
    assert any(not np.array_equal(sources[0], s) for s in sources[1:])


def test_gradient_flows_to_source_rows():
    x, mask, cand, cand_mask = _batch(1)
    gate = ReplacementGate(0.5, seed=2)
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        out, _, _, source = gate(xv, mask, cand, cand_mask, training=True)
        loss = tf.reduce_sum(out)
    g = np.asarray(tf.convert_to_tensor(tape.gradient(loss, xv)))
    counts = np.bincount(np.asarray(source), minlength=B)
    np.testing.assert_allclose(g, np.ones_like(x) * counts[:, None, None])
    assert gate.trainable_weights == []


def test_config_and_errors():
    gate = ReplacementGate(probability=0.4, seed=9, name="g")
    clone = ReplacementGate.from_config(gate.get_config())
    assert clone.get_config() == gate.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(gate))
    assert restored.probability == 0.4 and restored.seed == 9
    with pytest.raises(ValueError, match="probability"):
        ReplacementGate(probability=1.5)
    with pytest.raises(ValueError, match="candidates"):
        gate(np.zeros((2, 3, 1), "float32"), None, np.zeros((2,), "int32"), training=True)
