import numpy as np
import tensorflow as tf

from keras_msa.layers import LowRankFusion


def numpy_low_rank_fusion(hs, factors, lam, bias):
    """Eq. 6: the full tensor-fusion weight rebuilt from its rank-r factors
    and applied to the outer product (the computation LMF avoids)."""
    out = np.zeros((hs[0].shape[0], bias.shape[-1]))
    for b in range(hs[0].shape[0]):
        ext = [np.concatenate([[1.0], h[b]]) for h in hs]
        z = np.einsum("i,j,k->ijk", *ext)
        for i in range(lam.shape[-1]):
            w = np.einsum("io,jo,ko->ijko", factors[0][i], factors[1][i], factors[2][i])
            out[b] += lam[0, i] * np.einsum("ijk,ijko->o", z, w)
    return out + bias


def _layer(seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    hs = [rng.standard_normal((3, d)).astype("float32") for d in (3, 2, 4)]
    layer = LowRankFusion(rank=2, output_dim=2, **kwargs)
    layer(hs)
    layer.fusion_bias.assign(rng.standard_normal((1, 2)).astype("float32"))
    return layer, hs


def test_matches_the_full_rank_tensor_computation():
    layer, hs = _layer()
    out = np.asarray(layer(hs))
    assert out.shape == (3, 2)
    want = numpy_low_rank_fusion(hs, [np.asarray(f) for f in layer.factors], np.asarray(layer.fusion_weights),
                                 np.asarray(layer.fusion_bias))
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_config_round_trip_and_gradients():
    layer, hs = _layer(1)
    clone = LowRankFusion.from_config(layer.get_config())
    assert (clone.rank, clone.output_dim, clone.train_fusion_weights) == (2, 2, True)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(hs) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == 5 and all(np.abs(np.asarray(g)).max() > 0 for g in grads)
    frozen, _ = _layer(1, train_fusion_weights=False)
    assert len(frozen.trainable_weights) == 3 and len(frozen.non_trainable_weights) == 2


def test_a_missing_modality_changes_only_its_samples():
    layer, hs = _layer(2)
    poisoned = [h.copy() for h in hs]
    poisoned[2][0] = np.inf
    present = [np.ones(3, bool), np.ones(3, bool), np.array([False, True, True])]
    out = np.asarray(layer(poisoned, mask=present))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[1:], np.asarray(layer(hs))[1:], atol=1e-6)
    zeroed = [hs[0], hs[1], np.where(present[2][:, None], hs[2], 0)]
    np.testing.assert_allclose(out, np.asarray(layer(zeroed)), atol=1e-6)


def test_factor_scale_keeps_the_output_and_scales_the_factors_adam_step():
    import keras

    plain, hs = _layer(3)
    scaled = LowRankFusion(rank=2, output_dim=2, factor_scale=0.25)
    scaled(hs)
    for v, f in zip(scaled.factors, plain.factors):
        v.assign(np.asarray(f) / 0.25)
    scaled.fusion_weights.assign(plain.fusion_weights)
    scaled.fusion_bias.assign(plain.fusion_bias)
    np.testing.assert_allclose(np.asarray(scaled(hs)), np.asarray(plain(hs)), atol=1e-5)
    np.testing.assert_allclose(scaled.factor_values()[0], np.asarray(plain.factors[0]), atol=1e-6)
    steps = []
    for layer in (plain, scaled):
        before = layer.factor_values()
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(hs) ** 2)
        keras.optimizers.Adam(1e-2, epsilon=1e-12).apply(tape.gradient(loss, layer.trainable_weights), layer.trainable_weights)
        steps.append([a - b for a, b in zip(layer.factor_values(), before)])
    # One Adam step moves W by s times as much (MMSA's factor_lr = s * lr);
    # exact where epsilon is negligible against the gradient.
    for p, q in zip(*steps):
        np.testing.assert_allclose(q, 0.25 * p, atol=1e-6)
