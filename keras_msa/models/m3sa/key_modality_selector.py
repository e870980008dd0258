"""The callback that fixes the key modality of an `M3SA(key_modality="auto")`."""

import keras
import numpy as np

from keras_msa.models.base import MODALITIES


def pearson(a, b):
    """Pearson correlation of two flat arrays (0 when either is constant)."""
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def rank_unimodal_heads(model, dataset):
    """Scores each unimodal head of `model` on `dataset` `(inputs, targets)`.

    Returns `{modality: {"corr": .., "mae": ..}}` against the overall
    `sentiment` target: the paper picks the modality whose unimodal
    prediction is most accurate (seed 003, Sec. III-B).
    """
    preds = {m: [] for m in MODALITIES}
    truth = []
    for batch in dataset:
        inputs, targets = batch[0], batch[1]
        out = model(inputs, training=False)
        for m in MODALITIES:
            preds[m].append(np.asarray(out[f"sentiment_{m}"], np.float64).reshape(-1))
        truth.append(np.asarray(targets["sentiment"], np.float64).reshape(-1))
    if not truth:
        raise ValueError("Key-modality selection got an empty validation dataset.")
    y = np.concatenate(truth)
    scores = {}
    for m in MODALITIES:
        p = np.concatenate(preds[m])
        scores[m] = {"corr": pearson(p, y), "mae": float(np.abs(p - y).mean())}
    return scores


class KeyModalitySelector(keras.callbacks.Callback):
    """Fixes the key modality after a warm-up (seed 003, Sec. III-B).

    At the end of epoch `warmup_epochs` (1-based) it scores every unimodal
    head on `validation_data` by the Pearson correlation of its prediction
    with the overall sentiment (ties: modality order text, audio, vision),
    calls `model.select_key_modality` with the best one, and prints the
    scores. The choice is stored in the model's config
    (`selected_key_modality`, `key_selection_scores`).

    Args:
        validation_data: `tf.data.Dataset` of `(inputs, targets)`.
        warmup_epochs: epochs to train before choosing (>= 1).
        verbose: print the choice.
    """

    def __init__(self, validation_data, warmup_epochs=5, verbose=True):
        super().__init__()
        if int(warmup_epochs) < 1:
            raise ValueError(f"warmup_epochs must be >= 1; got {warmup_epochs}.")
        self.validation_data = validation_data
        self.warmup_epochs = int(warmup_epochs)
        self.verbose = verbose
        self.scores = None
        self.chosen = None

    def on_epoch_end(self, epoch, logs=None):
        if self.chosen is not None or epoch + 1 < self.warmup_epochs:
            return
        if getattr(self.model, "selected_key_modality", None) is not None:
            return
        scores = rank_unimodal_heads(self.model, self.validation_data)
        best = max(MODALITIES, key=lambda m: (scores[m]["corr"], -MODALITIES.index(m)))
        self.scores = scores
        self.chosen = best
        self.model.select_key_modality(best, {m: s["corr"] for m, s in scores.items()})
        if self.verbose:
            shown = ", ".join(f"{m}: corr={s['corr']:.4f} mae={s['mae']:.4f}" for m, s in scores.items())
            print(f"\nM3SA key modality after epoch {epoch + 1}: '{best}' ({shown})")
