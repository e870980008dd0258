"""recipes/crosssent_mosi_text.py --seeds: one fine-tuning per seed in its
own directory, the test statistics over them, and a resumed grid that reads
finished seeds back (the fine-tuning itself is replaced by a stand-in whose
metrics depend on the seed; the MiniLM fine-tuning is covered by
tests/models/test_text_backbone_mode.py)."""

import json
import os

import numpy as np
import pytest
from absl import flags


@pytest.fixture()
def recipe(load_recipe, monkeypatch):
    module = load_recipe("crosssent_mosi_text")
    calls = []

    def fake_fine_tune(data, preset, output_dir, seed):
        calls.append(seed)
        mae = 1.0 + 0.01 * (seed - 1111)
        metrics = {"mae": mae, "acc2_non0": 0.8 - 0.01 * (seed - 1111)}
        return {"valid": metrics, "test": metrics, "best_epoch": 2, "train_seconds": 1.0}

    monkeypatch.setattr(module, "fine_tune_crosssent", fake_fine_tune)
    module.calls = calls
    yield module
    flags.FLAGS.unparse_flags()


def _parse(*argv):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["crosssent_mosi_text.py", *argv])


def test_seeds_run_once_each_summarise_and_resume(recipe, tmp_path):
    out = str(tmp_path / "grid")
    _parse(f"--output_dir={out}", "--seeds=1111,1112,1113", "--model=tecafn", "--epochs=3")
    summary = recipe.run_seeds({}, "preset", [1111, 1112, 1113])
    assert recipe.calls == [1111, 1112, 1113]
    maes = np.array([1.0, 1.01, 1.02])
    assert summary["test"]["mae"]["mean"] == pytest.approx(maes.mean())
    assert summary["test"]["mae"]["std"] == pytest.approx(maes.std(ddof=1))
    # 95% Student-t with 2 degrees of freedom: t = 4.3027.
    assert summary["test"]["mae"]["half_width"] == pytest.approx(4.302653 * maes.std(ddof=1) / np.sqrt(3), rel=1e-5)
    for seed in (1111, 1112, 1113):
        with open(os.path.join(out, f"seed_{seed}", "results.json")) as f:
            run = json.load(f)
        assert run["seed"] == seed and run["flags"]["model"] == "tecafn" and run["flags"]["epochs"] == 3
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["seeds"] == [1111, 1112, 1113]
    with open(os.path.join(out, "summary.md")) as f:
        table = f.read()
    assert "| mae | 1.0100 |" in table and "3 seeds (1111, 1112, 1113)" in table

    # Run again: every seed is read back, nothing fine-tuned twice.
    recipe.run_seeds({}, "preset", [1111, 1112, 1113])
    assert recipe.calls == [1111, 1112, 1113]

    # Other settings are another run: the seed is fine-tuned again.
    _parse(f"--output_dir={out}", "--seeds=1111", "--model=tecafn", "--epochs=4")
    recipe.run_seeds({}, "preset", [1111])
    assert recipe.calls == [1111, 1112, 1113, 1111]
