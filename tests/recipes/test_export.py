"""recipes/export.py: exporting into the run directory (or with a damaged
model, or a negative tolerance) is refused before anything is deleted."""

import keras
import pytest
from absl import app
from absl import flags

from keras_msa.models import LFDNN
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic


@pytest.fixture(scope="module")
def export_recipe(load_recipe):
    module = load_recipe("export")

    def run(*argv):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["export.py", *argv])
        module.main([])

    return run


def _save_model(path):
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 2)
    keras.utils.set_random_seed(0)
    model = LFDNN(hidden_dims={"text": 8, "audio": 4, "vision": 4}, fusion_dim=8)
    model(batch)
    model.save(str(path))


def test_export_into_the_run_directory_is_refused_and_keeps_the_model(tmp_path, export_recipe):
    run = tmp_path / "runs" / "lfdnn"
    run.mkdir(parents=True)
    _save_model(run / "model.keras")
    (run / "metrics.json").write_text("{}")
    before = (run / "model.keras").read_bytes()
    for extra in ([], ["--overwrite"]):
        with pytest.raises(SystemExit, match="holds the model being exported"):
            export_recipe(f"--model_path={run / 'model.keras'}", f"--export_dir={run}", *extra)
    assert (run / "model.keras").read_bytes() == before and (run / "metrics.json").exists()
    assert sorted(p.name for p in run.parent.iterdir()) == ["lfdnn"]
    with pytest.raises(app.UsageError, match=r"--tolerance must be a finite number >= 0; got -1.0"):
        export_recipe(f"--model_path={run / 'model.keras'}", f"--export_dir={tmp_path / 'sm' / '1'}",
                      "--tolerance=-1")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(before[: len(before) // 3])
    with pytest.raises(SystemExit, match=rf"--model_path={broken} is not a valid \.keras archive"):
        export_recipe(f"--model_path={broken}", f"--export_dir={tmp_path / 'sm' / '1'}")
    assert not (tmp_path / "sm").exists()
