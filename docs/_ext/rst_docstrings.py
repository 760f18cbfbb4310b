"""A griffe extension for the docs build: turns the reStructuredText bits of tradeloom's
docstrings (``:class:`x``` roles, ````code````, ``.. code-block::`` and ``::`` literal blocks)
into Markdown, which mkdocstrings renders."""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|ref):`(~?)([^`<]+?)`")
DOUBLE = re.compile(r"``([^`]+)``")
DIRECTIVE = re.compile(r"^(\s*)\.\. code-block::\s*(\w*)\s*$")


def _role(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _inline(line: str) -> str:
    return DOUBLE.sub(r"`\1`", ROLE.sub(_role, line))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def rst_to_markdown(text: str) -> str:
    """Convert the reStructuredText constructs tradeloom's docstrings use."""
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        directive = DIRECTIVE.match(line)
        literal = line.rstrip().endswith("::") and not directive
        if not (directive or literal):
            out.append(_inline(line))
            index += 1
            continue
        if directive:
            base, language = _indent(line), directive.group(2) or "python"
        else:
            base, language = _indent(line), "python"
            text_part = line.rstrip()[:-2].rstrip()
            out.append(_inline(text_part + ":") if text_part.strip() else "")
        index += 1
        block: list[str] = []
        while index < len(lines) and (not lines[index].strip() or _indent(lines[index]) > base):
            block.append(lines[index])
            index += 1
        while block and not block[-1].strip():
            block.pop()
        while block and not block[0].strip():
            block.pop(0)
        if not block:
            continue
        strip = min(_indent(b) for b in block if b.strip())
        prefix = " " * base
        out.append("")
        out.append(f"{prefix}```{language}")
        out.extend(f"{prefix}{b[strip:]}" if b.strip() else "" for b in block)
        out.append(f"{prefix}```")
        out.append("")
    return "\n".join(out)


class RstDocstrings(Extension):
    """Rewrites every docstring once it is loaded."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
