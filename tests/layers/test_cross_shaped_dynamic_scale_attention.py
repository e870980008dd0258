import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import CrossShapedDynamicScaleAttention


# ---------------------------------------------------------------- NumPy reference
def conv2d_same(x, kernel):
    """Cross-correlation with zero 'same' padding; kernel [kh, kw, Cin, Cout]."""
    kh, kw = kernel.shape[:2]
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    _, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (ph, kh - 1 - ph), (pw, kw - 1 - pw), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for di in range(kh):
        for dj in range(kw):
            out += xp[:, di:di + h, dj:dj + w, :] @ kernel[di, dj]
    return out


def cca_reference(x, mask, layer):
    """Criss-cross attention, vectorised differently from the layer: for each
    position, concatenate its column (other rows) and its row, then softmax."""
    wq, bq, wk, bk, wv, bv, gamma = (np.asarray(w, np.float64) for w in layer.weights)
    x = x * mask[:, None, :, None]
    rows = x.shape[1]
    for _ in range(layer.num_loops):
        q, k, v = x @ wq + bq, x @ wk + bk, x @ wv + bv
        out = np.zeros_like(x)
        for b in range(x.shape[0]):
            for i in range(rows):
                others = [g for g in range(rows) if g != i]
                for j in range(x.shape[2]):
                    keys = np.concatenate([k[b, others, j], k[b, i]], 0)
                    vals = np.concatenate([v[b, others, j], v[b, i]], 0)
                    valid = np.concatenate([np.full(len(others), mask[b, j]), mask[b]])
                    if not valid.any():
                        continue
                    s = keys[valid] @ q[b, i, j]
                    a = np.exp(s - s.max())
                    out[b, i, j] = (a / a.sum()) @ vals[valid]
        x = (gamma * out + x) * mask[:, None, :, None]
    return x


def csdsa_reference(layer, x, mask):
    """Inference-mode CS-DSA (BatchNorm with its moving statistics)."""
    x = x.astype(np.float64)
    if layer.map_layout == "time":
        b, m, t, c = x.shape
        x = x.transpose(0, 2, 1, 3).reshape(b, 1, t, m * c)
    tm = mask[:, None, :, None]
    x = x * tm
    branches = []
    for conv, norm, cca in zip(layer.convs, layer.norms, layer.attentions):
        g, beta, mm, mv = (np.asarray(w, np.float64) for w in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance))
        u = conv2d_same(x, np.asarray(conv.kernel, np.float64))
        u = np.maximum((u - mm) / np.sqrt(mv + norm.epsilon) * g + beta, 0) * tm
        branches.append(cca_reference(u, mask, cca))
    if len(branches) == 1:
        v = branches[0]
    else:
        total = sum(branches)
        count = np.maximum(mask.sum(1) * total.shape[1], 1)[:, None]
        s = (total * tm).sum((1, 2)) / count  # Fuse: masked global average pool
        fn = layer.fuse_norm
        g, beta, mm, mv = (np.asarray(w, np.float64) for w in (fn.gamma, fn.beta, fn.moving_mean, fn.moving_variance))
        z = s @ np.asarray(layer.fuse_dense.kernel, np.float64)
        z = np.maximum((z - mm) / np.sqrt(mv + fn.epsilon) * g + beta, 0)
        logits = np.stack([z @ np.asarray(d.kernel, np.float64) + np.asarray(d.bias, np.float64) for d in layer.selects], 1)
        a = np.exp(logits - logits.max(1, keepdims=True))
        a = a / a.sum(1, keepdims=True)  # Select: softmax across branches per channel
        v = sum(a[:, k, None, None, :] * u for k, u in enumerate(branches))
    if layer.modality_logits is None:
        f = v[:, 0]
    else:
        w = np.exp(np.asarray(layer.modality_logits, np.float64))
        f = np.einsum("bmtc,m->btc", v, w / w.sum())
    return f * mask[..., None]


def make_inputs(seed=0, batch=3, steps=6, channels=16):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 3, steps, channels)).astype("float32")
    mask = np.ones((batch, steps), bool)
    mask[1, 4:] = False
    mask[2, :2] = False
    return x, mask


def build(seed=0, **kwargs):
    """A layer with every parameter moved off its initial value, so that the
    reference sees each of them (gamma = 0 and identity BatchNorm hide a lot)."""
    keras.utils.set_random_seed(seed)
    kwargs.setdefault("min_width", 4)
    layer = CrossShapedDynamicScaleAttention(**kwargs)
    x, mask = make_inputs()
    layer(x, mask=mask)
    rng = np.random.default_rng(seed + 1)
    for w in layer.weights:
        if w.path.endswith("gamma") and len(w.shape) == 0:
            w.assign(0.6)
        elif "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2.0, w.shape).astype("float32"))
        elif any(s in w.path for s in ("moving_mean", "beta", "bias", "modality_logits")):
            w.assign(rng.normal(0, 0.3, w.shape).astype("float32"))
        elif w.path.endswith("gamma"):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    return layer


