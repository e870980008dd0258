import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import CrossShapedAttention


# ---------------------------------------------------------------- NumPy reference
def cca_weights(layer):
    return {
        "wq": np.asarray(layer.query_kernel, np.float64), "bq": np.asarray(layer.query_bias, np.float64),
        "wk": np.asarray(layer.key_kernel, np.float64), "bk": np.asarray(layer.key_bias, np.float64),
        "wv": np.asarray(layer.value_kernel, np.float64), "bv": np.asarray(layer.value_bias, np.float64),
        "gamma": float(np.asarray(layer.gamma)),
    }


def cca_step_reference(x, mask, w):
    """One criss-cross step written position by position: (i, j) attends to
    its row {(i, j')} and its column {(i', j), i' != i}, real times only,
    with one softmax over that set."""
    batch, rows, steps, _ = x.shape
    q = x @ w["wq"] + w["bq"]
    k = x @ w["wk"] + w["bk"]
    v = x @ w["wv"] + w["bv"]
    out = np.zeros_like(x)
    full = np.zeros((batch, rows, steps, rows, steps))
    for b in range(batch):
        for i in range(rows):
            for j in range(steps):
                cross = [(i, jj) for jj in range(steps)] + [(ii, j) for ii in range(rows) if ii != i]
                cross = [p for p in cross if mask[b, p[1]]]
                if not cross:
                    continue
                scores = np.array([q[b, i, j] @ k[b, p[0], p[1]] for p in cross])
                e = np.exp(scores - scores.max())
                a = e / e.sum()
                for weight, p in zip(a, cross):
                    full[b, i, j, p[0], p[1]] = weight
                    out[b, i, j] += weight * v[b, p[0], p[1]]
    y = w["gamma"] * out + x
    return y * mask[:, None, :, None], full


def cca_reference(x, mask, w, loops):
    x = x.astype(np.float64) * mask[:, None, :, None]
    first = None
    for _ in range(loops):
        x, full = cca_step_reference(x, mask, w)
        first = full if first is None else first
    return x, first


def make_inputs(seed=0, batch=3, rows=3, steps=5, channels=16):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, rows, steps, channels)).astype("float32")
    mask = np.ones((batch, steps), bool)
    mask[1, 3:] = False
    mask[2, 0] = False  # padding that is not at the end
    return x, mask


def build(seed=0, gamma=0.7, **kwargs):
    keras.utils.set_random_seed(seed)
    layer = CrossShapedAttention(**kwargs)
    x, mask = make_inputs()
    layer(x, mask=mask)
    # gamma starts at 0 (identity); a non-zero value makes the attention visible.
    layer.gamma.assign(gamma)
    rng = np.random.default_rng(seed + 1)
    for var in (layer.query_bias, layer.key_bias, layer.value_bias):
        var.assign(rng.normal(0, 0.2, var.shape).astype("float32"))
    return layer


# ---------------------------------------------------------------------- tests
@pytest.mark.parametrize("loops", [1, 2])
def test_matches_numpy_reference(loops):
    layer = build(num_loops=loops, reduction=8)
    x, mask = make_inputs()
    ref, ref_full = cca_reference(x, mask, cca_weights(layer), loops)
    np.testing.assert_allclose(np.asarray(layer(x, mask=mask)), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(layer.attention_map(x, mask=mask)), ref_full, atol=1e-6, rtol=0)


def test_each_position_attends_to_exactly_its_row_and_column_on_a_3x5_map():
    layer = build(reduction=4)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 3, 5, 16)).astype("float32")
    full = np.asarray(layer.attention_map(x))[0]
    ref = cca_step_reference(x.astype(np.float64), np.ones((1, 5), bool), cca_weights(layer))[1][0]
    np.testing.assert_allclose(full, ref, atol=1e-6)
    for i in range(3):
        for j in range(5):
            support = full[i, j] > 0
            expected = np.zeros((3, 5), bool)
            expected[i, :] = True
            expected[:, j] = True
            np.testing.assert_array_equal(support, expected, err_msg=f"position ({i}, {j})")
            np.testing.assert_allclose(full[i, j].sum(), 1.0, atol=1e-6)  # one softmax over the cross


def test_zero_initialised_gamma_is_the_identity():
    keras.utils.set_random_seed(0)
    layer = CrossShapedAttention()
    x, mask = make_inputs()
    np.testing.assert_array_equal(np.asarray(layer(x, mask=mask)), x * mask[:, None, :, None])
    assert float(np.asarray(layer.gamma)) == 0.0


def test_masking_padded_values_change_nothing_and_all_padding_is_finite():
    layer = build()
    x, mask = make_inputs()
    out = np.asarray(layer(x, mask=mask))
    changed = x.copy()
    changed[~np.broadcast_to(mask[:, None, :, None], x.shape)] = 1e4
    np.testing.assert_allclose(np.asarray(layer(changed, mask=mask)), out, atol=1e-5)
    # Padded columns are never attended to.
    full = np.asarray(layer.attention_map(x, mask=mask))
    assert np.all(full[1][..., 3:] == 0) and np.all(full[2][..., 0] == 0)
    empty = np.zeros_like(mask)
    got = np.asarray(layer(x, mask=empty))
    assert np.isfinite(got).all() and np.all(got == 0)


def test_shapes_and_config_roundtrip():
    layer = build(reduction=4, num_loops=3)
    x, mask = make_inputs()
    expected = np.asarray(layer(x, mask=mask))
    assert expected.shape == x.shape
    assert layer.compute_output_shape((None, 3, None, 16)) == (None, 3, None, 16)
    assert layer.query_kernel.shape == (16, 4) and layer.value_kernel.shape == (16, 16)
    clone = CrossShapedAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(x, mask=mask)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x, mask=mask)), expected, atol=1e-6)
    # Works without a mask and for another length.
    assert layer(x[:, :, :2]).shape == (3, 3, 2, 16)
    with pytest.raises(ValueError, match=r"\[batch, rows, time, channels\]"):
        CrossShapedAttention()(np.zeros((2, 5, 16), "float32"))


def test_gradients_reach_every_weight():
    layer = build()
    x, mask = make_inputs()
    probe = tf.constant(np.random.default_rng(3).normal(size=x.shape), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, mask=mask) * probe)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == 7
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path
        assert np.abs(np.asarray(g)).max() > 0, w.path


def test_mixed_precision_is_finite():
    keras.utils.set_random_seed(0)
    layer = CrossShapedAttention(dtype="mixed_float16")
    x, mask = make_inputs()
    out = layer(x, mask=mask)
    assert out.dtype == "float16" and np.isfinite(np.asarray(out, np.float32)).all()


def _poison(shape):
    """+inf, -inf and NaN in turn, to fill the padded entries of a test input."""
    return np.resize(np.array([np.inf, -np.inf, np.nan], "float32"), shape)


def test_inf_and_nan_under_the_mask_change_nothing_and_keep_gradients_finite():
    layer = build()
    x, mask = make_inputs()
    out = np.asarray(layer(x, mask=mask))
    bad = x.copy()
    pad = ~np.broadcast_to(mask[:, None, :, None], x.shape)
    bad[pad] = _poison(bad[pad].shape)
    with tf.GradientTape() as tape:
        got = layer(bad, mask=mask)
        loss = tf.reduce_sum(got * got)
    np.testing.assert_allclose(np.asarray(got), out, atol=1e-5)
    assert np.isfinite(np.asarray(got)).all()
    for w, g in zip(layer.trainable_weights, tape.gradient(loss, layer.trainable_weights)):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path
