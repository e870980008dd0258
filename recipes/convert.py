"""Convert a dataset you already have into keras_msa's TFRecord + schema form.

    python recipes/convert.py --format=mmsa --input=MOSI/Processed/aligned_50.pkl \
        --output=data/mosi_aligned_50 --dataset=mosi
    python recipes/convert.py --format=mult --input=iemocap_data.pkl --output=data/iemocap
    python recipes/convert.py --format=csd --input=cmu_mosi/ --output=data/mosi_words

Formats: `mmsa` (MMSA pickles), `mult` (MulT pickles), `csd` (CMU-MultimodalSDK
computational sequences), `avec` (AVEC 2019 DDS), `labelcsv` (MMSA-FET
`label.csv` + per-clip arrays). Pickles are loaded with a restricted
unpickler: a file that would run code is refused.

The output is written atomically (into a temporary directory renamed at the
end): an error or Ctrl-C leaves nothing at `--output`, and the next run on the
same output deletes what a killed one left (`.<output>.tmp-*`, reported). An
existing non-empty `--output` is refused unless `--overwrite`; with it, the old
directory is renamed aside and deleted only once the new one is in place. An
`--output` that is, contains or lies inside the input (or any source file the
reader names) is always refused: replacing it would delete the input. A second
conversion into an output being written fails at once. An empty train or valid
split is refused (`--allow_empty_splits` to write evaluation-only data). The summary (split sizes, repairs
the reader made) is printed at the end and stored in `<output>/schema.json`
with sha256 checksums of the source files. Then train on it:

    python recipes/train.py --model=lfdnn --data=data/mosi_aligned_50
"""

import importlib
import inspect
import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_msa.data import DATA_PLACE  # noqa: E402  (light: no TensorFlow)