# ---------------------------------------------------------------------- tests
@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_sizes": (3, 5)},
        {"kernel_sizes": (1, 3, 5), "reduction": 4, "num_loops": 1},
        {"kernel_sizes": (3,)},
        {"kernel_sizes": (3, 5), "map_layout": "time", "units": 8},
    ],
    ids=["two_branches", "three_branches", "single_scale", "time_layout"],
)
def test_matches_numpy_reference(kwargs):
    layer = build(**kwargs)
    x, mask = make_inputs()
    got = np.asarray(layer(x, mask=mask, training=False))
    ref = csdsa_reference(layer, x, mask)
    assert got.shape == ref.shape == (3, 6, kwargs.get("units", 16))
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_structure_of_options():
    two = build(kernel_sizes=(3, 5))
    assert [c.kernel.shape[:2] for c in two.convs] == [(3, 3), (5, 5)]
    assert two.fuse_dense.kernel.shape == (16, 4)  # max(16 / 16, L=4)
    assert build(kernel_sizes=(3, 5), min_width=32).fuse_dense.kernel.shape == (16, 32)
    single = build(kernel_sizes=(3,))
    assert single.selects == [] and not any("fuse" in w.path for w in single.weights)
    timed = build(map_layout="time")
    assert [c.kernel.shape for c in timed.convs] == [(1, 3, 48, 16), (1, 5, 48, 16)]
    assert timed.modality_logits is None
    with pytest.raises(ValueError, match="map_layout"):
        CrossShapedDynamicScaleAttention(map_layout="grid")
    with pytest.raises(ValueError, match=r"\[batch, modalities, time, channels\]"):
        CrossShapedDynamicScaleAttention()(np.zeros((2, 6, 16), "float32"))


def test_branch_weights_are_a_distribution_over_branches():
    layer = build(kernel_sizes=(1, 3, 5))
    x, mask = make_inputs()
    a = np.asarray(layer.branch_weights(x, mask))
    assert a.shape == (3, 3, 16)
    np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-6)
    assert build(kernel_sizes=(3,)).branch_weights(x, mask) is None


@pytest.mark.parametrize("training", [False, True])
def test_masked_values_change_nothing_and_all_padding_is_finite(training):
    layer = build()
    x, mask = make_inputs()
    out = np.asarray(layer(x, mask=mask, training=training))
    changed = x.copy()
    changed[~np.broadcast_to(mask[:, None, :, None], x.shape)] = 1e3
    np.testing.assert_allclose(np.asarray(layer(changed, mask=mask, training=training)), out, atol=1e-5)
    assert np.all(out[~mask] == 0)
    empty = mask.copy()
    empty[0] = False
    got = np.asarray(layer(x, mask=empty, training=training))
    assert np.isfinite(got).all() and np.all(got[0] == 0)


def test_config_roundtrip():
    layer = build(kernel_sizes=(1, 3), units=8, reduction=2, min_width=3, num_loops=1, attention_reduction=4)
    x, mask = make_inputs()
    expected = np.asarray(layer(x, mask=mask))
    clone = CrossShapedDynamicScaleAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(x, mask=mask)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x, mask=mask)), expected, atol=1e-6)
    assert layer.compute_output_shape((None, 3, 6, 16)) == (None, 6, 8)


@pytest.mark.parametrize("kernel_sizes", [(3, 5), (3,)])
def test_gradients_reach_every_weight(kernel_sizes):
    layer = build(kernel_sizes=kernel_sizes)
    x, mask = make_inputs()
    probe = tf.constant(np.random.default_rng(4).normal(size=(3, 6, 16)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, mask=mask, training=True) * probe)
    grads = tape.gradient(loss, layer.trainable_weights)
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path
        assert np.abs(np.asarray(g)).max() > 0, w.path


def test_mixed_precision_is_finite():
    keras.utils.set_random_seed(0)
    layer = CrossShapedDynamicScaleAttention(dtype="mixed_float16")
    x, mask = make_inputs()
    out = layer(x, mask=mask, training=True)
    assert out.dtype == "float16" and np.isfinite(np.asarray(out, np.float32)).all()


def _poison(shape):
    """+inf, -inf and NaN in turn, to fill the padded entries of a test input."""
    return np.resize(np.array([np.inf, -np.inf, np.nan], "float32"), shape)


@pytest.mark.parametrize("training", [False, True])
def test_inf_and_nan_under_the_mask_change_nothing_and_keep_gradients_finite(training):
    layer = build()
    x, mask = make_inputs()
    out = np.asarray(layer(x, mask=mask, training=training))
    bad = x.copy()
    pad = ~np.broadcast_to(mask[:, None, :, None], x.shape)
    bad[pad] = _poison(bad[pad].shape)
    probe = tf.constant(np.random.default_rng(5).normal(size=out.shape), tf.float32)
    with tf.GradientTape() as tape:
        got = layer(bad, mask=mask, training=training)
        loss = tf.reduce_sum(got * probe)
    np.testing.assert_allclose(np.asarray(got), out, atol=1e-5)
    assert np.isfinite(np.asarray(got)).all()
    for w, g in zip(layer.trainable_weights, tape.gradient(loss, layer.trainable_weights)):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path


