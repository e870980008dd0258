"""Error-Interval Ordinal Inconsistency loss (CrossSent, seed 001, Sec. 3.4)."""

import keras
from keras import ops


def error_interval_ordinal_inconsistency(y_true, y_pred, delta=0.5):
    """Per-sample EIOI, `max(0, |ŷ - y| - delta) ** 2`, float32 `[B]`."""
    if delta < 0:
        raise ValueError(f"ErrorIntervalOrdinalInconsistency: delta must be >= 0; got {delta}.")
    y = ops.reshape(ops.cast(ops.convert_to_tensor(y_true), "float32"), (-1,))
    p = ops.reshape(ops.cast(ops.convert_to_tensor(y_pred), "float32"), (-1,))
    if y.shape[0] is not None and p.shape[0] is not None and y.shape[0] != p.shape[0]:
        raise ValueError(
            "ErrorIntervalOrdinalInconsistency: y_true and y_pred hold different "
            f"numbers of samples ({y.shape[0]} vs {p.shape[0]})."
        )
    return ops.square(ops.relu(ops.abs(p - y) - delta))


@keras.saving.register_keras_serializable(package="keras_msa")
class ErrorIntervalOrdinalInconsistency(keras.losses.Loss):
    """Error-Interval Ordinal Inconsistency (EIOI) loss (seed 001, Sec. 3.4).

    A squared hinge outside a tolerance band of half-width `delta` around
    each label (Eq. 15):

        L_EIOI = 1/B * sum_i max(0, |ŷ_i - y_i| - delta) ** 2

    Errors within the band cost nothing; beyond it only the excess is
    penalised, so small annotation disagreements do not pull the model. The
    per-sample values are reduced by Keras (`sum_over_batch_size` = Eq. 15's
    mean; sample weights work as usual). Computed in float32.

    (Eq. 15 in the order of the displayed equations of seed 001; the total
    objective L = L_MSE + λ_mpr L_MPR + λ_eioi L_EIOI is Eq. 16.)

    Args:
        delta: tolerance δ > 0. Seed 001 gives no tuned value: it recommends
            0.5-1.0 for 5/7-level scales and 0.2-0.5 for continuous
            regression; CrossSent's presets use 0.5 on MOSI/MOSEI ([-3, 3])
            and 0.2 on CH-SIMS ([-1, 1]).
        name, reduction, dtype: as in `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> loss = ErrorIntervalOrdinalInconsistency(delta=0.5)
    >>> y = np.array([[0.0], [1.0]], "float32")
    >>> round(float(loss(y, np.array([[0.3], [2.5]], "float32"))), 4)  # (0 + 1.0**2) / 2
    0.5
    """

    def __init__(
        self,
        delta=0.5,
        name="error_interval_ordinal_inconsistency",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.delta = delta

    def call(self, y_true, y_pred):
        return error_interval_ordinal_inconsistency(y_true, y_pred, self.delta)

    def get_config(self):
        config = super().get_config()
        config.update({"delta": self.delta})
        return config
