"""Draw the attention (and gate) weights of one sample as heat maps and bar charts.

    python recipes/plot_attention.py --model_path=runs/ssgdl/model.keras \\
        --data=synthetic --split=test --sample=0 --output=runs/ssgdl/attention.png

Works for every model whose `attention_maps(batch)` returns maps
(`keras_msa.models.base.MSAModel.attention_maps`; axes named by
`attention_axes()`): MulG's directed pairs (seed 002 Fig. 4), SSGDL's CS-DSA
criss-cross maps, CrossSent's GMRA text -> audio+vision attention, TeCaFN's
text-centred cross-attention (one panel per layer) and M3SA's key-modality
attention and SE channel weights. Attention panels put the queries on the rows
and the attended (key) steps on the columns, labelled with the modality and
its step indices; padded steps are cropped out (each sample's real steps only,
indices kept as in the padded sequence); heads are averaged (the mean of
softmax rows still sums to 1); a `+` axis (GMRA: audio then vision, one
softmax) and the CS-DSA modality blocks are separated by white lines. SE
weights are bars. Models without attention (LF-DNN, EF-LSTM) get a message
saying so. `--maps=all` (default) draws every map; `--maps=text_from_audio,...`
a selection.
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
flags.DEFINE_list("maps", ["all"], "Maps to draw (names of model.attention_maps, e.g. text_from_audio) or 'all'.")
flags.DEFINE_alias("pairs", "maps")
flags.DEFINE_string("output", None, "PNG to write (default: attention.png beside the model).")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the synthetic benchmark's data.")
flags.DEFINE_string("synthetic_sizes", None, "JSON split sizes of the synthetic data.")
flags.DEFINE_bool("synthetic_aligned", True, "Aligned or unaligned synthetic modalities.")


class NoAttentionError(ValueError):
    """The model computes no attention weights (nothing to plot)."""


def sample_attention(model, batch, sample=0, maps=("all",), computed=None):
    """The panels to draw for sample `sample` of `batch`.

    `computed`: `model.attention_maps(batch)` when the caller already has it
    (drawing several samples of one batch runs the model once).

    Returns `{panel name: panel}`; a panel is a dict with `kind` (`"heatmap"`
    or `"bars"`), `values` (2-D rows x columns for a heat map, already cropped
    to the real steps and averaged over heads; 1-D for bars), `map` (the name
    in `model.attention_maps`) and, per drawn axis (`"rows"`, `"cols"` for a
    heat map, `"cols"` for bars), `{"label", "steps", "segments"}`: the axis
    label, the tick labels (step indices in the padded sequence) and
    `(name, start, stop)` blocks of a joint axis.
    """
    import numpy as np

    if not hasattr(model, "attention_maps") or not hasattr(model, "attention_axes"):
        raise ValueError(
            f"{type(model).__name__} has no attention_maps(batch) / attention_axes() methods; "
            f"heat maps need a keras_msa model (keras_msa.models.base.MSAModel)."
        )
    size = int(np.asarray(next(v for k, v in batch.items() if not k.endswith("_mask"))).shape[0])
    if not 0 <= sample < size:
        raise ValueError(f"--sample={sample} is outside the batch of {size} samples.")
    if computed is None:
        computed = model.attention_maps(batch)
    if not computed:
        raise NoAttentionError(
            f"{type(model).__name__} computes no attention weights (a model without attention, "
            f"such as LF-DNN or EF-LSTM, or an ablation that removes it, e.g. MulG without "
            f"cross-modal attention): there is nothing to plot."
        )
    axes = model.attention_axes()
    wanted = list(computed) if list(maps) == ["all"] else list(maps)
    unknown = [p for p in wanted if p not in computed]
    if unknown:
        raise ValueError(f"Unknown map(s) {unknown}; the model has {sorted(computed)}.")
    masks = {m: np.asarray(v, bool) for m, v in model.attention_masks(batch).items()}
    panels = {}
    for name in wanted:
        if name not in axes:
            raise ValueError(f"{type(model).__name__}.attention_axes() does not describe the map '{name}'.")
        values = np.asarray(computed[name], np.float32)[sample]
        panels.update(_panels(name, values, tuple(axes[name]), masks, sample))
    return panels


def _panels(name, values, axes, masks, sample):
    import numpy as np

    if values.ndim != len(axes):
        raise ValueError(f"Map '{name}' has {values.ndim} axes after the batch; its axes are {axes}.")
    note = []
    if "head" in axes:
        i = axes.index("head")
        note.append(f"mean of {values.shape[i]} heads")
        values = values.mean(axis=i)
        axes = axes[:i] + axes[i + 1:]
    if "layer" in axes:
        i = axes.index("layer")
        out = {}
        for k in range(values.shape[i]):
            sub = _panels(name, np.take(values, k, axis=i), axes[:i] + axes[i + 1:], masks, sample)
            for key, panel in sub.items():
                panel["title"] = _join(f"{_title(name)}, layer {k}", panel.pop("note", ""), note)
                out[f"{key}/layer_{k}"] = panel
        return out
    if axes == ("scale",):
        panel = {
            "kind": "bars", "map": name, "values": values,
            "cols": {"label": "scale (0 = LSTM features)", "steps": [str(i) for i in range(len(values))],
                     "segments": []},
            "ylabel": "SE channel weight",
        }
    elif _is_grid(axes):
        half = len(axes) // 2
        if half == 2:  # (modality, time): flatten into blocks of time steps
            values = values.reshape(values.shape[0] * values.shape[1], -1)
        rows = _axis(axes[:half], masks, sample, values.shape[0])
        cols = _axis(axes[half:], masks, sample, values.shape[1])
        rows["label"] += " (query)"
        cols["label"] += " (key)"
        panel = {
            "kind": "heatmap", "map": name, "rows": rows, "cols": cols,
            "values": values[np.ix_(rows.pop("index"), cols.pop("index"))],
        }
    else:
        raise ValueError(f"Map '{name}': no drawing for axes {axes}.")
    panel["title"] = _join(_title(name), "", note)
    return {name: panel}


def _is_grid(axes):
    """(time, time) or (modality, time, modality, time): a query x key heat map."""
    kinds = tuple(a.split(":", 1)[0] for a in axes)
    return kinds in (("time", "time"), ("modality", "time", "modality", "time"))


def _join(title, extra, note):
    parts = [p for p in [extra] + list(note) if p]
    return f"{title} ({', '.join(parts)})" if parts else title


def _title(name):
    if name.startswith("csdsa_k"):
        return f"CS-DSA criss-cross, kernel {name[len('csdsa_k'):]} (loop 1)"
    if name.startswith("se_"):
        return f"{name[3:]} SE channel weights"
    if "_from_" in name:
        query, key = name.split("_from_", 1)
        return f"{query} \u2190 {key}"
    return name


def _axis(axes, masks, sample, size):
    """Index (into the flattened axis) of its real steps, tick labels, blocks."""
    import numpy as np

    if len(axes) == 2:  # ("modality:a,b,c", "time:m")
        names = axes[0].split(":", 1)[1].split(",")
        time = axes[1].split(":", 1)[1]
        steps = size // len(names)
        real = _real(masks, time, sample, steps)
        index = np.concatenate([i * steps + real for i in range(len(names))])
        labels = [str(s) for s in real] * len(names)
        blocks = [(n, i * len(real), (i + 1) * len(real)) for i, n in enumerate(names)]
        return {"index": index, "steps": labels, "segments": blocks,
                "label": f"{' | '.join(names)} rows, {time} time step"}
    parts = axes[0].split(":", 1)[1].split("+")
    if len(parts) == 1:
        real = _real(masks, parts[0], sample, size)
        return {"index": real, "steps": [str(s) for s in real], "segments": [],
                "label": f"{parts[0]} time step"}
    # A joint axis: the steps of each part follow one another; their lengths
    # come from the masks (the batch's padded lengths).
    index, labels, blocks, offset = [], [], [], 0
    for part in parts:
        steps = masks[part].shape[1] if part in masks else size - offset
        real = _real(masks, part, sample, steps)
        blocks.append((part, len(labels), len(labels) + len(real)))
        index.extend(offset + real)
        labels.extend(str(s) for s in real)
        offset += steps
    if offset != size:
        raise ValueError(f"Axis {axes[0]} has {size} steps; the masks of {parts} give {offset}.")
    return {"index": np.asarray(index, int), "steps": labels, "segments": blocks,
            "label": f"{' | '.join(parts)} time step"}


def _real(masks, modality, sample, steps):
    import numpy as np

    mask = masks.get(modality)
    if mask is None:
        return np.arange(steps)
    if mask.shape[1] != steps:
        raise ValueError(f"'{modality}_mask' has {mask.shape[1]} steps; the map's axis has {steps}.")
    return np.flatnonzero(mask[sample])


def render_attention(panels, output, title=None):
    """Writes the panels of `panels` (from `sample_attention`) to the PNG `output`.

    Returns `{"path": output, "panels": [{"title", "xlabel", "ylabel",
    "xticks", "yticks"}, ...]}` describing what was drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_msa.utils.files import atomic_path

    n = len(panels)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 4.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels.values()):
        values = panel["values"]
        if values.size == 0:
            ax.text(0.5, 0.5, "no real steps", ha="center", va="center", transform=ax.transAxes)
        elif panel["kind"] == "bars":
            ax.bar(range(len(values)), values, color="tab:blue")
            ax.set_ylim(0.0, max(1.0, float(values.max()) * 1.05))
            ax.set_ylabel(panel["ylabel"])
            ax.set_xticks(range(len(values)), panel["cols"]["steps"])
        else:
            image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0.0, interpolation="nearest")
            # Room for the block names on the right of a joint row axis.
            pad = 0.14 if len(panel["rows"]["segments"]) > 1 else 0.04
            fig.colorbar(image, ax=ax, fraction=0.046, pad=pad, label="attention weight")
            _ticks(ax.set_xticks, panel["cols"])
            _ticks(ax.set_yticks, panel["rows"])
            for _, start, _ in panel["cols"]["segments"][1:]:
                ax.axvline(start - 0.5, color="white", linewidth=1.5)
            for _, start, _ in panel["rows"]["segments"][1:]:
                ax.axhline(start - 0.5, color="white", linewidth=1.5)
            _segment_names(ax, panel["cols"]["segments"], "x")
            _segment_names(ax, panel["rows"]["segments"], "y")
            ax.set_ylabel(panel["rows"]["label"])
        ax.set_xlabel(panel["cols"]["label"])
        ax.set_title(panel["title"], fontsize=10)
    drawn = [
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
    with atomic_path(output, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return {"path": output, "panels": drawn}


def _ticks(setter, axis, most=12):
    labels = axis["steps"]
    step = max(1, -(-len(labels) // most))
    # Every block of a joint axis starts with a tick at its first real step.
    blocks = [(start, stop) for _, start, stop in axis["segments"]] or [(0, len(labels))]
    positions = [i for start, stop in blocks for i in range(start, stop, step)]
    setter(positions, [labels[i] for i in positions])


def _segment_names(ax, segments, which):
    """Names the blocks of a joint axis on the far side of the panel."""
    if len(segments) < 2:
        return
    centres = [(start + stop - 1) / 2 for _, start, stop in segments]
    names = [name for name, _, _ in segments]
    if which == "x":
        top = ax.secondary_xaxis("top")
        top.set_xticks(centres, names)
    else:
        right = ax.secondary_yaxis("right")
        right.set_yticks(centres, names)


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
    try:
        panels = sample_attention(model, batch, index, FLAGS.maps)
    except ValueError as e:
        raise SystemExit(f"plot_attention.py: {e}")
    output = FLAGS.output or os.path.join(os.path.dirname(os.path.abspath(FLAGS.model_path)), "attention.png")
    render_attention(panels, output, title=f"{type(model).__name__}, {FLAGS.split} sample {FLAGS.sample}")
    print(f"Wrote {output} ({', '.join(panels)})")


if __name__ == "__main__":
    app.run(main)
