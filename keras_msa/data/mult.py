"""Reader for MulT pickles (`mosi_data.pkl`, `mosei_senti_data.pkl`,
`iemocap_data.pkl`, and UR-FUNNY pickles in the same layout).

Layout (as MulT's `Multimodal_Datasets` reads it): a dict `{train, valid,
test}`, each a dict of arrays over the split's N examples: `text` (N, L, Dt),
`audio` (N, L, Da), `vision` (N, L, Dv) (word-aligned, one shared L, e.g. 50),
`labels` and, usually, `id`.

Labels:

* MOSI / MOSEI: (N, 1, 1) sentiment in [-3, 3] -> `sentiment`.
* IEMOCAP: (N, 4, 2), one (not, is) pair per emotion in the order happy, sad,
  angry, neutral -> `emotions` [4] = argmax over the last axis (1 = the
  emotion is present), as MulT's evaluation does. Pairs must be 0/1.
* UR-FUNNY: one 0/1 value per example (any shape with N values) -> `humor`.

Valid lengths: MulT's arrays are zero-padded at the *front* (the utterance
ends at step L - 1). The reader finds, per example, the first step at which
any modality has a non-zero value and keeps the steps from there to the end,
for all three modalities (they share the aligned timeline, so a modality that
happens to be zero inside that span keeps its zeros). An example whose three
modalities are zero everywhere keeps length 0 (missing everywhere) and is
counted (repair `"all_zero_examples"`).

Repairs (counted, reported in the schema): `-inf` in `audio` set to 0, as
MulT does (`"audio_neg_inf_to_zero"`); ids generated as `<split>_<index>`
where a split has no `id` (`"ids_generated"`). Any other NaN/inf, labels out
of range, arrays that disagree on N: errors.

The file is loaded with `keras_msa.data.safe_pickle` (no code runs).
"""

import os

import numpy as np

from keras_msa.data.errors import DataFormatError
from keras_msa.data.mmsa import SPLITS
from keras_msa.data.mmsa import as_array
from keras_msa.data.mmsa import check_count
from keras_msa.data.mmsa import check_range
from keras_msa.data.mmsa import float_features
from keras_msa.data.mmsa import guess_dataset
from keras_msa.data.mmsa import id_strings
from keras_msa.data.mmsa import load_pickle_splits

_AUDIO_DIMS = {5: "mosi", 74: "mosei"}


def _label_kind(dataset, labels_shape):
    if dataset == "iemocap" or (dataset is None and labels_shape[1:] == (4, 2)):
        return "iemocap"
    if dataset == "urfunny":
        return "urfunny"
    return dataset or "mult"


def front_padded_lengths(*arrays):
    """Per example, L minus the number of leading steps where every array is
    all-zero (MulT pads at the front)."""
    n, steps = arrays[0].shape[:2]
    nonzero = np.zeros((n, steps), bool)
    for a in arrays:
        nonzero |= np.abs(a).reshape(n, steps, -1).max(axis=2) > 0
    first = np.argmax(nonzero, axis=1)
    return np.where(nonzero.any(axis=1), steps - first, 0).astype(np.int64)


