import keras
from keras import ops

# Scores given to excluded candidates (the sample itself, masked samples) and
# to the padding columns that let `num` exceed the batch size. Both sit far
# below any cosine similarity (>= -1) or uniform draw (>= 0).
_EXCLUDED = -1e9
_PADDING = -2e9


@keras.saving.register_keras_serializable(package="keras_msa")
class HardNegativeMiner(keras.layers.Layer):
    """Top-`num` most similar *other* samples of a batch (hard negatives).

    Implements seed 004 (TeCaFN) Eq. 7 and Algorithm 1: with text embeddings
    `q` `[B, D]` and embeddings `k` `[B, D]` of another modality m, the
    cosine-similarity matrix `S[i, j] = q_i . k_j / (|q_i| |k_j|)` ranks, for
    each text sample i, the m-samples of the batch; the `num` highest-scoring
    samples `j != i` are the hard negatives of sample i (Algorithm 1's
    `argsort(S)[:, -num:]`, returned here best first and with the sample
    itself excluded, as its Section 3.2.2 says the hard negatives "are not the
    correct corresponding matches").

    The similarities are not differentiated: mining only selects indices
    (the embeddings are trained by the InfoNCE loss of Eq. 6 instead).

    `strategy="random"` draws the candidates uniformly instead (scores are
    i.i.d. uniform noise, so the top-`num` set is a uniform random set of
    distinct other samples): the "w/o Hardneg" rows of the seed's Table 5.

    Masking: `sample_mask` `[B]` (True = the sample's modality m has at least one
    real step) marks which samples may be chosen as candidates. When fewer
    than `num` valid other samples exist (small last batch, masked samples)
    the trailing entries of `candidate_mask` are False and their indices point
    at the sample itself, so a gather stays in range. Ties are broken by the
    lower index (`top_k`'s order).

    Args:
        num: number of hard negatives per sample (seed 004 Table 7: 3).
        strategy: `"hard"` (cosine similarity, default) or `"random"`.
        seed: seed of the random strategy (None: from the global seed).
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        query: float `[B, D]` (text embeddings).
        key: float `[B, D]` (embeddings of modality m).
        sample_mask: optional boolean `[B]`, samples allowed as candidates.

    Returns:
        `(candidates, candidate_mask)`: int32 `[B, num]` sample indices
        (most similar first) and boolean `[B, num]`.

    Example:

    >>> import numpy as np
    >>> q = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], "float32")
    >>> idx, ok = HardNegativeMiner(num=1)(q, q)
    >>> np.asarray(idx)[:, 0].tolist()
    [1, 0, 3, 2]
    """

    def __init__(self, num=3, strategy="hard", seed=None, **kwargs):
        super().__init__(**kwargs)
        if int(num) < 1:
            raise ValueError(f"HardNegativeMiner: num must be >= 1; got {num}.")
        if strategy not in ("hard", "random"):
            raise ValueError(
                f"HardNegativeMiner: strategy must be 'hard' or 'random'; got {strategy!r}."
            )
        self.num = int(num)
        self.strategy = strategy
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if strategy == "random" else None

    def similarity(self, query, key):
        """The cosine-similarity matrix S `[B, B]` of Eq. 7 (float32)."""
        query = ops.cast(query, "float32")
        key = ops.cast(key, "float32")
        qn = query / ops.sqrt(ops.maximum(ops.sum(ops.square(query), -1, keepdims=True), 1e-12))
        kn = key / ops.sqrt(ops.maximum(ops.sum(ops.square(key), -1, keepdims=True), 1e-12))
        return ops.matmul(qn, ops.transpose(kn))

    def call(self, query, key, sample_mask=None):
        if len(query.shape) != 2 or len(key.shape) != 2:
            raise ValueError(
                "HardNegativeMiner expects query and key embeddings [batch, dim]; got "
                f"shapes {tuple(query.shape)} and {tuple(key.shape)}."
            )
        batch = ops.shape(query)[0]
        if self.strategy == "hard":
            scores = ops.stop_gradient(self.similarity(query, key))
        else:
            scores = keras.random.uniform(
                ops.stack([batch, batch]), dtype="float32", seed=self.seed_generator
            )
        allowed = ops.logical_not(ops.cast(ops.eye(batch), "bool"))
        if sample_mask is not None:
            sample_mask = ops.reshape(ops.cast(sample_mask, "bool"), (1, -1))
            allowed = ops.logical_and(allowed, sample_mask)
        scores = ops.where(allowed, scores, ops.full_like(scores, _EXCLUDED))
        # Padding columns make top_k legal when num >= batch size.
        pad = ops.full(ops.stack([batch, self.num]), _PADDING, dtype="float32")
        values, indices = ops.top_k(ops.concatenate([scores, pad], axis=1), k=self.num)
        candidate_mask = values > 0.5 * _EXCLUDED
        self_index = ops.arange(batch, dtype="int32")[:, None]
        indices = ops.where(candidate_mask, ops.cast(indices, "int32"), self_index)
        return indices, candidate_mask

    def compute_output_shape(self, query_shape, key_shape=None, sample_mask_shape=None):
        return (query_shape[0], self.num), (query_shape[0], self.num)

    def get_config(self):
        config = super().get_config()
        config.update({"num": self.num, "strategy": self.strategy, "seed": self.seed})
        return config
