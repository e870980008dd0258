"""Cosine ramp-up of regulariser weights over epochs (CrossSent, seed 001 Table 3)."""

import math

from keras import ops


def cosine_ramp_up(epoch, ramp_epochs):
    """Weight multiplier in [0, 1] that rises along half a cosine.

    `ramp(e) = 0.5 * (1 - cos(pi * min((e + 1) / ramp_epochs, 1)))` for the
    0-based epoch index `e`: the first epoch already trains with a small
    weight, epoch `ramp_epochs - 1` and later with the full weight. Seed 001
    activates its MPR and EIOI weights "via a cosine ramp-up over epochs"
    without giving the length; `ramp_epochs <= 0` disables the ramp (always 1).

    Works on Python numbers and on tensors (e.g. a model's `epoch` variable),
    returning float32.

    Example:

    >>> [round(float(cosine_ramp_up(e, 3)), 4) for e in range(4)]
    [0.25, 0.75, 1.0, 1.0]
    """
    epoch = ops.cast(epoch, "float32")
    if ramp_epochs is None or ramp_epochs <= 0:
        return ops.ones_like(epoch)
    progress = ops.minimum((epoch + 1.0) / float(ramp_epochs), 1.0)
    progress = ops.maximum(progress, 0.0)
    return 0.5 * (1.0 - ops.cos(math.pi * progress))
