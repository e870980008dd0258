import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_msa.layers import DirectedCrossModalGRU

VARIANTS = ["post_ln", "pre_ln", "residual", "none"]


# ---------------------------------------------------------------- NumPy reference
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _layer_norm(x, gamma, beta, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def _gru(x, mask, kernel, recurrent, bias):
    """Seed 002 Eqs. 1-4 (reset applied to h_{t-1} before the product, Eq. 3),
    with Keras' gate order (z, r, h) and Keras' side of the update gate. A
    bias of shape [2, 3H] is the cuDNN variant (`reset_after=True`): input
    and recurrent biases, the reset applied after the product."""
    batch, steps, _ = x.shape
    hidden = recurrent.shape[0]
    h = np.zeros((batch, hidden))
    out = np.zeros((batch, steps, hidden))
    wz, wr, wh = kernel[:, :hidden], kernel[:, hidden:2 * hidden], kernel[:, 2 * hidden:]
    uz, ur, uh = recurrent[:, :hidden], recurrent[:, hidden:2 * hidden], recurrent[:, 2 * hidden:]
    after = bias.ndim == 2
    b_in, b_rec = (bias[0], bias[1]) if after else (bias, np.zeros_like(bias))
    bz, br, bh = b_in[:hidden], b_in[hidden:2 * hidden], b_in[2 * hidden:]
    rz, rr, rh = b_rec[:hidden], b_rec[hidden:2 * hidden], b_rec[2 * hidden:]
    for t in range(steps):
        xt = x[:, t]
        r = _sigmoid(xt @ wr + h @ ur + br + rr)  # Eq. 1
        z = _sigmoid(xt @ wz + h @ uz + bz + rz)  # Eq. 2
        if after:
            cand = np.tanh(xt @ wh + bh + r * (h @ uh + rh))
        else:
            cand = np.tanh(xt @ wh + (r * h) @ uh + bh)  # Eq. 3
        new = z * h + (1.0 - z) * cand  # Eq. 4
        keep = mask[:, t][:, None]
        h = np.where(keep, new, h)  # a padded step leaves the state as it is
        out[:, t] = np.where(keep, h, 0.0)
    return out


def _attention(q, w, k, q_mask, k_mask):
    """Eqs. 5-7 with padded target steps removed from the softmax."""
    scores = np.einsum("bsi,ij,btj->bst", q, w, k)  # Eq. 5
    valid = np.broadcast_to(k_mask[:, None, :], scores.shape)
    scores = np.where(valid, scores, -np.inf)
    alpha = np.zeros_like(scores)
    for b in range(scores.shape[0]):
        if valid[b].any():
            e = np.exp(scores[b] - scores[b].max(-1, keepdims=True))
            alpha[b] = e / e.sum(-1, keepdims=True)  # Eq. 6
    return np.einsum("bst,btj->bsj", alpha, k), alpha  # Eq. 7


def reference(weights, source, target, s_mask, t_mask, residual, num_layers, use_attention, eps=1e-5):
    s_mask = s_mask.astype(bool)
    t_mask = t_mask.astype(bool)
    x = np.where(s_mask[..., None], source, 0.0).astype(np.float64)
    tgt = np.where(t_mask[..., None], target, 0.0).astype(np.float64)
    attn = [None]

    def sub(k, inp):
        if k == 0 and use_attention:
            aligned, attn[0] = _attention(inp, weights["bilinear"], tgt, s_mask, t_mask)
            inp = np.concatenate([inp, aligned], -1)
        g = weights[f"gru_{k}"]
        return _gru(inp, s_mask, *g)

    def ln(name, v):
        return _layer_norm(v, *weights[name], eps)

    if residual == "none":
        for k in range(num_layers):
            x = sub(k, x)
    elif residual == "post_ln":
        for k in range(num_layers):
            x = ln(f"norm_{k}", x + sub(k, x))
    elif residual == "pre_ln":
        for k in range(num_layers):
            x = x + sub(k, ln(f"norm_{k}", x))
        x = ln("final_norm", x)
    else:
        a, d = x, x
        for k in range(num_layers):
            f = sub(k, a)
            a = ln(f"norm_{k}", a + f)
            d = d + f
        x = a + ln("final_norm", d)
    return np.where(s_mask[..., None], x, 0.0), attn[0]


def weights_of(block):
    """The block's weights as a dict for the NumPy reference."""
    out = {}
    if block.use_attention:
        out["bilinear"] = np.asarray(block.bilinear, np.float64)
    for k, gru in enumerate(block.grus):
        out[f"gru_{k}"] = [np.asarray(w, np.float64) for w in gru.weights]
    for norm in block.norms + ([block.final_norm] if block.final_norm is not None else []):
        out[norm.name] = [np.asarray(norm.gamma, np.float64), np.asarray(norm.beta, np.float64)]
    return out


def randomise_norms(block, rng):
    """LayerNorm starts as the identity affine map; random gains and biases
    make the reference check see them."""
    for norm in block.norms + ([block.final_norm] if block.final_norm is not None else []):
        norm.gamma.assign(rng.uniform(0.5, 1.5, norm.gamma.shape).astype("float32"))
        norm.beta.assign(rng.normal(0, 0.3, norm.beta.shape).astype("float32"))


def make_inputs(seed=0, batch=3, ts=6, tt=5, d=8, dt=4):
    rng = np.random.default_rng(seed)
    source = rng.normal(size=(batch, ts, d)).astype("float32")
    target = rng.normal(size=(batch, tt, dt)).astype("float32")
    s_mask = np.ones((batch, ts), bool)
    t_mask = np.ones((batch, tt), bool)
    s_mask[0, 4:] = False
    t_mask[0, 3:] = False
    s_mask[1, :2] = False  # a source whose real steps do not start at 0
    t_mask[2, 1] = False  # a hole in the target
    return source, target, s_mask, t_mask


def build_block(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    kwargs.setdefault("hidden_dim", 8)
    return DirectedCrossModalGRU(**kwargs)


# ---------------------------------------------------------------------- tests
@pytest.mark.parametrize("residual", VARIANTS)
def test_matches_numpy_reference(residual):
    source, target, s_mask, t_mask = make_inputs()
    block = build_block(residual=residual)
    block(source, target, source_mask=s_mask, target_mask=t_mask)
    randomise_norms(block, np.random.default_rng(1))
    seq, attn = block(source, target, source_mask=s_mask, target_mask=t_mask)
    ref_seq, ref_attn = reference(weights_of(block), source, target, s_mask, t_mask, residual, 2, True)
    np.testing.assert_allclose(np.asarray(seq), ref_seq, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(attn), ref_attn, atol=1e-5, rtol=0)
    # Eq. 6: every real-target row of alpha is a distribution over the real target steps.
    np.testing.assert_allclose(np.asarray(attn).sum(-1), 1.0, atol=1e-5)
    assert np.all(np.asarray(attn)[~np.broadcast_to(t_mask[:, None, :], attn.shape)] == 0)


@pytest.mark.parametrize("num_layers", [1, 3])
def test_matches_reference_without_attention_and_other_depths(num_layers):
    source, target, s_mask, t_mask = make_inputs(seed=3)
    block = build_block(residual="residual", use_attention=False, num_layers=num_layers)
    seq, attn = block(source, source_mask=s_mask)
    assert attn is None
    assert not any("bilinear" in w.path for w in block.weights)
    ref, _ = reference(weights_of(block), source, target, s_mask, t_mask, "residual", num_layers, False)
    np.testing.assert_allclose(np.asarray(seq), ref, atol=1e-5, rtol=0)


def test_shapes_and_compute_output_shape():
    block = build_block(hidden_dim=8)
    source, target, s_mask, t_mask = make_inputs(ts=6, tt=9)
    seq, attn = block(source, target, source_mask=s_mask, target_mask=np.ones((3, 9), bool))
    assert seq.shape == (3, 6, 8) and attn.shape == (3, 6, 9) and attn.dtype == "float32"
    assert block.compute_output_shape((None, 6, 8), (None, 9, 4)) == ((None, 6, 8), (None, 6, 9))
    # Works without masks (every step real) and with a different target length.
    seq2, attn2 = block(source, np.zeros((3, 2, 4), "float32"))
    assert seq2.shape == (3, 6, 8) and attn2.shape == (3, 6, 2)


@pytest.mark.parametrize("residual", VARIANTS)
def test_config_roundtrip_gives_same_outputs(residual):
    source, target, s_mask, t_mask = make_inputs()
    block = build_block(residual=residual, num_layers=2, attention_dropout=0.2, residual_dropout=0.05)
    expected = block(source, target, source_mask=s_mask, target_mask=t_mask)
    clone = DirectedCrossModalGRU.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    clone(source, target, source_mask=s_mask, target_mask=t_mask)
    clone.set_weights(block.get_weights())
    got = clone(source, target, source_mask=s_mask, target_mask=t_mask)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.parametrize("residual", VARIANTS)
def test_gradients_reach_every_weight(residual):
    source, target, s_mask, t_mask = make_inputs()
    block = build_block(residual=residual)
    block(source, target, source_mask=s_mask, target_mask=t_mask)
    probe = tf.constant(np.random.default_rng(2).normal(size=(3, 6, 8)), tf.float32)
    with tf.GradientTape() as tape:
        seq, _ = block(source, target, source_mask=s_mask, target_mask=t_mask, training=True)
        loss = tf.reduce_sum(seq * probe)
    grads = tape.gradient(loss, block.trainable_weights)
    assert len(grads) == len(block.trainable_weights) > 0
    for w, g in zip(block.trainable_weights, grads):
        assert g is not None, w.path
        assert np.all(np.isfinite(np.asarray(g))), w.path
        assert np.abs(np.asarray(g)).max() > 0, w.path


@pytest.mark.parametrize("residual", VARIANTS)
def test_values_under_masks_change_nothing(residual):
    source, target, s_mask, t_mask = make_inputs()
    block = build_block(residual=residual)
    seq, attn = block(source, target, source_mask=s_mask, target_mask=t_mask)
    noisy_s, noisy_t = source.copy(), target.copy()
    noisy_s[~s_mask] = 1e4
    noisy_t[~t_mask] = np.inf  # -inf/inf under the mask must not leak as NaN
    seq2, attn2 = block(noisy_s, noisy_t, source_mask=s_mask, target_mask=t_mask)
    np.testing.assert_allclose(np.asarray(seq2), np.asarray(seq), atol=1e-6)
    np.testing.assert_allclose(np.asarray(attn2), np.asarray(attn), atol=1e-6)
    assert np.all(np.asarray(seq)[~s_mask] == 0)


@pytest.mark.parametrize("residual", VARIANTS)
def test_all_padding_modalities_give_finite_outputs(residual):
    source, target, s_mask, t_mask = make_inputs()
    block = build_block(residual=residual)
    # Missing target: zero attention rows, x_hat = 0; the output is finite and
    # equals reading the source next to a zero target.
    no_target = np.zeros_like(t_mask)
    seq, attn = block(source, target, source_mask=s_mask, target_mask=no_target)
    assert np.all(np.isfinite(np.asarray(seq)))
    np.testing.assert_array_equal(np.asarray(attn), 0.0)
    seq_zero, _ = block(source, np.zeros_like(target), source_mask=s_mask, target_mask=no_target)
    np.testing.assert_allclose(np.asarray(seq), np.asarray(seq_zero), atol=1e-6)
    # Missing source: all zeros, finite, and finite gradients.
    no_source = np.zeros_like(s_mask)
    with tf.GradientTape() as tape:
        seq, _ = block(source, target, source_mask=no_source, target_mask=no_target, training=True)
        loss = tf.reduce_sum(seq)
    np.testing.assert_array_equal(np.asarray(seq), 0.0)
    for g in tape.gradient(loss, block.trainable_weights):
        assert g is None or np.all(np.isfinite(np.asarray(g)))


def test_dropout_only_in_training():
    source, target, s_mask, t_mask = make_inputs()
    block = build_block(attention_dropout=0.5, residual_dropout=0.5)
    a = block(source, target, source_mask=s_mask, target_mask=t_mask)[0]
    b = block(source, target, source_mask=s_mask, target_mask=t_mask)[0]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c = block(source, target, source_mask=s_mask, target_mask=t_mask, training=True)[0]
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_mixed_precision_keeps_attention_float32():
    source, target, s_mask, t_mask = make_inputs()
    block = build_block(dtype="mixed_float16")
    seq, attn = block(source, target, source_mask=s_mask, target_mask=t_mask)
    assert seq.dtype == "float16" and attn.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(seq, np.float32)))
    ref = build_block()
    ref(source, target, source_mask=s_mask, target_mask=t_mask)
    ref.set_weights(block.get_weights())
    np.testing.assert_allclose(np.asarray(seq, np.float32), np.asarray(ref(source, target, source_mask=s_mask, target_mask=t_mask)[0]), atol=5e-2)


