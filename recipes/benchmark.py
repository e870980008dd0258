"""Benchmark a keras_msa model: parameters, training and inference speed, memory.

    python recipes/benchmark.py --model=lfdnn
    python recipes/benchmark.py --model=eflstm --preset=mosi --xla=off --json_out=eflstm.json
    python recipes/benchmark.py --model=lfdnn --model_config='{"fusion_dim": 256}'
    python recipes/benchmark.py --model=mulg --lens=50,375,500 --train_batch_size=32
    python recipes/benchmark.py --model=misa --preset=mosi --optimizer=protocol \
        --bert_config='{"vocabulary_size": 30522, "num_layers": 12, "num_heads": 12, "hidden_dim": 768,
                        "intermediate_dim": 3072, "max_sequence_length": 512}'

For the side-by-side figure against the PyTorch reference framework see
`benchmarks/peer_benchmark.py`.

The model is built at MOSI shapes (text 50x768, audio 50x5, vision 50x20 by
default) on synthetic data and timed with and without XLA (`jit_compile`):
training samples/s (`train_on_batch` after warm-up), inference latency at
batch 1 (median ms), throughput at `--batch_size` (samples/s), and peak
memory (process RSS; TensorFlow's allocator peak on a GPU). See
`keras_msa/training/benchmark.py` for exactly what each number measures.
Prints a table; `--json_out` also writes every number as JSON.
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lfdnn", "Registered model name (see keras_msa.models.available_models()).")
flags.DEFINE_string("preset", None, "Paper preset of the model (e.g. mosi).")
flags.DEFINE_string("model_config", "{}", "JSON dict of constructor overrides.")
flags.DEFINE_integer("steps", 20, "Timed training steps per mode.")
flags.DEFINE_integer("warmup", 3, "Untimed warm-up steps/calls per mode (tracing, XLA compilation).")
flags.DEFINE_integer("repeats", 50, "Timed inference calls per measurement.")
flags.DEFINE_integer("batch_size", 64, "Training and throughput batch size.")
flags.DEFINE_integer("seq_len", 50, "Time steps of every modality (see --lens for one length each).")
flags.DEFINE_string("lens", None, "Per-modality lengths 'text,audio,vision', e.g. 50,375,500 (MOSI "
                    "unaligned); replaces --seq_len and times on noise features with every step real.")
flags.DEFINE_integer("train_batch_size", None, "Training batch when it differs from --batch_size "
                     "(the peer benchmark trains at 32 and measures throughput at 64).")
flags.DEFINE_integer("text_dim", 768, "Text feature size (MOSI BERT: 768).")
flags.DEFINE_integer("audio_dim", 5, "Audio feature size (MOSI COVAREP subset: 5).")
flags.DEFINE_integer("vision_dim", 20, "Vision feature size (MOSI Facet: 20).")
flags.DEFINE_bool("aligned", True, "One shared time axis (aligned) or per-modality timelines.")
flags.DEFINE_enum("xla", "both", ["both", "on", "off"], "Which jit_compile modes to time.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate in the timed training steps.")
flags.DEFINE_integer("seed", 0, "Seed of the weights and the synthetic data.")
flags.DEFINE_string("json_out", None, "Also write the results to this JSON file.")
flags.DEFINE_string("bert_config", None, "JSON keras-hub BertBackbone arguments: the model gets a random BERT "
                    "text backbone of that shape (MISA, Self-MM, MAG-BERT, MMIM) and token ids as text.")
flags.DEFINE_enum("optimizer", "adam", ["adam", "protocol"], "adam: Adam at --learning_rate; protocol: the "
                  "optimizer recipes/train.py builds from the --preset's training protocol (parameter "
                  "groups, weight decay, clipping, gradient accumulation).")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"],
                  "Keras dtype policy the model is built under (float16 adds loss scaling).")


def main(argv):
    del argv
    from keras_msa.models import available_models
    from keras_msa.training.benchmark import format_table
    from keras_msa.training.benchmark import run_benchmark

    if FLAGS.model.lower() not in available_models():
        raise app.UsageError(
            f"Unknown --model={FLAGS.model}; registered models: {', '.join(available_models())}."
        )
    try:
        model_config = json.loads(FLAGS.model_config or "{}")
    except json.JSONDecodeError as e:
        raise app.UsageError(f"--model_config is not valid JSON ({e}): {FLAGS.model_config}")
    if not isinstance(model_config, dict):
        raise app.UsageError(f"--model_config must be a JSON object; got {FLAGS.model_config}")

    bert_config = None
    if FLAGS.bert_config:
        try:
            bert_config = json.loads(FLAGS.bert_config)
        except json.JSONDecodeError as e:
            raise app.UsageError(f"--bert_config is not valid JSON ({e}): {FLAGS.bert_config}")
        if not isinstance(bert_config, dict) or "vocabulary_size" not in bert_config:
            raise app.UsageError(f"--bert_config must be a JSON object of BertBackbone arguments with "
                                 f"vocabulary_size; got {FLAGS.bert_config}")

    if FLAGS.lens:
        from keras_msa.training.benchmark import parse_lens

        try:
            parse_lens(FLAGS.lens)
        except ValueError as e:
            raise app.UsageError(f"--lens: {e}")

    from keras_msa.training.precision import precision_policy

    with precision_policy(FLAGS.mixed_precision):
        result = _run(run_benchmark, model_config, bert_config)
    print(format_table(result))
    print(f"(dtype policy: {FLAGS.mixed_precision})")
    result["mixed_precision"] = FLAGS.mixed_precision
    if FLAGS.json_out:
        directory = os.path.dirname(os.path.abspath(FLAGS.json_out))
        os.makedirs(directory, exist_ok=True)
        with open(FLAGS.json_out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"\nWrote {FLAGS.json_out}")


def _run(run_benchmark, model_config, bert_config=None):
    from keras_msa.training.benchmark import parse_lens

    return run_benchmark(
        FLAGS.model,
        preset=FLAGS.preset,
        model_config=model_config,
        batch_size=FLAGS.batch_size,
        seq_len=FLAGS.seq_len,
        xla=FLAGS.xla,
        steps=FLAGS.steps,
        warmup=FLAGS.warmup,
        repeats=FLAGS.repeats,
        text_dim=FLAGS.text_dim,
        audio_dim=FLAGS.audio_dim,
        vision_dim=FLAGS.vision_dim,
        aligned=FLAGS.aligned,
        seed=FLAGS.seed,
        lens=parse_lens(FLAGS.lens) if FLAGS.lens else None,
        train_batch_size=FLAGS.train_batch_size,
        learning_rate=FLAGS.learning_rate,
        bert_config=bert_config,
        optimizer=FLAGS.optimizer,
    )


if __name__ == "__main__":
    app.run(main)
