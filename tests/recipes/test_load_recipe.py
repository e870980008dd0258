"""The `load_recipe` fixture (tests/conftest.py): recipes that define the same
absl flag on the one global FLAGS load one after the other, in any order."""

from absl import flags


def _parse(argv):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)


def test_two_recipes_defining_the_same_flag_load_one_after_the_other(load_recipe):
    # import_mmsa.py and train.py both define --model, with different defaults.
    load_recipe("import_mmsa")
    _parse(["import_mmsa.py", "--model=tfn", "--checkpoint=a.pth", "--output=a.keras"])
    assert (flags.FLAGS.model, flags.FLAGS.checkpoint) == ("tfn", "a.pth")

    train = load_recipe("train")
    # import_mmsa's flags are gone, train's are live, absl's own survive.
    assert "checkpoint" not in flags.FLAGS and "model_config" in flags.FLAGS and "verbosity" in flags.FLAGS
    _parse(["train.py"])
    assert flags.FLAGS.model == "lfdnn"
    _parse(["train.py", "--model=mult", "--epochs=3"])
    assert train.config_from_flags().model == "mult"

    # And back again: a recipe loads a second time after another one.
    load_recipe("import_mmsa")
    assert "model_config" not in flags.FLAGS
    _parse(["import_mmsa.py", "--checkpoint=b.pth", "--output=b.keras"])
    assert (flags.FLAGS.model, flags.FLAGS.checkpoint) == ("mult", "b.pth")
    flags.FLAGS.unparse_flags()

