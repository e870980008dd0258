import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import CrossModalTransformer
from keras_msa.layers.cross_modal_transformer import shifted_causal_mask


def _ln(x, layer):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * np.asarray(layer.gamma) + np.asarray(layer.beta)


def _attend(att, q, c, allowed):
    w = lambda t: np.asarray(t, np.float64)  # noqa: E731
    qh = np.einsum("btd,dhk->bthk", q, w(att.q_proj.kernel)) + w(att.q_proj.bias)
    kh = np.einsum("btd,dhk->bthk", c, w(att.k_proj.kernel)) + w(att.k_proj.bias)
    vh = np.einsum("btd,dhk->bthk", c, w(att.v_proj.kernel)) + w(att.v_proj.bias)
    s = np.einsum("bqhk,bthk->bhqt", qh, kh) / np.sqrt(qh.shape[-1])
    s = np.where(allowed[:, None], s, -np.inf)
    a = np.exp(s - s.max(-1, keepdims=True))
    a = a / a.sum(-1, keepdims=True)
    out = np.einsum("bhqt,bthk->bqhk", a, vh)
    return np.einsum("bqhk,hkd->bqd", out, w(att.o_proj.kernel)) + w(att.o_proj.bias)


def reference(layer, query, context, causal):
    """MulT Eqs. 2-4 in NumPy: sqrt(d) scaling, pre-LN cross attention (one LN
    for both sides), pre-LN ReLU feed-forward, final LN; no padding."""
    d = query.shape[-1]
    x = np.sqrt(d) * query
    c = np.sqrt(d) * context
    tq, tk = x.shape[1], c.shape[1]
    allowed = np.ones((x.shape[0], tq, tk), bool)
    if causal:
        allowed &= (np.arange(tk)[None, :] - np.arange(tq)[:, None] <= abs(tk - tq))[None]
    for i in range(layer.num_layers):
        norm = layer.attention_norms[i]
        x = x + _attend(layer.attentions[i], _ln(x, norm), _ln(c, norm), allowed)
        h = _ln(x, layer.ffn_norms[i]) @ np.asarray(layer.ffn_in[i].kernel) + np.asarray(layer.ffn_in[i].bias)
        x = x + np.maximum(h, 0) @ np.asarray(layer.ffn_out[i].kernel) + np.asarray(layer.ffn_out[i].bias)
    return _ln(x, layer.final_norm)


def _layer(**kwargs):
    keras.utils.set_random_seed(0)
    layer = CrossModalTransformer(num_layers=2, num_heads=2, **kwargs)
    rng = np.random.default_rng(1)
    q, c = rng.normal(size=(2, 5, 8)).astype("float32"), rng.normal(size=(2, 7, 8)).astype("float32")
    layer(q, c)
    for w in layer.weights:  # biases and norms off their (0, 1) start, so a mistake in them shows
        if w.path.endswith(("bias", "beta", "gamma")):
            w.assign(np.asarray(w) + rng.normal(0, 0.2, w.shape).astype("float32"))
    return layer, q, c


@pytest.mark.parametrize("causal", [False, True])
def test_matches_numpy_reference(causal):
    layer, q, c = _layer(causal=causal)
    out = np.asarray(CrossModalTransformer.call(layer, q, c))
    np.testing.assert_allclose(out, reference(layer, q.astype(np.float64), c.astype(np.float64), causal),
                               atol=1e-5)


def test_shifted_causal_mask_counts_real_steps():
    qm = np.array([[True] * 3 + [False], [True] * 4])
    cm = np.array([[True] * 5 + [False], [True] * 6])
    mask = np.asarray(shifted_causal_mask(qm, cm, 4, 6))
    i, j = np.arange(4)[:, None], np.arange(6)[None, :]
    np.testing.assert_array_equal(mask[0], j - i <= 2)  # |5 - 3|
    np.testing.assert_array_equal(mask[1], j - i <= 2)  # |6 - 4|


def test_masks_config_and_gradients():
    layer, q, c = _layer(causal=True)
    qm = np.array([[True] * 5, [True] * 3 + [False] * 2])
    cm = np.array([[True] * 7, [True] * 4 + [False] * 3])
    out = np.asarray(layer(q, c, query_mask=qm, context_mask=cm))
    # Row 1 equals the row computed alone on its real steps.
    alone = np.asarray(layer(q[1:, :3], c[1:, :4]))
    np.testing.assert_allclose(out[1, :3], alone[0], atol=1e-5)
    np.testing.assert_array_equal(out[1, 3:], 0)
    poisoned_q, poisoned_c = q.copy(), c.copy()
    poisoned_q[1, 3:] = np.inf
    poisoned_c[1, 4:] = np.nan
    np.testing.assert_allclose(np.asarray(layer(poisoned_q, poisoned_c, query_mask=qm, context_mask=cm)), out,
                               atol=1e-6)
    empty = np.zeros_like(cm)
    assert np.isfinite(np.asarray(layer(q, c, query_mask=qm, context_mask=empty))).all()
    self_out = layer.__class__.from_config(layer.get_config())
    assert self_out.get_config() == layer.get_config()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(poisoned_q, poisoned_c, query_mask=qm, context_mask=cm, training=True) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None and np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0
               for g in grads), [w.path for w, g in zip(layer.trainable_weights, grads) if g is None]
    with pytest.raises(ValueError, match="context width"):
        CrossModalTransformer(num_layers=1, num_heads=2)(q, c[..., :4])
