"""Bad and odd documents, built on the fly for tests (``from tests._docs import ...``).

Every ``*_bytes`` function returns a new document as bytes; ``write_bad_inputs(folder)``
writes the whole set of bad inputs into a folder and returns them with the rejection
each one should get, for tests that feed files to the ingest service. Nothing here
needs the network or fonts beyond fpdf2's built-in Helvetica; PNGs are made with
``zlib`` and ``struct``.

What each PDF does with the real libraries (pypdfium2 5, pypdf 7), checked by
``tests/test_parsers.py``:

- ``truncated_pdf_bytes()`` cuts a PDF in half: neither library can open it (``corrupt``).
- ``tail_truncated_pdf_bytes()`` loses only the end of the trailer (``startxref`` and
  ``%%EOF``): pdfium rebuilds the cross-reference table and reads every page, so the
  parser accepts it with a "truncated" warning.
- ``damaged_pdf_bytes()`` blanks the trailer's ``/Root`` entry: pdfium refuses the file,
  pypdf finds the catalog by searching for it and reads every page, so the parser falls
  back to pypdf and says so in a warning.
- ``broken_page_pdf_bytes()`` blanks one page object's header: pdfium opens the file but
  cannot load that page; the parser keeps the other pages and names the lost one.
- ``scan_pdf_bytes(pages)`` mixes pages of real text with pages that are only a
  Pillow-rendered picture of text (``None``), optionally with a stray page number on them.
- ``raw_pdf_bytes(objects)`` writes hand-made objects with a correct cross-reference
  table; ``deep_page_tree_pdf_bytes``, ``page_count_lie_pdf_bytes``,
  ``self_drawing_form_pdf_bytes`` and ``deep_outline_pdf_bytes`` build hostile structures
  with it.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from syllabus.contracts import RejectionReason
from tests import _office

__all__ = [
    "BadInput",
    "bad_inputs",
    "broken_page_pdf_bytes",
    "corrupt_pdf_bytes",
    "damaged_pdf_bytes",
    "deep_outline_pdf_bytes",
    "deep_page_tree_pdf_bytes",
    "encrypted_pdf_bytes",
    "html_bytes",
    "nested_blockquote_md_bytes",
    "nested_div_html_bytes",
    "owner_password_pdf_bytes",
    "page_count_lie_pdf_bytes",
    "pdf_bytes",
    "png_bytes",
    "raw_pdf_bytes",
    "scan_pdf_bytes",
    "scanned_pdf_bytes",
    "self_drawing_form_pdf_bytes",
    "tail_truncated_pdf_bytes",
    "text_image_png_bytes",
    "truncated_pdf_bytes",
    "write_bad_inputs",
    "zip_bytes",
]

_FIXED_DATE = datetime(2024, 1, 1, tzinfo=UTC)

DEFAULT_PAGES = (
    "Worker bees build comb from wax that they secrete from glands on the abdomen.",
    "Propolis is a resin collected from tree buds and used to seal gaps in the hive.",
    "Drones gather at congregation areas where they wait for virgin queens to fly past.",
)


def pdf_bytes(pages: Sequence[str] = DEFAULT_PAGES, *, title: str | None = None) -> bytes:
    """A valid PDF with one page per string (Helvetica, so latin-1 text only)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(_FIXED_DATE)
    if title:
        pdf.set_title(title)
    for text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        if text:
            pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def encrypted_pdf_bytes(pages: Sequence[str] = DEFAULT_PAGES, *, password: str = "secret",
                        algorithm: str = "AES-128") -> bytes:
    """A PDF that needs the user password ``password`` to open."""
    return _encrypt(pdf_bytes(pages), user_password=password, algorithm=algorithm)


def owner_password_pdf_bytes(pages: Sequence[str] = DEFAULT_PAGES) -> bytes:
    """Encrypted with an owner password only: it opens (and must parse) without one."""
    return _encrypt(pdf_bytes(pages), user_password="", algorithm="AES-128")


