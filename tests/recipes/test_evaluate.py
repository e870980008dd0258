"""`evaluate_saved_model` (what recipes/evaluate.py runs): clear errors for a
damaged model file, a split that does not exist, and data of other widths."""

import keras
import pytest

from keras_msa.data.validation import BatchValidationError
from keras_msa.models import LFDNN
from keras_msa.testing import small_batch
from keras_msa.testing import tiny_synthetic
from keras_msa.training.runner import TrainConfig
from keras_msa.training.runner import evaluate_saved_model
from keras_msa.utils.loading import ModelFileError

SYNTHETIC = {"seq_len": 12, "min_len": 12, "text_dim": 16, "window": 4, "offset": 1,
             "compute_text_only_floor": False}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    batch = small_batch(tiny_synthetic(train=8, valid=8, test=8)["train"], 2)
    keras.utils.set_random_seed(0)
    model = LFDNN(hidden_dims={"text": 8, "audio": 4, "vision": 4}, fusion_dim=8)
    model(batch)
    path = str(tmp_path_factory.mktemp("run") / "model.keras")
    model.save(path)
    return path


def _config(**options):
    return TrainConfig(batch_size=16, synthetic_sizes={"train": 16, "valid": 8, "test": 16},
                       synthetic_options=dict(SYNTHETIC, **options))


def test_evaluates_and_refuses_what_it_cannot_evaluate(model_path, tmp_path):
    report = evaluate_saved_model(model_path, _config(), "test")
    assert report["split"] == "test" and 0 < report["metrics"]["mae"] < 10
    with pytest.raises(ValueError, match=r"--data=synthetic has no split 'dev' \(--split\); it has "
                                         r"\['test', 'train', 'valid'\]"):
        evaluate_saved_model(model_path, _config(), "dev")
    with pytest.raises(BatchValidationError, match=r"Wrong feature width for 'text' in --data=synthetic split "
                                                   r"'test'.*expected \[batch, time, 16\], got \[16, 12, 24\]"):
        evaluate_saved_model(model_path, _config(text_dim=24), "test")
    broken = tmp_path / "model.keras"
    broken.write_bytes(open(model_path, "rb").read()[:1000])
    with pytest.raises(ModelFileError, match=rf"--model_path={broken} is not a valid \.keras archive"):
        evaluate_saved_model(str(broken), _config(), "test")
    with pytest.raises(ValueError, match=r"--batch_size must be an integer >= 1"):
        evaluate_saved_model(model_path, TrainConfig(batch_size=0), "test")


def test_evaluate_recipe_names_bad_flags_and_files(load_recipe, model_path, tmp_path):
    from absl import app
    from absl import flags

    module = load_recipe("evaluate")

    def run(*argv):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["evaluate.py", *argv])
        module.main([])

    with pytest.raises(app.UsageError, match=r"--synthetic_sizes is not valid JSON \(Expecting property name"):
        run(f"--model_path={model_path}", "--synthetic_sizes={test: 16}")
    with pytest.raises(app.UsageError, match=r"--synthetic_options must be a JSON object; got list"):
        run(f"--model_path={model_path}", "--synthetic_options=[16]")
    (tmp_path / "dir.keras").mkdir()
    with pytest.raises(SystemExit, match=r"--model_path=.*dir.keras is a directory, not a \.keras file"):
        run(f"--model_path={tmp_path / 'dir.keras'}")