#: format -> (module, reader function). Imported only when used, so formats
#: whose reader is absent or broken do not stop the others.
READERS = {
    "mmsa": ("keras_msa.data.mmsa", "read_mmsa"),
    "mult": ("keras_msa.data.mult", "read_mult"),
    "csd": ("keras_msa.data.csd", "read_csd"),
    "avec": ("keras_msa.data.avec", "read_avec"),
    "labelcsv": ("keras_msa.data.labelcsv", "read_labelcsv"),
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", None, sorted(READERS), "Input format.")
flags.DEFINE_string("input", None, "Input file or directory.")
flags.DEFINE_string("output", None, "Output directory (TFRecord shards + schema.json), by convention "
                    f"{DATA_PLACE} (e.g. data/mosi_unaligned); never the repository's datasets/ cards folder.")
flags.DEFINE_string("dataset", None, "Dataset name (mosi, mosei, sims, simsv2, iemocap, urfunny, ...); "
                    "guessed by the reader when absent.")
flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty --output.")
flags.DEFINE_integer("examples_per_shard", 1000, "Records per TFRecord shard.")
flags.DEFINE_string("reader_options", "{}", "JSON dict of extra keyword arguments for the reader.")
flags.DEFINE_bool("progress", True, "Print progress to stderr.")
flags.DEFINE_list("allow_empty_splits", [], "Splits among train, valid that may have no examples "
                  "(evaluation-only data); by default an empty train or valid split is refused.")


def get_reader(fmt):
    """The reader function of `fmt`, imported now."""
    if fmt not in READERS:
        raise ValueError(f"Unknown format '{fmt}'; expected one of {sorted(READERS)}.")
    module, name = READERS[fmt]
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise RuntimeError(f"The '{fmt}' reader ({module}.{name}) is not available: {e}") from e


def parse_reader_options(text, flag="--reader_options"):
    """The JSON object of `--reader_options`, or a ValueError that names the
    flag and points at the parse error."""
    try:
        options = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        pointer = " " * e.pos + "^"
        raise ValueError(
            f"{flag}: not valid JSON: {e.msg} at line {e.lineno}, column {e.colno} (character {e.pos}):\n"
            f"  {text}\n  {pointer}\nexpected a JSON object such as '{{\"folds\": \"folds.json\"}}' "
            f"(keys in double quotes)."
        ) from None
    if not isinstance(options, dict):
        raise ValueError(f"{flag}: expected a JSON object {{\"option\": value}}, got {type(options).__name__} "
                         f"{text!r}.")
    return options


#: How to give each format a validation split, for the note printed when a
#: reader returns none.
_HOW_TO_VALIDATE = {
    "labelcsv": "mark some rows of label.csv with mode=valid",
    "csd": "pass folds with a 'valid' list of video ids (--reader_options='{\"folds\": \"folds.json\"}')",
    "avec": "add the dev split's labels file (dev_split_Depression_AVEC2017.csv) to the input directory",
    "mmsa": "use a pickle with a non-empty 'valid' key (MMSA's own files have one)",
    "mult": "use a pickle with a non-empty 'valid' key (MulT's own files have one)",
}


def _refuse_cards_folder(output):
    # The repository's datasets/ folder holds the dataset cards (README.md
    # per dataset), not data; converted data go to DATA_PLACE.
    cards = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets")
    if not os.path.isfile(os.path.join(cards, "mosi", "README.md")):
        return
    out = os.path.realpath(os.path.abspath(output))
    if out == os.path.realpath(cards) or out.startswith(os.path.realpath(cards) + os.sep):
        raise ValueError(f"--output={output} is inside the repository's dataset cards folder ({cards}); "
                         f"converted data go to {DATA_PLACE} (e.g. --output=data/mosi_unaligned).")


def input_checksum(input_path, official=None, others=None):
    """`keras_msa.data.checksums.identify` of `input_path` when it is a file
    (a pickle, a `.csd`), else None (a directory of many files)."""
    from keras_msa.data.checksums import identify

    if not os.path.isfile(input_path):
        return None
    return identify(input_path, official=official, others=others)


def convert(fmt, input_path, output, dataset=None, overwrite=False, examples_per_shard=1000,
            reader_options=None, progress=True, allow_empty_splits=()):
    """Reads `input_path` with the `fmt` reader and writes `output`; returns the schema.

    Refused before the (possibly long) read: an output that is, contains or
    lies inside `input_path` (replacing it would delete the input), an
    occupied output without `overwrite`, an output another conversion is
    writing, and `examples_per_shard` < 1. After the read, the same checks
    run against every source file the reader names. An empty `train` or
    `valid` split is refused unless named in `allow_empty_splits`.
    """
    from keras_msa.data.tfrecord import check_output
    from keras_msa.data.tfrecord import output_lock
    from keras_msa.data.tfrecord import write_dataset

    if isinstance(examples_per_shard, bool) or not isinstance(examples_per_shard, int) or examples_per_shard < 1:
        raise ValueError(f"--examples_per_shard={examples_per_shard}: expected an integer >= 1 (records per "
                         f"TFRecord shard file).")
    unknown_splits = sorted(set(allow_empty_splits) - {"train", "valid"})
    if unknown_splits:
        raise ValueError(f"--allow_empty_splits={','.join(allow_empty_splits)}: unknown split(s) {unknown_splits}; "
                         f"expected 'train' and/or 'valid' (other splits may always be empty).")
    reader = get_reader(fmt)
    kwargs = dict(reader_options or {})
    if dataset is not None:
        kwargs["dataset"] = dataset
    params = inspect.signature(reader).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not takes_any]
    if unknown:
        raise ValueError(f"The '{fmt}' reader takes no option(s) {unknown}; it takes {list(params)[1:]}.")
    if not os.path.exists(input_path):
        raise FileNotFoundError(f"--input={input_path}: no such file or directory.")
    check_output(output, overwrite, protected=[input_path])
    _refuse_cards_folder(output)
    checksum = input_checksum(input_path)
    if checksum is not None:
        print(f"[convert] {checksum['message']}", file=sys.stderr if checksum["status"] == "mismatch" else sys.stdout,
              flush=True)
        if checksum["status"] == "mismatch":
            print(f"[convert] warning: {os.path.basename(input_path)} does not match its published SHA-256; "
                  f"converting it anyway.", file=sys.stderr, flush=True)
    # Held from before the read, so that a second conversion into the same
    # output fails now rather than after its own long read.
    with output_lock(output):
        splits, meta = reader(input_path, **kwargs)
        meta = dict(meta or {})
        if "valid" not in splits:
            print(f"[convert] note: the {fmt} reader found no validation split in {input_path}; train.py "
                  f"will select its best epoch on 'test' instead (an optimistic estimate). To make one, "
                  f"{_HOW_TO_VALIDATE.get(fmt, 'give the reader a valid split')}.", file=sys.stderr, flush=True)
        extra = {k: v for k, v in meta.items() if k not in ("dataset", "sources", "repairs", "label_ranges")}
        extra.update({"format": fmt, "input": os.path.abspath(input_path)})
        if checksum is not None:
            # In schema.json, so a converted dataset says which file it came from.
            extra["input_sha256"] = {"sha256": checksum["sha256"], "status": checksum["status"],
                                     "published_name": checksum["name"]}
        return write_dataset(
            output,
            splits,
            dataset=meta.get("dataset") or dataset or fmt,
            sources=meta.get("sources") or [input_path],
            protected=[input_path],
            label_ranges=meta.get("label_ranges"),
            repairs=meta.get("repairs"),
            extra=json.loads(json.dumps(extra, default=str)),
            examples_per_shard=examples_per_shard,
            progress=progress,
            overwrite=overwrite,
            allow_empty=tuple(allow_empty_splits),
        )


