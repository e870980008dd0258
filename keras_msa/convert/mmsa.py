"""Import of checkpoints trained with MMSA (the PyTorch framework of the
field, `pip install MMSA==2.2.1`) into keras_msa models.

    model = import_mmsa_checkpoint("mult-mosi.pth", model="mult", config="mosi")
    model.predict(batch)            # MMSA's numbers, to 1e-4
    recipes/export.py ...           # and a SavedModel for TensorFlow Serving

The `.pth` is read by `keras_msa.data.safe_pickle.load_torch_checkpoint`:
no torch, and no code from the file runs (a `.pth` is a zip holding a
pickle; the restricted unpickler rebuilds tensors from their storages and
refuses every other global). `config` says how the checkpoint was trained,
since a state dict does not record MMSA's hyper-parameters (heads, dropout):

- a dataset name (`"mosi"`, `"mosei"`, `"sims"`): the model's preset, which is
  MMSA's `config_regression.json` entry for that dataset;
- a path to MMSA's `config_regression.json` (or a file of the same layout),
  with `dataset` naming the entry (when omitted, the one entry whose
  sizes fit the checkpoint);
- a path to a JSON object, or a dict, of MMSA's flat parameters (the
  `args` MMSA trained with: `dst_feature_dim_nheads`, `nlevels`, ...).
"""

import json
import os

import numpy as np

from keras_msa.convert.mmsa_ef_lstm import check_ef_lstm_state_dict
from keras_msa.convert.mmsa_ef_lstm import ef_lstm_from_mmsa
from keras_msa.convert.mmsa_lf_dnn import check_lf_dnn_state_dict
from keras_msa.convert.mmsa_lf_dnn import lf_dnn_from_mmsa
from keras_msa.convert.mmsa_mult import CheckpointMismatchError
from keras_msa.convert.mmsa_mult import check_mult_state_dict
from keras_msa.convert.mmsa_mult import mult_config_from_mmsa
from keras_msa.convert.mmsa_mult import mult_from_mmsa
from keras_msa.convert.mmsa_magbert import check_magbert_state_dict
from keras_msa.convert.mmsa_magbert import magbert_from_mmsa
from keras_msa.convert.mmsa_lmf import check_lmf_state_dict
from keras_msa.convert.mmsa_lmf import lmf_config_from_mmsa
from keras_msa.convert.mmsa_lmf import lmf_from_mmsa
from keras_msa.convert.mmsa_selfmm import selfmm_config_from_mmsa
from keras_msa.convert.mmsa_selfmm import selfmm_from_mmsa
from keras_msa.convert.mmsa_mmim import check_mmim_state_dict
from keras_msa.convert.mmsa_mmim import mmim_config_from_mmsa
from keras_msa.convert.mmsa_mmim import mmim_from_mmsa
from keras_msa.convert.mmsa_misa import check_misa_state_dict
from keras_msa.convert.mmsa_misa import misa_from_mmsa
from keras_msa.convert.mmsa_tfn import check_tfn_state_dict
from keras_msa.convert.mmsa_tfn import tfn_config_from_mmsa
from keras_msa.convert.mmsa_tfn import tfn_from_mmsa

#: keras_msa model name -> (MMSA's config key, converter, config checker).
CONVERTERS = {
    "mult": ("mult", mult_from_mmsa, lambda params, sd: (
        mult_config_from_mmsa(params, sd) if "dst_feature_dim_nheads" in params
        else check_mult_state_dict(params, sd))),
    "eflstm": ("ef_lstm", ef_lstm_from_mmsa, check_ef_lstm_state_dict),
    "lfdnn": ("lf_dnn", lf_dnn_from_mmsa, check_lf_dnn_state_dict),
    "tfn": ("tfn", tfn_from_mmsa, lambda params, sd: (
        tfn_config_from_mmsa(params, sd) if isinstance(params.get("hidden_dims"), (list, tuple))
        else check_tfn_state_dict(params, sd))),
    "lmf": ("lmf", lmf_from_mmsa, lambda params, sd: (
        lmf_config_from_mmsa(params, sd) if isinstance(params.get("hidden_dims"), (list, tuple))
        else check_lmf_state_dict(params, sd))),
    "selfmm": ("self_mm", selfmm_from_mmsa, selfmm_config_from_mmsa),
    "magbert": ("bert_mag", magbert_from_mmsa, check_magbert_state_dict),
    "mmim": ("mmim", mmim_from_mmsa, lambda params, sd: (
        mmim_config_from_mmsa(params, sd) if "d_prjh" in params else check_mmim_state_dict(params, sd))),
    "misa": ("misa", misa_from_mmsa, check_misa_state_dict),
}
#: MMSA's model names, accepted for the keras_msa ones.
ALIASES = {"ef_lstm": "eflstm", "lf_dnn": "lfdnn", "self_mm": "selfmm", "bert_mag": "magbert"}


