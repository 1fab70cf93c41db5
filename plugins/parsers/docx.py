"""Word parser (``.docx``, ``.docm``, ``.dotx``, ``.dotm``), built on python-docx.

The body is read in order, as Word shows it:

- **Headings** become ``kind="heading"`` sections and the ``heading_path`` of what
  follows: the ``Title`` style is level 0 (the top of every path), ``Heading 1``-``9``
  their levels, and any other paragraph whose style (or style chain, or the paragraph
  itself) sets an outline level is a heading of that level. Word stores built-in style
  names in English whatever the user's language, so a German "Überschrift 1" is found.
- **Lists**: consecutive numbered or bulleted paragraphs (numbering on the paragraph or
  its style) are one ``list`` section, one line per item, indented two spaces per level.
  Numbered items keep the number Word shows ("2.", "1.3", "b)"), counted per list from
  ``numbering.xml`` (its formats, level texts and start values); bullets get none.
- **Tables** are one ``table`` section each: one line per row, cells joined with
  `` | `` (a cell's paragraphs, and any table nested in it, on one line; a cell merged
  from the row above is empty, so columns stay in place).
- **Text boxes** are read after the paragraph that anchors them (only once, though Word
  stores each twice, for old and new readers); content controls (``w:sdt``) are read as
  their content, except a table of contents (as a content control, or as paragraphs in
  the ``TOC 1``-``9`` styles), which repeats the headings.
- **Tracked changes** are read as if accepted (insertions kept, deletions left out), and
  a warning says so; fields show their result, never their code; hidden text
  (``w:vanish``) is left out. Of alternative contents (``mc:AlternateContent``) only the
  first choice is read.
- **Footnotes and endnotes** follow the body, under the path "Footnotes"/"Endnotes".

The title is the core properties' ``dc:title``, else the first heading of the highest
level (``Title``, else ``Heading 1``, ...).

Headers and footers are left out (they repeat on every page), as are comments, and
images (counted in the rejection when there is no text: OCR is not enabled). Word has no
fixed pages, so ``pages`` is 0 and the lineage names the heading path, not a page.

Rejections: see ``_ooxml`` (``encrypted``, ``corrupt``, ``too_large``, ``unknown_type``
for ``.doc``), plus ``no_text`` for a document without text and ``macro_only`` for one
whose only content is macros (which are never run).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from syllabus.contracts import ParsedDocument, ParseError, RejectionReason, hookimpl

from . import _ooxml
from ._outline import Outline, table_text
from ._visible import has_visible_text

__all__ = ["DocxParser", "register_parsers"]

WORD = _ooxml.Family(label="Word document", folder=b"word/",
                     extensions=(".docx", ".docm", ".dotx", ".dotm"),
                     legacy=(".doc", ".dot"), legacy_name="Word 97-2003, .doc",
                     claims_unnamed_encrypted=True)
_MAIN_TYPES = (
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
    "application/vnd.ms-word.document.macroEnabled.main+xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
    "application/vnd.ms-word.template.macroEnabledTemplate.main+xml",
)
_NOTES = {  # relationship type suffix -> (element, heading on the path)
    "/footnotes": ("footnote", "Footnotes"),
    "/endnotes": ("endnote", "Endnotes"),
}

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
P, TBL, TR, TC, SDT, SDT_CONTENT = (_W + n for n in ("p", "tbl", "tr", "tc", "sdt", "sdtContent"))
_T, _TAB, _BR, _CR, _TXBX = (_W + n for n in ("t", "tab", "br", "cr", "txbxContent"))
_NO_BREAK_HYPHEN = _W + "noBreakHyphen"
_VAL = _W + "val"
#: subtrees whose text is not shown: deletions, field codes, properties, the old copy of a
#: drawing (mc:Fallback) and the text a footnote reference stands for
_HIDDEN = frozenset({_W + "del", _W + "delText", _W + "instrText", _W + "pPr", _W + "rPr",
                     _W + "moveFrom", _MC + "Fallback", _W + "footnoteReference",
                     _W + "endnoteReference"})
#: block-level wrappers whose children are read as if they stood in their place
_TRANSPARENT = frozenset({_W + "customXml", _W + "ins", _W + "moveTo", _W + "smartTag",
                          _MC + "AlternateContent", _MC + "Choice"})
#: the styles of the entries Word writes for a table of contents (or of figures)
_TOC_STYLES = ("toc ", "table of figures")
_HEADING_NAME = re.compile(r"heading ([1-9])")
#: Word's outline level 9 is "body text"
_BODY_LEVEL = 9
_MAX_STYLE_CHAIN = 16
_MAX_START = 32767
_RUN, _RPR, _VANISH = _W + "r", _W + "rPr", _W + "vanish"
_OFF = ("0", "false", "off")
_ROMAN = ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
          (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"))


def _roman(number: int) -> str:
    out = []
    for value, letters in _ROMAN:
        count, number = divmod(number, value)
        out.append(letters * count)
    return "".join(out)


def _letters(number: int) -> str:
    # Word's lowerLetter: a..z, then aa..zz, then aaa..
    letter = chr(ord("a") + (number - 1) % 26)
    return letter * ((number - 1) // 26 + 1)


def _format_number(number: int, fmt: str) -> str:
    if fmt == "lowerLetter":
        return _letters(number)
    if fmt == "upperLetter":
        return _letters(number).upper()
    if fmt == "lowerRoman":
        return _roman(number)
    if fmt == "upperRoman":
        return _roman(number).upper()
    return str(number)


# --- styles and numbering --------------------------------------------------------------


@dataclass
class _Style:
    style_id: str
    name: str
    based_on: str | None
    outline_level: int | None
    num_id: str | None
    num_level: int | None


def _related(part, suffix: str):
    """The XML of the part ``part`` relates to by a relationship type ending in
    ``suffix``, or None (python-docx parses only the parts it knows the type of)."""
    from docx.oxml.parser import parse_xml

    for rel in part.rels.values():
        if rel.reltype.endswith(suffix) and not rel.is_external:
            target = rel.target_part
            return target.element if hasattr(target, "element") else parse_xml(target.blob)
    return None


def _styles(part) -> dict[str, _Style]:
    element = _related(part, "/styles")
    if element is None:
        return {}
    styles = {}
    for style in element.iter(_W + "style"):
        style_id = style.get(_W + "styleId")
        if not style_id:
            continue
        name = style.find(_W + "name")
        based = style.find(_W + "basedOn")
        level = style.find(f"{_W}pPr/{_W}outlineLvl")
        num = style.find(f"{_W}pPr/{_W}numPr/{_W}numId")
        ilvl = style.find(f"{_W}pPr/{_W}numPr/{_W}ilvl")
        styles[style_id] = _Style(
            style_id=style_id,
            name=(name.get(_VAL) or "").strip().lower() if name is not None else "",
            based_on=based.get(_VAL) if based is not None else None,
            outline_level=_int(level.get(_VAL)) if level is not None else None,
            num_id=num.get(_VAL) if num is not None else None,
            num_level=_int(ilvl.get(_VAL)) if ilvl is not None else None)
    return styles


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _start(element) -> int:
    """A list level's start value (Word allows 0 to 32767)."""
    value = _int(element.get(_VAL)) if element is not None else None
    return 1 if value is None else max(0, min(value, _MAX_START))


