"""Console entry points: `keras-msa-train`, `keras-msa-evaluate`,
`keras-msa-export` and `keras-msa-convert` run `recipes/train.py`,
`evaluate.py`, `export.py` and `convert.py` with the same flags.

The recipes stay the single source of truth: the wheel ships them as the
package `keras_msa_recipes` (see setup.py); in a source checkout that was not
installed, they are run from the checkout's `recipes/` folder.
"""

import importlib.util
import os
import runpy
import sys

_HELP_FLAGS = {"--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml"}
_RECIPES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")


def recipe_location(name):
    """("module", "keras_msa_recipes.<name>") when the recipe is installed,
    else ("path", "<checkout>/recipes/<name>.py")."""
    module = f"keras_msa_recipes.{name}"
    try:
        if importlib.util.find_spec(module) is not None:
            return "module", module
    except ModuleNotFoundError:
        pass
    path = os.path.join(_RECIPES_DIR, f"{name}.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"keras_msa recipe {name!r}: neither the installed module {module} nor {path} "
            "exists; reinstall keras_msa to get its recipes."
        )
    return "path", path


def run_recipe(name, argv=None):
    """Runs recipe `name` exactly as `python recipes/<name>.py ARGS` would: as
    `__main__`, so absl's --help shows its docstring and flags. `argv` (the
    arguments after the program name) defaults to the command line's."""
    if argv is not None:
        sys.argv = [sys.argv[0]] + list(argv)
    help_asked = bool(set(sys.argv[1:]) & _HELP_FLAGS)
    kind, where = recipe_location(name)
    try:
        if kind == "module":
            runpy.run_module(where, run_name="__main__", alter_sys=True)
        else:
            sys.argv[0] = where
            runpy.run_path(where, run_name="__main__")
    except SystemExit as e:
        # absl exits 1 after printing the help it was asked for; for a console
        # script, shown help is success (shells and `&&` chains rely on it).
        if help_asked and e.code == 1:
            raise SystemExit(0) from None
        raise


def train(argv=None):
    """`keras-msa-train`: recipes/train.py."""
    run_recipe("train", argv)


def evaluate(argv=None):
    """`keras-msa-evaluate`: recipes/evaluate.py."""
    run_recipe("evaluate", argv)


def export(argv=None):
    """`keras-msa-export`: recipes/export.py."""
    run_recipe("export", argv)


def convert(argv=None):
    """`keras-msa-convert`: recipes/convert.py."""
    run_recipe("convert", argv)
