"""Text primitives for the structured chunker: normalisation, token counting, splitting.

Everything here is a pure function of its input (no network, no model files, no global
state), so the chunker's output is deterministic.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "HyphenEvidence",
    "count_tokens",
    "ends_sentence",
    "join_across_break",
    "normalise_block",
    "prepare",
    "sentence_spans",
    "token_units",
    "word_spans",
]

# --- token counting --------------------------------------------------------------------

#: CJK ideographs, kana and Hangul syllables: a subword tokenizer spends about one token
#: per character on them.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN = re.compile(
    rf"(?P<cjk>[{_CJK}])|(?P<word>[^\W\d_{_CJK}]+)|(?P<num>\d+)|(?P<other>\S)"
)
#: a run of letters costs one token per this many characters (rounded up)
_CHARS_PER_WORD_TOKEN = 6
#: a run of digits costs one token per this many digits (rounded up)
_DIGITS_PER_TOKEN = 3


def _cost(kind: str | None, length: int) -> int:
    if kind == "word":
        return -(-length // _CHARS_PER_WORD_TOKEN)
    if kind == "num":
        return -(-length // _DIGITS_PER_TOKEN)
    return 1


def count_tokens(text: str) -> int:
    """Approximate how many tokens a subword (BPE-style) tokenizer spends on ``text``.

    This is an *approximation*, computed with one regular expression and no vocabulary:

    - a run of letters costs ``ceil(len / 6)`` tokens (short words 1, long words more);
    - a run of digits costs ``ceil(len / 3)`` tokens (tokenizers split numbers in groups);
    - each CJK ideograph, kana or Hangul syllable costs 1 token;
    - every other non-space character (punctuation, symbols, ``_``) costs 1 token;
    - whitespace is free.

    Tokens never span whitespace, so the count of two texts joined by whitespace is the
    sum of their counts; the chunker relies on that to pack within a budget.
    """
    return sum(_cost(m.lastgroup, m.end() - m.start()) for m in _TOKEN.finditer(text))


def token_units(text: str) -> Iterator[tuple[int, int]]:
    """Spans of ``text`` that each cost exactly one token under ``count_tokens``.

    Cutting ``text`` only between units keeps the counts additive; this is how a single
    "word" longer than the whole budget (a URL, a hash, base64) is split.
    """
    for m in _TOKEN.finditer(text):
        kind, start, end = m.lastgroup, m.start(), m.end()
        step = {"word": _CHARS_PER_WORD_TOKEN, "num": _DIGITS_PER_TOKEN}.get(kind or "", 1)
        for s in range(start, end, step):
            yield s, min(s + step, end)


# --- normalisation ---------------------------------------------------------------------

#: characters dropped outright: soft hyphen, zero-width space, word joiner, BOM, and C0
#: control characters other than tab and the line breaks handled below
_DROP = re.compile("[\u00ad\u200b\u2060\ufeff\x00-\x08\x0e-\x1f\x7f]")
#: every other line break (CR LF, CR, VT, FF, NEL, LS) becomes "\n"; PS is a paragraph break
_NEWLINE = re.compile("\r\n|[\r\x0b\x0c\x85\u2028]")
_HSPACE = re.compile(r"[^\S\n]+")
_ANYSPACE = re.compile(r"\s+")
_BLANK_LINE = re.compile(r"\n\s*\n")

_LETTERS = r"[^\W\d_]+"
_HYPHEN = "[-\u2010]"
#: letters, a hyphen ending the line, letters starting the next line
_BROKEN_WORD = re.compile(rf"({_LETTERS}){_HYPHEN}\n({_LETTERS})")
#: any other word character, hyphen at the end of a line, word character: "1990-\n1995"
_BROKEN_OTHER = re.compile(rf"(\w){_HYPHEN}\n(?=\w)")
_COMPOUND = re.compile(rf"({_LETTERS}){_HYPHEN}({_LETTERS})")
_WORD = re.compile(_LETTERS)


def prepare(text: str) -> str:
    """Unicode NFKC (which also expands ligatures such as "ﬁ" and full-width forms), drop
    soft hyphens and invisible characters, and turn every line break into "\\n"."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u2029", "\n\n")
    return _DROP.sub("", _NEWLINE.sub("\n", text))


@dataclass(frozen=True)
class HyphenEvidence:
    """What the whole document says about hyphenated words.

    ``compounds`` are hyphenated words seen *within* a line ("well-known"), ``words`` every
    word seen; both case-folded. See ``join_across_break`` for how they are used.
    """

    compounds: frozenset[str] = field(default_factory=frozenset)
    words: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> HyphenEvidence:
        compounds: set[str] = set()
        words: set[str] = set()
        for text in texts:
            for m in _COMPOUND.finditer(text):
                compounds.add(f"{m[1]}-{m[2]}".casefold())
            words.update(w.casefold() for w in _WORD.findall(text))
        return cls(frozenset(compounds), frozenset(words))


