"""Plain-text parser: paragraphs split on blank lines.

Decoding: UTF-16 with a byte-order mark, else UTF-8 (a UTF-8 BOM is dropped), else, for
bytes that are clearly text but not UTF-8, windows-1252 (latin-1 for its five undefined
bytes). Each paragraph is a ``Section``; its line breaks are kept, trailing spaces are not.

A paragraph that looks like a heading (one short line, capitalised, no closing
punctuation, followed by a longer paragraph) becomes ``kind="heading"`` and the
``heading_path`` of what follows: the document's first such line is its title and the
top of every path, later ones sit below it.

Sniffing accepts input without NUL bytes (outside UTF-16) whose decoded head has few
control characters, so images, archives and other binary files are left alone.
"""

from __future__ import annotations

import codecs
import re

from syllabus.contracts import ParsedDocument, ParseError, RejectionReason, Section, hookimpl

from ._visible import has_visible_text

__all__ = ["TextParser", "decode_text", "register_parsers"]

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_MAX_CONTROL_RATIO = 0.02
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v\x1b")
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")
_HEADING_MAX_CHARS = 80
_HEADING_MAX_WORDS = 12
# in a file that is not UTF-8, more non-ASCII than this means binary, not a legacy encoding
_MAX_LEGACY_NON_ASCII = 0.3


def _controls(text: str) -> int:
    return sum(1 for ch in text
               if (ch < " " or "\x7f" <= ch < "\xa0") and ch not in _ALLOWED_CONTROLS)


def decode_text(data: bytes, *, final: bool = True) -> str | None:
    """The text in ``data``, or ``None`` when it is not text (NULs, invalid, controls).

    With ``final=False`` a multi-byte character cut off at the end is not an error (for
    sniffing the first bytes of a file)."""
    if data.startswith(_UTF16_BOMS):
        try:
            text = codecs.getincrementaldecoder("utf-16")().decode(data, final=final)
        except UnicodeDecodeError:
            return None
    else:
        if b"\x00" in data:
            return None
        try:
            text = codecs.getincrementaldecoder("utf-8-sig")().decode(data, final=final)
        except UnicodeDecodeError:
            if sum(byte >= 0x80 for byte in data) > _MAX_LEGACY_NON_ASCII * len(data):
                return None
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
    text = text.lstrip("\ufeff")  # a second BOM, or one the decoder left
    if "\x00" in text:
        return None
    if text and _controls(text) > _MAX_CONTROL_RATIO * len(text):
        return None
    return text


def _is_heading(block: str, following: str | None) -> bool:
    if following is None or "\n" in block or len(block) > _HEADING_MAX_CHARS:
        return False
    words = block.split()
    if not words or len(words) > _HEADING_MAX_WORDS or not words[0][0].isupper():
        return False
    if block[-1] in ".,;:!?)\"'" or block.endswith("..."):
        return False
    return len(following) > len(block)


class TextParser:
    """Plain text in UTF-8, UTF-16 (with BOM) or windows-1252."""

    name = "text"
    media_types = ("text/plain",)
    priority = 10

    def sniff(self, head: bytes, filename: str) -> bool:
        return bool(head) and decode_text(head, final=False) is not None

    def parse(self, data: bytes, *, filename: str) -> ParsedDocument:
        text = decode_text(data)
        if text is None:
            raise ParseError(RejectionReason.NO_TEXT,
                             "the file is not text (NUL bytes, or too many control characters)")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        blocks = [
            "\n".join(line.rstrip() for line in block.strip("\n").split("\n"))
            for block in _BLANK_LINES.split(text)
        ]
        blocks = [block for block in blocks if has_visible_text(block)]
        if not blocks:
            raise ParseError(RejectionReason.NO_TEXT,
                             "the text file holds only whitespace or invisible characters")

        sections: list[Section] = []
        title: str | None = None
        path: list[str] = []
        for index, block in enumerate(blocks):
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            if _is_heading(block.strip(), following):
                heading = block.strip()
                if index == 0:
                    title = heading
                    path = [heading]
                else:
                    path = [title, heading] if title else [heading]
                sections.append(Section(text=heading, heading_path=list(path), kind="heading"))
            else:
                sections.append(Section(text=block, heading_path=list(path), kind="paragraph"))
        return ParsedDocument(media_type="text/plain", title=title, sections=sections)


@hookimpl
def register_parsers(register):
    register(TextParser())