def _encrypt(data: bytes, *, user_password: str, algorithm: str) -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=io.BytesIO(data))
    writer.encrypt(user_password=user_password, owner_password="owner-secret",
                   algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def truncated_pdf_bytes(pages: Sequence[str] = DEFAULT_PAGES, *, keep: float = 0.5) -> bytes:
    """The first ``keep`` fraction of a valid PDF, like an interrupted download."""
    data = pdf_bytes(pages)
    return data[: int(len(data) * keep)]


def tail_truncated_pdf_bytes(pages: Sequence[str] = DEFAULT_PAGES) -> bytes:
    """A valid PDF cut just before ``startxref``: every object and the trailer survive."""
    data = pdf_bytes(pages)
    return data[: data.rindex(b"startxref")]


def damaged_pdf_bytes(pages: Sequence[str] = DEFAULT_PAGES) -> bytes:
    """A PDF whose trailer lost its ``/Root`` entry (blanked out, so offsets stay valid)."""
    data = pdf_bytes(pages)
    return re.sub(rb"/Root \d+ 0 R", lambda m: b" " * len(m.group()), data, count=1)


def broken_page_pdf_bytes(pages: Sequence[str] = DEFAULT_PAGES, *, broken: int = 2) -> bytes:
    """A PDF whose ``broken``-th page object has its ``N 0 obj`` header blanked out."""
    data = pdf_bytes(pages)
    headers = list(re.finditer(rb"\n(\d+) 0 obj\n<<\n(?:/[^\n]*\n)*?/Type /Page\n", data))
    if len(headers) < broken:
        raise ValueError(f"the PDF has {len(headers)} page objects")
    match = headers[broken - 1]
    start, end = match.start(1), match.end(1) + len(b" 0 obj")
    return data[:start] + b" " * (end - start) + data[end:]


def corrupt_pdf_bytes(size: int = 4096) -> bytes:
    """A ``%PDF-`` header followed by deterministic garbage."""
    garbage = bytes((i * 7919 + 13) % 251 for i in range(size))
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + garbage


def png_bytes(width: int = 64, height: int = 64) -> bytes:
    """A valid RGB PNG (a grey gradient with a darker band, like a scanned line of text)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            value = 40 if height // 3 <= y < height // 3 + 4 and 4 <= x < width - 4 else 200 + (x * 50) // width
            rows += bytes((value, value, value))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(b"IEND", b""))


def scanned_pdf_bytes(pages: int = 2) -> bytes:
    """A PDF whose pages hold only an image: no text layer, as from a scanner."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(_FIXED_DATE)
    image = io.BytesIO(png_bytes(120, 160))
    for _ in range(pages):
        pdf.add_page()
        image.seek(0)
        pdf.image(image, x=10, y=10, w=120)
    return bytes(pdf.output())


def text_image_png_bytes(text: str = "Worker bees build comb from wax.", *,
                         width: int = 900, height: int = 240) -> bytes:
    """A PNG picture of ``text`` drawn with Pillow, as a scanner would deliver a page."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for row, start in enumerate(range(0, len(text), 60)):
        draw.text((20, 20 + 24 * row), text[start:start + 60], fill=0)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def scan_pdf_bytes(pages: Sequence[str | None] = (None, None), *,
                   stamp: str | None = None, picture: bytes | None = None) -> bytes:
    """A PDF of real text pages (a string) and scanned pages (``None``: only a picture of
    text, no text layer). ``stamp`` is written as real text at the foot of every scanned
    page, like the page number or "Scanned with ..." line a scanner adds. ``picture``
    replaces the picture of text (``png_bytes()``: one with nothing for OCR to read)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(_FIXED_DATE)
    pdf.set_auto_page_break(False)
    picture = picture or text_image_png_bytes(DEFAULT_PAGES[0])
    for number, text in enumerate(pages, start=1):
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        if text is not None:
            pdf.multi_cell(0, 6, text)
            continue
        pdf.image(io.BytesIO(picture), x=10, y=10, w=190)
        if stamp is not None:
            pdf.set_xy(10, 280)
            pdf.cell(0, 6, stamp.format(page=number))
    return bytes(pdf.output())


def page_image_png_bytes(text: str, *, dpi: int = 200, font_size: int = 30) -> bytes:
    """A PNG of an A4 page at ``dpi`` with ``text`` typeset on it (Pillow's bundled
    TrueType font, wrapped to the page), as a scanner delivers a printed page."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    width, height = round(8.27 * dpi), round(11.69 * dpi)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    margin = round(0.8 * dpi)
    columns = int((width - 2 * margin) / (0.5 * font_size))
    y = margin
    for paragraph in text.split("\n\n"):
        for line in textwrap.wrap(paragraph, columns):
            draw.text((margin, y), line, fill=0, font=font)
            y += round(font_size * 1.6)
        y += font_size
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def scanned_text_pdf_bytes(pages: Sequence[str | tuple[str]], *, dpi: int = 200) -> bytes:
    """A PDF whose pages are pictures of printed text (a ``str``: no text layer, for OCR
    to read) or real text (a 1-tuple ``(text,)``: a text layer)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(_FIXED_DATE)
    pdf.set_auto_page_break(False)
    for page in pages:
        pdf.add_page()
        if isinstance(page, tuple):
            pdf.set_font("Helvetica", size=11)
            pdf.multi_cell(0, 6, page[0])
            continue
        pdf.image(io.BytesIO(page_image_png_bytes(page, dpi=dpi)), x=0, y=0, w=210, h=297)
    return bytes(pdf.output())


def raw_pdf_bytes(objects: Sequence[bytes], *, root: int = 1) -> bytes:
    """A PDF of hand-written objects (object ``n`` is ``objects[n - 1]``) with a correct
    cross-reference table, for structures no PDF library would write."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += (b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, root, xref))
    return bytes(out)


def _pdf_stream(data: bytes, entries: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n%s\nendstream" % (len(data), entries, data)


_RAW_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
_RAW_TEXT = (b"BT /F1 12 Tf 72 720 Td (Worker bees build comb from wax that they "
             b"secrete from glands on the abdomen.) Tj ET")
_RAW_PAGE = (b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] "
             b"/Resources << /Font << /F1 %d 0 R >> %s>> /Contents %d 0 R >>")


def deep_page_tree_pdf_bytes(depth: int = 5000) -> bytes:
    """One page of text under ``depth`` nested ``/Pages`` nodes."""
    objects = [b"<< /Type /Catalog /Pages 4 0 R >>", _RAW_FONT, _pdf_stream(_RAW_TEXT)]
    for level in range(depth):
        number = 4 + level
        parent = b"/Parent %d 0 R " % (number - 1) if level else b""
        objects.append(b"<< /Type /Pages %s/Kids [%d 0 R] /Count 1 >>" % (parent, number + 1))
    objects.append(_RAW_PAGE % (3 + depth, 2, b"", 3))
    return raw_pdf_bytes(objects)


def page_count_lie_pdf_bytes(count: int = 1_000_000) -> bytes:
    """One page of text, under a ``/Pages`` node that claims ``/Count count``."""
    return raw_pdf_bytes([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count %d >>" % count,
        _RAW_PAGE % (2, 4, b"", 5),
        _RAW_FONT,
        _pdf_stream(_RAW_TEXT),
    ])


def self_drawing_form_pdf_bytes() -> bytes:
    """A page of text that draws a form XObject which draws itself (endless recursion)."""
    form = _pdf_stream(b"BT /F1 12 Tf 72 700 Td (again) Tj ET /X Do",
                       b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                       b"/Resources << /Font << /F1 4 0 R >> /XObject << /X 6 0 R >> >> ")
    return raw_pdf_bytes([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        _RAW_PAGE % (2, 4, b"/XObject << /X 6 0 R >> ", 5),
        _RAW_FONT,
        _pdf_stream(_RAW_TEXT + b" /X Do"),
        form,
    ])


def deep_outline_pdf_bytes(depth: int = 20_000) -> bytes:
    """A page of text with an outline (bookmarks) nested ``depth`` levels deep."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /Outlines 6 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        _RAW_PAGE % (2, 4, b"", 5),
        _RAW_FONT,
        _pdf_stream(_RAW_TEXT),
        b"<< /Type /Outlines /First 7 0 R /Last 7 0 R /Count %d >>" % depth,
    ]
    for level in range(depth):
        number = 7 + level
        kids = (b"/First %d 0 R /Last %d 0 R /Count 1 " % (number + 1, number + 1)
                if level < depth - 1 else b"")
        objects.append(b"<< /Title (Part %d) /Parent %d 0 R %s/Dest [3 0 R /Fit] >>"
                       % (level, number - 1, kids))
    return raw_pdf_bytes(objects)


