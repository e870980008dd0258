"""The pickle readers' options through recipes/convert.py: the allocation cap
(`--reader_options`), the dataset decision recorded in the schema, and an
unknown `--dataset` refused."""

import pytest

from keras_msa.data.errors import DataFormatError
from keras_msa.data.fixtures import mmsa_arrays
from keras_msa.data.fixtures import write_pickle
from keras_msa.data.tfrecord import read_schema


@pytest.fixture(scope="module")
def convert(load_recipe):
    return load_recipe("convert")


def test_allocation_cap_through_reader_options(tmp_path, convert):
    src = write_pickle(mmsa_arrays(), tmp_path / "aligned_50.pkl")
    with pytest.raises(DataFormatError, match="aligned_50.pkl: this pickle asks for more memory than its cap") as info:
        convert.convert("mmsa", src, str(tmp_path / "tight"), progress=False,
                        reader_options={"max_allocation_factor": 0.5, "min_allocation_bytes": 0})
    assert "--reader_options" in str(info.value)
    schema = convert.convert("mmsa", src, str(tmp_path / "ok"), progress=False,
                             reader_options={"max_allocation_factor": 16, "min_allocation_bytes": 0})
    assert schema["dataset"] == "mosi"
    # How the dataset was decided travels into schema.json.
    assert "audio 5, vision 20 are MOSI's" in read_schema(tmp_path / "ok")["extra"]["dataset_evidence"]


def test_unknown_dataset_refused_by_convert(tmp_path, convert):
    src = write_pickle(mmsa_arrays(), tmp_path / "aligned_50.pkl")
    with pytest.raises(ValueError, match="--dataset='mosii': unknown dataset"):
        convert.convert("mmsa", src, str(tmp_path / "out"), dataset="mosii", progress=False)
