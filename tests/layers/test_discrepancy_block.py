import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import DiscrepancyBlock


# ---------------------------------------------------------------- NumPy reference
def _mha(layer, query, context, q_mask, c_mask):
    w = {n: [np.asarray(v, np.float64) for v in (p.kernel, p.bias)]
         for n, p in (("q", layer.q_proj), ("k", layer.k_proj), ("v", layer.v_proj), ("o", layer.o_proj))}
    q = np.einsum("btd,dhk->bthk", query, w["q"][0]) + w["q"][1]
    k = np.einsum("btd,dhk->bthk", context, w["k"][0]) + w["k"][1]
    v = np.einsum("btd,dhk->bthk", context, w["v"][0]) + w["v"][1]
    out = np.zeros(query.shape[:2] + (w["o"][0].shape[-1],))
    for b in range(query.shape[0]):
        for t in range(query.shape[1]):
            heads = []
            for h in range(q.shape[2]):
                valid = np.flatnonzero(c_mask[b])
                if valid.size == 0:
                    heads.append(np.zeros(v.shape[-1]))
                    continue
                s = k[b, valid, h] @ q[b, t, h] / np.sqrt(q.shape[-1])
                a = np.exp(s - s.max())
                heads.append((a / a.sum()) @ v[b, valid, h])
            out[b, t] = np.einsum("hk,hkd->d", np.stack(heads), w["o"][0]) + w["o"][1]
    return out * q_mask[..., None]


def _ln(x, norm):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + norm.epsilon) * np.asarray(norm.gamma, np.float64) + np.asarray(norm.beta, np.float64)


def _dense(x, layer):
    return x @ np.asarray(layer.kernel, np.float64) + np.asarray(layer.bias, np.float64)


def reference(block, f, secondaries, f_mask, s_masks):
    f = f.astype(np.float64) * f_mask[..., None]
    deltas = []
    for mha, s, m in zip(block.cross_attentions, secondaries, s_masks):
        c = _mha(mha, f, s.astype(np.float64) * m[..., None], f_mask, m)
        deltas.append(c - f if block.mode == "difference" else c)
    g = _dense(np.concatenate(deltas, -1), block.project)
    h = g + _mha(block.self_attention, _ln(g, block.norm_1), _ln(g, block.norm_1), f_mask, f_mask)
    out = h + _dense(np.maximum(_dense(_ln(h, block.norm_2), block.ffn_in), 0), block.ffn_out)
    return out * f_mask[..., None]


def make_inputs(seed=0, batch=3, steps=5, d=8):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(batch, steps, d)).astype("float32")
    secs = [rng.normal(size=(batch, steps, d)).astype("float32") for _ in range(2)]
    secs.append(rng.normal(size=(batch, 7, 4)).astype("float32"))  # another length and width
    f_mask = np.ones((batch, steps), bool)
    f_mask[1, 3:] = False
    masks = [f_mask.copy(), f_mask.copy(), np.ones((batch, 7), bool)]
    masks[1][2, :] = False  # sample 2 has no audio
    masks[2][0, 5:] = False
    return f, secs, f_mask, masks