def read_mult(path, dataset=None):
    """Reads a MulT pickle; returns `(splits, meta)`.

    Args:
        path: the `.pkl` file.
        dataset: `"mosi"`, `"mosei"`, `"iemocap"` or `"urfunny"`; by default
            guessed from the path, then from the label shape ((N, 4, 2) is
            IEMOCAP) and the audio width (5: MOSI, 74: MOSEI).

    Returns:
        `splits`: `{"train"|"valid"|"test": [example dict, ...]}`; `meta`:
        `{"dataset", "sources", "repairs", "label_ranges"}`.
    """
    path = os.fspath(path)
    data = load_pickle_splits(path, ("text", "audio", "vision", "labels"))
    if dataset is None:
        dataset = guess_dataset(path, names=("iemocap", "urfunny", "mosei", "mosi"))
    dataset = dataset.lower().replace("-", "").replace("_", "") if dataset else None
    labels_shape = np.shape(data["train"]["labels"])
    kind = _label_kind(dataset, labels_shape)
    if dataset is None:
        if kind == "iemocap":
            dataset = "iemocap"
        else:
            shape = np.shape(data["train"]["audio"])
            dataset = _AUDIO_DIMS.get(shape[-1] if len(shape) == 3 else None, "mult")
            kind = dataset
    if kind == "iemocap":
        target, rng = "emotions", (0.0, 1.0)
    elif kind == "urfunny":
        target, rng = "humor", (0.0, 1.0)
    else:
        target, rng = "sentiment", (-3.0, 3.0)
    repairs = {}
    out = {}
    for split in SPLITS:
        d = data[split]
        key = lambda k: f"{split}/{k}"  # noqa: E731
        text = as_array(d["text"], path, key("text"), ndim=3)
        audio = as_array(d["audio"], path, key("audio"), ndim=3)
        vision = as_array(d["vision"], path, key("vision"), ndim=3)
        labels = as_array(d["labels"], path, key("labels"))
        arrays = {"text": text, "audio": audio, "vision": vision, "labels": labels}
        if "id" in d:
            arrays["id"] = np.asarray(d["id"])
        n = check_count(arrays, path, split)
        steps = {m: a.shape[1] for m, a in (("text", text), ("audio", audio), ("vision", vision))}
        if len(set(steps.values())) > 1:
            raise DataFormatError(
                f"MulT data is word-aligned (one length for all modalities); got {steps}", path=path, key=split
            )
        text = float_features(text, path, key("text"))
        audio = float_features(audio, path, key("audio"), repairs, "audio_neg_inf_to_zero")
        vision = float_features(vision, path, key("vision"))
        if not np.issubdtype(labels.dtype, np.number):
            raise DataFormatError(f"labels must be numbers, got dtype {labels.dtype}", path=path, key=key("labels"))
        labels = labels.astype(np.float32)
        if not np.isfinite(labels).all():
            i = int(np.argwhere(~np.isfinite(labels))[0][0])
            raise DataFormatError(f"non-finite label at example {i}", path=path, key=key("labels"))
        if target == "emotions":
            if labels.shape[1:] != (4, 2):
                raise DataFormatError(
                    f"IEMOCAP labels must be (N, 4, 2) (happy, sad, angry, neutral) x (not, is); "
                    f"got {list(labels.shape)}", path=path, key=key("labels"),
                )
            check_range(labels.reshape(n, -1), rng, path, key("labels"))
            if not np.isin(labels, (0.0, 1.0)).all():
                raise DataFormatError("IEMOCAP label pairs must be 0/1", path=path, key=key("labels"))
            values = np.argmax(labels, axis=-1).astype(np.float32)
        else:
            if labels.size != n:
                raise DataFormatError(
                    f"expected one {target} label per example, got shape {list(labels.shape)}",
                    path=path, key=key("labels"),
                )
            values = labels.reshape(n)
            check_range(values, rng, path, key("labels"))
            if target == "humor" and not np.isin(values, (0.0, 1.0)).all():
                raise DataFormatError("humor labels must be 0 or 1", path=path, key=key("labels"))
        lengths = front_padded_lengths(text, audio, vision)
        empty = int((lengths == 0).sum())
        if empty:
            repairs["all_zero_examples"] = repairs.get("all_zero_examples", 0) + empty
        if "id" in d:
            ids = id_strings(d["id"], path, key("id"))
        else:
            ids = [f"{split}_{i:06d}" for i in range(n)]
            repairs["ids_generated"] = repairs.get("ids_generated", 0) + n
        total = text.shape[1]
        examples = []
        for i in range(n):
            start = total - lengths[i]
            examples.append(
                {
                    "id": ids[i],
                    "text": text[i, start:],
                    "audio": audio[i, start:],
                    "vision": vision[i, start:],
                    target: values[i] if target == "emotions" else np.float32(values[i]),
                }
            )
        out[split] = examples
    meta = {
        "dataset": dataset,
        "sources": [os.path.abspath(path)],
        "repairs": repairs,
        "label_ranges": {target: rng},
    }
    return out, meta
