"""Monotonic Pairwise Ranking regularisation (CrossSent, seed 001, Sec. 3.3)."""

import keras
from keras import ops


def _flat_float32(x):
    return ops.reshape(ops.cast(ops.convert_to_tensor(x), "float32"), (-1,))


def monotonic_pairwise_ranking(
    y_true, y_pred, alpha=0.30, beta=1.0, min_gap=0.30, max_pairs=8192, seed=None
):
    """Functional MPR; see `MonotonicPairwiseRanking` for the arguments.

    Returns a float32 scalar: the mean hinge over the admitted pairs, 0 when
    the batch holds no pair whose labels differ by at least `min_gap`.
    """
    if alpha <= 0:
        raise ValueError(f"MonotonicPairwiseRanking: alpha must be > 0; got {alpha}.")
    if beta < 1:
        raise ValueError(f"MonotonicPairwiseRanking: beta must be >= 1 (seed 001, Eq. 12); got {beta}.")
    if min_gap < 0:
        raise ValueError(f"MonotonicPairwiseRanking: min_gap must be >= 0; got {min_gap}.")
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"MonotonicPairwiseRanking: max_pairs must be >= 1 or None; got {max_pairs}.")
    y = _flat_float32(y_true)
    p = _flat_float32(y_pred)
    if y.shape[0] is not None and p.shape[0] is not None and y.shape[0] != p.shape[0]:
        raise ValueError(
            "MonotonicPairwiseRanking: y_true and y_pred hold different numbers of "
            f"samples ({y.shape[0]} vs {p.shape[0]})."
        )
    n = ops.shape(y)[0]
    dy = y[:, None] - y[None, :]  # [B, B], dy[i, j] = y_i - y_j
    dp = p[:, None] - p[None, :]
    gap = ops.abs(dy)
    # Every term is symmetric in (i, j), so the mean over the ordered pairs of
    # Eq. 9 equals the mean over the unordered pairs i < j used here; counting
    # each pair once keeps `max_pairs` a count of distinct pairs.
    rows = ops.arange(n)[:, None]
    cols = ops.arange(n)[None, :]
    upper = rows < cols
    admitted = ops.logical_and(upper, gap >= min_gap)
    margin = alpha * ops.power(gap, beta)  # Eq. 12
    hinge = ops.relu(margin - ops.sign(dy) * dp)  # Eq. 10, one term per pair
    keep = ops.cast(admitted, "float32")
    static_n = y.shape[0]
    may_exceed = max_pairs is not None and (
        static_n is None or static_n * (static_n - 1) // 2 > max_pairs
    )
    if may_exceed:
        # A uniformly random subset of at most `max_pairs` admitted pairs:
        # rank admitted pairs by a random key and keep the smallest keys.
        keys = keras.random.uniform(ops.shape(hinge), seed=seed)
        keys = ops.where(admitted, keys, ops.full_like(keys, 2.0))
        flat = ops.reshape(keys, (-1,))
        k = ops.minimum(ops.cast(max_pairs, "int32"), ops.cast(ops.size(flat), "int32"))
        sorted_keys = ops.sort(flat)
        threshold = ops.take(sorted_keys, k - 1)
        keep = keep * ops.cast(keys <= threshold, "float32")
    count = ops.sum(keep)
    total = ops.sum(hinge * keep)
    return total / ops.maximum(count, 1.0)


@keras.saving.register_keras_serializable(package="keras_msa")
class MonotonicPairwiseRanking(keras.losses.Loss):
    """Monotonic Pairwise Ranking (MPR) loss of CrossSent (seed 001, Sec. 3.3).

    For a batch of labels `y` and predictions `ŷ`, the pair set (Eq. 9) holds
    the pairs whose labels differ by at least `min_gap` (γ); each pair must be
    ordered like its labels with an adaptive margin (Eqs. 10-12):

        m(|y_i - y_j|) = alpha * |y_i - y_j| ** beta
        L_MPR = mean over P of max(0, m - sgn(y_i - y_j) (ŷ_i - ŷ_j))

    A batch with no admitted pair gives 0 (not NaN). When more than
    `max_pairs` pairs are admitted a uniformly random subset of `max_pairs`
    of them is used. The loss is a batch-level quantity, so Keras' reduction
    sees a scalar and leaves it unchanged; it is computed in float32.

    (Equation numbers follow the order of the displayed equations in seed 001;
    its text dump drops the numbers: Eq. 9 pair set, Eq. 10 loss, Eq. 11 sign,
    Eq. 12 margin.)

    Args:
        alpha: margin scale α (seed 001 Table 3: 0.30).
        beta: margin exponent β ≥ 1 (Table 3 "pow_gap": 1.0).
        min_gap: γ, the smallest label gap that forms a pair (Table 3: 0.30).
        max_pairs: most pairs used per batch (Table 3: 8192); None = all.
        seed: seed of the pair subsampling (only used above `max_pairs`).
            The functional form takes an int or a `keras.random.SeedGenerator`;
            inside compiled functions pass a generator.
        name, reduction, dtype: as in `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> loss = MonotonicPairwiseRanking()
    >>> y = np.array([[-2.0], [0.0], [1.5]], "float32")
    >>> round(float(loss(y, y * 0.0)), 4)  # predictions tied: the mean margin
    0.7
    """

    def __init__(
        self,
        alpha=0.30,
        beta=1.0,
        min_gap=0.30,
        max_pairs=8192,
        seed=None,
        name="monotonic_pairwise_ranking",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha = alpha
        self.beta = beta
        self.min_gap = min_gap
        self.max_pairs = max_pairs
        self.seed = seed
        # Owned here (created eagerly) so that subsampling inside a compiled
        # train step draws fresh pairs each step.
        self._seed_generator = keras.random.SeedGenerator(seed)

    def call(self, y_true, y_pred):
        return monotonic_pairwise_ranking(
            y_true,
            y_pred,
            alpha=self.alpha,
            beta=self.beta,
            min_gap=self.min_gap,
            max_pairs=self.max_pairs,
            seed=self._seed_generator,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "beta": self.beta,
                "min_gap": self.min_gap,
                "max_pairs": self.max_pairs,
                "seed": self.seed,
            }
        )
        return config
