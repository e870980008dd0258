import keras
from keras import ops


def concordance_correlation_loss(y_true, y_pred, epsilon=1e-8):
    """``1 - CCC`` between flattened targets and predictions (float32 scalar).

    Lin's concordance correlation coefficient, the AVEC 2019 DDS measure that
    seed 000 (SSGDL) trains its depression head on (docs/architectures.md, SSGDL):

        CCC = 2 cov(y, p) / (var(y) + var(p) + (mean(y) - mean(p))^2)

    with population (1/N) moments over the batch. `epsilon` in the
    denominator keeps degenerate batches finite: when targets and predictions
    are both constant and equal (denominator 0) CCC is taken as 0 and the loss
    is 1. A single-sample batch has zero covariance, so its loss is 1 too.
    """
    y = ops.cast(ops.reshape(y_true, (-1,)), "float32")
    p = ops.cast(ops.reshape(y_pred, (-1,)), "float32")
    my, mp = ops.mean(y), ops.mean(p)
    dy, dp = y - my, p - mp
    cov = ops.mean(dy * dp)
    denom = ops.mean(dy * dy) + ops.mean(dp * dp) + ops.square(my - mp)
    return 1.0 - 2.0 * cov / (denom + epsilon)


@keras.saving.register_keras_serializable(package="keras_msa")
class ConcordanceCorrelationLoss(keras.losses.Loss):
    """``1 - CCC`` as a Keras loss (see `concordance_correlation_loss`).

    The loss is a batch statistic, not a mean of per-sample terms, so
    `sample_weight` is not supported.

    Args:
        epsilon: added to the CCC denominator.
        **kwargs: `keras.losses.Loss` arguments.

    Example:

    >>> import numpy as np
    >>> loss = ConcordanceCorrelationLoss()
    >>> round(float(loss(np.array([1., 2., 3.]), np.array([1., 2., 3.]))), 6)
    0.0
    """

    def __init__(self, epsilon=1e-8, name="concordance_correlation_loss", **kwargs):
        super().__init__(name=name, reduction="none", **kwargs)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        return concordance_correlation_loss(y_true, y_pred, self.epsilon)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("ConcordanceCorrelationLoss is a batch statistic; sample_weight is not supported.")
        return self.call(y_true, y_pred)

    def get_config(self):
        return {"name": self.name, "epsilon": self.epsilon}
