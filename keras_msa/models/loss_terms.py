"""Per-epoch means of the named terms of a model's objective, as a Keras metric.

`MSAModel.compute_loss` sums named terms (`task`, and each model's auxiliary
losses: CrossSent's `mpr` and `eioi`, TeCaFN's `tcon`, `bicon` and `pair`,
M3SA's `unimodal_<m>` or `contrastive_<a>_<b>` and `unimodal_probe`, ...).
`LossTerms` keeps a running mean of each, so `model.fit`, `model.evaluate` and
the custom loop of `keras_msa.training` log them as `<term>_loss` beside
`loss` (history, TensorBoard, the epoch line).
"""

import keras
from keras import ops


class LossTerms(keras.metrics.Metric):
    """Running means of the named scalar terms of an objective.

    Each term is the weighted value that `compute_loss` adds to the total
    (`lambda * ramp * L_mpr`, not `L_mpr` alone), averaged over the epoch with
    the same per-batch weight Keras gives `loss` (the batch size), so the
    logged terms sum to the logged `loss`.

    The set of terms is not known when the model is compiled: it depends on
    the targets (M3SA's `multi_task="auto"`) and on the mode (TeCaFN's
    contrastive terms exist in training only). So the metric holds a fixed
    number of slots (`capacity`) made before any step is compiled, and gives
    a term its slot the first time `update_state` sees its name; `result()`
    reports the terms of the latest update, so a term that a mode does not
    compute is not reported as 0 for it.

    Args:
        capacity: the most distinct terms it can hold.
        name: the metric's name (its results are named by the terms).

    Example:

    >>> tracker = LossTerms()
    >>> tracker.update_state({"task": 1.0, "mpr": 0.5}, sample_weight=2.0)
    >>> tracker.update_state({"task": 3.0, "mpr": 0.5}, sample_weight=2.0)
    >>> {k: float(v) for k, v in tracker.result().items()}
    {'task_loss': 2.0, 'mpr_loss': 0.5}
    """

    def __init__(self, capacity=16, name="loss_terms", **kwargs):
        super().__init__(name=name, **kwargs)
        self.capacity = int(capacity)
        self.totals = self.add_variable(shape=(self.capacity,), initializer="zeros", name="totals")
        self.counts = self.add_variable(shape=(self.capacity,), initializer="zeros", name="counts")
        # Python-side: filled while a step is traced, like a layer's shapes.
        self._slots = {}
        self._latest = ()

    def _slot(self, name):
        if name not in self._slots:
            if len(self._slots) == self.capacity:
                raise ValueError(
                    f"LossTerms holds at most {self.capacity} terms ({sorted(self._slots)}); "
                    f"a new term '{name}' does not fit. Pass a larger capacity."
                )
            self._slots[name] = len(self._slots)
        return self._slots[name]

    def update_state(self, terms, sample_weight=None):
        """Adds one batch: `terms` maps names to scalar tensors."""
        if not terms:
            return
        names = list(terms)
        indices = ops.convert_to_tensor([[self._slot(n)] for n in names], dtype="int32")
        values = ops.stack([ops.reshape(ops.cast(terms[n], "float32"), ()) for n in names])
        weight = 1.0 if sample_weight is None else ops.cast(sample_weight, "float32")
        # Scatter, not one-hot products: a non-finite term must show up as
        # itself, not turn every other slot into NaN (0 * inf).
        self.totals.assign_add(ops.scatter(indices, values * weight, (self.capacity,)))
        self.counts.assign_add(ops.scatter(indices, ops.ones((len(names),), "float32") * weight, (self.capacity,)))
        self._latest = tuple(names)

    def result(self):
        means = ops.divide_no_nan(self.totals, self.counts)
        return {f"{n}_loss": means[self._slots[n]] for n in self._latest}

    def reset_state(self):
        self.totals.assign(ops.zeros((self.capacity,), "float32"))
        self.counts.assign(ops.zeros((self.capacity,), "float32"))

    def get_config(self):
        config = super().get_config()
        config.update({"capacity": self.capacity})
        return config
