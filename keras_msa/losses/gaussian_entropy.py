"""MMIM's Gaussian entropy estimate with a memory of past batches (Han et
al., EMNLP 2021, Sec. 3.3 Eq. 8; MMSA's `MMILB.forward` with `mem`).

The entropy of a modality's (projected) representation is estimated per
sentiment class, positive (label > 0) and negative (label < 0), from the
covariance of that class's rows over the current batch and the last
`mem_size` batches (held fixed):

    H = 1/4 (log det Sigma_pos + log det Sigma_neg)

(half the Gaussian entropies 1/2 log det(2 pi e Sigma) averaged over the two
classes, constants left out, as MMSA). Sigma is the biased covariance
mean_i (z_i - mu)(z_i - mu)^T of the class rows.

The memory holds each past batch as its moments (row count, sum of rows,
sum of outer products), which is all the covariance of the concatenation
needs:

    Sigma = (sum_outer) / n - mu mu^T,  mu = (sum_rows) / n,

summed over the memory and the batch, so it has a fixed size whatever the
batch size.
"""

from keras import ops


def moment_statistics(z, mask):
    """`(count [], total [e], outer [e, e])` of the rows of `z` `[B, e]`
    where `mask` `[B]` is True (rows outside it, NaN included, are selected
    away)."""
    mask = ops.cast(mask, "bool")
    z = ops.where(mask[:, None], z, ops.zeros_like(z))
    count = ops.sum(ops.cast(mask, z.dtype))
    return count, ops.sum(z, axis=0), ops.matmul(ops.transpose(z), z)


#: Sigma counts as singular when its smallest eigenvalue is below this share
#: of its largest: float32's Cholesky (inside `logdet`) fails about there.
_CONDITION = 1e-6


def log_det_covariance(count, total, outer):
    """`(log det Sigma, valid)` from summed moments. `valid` is False when
    Sigma is singular (MMSA's log det would then be -inf and its loss NaN):
    fewer than e + 1 rows, or rows that do not span the space (e.g. the same
    row repeated: the constant representation of a modality missing from
    every sample). The log det is 0 there, with a finite (zero) gradient:
    the singular Sigma never reaches `logdet`, whose gradient through an
    unselected `where` branch would otherwise be NaN."""
    e = ops.shape(total)[-1]
    enough = count >= ops.cast(e + 1, count.dtype)
    n = ops.maximum(count, 1.0)
    mu = total / n
    sigma = outer / n - mu[:, None] * mu[None, :]
    eye = ops.eye(e, dtype=sigma.dtype)
    # Whether Sigma is positive definite is a decision, not a function to
    # differentiate: read from its eigenvalues with the gradient stopped.
    eigenvalues = ops.eigh(ops.stop_gradient(ops.where(enough, sigma, eye)))[0]
    largest = ops.max(eigenvalues)
    definite = ops.logical_and(largest > 0, ops.min(eigenvalues) > _CONDITION * largest)
    valid = ops.logical_and(enough, definite)
    sigma = ops.where(valid, sigma, eye)
    return ops.where(valid, ops.logdet(sigma), ops.zeros_like(count)), valid


def class_entropy(pos, neg):
    """H = 1/4 (log det Sigma_pos + log det Sigma_neg) from the summed
    moments `(count, total, outer)` of each class; 0 unless both
    covariances are full rank."""
    ld_pos, ok_pos = log_det_covariance(*pos)
    ld_neg, ok_neg = log_det_covariance(*neg)
    ok = ops.logical_and(ok_pos, ok_neg)
    return ops.where(ok, 0.25 * (ld_pos + ld_neg), ops.zeros_like(ld_pos))
