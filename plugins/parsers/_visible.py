"""What counts as text for the parsers: a section of only invisible characters is none.

Whitespace, control characters (``Cc``), format characters (``Cf``: zero-width spaces and
joiners, bidi embeddings, overrides and isolates, the BOM, soft hyphens), line and
paragraph separators, and unassigned or private-use code points show nothing a reader
could learn from, so a document made only of them is ``no_text``, not a document whose
chunks all vanish later.
"""

from __future__ import annotations

import unicodedata

__all__ = ["has_visible_text"]


def has_visible_text(text: str) -> bool:
    """True when ``text`` has a letter, mark, digit, punctuation mark or symbol."""
    if not text or text.isspace():
        return False
    if text.isascii():  # printable ASCII other than space is visible
        return any(" " < ch < "\x7f" for ch in text)
    return any(not ch.isspace() and unicodedata.category(ch)[0] not in "CZ" for ch in text)
