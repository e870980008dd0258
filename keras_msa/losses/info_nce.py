"""InfoNCE with in-batch negatives (seed 004, Eqs. 6 and 15)."""

import keras
from keras import ops

_REDUCTIONS = ("mean", "sum", "none")


def _check_embeddings(query, key):
    q_shape = tuple(query.shape)
    k_shape = tuple(key.shape)
    if len(q_shape) != 2 or len(k_shape) != 2:
        raise ValueError(
            "InfoNCE expects two embedding batches of rank 2 [batch, dim]; got "
            f"query shape {q_shape} and key shape {k_shape}."
        )
    for axis, what in ((0, "batch size"), (1, "embedding width")):
        a, b = q_shape[axis], k_shape[axis]
        if a is not None and b is not None and a != b:
            raise ValueError(
                f"InfoNCE: query and key must share the {what}; got query shape "
                f"{q_shape} and key shape {k_shape}."
            )


def _l2_normalize(x, epsilon=1e-12):
    # A zero vector (e.g. the embedding of an all-padding modality) stays
    # zero instead of becoming NaN.
    norm = ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), epsilon))
    return x / norm


def info_nce(
    query,
    key,
    temperature=0.1,
    symmetric=False,
    mask=None,
    normalize=True,
    reduction="mean",
):
    """Functional InfoNCE; see `InfoNCE` for the arguments.

    Returns a float32 scalar (`reduction="mean"|"sum"`) or per-sample losses
    `[B]` (`reduction="none"`, zero for samples outside `mask`).
    """
    if temperature <= 0:
        raise ValueError(f"InfoNCE: temperature must be > 0; got {temperature}.")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"InfoNCE: reduction must be one of {_REDUCTIONS}; got {reduction!r}.")
    query = ops.convert_to_tensor(query)
    key = ops.convert_to_tensor(key)
    _check_embeddings(query, key)
    # Similarities and log-sum-exp in float32: with temperature 0.1 the logits
    # reach +-10 and a float16 exp of the sum would overflow.
    query = ops.cast(query, "float32")
    key = ops.cast(key, "float32")
    if normalize:
        query = _l2_normalize(query)
        key = _l2_normalize(key)

    batch = ops.shape(query)[0]
    if mask is None:
        valid = ops.ones((batch,), dtype="bool")
    else:
        valid = ops.reshape(ops.cast(mask, "bool"), (-1,))
    valid_f = ops.cast(valid, "float32")

    logits = ops.matmul(query, ops.transpose(key)) / temperature  # [B, B]
    # A sample outside the mask is neither an anchor nor a negative: its
    # column is removed from every row's denominator.
    col_valid = ops.broadcast_to(valid[None, :], ops.shape(logits))
    eye = ops.cast(ops.eye(batch), "bool")

    def one_direction(scores):
        scores = ops.where(col_valid, scores, ops.full_like(scores, -1e9))
        positive = ops.sum(ops.where(eye, scores, ops.zeros_like(scores)), axis=1)
        per_sample = ops.logsumexp(scores, axis=1) - positive
        # Invalid rows (whose own positive column is masked) give exactly 0.
        return ops.where(valid, per_sample, ops.zeros_like(per_sample))

    per_sample = one_direction(logits)
    if symmetric:
        per_sample = 0.5 * (per_sample + one_direction(ops.transpose(logits)))

    if reduction == "none":
        return per_sample
    total = ops.sum(per_sample)
    if reduction == "sum":
        return total
    # A batch without a valid sample has no pair to contrast: loss 0, not 0/0.
    return total / ops.maximum(ops.sum(valid_f), 1.0)


@keras.saving.register_keras_serializable(package="keras_msa")
class InfoNCE:
    """InfoNCE contrastive loss with in-batch negatives.

    For a batch of query embeddings `q` `[B, D]` and key embeddings `k`
    `[B, D]` whose row `i` comes from the same sample, sample `i` is the
    positive of query `i` and the other samples of the batch are its
    negatives:

        L_i = -log( exp(s(q_i, k_i) / tau) / sum_j exp(s(q_i, k_j) / tau) )

    with `s` the cosine similarity (`normalize=True`) or the dot product.
    This is Eq. 6 of seed 004 (TeCaFN, the text-centred unimodal loss
    L_{t,m} with q = text, k = audio or vision) and its Eq. 15 (the bimodal
    loss between fused vectors). The seed writes the negatives' terms as
    `exp(q_j k_j / tau)`; we use the standard in-batch form `exp(q_i k_j / tau)`
    of the InfoNCE paper it cites ([40]), which is what "unmatched pairs are
    negatives" describes. Cosine similarity is the default because the seed's
    Algorithm 1 l2-normalises the embeddings and its temperature (0.1) is
    chosen for unit vectors.

    Masking: `mask` `[B]` (True = valid sample) removes a sample from the
    loss entirely: it is not an anchor, and it is not a negative for any
    other sample. A batch with no valid sample gives 0; one valid sample
    gives 0 (it has no negative).

    Args:
        temperature: scalar tau > 0 (default 0.1, seed 004).
        symmetric: if True, the mean of the query->key and key->query losses
            (as in CLIP); if False (default, the seed's "asymmetric,
            text-centred" loss), only query->key.
        normalize: l2-normalise both batches first (cosine similarity).
        reduction: `"mean"` over valid samples (default), `"sum"`, or
            `"none"` for the per-sample losses `[B]`.

    Call arguments:
        query: float `[B, D]`.
        key: float `[B, D]`.
        mask: optional boolean `[B]`.

    Returns:
        float32 scalar, or `[B]` with `reduction="none"`.

    Example:

    >>> import numpy as np
    >>> q = np.eye(3, dtype="float32")
    >>> loss = InfoNCE(temperature=0.1)
    >>> float(loss(q, q)) < 1e-3
    True
    >>> round(float(loss(np.ones((4, 2), "float32"), np.ones((4, 2), "float32"))), 4)  # log 4
    1.3863
    """

    def __init__(
        self,
        temperature=0.1,
        symmetric=False,
        normalize=True,
        reduction="mean",
        name="info_nce",
    ):
        if temperature <= 0:
            raise ValueError(f"InfoNCE: temperature must be > 0; got {temperature}.")
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"InfoNCE: reduction must be one of {_REDUCTIONS}; got {reduction!r}."
            )
        self.temperature = float(temperature)
        self.symmetric = bool(symmetric)
        self.normalize = bool(normalize)
        self.reduction = reduction
        self.name = name

    def __call__(self, query, key, mask=None):
        return info_nce(
            query,
            key,
            temperature=self.temperature,
            symmetric=self.symmetric,
            mask=mask,
            normalize=self.normalize,
            reduction=self.reduction,
        )

    def get_config(self):
        return {
            "temperature": self.temperature,
            "symmetric": self.symmetric,
            "normalize": self.normalize,
            "reduction": self.reduction,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
