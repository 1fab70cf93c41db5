"""How the structured parsers (HTML, Markdown, Word, PowerPoint) collect sections.

An ``Outline`` keeps the stack of open headings: a heading of level *n* closes every open
heading of level *n* or deeper, and each block gets the titles still open as its
``heading_path``. Headings and blocks without visible text are dropped (see
``_visible``), so a document of empty paragraphs ends up with no sections at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from syllabus.contracts import Section

from ._visible import has_visible_text

__all__ = ["Outline", "collapse_spaces", "page_list", "table_text"]

_SPACES = re.compile(r"\s+")
#: page ranges named in one warning
_MAX_RANGES = 20


def collapse_spaces(text: str) -> str:
    """``text`` on one line: every run of whitespace one space, none at either end."""
    return _SPACES.sub(" ", text).strip()


def table_text(rows) -> str:
    """One line per row with its cells (already text) joined by `` | ``; every cell is put
    on one line, and rows with no text at all are left out."""
    lines = []
    for row in rows:
        cells = [collapse_spaces(cell) for cell in row]
        if any(has_visible_text(cell) for cell in cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def page_list(pages: Sequence[int | range]) -> str:
    """Ascending page numbers (or ranges of them) as "2, 4-5"; at most ``_MAX_RANGES``."""
    ranges: list[tuple[int, int]] = []
    for item in pages:
        first, last = (item.start, item.stop - 1) if isinstance(item, range) else (item, item)
        if first > last:
            continue
        if ranges and first == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], last)
        else:
            ranges.append((first, last))
    named = [str(a) if a == b else f"{a}-{b}" for a, b in ranges[:_MAX_RANGES]]
    if len(ranges) > _MAX_RANGES:
        rest = sum(b - a + 1 for a, b in ranges[_MAX_RANGES:])
        named.append(f"and {rest} more")
    return ", ".join(named)


class Outline:
    """Collects sections while tracking the heading path.

    ``strip`` is what ``block`` strips from each end of a block's text (Markdown keeps
    the leading spaces that indent a nested list item)."""

    def __init__(self, *, strip: str | None = None) -> None:
        self.sections: list[Section] = []
        self._stack: list[tuple[int, str]] = []
        self._strip = strip
        #: the first heading (with text in the document) seen at each level
        self.first: dict[int, str] = {}

    @property
    def path(self) -> list[str]:
        return [title for _, title in self._stack]

    def heading(self, level: int, text: str, *, page: int | None = None,
                emit: bool = True) -> None:
        """Open a heading; ``emit=False`` puts it on the path without adding its text
        (a name the parser gives to a part, such as "Speaker notes")."""
        text = collapse_spaces(text)
        if not has_visible_text(text):
            return
        if emit:  # a name the parser gave is never the document's title
            self.first.setdefault(level, text)
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text))
        if emit:
            self.sections.append(Section(text=text, heading_path=self.path, page=page,
                                         kind="heading"))

    def close(self, level: int = 0) -> None:
        """Close every open heading of ``level`` or deeper (all of them by default)."""
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()

    def block(self, text: str, kind: str, *, page: int | None = None) -> None:
        if has_visible_text(text):
            self.sections.append(Section(text=text.strip(self._strip), heading_path=self.path,
                                         page=page, kind=kind))
