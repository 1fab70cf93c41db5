"""PowerPoint parser (``.pptx``, ``.pptm``, ``.potx``, ``.ppsx``: the main-part types
python-pptx knows), built on python-pptx.

Each slide is a page: its sections have ``page`` set to the slide's number, so the
lineage of a chunk names its slides, and ``pages`` is the number of slides.

- The slide's **title** (its title placeholder) is a ``heading`` and the path of the
  slide's other text; a slide without a title has the path "Slide N" (a name, not text).
- The other shapes are read top to bottom, then left to right, groups included:
  - a body or content placeholder is a ``list``, one line per paragraph, indented two
    spaces per outline level (bullets are formatting, not text);
  - any other text (text boxes, shapes with text) is a ``paragraph``, its paragraphs
    kept apart;
  - a table is a ``table``: one line per row, cells joined with `` | ``.
- **Speaker notes** follow the slide's text, under the path ``[title, "Speaker notes"]``.
- Footer, date and slide-number placeholders are left out (they repeat on every slide),
  as are pictures, charts, SmartArt and media, and shapes inside ``mc:AlternateContent``
  (python-pptx does not list them). Hidden slides are read, with a warning naming them; a
  shape python-pptx has no reader for (ink, a shape without geometry) is left out, with a
  warning counting them.

Rejections: see ``_ooxml`` (``encrypted``, ``corrupt``, ``too_large``, ``unknown_type``
for ``.ppt``), plus ``no_text`` for a deck without text and ``macro_only`` for one whose
only content is macros (which are never run).
"""

from __future__ import annotations

import io

from syllabus.contracts import ParsedDocument, ParseError, RejectionReason, hookimpl

from . import _ooxml
from ._outline import Outline, page_list, table_text
from ._visible import has_visible_text

__all__ = ["PptxParser", "register_parsers"]

POWERPOINT = _ooxml.Family(label="PowerPoint deck", folder=b"ppt/",
                           extensions=(".pptx", ".pptm", ".potx", ".ppsx"),
                           legacy=(".ppt", ".pot", ".pps"), legacy_name="PowerPoint 97-2003, .ppt")
#: what python-pptx raises for a valid shape it has no class for (an ink part, a shape
#: without geometry): that shape is skipped and counted, the rest of the slide is read
_UNREADABLE = (AttributeError, NotImplementedError, KeyError, ValueError, TypeError)
#: python-pptx's shape nesting limit is XML's; groups deeper than this are not read
_MAX_GROUP_DEPTH = 32


def _paragraphs(frame) -> list[tuple[int, str]]:
    """(outline level, text) of each paragraph of a text frame; line breaks (``\\v`` in
    python-pptx) become spaces."""
    out = []
    for paragraph in frame.paragraphs:
        text = " ".join(paragraph.text.replace("\v", " ").split())
        if has_visible_text(text):
            out.append((paragraph.level, text))
    return out


def _position(shape) -> tuple[int, int]:
    return (shape.top or 0, shape.left or 0)


class _Slide:
    """Reads one slide into ``out``."""

    def __init__(self, out: Outline, number: int) -> None:
        self.out = out
        self.number = number
        #: shapes python-pptx could not read (an ink part, a shape without geometry)
        self.unread = 0

    def shapes(self, shapes, depth: int = 0) -> None:
        try:
            ordered = sorted(shapes, key=_position)  # stable: z-order breaks ties
        except _UNREADABLE:
            ordered = list(shapes)
        for shape in ordered:
            try:
                self.shape(shape, depth)
            except _UNREADABLE:
                # python-pptx has no class for some valid shapes; the rest of the slide is
                # still read, and the warning counts what was not
                self.unread += 1

    def shape(self, shape, depth: int) -> None:
        from pptx.enum.shapes import MSO_SHAPE_TYPE, PP_PLACEHOLDER

        skipped = (PP_PLACEHOLDER.FOOTER, PP_PLACEHOLDER.DATE, PP_PLACEHOLDER.SLIDE_NUMBER,
                   PP_PLACEHOLDER.HEADER, *_titles())
        listed = (PP_PLACEHOLDER.BODY, PP_PLACEHOLDER.OBJECT, PP_PLACEHOLDER.VERTICAL_BODY,
                  PP_PLACEHOLDER.VERTICAL_OBJECT)
        kind = shape.placeholder_format.type if shape.is_placeholder else None
        if kind in skipped:
            return
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            if depth < _MAX_GROUP_DEPTH:
                self.shapes(shape.shapes, depth + 1)
            return
        if getattr(shape, "has_table", False) and shape.has_table:
            rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
            self.out.block(table_text(rows), "table", page=self.number)
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            paragraphs = _paragraphs(shape.text_frame)
            if kind in listed:
                lines = ["  " * max(0, min(level, 8)) + text for level, text in paragraphs]
                self.out.block("\n".join(lines), "list", page=self.number)
            else:
                self.out.block("\n\n".join(text for _, text in paragraphs), "paragraph",
                               page=self.number)


