import keras
import numpy as np
import tensorflow as tf

from keras_msa.layers import MaskedMultiHeadAttention


def mha_reference(layer, query, context, q_mask, c_mask, allowed=None):
    """Scaled dot-product attention per head, softmax over real context steps
    (and, with `allowed` `[B, Tq, Tk]`, only those); padded queries are
    computed from zeros."""
    query = np.where(q_mask[..., None], query, 0)
    wq, bq = (np.asarray(w, np.float64) for w in (layer.q_proj.kernel, layer.q_proj.bias))
    wk, bk = (np.asarray(w, np.float64) for w in (layer.k_proj.kernel, layer.k_proj.bias))
    wv, bv = (np.asarray(w, np.float64) for w in (layer.v_proj.kernel, layer.v_proj.bias))
    wo, bo = (np.asarray(w, np.float64) for w in (layer.o_proj.kernel, layer.o_proj.bias))
    q = np.einsum("btd,dhk->bthk", query, wq) + bq
    k = np.einsum("btd,dhk->bthk", context, wk) + bk
    v = np.einsum("btd,dhk->bthk", context, wv) + bv
    scores = np.einsum("bqhk,bthk->bhqt", q, k) / np.sqrt(wq.shape[-1])
    weights = np.zeros_like(scores)
    for b in range(scores.shape[0]):
        for i in range(scores.shape[2]):
            valid = c_mask[b] if allowed is None else c_mask[b] & allowed[b, i]
            if valid.any():
                s = scores[b, :, i][..., valid]
                e = np.exp(s - s.max(-1, keepdims=True))
                weights[b, :, i][..., valid] = e / e.sum(-1, keepdims=True)
    attended = np.einsum("bhqt,bthk->bqhk", weights, v)
    out = np.einsum("bqhk,hkd->bqd", attended, wo) + bo
    return out * q_mask[..., None], weights


def make_inputs(seed=0):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(3, 4, 8)).astype("float32")
    context = rng.normal(size=(3, 6, 5)).astype("float32")
    q_mask = np.ones((3, 4), bool)
    q_mask[0, 3:] = False
    c_mask = np.ones((3, 6), bool)
    c_mask[0, 4:] = False
    c_mask[1, :] = False  # a missing modality
    c_mask[2, 1] = False
    return query, context, q_mask, c_mask


def build(**kwargs):
    keras.utils.set_random_seed(0)
    layer = MaskedMultiHeadAttention(**kwargs)
    query, context, q_mask, c_mask = make_inputs()
    layer(query, context, query_mask=q_mask, context_mask=c_mask)
    rng = np.random.default_rng(1)
    for proj in (layer.q_proj, layer.k_proj, layer.v_proj, layer.o_proj):
        proj.bias.assign(rng.normal(0, 0.3, proj.bias.shape).astype("float32"))
    return layer


def test_matches_numpy_reference():
    layer = build(num_heads=2, output_dim=6)
    query, context, q_mask, c_mask = make_inputs()
    out, weights = layer(query, context, query_mask=q_mask, context_mask=c_mask, return_attention=True)
    ref, ref_w = mha_reference(layer, query.astype(np.float64), context.astype(np.float64), q_mask, c_mask)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(weights), ref_w, atol=1e-6, rtol=0)
    # A missing context gives zero weights, hence the output bias at real queries.
    np.testing.assert_allclose(np.asarray(out)[1], np.broadcast_to(np.asarray(layer.o_proj.bias), (4, 6)), atol=1e-6)


def test_self_attention_matches_reference():
    layer = MaskedMultiHeadAttention(num_heads=4)
    query, _, q_mask, _ = make_inputs(2)
    out = layer(query, query_mask=q_mask)
    ref, _ = mha_reference(layer, query.astype(np.float64), query.astype(np.float64), q_mask, q_mask)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5, rtol=0)
    assert out.shape == (3, 4, 8) and layer.compute_output_shape((None, 4, 8)) == (None, 4, 8)