def test_clear_errors():
    with pytest.raises(ValueError, match="residual variant 'bogus'"):
        DirectedCrossModalGRU(residual="bogus")
    source, target, s_mask, t_mask = make_inputs(d=6)
    with pytest.raises(ValueError, match=r"hidden_dim=8.*\(3, 6, 6\)"):
        DirectedCrossModalGRU(hidden_dim=8)(source, target)
    # Without a residual the source width is free.
    seq, _ = DirectedCrossModalGRU(hidden_dim=8, residual="none")(source, target)
    assert seq.shape == (3, 6, 8)
    with pytest.raises(ValueError, match="needs a target"):
        DirectedCrossModalGRU(hidden_dim=6)(source)


def _poison(shape):
    """+inf, -inf and NaN in turn, to fill the padded entries of a test input."""
    return np.resize(np.array([np.inf, -np.inf, np.nan], "float32"), shape)


@pytest.mark.parametrize("residual", ["pre_ln", "none"])
def test_inf_and_nan_under_the_masks_change_nothing_and_keep_gradients_finite(residual):
    source, target, s_mask, t_mask = make_inputs()
    s_mask[2] = False  # a missing source too
    block = build_block(residual=residual, attention_dropout=0.0, residual_dropout=0.0)
    seq, attn = block(source, target, source_mask=s_mask, target_mask=t_mask)
    bad_s, bad_t = source.copy(), target.copy()
    bad_s[~s_mask] = _poison(bad_s[~s_mask].shape)
    bad_t[~t_mask] = _poison(bad_t[~t_mask].shape)
    with tf.GradientTape() as tape:
        seq2, attn2 = block(bad_s, bad_t, source_mask=s_mask, target_mask=t_mask, training=True)
        loss = tf.reduce_sum(seq2 * seq2)
    np.testing.assert_allclose(np.asarray(seq2), np.asarray(seq), atol=1e-6)
    np.testing.assert_allclose(np.asarray(attn2), np.asarray(attn), atol=1e-6)
    assert np.isfinite(np.asarray(seq2)).all()
    for w, g in zip(block.trainable_weights, tape.gradient(loss, block.trainable_weights)):
        assert g is not None and np.isfinite(np.asarray(g)).all(), w.path


