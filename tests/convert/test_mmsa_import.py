"""Importing MMSA checkpoints (.pth) without torch, and refusing .pth files
whose pickle would run code."""

import io
import json
import os
import pickle
import zipfile

import keras
import numpy as np
import pytest
from absl import flags

from keras_msa.convert.mmsa import import_mmsa_checkpoint
from keras_msa.convert.mmsa import mmsa_params
from keras_msa.data.errors import DataFormatError
from keras_msa.data.safe_pickle import UnsafePickleError
from keras_msa.data.safe_pickle import load_torch_checkpoint

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "mmsa")
PTH = os.path.join(FIXTURES, "mult_tiny.pth")
#: make_fixtures.mult_args() as MMSA's flat parameters.
PARAMS = {"dst_feature_dim_nheads": [4, 2], "nlevels": 2, "attn_dropout": 0.4, "attn_dropout_a": 0.0,
          "attn_dropout_v": 0.0, "relu_dropout": 0.0, "embed_dropout": 0.0, "res_dropout": 0.0,
          "output_dropout": 0.5, "text_dropout": 0.3, "attn_mask": True, "conv1d_kernel_size_l": 5,
          "conv1d_kernel_size_a": 1, "conv1d_kernel_size_v": 3}


def fixture(name):
    with np.load(os.path.join(FIXTURES, name)) as f:
        return {k: f[k] for k in f.files}


def test_pth_reads_the_state_dict_exactly():
    state = load_torch_checkpoint(PTH)
    weights = fixture("mult_weights.npz")
    assert sorted(state) == sorted(weights)
    for key, value in weights.items():
        assert state[key].dtype == np.float32 and state[key].shape == value.shape, key
        np.testing.assert_array_equal(state[key], value, err_msg=key)


@pytest.mark.slow
def test_recipe_writes_a_model_that_predicts_mmsa_numbers(tmp_path, load_recipe):
    # MMSA's config file layout; the entry is found from the checkpoint's sizes.
    common = {"attn_mask": True, "use_bert": False, "early_stop": 8}
    config = {"mult": {"commonParams": common, "datasetParams": {
        "tiny": {k: v for k, v in PARAMS.items() if k != "attn_mask"},
        "mosi": {**PARAMS, "dst_feature_dim_nheads": [50, 10], "conv1d_kernel_size_a": 5}}}}
    config_path = tmp_path / "config_regression.json"
    config_path.write_text(json.dumps(config))
    out = tmp_path / "mult.keras"
    recipe = load_recipe("import_mmsa")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["import_mmsa.py", "--model=mult", f"--checkpoint={PTH}", f"--config={config_path}",
                 f"--output={out}"])
    assert recipe.main([]) == 0
    model = keras.saving.load_model(str(out))
    io_ = fixture("mult_io.npz")
    pred = np.asarray(model({m: io_[m] for m in ("text", "audio", "vision")})["sentiment"])
    err = np.abs(pred - io_["M"]).max()
    print(f"imported .pth -> .keras: max |keras - MMSA| = {err:.2e}")
    assert err < 1e-4, err
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_config_forms(tmp_path):
    state = load_torch_checkpoint(PTH)
    flat = tmp_path / "args.json"
    flat.write_text(json.dumps(PARAMS))
    assert mmsa_params(str(flat), state_dict=state) == PARAMS
    assert mmsa_params("mosei")["conv_kernel_sizes"] == {"text": 5, "audio": 1, "vision": 3}
    with pytest.raises(ValueError, match="neither a file nor a dataset preset"):
        mmsa_params("iemocap")
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"mult": {"commonParams": {}, "datasetParams": {"a": PARAMS, "b": PARAMS}}}))
    with pytest.raises(ValueError, match="2 fit its sizes"):
        mmsa_params(str(both), state_dict=state)
    # A dataset preset whose sizes differ from the checkpoint's is refused, naming the weight.
    with pytest.raises(ValueError, match="proj_l.weight"):
        import_mmsa_checkpoint(PTH, config="mosi")


class _RunsShell:
    """A pickle that would run a shell command when loaded."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _pth(path, payload, storages=None):
    """A torch.save-layout zip built with plain pickle + zipfile (no torch)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            z.writestr(f"archive/data/{key}", data)
    return path


def test_a_pth_whose_pickle_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps({"proj_l.weight": _RunsShell(f"touch {marker}")}, protocol=2)
    path = _pth(tmp_path / "evil.pth", payload)
    with pytest.raises(UnsafePickleError, match="system") as err:
        load_torch_checkpoint(path)
    assert "Nothing from the file was executed" in str(err.value) and str(path) in str(err.value)
    with pytest.raises(UnsafePickleError):
        import_mmsa_checkpoint(path, config="mosi", output=tmp_path / "out.keras")
    assert not marker.exists()
    assert not (tmp_path / "out.keras").exists()


def _unicode(text):
    data = text.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _ints(values):
    return b"(" + b"".join(b"J" + v.to_bytes(4, "little", signed=True) for v in values) + b"t"


def _tensor_pickle(storage_type="FloatStorage", numel=4, size=(2, 2), stride=(2, 1), offset=0):
    """The pickle torch.save writes for {"w": tensor}, written opcode by opcode
    (no torch, and nothing importable needed)."""
    storage = b"(" + _unicode("storage") + _global("torch", storage_type) + _unicode("0") + _unicode("cpu")
    storage += b"J" + numel.to_bytes(4, "little") + b"tQ"
    hooks = _global("collections", "OrderedDict") + b")R"
    args = b"(" + storage + b"J" + offset.to_bytes(4, "little") + _ints(size) + _ints(stride) + b"\x89" + hooks + b"t"
    return b"\x80\x02}" + _unicode("w") + _global("torch._utils", "_rebuild_tensor_v2") + args + b"Rs."


def test_hand_written_tensors_and_their_faults(tmp_path):
    data = np.arange(4, dtype="<f4").tobytes()
    good = load_torch_checkpoint(_pth(tmp_path / "good.pth", _tensor_pickle(), {"0": data}))
    np.testing.assert_array_equal(good["w"], [[0, 1], [2, 3]])
    transposed = load_torch_checkpoint(_pth(tmp_path / "t.pth", _tensor_pickle(stride=(1, 2)), {"0": data}))
    np.testing.assert_array_equal(transposed["w"], [[0, 2], [1, 3]])
    with pytest.raises(DataFormatError, match="reads past its storage"):
        load_torch_checkpoint(_pth(tmp_path / "past.pth", _tensor_pickle(offset=1), {"0": data}))
    with pytest.raises(DataFormatError, match="declares 4 x 4 bytes"):
        load_torch_checkpoint(_pth(tmp_path / "short.pth", _tensor_pickle(), {"0": data[:8]}))
    with pytest.raises(DataFormatError, match="has no archive/data/0"):
        load_torch_checkpoint(_pth(tmp_path / "missing.pth", _tensor_pickle()))
    with pytest.raises(UnsafePickleError, match="torch.nn.Module"):
        load_torch_checkpoint(_pth(tmp_path / "module.pth", b"\x80\x02" + _global("torch.nn", "Module") + b")R."))
    with pytest.raises(UnsafePickleError, match="storage of type"):
        bad = _tensor_pickle().replace(_global("torch", "FloatStorage"), _unicode("FloatStorage"))
        load_torch_checkpoint(_pth(tmp_path / "kind.pth", bad, {"0": data}))
    with pytest.raises(DataFormatError, match="not a torch.save zip"):
        (tmp_path / "legacy.pth").write_bytes(pickle.dumps({"w": 1}))
        load_torch_checkpoint(tmp_path / "legacy.pth")