@pytest.mark.parametrize("kernel_sizes", [(3, 5), (3,)])
def test_an_all_padding_sample_does_not_change_the_others_in_training(kernel_sizes):
    x, mask = make_inputs()
    extra = np.concatenate([x, np.random.default_rng(9).normal(size=x[:1].shape).astype("float32")])
    extra_mask = np.concatenate([mask, np.zeros_like(mask[:1])])
    a = np.asarray(build(kernel_sizes=kernel_sizes)(x, mask=mask, training=True))
    b = np.asarray(build(kernel_sizes=kernel_sizes)(extra, mask=extra_mask, training=True))
    np.testing.assert_allclose(b[:3], a, atol=1e-5)
    np.testing.assert_array_equal(b[3], 0.0)


def test_masked_batch_norm_matches_numpy_and_momentum_convention():
    from keras_msa.layers.cross_shaped_dynamic_scale_attention import TORCH_BN_MOMENTUM
    from keras_msa.layers.cross_shaped_dynamic_scale_attention import masked_batch_norm

    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(4, 2, 5, 3)).astype("float32")
    valid = rng.random((4, 2, 5)) > 0.4
    valid[3] = False  # an all-padding sample
    norm = keras.layers.BatchNormalization(momentum=TORCH_BN_MOMENTUM, epsilon=1e-3)
    norm.build(x.shape)
    norm.gamma.assign(rng.uniform(0.5, 1.5, 3).astype("float32"))
    norm.beta.assign(rng.normal(size=3).astype("float32"))
    norm.moving_mean.assign(rng.normal(size=3).astype("float32"))
    norm.moving_variance.assign(rng.uniform(0.5, 2, 3).astype("float32"))
    g, b, mm, mv = (np.asarray(v, np.float64) for v in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance))
    real = x.astype(np.float64)[valid]  # [N, C]
    mean, var = real.mean(0), real.var(0)  # biased variance, as Keras
    out = np.asarray(masked_batch_norm(norm, x, valid, training=True))
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-3) * g + b, atol=1e-5)
    # Keras convention: moving = momentum * moving + (1 - momentum) * batch; 0.9 = PyTorch's 0.1.
    assert TORCH_BN_MOMENTUM == 0.9
    np.testing.assert_allclose(np.asarray(norm.moving_mean), 0.9 * mm + 0.1 * mean, atol=1e-5)
    np.testing.assert_allclose(np.asarray(norm.moving_variance), 0.9 * mv + 0.1 * var, atol=1e-5)
    # Inference is plain BatchNorm on the moving statistics.
    np.testing.assert_allclose(
        np.asarray(masked_batch_norm(norm, x, valid, training=False)), np.asarray(norm(x, training=False)), atol=1e-6
    )
    # A batch without any real entry leaves the moving statistics alone and stays finite.
    before = [np.asarray(norm.moving_mean), np.asarray(norm.moving_variance)]
    empty = np.asarray(masked_batch_norm(norm, x, np.zeros_like(valid), training=True))
    assert np.isfinite(empty).all()
    np.testing.assert_array_equal(np.asarray(norm.moving_mean), before[0])
    np.testing.assert_array_equal(np.asarray(norm.moving_variance), before[1])


def test_bn_momentum_reaches_every_norm_and_the_config():
    layer = build(bn_momentum=0.8)
    assert all(n.momentum == 0.8 for n in layer.norms + [layer.fuse_norm])
    assert layer.get_config()["bn_momentum"] == 0.8
    assert build().get_config()["bn_momentum"] == 0.9
    with pytest.raises(ValueError, match="bn_momentum"):
        CrossShapedDynamicScaleAttention(bn_momentum=1.0)


def test_attention_maps_are_the_branch_criss_cross_weights():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 3, 6, 8)).astype("float32")
    mask = np.ones((2, 6), bool)
    mask[1, 4:] = False
    x[1, :, 4:] = -np.inf
    layer = CrossShapedDynamicScaleAttention(kernel_sizes=(1, 3), min_width=4)
    layer(x, mask=mask)
    maps = layer.attention_maps(x, mask=mask)
    assert sorted(maps) == ["k1", "k3"]
    for k, cca in zip((1, 3), layer.attentions):
        value = np.asarray(maps[f"k{k}"])
        assert value.shape == (2, 3, 6, 3, 6) and np.isfinite(value).all()
        assert (value[1, :, :, :, 4:] == 0).all()
        np.testing.assert_allclose(value[1, :, :4].sum((-2, -1)), 1.0, atol=1e-6)
        # The k = 1 branch's Divide is a 1x1 convolution, BN and ReLU: rebuild it.
        if k == 1:
            clean = np.where(mask[:, None, :, None], x, 0.0)
            conv = clean @ np.asarray(layer.convs[0].kernel)[0, 0]
            bn = layer.norms[0]
            u = (conv - np.asarray(bn.moving_mean)) / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
            u = np.maximum(u * np.asarray(bn.gamma) + np.asarray(bn.beta), 0.0)
            u = np.where(mask[:, None, :, None], u, 0.0).astype("float32")
            np.testing.assert_allclose(value, np.asarray(cca.attention_map(u, mask=mask)), atol=1e-5)
