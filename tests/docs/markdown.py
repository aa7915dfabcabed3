"""Reading Markdown the way the documentation tests need: fenced code blocks, links, code spans.

A fenced block (three backticks and a language) right after the line `<!-- readme-test: skip -->`
(blank lines between are allowed) is marked `skip`: the example tests show it but do not run it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["SKIP_MARKER", "Block", "code_spans", "fenced_blocks", "heading_anchors", "links"]

SKIP_MARKER = "<!-- readme-test: skip -->"

_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)\s*$")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # of the opening fence, 1-based
    skip: bool


def fenced_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    skip_next = False
    while index < len(lines):
        line = lines[index]
        if line.strip() == SKIP_MARKER:
            skip_next = True
        opening = _FENCE.match(line.strip())
        if opening is None:
            if line.strip() and line.strip() != SKIP_MARKER:
                skip_next = False
            index += 1
            continue
        fence, language = opening.groups()
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index])
            index += 1
        blocks.append(Block(language.lower(), "\n".join(body) + "\n", index - len(body), skip_next))
        skip_next = False
        index += 1
    return blocks


def _prose(text: str) -> Iterator[tuple[int, str]]:
    """Lines outside fenced blocks, with their 1-based numbers."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        opening = _FENCE.match(line.strip())
        if fence is None and opening is not None:
            fence = opening.group(1)
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            yield number, line


def links(text: str) -> Iterator[tuple[int, str]]:
    """Targets of Markdown links and images outside fenced blocks."""
    for number, line in _prose(text):
        for match in _LINK.finditer(line):
            yield number, match.group(1)


def code_spans(text: str) -> Iterator[tuple[int, str]]:
    """Inline code outside fenced blocks."""
    for number, line in _prose(text):
        for match in _CODE_SPAN.finditer(line):
            yield number, match.group(2).strip()


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces to '-'."""
    anchors: set[str] = set()
    for _, line in _prose(text):
        heading = _HEADING.match(line)
        if heading is not None:
            title = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1)).lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors
