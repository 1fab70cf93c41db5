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
- ``no_text_layer``: the pages hold no extractable text (a scanned PDF); OCR is not enabled.

Damaged but readable input is accepted with ``ParsedDocument.warnings``: a file without
``%%EOF`` near its end is reported as truncated (pdfium rebuilds a truncated file's
cross-reference table when the cut falls after the last object), a file only pypdf can
open says so, and every page that could not be read is named. A damaged file with no
recoverable text at all is ``corrupt``, not ``no_text_layer``.

PDFium is not thread-safe, so calls into it are serialised with a module-level lock.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field

from syllabus.contracts import ParsedDocument, ParseError, RejectionReason, Section, hookimpl

__all__ = ["PdfParser", "register_parsers"]

_SNIFF_WINDOW = 1024
_EOF_WINDOW = 1024
# pdfium marks a hyphen it recognises at the end of a line with U+FFFE (in
# FPDFText_GetText; \x02 elsewhere) and joins the two lines; write it back as on the page.
_PDFIUM_LINE_HYPHENS = {"\ufffe": "-\n", "\x02": "-\n"}
# pdfium error codes (FPDF_ERR_PASSWORD, FPDF_ERR_SECURITY)
_PDFIUM_PASSWORD_ERRORS = {4, 6}
_PDFIUM_LOCK = threading.Lock()


@dataclass
class _Extraction:
    pages: list[str]
    engine: str
    warnings: list[str] = field(default_factory=list)
    title: str | None = None


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
        failed: list[int] = []
        for index in range(len(doc)):
            try:
                page = doc[index]
                try:
                    textpage = page.get_textpage()
                    try:
                        out.pages.append(_clean_pdfium_text(textpage.get_text_range()))
                    finally:
                        textpage.close()
                finally:
                    page.close()
            except pdfium.PdfiumError:
                failed.append(index + 1)
                out.pages.append("")
        if failed and len(failed) == len(out.pages):
            raise _Unreadable(f"none of its {len(failed)} page(s) could be loaded")
        if failed:
            out.warnings.append(f"pypdfium2 could not read page(s) {_page_list(failed)}")
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
            text = reader.pages[index].extract_text() or ""
        except Exception:  # a damaged page; keep the others
            failed.append(index + 1)
            text = ""
        out.pages.append(text.replace("\r\n", "\n").replace("\r", "\n"))
    if count and len(failed) == count:
        raise _Unreadable(f"none of its {count} page(s) could be read")
    if failed:
        out.warnings.append(f"pypdf could not read page(s) {_page_list(failed)}")
    return out


def _page_list(pages: list[int]) -> str:
    return ", ".join(str(p) for p in pages)


def _looks_truncated(data: bytes) -> bool:
    return b"%%EOF" not in data[-_EOF_WINDOW:]


class PdfParser:
    """Extracts one section of text per page; see the module docstring for rejections."""

    name = "pdf"
    media_types = ("application/pdf",)
    priority = 100

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
        if not any(text.strip() for text in extraction.pages):
            if truncated or extraction.warnings:
                raise ParseError(RejectionReason.CORRUPT,
                                 "the PDF is damaged and no text could be recovered: "
                                 + "; ".join(extraction.warnings))
            raise ParseError(
                RejectionReason.NO_TEXT_LAYER,
                f"none of the {len(extraction.pages)} page(s) has a text layer "
                "(a scanned or image-only PDF?); OCR is not enabled")

        sections = [Section(text=text, page=number, kind="page")
                    for number, text in enumerate(extraction.pages, start=1)
                    if text.strip()]
        return ParsedDocument(media_type="application/pdf", title=extraction.title,
                              pages=len(extraction.pages), sections=sections,
                              warnings=extraction.warnings)


@hookimpl
def register_parsers(register):
    register(PdfParser())
