import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_msa")
class ReplacementGate(keras.layers.Layer):
    """Replaces a sample's sequence by one of its hard negatives with probability p.

    Implements the replacement gate of seed 004 (TeCaFN), Section 3.2.3 and
    Table 2: during training, each sample's sequence of modality m (and its
    padding mask) is, with probability `probability`, swapped for the
    sequence of another sample drawn uniformly among its valid candidates
    (the hard negatives of `HardNegativeMiner`); otherwise it is kept. The
    gate emits the pair target of Eq. 14: 1 when the pair is the original
    (kept), 0 when it was replaced. One gate per modality, each with its own
    random stream, gives Table 2's independent audio/vision replacement
    (probabilities (1-p)^2, p(1-p), p(1-p), p^2).

    A sample without any valid candidate (`candidate_mask` all False, e.g. a
    batch of one) is never replaced. At inference (`training=False`) the gate
    is the identity and every pair target is 1.

    Randomness comes from a `keras.random.SeedGenerator`: the draws are
    reproducible for a given `seed` and the layer runs inside `tf.function`
    and XLA (stateless random ops on a seed variable).

    Args:
        probability: replacement probability p (seed 004 Table 6: 0.7 for
            CMU-MOSI, 0.4 for CMU-MOSEI).
        seed: seed of the gate's random stream (None: from the global seed).
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float `[B, T, D]` sequences of modality m.
        sequence_mask: boolean `[B, T]` padding mask of `inputs` (None: all
            real).
        candidates: int `[B, num]` candidate sample indices per sample.
        candidate_mask: boolean `[B, num]`, which candidates are usable
            (None: all).
        training: the gate only acts when True.

    Returns:
        `(outputs, output_mask, pair_target, source_index)`: the gated
        sequences `[B, T, D]`, their mask `[B, T]`, int32 pair targets `[B]`
        (1 kept, 0 replaced) and the int32 index `[B]` of the sample each
        row was taken from.

    Example:

    >>> import numpy as np
    >>> x = np.arange(4, dtype="float32").reshape(4, 1, 1)
    >>> cand = np.array([[1], [0], [3], [2]])
    >>> gate = ReplacementGate(probability=1.0, seed=0)
    >>> out, out_mask, target, source = gate(x, None, cand, training=True)
    >>> np.asarray(source).tolist(), np.asarray(target).tolist()
    ([1, 0, 3, 2], [0, 0, 0, 0])
    """

    def __init__(self, probability=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(probability) <= 1.0:
            raise ValueError(
                f"ReplacementGate: probability must be in [0, 1]; got {probability}."
            )
        self.probability = float(probability)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, sequence_mask=None, candidates=None, candidate_mask=None, training=False):
        batch = ops.shape(inputs)[0]
        if sequence_mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        else:
            mask = ops.cast(sequence_mask, "bool")
        identity = ops.arange(batch, dtype="int32")
        if not training or candidates is None or self.probability == 0.0:
            return inputs, mask, ops.ones((batch,), dtype="int32"), identity
        if len(candidates.shape) != 2:
            raise ValueError(
                "ReplacementGate expects candidates [batch, num]; got shape "
                f"{tuple(candidates.shape)}."
            )
        candidates = ops.cast(candidates, "int32")
        if candidate_mask is None:
            candidate_mask = ops.ones_like(candidates) > 0
        candidate_mask = ops.cast(candidate_mask, "bool")

        draws = keras.random.uniform(
            ops.stack([2, batch]), dtype="float32", seed=self.seed_generator
        )
        n_valid = ops.sum(ops.cast(candidate_mask, "int32"), axis=1)
        replace = ops.logical_and(draws[0] < self.probability, n_valid > 0)
        # Uniform choice among the valid candidates, wherever they sit in the
        # row: pick the k-th True entry with k = floor(u * n_valid).
        k = ops.cast(ops.floor(draws[1] * ops.cast(n_valid, "float32")), "int32")
        k = ops.minimum(k, ops.maximum(n_valid - 1, 0))
        rank = ops.cumsum(ops.cast(candidate_mask, "int32"), axis=1) - 1
        chosen_slot = ops.logical_and(candidate_mask, rank == k[:, None])
        chosen = ops.sum(ops.where(chosen_slot, candidates, ops.zeros_like(candidates)), axis=1)
        source = ops.where(replace, chosen, identity)

        outputs = ops.take(inputs, source, axis=0)
        output_mask = ops.take(mask, source, axis=0)
        pair_target = ops.cast(ops.logical_not(replace), "int32")
        return outputs, output_mask, pair_target, source

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return input_shape, tuple(input_shape[:2]), (input_shape[0],), (input_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update({"probability": self.probability, "seed": self.seed})
        return config
