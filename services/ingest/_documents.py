"""Checks and helpers for a document before and after it is submitted: the file name, the
size, the media type (sniffed from the content by the registered parsers)."""

from __future__ import annotations

import hashlib
import mimetypes
import unicodedata
from collections.abc import Sequence
from pathlib import PurePosixPath, PureWindowsPath
from typing import IO

from syllabus.contracts import Parser, RejectionReason

from ..runtime import Registered

__all__ = ["Rejection", "check_filename", "detect_parser", "hash_stream", "sniff_mismatch"]

SNIFF_BYTES = 8192

#: Unicode categories a file name may not contain: control (Cc), format (Cf: bidi
#: embeddings, overrides and isolates, zero-width spaces and joiners, the BOM, soft
#: hyphens, tags), surrogate (Cs: what os.fsdecode makes of bytes that are not UTF-8),
#: line and paragraph separators (Zl, Zp)
_UNSAFE_CATEGORIES = {"Cc": "a control character", "Cf": "an invisible formatting character",
                      "Cs": "a lone surrogate: the name is not valid UTF-8",
                      "Zl": "a line separator", "Zp": "a paragraph separator"}

# Python's built-in table only (never the host's /etc/mime.types, so every machine
# agrees), plus the types it lacks for documents people upload
_MIME = mimetypes.MimeTypes()
for _type, _extensions in {
    "text/markdown": (".md", ".markdown", ".mdx", ".mkd", ".mdown"),
    "application/xhtml+xml": (".xhtml",),
    "application/yaml": (".yaml", ".yml"),
    "application/toml": (".toml",),
    "text/x-rst": (".rst",),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (".docx",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (".xlsx",),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (".pptx",),
    "application/vnd.oasis.opendocument.text": (".odt",),
    "application/epub+zip": (".epub",),
}.items():
    for _extension in _extensions:
        _MIME.add_type(_type, _extension)
_ENCODINGS = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
              "xz": "application/x-xz", "br": "application/x-brotli",
              "compress": "application/x-compress"}
#: not text/*, but text all the same: plain-text content under such a name is no surprise
_TEXTUAL = {"application/json", "application/xml", "application/yaml", "application/toml",
            "application/javascript", "application/x-sh", "application/x-tex",
            "application/x-latex", "application/sql"}
_MARKUP = {"text/html", "application/xhtml+xml"}


class Rejection(Exception):
    """A document that will not be ingested; the reason goes into the run report."""

    def __init__(self, reason: RejectionReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def check_filename(name: str | None) -> str:
    """The name as given, if it is a bare file name; otherwise ``Rejection(unsafe_name)``.

    Names are only ever recorded, never used as paths (objects are stored under their
    content hash), but a name that tries to leave its folder is refused outright."""
    if name is None or not name.strip():
        raise Rejection(RejectionReason.UNSAFE_NAME, "the upload has no file name")
    bad = None
    unsafe = next((c for c in name if unicodedata.category(c) in _UNSAFE_CATEGORIES), None)
    if unsafe is not None:
        # invisible characters can make a name read as another one ("fdp.exe" shown
        # as "exe.pdf"), so the name is refused, and shown escaped (repr), never raw
        code = f"U+{ord(unsafe):04X}"
        label = unicodedata.name(unsafe, "")
        what = _UNSAFE_CATEGORIES[unicodedata.category(unsafe)]
        bad = f"it contains {code} {label}" if label else f"it contains {code} ({what})"
    elif "/" in name or "\\" in name:
        bad = "it contains a folder separator"
    elif ".." in PurePosixPath(name).parts or ".." in PureWindowsPath(name).parts or name in {".", ".."}:
        bad = "it refers to a parent folder"
    elif PureWindowsPath(name).drive:
        bad = "it names a drive"
    elif len(name.encode()) > 255:
        bad = "it is longer than 255 bytes"
    if bad:
        raise Rejection(RejectionReason.UNSAFE_NAME, f"file name {name!r} is not allowed: {bad}")
    return name


def detect_parser(head: bytes, filename: str, parsers: Sequence[Registered]) -> Registered:
    """The highest-priority parser whose ``sniff`` accepts the content.

    The content decides, whatever the name says; ``sniff_mismatch(filename,
    reg.obj.media_types)`` gives the warning to record when the two disagree."""
    for reg in sorted(parsers, key=lambda r: -int(getattr(r.obj, "priority", 0))):
        parser: Parser = reg.obj
        try:
            if parser.sniff(head, filename):
                return reg
        except Exception:  # a plugin's sniff must not take the service down
            continue
    raise Rejection(RejectionReason.UNKNOWN_TYPE,
                    f"{filename}: no parser recognises this content "
                    f"(starts with {head[:16]!r}); supported: "
                    + ", ".join(sorted({m for r in parsers for m in r.obj.media_types})))


def _name_type(filename: str) -> str | None:
    media_type, encoding = _MIME.guess_type(filename, strict=False)
    if encoding:
        return _ENCODINGS.get(encoding, f"application/x-{encoding}")
    return media_type


def sniff_mismatch(filename: str, media_types: Sequence[str] | str) -> str | None:
    """A warning when the file name's extension says another type than the content.

    ``media_types`` are the media types of the parser that content sniffing chose
    (``Parser.media_types``; the first is the one named as read). The content wins, as
    ``detect_parser`` decided; this only says so: ``"the name says application/pdf but
    the content is text/html; read as text/html"`` (a document warning: the report puts
    the file name before it). ``None`` when the
    name has no known extension or agrees, and for plain-text content under any textual
    name (``.csv``, ``.py``, ``.json``), or Markdown under a ``.txt`` name.
    """
    types = (media_types,) if isinstance(media_types, str) else tuple(media_types)
    if not types:
        return None
    content = types[0]
    named = _name_type(filename)
    if named is None or named in types:
        return None
    textual = named.startswith("text/") or named in _TEXTUAL or named.endswith(("+xml", "+json"))
    if content == "text/plain" and textual and named not in _MARKUP and named != "text/markdown":
        return None
    if content == "text/markdown" and named == "text/plain":
        return None
    return f"the name says {named} but the content is {content}; read as {content}"


def hash_stream(fh: IO[bytes]) -> tuple[str, int]:
    """sha256 and size of a file object, read in blocks (never whole)."""
    h = hashlib.sha256()
    size = 0
    while block := fh.read(1 << 20):
        h.update(block)
        size += len(block)
    return h.hexdigest(), size
