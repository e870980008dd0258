"""Training curves from history.csv files, in three panels (no Keras).

- **loss terms**: `loss` and each `<term>_loss` of the objective; training
  solid, validation (`val_...`) dashed, one colour per term;
- **error**: the validation error metrics (MAE, RMSE, MSE);
- **accuracy / correlation**: every other validation metric (Acc-2, F1,
  Acc-7, Pearson r, CCC, kappa, ...).

The best epoch of the selection metric (`monitor`) is marked in every panel,
and the legends sit right of the axes, off the curves.
"""

import math
import os

from keras_msa.training.history_files import read_history_csv
from keras_msa.utils.files import atomic_path

PANELS = ("loss terms", "error", "accuracy / correlation")
_ERRORS = ("mae", "rmse", "mse")
# The selection metrics the runner uses (keras_msa.training.evaluation.monitor_for), in order of preference.
_MONITORS = (("val_mae", "min"), ("val_ccc", "max"), ("val_acc", "max"), ("val_loss", "min"))


def panel_of(column):
    """The panel a history column is drawn in, or None (epoch, wall time)."""
    if column == "loss" or column.endswith("_loss"):
        return PANELS[0]
    if not column.startswith("val_"):
        return None
    name = column[len("val_"):]
    if name in _ERRORS or name.endswith(tuple(f"_{e}" for e in _ERRORS)):
        return PANELS[1]
    return PANELS[2]


def best_epoch(history, monitor=None):
    """`(monitor, mode, epoch)` of the best finite value of `monitor` (default:
    the first of val_mae (min), val_ccc, val_acc (max), val_loss (min) the
    history holds); `(None, None, None)` when there is none."""
    if monitor is None:
        monitor, mode = next(((m, d) for m, d in _MONITORS if m in history), (None, None))
    else:
        monitor = monitor if monitor.startswith("val_") or monitor.endswith("loss") else f"val_{monitor}"
        if monitor not in history:
            raise ValueError(f"The history has no column '{monitor}'; it holds {sorted(history)}.")
        mode = "max" if panel_of(monitor) == PANELS[2] else "min"
    if monitor is None:
        return None, None, None
    values = [(v, e) for v, e in zip(history[monitor], history["epoch"]) if not math.isnan(v) and math.isfinite(v)]
    if not values:
        return monitor, mode, None
    pick = min if mode == "min" else max
    return monitor, mode, pick(values, key=lambda ve: ve[0])[1]


def plot_histories(paths, output, metrics=None, title=None, monitor=None):
    """Draws the history files `paths` into the PNG `output` in three panels
    (loss terms, error metrics, accuracy / correlation); returns the list of
    validation metric columns drawn (those named by `metrics`, else all)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    histories = [(p, read_history_csv(p)) for p in paths]
    if metrics:
        wanted = [m if m.startswith("val_") else f"val_{m}" for m in metrics]
        for p, h in histories:
            missing = [m for m in wanted if m not in h]
            if missing:
                raise ValueError(f"{p} has no column(s) {missing}; it holds {sorted(h)}.")
    else:
        wanted = []
        for _, h in histories:
            wanted += [k for k in h if panel_of(k) in PANELS[1:] and k not in wanted]

    # One colour per series (a term's training and validation curves share it),
    # over the whole figure, so no two series of a panel look alike.
    series = []
    for p, h in histories:
        label = os.path.basename(os.path.dirname(os.path.abspath(p))) or p
        prefix = "" if len(histories) == 1 else f"{label}: "
        for k in h:
            panel = panel_of(k)
            if panel is None or (panel != PANELS[0] and k not in wanted):
                continue
            base = k[len("val_"):] if k.startswith("val_") and panel == PANELS[0] else k
            series.append((p, h, k, panel, prefix + base))
    names = list(dict.fromkeys(s[4] for s in series))
    cmap = matplotlib.colormaps["tab20" if len(names) > 10 else "tab10"]
    colour = {name: cmap(i % cmap.N) for i, name in enumerate(names)}

    fig, axes = plt.subplots(3, 1, figsize=(9, 10), sharex=True)
    ax_of = dict(zip(PANELS, axes))
    for p, h, k, panel, name in series:
        val = k.startswith("val_") and panel == PANELS[0]
        ax_of[panel].plot(h["epoch"], h[k], marker="o", ms=3, color=colour[name],
                          linestyle="--" if val else "-",
                          label=f"{name} ({'validation' if val else 'training'})" if panel == PANELS[0] else name)
    for p, h in histories:
        chosen, _, epoch = best_epoch(h, monitor)
        if epoch is None:
            continue
        label = os.path.basename(os.path.dirname(os.path.abspath(p))) or p
        which = "" if len(histories) == 1 else f" {label}"
        for i, ax in enumerate(axes):
            ax.axvline(epoch, color="0.35", linestyle=":", linewidth=1.2,
                       label=f"best epoch{which}: {epoch} ({chosen})" if i == 0 else None)
        value = h[chosen][h["epoch"].index(epoch)]
        ax_of[panel_of(chosen)].plot([epoch], [value], marker="*", ms=14, color="gold", markeredgecolor="black",
                                     linestyle="none", zorder=5)
    axes[0].set(ylabel="objective", title="loss terms")
    axes[1].set(ylabel="error (lower is better)", title="error metrics (validation)")
    axes[2].set(xlabel="epoch", ylabel="higher is better", title="accuracy / correlation (validation)")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            # Right of the axes: never over the curves.
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        else:
            ax.text(0.5, 0.5, "no such columns in the history", transform=ax.transAxes,
                    ha="center", va="center", color="0.5")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with atomic_path(output, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
    return wanted
