"""Draw the cross-modal attention weights of one sample as heat maps (seed 002 Fig. 4).

    python recipes/plot_attention.py --model_path=runs/mulg/model.keras \\
        --data=synthetic --split=test --sample=0 --pairs=text_from_audio \\
        --output=runs/mulg/attention.png

Works with any model that has an `attention_maps(batch)` method returning
`{"<source>_from_<target>": [B, T_source, T_target]}` (MulG). Each panel shows
one directed pair: rows are the source's time steps (the queries), columns the
target's time steps it attends to, both cropped to the sample's real (unpadded)
steps and labelled with their indices. `--pairs=all` draws every pair.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_msa.data import DATA_PLACE  # noqa: E402  (light: no TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "A .keras file written by recipes/train.py.")
flags.DEFINE_string("data", "synthetic", "'synthetic' or a converted TFRecord directory."
                    f" Converted data live in {DATA_PLACE} by convention (e.g. data/mosi_unaligned).")
flags.DEFINE_string("split", "test", "Split the sample is taken from.")
flags.DEFINE_integer("sample", 0, "Index of the sample within the split.")
flags.DEFINE_list("pairs", ["all"], "Directed pairs to draw (e.g. text_from_audio) or 'all'.")
flags.DEFINE_string("output", None, "PNG to write (default: attention.png beside the model).")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the synthetic benchmark's data.")
flags.DEFINE_string("synthetic_sizes", None, "JSON split sizes of the synthetic data.")
flags.DEFINE_bool("synthetic_aligned", True, "Aligned or unaligned synthetic modalities.")


def sample_attention(model, batch, sample=0, pairs=("all",)):
    """The attention maps of sample `sample` of `batch`, cropped to its real steps.

    Returns `{pair: (weights [T_s_real, T_t_real], source_steps, target_steps)}`
    with the step indices (positions in the padded sequence) of the real rows
    and columns.
    """
    import numpy as np

    if not hasattr(model, "attention_maps"):
        raise ValueError(
            f"{type(model).__name__} has no attention_maps(batch) method; "
            f"cross-modal attention heat maps need a model such as MulG."
        )
    size = int(np.asarray(next(v for k, v in batch.items() if not k.endswith("_mask"))).shape[0])
    if not 0 <= sample < size:
        raise ValueError(f"--sample={sample} is outside the batch of {size} samples.")
    maps = model.attention_maps(batch)
    if not maps:
        raise ValueError("The model computes no cross-modal attention (ablated or single-modality model).")
    wanted = sorted(maps) if list(pairs) == ["all"] else list(pairs)
    unknown = [p for p in wanted if p not in maps]
    if unknown:
        raise ValueError(f"Unknown pair(s) {unknown}; the model has {sorted(maps)}.")
    out = {}
    for pair in wanted:
        source, target = pair.split("_from_")
        weights = np.asarray(maps[pair], np.float32)[sample]
        s_steps = _real_steps(batch, source, sample, weights.shape[0])
        t_steps = _real_steps(batch, target, sample, weights.shape[1])
        out[pair] = (weights[np.ix_(s_steps, t_steps)], s_steps, t_steps)
    return out


def _real_steps(batch, modality, sample, steps):
    import numpy as np

    mask = batch.get(f"{modality}_mask")
    if mask is None:
        return np.arange(steps)
    return np.flatnonzero(np.asarray(mask)[sample])


def render_attention(cropped, output, title=None):
    """Writes the heat maps of `cropped` (from `sample_attention`) to the PNG `output`.

    Returns `{"path": output, "panels": [{"title", "xlabel", "ylabel",
    "xticks", "yticks"}, ...]}` describing what was drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(cropped)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.0 * rows), squeeze=False)
    for ax, (pair, (weights, s_steps, t_steps)) in zip(axes.flat, cropped.items()):
        source, target = pair.split("_from_")
        if weights.size == 0:
            ax.text(0.5, 0.5, "no real steps", ha="center", va="center", transform=ax.transAxes)
        else:
            image = ax.imshow(weights, aspect="auto", cmap="viridis", vmin=0.0, interpolation="nearest")
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
            ax.set_xticks(_ticks(len(t_steps)), [str(t_steps[i]) for i in _ticks(len(t_steps))])
            ax.set_yticks(_ticks(len(s_steps)), [str(s_steps[i]) for i in _ticks(len(s_steps))])
        ax.set_xlabel(f"{target} time step (target)")
        ax.set_ylabel(f"{source} time step (source)")
        ax.set_title(f"{source} \u2190 {target}")
    panels = [
        {
            "title": ax.get_title(),
            "xlabel": ax.get_xlabel(),
            "ylabel": ax.get_ylabel(),
            "xticks": [t.get_text() for t in ax.get_xticklabels()],
            "yticks": [t.get_text() for t in ax.get_yticklabels()],
        }
        for ax in list(axes.flat)[:n]
    ]
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return {"path": output, "panels": panels}


def _ticks(n, most=12):
    step = max(1, -(-n // most))
    return list(range(0, n, step))


def load_sample_batch(data, split, sample, synthetic_seed=0, synthetic_sizes=None, synthetic_aligned=True):
    """The batch holding sample `sample` of `split` and the sample's index in it."""
    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import load_data

    batch_size = 64
    config = TrainConfig(
        data=data, batch_size=batch_size, synthetic_seed=synthetic_seed,
        synthetic_sizes=synthetic_sizes, synthetic_aligned=synthetic_aligned,
    )
    datasets, _ = load_data(config, splits=(split,), shuffle_train=False)
    if split not in datasets:
        raise ValueError(f"--split={split} is not in --data={data}.")
    for i, (inputs, _) in enumerate(datasets[split]):
        if i == sample // batch_size:
            return {k: v.numpy() for k, v in inputs.items()}, sample % batch_size
    raise ValueError(f"--sample={sample} is beyond the end of split '{split}'.")


def main(argv):
    del argv
    import keras_msa.models  # noqa: F401  (registers the model classes)

    if not FLAGS.model_path:
        raise app.UsageError("--model_path is required.")
    from keras_msa.training.runner import parse_json_flag
    from keras_msa.utils.loading import load_model

    try:
        sizes = parse_json_flag("synthetic_sizes", FLAGS.synthetic_sizes)
        model = load_model(FLAGS.model_path, label="--model_path")
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"plot_attention.py: {e}")
    batch, index = load_sample_batch(
        FLAGS.data, FLAGS.split, FLAGS.sample, FLAGS.synthetic_seed, sizes, FLAGS.synthetic_aligned
    )
    cropped = sample_attention(model, batch, index, FLAGS.pairs)
    output = FLAGS.output or os.path.join(os.path.dirname(os.path.abspath(FLAGS.model_path)), "attention.png")
    render_attention(cropped, output, title=f"{FLAGS.split} sample {FLAGS.sample}")
    print(f"Wrote {output} ({', '.join(cropped)})")


if __name__ == "__main__":
    app.run(main)
