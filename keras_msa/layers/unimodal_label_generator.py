import keras
from keras import ops

#: The four label streams, in the order of the memory's columns. `fusion` is
#: the human label and never changes; the other three are generated.
ULGM_MODES = ("fusion", "text", "audio", "vision")
_MIN = 1e-8


@keras.saving.register_keras_serializable(package="keras_msa")
class UnimodalLabelGenerator(keras.layers.Layer):
    """Self-MM's unimodal label generation module (ULGM) with its memory.

    Yu et al., "Learning Modality-Specific Representations with
    Self-Supervised Multi-Task Learning for Multimodal Sentiment Analysis",
    AAAI 2021, Sec. 3.3, as MMSA's trainer (`trains/multiTask/SELF_MM.py`)
    runs it. For every training sample `i` it remembers the last
    representation `F_m[i]` of each stream `m` (fusion, text, audio,
    vision) and a label `y_m[i]`; from them it keeps the positive and
    negative centres of each stream

        C_m^p = mean_{j: y_m[j] > 0} F_m[j],   C_m^n = mean_{j: y_m[j] < 0} F_m[j]

    (`>= 0` for the positives with `exclude_zero=False`). On a batch of
    epoch `n` (1-based) with `n > 1`, each unimodal label moves towards

        d^p = ||F - C^p||,  d^n = ||F - C^n||,  delta = (d^n - d^p) / (d^p + eps)
        alpha_s = delta_s / (delta_f + eps)
        y_hat_s = clip(0.5 alpha_s y_f + 0.5 (y_f + delta_s - delta_f), -H, H)
        y_s <- (n - 1) / (n + 1) y_s + 2 / (n + 1) y_hat_s

    (eps = 1e-8; the paper's Eqs. 6-10 with MMSA's distance ratio and its
    momentum, Eq. 11); then the batch's representations are written to the
    memory and the centres recomputed. The weight of a unimodal loss term is
    `tanh(|y_s - y_f|)` (Eq. 12), from the labels before the batch's update.

    State (non-trainable Keras variables, saved in `.keras` files and
    checkpoints): `labels` `[train_samples, 4]` (columns `ULGM_MODES`),
    `initialized` `[train_samples]` (1 once a sample was seen: MMSA fills
    every label with the human one before training; here a sample's labels
    are filled the first time it is seen, which is the same for every sample
    of the first epoch), `features_<mode>` `[train_samples, d_mode]`,
    `center_pos_<mode>` and `center_neg_<mode>` `[d_mode]`. Rows are
    addressed by the batch's `sample_index` (the example's position in the
    training split, docs/data.md).

    Args:
        train_samples: rows of the memory (the training split's size).
        feature_dims: `{mode: width}` of the four representations.
        label_bound: H, the clip of generated labels (MMSA: 3 for MOSI and
            MOSEI, 1 for SIMS).
        exclude_zero: positives are `y > 0` (True, MMSA's `excludeZero`) or
            `y >= 0`.

    Example:

    >>> import numpy as np
    >>> ulgm = UnimodalLabelGenerator(4, {"fusion": 3, "text": 2, "audio": 2, "vision": 2})
    >>> ulgm.build()
    >>> index, y = np.array([0, 1]), np.array([[1.0], [-2.0]], "float32")
    >>> labels, weights = ulgm(index, y)
    >>> [float(v) for v in np.asarray(labels["text"])], [float(v) for v in np.asarray(weights["text"])]
    ([1.0, -2.0], [0.0, 0.0])
    """

    def __init__(self, train_samples, feature_dims, label_bound=3.0, exclude_zero=True, **kwargs):
        super().__init__(**kwargs)
        missing = [m for m in ULGM_MODES if m not in feature_dims]
        if missing:
            raise ValueError(f"UnimodalLabelGenerator: feature_dims needs {list(ULGM_MODES)}; "
                             f"{missing} missing (got {dict(feature_dims)}).")
        if int(train_samples) < 1:
            raise ValueError(f"UnimodalLabelGenerator: train_samples must be >= 1; got {train_samples}.")
        self.train_samples = int(train_samples)
        self.feature_dims = {m: int(feature_dims[m]) for m in ULGM_MODES}
        self.label_bound = float(label_bound)
        self.exclude_zero = bool(exclude_zero)

    def build(self, input_shape=None):
        n = self.train_samples

        def state(name, shape):
            return self.add_weight(name=name, shape=shape, initializer="zeros", trainable=False,
                                   dtype="float32")

        self.labels = state("labels", (n, len(ULGM_MODES)))
        self.initialized = state("initialized", (n,))
        self.features = {m: state(f"features_{m}", (n, d)) for m, d in self.feature_dims.items()}
        self.center_pos = {m: state(f"center_pos_{m}", (d,)) for m, d in self.feature_dims.items()}
        self.center_neg = {m: state(f"center_neg_{m}", (d,)) for m, d in self.feature_dims.items()}
        self.built = True

    def _index(self, index):
        return ops.reshape(ops.cast(index, "int32"), (-1,))

    def call(self, index, y):
        """`(labels, weights)`: `{mode: [B]}` the batch's current labels
        (the human one `y` for the fusion stream and for unseen samples)
        and `{mode: [B]}` their loss weights (1 for fusion)."""
        index = self._index(index)
        y = ops.reshape(ops.cast(y, "float32"), (-1,))
        stored = ops.take(self.labels, index, axis=0)
        seen = ops.take(self.initialized, index, axis=0) > 0.5
        labels = {"fusion": y}
        weights = {"fusion": ops.ones_like(y)}
        for k, m in enumerate(ULGM_MODES[1:], start=1):
            labels[m] = ops.where(seen, stored[:, k], y)
            weights[m] = ops.tanh(ops.abs(labels[m] - y))
        return labels, weights

    def _delta(self, mode, f):
        d_p = ops.norm(f - self.center_pos[mode][None, :], axis=-1)
        d_n = ops.norm(f - self.center_neg[mode][None, :], axis=-1)
        return (d_n - d_p) / (d_p + _MIN)

    def update(self, index, y, features, epoch):
        """Runs one training batch's update: new unimodal labels (when the
        1-based `epoch` is > 1), the batch's `features` `{mode: [B, d]}`
        into the memory, then the centres. Returns the batch's labels after
        the update `{mode: [B]}`."""
        index = self._index(index)
        labels, _ = self.call(index, y)
        features = {m: ops.stop_gradient(ops.cast(features[m], "float32")) for m in ULGM_MODES}
        n = ops.cast(epoch, "float32")
        y_f = labels["fusion"]
        delta_f = self._delta("fusion", features["fusion"])
        new = {"fusion": y_f}
        for m in ULGM_MODES[1:]:
            delta_s = self._delta(m, features[m])
            alpha = delta_s / (delta_f + _MIN)
            target = 0.5 * alpha * y_f + 0.5 * (y_f + delta_s - delta_f)
            target = ops.clip(target, -self.label_bound, self.label_bound)
            moved = (n - 1.0) / (n + 1.0) * labels[m] + 2.0 / (n + 1.0) * target
            # The first epoch only fills the memory (MMSA: `epochs > 1`).
            new[m] = ops.where(n > 1.0, moved, labels[m])
        rows = index[:, None]
        self.labels.assign(ops.scatter_update(self.labels, rows, ops.stack([new[m] for m in ULGM_MODES], -1)))
        self.initialized.assign(ops.scatter_update(self.initialized, rows, ops.ones_like(y_f)))
        for m in ULGM_MODES:
            self.features[m].assign(ops.scatter_update(self.features[m], rows, features[m]))
        self.update_centers()
        return new

    def update_centers(self):
        """Recomputes every centre from the memory (samples never seen
        count in neither centre; an empty side's centre is 0, where MMSA's
        mean of nothing is NaN)."""
        seen = self.initialized > 0.5
        for k, m in enumerate(ULGM_MODES):
            y = self.labels[:, k]
            for center, side in ((self.center_pos[m], (y > 0) if self.exclude_zero else (y >= 0)),
                                 (self.center_neg[m], y < 0)):
                side = ops.logical_and(side, seen)
                picked = ops.where(side[:, None], self.features[m], 0.0)
                count = ops.sum(ops.cast(side, "float32"))
                center.assign(ops.divide_no_nan(ops.sum(picked, axis=0), count))

    def get_config(self):
        config = super().get_config()
        config.update({"train_samples": self.train_samples, "feature_dims": dict(self.feature_dims),
                       "label_bound": self.label_bound, "exclude_zero": self.exclude_zero})
        return config