@dataclass
class _Level:
    fmt: str = "decimal"
    text: str = "%1."
    start: int = 1


@dataclass
class _Numbering:
    """Word's list definitions, and the counters of the lists read so far."""

    levels: dict[str, dict[int, _Level]] = field(default_factory=dict)  # numId -> levels
    counters: dict[str, dict[int, int]] = field(default_factory=dict)
    #: the level a list definition gives a paragraph style (``w:lvl/w:pStyle``)
    style_levels: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, part) -> _Numbering:
        element = _related(part, "/numbering")
        if element is None:
            return cls()
        abstract: dict[str, dict[int, _Level]] = {}
        style_levels: dict[str, int] = {}
        for definition in element.iter(_W + "abstractNum"):
            levels = {}
            for lvl in definition.iter(_W + "lvl"):
                ilvl = _int(lvl.get(_W + "ilvl"))
                if ilvl is None:
                    continue
                linked = lvl.find(_W + "pStyle")
                if linked is not None and linked.get(_VAL):
                    style_levels.setdefault(linked.get(_VAL), ilvl)
                fmt, text, start = (lvl.find(_W + n) for n in ("numFmt", "lvlText", "start"))
                levels[ilvl] = _Level(
                    fmt=fmt.get(_VAL, "decimal") if fmt is not None else "decimal",
                    text=text.get(_VAL, "") if text is not None else f"%{ilvl + 1}.",
                    start=_start(start))
            abstract[definition.get(_W + "abstractNumId", "")] = levels
        out = cls(style_levels=style_levels)
        for num in element.iter(_W + "num"):
            ref = num.find(_W + "abstractNumId")
            if ref is not None:
                out.levels[num.get(_W + "numId", "")] = abstract.get(ref.get(_VAL, ""), {})
        return out

    def label(self, num_id: str, ilvl: int) -> str:
        """The number Word shows for the next item of list ``num_id`` at level ``ilvl``
        ("" for a bullet, or a list Word does not define)."""
        levels = self.levels.get(num_id)
        if not levels or ilvl not in levels:
            return ""
        counters = self.counters.setdefault(num_id, {})
        for deeper in [k for k in counters if k > ilvl]:
            del counters[deeper]  # a new item restarts the levels below it
        counters[ilvl] = counters.get(ilvl, levels[ilvl].start - 1) + 1
        level = levels[ilvl]
        if level.fmt in ("bullet", "none"):
            return ""

        def number(match: re.Match) -> str:
            at = int(match.group(1)) - 1
            shown = levels.get(at, _Level())
            value = counters.get(at, shown.start)
            return _format_number(value, shown.fmt)

        return re.sub(r"%([1-9])", number, level.text).strip()


