"""Content-derived identifiers.

Every id in Syllabus hashes what it identifies, so a redelivery or a rerun produces the
same ids, the same store keys and the same ``Nats-Msg-Id`` headers, and therefore no
duplicates anywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

__all__ = [
    "COLLECTION_PATTERN",
    "RUN_ID_PATTERN",
    "canonical_json",
    "check_collection",
    "check_run_id",
    "content_id",
    "is_valid_collection",
    "is_valid_run_id",
    "normalise_text",
    "sha256_hex",
]

#: Collections name streams' KV keys and store prefixes, so they are kept to a safe alphabet.
#: ``\Z``, not ``$``: ``$`` also matches before a trailing newline, so ``"abc\n"`` would pass
#: a ``re.match``. JSON Schema (pydantic's ``pattern``) has no ``\Z``; there ``$`` is the end.
COLLECTION_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
#: A run id travels in a NATS header and in logs: ``20261127T194242-2ea0ceab`` (what
#: ``syllabus run`` makes), or any other id in this alphabet.
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"

_COLLECTION = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
COLLECTION_RULE = "1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit"
RUN_ID_RULE = "1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"


def is_valid_collection(name: object) -> bool:
    """Whether ``name`` is a collection name: the whole string matches ``COLLECTION_PATTERN``
    (no trailing newline)."""
    return isinstance(name, str) and _COLLECTION.fullmatch(name) is not None


def check_collection(name: object) -> str:
    """``name`` if it is a valid collection name, else ``ValueError`` naming it (repr)."""
    if not is_valid_collection(name):
        raise ValueError(f"invalid collection name {name!r}: use {COLLECTION_RULE}")
    return name  # type: ignore[return-value]


def is_valid_run_id(run_id: object) -> bool:
    """Whether ``run_id`` is a run id: the whole string matches ``RUN_ID_PATTERN``."""
    return isinstance(run_id, str) and _RUN_ID.fullmatch(run_id) is not None


def check_run_id(run_id: object) -> str:
    """``run_id`` if it is a valid run id, else ``ValueError`` naming it (repr)."""
    if not is_valid_run_id(run_id):
        raise ValueError(f"invalid run id {run_id!r}: use {RUN_ID_RULE}")
    return run_id  # type: ignore[return-value]

_WS = re.compile(r"\s+")


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def normalise_text(text: str) -> str:
    """The normal form that chunk ids hash: NFKC, case-folded, whitespace collapsed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace, for hashing settings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_id(*parts: Any) -> str:
    """A sha256 over the canonical JSON of ``parts`` (a record id hashes its inputs,
    technique, settings and teacher)."""
    return sha256_hex(canonical_json(list(parts)))