def nested_blockquote_md_bytes(depth: int = 20_000, text: str = "text") -> bytes:
    """Markdown: ``text`` inside ``depth`` nested blockquotes (``>>>>...text``)."""
    return (">" * depth + text).encode()


def nested_div_html_bytes(depth: int = 100_000, text: str = "Deep inside the hive.") -> bytes:
    """An HTML page whose text sits inside ``depth`` nested ``<div>`` elements."""
    return html_bytes("<div>" * depth + text + "</div>" * depth)


def zip_bytes() -> bytes:
    """A small ZIP archive (binary, an unknown type for every parser)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("notes.txt", date_time=(2024, 1, 1, 0, 0, 0))
        archive.writestr(info, "Bees keep the brood nest at about 35 degrees Celsius.\n" * 20)
    return out.getvalue()


def html_bytes(body: str, *, title: str = "Test page", charset: str = "utf-8",
               declare: bool = True) -> bytes:
    """An HTML page encoded in ``charset``, declaring it in ``<meta charset>`` if ``declare``."""
    meta = f'<meta charset="{charset}">' if declare else ""
    page = (f"<!DOCTYPE html><html><head>{meta}<title>{title}</title></head>"
            f"<body>{body}</body></html>")
    return page.encode(charset)


@dataclass(frozen=True)
class BadInput:
    """A file that the ingest service must reject, and the reason it must give."""

    filename: str
    reason: RejectionReason
    data: bytes

    def write(self, folder: Path) -> Path:
        path = Path(folder) / self.filename
        path.write_bytes(self.data)
        return path


@functools.cache
def bad_inputs() -> tuple[BadInput, ...]:
    """Every bad input with the rejection it must get: ``empty_file`` and ``unknown_type``
    come from the service's own checks, the others from a parser's ``ParseError``."""
    return (
        BadInput("encrypted.pdf", RejectionReason.ENCRYPTED, encrypted_pdf_bytes()),
        BadInput("truncated.pdf", RejectionReason.CORRUPT, truncated_pdf_bytes()),
        BadInput("garbage.pdf", RejectionReason.CORRUPT, corrupt_pdf_bytes()),
        BadInput("scanned.pdf", RejectionReason.NO_TEXT_LAYER, scanned_pdf_bytes()),
        BadInput("scanned-numbered.pdf", RejectionReason.NO_TEXT_LAYER,
                 scan_pdf_bytes((None, None, None), stamp="{page}",
                                picture=png_bytes(120, 160))),
        BadInput("empty.txt", RejectionReason.EMPTY, b""),
        BadInput("image.png", RejectionReason.UNKNOWN_TYPE, png_bytes()),
        BadInput("archive.zip", RejectionReason.UNKNOWN_TYPE, zip_bytes()),
        BadInput("blank.html", RejectionReason.NO_TEXT,
                 html_bytes("<nav><ul><li></li></ul></nav><div>   </div>")),
        BadInput("whitespace.txt", RejectionReason.NO_TEXT, b"  \n\n\t \n"),
        BadInput("locked.docx", RejectionReason.ENCRYPTED,
                 _office.encrypted_bytes(_office.docx_bytes())),
        BadInput("locked.pptx", RejectionReason.ENCRYPTED,
                 _office.encrypted_bytes(_office.pptx_bytes())),
        BadInput("broken.docx", RejectionReason.CORRUPT, _office.corrupt_docx_bytes()),
        BadInput("macros.docm", RejectionReason.MACRO_ONLY, _office.macro_only_docm_bytes()),
        BadInput("blank.docx", RejectionReason.NO_TEXT, _office.empty_docx_bytes()),
        BadInput("blank.pptx", RejectionReason.NO_TEXT, _office.empty_pptx_bytes()),
        BadInput("old.doc", RejectionReason.UNKNOWN_TYPE, _office.legacy_doc_bytes()),
        BadInput("bomb.docx", RejectionReason.TOO_LARGE,
                 _office.size_bomb_bytes(_office.docx_bytes())),
        BadInput("invisible.txt", RejectionReason.NO_TEXT,
                 "\u200b\u200d\u2060\ufeff\u202e\n\n\u200b \u2066\u2069".encode()),
    )


def write_bad_inputs(folder: Path) -> dict[str, tuple[Path, RejectionReason]]:
    """Write every bad input into ``folder``; returns ``{filename: (path, reason)}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {bad.filename: (bad.write(folder), bad.reason) for bad in bad_inputs()}