# --- text ------------------------------------------------------------------------------


def _text(element, boxes: list) -> str:
    """The text Word shows for ``element``; text boxes met are appended to ``boxes``."""
    out: list[str] = []
    for child in element:
        tag = child.tag
        if not isinstance(tag, str) or tag in _HIDDEN:
            continue
        if tag == _RUN and _vanished(child):
            continue
        if tag == _T:
            out.append(child.text or "")
        elif tag == _TAB:
            out.append("\t")
        elif tag in (_BR, _CR):
            out.append("\n")
        elif tag == _NO_BREAK_HYPHEN:
            out.append("-")
        elif tag in (_TXBX, P, TBL):  # a text box (or a paragraph inside a run): later
            boxes.append(child)
        else:
            out.append(_text(child, boxes))
    return "".join(out)


def _vanished(run) -> bool:
    """Whether a run is hidden text (``w:vanish``), which Word does not show."""
    mark = run.find(f"{_RPR}/{_VANISH}")
    return mark is not None and mark.get(_VAL, "1").lower() not in _OFF


def _first_choices_only(root) -> None:
    """Drop every ``mc:Choice`` after the first of its ``mc:AlternateContent`` (each holds
    the same content for another reader; the Fallbacks are skipped as they are read)."""
    for alternate in list(root.iter(_MC + "AlternateContent")):
        for extra in alternate.findall(_MC + "Choice")[1:]:
            alternate.remove(extra)


def _paragraph_texts(element):
    """The shown text of every paragraph in ``element`` (cells, nested tables and text
    boxes included), in order."""
    for child in element:
        tag = child.tag
        if not isinstance(tag, str) or tag in _HIDDEN:
            continue
        if tag == P:
            boxes: list = []
            yield _text(child, boxes)
            for box in boxes:
                yield from _paragraph_texts(box)
        else:
            yield from _paragraph_texts(child)