def summary(schema, output):
    lines = [f"Converted '{schema['dataset']}' into {os.path.abspath(output)}"]
    for split, n in schema["splits"].items():
        lines.append(f"  {split}: {n} examples ({len(schema['shards'][split])} shard(s))")
    # What the reader says the data holds ("no text features; raw text for
    # 2198 of 2199 segments") beats bare numbers that read as broken data.
    holds = (schema.get("extra") or {}).get("holds") or {}
    for m, info in schema["modalities"].items():
        line = (f"  {m}: dim {info['dim']}, length {info['min_length']}..{info['max_length']}, "
                f"missing in {info['missing']}")
        lines.append(f"  {m}: {holds[m]}" if m in holds and not info["max_length"] else
                     line + (f" ({holds[m]})" if m in holds else ""))
    if "raw_text" in holds:
        lines.append(f"  raw_text: {holds['raw_text']}")
    lines.append(f"  labels: {', '.join(schema['labels'])}")
    checksum = (schema.get("extra") or {}).get("input_sha256")
    if checksum:
        known = {"official": f"the official {checksum['published_name']}",
                 "mismatch": f"NOT the published {checksum['published_name']}", "other": "a known other version",
                 "unknown": "no published hash"}[checksum["status"]]
        lines.append(f"  input sha256: {checksum['sha256']} ({known})")
    repairs = schema.get("repairs") or {}
    lines.append("  repairs: " + (", ".join(f"{k}={v}" for k, v in repairs.items()) if repairs else "none"))
    return "\n".join(lines)


def main(argv):
    del argv
    # Before anything imports TensorFlow (`import keras_msa` does not).
    from keras_msa.utils.quiet import quiet_start

    quiet_start(FLAGS.verbosity)
    for name in ("format", "input", "output"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required.")
    schema = convert(
        FLAGS.format, FLAGS.input, FLAGS.output, dataset=FLAGS.dataset, overwrite=FLAGS.overwrite,
        examples_per_shard=FLAGS.examples_per_shard, reader_options=parse_reader_options(FLAGS.reader_options),
        progress=FLAGS.progress, allow_empty_splits=FLAGS.allow_empty_splits,
    )
    print(summary(schema, FLAGS.output))
    print(json.dumps({"splits": schema["splits"], "repairs": schema["repairs"]}))


if __name__ == "__main__":
    app.run(main)