def join_across_break(left: str, right: str, evidence: HyphenEvidence) -> bool:
    """Whether ``left-`` at the end of a line and ``right`` at the start of the next are one
    word split by hyphenation (True: drop the hyphen) or a real hyphenated compound
    (False: keep the hyphen). Both are joined without a space either way.

    The rule: the hyphen is dropped when ``right`` starts with a lowercase letter, unless
    the document also writes ``left-right`` hyphenated within a line and never writes
    ``leftright`` as one word. So "manage-/ment" gives "management", while "well-/known"
    stays "well-known" only when "well-known" appears elsewhere in the document; with no
    such evidence it becomes "wellknown" (the simple rule errs towards joining).
    """
    if not right[:1].islower():
        return False
    hyphenated = f"{left}-{right}".casefold()
    joined = f"{left}{right}".casefold()
    return not (hyphenated in evidence.compounds and joined not in evidence.words)


def _rejoin_hyphenated(text: str, evidence: HyphenEvidence) -> str:
    def word(m: re.Match[str]) -> str:
        left, right = m[1], m[2]
        return f"{left}{right}" if join_across_break(left, right, evidence) else f"{left}-{right}"

    text = _BROKEN_WORD.sub(word, text)
    return _BROKEN_OTHER.sub(r"\1-", text)


def normalise_block(text: str, *, keep_lines: bool = False,
                    evidence: HyphenEvidence | None = None) -> str:
    """Normalise one section's text (already passed through ``prepare``).

    - Words hyphenated across a line break are rejoined (``join_across_break``).
    - Paragraphs are separated by blank lines in the input and by exactly "\\n\\n" in the
      output.
    - Within a paragraph every run of whitespace becomes one space; with ``keep_lines``
      (lists, tables, code) line breaks survive as a single "\\n" and only runs of spaces
      collapse.
    - Leading and trailing whitespace is removed; empty paragraphs disappear.
    """
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _rejoin_hyphenated(text, evidence or HyphenEvidence())
    paragraphs: list[str] = []
    for para in _BLANK_LINE.split(text):
        if keep_lines:
            lines = [_HSPACE.sub(" ", line).strip() for line in para.split("\n")]
            para = "\n".join(line for line in lines if line)
        else:
            para = _ANYSPACE.sub(" ", para).strip()
        if para:
            paragraphs.append(para)
    return "\n\n".join(paragraphs)


# --- splitting -------------------------------------------------------------------------

#: closing quotes and brackets that may follow sentence-final punctuation
_CLOSERS = "\"'\u201d\u2019)]\u00bb\u300d\u300f"
_C = re.escape(_CLOSERS)
_SENTENCE_END = re.compile(rf"[.!?\u2026]+[{_C}]*(?=\s)|\u3002[{_C}]*|\n")
_NONSPACE = re.compile(r"\S+")
_TERMINAL = ".!?\u2026\u3002:;"
#: words that a full stop follows without ending the sentence (case-folded, no final ".")
_ABBREVIATIONS = frozenset({
    "al", "approx", "art", "ca", "cf", "ch", "co", "corp", "dept", "dr", "e.g", "eq", "eqs",
    "est", "etc", "fig", "figs", "i.e", "inc", "jr", "ltd", "mr", "mrs", "ms", "no", "nos",
    "p", "pp", "prof", "sec", "sr", "st", "vol", "vols", "vs",
})


def ends_sentence(text: str) -> bool:
    """True when ``text`` ends with sentence-final punctuation (closing quotes and brackets
    after it allowed); a colon or semicolon counts, as it usually ends a lead-in line."""
    stripped = text.rstrip().rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in _TERMINAL


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of the sentences in ``text[start:end]``, as offsets into ``text``.

    A sentence ends at ".", "!", "?" or "…" (plus closing quotes or brackets) followed by
    whitespace and a character that is not lowercase, unless the word before a "." is a
    known abbreviation or a single letter (an initial); at "。"; and at a line break (list
    items and table rows are one "sentence" each). Spans exclude surrounding whitespace.
    """
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    cut = start
    for m in _SENTENCE_END.finditer(text, start, end):
        if m.group() == "\n":
            stop, resume = m.start(), m.end()
        else:
            stop = resume = m.end()
            while resume < end and text[resume].isspace():
                resume += 1
            if m.group()[0] != "\u3002":
                if resume >= end or text[resume].islower():
                    continue
                if m.group().rstrip(_CLOSERS) == ".":
                    j = m.start()
                    while j > cut and not text[j - 1].isspace():
                        j -= 1
                    token = text[j:m.start()].lstrip(_CLOSERS + "(").casefold()
                    if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
                        continue
        _append_trimmed(text, cut, stop, spans)
        cut = resume
    _append_trimmed(text, cut, end, spans)
    return spans


def word_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of the whitespace-separated words in ``text[start:end]``."""
    return [m.span() for m in _NONSPACE.finditer(text, start, end)]


def _append_trimmed(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        spans.append((start, end))