def _titles():
    from pptx.enum.shapes import PP_PLACEHOLDER

    return (PP_PLACEHOLDER.TITLE, PP_PLACEHOLDER.CENTER_TITLE, PP_PLACEHOLDER.VERTICAL_TITLE)


def _title(slide) -> str:
    """The text of the slide's title placeholder (found by its type, whatever its index)."""
    titles = _titles()
    for shape in slide.placeholders:
        try:
            if shape.placeholder_format.type in titles and shape.has_text_frame:
                return " ".join(text for _, text in _paragraphs(shape.text_frame))
        except _UNREADABLE:
            continue
    return ""


class PptxParser:
    """PowerPoint decks; see the module docstring for what is kept."""

    name = "pptx"
    media_types = ("application/vnd.openxmlformats-officedocument.presentationml.presentation",
                   "application/vnd.ms-powerpoint.presentation.macroEnabled.12",
                   "application/vnd.openxmlformats-officedocument.presentationml.template",
                   "application/vnd.openxmlformats-officedocument.presentationml.slideshow")
    priority = 90

    def sniff(self, head: bytes, filename: str) -> bool:
        return POWERPOINT.sniff(head, filename)

    def parse(self, data: bytes, *, filename: str) -> ParsedDocument:
        package = _ooxml.open_package(POWERPOINT, data, filename)
        out = Outline()
        hidden: list[int] = []
        unread: dict[int, int] = {}
        from pptx.package import Package
        from pptx.parts.presentation import PresentationPart

        try:
            part = Package.open(io.BytesIO(data)).main_document_part
            if not isinstance(part, PresentationPart):
                raise ParseError(RejectionReason.CORRUPT,
                                 f"{filename} is not a PowerPoint deck: its main part is "
                                 f"{part.content_type}")
            slides = part.presentation.slides
            count = len(slides)
            for number, slide in enumerate(slides, start=1):
                if slide._element.get("show") in ("0", "false"):
                    hidden.append(number)
                out.close()
                title = _title(slide)
                if title:
                    out.heading(1, title, page=number)
                else:
                    out.heading(1, f"Slide {number}", page=number, emit=False)
                reader = _Slide(out, number)
                reader.shapes(slide.shapes)
                if reader.unread:
                    unread[number] = reader.unread
                if slide.has_notes_slide:
                    frame = slide.notes_slide.notes_text_frame
                    notes = _paragraphs(frame) if frame is not None else []
                    if notes:
                        out.heading(2, "Speaker notes", emit=False)
                        out.block("\n\n".join(text for _, text in notes), "paragraph",
                                  page=number)
        except ParseError:
            raise
        except Exception as exc:  # python-pptx and lxml raise many kinds on damaged files
            raise _ooxml.damaged(POWERPOINT, filename, exc) from exc

        warnings = package.warnings()
        if unread:
            warnings.append(f"{sum(unread.values())} shape(s) on slide(s) "
                            f"{page_list(sorted(unread))} could not be read (python-pptx has "
                            "no reader for them) and were left out")
        if hidden:
            warnings.append(f"slide(s) {page_list(hidden)} of {count} are hidden; they were "
                            "read all the same")
        if not out.sections:
            raise package.nothing_read(
                filename, f"{filename} has no text on any of its {count} slide(s)"
                + ("; pictures are not read, as OCR is not enabled" if count else ""))
        return ParsedDocument(media_type=self.media_types[0], pages=count,
                              sections=out.sections, warnings=warnings,
                              title=package.title or out.first.get(1))


@hookimpl
def register_parsers(register):
    register(PptxParser())
