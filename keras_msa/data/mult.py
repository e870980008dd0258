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
  emotion is present), as MulT's evaluation does. A pair must be (1, 0) or
  (0, 1): (1, 1) and (0, 0) say nothing (argmax would make them "absent") and
  are errors naming the example and the emotion.
* UR-FUNNY: one 0/1 value per example (any shape with N values) -> `humor`.

Valid lengths: MulT's arrays are zero-padded at the *front* (the utterance
ends at step L - 1). The reader finds, per example, the first step at which
any modality has a non-zero value and keeps the steps from there to the end,
for all three modalities (they share the aligned timeline, so a modality that
happens to be zero inside that span keeps its zeros). An example whose three
modalities are zero everywhere keeps length 0 (missing everywhere) and is
counted (repair `"all_zero_examples"`).

The dataset: an explicit name must be one of mosi, mosei, iemocap, urfunny;
otherwise the content decides ((N, 4, 2) labels are IEMOCAP; audio/vision
widths 5/20 are MOSI's, 74/35 MOSEI's), then the file's own name
(`mosei_senti_data.pkl`; directories do not count). A name that contradicts
the content is an error naming both; `meta["dataset_evidence"]` says how it
was decided.

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
from keras_msa.data.mmsa import check_unique
from keras_msa.data.mmsa import float_features
from keras_msa.data.mmsa import float_labels
from keras_msa.data.mmsa import id_strings
from keras_msa.data.mmsa import identify_dataset
from keras_msa.data.mmsa import load_pickle_splits
from keras_msa.data.mmsa import normalize_dataset

#: dataset -> (target, label range).
TARGETS = {
    "mosi": ("sentiment", (-3.0, 3.0)),
    "mosei": ("sentiment", (-3.0, 3.0)),
    "iemocap": ("emotions", (0.0, 1.0)),
    "urfunny": ("humor", (0.0, 1.0)),
}
#: Feature widths (text, audio, vision) of MulT's releases (GloVe text).
FEATURE_WIDTHS = {"mosi": (300, 5, 20), "mosei": (300, 74, 35)}
EMOTIONS = ("happy", "sad", "angry", "neutral")


def front_padded_lengths(*arrays):
    """Per example, L minus the number of leading steps where every array is
    all-zero (MulT pads at the front)."""
    n, steps = arrays[0].shape[:2]
    nonzero = np.zeros((n, steps), bool)
    for a in arrays:
        nonzero |= np.abs(a).reshape(n, steps, -1).max(axis=2) > 0
    first = np.argmax(nonzero, axis=1)
    return np.where(nonzero.any(axis=1), steps - first, 0).astype(np.int64)


def _is_empty(d):
    return all(np.ndim(d[k]) > 0 and len(d[k]) == 0 for k in ("text", "audio", "vision", "labels"))


def _check_pairs(labels, path, key):
    """Each IEMOCAP (not, is) pair is (1, 0) or (0, 1)."""
    bad = np.argwhere(labels.sum(axis=-1) != 1)
    if len(bad):
        i, e = (int(x) for x in bad[0])
        raise DataFormatError(
            f"example {i}, emotion '{EMOTIONS[e]}': (not, is) pair {labels[i, e].tolist()} says neither "
            f"present nor absent; expected [1, 0] or [0, 1] ({len(bad)} such pair(s))",
            path=path, key=key,
        )


