"""Data: batch contract, synthetic benchmark, readers, TFRecord I/O.

Readers return `(splits, meta)`: `splits` is `{split: [example dict, ...]}`
and `meta` is `{"dataset", "sources", "repairs", "label_ranges"}`; pass both to
`write_dataset(output_dir, splits, dataset=meta["dataset"], ...)` (or use
`recipes/convert.py`). Names are imported lazily, so `import keras_msa.data`
stays cheap.
"""

import importlib

from keras_msa.data.errors import DataFormatError

#: Where converted datasets go by convention: `data/<name>` under the
#: directory the recipes run from (e.g. `data/mosi_unaligned`), never the
#: repository's `datasets/` folder, which holds the dataset cards only.
DATA_PLACE = "data/<name>"

_LAZY = {
    "write_dataset": "keras_msa.data.tfrecord",
    "read_schema": "keras_msa.data.tfrecord",
    "read_examples": "keras_msa.data.tfrecord",
    "load_split": "keras_msa.data.tfrecord",
    "SafeUnpickler": "keras_msa.data.safe_pickle",
    "UnsafePickleError": "keras_msa.data.safe_pickle",
    "safe_load": "keras_msa.data.safe_pickle",
    "safe_loads": "keras_msa.data.safe_pickle",
    "read_mmsa": "keras_msa.data.mmsa",
    "read_mult": "keras_msa.data.mult",
    "read_csd": "keras_msa.data.csd",
    "read_avec": "keras_msa.data.avec",
    "write_synthetic_avec": "keras_msa.data.avec",
    "read_labelcsv": "keras_msa.data.labelcsv",
    "extract_text_features": "keras_msa.data.text_features",
    "make_synthetic_benchmark": "keras_msa.data.synthetic",
    "SyntheticBenchmark": "keras_msa.data.synthetic",
}

__all__ = ["DATA_PLACE", "DataFormatError"] + sorted(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_msa.data' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
