"""Markdown parser: headings become the ``heading_path`` of the blocks below them.

Parsed with markdown-it-py (CommonMark plus GFM tables and strikethrough). Each heading
is a ``Section`` of ``kind="heading"`` and each block under it one of ``paragraph``,
``list`` (one line per item, nested items indented two spaces per level), ``table``
(cells joined with `` | ``) or ``code`` (fenced or indented, verbatim). Markdown syntax
is stripped: a link becomes its text, emphasis markers and inline HTML tags go, images
and HTML blocks are dropped, soft line breaks become spaces. YAML (``---``) or TOML
(``+++``) front matter is skipped; its ``title:``, else the first ``h1``, is the title.

Nesting is bounded: markdown-it stops at its nesting limit (32 levels here; a list
level counts two) and silently drops the rest of the file. When a document reaches the
limit (``>`` * 20000, or lists nested 16 deep), it is read again with every line's leading
blockquote and list markers removed, so all of its text survives, and a warning says so.
"""

from __future__ import annotations

import codecs
import re

from syllabus.contracts import ParsedDocument, ParseError, RejectionReason, hookimpl

from ._outline import Outline, table_text

__all__ = ["MarkdownParser", "register_parsers"]

_EXTENSIONS = (".md", ".markdown", ".mdx", ".mkd", ".mdown")
_FRONT_MATTER = re.compile(r"\A(---|\+\+\+)[ \t]*\n(.*?\n)?(?:---|\.\.\.|\+\+\+)[ \t]*(?:\n|\Z)",
                           re.DOTALL)
_FRONT_TITLE = re.compile(r"""^title\s*[:=]\s*["']?(.*?)["']?\s*$""", re.MULTILINE)
_ATX = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.MULTILINE)
_SETEXT = re.compile(r"^[^\s].*\n {0,3}(?:=+|-{2,})[ \t]*$", re.MULTILINE)
_LINK = re.compile(r"!?\[[^\]\n]+\]\([^)\s]+(?:\s+\"[^\"]*\")?\)|^\[[^\]\n]+\]:\s+\S", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(?:```|~~~)", re.MULTILINE)
_SPACES = re.compile(r"[ \t]+")
#: markdown-it's nesting limit ("commonmark" has 20, "default" 100). About two Python
#: frames per level; a higher limit also slows markdown-it down on runs of "[".
_MAX_NESTING = 32
#: tokens whose content markdown-it parses by calling its block parser again
_CONTAINERS = frozenset({"blockquote_open", "bullet_list_open", "ordered_list_open",
                         "list_item_open"})
#: blockquote and list markers (and indentation) at the start of a line
_CONTAINER_MARKS = re.compile(r"^(?:[ \t]*(?:>|(?:[-+*]|\d{1,9}[.)])(?=[ \t]|$)))*[ \t]*",
                              re.MULTILINE)


def _decode(data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


def _strip_front_matter(text: str) -> tuple[str, str | None]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return text, None
    title = _FRONT_TITLE.search(match.group(2) or "")
    return text[match.end():], (title.group(1).strip() or None) if title else None


def _inline_text(token) -> str:
    parts: list[str] = []
    for child in token.children or ():
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        # image (alt text included), html_inline and the *_open/_close markers are dropped
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parts).split("\n"))
    return "\n".join(line for line in lines if line)


def _build(tokens) -> Outline:
    out = Outline(strip="\n")
    lists = 0  # depth of open lists
    list_lines: list[str] = []
    table_rows: list[list[str]] | None = None
    row: list[str] = []
    heading_level: int | None = None
    for token in tokens:
        kind = token.type
        if kind == "heading_open":
            heading_level = int(token.tag[1])
        elif kind == "heading_close":
            heading_level = None
        elif kind in ("bullet_list_open", "ordered_list_open"):
            lists += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists -= 1
            if lists == 0:
                out.block("\n".join(list_lines), "list")
                list_lines = []
        elif kind == "table_open":
            table_rows = []
        elif kind == "table_close":
            out.block(table_text(table_rows or []), "table")
            table_rows = None
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close" and table_rows is not None:
            table_rows.append(row)
        elif kind in ("fence", "code_block"):
            if lists:
                indent = "  " * (lists - 1)
                list_lines += [indent + line for line in token.content.rstrip("\n").split("\n")]
            else:
                out.block(token.content.rstrip("\n"), "code")
        elif kind == "inline":
            text = _inline_text(token)
            if heading_level is not None:
                out.heading(heading_level, text.replace("\n", " "))
            elif table_rows is not None:
                row.append(text.replace("\n", " "))
            elif lists:
                if text:
                    list_lines.append("  " * (lists - 1) + text.replace("\n", " "))
            else:
                out.block(text, "paragraph")
        # html_block, hr, blockquote and paragraph markers add no text
    return out


class MarkdownParser:
    """CommonMark (with GFM tables) via markdown-it-py, headings kept as structure."""

    name = "markdown"
    media_types = ("text/markdown", "text/x-markdown")
    priority = 50

    def sniff(self, head: bytes, filename: str) -> bool:
        if not head.strip() or b"\x00" in head:
            return False
        try:
            text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
        except UnicodeDecodeError:
            return False
        if filename.lower().endswith(_EXTENSIONS):
            return True
        if text.startswith("#!"):  # a script's comments are not headings
            return False
        text, _ = _strip_front_matter(text.replace("\r\n", "\n"))
        headings = len(_ATX.findall(text)) + len(_SETEXT.findall(text))
        links = len(_LINK.findall(text))
        fences = len(_FENCE.findall(text)) // 2
        return (headings >= 1 and headings + links + fences >= 2) or links >= 3

    def parse(self, data: bytes, *, filename: str) -> ParsedDocument:
        from markdown_it import MarkdownIt

        text = _decode(data).replace("\r\n", "\n").replace("\r", "\n")
        text, title = _strip_front_matter(text)
        md = MarkdownIt("commonmark", {"maxNesting": _MAX_NESTING}).enable(
            ["table", "strikethrough"])
        tokens = md.parse(text)
        warnings: list[str] = []
        if _hit_nesting_limit(tokens):
            tokens = md.parse(_CONTAINER_MARKS.sub("", text))
            warnings.append(
                f"the Markdown nests blockquotes or lists deeper than {_MAX_NESTING} levels; "
                "it was read with those markers removed, so its text is kept but not that "
                "structure")
        out = _build(tokens)
        if not out.sections:
            raise ParseError(RejectionReason.NO_TEXT, "the Markdown document has no text")
        return ParsedDocument(media_type="text/markdown", title=title or out.first.get(1),
                              sections=out.sections, warnings=warnings)


def _hit_nesting_limit(tokens) -> bool:
    """Whether markdown-it reached its nesting limit, after which it skips the rest."""
    return any(token.nesting == 1 and token.type in _CONTAINERS
               and token.level >= _MAX_NESTING - 1 for token in tokens)


@hookimpl
def register_parsers(register):
    register(MarkdownParser())