def _children(element, tag: str):
    """The children of ``element`` with ``tag``, looking through content controls and
    the other wrappers Word may put around table rows and cells."""
    for child in element:
        if child.tag == tag:
            yield child
        elif child.tag == SDT:
            content = child.find(SDT_CONTENT)
            if content is not None:
                yield from _children(content, tag)
        elif child.tag in _TRANSPARENT:
            yield from _children(child, tag)


def _is_toc(sdt) -> bool:
    gallery = sdt.find(f"{_W}sdtPr/{_W}docPartObj/{_W}docPartGallery")
    return gallery is not None and "contents" in (gallery.get(_VAL) or "").lower()


# --- the walk --------------------------------------------------------------------------


class _Reader:
    def __init__(self, part) -> None:
        self.out = Outline()
        self.styles = _styles(part)
        self.numbering = _Numbering.of(part)
        self.list_lines: list[str] = []

    def _style(self, paragraph) -> list[_Style]:
        """The paragraph's style and the styles it is based on, nearest first."""
        chain: list[_Style] = []
        seen: set[str] = set()
        ref = paragraph.find(f"{_W}pPr/{_W}pStyle")
        style_id = ref.get(_VAL) if ref is not None else None
        if style_id is None:  # the default paragraph style
            style_id = next((sid for sid, s in self.styles.items() if s.name == "normal"), None)
        while style_id in self.styles and style_id not in seen and len(chain) < _MAX_STYLE_CHAIN:
            seen.add(style_id)
            chain.append(self.styles[style_id])
            style_id = self.styles[style_id].based_on
        return chain

    def _heading_level(self, paragraph, chain: list[_Style]) -> int | None:
        own = paragraph.find(f"{_W}pPr/{_W}outlineLvl")
        if own is not None:
            level = _int(own.get(_VAL))
            return None if level is None or level >= _BODY_LEVEL else level + 1
        for style in chain:
            if style.name == "title":
                return 0
            match = _HEADING_NAME.fullmatch(style.name)
            if match:
                return int(match.group(1))
            if style.outline_level is not None:
                return style.outline_level + 1 if style.outline_level < _BODY_LEVEL else None
        return None

    def _numbered(self, paragraph, chain: list[_Style]) -> tuple[str, int] | None:
        num = paragraph.find(f"{_W}pPr/{_W}numPr")
        num_id = ilvl = None
        if num is not None:
            ref, level = num.find(_W + "numId"), num.find(_W + "ilvl")
            num_id = ref.get(_VAL) if ref is not None else None
            ilvl = _int(level.get(_VAL)) if level is not None else None
        for style in chain:  # else the nearest style that numbers its paragraphs
            if num_id is not None:
                break
            if style.num_id:
                num_id = style.num_id
                ilvl = ilvl if ilvl is not None else (
                    style.num_level if style.num_level is not None
                    else self.numbering.style_levels.get(style.style_id))
        if num_id is None or num_id == "0":  # numId 0 switches numbering off
            return None
        return num_id, max(0, min(ilvl or 0, 8))

    def flush_list(self) -> None:
        if self.list_lines:
            self.out.block("\n".join(self.list_lines), "list")
            self.list_lines = []

    def walk(self, container) -> None:
        for child in container:
            tag = child.tag
            if tag == P:
                self.paragraph(child)
            elif tag == TBL:
                self.flush_list()
                self.out.block(self.table(child), "table")
            elif tag == SDT:
                if not _is_toc(child):
                    content = child.find(SDT_CONTENT)
                    if content is not None:
                        self.walk(content)
            elif tag in _TRANSPARENT:
                self.walk(child)

    def paragraph(self, element) -> None:
        boxes: list = []
        text = _text(element, boxes)
        chain = self._style(element)
        if any(style.name.startswith(_TOC_STYLES) for style in chain):
            return  # a table of contents built from fields: it repeats the headings
        level = self._heading_level(element, chain)
        if level is not None and has_visible_text(text):
            self.flush_list()
            self.out.heading(level, text)
        elif (numbered := self._numbered(element, chain)) is not None:
            if has_visible_text(text):
                num_id, ilvl = numbered
                label = self.numbering.label(num_id, ilvl)
                line = " ".join(text.replace("\n", " ").split())
                self.list_lines.append("  " * ilvl + (f"{label} {line}" if label else line))
        else:
            self.flush_list()
            self.out.block(text, "paragraph")
        for box in boxes:
            self.walk([box] if box.tag in (P, TBL) else box)

    def table(self, element) -> str:
        rows = []
        for row in _children(element, TR):
            cells = []
            for cell in _children(row, TC):
                merged = cell.find(f"{_W}tcPr/{_W}vMerge")
                if merged is not None and merged.get(_VAL, "continue") == "continue":
                    cells.append("")
                else:
                    cells.append(" ".join(t for t in _paragraph_texts(cell) if t.strip()))
            rows.append(cells)
        return table_text(rows)

    def notes(self, part) -> None:
        for suffix, (tag, name) in _NOTES.items():
            element = _related(part, suffix)
            if element is None:
                continue
            _first_choices_only(element)
            notes = [n for n in element.iter(_W + tag)
                     if n.get(_W + "type") not in ("separator", "continuationSeparator",
                                                   "continuationNotice")]
            texts = [" ".join(t for t in _paragraph_texts(n) if t.strip()) for n in notes]
            texts = [t for t in texts if has_visible_text(t)]
            if texts:
                self.flush_list()
                self.out.close()
                self.out.heading(1, name, emit=False)
                for text in texts:
                    self.out.block(text, "paragraph")


