"""The fenced blocks of the README and the documentation pages (docs/*.md), for the tests
that run them as written: a block in either is run the same way.

A Python block names itself in its first line (``# reports.py``); ``python_block`` finds it
by that name (the README repeats a few of the pages' blocks, word for word). Shell blocks
are split into commands: continuations joined, comments dropped, and a line of several
commands spaced apart split into each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
"""The README first, then the site's pages: everything a reader is shown."""
README = "\n".join(page.read_text() for page in PAGES)


@dataclass(frozen=True)
class Block:
    lang: str
    code: str

    @property
    def name(self) -> str:
        """The first line's comment, up to a colon or comma: ``# app.py: ...`` -> app.py."""
        first = self.code.splitlines()[0]
        return re.split(r"[:,]", first.removeprefix("#").removeprefix("//").strip())[0]


def fences() -> list[str]:
    """The language of every fenced block, in order ("" for none)."""
    langs: list[str] = []
    inside = False
    for line in README.splitlines():
        if line.startswith("```"):
            if not inside:
                langs.append(line[3:].strip())
            inside = not inside
    return langs


def blocks(lang: str) -> list[Block]:
    return [Block(lang, code) for code in re.findall(rf"```{lang}\n(.*?)```", README, re.S)]


def python_block(name: str) -> str:
    found = {block.code for block in blocks("python") if block.name == name}
    # A copy that drifted from the others would go untested, so every copy must be the same.
    assert len(found) == 1, f"the docs should have one ```python block named {name}"
    return found.pop()


def jsx_block(name: str) -> str:
    """The ```jsx block named ``name`` in its first line (``// MyJobs.jsx: ...``), the same in
    every place the docs show it."""
    found = {block.code for block in blocks("jsx") if block.name == name}
    assert len(found) == 1, f"the docs should have one ```jsx block named {name}"
    return found.pop()


def pictures() -> list[Path]:
    """Every picture the README and the pages show, as a path from the page that shows it."""
    return [
        (page.parent / link).resolve()
        for page in PAGES
        for link in re.findall(r"\]\(([^)\s:]+\.png)\)", page.read_text())
    ]


def shell_lines() -> list[str]:
    """Each command of the README's ```sh blocks, continuations joined, comments dropped."""
    lines = []
    for block in blocks("sh"):
        for line in block.code.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith("#"):
                lines.append(command)
    return lines
