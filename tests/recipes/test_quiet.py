"""Recipe runs are quiet by default (no TensorFlow start-up lines, no CUDA
probe errors, no Keras shuffle warning), and `--verbosity` brings the logs
back."""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOISE = re.compile(r"cuInit|cudart_stub|shuffle=True|absl::InitializeLog|^[IWE]\d{4} |WARNING",
                   re.MULTILINE)
TF_LOG = re.compile(r"^[IWE]0000 |cudart_stub|oneDNN|absl::InitializeLog|cpu_feature_guard", re.MULTILINE)
SIZES = {"train": 32, "valid": 16, "test": 16}
SYNTHETIC = {"seq_len": 8, "min_len": 8, "text_dim": 8, "window": 4, "offset": 1, "compute_text_only_floor": False}
MODEL = {"hidden_dims": {"text": 4, "audio": 4, "vision": 4}, "fusion_dim": 4}


def _train(tmp_path, *extra):
    env = dict(os.environ)
    # What a user's shell has: the recipe must quiet TensorFlow itself.
    for key in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES", "TF_CONFIG", "PYTHONWARNINGS"):
        env.pop(key, None)
    cmd = [sys.executable, os.path.join(ROOT, "recipes", "train.py"), f"--output_dir={tmp_path / 'run'}",
           "--epochs=1", "--batch_size=16", f"--synthetic_sizes={json.dumps(SIZES)}",
           f"--synthetic_options={json.dumps(SYNTHETIC)}", f"--model_config={json.dumps(MODEL)}", *extra]
    # stderr into stdout: the order of the lines is what a terminal shows.
    out = subprocess.run(cmd, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    return out.stdout


@pytest.mark.slow
def test_train_recipe_is_quiet_by_default_and_verbosity_brings_logs_back(tmp_path):
    quiet = _train(tmp_path)
    assert not NOISE.search(quiet), quiet
    assert not TF_LOG.search(quiet), quiet
    assert re.search(r"^epoch 1/1  loss \S+  val_mae \S+ \*best\*$", quiet, re.MULTILINE), quiet
    # The same check sees TensorFlow's own lines once they are asked for.
    loud = _train(tmp_path, "--verbosity=2")
    assert TF_LOG.search(loud), loud


@pytest.mark.slow
def test_export_recipe_is_quiet_by_default(tmp_path):
    # TensorFlow's SavedModel writer logs INFO lines through absl (signature
    # renames, saver timings) once TensorFlow has raised absl's verbosity.
    _train(tmp_path)
    env = dict(os.environ)
    for key in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES", "TF_CONFIG", "PYTHONWARNINGS"):
        env.pop(key, None)
    cmd = [sys.executable, os.path.join(ROOT, "recipes", "export.py"),
           f"--model_path={tmp_path / 'run' / 'model.keras'}", f"--export_dir={tmp_path / 'export' / '1'}"]
    out = subprocess.run(cmd, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    assert not NOISE.search(out.stdout), out.stdout
    assert not TF_LOG.search(out.stdout), out.stdout
    assert "Exported" in out.stdout, out.stdout


def _quiet_env():
    env = dict(os.environ)
    for key in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES", "TF_CONFIG", "PYTHONWARNINGS"):
        env.pop(key, None)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_import_keras_msa_is_light_and_subpackages_load_on_use():
    code = (
        "import sys\n"
        "import keras_msa, keras_msa.cli, keras_msa.utils.quiet, keras_msa.utils.files\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, sorted(sys.modules)\n"
        "assert 'models' in dir(keras_msa) and keras_msa.__version__\n"
        "from keras_msa.utils.quiet import quiet_start\n"
        "quiet_start(0)\n"
        # Attribute access loads the subpackage (and registers its classes).
        "assert keras_msa.models.CrossSent.__name__ == 'CrossSent'\n"
        "assert keras_msa.layers.MaskedMeanPooling and keras_msa.utils.masked_mean\n"
        "import keras\n"
        "assert keras.saving.get_registered_object('keras_msa>CrossSent') is keras_msa.models.CrossSent\n"
        "assert keras_msa.models.get_model_class('m3sa').__name__ == 'M3SA'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_quiet_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    # quiet_start ran before TensorFlow loaded, so nothing was printed.
    assert not TF_LOG.search(out.stdout), out.stdout


def test_import_after_keras_registers_for_load_model(tmp_path):
    import numpy as np

    from keras_msa.models import LFDNN

    model = LFDNN(**MODEL)
    model({m: np.zeros((2, 4, d), "float32") for m, d in (("text", 8), ("audio", 3), ("vision", 5))})
    model.save(str(tmp_path / "m.keras"))
    # Plain Keras loading of a keras_msa file, with only `import keras_msa`.
    load = (
        "import keras\n"
        "import keras_msa\n"
        f"model = keras.saving.load_model({str(tmp_path / 'm.keras')!r})\n"
        "assert type(model).__name__ == 'LFDNN', type(model)\n"
    )
    out = subprocess.run([sys.executable, "-c", load], cwd=ROOT, env=_quiet_env(), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
def test_console_entry_points_are_quiet(tmp_path):
    # The console scripts call keras_msa.cli's functions; a checkout that was
    # not pip-installed has no scripts, so the functions are called directly.
    code = (
        "import sys\n"
        "from keras_msa.cli import train\n"
        f"train(['--output_dir={tmp_path / 'run'}', '--epochs=1', '--batch_size=16',\n"
        f"       '--synthetic_sizes={json.dumps(SIZES)}', '--synthetic_options={json.dumps(SYNTHETIC)}',\n"
        f"       '--model_config={json.dumps(MODEL)}'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=_quiet_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    assert not NOISE.search(out.stdout), out.stdout
    assert not TF_LOG.search(out.stdout), out.stdout
    assert re.search(r"^epoch 1/1  loss \S+  val_mae \S+ \*best\*$", out.stdout, re.MULTILINE), out.stdout
    assert os.path.exists(tmp_path / "run" / "metrics.json")
    # --help answers from every entry point without loading TensorFlow.
    for name in ("train", "evaluate", "export", "convert"):
        helper = (
            "import sys\n"
            f"from keras_msa.cli import {name}\n"
            "try:\n"
            f"    {name}(['--helpshort'])\n"
            "except SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            "assert 'tensorflow' not in sys.modules\n"
        )
        out = subprocess.run([sys.executable, "-c", helper], cwd=ROOT, env=_quiet_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        assert out.returncode == 0 and "--" in out.stdout, (name, out.stdout[-2000:])


def test_quiet_start_hides_cuda_only_without_a_driver(monkeypatch):
    from keras_msa.utils import quiet

    import tensorflow as tf

    level = tf.get_logger().level
    # monkeypatch restores both variables after the test.
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    try:
        for driver, verbosity, hidden in ((True, 0, False), (False, 0, True), (False, 2, False)):
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
            monkeypatch.setattr(quiet, "has_gpu_driver", lambda: driver)
            quiet.quiet_start(verbosity)
            assert (os.environ.get("CUDA_VISIBLE_DEVICES") == "") == hidden, (driver, verbosity)
            assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == ("3" if verbosity == 0 else "0")
        # A choice the user made stays.
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
        monkeypatch.setattr(quiet, "has_gpu_driver", lambda: False)
        quiet.quiet_start(0)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    finally:
        tf.get_logger().setLevel(level)


def test_fit_is_never_asked_to_shuffle_a_dataset(tmp_path):
    import warnings

    import keras

    from keras_msa.data.synthetic import make_synthetic_benchmark
    from keras_msa.models import LFDNN
    from keras_msa.testing import assert_keras_roundtrip
    from keras_msa.testing import train_briefly

    # The runner's fit is checked by the recipe test above (shuffle=True is in NOISE).
    bench = make_synthetic_benchmark(seed=0, splits=SIZES, **SYNTHETIC)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras.utils.set_random_seed(0)
        model = LFDNN(**MODEL)
        train_briefly(model, bench, epochs=1, batch_size=16)
        assert_keras_roundtrip(model, bench["test"].inputs, tmp_path, train_data=bench["train"].to_tf_dataset(16))
    shuffle = [str(w.message) for w in caught if "shuffle=True" in str(w.message)]
    assert not shuffle, shuffle
