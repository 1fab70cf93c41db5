"""Checks and helpers for a document before and after it is submitted: the file name, the
size, the media type (sniffed from the content by the registered parsers)."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from pathlib import PurePosixPath, PureWindowsPath
from typing import IO

from syllabus.contracts import Parser, RejectionReason

from ..runtime import Registered

__all__ = ["Rejection", "check_filename", "detect_parser", "hash_stream"]

SNIFF_BYTES = 8192


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
    if "\x00" in name or any(unicodedata.category(c) == "Cc" for c in name):
        bad = "it contains control characters"
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
    """The highest-priority parser whose ``sniff`` accepts the content."""
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


def hash_stream(fh: IO[bytes]) -> tuple[str, int]:
    """sha256 and size of a file object, read in blocks (never whole)."""
    h = hashlib.sha256()
    size = 0
    while block := fh.read(1 << 20):
        h.update(block)
        size += len(block)
    return h.hexdigest(), size
