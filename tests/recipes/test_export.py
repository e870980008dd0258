"""recipes/export.py: exporting into the run directory (or with a damaged
model) is refused before anything is deleted."""

import os
import subprocess
import sys

import keras

from keras_msa.models import LFDNN
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _export(*flags):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(ROOT, "recipes", "export.py"), *flags],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_export_into_the_run_directory_is_refused_and_keeps_the_model(tmp_path):
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 2)
    keras.utils.set_random_seed(0)
    model = LFDNN(hidden_dims={"text": 8, "audio": 4, "vision": 4}, fusion_dim=8)
    model(batch)
    run = tmp_path / "runs" / "lfdnn"
    run.mkdir(parents=True)
    model.save(str(run / "model.keras"))
    (run / "metrics.json").write_text("{}")
    before = (run / "model.keras").read_bytes()
    proc = _export(f"--model_path={run / 'model.keras'}", f"--export_dir={run}", "--overwrite")
    assert proc.returncode != 0
    assert "holds the model being exported" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (run / "model.keras").read_bytes() == before and (run / "metrics.json").exists()
    assert sorted(p.name for p in run.parent.iterdir()) == ["lfdnn"]
