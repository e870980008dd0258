"""Old (exact-weights) vs fast path of MaskedMultiHeadAttention, one process.

    python benchmarks/attention_microbench.py 32 500 375 50 10   # B, Tq, Tk, width, heads

Times forward and forward+backward of one layer with MulT's causal pattern,
XLA off and on, through `return_attention=True` (the exact path) and the
default call (the fast path), and prints their largest output difference.
"""
import sys, time, numpy as np, tensorflow as tf, keras
from keras_msa.layers import MaskedMultiHeadAttention
from keras_msa.layers.cross_modal_transformer import shifted_causal_mask
B, Tq, Tk, d, h = [int(v) for v in sys.argv[1:6]]
rng = np.random.default_rng(0)
q = tf.constant(rng.normal(size=(B, Tq, d)).astype("float32"))
c = tf.constant(rng.normal(size=(B, Tk, d)).astype("float32"))
qm = tf.ones((B, Tq), bool); cm = tf.ones((B, Tk), bool)
layer = MaskedMultiHeadAttention(h, key_dim=d // h, output_dim=d, dropout=0.0)
allowed = shifted_causal_mask(qm, cm, Tq, Tk)
layer(q, c, query_mask=qm, context_mask=cm, attention_mask=allowed)
def fwd(old):
    def f(q, c):
        r = layer(q, c, query_mask=qm, context_mask=cm, attention_mask=allowed, return_attention=old)
        return r[0] if old else r
    return f
def step(old, jit):
    f = fwd(old)
    @tf.function(jit_compile=jit)
    def g(q, c):
        with tf.GradientTape() as t:
            t.watch(q)
            y = f(q, c); loss = tf.reduce_sum(y * y)
        return loss, t.gradient(loss, [q] + layer.trainable_weights)
    return g
def timeit(fn, n=5):
    fn(); fn()
    ts = []
    for _ in range(n):
        s = time.perf_counter(); r = fn(); tf.nest.map_structure(lambda x: x.numpy(), r); ts.append(time.perf_counter() - s)
    return np.median(ts) * 1e3
for jit in (False, True):
    res = {}
    for old in (True, False):
        inf = tf.function(fwd(old), jit_compile=jit)
        g = step(old, jit)
        res[old] = (timeit(lambda: inf(q, c)), timeit(lambda: g(q, c)))
    a = tf.function(fwd(True))(q, c).numpy(); b = tf.function(fwd(False))(q, c).numpy()
    print(f"B{B} {Tq}x{Tk} d{d} h{h} jit={jit}: forward ms old {res[True][0]:.1f} new {res[False][0]:.1f} | fwd+bwd ms old {res[True][1]:.1f} new {res[False][1]:.1f} | max|diff| {np.abs(a-b).max():.2e}")
