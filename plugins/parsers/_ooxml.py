"""What the Word and PowerPoint parsers share: sniffing an Office Open XML package, and
the checks made before python-docx or python-pptx is given one.

An OOXML file (``.docx``, ``.pptx`` and their macro-enabled and template kinds) is a ZIP
archive. Its first entries name the folder of the main part (``word/``, ``ppt/``), so
the first 8 KiB tell a Word file from a deck whatever the file is called; a ZIP whose
head names neither (nor ``xl/``, a spreadsheet) is claimed only under its family's
extension. A password-protected Office file is not a ZIP at all but an OLE compound file
holding an ``EncryptedPackage`` stream; the legacy binary formats (``.doc``, ``.ppt``)
are OLE files too.

Rejections (``ParseError.reason``), made before any XML is parsed:

- ``encrypted``: an OLE file with an ``EncryptedPackage`` stream, or a ZIP whose entries
  are encrypted;
- ``unknown_type``: a legacy binary Office file (the detail says to save it in the new
  format);
- ``corrupt``: not a readable ZIP archive;
- ``too_large``: more than ``MAX_ENTRIES`` entries, entries that would unpack to more
  than ``MAX_UNPACKED_BYTES``, or XML parts (``.xml``, ``.rels``) over ``MAX_XML_BYTES`` in
  all (lxml needs some 25 times an XML part's size in memory): a ZIP bomb. The sizes are
  the archive's own, and Python's zipfile never inflates a stored or deflated entry past
  the size its header declares; other methods (bzip2, LZMA: zipfile inflates those whole
  before it checks) are ``corrupt``, as Office never writes them.

Nothing is fetched: external relationships (linked images, hyperlinks) stay names, and
lxml is not allowed to resolve entities (python-docx and python-pptx parse with
``resolve_entities=False``). Macros (``vbaProject.bin``) are never run; a document that
has them says so in a warning, and one with macros and no text is ``macro_only``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from syllabus.contracts import ParseError, RejectionReason

__all__ = ["MAX_ENTRIES", "MAX_UNPACKED_BYTES", "MAX_XML_BYTES", "Family", "Package", "damaged", "open_package"]

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: the name of the stream that holds an encrypted OOXML package (names are UTF-16LE)
_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")
#: the folders of the main parts of the three OOXML families
_MAIN_FOLDERS = (b"word/", b"ppt/", b"xl/")
_CORE = "docProps/core.xml"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
#: entries in one package; Word and PowerPoint files have tens to a few thousand
MAX_ENTRIES = 20_000
#: what all the entries may unpack to (python-docx and python-pptx read every part)
MAX_UNPACKED_BYTES = 1 << 30
#: what the XML parts may unpack to, in all (a 1,000-page report's is about 20 MB)
MAX_XML_BYTES = 64 << 20
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


@dataclass(frozen=True)
class Family:
    """One kind of Office document: how it is named, and how it is recognised."""

    label: str  # "Word document"
    folder: bytes  # b"word/"
    extensions: tuple[str, ...]  # the OOXML kinds: (".docx", ".docm", ...)
    legacy: tuple[str, ...]  # the binary kinds: (".doc", ".dot")
    legacy_name: str  # "Word 97-2003 (.doc)"
    #: claims an encrypted Office file whatever its name (only one family may)
    claims_unnamed_encrypted: bool = False

    def sniff(self, head: bytes, filename: str) -> bool:
        extension = PurePosixPath(filename.lower()).suffix
        if head.startswith(ZIP_MAGIC):
            if self.folder in head:
                return True
            named = any(folder in head for folder in _MAIN_FOLDERS)
            return not named and extension in self.extensions
        if head.startswith(OLE_MAGIC):
            return (extension in self.extensions + self.legacy
                    or (self.claims_unnamed_encrypted and _ENCRYPTED_STREAM in head))
        return False


@dataclass(frozen=True)
class Package:
    """What the checks learnt about a package that passed them."""

    names: frozenset[str]
    #: ``dc:title`` of the core properties (``docProps/core.xml``), when it has one
    title: str | None = None

    @property
    def has_macros(self) -> bool:
        return any(PurePosixPath(name).name.lower() == "vbaproject.bin" for name in self.names)

    def warnings(self) -> list[str]:
        """What the package itself is worth a warning for (its macros)."""
        return (["the file contains macros (a VBA project); they were not run"]
                if self.has_macros else [])

    def nothing_read(self, filename: str, detail: str) -> ParseError:
        """The rejection for a package with no text: ``macro_only`` when it has macros,
        else ``no_text`` with ``detail``."""
        if self.has_macros:
            return ParseError(RejectionReason.MACRO_ONLY,
                              f"{filename} has no text, only macros (which are never run)")
        return ParseError(RejectionReason.NO_TEXT, detail)


def open_package(family: Family, data: bytes, filename: str) -> Package:
    """Check ``data`` before it is parsed; see the module docstring for the rejections."""
    if not data:
        raise ParseError(RejectionReason.CORRUPT, "the file is empty")
    if data.startswith(OLE_MAGIC):
        if _ENCRYPTED_STREAM in data:
            raise ParseError(RejectionReason.ENCRYPTED,
                             f"{filename} is a password-protected Office file: it needs a "
                             "password to open; save a copy without one")
        raise ParseError(RejectionReason.UNKNOWN_TYPE,
                         f"{filename} is in the legacy binary format ({family.legacy_name}), "
                         f"which is not read; save it as {family.extensions[0]}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise ParseError(RejectionReason.CORRUPT,
                         f"{filename} is not a readable {family.label} (its ZIP archive is "
                         f"damaged: {exc})") from exc
    if len(entries) > MAX_ENTRIES:
        raise ParseError(RejectionReason.TOO_LARGE,
                         f"{filename} holds {len(entries):,} parts, over the limit of "
                         f"{MAX_ENTRIES:,}")
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > MAX_UNPACKED_BYTES:
        raise ParseError(RejectionReason.TOO_LARGE,
                         f"{filename} would unpack to {unpacked / 2**20:,.0f} MiB, over the "
                         f"limit of {MAX_UNPACKED_BYTES / 2**20:,.0f} MiB (a ZIP bomb?)")
    xml = sum(entry.file_size for entry in entries
              if entry.filename.lower().endswith((".xml", ".rels")))
    if xml > MAX_XML_BYTES:
        raise ParseError(RejectionReason.TOO_LARGE,
                         f"{filename}'s XML would unpack to {xml / 2**20:,.0f} MiB, over the "
                         f"limit of {MAX_XML_BYTES / 2**20:,.0f} MiB (a ZIP bomb?)")
    odd = next((entry for entry in entries if entry.compress_type not in _METHODS), None)
    if odd is not None:
        raise ParseError(RejectionReason.CORRUPT,
                         f"{filename} is not a readable {family.label}: part {odd.filename!r} "
                         f"uses compression method {odd.compress_type}, which Office never "
                         "writes")
    if any(entry.flag_bits & 0x1 for entry in entries):
        raise ParseError(RejectionReason.ENCRYPTED,
                         f"{filename} is an encrypted ZIP archive; save a copy without a "
                         "password")
    names = frozenset(entry.filename for entry in entries)
    return Package(names=names, title=_core_title(archive) if _CORE in names else None)


def _core_title(archive: zipfile.ZipFile) -> str | None:
    """The document's title, from its core properties; python-docx and python-pptx give a
    made-up one ("Word Document") to a package without them, so they are read here."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(archive.read(_CORE), parser)
    except Exception:  # damaged metadata is no reason to refuse the document
        return None
    title = root.find(_DC_TITLE)
    text = " ".join((title.text or "").split()) if title is not None else ""
    return text or None


def damaged(family: Family, filename: str, exc: Exception) -> ParseError:
    """The rejection for a package that passed the checks but could not be parsed."""
    detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return ParseError(RejectionReason.CORRUPT,
                      f"{filename} is not a readable {family.label}: "
                      f"{type(exc).__name__}{': ' + detail if detail else ''}")