def test_reset_after_gives_the_cudnn_gru_and_matches_its_reference():
    rnn_backend = pytest.importorskip("keras.src.backend.tensorflow.rnn")
    source, target, s_mask, t_mask = make_inputs()
    s_mask[2] = False  # a missing source: masked_rnn keeps it off the cuDNN kernel's fully-masked check
    block = build_block(residual="pre_ln", reset_after=True, attention_dropout=0.0, residual_dropout=0.0)
    block(source, target, source_mask=s_mask, target_mask=t_mask)
    rng = np.random.default_rng(2)
    randomise_norms(block, rng)
    for gru in block.grus:
        assert tuple(gru.cell.bias.shape) == (2, 3 * 8)  # input and recurrent biases
        gru.cell.bias.assign(rng.normal(0, 0.3, gru.cell.bias.shape).astype("float32"))
    seq, attn = block(source, target, source_mask=s_mask, target_mask=t_mask)
    ref_seq, ref_attn = reference(weights_of(block), source, target, s_mask, t_mask, "pre_ln", 2, True)
    np.testing.assert_allclose(np.asarray(seq), ref_seq, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(attn), ref_attn, atol=1e-5, rtol=0)

    def cudnn_args_ok(b):
        return all(
            rnn_backend._do_gru_arguments_support_cudnn(
                g.cell.activation, g.cell.recurrent_activation, g.unroll, g.cell.use_bias, g.cell.reset_after
            )
            for g in b.grus
        )

    assert cudnn_args_ok(block)
    default = build_block()
    default(source, target, source_mask=s_mask, target_mask=t_mask)
    assert not cudnn_args_ok(default)  # Eq. 3's GRU never runs on cuDNN
    assert DirectedCrossModalGRU.from_config(block.get_config()).reset_after is True


def test_mulg_passes_gru_reset_after_to_every_block():
    from keras_msa.models import MulG

    model = MulG(hidden_dim=4, gru_reset_after=True)
    assert model.get_config()["gru_reset_after"] is True
    assert all(block.reset_after for block in model.blocks)
    assert not any(block.reset_after for block in MulG(hidden_dim=4).blocks)
