"""mkdocs hook: the API pages list what the package holds, not a copy of it.

A line `<!-- api: exports keras_msa.layers -->` becomes one `::: keras_msa.layers.<Name>`
block per name that `keras_msa/layers/__init__.py` imports (the package's public
API); `<!-- api: modules keras_msa.training -->` becomes one `::: keras_msa.training.<module>`
block per module file of the package. A layer, model or module added later is
documented without editing docs/, and its docstring is checked by the strict
build from its first commit.
"""

import ast
import os
import re

_DIRECTIVE = re.compile(r"^<!-- api: (exports|modules) (keras_msa(?:\.\w+)*)(?: except ([\w ,]+))? -->$", re.M)
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def package_dir(package):
    return os.path.join(_ROOT, *package.split("."))


def exported_names(package):
    """Names imported by the package's `__init__.py`, in source order."""
    with open(os.path.join(package_dir(package), "__init__.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return [a.asname or a.name for node in tree.body if isinstance(node, ast.ImportFrom) for a in node.names]


def module_names(package, skip=()):
    """The package's module files (without `__init__`), sorted."""
    return sorted(
        f[:-3] for f in os.listdir(package_dir(package))
        if f.endswith(".py") and f != "__init__.py" and f[:-3] not in skip
    )


def expand(markdown):
    def replace(match):
        kind, package, skip = match.group(1), match.group(2), match.group(3)
        skip = {s.strip() for s in (skip or "").split(",") if s.strip()}
        names = exported_names(package) if kind == "exports" else module_names(package, skip)
        if not names:
            raise ValueError(f"docs: `{match.group(0)}` found nothing under {package_dir(package)}")
        return "\n".join(f"::: {package}.{n}\n" for n in names)

    return _DIRECTIVE.sub(replace, markdown)


def on_page_markdown(markdown, **kwargs):
    return expand(markdown)
