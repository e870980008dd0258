"""tf.distribute: MirroredStrategy over two logical CPUs, and two worker
processes under MultiWorkerMirroredStrategy (TF_CONFIG on 127.0.0.1)."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

from keras_msa.training.distributed import make_strategy
from keras_msa.training.distributed import steps_for
from keras_msa.training.distributed import worker_info

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_DATA = ['--synthetic_sizes={"train": 128, "valid": 32, "test": 32}',
             '--synthetic_options={"seq_len": 12, "min_len": 12, "text_dim": 16, "window": 4, "offset": 1, '
             '"compute_text_only_floor": false}',
             '--model_config={"hidden_dims": {"text": 8, "audio": 4, "vision": 4}, "fusion_dim": 8}']


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update({"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"})
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_strategy_names_and_errors(monkeypatch):
    assert make_strategy("default").num_replicas_in_sync == 1
    assert worker_info(make_strategy("default")) == (0, True)
    with pytest.raises(ValueError, match="Unknown strategy 'tpu'"):
        make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        make_strategy("multi_worker")


def test_steps_for():
    assert steps_for(100, 32, False) == 4 and steps_for(100, 32, True) == 3
    with pytest.raises(ValueError, match="fewer than one global batch"):
        steps_for(10, 32, True)


MIRRORED_SCRIPT = textwrap.dedent('''
    import json
    from keras_msa.training.distributed import configure_logical_cpus
    configure_logical_cpus(2)
    import keras, numpy as np, tensorflow as tf
    from keras_msa.models import LFDNN
    from keras_msa.testing import tiny_synthetic
    from keras_msa.training.distributed import CustomLoop, make_strategy

    bench = tiny_synthetic(train=64, valid=8, test=8)
    ds = bench["train"].to_tf_dataset(16)
    first = next(iter(ds))[0]

    def build():
        keras.utils.set_random_seed(0)
        m = LFDNN(hidden_dims={"text": 8, "audio": 4, "vision": 4}, fusion_dim=8, dropout=0.0)
        m(first)
        m.compile(optimizer=keras.optimizers.SGD(0.1))
        return m

    single = build()
    strategy = make_strategy("mirrored")
    with strategy.scope():
        mirrored = build()
    for a, b in zip(mirrored.variables, single.variables):
        a.assign(np.asarray(b))
    h1 = CustomLoop(single).fit(lambda e: ds, steps_per_epoch=4, epochs=3)
    h2 = CustomLoop(mirrored, strategy).fit(lambda e: ds, steps_per_epoch=4, epochs=3)
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
               for a, b in zip(mirrored.trainable_variables, single.trainable_variables))
    v = mirrored.trainable_variables[0].value
    print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                      "devices": sorted(d.device for d in v.values) if hasattr(v, "values") else [],
                      "max_weight_diff": diff,
                      "loss_single": [h["loss"] for h in h1], "loss_mirrored": [h["loss"] for h in h2]}))
''')


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus_matches_one_device():
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True,
                          timeout=240, cwd=ROOT, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert len(out["devices"]) == 2 and all("CPU" in d for d in out["devices"]), out["devices"]
    # Each replica takes half of every global batch; with the loss divided by
    # the replica count the summed gradients equal one device's.
    assert out["max_weight_diff"] < 1e-5, out
    np.testing.assert_allclose(out["loss_mirrored"], out["loss_single"], rtol=1e-5)
    assert out["loss_mirrored"][-1] < out["loss_mirrored"][0]
    print(f"mirrored test: {time.time() - start:.1f} s")


@pytest.mark.slow
def test_recipe_trains_under_mirrored_strategy(tmp_path):
    out_dir = tmp_path / "mirrored"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "recipes", "train.py"), "--strategy=mirrored",
         "--logical_cpu_devices=2", "--epochs=4", "--batch_size=16", "--learning_rate=0.01",
         f"--output_dir={out_dir}", "--verbose=0"] + TINY_DATA,
        capture_output=True, text=True, timeout=240, cwd=ROOT, env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["num_replicas"] == 2 and metrics["loop"] == "custom" and metrics["strategy"] == "mirrored"
    from keras_msa.training.history import read_history_csv

    loss = read_history_csv(str(out_dir / "history.csv"))["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0], loss


@pytest.mark.slow
def test_two_workers_end_with_identical_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out_dir = tmp_path / "mw"
    cmd = [sys.executable, os.path.join(ROOT, "recipes", "train.py"), "--strategy=multi_worker",
           "--epochs=5", "--batch_size=16", "--learning_rate=0.01", f"--output_dir={out_dir}",
           "--verbose=0"] + TINY_DATA
    start = time.time()
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         env=_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    wall = time.time() - start
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    print(f"two-worker test wall time: {wall:.1f} s")

    chief = keras.saving.load_model(str(out_dir / "model.keras"))
    worker = keras.saving.load_model(str(out_dir / "worker_1" / "model.keras"))
    for a, b in zip(chief.weights, worker.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    m0 = json.loads((out_dir / "metrics.json").read_text())
    m1 = json.loads((out_dir / "worker_1" / "metrics.json").read_text())
    assert m0["num_replicas"] == 2 and m0["loop"] == "custom"
    assert m0["test"] == m1["test"]
    from keras_msa.training.history import read_history_csv

    loss = read_history_csv(str(out_dir / "history.csv"))["loss"]
    assert loss[-1] < loss[0], loss
