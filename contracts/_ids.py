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
    "canonical_json",
    "content_id",
    "normalise_text",
    "sha256_hex",
]

#: Collections name streams' KV keys and store prefixes, so they are kept to a safe alphabet.
COLLECTION_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

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
