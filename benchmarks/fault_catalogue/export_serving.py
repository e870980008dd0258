"""Fault catalogue, export / serving / run-time entry points: `recipes/export.py`,
`recipes/evaluate.py`, `recipes/train.py`, `export_saved_model`, the
`serving_default` signature, `.keras` loading, checkpoints and the runner.

    python benchmarks/fault_catalogue/export_serving.py
    PYTHONPATH=/path/to/old/checkout python benchmarks/fault_catalogue/export_serving.py

Each case is judged by what a user experiences (see harness.py). keras_msa
and the recipes are imported inside the cases, so PYTHONPATH decides which
checkout is tested.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import case  # noqa: E402
from harness import names_any  # noqa: E402

_CACHE = {}
_SHARED = tempfile.mkdtemp(prefix="fault-export-")
atexit.register(shutil.rmtree, _SHARED, True)


# ----------------------------------------------------------------- helpers
def _root():
    import keras_msa

    return os.path.dirname(os.path.dirname(os.path.abspath(keras_msa.__file__)))


def _recipe(name, *flags, timeout=300):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = _root() + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, os.path.join(_root(), "recipes", f"{name}.py"), *flags],
                          capture_output=True, text=True, timeout=timeout, cwd=_root(), env=env)
    return proc.returncode, proc.stdout, proc.stderr[-1500:]


def _judge_failure(rc, err, *needles):
    """A refused run: handled when the end of stderr names what is wrong."""
    if rc == 0:
        return None
    return "handled" if names_any(err, *needles) else "poor_message"


def _batch(n=4):
    from keras_msa.testing import small_batch
    from keras_msa.testing import tiny_synthetic

    return {k: v.copy() for k, v in small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], n).items()}


def _model():
    if "model" not in _CACHE:
        import keras

        from keras_msa.models import LFDNN

        keras.utils.set_random_seed(0)
        model = LFDNN(hidden_dims={"text": 8, "audio": 4, "vision": 4}, fusion_dim=8)
        model(_batch())
        _CACHE["model"] = model
    return _CACHE["model"]


def _model_file(directory, name="model.keras"):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    _model().save(path)
    return path


def _served():
    """(model, batch, loaded serving function) of one shared export."""
    if "served" not in _CACHE:
        from keras_msa.export import export_saved_model
        from keras_msa.export import load_serving_fn

        export_dir = os.path.join(_SHARED, "served", "1")
        export_saved_model(_model(), export_dir, _batch())
        _CACHE["served"] = load_serving_fn(export_dir)
    return _model(), _batch(), _CACHE["served"]


def _call_raw(fn, batch):
    import tensorflow as tf

    out = fn(**{k: tf.constant(v) for k, v in batch.items()})
    return {k: v.numpy() for k, v in out.items()}


def _outputs_judgement(outputs, reference=None):
    """An accepted request: wrong numbers are silent_wrong."""
    import numpy as np

    s = np.asarray(outputs["sentiment"])
    if reference is not None and not np.allclose(s, reference, atol=1e-5):
        return "silent_wrong"
    return "handled" if np.all(np.isfinite(s)) else "poor_message"


# ------------------------------------------------- export: what is deleted
@case("export recipe into the run directory (holds model.keras)")
def export_into_run_dir(tmp):
    run = os.path.join(tmp, "runs", "lfdnn")
    model_path = _model_file(run)
    open(os.path.join(run, "metrics.json"), "w").write("{}")
    rc, _, err = _recipe("export", f"--model_path={model_path}", f"--export_dir={run}")
    if not os.path.exists(model_path) or not os.path.exists(os.path.join(run, "metrics.json")):
        return "data_loss"
    return _judge_failure(rc, err, "holds the model") or "silent_wrong"


@case("export recipe without the version number (holds 1/ and 2/)")
def export_without_version(tmp):
    from keras_msa.export import export_saved_model

    root = os.path.join(tmp, "saved_models", "lfdnn")
    for v in ("1", "2"):
        export_saved_model(_model(), os.path.join(root, v), _batch())
    model_path = _model_file(os.path.join(tmp, "run"))
    rc, _, err = _recipe("export", f"--model_path={model_path}", f"--export_dir={root}")
    if not all(os.path.exists(os.path.join(root, v, "saved_model.pb")) for v in ("1", "2")):
        return "data_loss"
    return _judge_failure(rc, err, "lfdnn/3") or "silent_wrong"


@case("export_saved_model default onto a directory of user files")
def export_onto_user_files(tmp):
    from keras_msa.export import export_saved_model

    target = os.path.join(tmp, "mine")
    os.makedirs(target)
    open(os.path.join(target, "notes.txt"), "w").write("mine")
    try:
        export_saved_model(_model(), target, _batch())
    except Exception as e:
        if not os.path.exists(os.path.join(target, "notes.txt")):
            return "data_loss"
        return "handled" if names_any(e, "overwrite") else "poor_message"
    return "data_loss" if not os.path.exists(os.path.join(target, "notes.txt")) else "silent_wrong"


@case("export_saved_model with a .keras file in the target")
def export_onto_keras_file(tmp):
    from keras_msa.export import export_saved_model

    model_path = _model_file(tmp)
    try:
        export_saved_model(_model(), tmp, _batch())
    except Exception as e:
        if not os.path.exists(model_path):
            return "data_loss"
        return "handled" if names_any(e, "overwrite", "model being exported") else "poor_message"
    return "data_loss" if not os.path.exists(model_path) else "silent_wrong"


@case("export_saved_model overwrite=True onto user files (asked for)")
def export_overwrite_asked(tmp):
    from keras_msa.export import export_saved_model

    target = os.path.join(tmp, "mine")
    os.makedirs(target)
    open(os.path.join(target, "notes.txt"), "w").write("mine")
    export_saved_model(_model(), target, _batch(), overwrite=True)
    ok = os.path.exists(os.path.join(target, "saved_model.pb")) and not os.path.exists(os.path.join(target, "notes.txt"))
    return "handled" if ok else "silent_wrong"


@case("export replaces an earlier export of the same version")
def export_replaces_earlier(tmp):
    from keras_msa.export import export_saved_model

    target = os.path.join(tmp, "m", "1")
    export_saved_model(_model(), target, _batch())
    export_saved_model(_model(), target, _batch())
    ok = os.path.exists(os.path.join(target, "saved_model.pb")) and os.listdir(os.path.dirname(target)) == ["1"]
    return "handled" if ok else "silent_wrong"


@case("export fails while moving the new export in (old one must survive)")
def export_atomic_replace(tmp):
    from keras_msa.export import export_saved_model

    target = os.path.join(tmp, "m", "1")
    export_saved_model(_model(), target, _batch())
    real_replace = os.replace
    failed = []

    def flaky_replace(src, dst):
        # The first move of a finished export onto the target fails once.
        if not failed and os.path.abspath(dst) == os.path.abspath(target) \
                and os.path.basename(src).startswith(".export-"):
            failed.append(src)
            raise OSError("disk full")
        return real_replace(src, dst)

    os.replace = flaky_replace
    try:
        export_saved_model(_model(), target, _batch())
    except OSError:
        pass
    finally:
        os.replace = real_replace
    return "handled" if os.path.exists(os.path.join(target, "saved_model.pb")) else "data_loss"


@case("export_dir is an existing file")
def export_dir_is_file(tmp):
    from keras_msa.export import export_saved_model

    path = os.path.join(tmp, "export")
    open(path, "w").write("a file")
    try:
        export_saved_model(_model(), path, _batch())
    except Exception as e:
        if not os.path.isfile(path):
            return "data_loss"
        return "handled" if names_any(e, "not a directory") and names_any(e, path) else "poor_message"
    return "data_loss"


@case("export_dir under a file")
def export_dir_under_file(tmp):
    from keras_msa.export import export_saved_model

    path = os.path.join(tmp, "export")
    open(path, "w").write("a file")
    try:
        export_saved_model(_model(), os.path.join(path, "1"), _batch())
    except Exception as e:
        return "handled" if names_any(e, "is a file, not a directory") else "poor_message"
    return "silent_wrong"


@case("export of a model that was never built")
def export_unbuilt(tmp):
    from keras_msa.export import export_saved_model
    from keras_msa.models import LFDNN

    try:
        export_saved_model(LFDNN(), os.path.join(tmp, "u", "1"), _batch())
    except Exception as e:
        return "handled" if names_any(e, "never built", "not built") else "poor_message"
    return "silent_wrong"


@case("export with an example batch of other feature widths than the model")
def export_other_widths(tmp):
    import numpy as np

    from keras_msa.export import export_saved_model

    batch = _batch()
    batch["audio"] = np.zeros((4, 12, 7), "float32")
    try:
        export_saved_model(_model(), os.path.join(tmp, "w", "1"), batch)
    except Exception as e:
        return "handled" if names_any(e, "'audio'") and names_any(e, "5") else "poor_message"
    return "silent_wrong"


@case("export recipe --tolerance=-1")
def export_negative_tolerance(tmp):
    model_path = _model_file(tmp)
    rc, _, err = _recipe("export", f"--model_path={model_path}", f"--export_dir={tmp}/sm/1", "--tolerance=-1")
    if rc == 0:
        return "silent_wrong"
    return "handled" if names_any(err, "--tolerance must") else "poor_message"


# --------------------------------------------------- serving: what it accepts
def _nonfinite_serving(value):
    model, batch, fn = _served()
    batch["audio"][2, 3, 1] = value
    try:
        out = _call_raw(fn, batch)
    except Exception as e:
        return "handled" if names_any(e, "audio") and names_any(e, "[2, 3]") else "poor_message"
    import numpy as np

    return "silent_wrong" if np.all(np.isfinite(out["sentiment"])) else "poor_message"


@case("serving_default: NaN in a real step")
def serve_nan(tmp):
    return _nonfinite_serving(float("nan"))


@case("serving_default: +inf in a real step")
def serve_inf(tmp):
    return _nonfinite_serving(float("inf"))


@case("serving_default: -inf in a real step")
def serve_neg_inf(tmp):
    return _nonfinite_serving(float("-inf"))


def _nonfinite_keras(value, use_predict):
    import numpy as np

    model = _model()
    batch = _batch()
    batch["text"][1, 2, 0] = value
    try:
        out = model.predict(batch, verbose=0) if use_predict else model(batch)
    except Exception as e:
        return "handled" if names_any(e, "text") and names_any(e, "[1, 2]") else "poor_message"
    s = np.asarray(out["sentiment"])
    return "silent_wrong" if np.all(np.isfinite(s)) else "poor_message"


@case("Keras model(batch): NaN in a real step")
def keras_nan(tmp):
    return _nonfinite_keras(float("nan"), False)


@case("Keras predict: +inf in a real step")
def keras_predict_inf(tmp):
    return _nonfinite_keras(float("inf"), True)


@case("serving_default: -inf under the mask (padding) equals zeros there")
def serve_masked_inf(tmp):
    import numpy as np

    model, batch, fn = _served()
    batch["audio_mask"][2, 3:] = False
    clean = {k: v.copy() for k, v in batch.items()}
    clean["audio"][2, 3:] = 0.0
    batch["audio"][2, 3:] = -np.inf
    try:
        out = _call_raw(fn, batch)
    except Exception:
        return "poor_message"  # legal padding refused
    return _outputs_judgement(out, np.asarray(model(clean)["sentiment"]))


@case("Keras model(batch): NaN under the mask equals zeros there")
def keras_masked_nan(tmp):
    import numpy as np

    model = _model()
    batch = _batch()
    batch["vision_mask"][0, 5:] = False
    clean = {k: v.copy() for k, v in batch.items()}
    clean["vision"][0, 5:] = 0.0
    batch["vision"][0, 5:] = np.nan
    try:
        out = model(batch)
    except Exception:
        return "poor_message"
    return _outputs_judgement(out, np.asarray(model(clean)["sentiment"]))


@case("serving_default: text without batch axis (rank 2)")
def serve_rank2_text(tmp):
    _, batch, fn = _served()
    batch["text"] = batch["text"][0]
    try:
        _call_raw(fn, batch)
    except Exception as e:
        return "handled" if names_any(e, "text") and names_any(e, "16]", "[?,?,16]") else "poor_message"
    return "silent_wrong"


@case("serve_numpy: text without batch axis (rank 2)")
def serve_numpy_rank2_text(tmp):
    from keras_msa.export import serve_numpy

    _, batch, fn = _served()
    batch["text"] = batch["text"][0]
    try:
        serve_numpy(fn, batch)
    except Exception as e:
        return "handled" if names_any(e, "'text'") and names_any(e, "16") else "poor_message"
    return "silent_wrong"


@case("serving_default: audio of another feature width")
def serve_wrong_width(tmp):
    _, batch, fn = _served()
    batch["audio"] = batch["audio"][..., :2]
    try:
        _call_raw(fn, batch)
    except Exception as e:
        return "handled" if names_any(e, "tensor audio", "'audio'") else "poor_message"
    return "silent_wrong"


@case("serving function called with float64 audio")
def serve_float64(tmp):
    import tensorflow as tf

    _, batch, fn = _served()
    kwargs = {k: tf.constant(v) for k, v in batch.items()}
    kwargs["audio"] = tf.cast(kwargs["audio"], tf.float64)
    try:
        fn(**kwargs)
    except Exception as e:
        return "handled" if names_any(e, "'audio'") else "poor_message"
    return "handled"  # converted: float64 within float32 range is the same numbers


@case("serve_numpy: float64 audio beyond float32 range")
def serve_overflow(tmp):
    from keras_msa.export import serve_numpy

    _, batch, fn = _served()
    batch["audio"] = batch["audio"].astype("float64") * 1e300
    try:
        out = serve_numpy(fn, batch)
    except Exception as e:
        return "handled" if names_any(e, "'audio'") and names_any(e, "range", "float32") else "poor_message"
    import numpy as np

    return "silent_wrong" if np.all(np.isfinite(out["sentiment"])) else "poor_message"


@case("serving_default: vision with fewer rows than text")
def serve_batch_mismatch(tmp):
    _, batch, fn = _served()
    batch["vision"] = batch["vision"][:3]
    batch["vision_mask"] = batch["vision_mask"][:3]
    try:
        _call_raw(fn, batch)
    except Exception as e:
        return "handled" if names_any(e, "vision") and names_any(e, "batch size", "rows") else "poor_message"
    return "silent_wrong"


@case("serving_default: audio_mask shorter than audio")
def serve_mask_mismatch(tmp):
    _, batch, fn = _served()
    batch["audio_mask"] = batch["audio_mask"][:, :5]
    try:
        _call_raw(fn, batch)
    except Exception as e:
        return "handled" if names_any(e, "audio_mask") else "poor_message"
    return "silent_wrong"


@case("serve_numpy: a missing input key")
def serve_missing_key(tmp):
    from keras_msa.export import serve_numpy

    _, batch, fn = _served()
    del batch["vision"]
    try:
        serve_numpy(fn, batch)
    except Exception as e:
        return "handled" if names_any(e, "'vision'") else "poor_message"
    return "silent_wrong"


@case("serve_numpy: float mask of 0.5 values")
def serve_float_mask(tmp):
    import numpy as np

    from keras_msa.export import serve_numpy

    _, batch, fn = _served()
    batch["text_mask"] = np.full(batch["text_mask"].shape, 0.5, "float32")
    try:
        serve_numpy(fn, batch)
    except Exception as e:
        return "handled" if names_any(e, "'text_mask'") else "poor_message"
    return "silent_wrong"


@case("load_serving_fn on a directory that is not a SavedModel")
def load_serving_not_savedmodel(tmp):
    from keras_msa.export import load_serving_fn

    try:
        load_serving_fn(tmp)
    except Exception as e:
        return "handled" if names_any(e, tmp) else "poor_message"
    return "silent_wrong"


# -------------------------------------------------------- loading .keras
def _damaged_model(tmp, how):
    good = _model_file(os.path.join(tmp, "good"))
    path = os.path.join(tmp, "model.keras")
    data = open(good, "rb").read()
    if how == "truncated":
        open(path, "wb").write(data[: len(data) // 2])
    elif how == "random":
        open(path, "wb").write(os.urandom(4096))
    elif how == "empty":
        open(path, "wb").close()
    elif how == "bad_config":
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(path, "w") as zout:
            for item in zin.infolist():
                zout.writestr(item, b"{broken" if item.filename == "config.json" else zin.read(item.filename))
    elif how == "directory":
        os.makedirs(path)
    return path


def _evaluate_damaged(tmp, how, *needles):
    path = _damaged_model(tmp, how)
    rc, _, err = _recipe("evaluate", f"--model_path={path}", '--synthetic_sizes={"test": 16}')
    return _judge_failure(rc, err, *needles) if rc else "silent_wrong"


@case("evaluate: truncated .keras")
def evaluate_truncated(tmp):
    return _evaluate_damaged(tmp, "truncated", "not a valid .keras archive")


@case("evaluate: random bytes as .keras")
def evaluate_random(tmp):
    return _evaluate_damaged(tmp, "random", "not a valid .keras archive")


@case("evaluate: empty .keras")
def evaluate_empty(tmp):
    return _evaluate_damaged(tmp, "empty", "is empty")


@case("evaluate: .keras with a broken config.json")
def evaluate_bad_config(tmp):
    return _evaluate_damaged(tmp, "bad_config", "config.json is not valid JSON")


@case("evaluate: --model_path is a directory")
def evaluate_directory(tmp):
    return _evaluate_damaged(tmp, "directory", "is a directory")


@case("export: truncated .keras")
def export_truncated(tmp):
    path = _damaged_model(tmp, "truncated")
    rc, _, err = _recipe("export", f"--model_path={path}", f"--export_dir={tmp}/sm/1")
    return _judge_failure(rc, err, "not a valid .keras archive") if rc else "silent_wrong"


@case("evaluate: .keras carrying a Lambda layer (code)")
def evaluate_lambda(tmp):
    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2.0)(inputs))
    path = os.path.join(tmp, "model.keras")
    model.save(path)
    rc, _, err = _recipe("evaluate", f"--model_path={path}", '--synthetic_sizes={"test": 16}')
    if rc == 0:
        return "security"
    return "handled" if names_any(err, path) and names_any(err, "safe mode", "safe_mode") else "poor_message"


# ------------------------------------------------------------------ flags
@case("evaluate: bad JSON in --synthetic_sizes")
def evaluate_bad_json(tmp):
    path = _model_file(tmp)
    rc, _, err = _recipe("evaluate", f"--model_path={path}", "--synthetic_sizes={test: 16}")
    return _judge_failure(rc, err, "--synthetic_sizes") or "silent_wrong"


@case("train: bad JSON in --synthetic_sizes")
def train_bad_json(tmp):
    rc, _, err = _recipe("train", f"--output_dir={tmp}/run", "--synthetic_sizes={train: 16}", "--epochs=1")
    return _judge_failure(rc, err, "--synthetic_sizes") or "silent_wrong"


@case("train: negative size in --synthetic_sizes")
def train_negative_size(tmp):
    rc, _, err = _recipe("train", f"--output_dir={tmp}/run", '--synthetic_sizes={"train": -4, "valid": 8}',
                         "--epochs=1")
    return _judge_failure(rc, err, "--synthetic_sizes") or "silent_wrong"


@case("train: --batch_size=0")
def train_batch_size_zero(tmp):
    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import train

    try:
        train(TrainConfig(batch_size=0, synthetic_sizes={"train": 16, "valid": 8}, output_dir=f"{tmp}/run",
                          verbose=0, epochs=1))
    except Exception as e:
        return "handled" if names_any(e, "batch_size") else "poor_message"
    return "silent_wrong"


@case("evaluate: --split that the data do not have")
def evaluate_missing_split(tmp):
    path = _model_file(tmp)
    rc, _, err = _recipe("evaluate", f"--model_path={path}", '--synthetic_sizes={"test": 16}', "--split=dev")
    return _judge_failure(rc, err, "'dev'") or "silent_wrong"


@case("evaluate: model built for other feature widths than the data")
def evaluate_other_widths(tmp):
    path = _model_file(tmp)  # text 16 wide; the default synthetic text is 768
    rc, _, err = _recipe("evaluate", f"--model_path={path}", '--synthetic_sizes={"test": 16}')
    return _judge_failure(rc, err, "'text'") or "silent_wrong"


# ------------------------------------------------------------ checkpoints
def _checkpoints(tmp):
    import numpy as np

    from keras_msa.training.checkpointing import CheckpointDirectory

    ckpts = CheckpointDirectory(os.path.join(tmp, "c"), keep=3)
    for step in (1, 2, 3):
        ckpts.save(step, {"w": np.full(4, float(step))}, {"epoch": step})
    return ckpts


def _resume(ckpts):
    """What the custom loop does on a restart."""
    path = ckpts.latest()
    return ckpts.load(path)[1]


@case("checkpoint: truncated newest checkpoint")
def checkpoint_truncated(tmp):
    import warnings

    ckpts = _checkpoints(tmp)
    newest = ckpts.latest()
    data = open(newest, "rb").read()
    open(newest, "wb").write(data[: len(data) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            meta = _resume(ckpts)
        except Exception:
            return "poor_message"  # the resume is blocked
    warned = any(names_any(w.message, os.path.basename(newest)) for w in caught)
    return "handled" if meta["epoch"] == 2 and warned else "silent_wrong"


@case("checkpoint: one flipped byte in the newest checkpoint")
def checkpoint_flipped(tmp):
    import numpy as np

    ckpts = _checkpoints(tmp)
    newest = ckpts.latest()
    data = bytearray(open(newest, "rb").read())
    i = bytes(data).index(np.full(4, 3.0).tobytes())
    data[i] ^= 0xFF
    open(newest, "wb").write(bytes(data))
    try:
        meta = _resume(ckpts)
    except Exception:
        return "poor_message"
    return "handled" if meta["epoch"] == 2 else "silent_wrong"


@case("checkpoint: every checkpoint unreadable")
def checkpoint_all_bad(tmp):
    ckpts = _checkpoints(tmp)
    for path in ckpts.paths():
        open(path, "wb").close()
    try:
        _resume(ckpts)
    except Exception as e:
        return "handled" if names_any(e, "ckpt-0000000001.npz") and names_any(e, "ckpt-0000000003.npz") \
            else "poor_message"
    return "silent_wrong"


@case("train: resume a checkpointed run whose newest checkpoint is damaged")
def train_resume_corrupt(tmp):
    import glob

    import keras

    from keras_msa.training.runner import TrainConfig
    from keras_msa.training.runner import train

    config = TrainConfig(model_config={"hidden_dims": {"text": 8, "audio": 4, "vision": 4}, "fusion_dim": 8},
                         epochs=2, batch_size=16, synthetic_sizes={"train": 32, "valid": 16, "test": 16},
                         synthetic_options={"seq_len": 12, "min_len": 12, "text_dim": 16, "window": 4,
                                            "offset": 1, "compute_text_only_floor": False},
                         checkpoint_every_steps=1, keep_checkpoints=3, output_dir=os.path.join(tmp, "run"),
                         verbose=0)
    train(config)
    newest = sorted(glob.glob(os.path.join(tmp, "run", "checkpoints", "ckpt-*.npz")))[-1]
    open(newest, "wb").write(b"PK\x03\x04 damaged")
    keras.backend.clear_session()
    try:
        results, _ = train(config)
    except Exception:
        return "poor_message"
    return "handled" if results.get("resumed_from") and results["resumed_from"] != os.path.basename(newest) \
        else "silent_wrong"


# ------------------------------------------------------------------ runner
def _small_config(tmp, **kw):
    from keras_msa.training.runner import TrainConfig

    base = dict(model_config={"hidden_dims": {"text": 8, "audio": 4, "vision": 4}, "fusion_dim": 8}, epochs=1,
                batch_size=16, synthetic_sizes={"train": 32, "valid": 16, "test": 16},
                synthetic_options={"seq_len": 12, "min_len": 12, "text_dim": 16, "window": 4, "offset": 1,
                                   "compute_text_only_floor": False},
                output_dir=os.path.join(tmp, "run"), verbose=0)
    base.update(kw)
    return TrainConfig(**base)


def _train_refusal(tmp, config, datasets=None, info=None, *needles):
    from keras_msa.training.runner import train

    try:
        train(config, datasets, info)
    except Exception as e:
        trained = os.path.exists(os.path.join(tmp, "run", "history.csv"))
        return "handled" if names_any(e, *needles) and not trained else "poor_message"
    return "silent_wrong"


@case("train: empty validation split")
def train_empty_valid(tmp):
    from keras_msa.training.runner import load_data

    config = _small_config(tmp)
    datasets, info = load_data(config)
    datasets["valid"] = datasets["valid"].take(0)
    return _train_refusal(tmp, config, datasets, dict(info, sizes={}), "'valid'")


@case("train: a validation split of one sample")
def train_one_valid(tmp):
    return _train_refusal(tmp, _small_config(tmp, synthetic_sizes={"train": 32, "valid": 1, "test": 16}),
                          None, None, "'valid'")


@case("train: no validation or test split")
def train_no_valid(tmp):
    return _train_refusal(tmp, _small_config(tmp, synthetic_sizes={"train": 32}), None, None, "'valid'")


@case("train: --output_dir under a file")
def train_output_under_file(tmp):
    open(os.path.join(tmp, "taken"), "w").write("x")
    from keras_msa.training.runner import train

    try:
        train(_small_config(tmp, output_dir=os.path.join(tmp, "taken", "run")))
    except Exception as e:
        return "handled" if names_any(e, "--output_dir") else "poor_message"
    return "silent_wrong"


if __name__ == "__main__":
    harness.main(__name__, os.path.abspath(__file__))