def test_masked_values_change_nothing():
    layer = build(num_heads=2)
    query, context, q_mask, c_mask = make_inputs()
    out = np.asarray(layer(query, context, query_mask=q_mask, context_mask=c_mask))
    changed = context.copy()
    changed[~c_mask] = np.inf
    got = np.asarray(layer(query, changed, query_mask=q_mask, context_mask=c_mask))
    np.testing.assert_allclose(got, out, atol=1e-6)
    assert np.all(got[~q_mask] == 0)


def test_config_roundtrip_and_gradients():
    layer = build(num_heads=2, key_dim=3, output_dim=6, dropout=0.1)
    query, context, q_mask, c_mask = make_inputs()
    expected = np.asarray(layer(query, context, query_mask=q_mask, context_mask=c_mask))
    clone = MaskedMultiHeadAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(query, context, query_mask=q_mask, context_mask=c_mask)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(query, context, query_mask=q_mask, context_mask=c_mask)), expected, atol=1e-6)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(query, context, query_mask=q_mask, context_mask=c_mask)))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == 8
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None and np.abs(np.asarray(g)).max() > 0, w.path


def test_inf_and_nan_under_both_masks_change_nothing_and_keep_gradients_finite():
    layer = build(num_heads=2)
    query, context, q_mask, c_mask = make_inputs()
    out = np.asarray(layer(query, context, query_mask=q_mask, context_mask=c_mask))
    for value in (np.inf, -np.inf, np.nan):
        q2, c2 = query.copy(), context.copy()
        q2[~q_mask] = value
        c2[~c_mask] = value
        with tf.GradientTape() as tape:
            got = layer(q2, c2, query_mask=q_mask, context_mask=c_mask, training=True)
            loss = tf.reduce_sum(got * got)
        np.testing.assert_allclose(np.asarray(got), out, atol=1e-6)
        for w, g in zip(layer.trainable_weights, tape.gradient(loss, layer.trainable_weights)):
            assert g is not None and np.isfinite(np.asarray(g)).all(), (value, w.path)


def test_fast_path_matches_reference_and_weights_path_under_a_pattern_and_inf_nan():
    # Without return_attention the layer takes its fewer-pass formulation
    # (additive mask bias, empty rows zeroed on the attended values): it must
    # equal the NumPy reference and the exact-weights path, outputs and
    # gradients, with a pattern that leaves a real query nothing to attend.
    layer = build(num_heads=2, output_dim=6)
    query, context, q_mask, c_mask = make_inputs()
    allowed = np.tril(np.ones((4, 6), bool), 1)[None].repeat(3, 0)
    allowed[2, 1, :] = False  # a real query that may attend nothing
    ref, _ = mha_reference(layer, query.astype(np.float64), context.astype(np.float64), q_mask, c_mask, allowed)
    for value in (0.0, np.inf, -np.inf, np.nan):
        q2, c2 = query.copy(), context.copy()
        q2[~q_mask] = value
        c2[~c_mask] = value
        results = []
        for weights_path in (False, True):
            with tf.GradientTape() as tape:
                got = layer(q2, c2, query_mask=q_mask, context_mask=c_mask, attention_mask=allowed,
                            return_attention=weights_path)
                got = got[0] if weights_path else got
                loss = tf.reduce_sum(got * got)
            grads = [np.asarray(g) for g in tape.gradient(loss, layer.trainable_weights)]
            assert all(np.isfinite(g).all() for g in grads), (value, weights_path)
            results.append((np.asarray(got), grads))
        np.testing.assert_allclose(results[0][0], ref, atol=1e-5, rtol=0)
        np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-6, rtol=0)
        for fast, exact in zip(results[0][1], results[1][1]):
            np.testing.assert_allclose(fast, exact, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(results[0][0][2, 1], np.asarray(layer.o_proj.bias), atol=1e-6)
