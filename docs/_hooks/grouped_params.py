"""Griffe extension: `a, b, c: description` entries in an `Args:` section.

The docstrings of this project document parameters that share a meaning on
one line (`use_gmra, use_mpr, use_eioi: ablation switches ...`, possibly with
the names running over several lines). Griffe's Google parser reads one name
per entry, so before parsing each such entry becomes one entry per name: the
first carries the description, the others point to it. Every name must still
be in the signature: a renamed or removed parameter fails `mkdocs build
--strict`.
"""

import re

import griffe

_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Other Parameters):\s*$")
_NAME_LIST = r"\**[A-Za-z_]\w*(?:\s*,\s*\**[A-Za-z_]\w*)*"


def _indent(line):
    return len(line) - len(line.lstrip())


def split_grouped_params(text):
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        header = _SECTION.match(lines[i])
        out.append(lines[i])
        i += 1
        if not header:
            continue
        base = len(header.group(1))
        item = None
        while i < len(lines):
            line = lines[i]
            if line.strip() and _indent(line) <= base:
                break
            if not line.strip():
                out.append(line)
                i += 1
                continue
            item = _indent(line) if item is None else item
            if _indent(line) != item:
                out.append(line)
                i += 1
                continue
            # The names of one entry may run over several lines, each ending in ",".
            head, j = line.strip(), i
            while head.endswith(",") and ":" not in head and j + 1 < len(lines) and _indent(lines[j + 1]) == item:
                j += 1
                head += " " + lines[j].strip()
            names, colon, rest = head.partition(":")
            if colon and "," in names and re.fullmatch(_NAME_LIST, names.strip()):
                group = [n.strip() for n in names.split(",")]
                out.append(" " * item + f"{group[0]}:{rest}")
                i = j + 1
                while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > item):
                    if not lines[i].strip() and (i + 1 >= len(lines) or _indent(lines[i + 1]) <= item):
                        break
                    out.append(lines[i])
                    i += 1
                out += [" " * item + f"{name}: see `{group[0]}`." for name in group[1:]]
                continue
            out.append(line)
            i += 1
    return "\n".join(out)


class GroupedParams(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None and "," in obj.docstring.value:
            obj.docstring.value = split_grouped_params(obj.docstring.value)
