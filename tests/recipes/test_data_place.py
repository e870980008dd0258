"""One documented place for converted data (`data/<name>`): the README, the
docs, the dataset cards and every recipe's --help agree, and none points into
the repository's `datasets/` cards folder or /tmp."""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# --output / --data of the convert, feature and training commands in the docs.
DATA_FLAG = re.compile(r"recipes/(?:convert|extract_text_features|train|evaluate|tune)\.py[^\n]*?--(?:output|data)=(\S+)")
PLACE = re.compile(r"--(?:output|data)=(\S+)")


def _documents():
    return ([os.path.join(ROOT, "README.md"), os.path.join(ROOT, "docs", "data.md")]
            + sorted(glob.glob(os.path.join(ROOT, "datasets", "*", "README.md"))))


def test_the_default_place_is_data_name():
    from keras_msa.data import DATA_PLACE

    assert DATA_PLACE == "data/<name>"


def test_docs_and_dataset_cards_use_the_default_place():
    seen = 0
    for path in _documents():
        text = open(path, encoding="utf-8").read()
        for line in text.splitlines():
            if not DATA_FLAG.search(line):
                continue
            for value in PLACE.findall(line):
                if value == "synthetic" or value.startswith(("runs/", "/tmp/runs/")):
                    continue
                seen += 1
                assert value.startswith("data/"), f"{os.path.relpath(path, ROOT)}: {line.strip()}"
    # The README, docs/data.md and the six cards hold conversion commands.
    assert seen >= 15, seen
    assert "data/<name>" in open(os.path.join(ROOT, "docs", "data.md"), encoding="utf-8").read()


@pytest.mark.parametrize("recipe", ["convert", "train", "evaluate", "tune", "extract_text_features",
                                    "plot_attention"])
def test_every_recipe_help_names_the_default_place(recipe):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "recipes", f"{recipe}.py"), "--helpshort"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    # absl names each flag's module by its full path: a checkout under /tmp
    # (git clone . /tmp/fresh) must not read as the help pointing into /tmp.
    text = (out.stdout + out.stderr).replace(ROOT, "<repo>")
    assert "data/<name>" in text, text[-2000:]
    # The only mention of datasets/ is the warning against it.
    assert "datasets/" not in text.replace("repository's datasets/", "") and "/tmp/" not in text, text[-2000:]
