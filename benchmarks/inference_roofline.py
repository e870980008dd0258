"""Large-batch inference of the paper models against this CPU's matmul peak.

    python benchmarks/inference_roofline.py --models=mult,crosssent,tecafn,ssgdl,mulg,m3sa --lens=50,375,500

For each model (its `mosi` preset, MOSI feature sizes 768/5/20, the lengths
given): the float32 FLOPs of one inference batch, counted by TensorFlow's
traced graph (matmuls, einsums and convolutions, a multiply-add counted as 2
FLOPs; the bodies of while loops, i.e. recurrent steps, are flagged and not
counted), the measured wall time of
that call (XLA on and off, median of `--repeats`), hence GFLOP/s, and that
as a fraction of the machine's float32 matmul peak, measured here as NumPy's
2048 x 2048 matmul (`--peak_size`) in the same run. Prints one line per model
and the load average at the start and the end.
"""

import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("models", "mult,crosssent,tecafn,ssgdl,mulg,m3sa", "Comma-separated registered model names.")
flags.DEFINE_string("preset", "mosi", "Preset each model is built from.")
flags.DEFINE_string("lens", "50,375,500", "Text, audio and vision steps.")
flags.DEFINE_integer("batch_size", 64, "Inference batch.")
flags.DEFINE_integer("repeats", 3, "Timed calls per mode.")
flags.DEFINE_integer("peak_size", 2048, "Square matmul size of the NumPy peak measurement.")


def matmul_peak_gflops(n, repeats=5):
    """NumPy float32 n x n matmul GFLOP/s (best of `repeats`)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n)).astype("float32")
    a @ a
    best = min(_wall(lambda: a @ a) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _wall(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _einsum_flops(op):
    inputs, output = op.get_attr("equation").decode().replace(" ", "").split("->")
    sizes = {}
    for spec, tensor in zip(inputs.split(","), op.inputs):
        for letter, size in zip(spec, tensor.shape.as_list()):
            sizes[letter] = size
    if "." in inputs or None in sizes.values():
        return None
    total = 2
    for size in sizes.values():
        total *= size
    return total


def _matmul_flops(op):
    a, b = (t.shape.as_list() for t in op.inputs[:2])
    out = op.outputs[0].shape.as_list()
    if None in a or None in out:
        return None
    if op.type == "MatMul":
        inner = a[0] if op.get_attr("transpose_a") else a[1]
    else:
        inner = a[-2] if op.get_attr("adj_x") else a[-1]
    total = 2 * inner
    for size in out:
        total *= size
    return total


def _conv_flops(op):
    out = op.outputs[0].shape.as_list()
    kernel = op.inputs[1].shape.as_list()
    if None in out or None in kernel:
        return None
    total = 2
    for size in out[:-1] + kernel[:-1]:
        total *= size
    return total * kernel[-1]


_COUNTERS = {"Einsum": _einsum_flops, "MatMul": _matmul_flops, "BatchMatMulV2": _matmul_flops,
             "BatchMatMulV3": _matmul_flops, "Conv2D": _conv_flops}


def graph_flops(graph, functions=None):
    """`(flops, loops)`: the multiply-add FLOPs (2 per multiply-add) of the
    matmuls, einsums and convolutions of `graph` and the functions it calls,
    and whether it holds while loops (whose bodies, e.g. recurrent steps, are
    not counted: their trip count is not in the graph)."""
    functions = functions if functions is not None else dict(getattr(graph, "_functions", {}))
    flops, loops = 0, False
    for op in graph.get_operations():
        if op.type in _COUNTERS:
            count = _COUNTERS[op.type](op)
            flops += count or 0
        elif op.type in ("While", "StatelessWhile"):
            loops = True
        elif op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            name = op.get_attr("f").name
            if name in functions:
                inner = functions[name]
                inner_graph = getattr(inner, "graph", None)
                if inner_graph is not None:
                    f, l = graph_flops(inner_graph, functions)
                    flops, loops = flops + f, loops or l
    return flops, loops


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_msa.training.benchmark import build_model
    from keras_msa.training.benchmark import make_batches
    from keras_msa.training.benchmark import parse_lens

    lens = parse_lens(FLAGS.lens)
    print(f"load at start: {os.getloadavg()}")
    peak = matmul_peak_gflops(FLAGS.peak_size)
    print(f"numpy float32 {FLAGS.peak_size}^2 matmul: {peak:.1f} GFLOP/s")
    x, _, _ = make_batches(FLAGS.batch_size, lens=lens)
    x_tf = {k: tf.constant(v) for k, v in x.items()}
    for name in FLAGS.models.split(","):
        keras.utils.set_random_seed(0)
        net = build_model(name, FLAGS.preset)
        net({k: v[:1] for k, v in x.items()})
        row = []
        for jit in (False, True):
            fn = tf.function(lambda inputs: net(inputs, training=False)["sentiment"], jit_compile=jit)
            if not jit:
                flops, loops = graph_flops(fn.get_concrete_function(x_tf).graph)
            fn(x_tf).numpy()
            seconds = float(np.median([_wall(lambda: fn(x_tf).numpy()) for _ in range(FLAGS.repeats)]))
            row.append(seconds)
        rates = [flops / s / 1e9 for s in row]
        print(f"{name}: {flops / 1e9:.2f} GFLOP{' + recurrent loops (not counted)' if loops else ''} per batch {FLAGS.batch_size}; "
              f"XLA off {row[0] * 1e3:.0f} ms = {rates[0]:.1f} GFLOP/s ({rates[0] / peak:.1%} of peak); "
              f"XLA on {row[1] * 1e3:.0f} ms = {rates[1]:.1f} GFLOP/s ({rates[1] / peak:.1%} of peak)",
              flush=True)
    print(f"load at end: {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