def read_mult(path, dataset=None, max_allocation_factor=None, min_allocation_bytes=None):
    """Reads a MulT pickle; returns `(splits, meta)`.

    Args:
        path: the `.pkl` file.
        dataset: `"mosi"`, `"mosei"`, `"iemocap"` or `"urfunny"` (other names
            are refused); by default decided by the content, then the file's
            name (see the module doc).
        max_allocation_factor, min_allocation_bytes: the pickle's allocation
            cap (`keras_msa.data.safe_pickle`).

    Returns:
        `splits`: `{"train"|"valid"|"test": [example dict, ...]}` (an empty
        split is `[]`); `meta`: `{"dataset", "dataset_evidence", "sources",
        "repairs", "label_ranges"}`.
    """
    path = os.fspath(path)
    if dataset is not None:
        dataset = normalize_dataset(dataset, TARGETS)
    data = load_pickle_splits(path, ("text", "audio", "vision", "labels"),
                              max_allocation_factor=max_allocation_factor, min_allocation_bytes=min_allocation_bytes)
    empty = {split: _is_empty(data[split]) for split in SPLITS}
    ref = next((s for s in SPLITS if not empty[s]), None)
    if ref is None:
        raise DataFormatError("every split is empty: the file holds no examples", path=path)
    widths = tuple(as_array(data[ref][m], path, f"{ref}/{m}", ndim=3).shape[-1] for m in ("text", "audio", "vision"))
    labels_shape = np.shape(data[ref]["labels"])
    if tuple(labels_shape[1:]) == (4, 2):
        hints = [("iemocap", (), f"its labels are (N, 4, 2) emotion pairs (split {ref})")]
        known_widths = None
    else:
        hints = [(None, ("iemocap",), f"its labels have shape {list(labels_shape)}, not IEMOCAP's (N, 4, 2)")]
        known_widths = FEATURE_WIDTHS
    dataset, evidence = identify_dataset(path, dataset, TARGETS, widths=widths, known_widths=known_widths,
                                         content_hints=hints)
    target, rng = TARGETS[dataset]
    repairs = {}
    out = {}
    seen_ids = {}
    for split in SPLITS:
        d = data[split]
        key = lambda k: f"{split}/{k}"  # noqa: E731
        if empty[split]:
            out[split] = []
            continue
        text = as_array(d["text"], path, key("text"), ndim=3)
        audio = as_array(d["audio"], path, key("audio"), ndim=3)
        vision = as_array(d["vision"], path, key("vision"), ndim=3)
        labels = as_array(d["labels"], path, key("labels"))
        if labels.ndim == 0:
            raise DataFormatError(f"labels must be an array over the examples, got {labels!r}", path=path,
                                  key=key("labels"))
        arrays = {"text": text, "audio": audio, "vision": vision, "labels": labels}
        if "id" in d:
            arrays["id"] = as_array(d["id"], path, key("id"), ndim=(1, 2))
        n = check_count(arrays, path, split)
        steps = {m: a.shape[1] for m, a in (("text", text), ("audio", audio), ("vision", vision))}
        if len(set(steps.values())) > 1:
            raise DataFormatError(
                f"MulT data is word-aligned (one length for all modalities); got {steps}", path=path, key=split
            )
        for m, arr, w in (("text", text, widths[0]), ("audio", audio, widths[1]), ("vision", vision, widths[2])):
            if arr.shape[2] != w:
                raise DataFormatError(f"{m} width {arr.shape[2]} differs from split {ref}'s {w}",
                                      path=path, key=key(m))
        text = float_features(text, path, key("text"))
        audio = float_features(audio, path, key("audio"), repairs, "audio_neg_inf_to_zero")
        vision = float_features(vision, path, key("vision"))
        labels = float_labels(labels, path, key("labels"))
        if target == "emotions":
            if labels.shape[1:] != (4, 2):
                raise DataFormatError(
                    f"IEMOCAP labels must be (N, 4, 2) (happy, sad, angry, neutral) x (not, is); "
                    f"got {list(labels.shape)}", path=path, key=key("labels"),
                )
            check_range(labels.reshape(n, -1), rng, path, key("labels"))
            if not np.isin(labels, (0.0, 1.0)).all():
                raise DataFormatError("IEMOCAP label pairs must be 0/1", path=path, key=key("labels"))
            _check_pairs(labels, path, key("labels"))
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
        empty_examples = int((lengths == 0).sum())
        if empty_examples:
            repairs["all_zero_examples"] = repairs.get("all_zero_examples", 0) + empty_examples
        if "id" in d:
            ids = id_strings(arrays["id"], path, key("id"))
            check_unique(ids, path, key("id"), seen_ids)
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
        "dataset_evidence": evidence,
        "sources": [os.path.abspath(path)],
        "repairs": repairs,
        "label_ranges": {target: rng},
    }
    return out, meta