def _canonical(model):
    return ALIASES.get(model, model)


def _model_class(model):
    from keras_msa.models.base import get_model_class

    return get_model_class(model)


def _fits(checker, params, state_dict):
    try:
        checker(params, state_dict)
        return True
    except CheckpointMismatchError:
        return False


def mmsa_params(config, model="mult", dataset=None, state_dict=None):
    """The training config of an MMSA checkpoint, from any form `config`
    takes (see the module doc): MMSA's flat parameters, or the keras_msa
    preset's constructor arguments for a dataset name."""
    model = _canonical(model)
    if model not in CONVERTERS:
        raise ValueError(f"No MMSA converter for model '{model}'; available: "
                         f"{sorted([*CONVERTERS, *ALIASES])}.")
    mmsa_key, _, checker = CONVERTERS[model]
    if isinstance(config, dict):
        return dict(config)
    config = os.fspath(config)
    presets = _model_class(model).presets
    if not os.path.exists(config):
        # EFLSTM/LFDNN keep their own dataset presets; MMSA's are mmsa_<dataset>.
        if f"mmsa_{config}" in presets:
            return dict(presets[f"mmsa_{config}"])
        if config in presets:
            return dict(presets[config])
        raise ValueError(f"--config={config!r} is neither a file nor a dataset preset of {model} "
                         f"({', '.join(sorted(presets))}); pass MMSA's config_regression.json or a dataset name.")
    try:
        with open(config) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{config}: not readable JSON ({e}).") from e
    if not isinstance(data, dict):
        raise ValueError(f"{config}: expected a JSON object (MMSA's config_regression.json or flat parameters).")
    section = data.get(mmsa_key, data)
    if "datasetParams" not in section:
        return section
    common = section.get("commonParams", {})
    entries = section["datasetParams"]
    if dataset is None:
        fitting = [name for name, params in entries.items()
                   if state_dict is not None and _fits(checker, {**common, **params}, state_dict)]
        if len(fitting) != 1:
            raise ValueError(f"{config}: name the dataset entry of '{mmsa_key}' the checkpoint was trained with "
                             f"(--dataset, one of {sorted(entries)}); "
                             + (f"{len(fitting)} fit its sizes: {fitting}." if state_dict is not None else ""))
        dataset = fitting[0]
    if dataset not in entries:
        raise ValueError(f"{config}: '{mmsa_key}' has no datasetParams entry '{dataset}' "
                         f"(it has {sorted(entries)}).")
    return {**common, **entries[dataset]}


def torch_state_dict(checkpoint):
    """`{name: numpy array}` from a `.pth` holding a state dict (as MMSA's
    trainer saves: `torch.save(model.state_dict(), path)`)."""
    from keras_msa.data.safe_pickle import load_torch_checkpoint

    obj = load_torch_checkpoint(checkpoint)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and k.startswith("Model.") for k in obj):
        # MMSA's trainer saves its AMIO wrapper, which holds the model as `Model`.
        obj = {k[len("Model."):]: v for k, v in obj.items()}
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray)
                                            for k, v in obj.items()):
        raise CheckpointMismatchError(f"{checkpoint}: expected a state dict (parameter name -> tensor), as MMSA "
                                      f"saves; got a {type(obj).__name__}.")
    return dict(obj)


def import_mmsa_checkpoint(checkpoint, model="mult", config="mosi", dataset=None, output=None):
    """A keras_msa model with the weights of an MMSA checkpoint.

    Args:
        checkpoint: the `.pth` MMSA saved (`<model_save_dir>/<model>-<dataset>.pth`).
        model: the keras_msa model name (`"mult"`, `"eflstm"`, `"lfdnn"`; MMSA's
            `"ef_lstm"` and `"lf_dnn"` also), `"tfn"`, `"lmf"`, `"selfmm"`
            (`"self_mm"`), `"magbert"` (`"bert_mag"`), `"mmim"`, `"misa"`.
        config: how it was trained (see the module doc).
        dataset: the datasetParams entry when `config` is MMSA's
            config_regression.json.
        output: when given, the model is also written there (`.keras`),
            atomically.

    Returns:
        The built keras_msa model.
    """
    model = _canonical(model)
    state_dict = torch_state_dict(checkpoint)
    params = mmsa_params(config, model, dataset, state_dict)
    keras_model = CONVERTERS[model][1](state_dict, params)
    if output is not None:
        from keras_msa.training.runner import save_model_atomic

        save_model_atomic(keras_model, os.fspath(output))
    return keras_model