def build(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    kwargs.setdefault("num_heads", 2)
    block = DiscrepancyBlock(**kwargs)
    f, secs, f_mask, masks = make_inputs()
    block(f, secs, primary_mask=f_mask, secondary_masks=masks)
    rng = np.random.default_rng(seed + 1)
    for w in block.weights:
        if w.path.endswith("bias") or w.path.endswith("beta"):
            w.assign(rng.normal(0, 0.3, w.shape).astype("float32"))
        elif w.path.endswith("gamma"):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    return block


# ---------------------------------------------------------------------- tests
@pytest.mark.parametrize("mode", ["difference", "attention"])
def test_matches_numpy_reference(mode):
    block = build(mode=mode)
    f, secs, f_mask, masks = make_inputs()
    got = np.asarray(block(f, secs, primary_mask=f_mask, secondary_masks=masks))
    np.testing.assert_allclose(got, reference(block, f, secs, f_mask, masks), atol=1e-5, rtol=0)


def test_modes_give_different_outputs_with_the_same_weights():
    f, secs, f_mask, masks = make_inputs()
    diff = build(mode="difference")
    att = build(mode="attention")
    att.set_weights(diff.get_weights())
    assert not np.allclose(
        np.asarray(diff(f, secs, primary_mask=f_mask, secondary_masks=masks)),
        np.asarray(att(f, secs, primary_mask=f_mask, secondary_masks=masks)),
    )


def test_masked_values_change_nothing_and_missing_secondary_is_finite():
    block = build()
    f, secs, f_mask, masks = make_inputs()
    out = np.asarray(block(f, secs, primary_mask=f_mask, secondary_masks=masks))
    f2 = f.copy()
    f2[~f_mask] = np.inf
    secs2 = [s.copy() for s in secs]
    for s, m in zip(secs2, masks):
        s[~m] = -1e6
    np.testing.assert_allclose(np.asarray(block(f2, secs2, primary_mask=f_mask, secondary_masks=masks)), out, atol=1e-5)
    assert np.all(out[~f_mask] == 0)
    none = [np.zeros_like(m) for m in masks]
    got = np.asarray(block(f, secs, primary_mask=np.zeros_like(f_mask), secondary_masks=none))
    assert np.isfinite(got).all()


def test_shapes_config_roundtrip_and_errors():
    block = build(num_heads=4, key_dim=3, ffn_dim=5, dropout=0.1, mode="attention")
    f, secs, f_mask, masks = make_inputs()
    expected = np.asarray(block(f, secs, primary_mask=f_mask, secondary_masks=masks))
    assert expected.shape == (3, 5, 8) and block.compute_output_shape((None, 5, 8)) == (None, 5, 8)
    clone = DiscrepancyBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    clone(f, secs, primary_mask=f_mask, secondary_masks=masks)
    clone.set_weights(block.get_weights())
    np.testing.assert_allclose(np.asarray(clone(f, secs, primary_mask=f_mask, secondary_masks=masks)), expected, atol=1e-6)
    assert block(f, secs).shape == (3, 5, 8)  # no masks: every step real
    with pytest.raises(ValueError, match="built for 3 secondary"):
        block(f, secs[:2])
    with pytest.raises(ValueError, match="mode"):
        DiscrepancyBlock(mode="sum")


def test_gradients_reach_every_weight():
    block = build()
    f, secs, f_mask, masks = make_inputs()
    probe = tf.constant(np.random.default_rng(3).normal(size=(3, 5, 8)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(block(f, secs, primary_mask=f_mask, secondary_masks=masks, training=True) * probe)
    grads = tape.gradient(loss, block.trainable_weights)
    assert len(grads) == 3 * 8 + 2 + 4 + 8 + 4
    for w, g in zip(block.trainable_weights, grads):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path
        assert np.abs(np.asarray(g)).max() > 0, w.path


def _poison(shape):
    """+inf, -inf and NaN in turn, to fill the padded entries of a test input."""
    return np.resize(np.array([np.inf, -np.inf, np.nan], "float32"), shape)


def test_inf_and_nan_under_the_masks_change_nothing_and_keep_gradients_finite():
    block = build()
    f, secs, f_mask, masks = make_inputs()
    out = np.asarray(block(f, secs, primary_mask=f_mask, secondary_masks=masks))
    f2 = f.copy()
    f2[~f_mask] = _poison(f2[~f_mask].shape)
    secs2 = [s.copy() for s in secs]
    for s, m in zip(secs2, masks):
        s[~m] = _poison(s[~m].shape)
    with tf.GradientTape() as tape:
        got = block(f2, secs2, primary_mask=f_mask, secondary_masks=masks, training=True)
        loss = tf.reduce_sum(got * got)
    np.testing.assert_allclose(np.asarray(got), out, atol=1e-5)
    assert np.isfinite(np.asarray(got)).all()
    for w, g in zip(block.trainable_weights, tape.gradient(loss, block.trainable_weights)):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path