def _register_main_types() -> None:
    """python-docx opens only ``.docx``; its part factory is told that the macro-enabled
    and template kinds have the same main part (their XML is the same)."""
    from docx.opc.part import PartFactory
    from docx.parts.document import DocumentPart

    for content_type in _MAIN_TYPES:
        PartFactory.part_type_for.setdefault(content_type, DocumentPart)


class DocxParser:
    """Word documents; see the module docstring for what is kept."""

    name = "docx"
    media_types = ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                   "application/vnd.ms-word.document.macroEnabled.12",
                   "application/vnd.openxmlformats-officedocument.wordprocessingml.template",
                   "application/vnd.ms-word.template.macroEnabled.12")
    priority = 90

    def sniff(self, head: bytes, filename: str) -> bool:
        return WORD.sniff(head, filename)

    def parse(self, data: bytes, *, filename: str) -> ParsedDocument:
        package = _ooxml.open_package(WORD, data, filename)
        from docx.package import Package

        _register_main_types()
        try:
            part = Package.open(io.BytesIO(data)).main_document_part
            if part.content_type not in _MAIN_TYPES:
                raise ParseError(RejectionReason.CORRUPT,
                                 f"{filename} is not a Word document: its main part is "
                                 f"{part.content_type}")
            body = part.element.body
            reader = _Reader(part)
            if body is not None:  # the schema lets a document have none
                _first_choices_only(body)
                reader.walk(body)
            reader.flush_list()
            reader.notes(part)
        except ParseError:
            raise
        except Exception as exc:  # python-docx and lxml raise many kinds on damaged files
            raise _ooxml.damaged(WORD, filename, exc) from exc

        warnings = package.warnings()
        if body is not None and (body.find(f".//{_W}del") is not None
                                 or body.find(f".//{_W}ins") is not None):
            warnings.append("the document has tracked changes; it was read as if they were "
                            "accepted")
        sections = reader.out.sections
        if not sections:
            images = sum(1 for _ in body.iter(_A + "blip")) if body is not None else 0
            raise package.nothing_read(
                filename, f"{filename} has no text"
                + (f"; its {images} image(s) are not read, as OCR is not enabled"
                   if images else ""))
        first = reader.out.first
        return ParsedDocument(
            media_type=self.media_types[0], pages=0, sections=sections, warnings=warnings,
            title=package.title or (first[min(first)] if first else None))


@hookimpl
def register_parsers(register):
    register(DocxParser())
