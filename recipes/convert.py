"""Convert a dataset you already have into keras_msa's TFRecord + schema form.

    python recipes/convert.py --format=mmsa --input=MOSI/Processed/aligned_50.pkl \
        --output=datasets/mosi/aligned_50 --dataset=mosi
    python recipes/convert.py --format=mult --input=iemocap_data.pkl --output=datasets/iemocap/mult
    python recipes/convert.py --format=csd --input=cmu_mosi/ --output=datasets/mosi/csd

Formats: `mmsa` (MMSA pickles), `mult` (MulT pickles), `csd` (CMU-MultimodalSDK
computational sequences), `avec` (AVEC 2019 DDS), `labelcsv` (MMSA-FET
`label.csv` + per-clip arrays). Pickles are loaded with a restricted
unpickler: a file that would run code is refused.

The output is written atomically (into a temporary directory renamed at the
end): an error or Ctrl-C leaves nothing at `--output`. An existing non-empty
`--output` is refused unless `--overwrite`. The summary (split sizes, repairs
the reader made) is printed at the end and stored in `<output>/schema.json`
with sha256 checksums of the source files. Then train on it:

    python recipes/train.py --model=lfdnn --data=datasets/mosi/aligned_50
"""

import importlib
import inspect
import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
flags.DEFINE_string("output", None, "Output directory (TFRecord shards + schema.json).")
flags.DEFINE_string("dataset", None, "Dataset name (mosi, mosei, sims, simsv2, iemocap, urfunny, ...); "
                    "guessed by the reader when absent.")
flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty --output.")
flags.DEFINE_integer("examples_per_shard", 1000, "Records per TFRecord shard.")
flags.DEFINE_string("reader_options", "{}", "JSON dict of extra keyword arguments for the reader.")
flags.DEFINE_bool("progress", True, "Print progress to stderr.")


def get_reader(fmt):
    """The reader function of `fmt`, imported now."""
    if fmt not in READERS:
        raise ValueError(f"Unknown format '{fmt}'; expected one of {sorted(READERS)}.")
    module, name = READERS[fmt]
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise RuntimeError(f"The '{fmt}' reader ({module}.{name}) is not available: {e}") from e


def convert(fmt, input_path, output, dataset=None, overwrite=False, examples_per_shard=1000,
            reader_options=None, progress=True):
    """Reads `input_path` with the `fmt` reader and writes `output`; returns the schema."""
    from keras_msa.data.tfrecord import write_dataset

    reader = get_reader(fmt)
    kwargs = dict(reader_options or {})
    if dataset is not None:
        kwargs["dataset"] = dataset
    params = inspect.signature(reader).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not takes_any]
    if unknown:
        raise ValueError(f"The '{fmt}' reader takes no option(s) {unknown}; it takes {list(params)[1:]}.")
    # Refuse an occupied output before the (possibly long) read.
    if os.path.isdir(output) and os.listdir(output) and not overwrite:
        raise FileExistsError(f"{output}: exists and is not empty; pass --overwrite to replace it.")
    splits, meta = reader(input_path, **kwargs)
    meta = dict(meta or {})
    extra = {k: v for k, v in meta.items() if k not in ("dataset", "sources", "repairs", "label_ranges")}
    extra.update({"format": fmt, "input": os.path.abspath(input_path)})
    return write_dataset(
        output,
        splits,
        dataset=meta.get("dataset") or dataset or fmt,
        sources=meta.get("sources") or [input_path],
        label_ranges=meta.get("label_ranges"),
        repairs=meta.get("repairs"),
        extra=json.loads(json.dumps(extra, default=str)),
        examples_per_shard=examples_per_shard,
        progress=progress,
        overwrite=overwrite,
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
    repairs = schema.get("repairs") or {}
    lines.append("  repairs: " + (", ".join(f"{k}={v}" for k, v in repairs.items()) if repairs else "none"))
    return "\n".join(lines)


def main(argv):
    del argv
    for name in ("format", "input", "output"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required.")
    schema = convert(
        FLAGS.format, FLAGS.input, FLAGS.output, dataset=FLAGS.dataset, overwrite=FLAGS.overwrite,
        examples_per_shard=FLAGS.examples_per_shard, reader_options=json.loads(FLAGS.reader_options),
        progress=FLAGS.progress,
    )
    print(summary(schema, FLAGS.output))
    print(json.dumps({"splits": schema["splits"], "repairs": schema["repairs"]}))


if __name__ == "__main__":
    app.run(main)
