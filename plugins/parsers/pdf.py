"""PDF parser: page-aware text extraction with pypdfium2, falling back to pypdf.

One ``Section`` per page that has text (``kind="page"``, 1-based ``page``; blank pages
are counted in ``pages`` but get no section). Line breaks are kept
(``\\n``), and a hyphen that pdfium recognises at the end of a line is written back as
``-\\n``, the same shape pypdf gives, so the chunker's dehyphenation sees one form;
nothing else is normalised here.

Rejections (``ParseError.reason``):

- ``encrypted``: a user password is needed (pdfium's password or security-handler error,
  or pypdf's ``is_encrypted`` with an empty password that does not decrypt). A PDF with
  only an owner password opens without one and is parsed normally.
- ``corrupt``: neither library can open the file or read any page from it.
- ``no_text_layer``: the pages hold no extractable text (a scanned PDF) and OCR read none.
  A page that shows an image and has fewer than 32 letters or digits of text (a page
  number, a scanner's "Scanned with ..." line, stray spaces or invisible characters) is a
  scanned page. A PDF with no page of real text and at least one scanned page is refused,
  the detail naming the file and how many pages are scanned; a PDF with both kinds is
  parsed, with a warning naming the scanned pages (their text, if any, is kept).

**OCR** (the ``ocr`` extra, ``_ocr.py``): when it is installed, every scanned page is
rendered with pypdfium2 and read by RapidOCR; text-layer pages are read as before. An OCR
page's section carries ``ocr_confidence`` (ingest puts ``ocr`` and the confidence in the
chunk's lineage). A page whose confidence is under ``_ocr.MIN_CONFIDENCE`` (0.6), or on
which OCR read nothing, keeps no OCR text and is named in a warning, with its confidence.
``SYLLABUS_OCR=off`` (or ``PdfParser(ocr=False)``) turns OCR off; a file only pypdf can
open is not OCR'd (pypdf cannot render pages), and the warning says so.

Damaged but readable input is accepted with ``ParsedDocument.warnings``: a file without
``%%EOF`` near its end is reported as truncated (pdfium rebuilds a truncated file's
cross-reference table when the cut falls after the last object), a file only pypdf can
open says so, and every page that could not be read is named (as ranges, "2-9, 12"; after
256 pages in a row fail to load, as when ``/Count`` claims a million pages over one, the
rest are counted as lost without trying each). A damaged file with no
recoverable text at all is ``corrupt``, not ``no_text_layer``.

PDFium is not thread-safe, so calls into it are serialised with a module-level lock.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass, field

from syllabus.contracts import ParsedDocument, ParseError, RejectionReason, Section, hookimpl

from . import _ocr
from ._outline import page_list
from ._visible import has_visible_text

__all__ = ["PdfParser", "register_parsers"]

_SNIFF_WINDOW = 1024
_EOF_WINDOW = 1024
# pdfium marks a hyphen it recognises at the end of a line with U+FFFE (in
# FPDFText_GetText; \x02 elsewhere) and joins the two lines; write it back as on the page.
_PDFIUM_LINE_HYPHENS = {"\ufffe": "-\n", "\x02": "-\n"}
# pdfium error codes (FPDF_ERR_PASSWORD, FPDF_ERR_SECURITY)
_PDFIUM_PASSWORD_ERRORS = {4, 6}
_PDFIUM_LOCK = threading.Lock()
#: a page with an image and fewer letters/digits than this is a scanned page
_SCAN_MAX_CHARS = 32
#: form XObjects nested deeper than this are not searched for images
_MAX_FORM_DEPTH = 8
#: page objects looked at (per page) when searching for an image
_MAX_OBJECTS = 20_000
#: why a PDF with no text was not OCR'd, when OCR is on
_NO_IMAGE = "no page shows an image for OCR to read"
#: after this many pages in a row fail to load, the rest are not tried
_MAX_FAILED_RUN = 256


@dataclass
class _Extraction:
    pages: list[str]
    engine: str
    warnings: list[str] = field(default_factory=list)
    title: str | None = None
    #: 1-based numbers of the pages that show an image but have (almost) no text
    scanned: list[int] = field(default_factory=list)


def _letters(text: str) -> int:
    return sum(1 for ch in text if ch.isalnum())


def _needs_image_check(text: str) -> bool:
    return _letters(text) < _SCAN_MAX_CHARS


def _pdfium_has_image(page) -> bool:
    """Whether the page draws an image, directly or in (bounded) nested form XObjects."""
    import pypdfium2.raw as raw

    try:
        return _pdfium_walk_for_image(raw, page.raw)
    except Exception:  # no evidence of an image
        return False


def _pdfium_walk_for_image(raw, handle) -> bool:
    looked = 0
    stack = [(handle, 0)]
    while stack:
        parent, depth = stack.pop()
        if depth == 0:
            count, get = raw.FPDFPage_CountObjects(parent), raw.FPDFPage_GetObject
        else:
            count, get = raw.FPDFFormObj_CountObjects(parent), raw.FPDFFormObj_GetObject
        for index in range(max(count, 0)):
            looked += 1
            if looked > _MAX_OBJECTS:
                return False
            obj = get(parent, index)
            if not obj:
                continue
            kind = raw.FPDFPageObj_GetType(obj)
            if kind == raw.FPDF_PAGEOBJ_IMAGE:
                return True
            if kind == raw.FPDF_PAGEOBJ_FORM and depth < _MAX_FORM_DEPTH:
                stack.append((obj, depth + 1))
    return False


def _pypdf_has_image(page) -> bool:
    try:
        return len(page.images) > 0
    except Exception:  # a damaged resource dictionary: no evidence of an image
        return False


class _Unreadable(Exception):
    """One library could not open the document at all."""


def _clean_pdfium_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for marker, replacement in _PDFIUM_LINE_HYPHENS.items():
        text = text.replace(marker, replacement)
    return text


def _extract_pdfium(data: bytes) -> _Extraction:
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) in _PDFIUM_PASSWORD_ERRORS:
            raise ParseError(RejectionReason.ENCRYPTED,
                             "the PDF is encrypted and needs a password to open") from exc
        raise _Unreadable(str(exc)) from exc
    try:
        out = _Extraction(pages=[], engine="pypdfium2")
        try:
            title = doc.get_metadata_value("Title")
        except Exception:  # metadata is optional decoration
            title = ""
        out.title = title.strip() or None
        failed: list[int | range] = []
        count = len(doc)
        run = 0  # pages in a row that failed to load
        for index in range(count):
            if run >= _MAX_FAILED_RUN:  # a /Count that lies; the rest will fail too
                failed.append(range(index + 1, count + 1))
                out.pages += [""] * (count - index)
                break
            try:
                page = doc[index]
                try:
                    textpage = page.get_textpage()
                    try:
                        text = _clean_pdfium_text(textpage.get_text_range())
                    finally:
                        textpage.close()
                    scanned = _needs_image_check(text) and _pdfium_has_image(page)
                finally:
                    page.close()
                out.pages.append(text)
                if scanned:
                    out.scanned.append(index + 1)
                run = 0
            except pdfium.PdfiumError:
                failed.append(index + 1)
                out.pages.append("")
                run += 1
        lost = sum(len(f) if isinstance(f, range) else 1 for f in failed)
        if failed and lost == len(out.pages):
            raise _Unreadable(f"none of its {lost} page(s) could be loaded")
        if failed:
            out.warnings.append(f"pypdfium2 could not read page(s) {page_list(failed)}")
        return out
    finally:
        doc.close()


def _extract_pypdf(data: bytes) -> _Extraction:
    import pypdf
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except (NotImplementedError, DependencyError) as exc:
                raise ParseError(RejectionReason.ENCRYPTED,
                                 f"the PDF is encrypted with an unsupported method: {exc}") from exc
            if not opened:
                raise ParseError(RejectionReason.ENCRYPTED,
                                 "the PDF is encrypted and needs a password to open")
        count = len(reader.pages)
    except ParseError:
        raise
    except FileNotDecryptedError as exc:
        raise ParseError(RejectionReason.ENCRYPTED, f"the PDF is encrypted: {exc}") from exc
    except Exception as exc:  # pypdf raises many kinds of error on damaged files
        raise _Unreadable(f"{type(exc).__name__}: {exc}") from exc

    out = _Extraction(pages=[], engine="pypdf")
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:
        title = None
    out.title = title.strip() if isinstance(title, str) and title.strip() else None
    failed: list[int] = []
    for index in range(count):
        try:
            page = reader.pages[index]
            text = page.extract_text() or ""
        except Exception:  # a damaged page; keep the others
            failed.append(index + 1)
            out.pages.append("")
            continue
        out.pages.append(text.replace("\r\n", "\n").replace("\r", "\n"))
        if _needs_image_check(text) and _pypdf_has_image(page):
            out.scanned.append(index + 1)
    if count and len(failed) == count:
        raise _Unreadable(f"none of its {count} page(s) could be read")
    if failed:
        out.warnings.append(f"pypdf could not read page(s) {page_list(failed)}")
    return out


def _looks_truncated(data: bytes) -> bool:
    return b"%%EOF" not in data[-_EOF_WINDOW:]


def _ocr_pages(data: bytes, numbers: list[int]) -> dict[int, _ocr.OcrPage]:
    """OCR of the 1-based pages ``numbers``: each rendered under the PDFium lock, then read
    (one page image in memory at a time)."""
    import pypdfium2 as pdfium

    out: dict[int, _ocr.OcrPage] = {}
    for number in numbers:
        try:
            with _PDFIUM_LOCK:
                doc = pdfium.PdfDocument(data)
                try:
                    page = doc[number - 1]
                    try:
                        width, height = page.get_size()
                        bitmap = page.render(scale=_ocr.render_scale(width, height),
                                             grayscale=True)
                        image = bitmap.to_pil()
                    finally:
                        page.close()
                finally:
                    doc.close()
            out[number] = _ocr.ocr_image(image)
        except _ocr.OcrFailed:
            raise  # the engine itself: the other pages would fail the same way
        except Exception as exc:  # this page only (cannot be rendered, an odd shape)
            out[number] = _ocr.OcrPage(text="", confidence=0.0, lines=0,
                                       error=f"{type(exc).__name__}: {exc}")
    return out


class PdfParser:
    """Extracts one section of text per page; see the module docstring for rejections."""

    name = "pdf"
    media_types = ("application/pdf",)
    priority = 100

    def __init__(self, *, ocr: bool | None = None) -> None:
        #: OCR of scanned pages: None follows SYLLABUS_OCR and whether the extra is installed
        self.ocr = ocr

    def _ocr_state(self) -> str | None:
        """None when OCR is on; else why it is not, for the messages."""
        if self.ocr is False:
            return "OCR is not enabled"
        if self.ocr is None and os.environ.get("SYLLABUS_OCR", "on").strip().lower() in (
                "0", "off", "false", "no"):
            return "OCR is not enabled (SYLLABUS_OCR=off)"
        if not _ocr.available():
            return ("OCR is not enabled (install the ocr extra: pip install "
                    "'syllabus[ocr]')")
        return None

    def sniff(self, head: bytes, filename: str) -> bool:
        return b"%PDF-" in head[:_SNIFF_WINDOW]

    def parse(self, data: bytes, *, filename: str) -> ParsedDocument:
        if not data:
            raise ParseError(RejectionReason.CORRUPT, "the file is empty")

        truncated = _looks_truncated(data)
        try:
            with _PDFIUM_LOCK:  # PDFium is not thread-safe; parsers may run in a pool
                extraction = _extract_pdfium(data)
        except _Unreadable as pdfium_error:
            try:
                extraction = _extract_pypdf(data)
            except _Unreadable as pypdf_error:
                raise ParseError(
                    RejectionReason.CORRUPT,
                    "neither pypdfium2 nor pypdf could read the PDF"
                    + (" (it looks truncated)" if truncated else "")
                    + f": pypdfium2: {pdfium_error}; pypdf: {pypdf_error}",
                ) from pypdf_error
            extraction.warnings.insert(
                0, f"pypdfium2 could not open the PDF ({pdfium_error}); "
                   "the text was extracted with pypdf instead")

        if truncated:
            extraction.warnings.insert(
                0, "the PDF looks truncated (no %%EOF marker at its end); "
                   f"{extraction.engine} recovered {len(extraction.pages)} page(s), "
                   "and some content may be missing")

        if not extraction.pages:
            raise ParseError(RejectionReason.CORRUPT, "the PDF has no pages")
        scanned = set(extraction.scanned)
        total = len(extraction.pages)
        confidence: dict[int, float] = {}
        why_not = self._ocr_state() if scanned else None
        if scanned and why_not is None and extraction.engine != "pypdfium2":
            why_not = "OCR needs pypdfium2 to render the pages, and it could not open the file"
        if scanned and why_not is None:
            low: list[str] = []
            failed = ""
            try:
                read = _ocr_pages(data, sorted(scanned))
            except _ocr.OcrFailed as exc:
                read, failed = {}, f"OCR failed: {exc}"
            for number, page in read.items():
                # as for a text layer, a page number or a stamp alone is not a page's text
                if not _needs_image_check(page.text) and page.confidence >= _ocr.MIN_CONFIDENCE:
                    extraction.pages[number - 1] = page.text
                    confidence[number] = page.confidence
                    scanned.discard(number)
                elif page.error:
                    low.append(f"{number} (not read: {page.error[:200]})")
                elif not page.lines:
                    low.append(f"{number} (nothing read)")
                elif _needs_image_check(page.text):
                    low.append(f"{number} (only {_letters(page.text)} letters or digits)")
                else:
                    low.append(f"{number} ({page.confidence:.2f})")
            if confidence:
                extraction.warnings.append(
                    f"page(s) {page_list(sorted(confidence))} of {total} have no text layer "
                    f"and were read by OCR (confidence {min(confidence.values()):.2f} to "
                    f"{max(confidence.values()):.2f})")
            if low:
                extraction.warnings.append(
                    f"OCR left out page(s) {', '.join(low)}: no text, or under the "
                    f"confidence floor {_ocr.MIN_CONFIDENCE}")
            why_not = failed or "OCR read no text above its confidence floor on them"
        if scanned and not any(has_visible_text(text) for number, text
                               in enumerate(extraction.pages, start=1)
                               if number not in scanned):
            blank = total - len(scanned)
            raise ParseError(
                RejectionReason.NO_TEXT_LAYER,
                f"{filename} has no text layer: {len(scanned)} of {total} page(s) are "
                "images without text (a scanned PDF?)"
                + (f", the other {blank} blank or unreadable" if blank else "")
                + f"; {why_not}"
                + "".join(f"; {warning}" for warning in extraction.warnings))
        if scanned:
            extraction.warnings.append(
                f"page(s) {page_list(sorted(scanned))} of {total} are images without a "
                f"text layer (scanned?); their text is missing: {why_not}")
        if not any(has_visible_text(text) for text in extraction.pages):
            if truncated or extraction.warnings:
                raise ParseError(RejectionReason.CORRUPT,
                                 "the PDF is damaged and no text could be recovered: "
                                 + "; ".join(extraction.warnings))
            raise ParseError(
                RejectionReason.NO_TEXT_LAYER,
                f"{filename} has no text layer: none of its {total} page(s) has text "
                f"(a scanned or image-only PDF?); {why_not or self._ocr_state() or _NO_IMAGE}")

        sections = [Section(text=text, page=number, kind="page",
                            ocr_confidence=confidence.get(number))
                    for number, text in enumerate(extraction.pages, start=1)
                    if has_visible_text(text)]
        return ParsedDocument(media_type="application/pdf", title=extraction.title,
                              pages=len(extraction.pages), sections=sections,
                              warnings=extraction.warnings)


@hookimpl
def register_parsers(register):
    register(PdfParser())
