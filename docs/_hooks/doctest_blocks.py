"""mkdocs hook: doctest examples in docstrings render as code.

The docstrings write their runnable examples as bare doctest lines after an
`Example:` line (so `python -m doctest` and readers of the source see plain
Python). Markdown would read `>>>` as nested quotes and `x["a"]["b"]` as a
reference link (which `--strict` then reports as a broken cross-reference), so
each doctest block, its `...` continuations and its expected output, is fenced
as `pycon` before Markdown sees it. Registered before mkdocstrings configures
its renderer, so docstrings get it too.
"""

import re

import mkdocs.plugins
from markdown import Extension
from markdown.preprocessors import Preprocessor

_FENCE = re.compile(r"^\s*(```|~~~)")
_PROMPT = re.compile(r"^(\s*)>>>( |$)")


class _DoctestFence(Preprocessor):
    def run(self, lines):
        out, in_fence, i = [], False, 0
        while i < len(lines):
            line = lines[i]
            if _FENCE.match(line):
                in_fence = not in_fence
            prompt = None if in_fence else _PROMPT.match(line)
            if prompt is None:
                out.append(line)
                i += 1
                continue
            indent = prompt.group(1)
            block = []
            # A doctest block runs to the first blank line (its output included).
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
                i += 1
            if out and out[-1].strip():
                out.append("")
            out += [f"{indent}```pycon"] + [indent + b for b in block] + [f"{indent}```", ""]
        return out


class DoctestFenceExtension(Extension):
    def extendMarkdown(self, md):
        # Before fenced_code (priority 25) so the fences are parsed as code.
        md.preprocessors.register(_DoctestFence(md), "keras_msa_doctest_fence", 29)


@mkdocs.plugins.event_priority(100)
def on_config(config):
    config.markdown_extensions.append(DoctestFenceExtension())
    return config
