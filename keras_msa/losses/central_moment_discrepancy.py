"""Central moment discrepancy (CMD; Zellinger et al., ICLR 2017), MISA's
similarity loss (Hazarika et al., ACM MM 2020, Eq. 4)."""

import keras
from keras import ops


def _safe_norm(x):
    """Euclidean norm of `x` whose gradient at 0 is 0 instead of inf/NaN
    (identical moments, e.g. a batch of one, are a real case)."""
    total = ops.sum(ops.square(x))
    positive = total > 0
    root = ops.sqrt(ops.where(positive, total, ops.ones_like(total)))
    return ops.where(positive, root, ops.zeros_like(total))


def central_moment_discrepancy(x1, x2, n_moments=5):
    """`||E(x1) - E(x2)||_2 + sum_{k=2..K} ||C_k(x1) - C_k(x2)||_2`.

    `E` is the mean over the batch and `C_k(x) = E((x - E(x))^k)` the k-th
    central moment of each feature (MISA, Eq. 4, K = 5). As in MISA's code
    the features are not rescaled by the range of the activations (the
    `1/|b-a|^k` factors of the CMD paper): MISA's shared codes are sigmoid
    outputs, in (0, 1).

    Args:
        x1, x2: `[B, D]` samples of the two distributions (the batch axis is
            averaged; the batch sizes may differ).
        n_moments: K, the highest moment matched (>= 1).

    Returns:
        A float32 scalar.

    Example:

    >>> import numpy as np
    >>> x = np.array([[0.1, 0.5], [0.3, 0.9]], "float32")
    >>> round(float(central_moment_discrepancy(x, x)), 6)
    0.0
    """
    if int(n_moments) < 1:
        raise ValueError(f"central_moment_discrepancy: n_moments must be >= 1; got {n_moments}.")
    x1 = ops.cast(x1, "float32")
    x2 = ops.cast(x2, "float32")
    if len(x1.shape) != 2 or len(x2.shape) != 2:
        raise ValueError(
            f"central_moment_discrepancy expects [batch, dim] inputs; got shapes {tuple(x1.shape)} "
            f"and {tuple(x2.shape)}."
        )
    m1 = ops.mean(x1, axis=0)
    m2 = ops.mean(x2, axis=0)
    c1, c2 = x1 - m1, x2 - m2
    total = _safe_norm(m1 - m2)
    for k in range(2, int(n_moments) + 1):
        total = total + _safe_norm(ops.mean(c1**k, axis=0) - ops.mean(c2**k, axis=0))
    return total


@keras.saving.register_keras_serializable(package="keras_msa")
class CentralMomentDiscrepancy(keras.losses.Loss):
    """CMD between `y_true` and `y_pred` taken as two batches of features;
    see `central_moment_discrepancy`.

    Args:
        n_moments: K, the highest central moment matched (MISA: 5).
        name: the loss's name.

    Example:

    >>> import numpy as np
    >>> a = np.array([[0.0, 1.0], [1.0, 0.0]], "float32")
    >>> round(float(CentralMomentDiscrepancy(n_moments=2)(a, a + 1.0)), 4)
    1.4142
    """

    def __init__(self, n_moments=5, name="central_moment_discrepancy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_moments = int(n_moments)

    def call(self, y_true, y_pred):
        return central_moment_discrepancy(y_true, y_pred, self.n_moments)

    def get_config(self):
        return {**super().get_config(), "n_moments": self.n_moments}
