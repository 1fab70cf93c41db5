"""Shallow text analysis shared by the built-in filters (stdlib only).

Words come from one regular expression, stems from a few suffix rules applied the same way
to both sides of a comparison, numbers are normalised (``2,000`` = ``2000`` = ``two
thousand``). Everything is a pure function of its input, so every decision a filter
makes is reproducible. (A text's language comes from ``syllabus.plugins._language``, the
one detector every stage uses.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "NEGATIONS",
    "STOPWORDS",
    "content_keys",
    "content_terms",
    "content_words",
    "negated_stems",
    "numbers",
    "split_sentences",
    "stem",
    "strip_quotes",
    "words",
]

# --- words and stems -------------------------------------------------------------------

_WORD = re.compile(r"\d+(?:[.,]\d+)*%?|[^\W\d_]+(?:['’][^\W\d_]+)*")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")

STOPWORDS = frozenset("""
a an the this that these those its their his her our your my some any each every no both
all most many several few more less much other another such either neither
about above across after against along among around as at before behind below beneath
beside between beyond by despite down during except for from in inside into like near of
off on onto out outside over per since through throughout to toward towards under
underneath until up upon via with within without
i me we us you he him she her it they them one someone something everyone everything
is are was were am be been being has have had having does do did doing done can could
will would shall should may might must
what which who whom whose when where why how
and or but nor yet so if then than because although though unless while whilst whereas
once whether
not never also very only just too even still again ever often usually always sometimes
there here can't don't doesn't isn't aren't won't wasn't weren't didn't cannot
mine ours yours hers theirs itself themselves himself herself myself ourselves yourself own
same s t etc e.g i.e eg ie way thing things lot lots really quite rather
get gets got make makes made let use used using well however therefore thus instead
yes yeah okay ok sure indeed actually about approximately around roughly nearly almost
up down
""".split())

NEGATIONS = frozenset("""
not no never none nobody nothing neither nor cannot can't don't doesn't didn't isn't
aren't wasn't weren't won't wouldn't shouldn't couldn't haven't hasn't hadn't without
""".split())


def words(text: str) -> list[str]:
    """The lowercased words and numbers of ``text`` (curly apostrophes straightened)."""
    return [w.replace("’", "'") for w in _WORD.findall(text.lower())]


def stem(word: str) -> str:
    """A light suffix-stripping stem: ``lays``/``laying``/``laid``-style inflections of a
    word map to one key on both sides of a comparison (not a linguistic stem)."""
    w = word.lower()
    if w[:1].isdigit():
        return _number_key(w)
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ing") and len(w) > 5:
        w = w[:-3]
        if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
            w = w[:-1]
    elif w.endswith("ed") and len(w) > 4:
        w = w[:-2]
        if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
            w = w[:-1]
    elif (w.endswith("es") and len(w) > 4 and w[-3] in "sxz") or w.endswith(("ches", "shes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3:
        w = w[:-1]
    if w.endswith("ly") and len(w) > 5:
        w = w[:-2]
    if w.endswith("e") and len(w) > 4:
        w = w[:-1]
    return w


def content_words(text: str, stopwords: Iterable[str] = STOPWORDS) -> list[str]:
    """The words of ``text`` that carry content: no stopwords, no single letters."""
    stop = stopwords if isinstance(stopwords, frozenset | set) else frozenset(stopwords)
    return [w for w in words(text) if w not in stop and (len(w) > 1 or w.isdigit())]


# --- numbers ---------------------------------------------------------------------------

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "dozen": 12,
    # German and French, so that "zwanzig" = "20" in a German record (the articles "ein",
    # "un", and words with an English meaning, "elf", "neuf", "cent", are left out)
    "zwei": 2, "drei": 3, "vier": 4, "fünf": 5, "sechs": 6, "sieben": 7, "acht": 8,
    "neun": 9, "zehn": 10, "zwölf": 12, "zwanzig": 20, "dreißig": 30, "vierzig": 40,
    "fünfzig": 50, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "sept": 7, "huit": 8,
    "dix": 10, "onze": 11, "douze": 12, "vingt": 20, "trente": 30, "quarante": 40,
    "cinquante": 50,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9,
           "hundert": 100, "tausend": 1000, "mille": 1000, "millionen": 10**6}


def _number_key(token: str) -> str:
    """``2,000`` -> ``2000``; ``3.50`` -> ``3.5``; other digit strings unchanged."""
    t = token.rstrip("%")
    if _THOUSANDS.fullmatch(t):
        t = t.replace(",", "")
    if re.fullmatch(r"\d+\.\d+", t):
        t = t.rstrip("0").rstrip(".")
    return t + ("%" if token.endswith("%") else "")


def _terms(text: str) -> list[tuple[str, str, bool]]:
    """Every word of ``text`` as (surface, key, is_number): a digit token's key is its
    normalised value, a run of number words becomes one term with its value (``two
    thousand`` -> ``2000``), any other word keeps itself as key."""
    out: list[tuple[str, str, bool]] = []
    run: list[str] = []

    def flush() -> None:
        if len(run) == 1 and run[0] in {"one", "dozen"}:
            out.append((run[0], run[0], False))
        elif run:
            total, current = 0, 0
            for w in run:
                if w in _UNITS:
                    current += _UNITS[w]
                elif w == "hundred":
                    current = max(current, 1) * 100
                else:
                    total += max(current, 1) * _SCALES[w]
                    current = 0
            out.append((" ".join(run), str(total + current), True))
        run.clear()

    for w in words(text):
        if w[:1].isdigit():
            flush()
            out.append((w, _number_key(w), True))
        elif w in _UNITS or w in _SCALES:
            run.append(w)
        elif w == "and" and run:
            continue
        else:
            flush()
            out.append((w, w, False))
    flush()
    return out


def numbers(text: str) -> list[str]:
    """The numbers ``text`` states, normalised: digits (``2,000`` -> ``2000``) and runs of
    English number words (``two thousand`` -> ``2000``; a bare ``one`` or ``dozen`` is
    left out, as is a vague plural like ``thousands``)."""
    return [key for _, key, is_number in _terms(text) if is_number]


def content_terms(text: str) -> list[tuple[str, str]]:
    """The content of ``text`` as (surface, key) pairs, for overlap measures: numbers keyed
    by value, other words by stem, stopwords and single letters left out."""
    return [(surface, key) if is_number else (surface, stem(key))
            for surface, key, is_number in _terms(text)
            if is_number or (key not in STOPWORDS and len(key) > 1)]


def content_keys(text: str) -> set[str]:
    """The keys of ``content_terms``, as a set."""
    return {key for _, key in content_terms(text)}


# --- sentences, quotes, negation -------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+(?=[\"'“‘(]?[A-Z0-9])")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "approx.", "ca.", "cf.", "vs.", "Dr.", "Mr.",
                  "Mrs.", "Ms.", "Prof.", "St.", "No.", "Fig.", "al.")


def split_sentences(text: str) -> list[str]:
    """Sentences by end punctuation followed by a capital or digit (no break after a
    common abbreviation)."""
    parts: list[str] = []
    buf = ""
    for piece in _SENTENCE_END.split(text.strip()):
        buf = f"{buf} {piece}" if buf else piece
        if not buf.endswith(_ABBREVIATIONS):
            parts.append(buf.strip())
            buf = ""
    if buf:
        parts.append(buf.strip())
    return [p for p in parts if p]


_QUOTED = re.compile(r"\"[^\"\n]{1,400}\"|“[^”\n]{1,400}”|‘[^’\n]{1,400}’|«[^»\n]{1,400}»"
                     r"|(?<![\w'])'[^'\n]{1,400}'(?![\w'])")


def strip_quotes(text: str) -> str:
    """``text`` with quoted passages blanked out (their words are someone else's)."""
    return _QUOTED.sub(lambda m: " " * len(m.group(0)), text)


def negated_stems(text: str, *, window: int = 3) -> set[str]:
    """The stems of the content words of ``text`` that a negation governs: those with
    "not", "no", "never", "n't"... among the ``window`` words before them in the same
    clause ("Drones do not sting" -> {"sting"}; "no sting" -> {"sting"}). A heuristic
    scope, not a parse: "not only X but Y" marks X."""
    out: set[str] = set()
    for clause in re.split(r"[;:!?()]|[,.](?!\d)|(?<!\d)[,.]", text):
        terms = _terms(clause)
        for i, (_, key, is_number) in enumerate(terms):
            if not is_number and (key in STOPWORDS or key in NEGATIONS):
                continue
            if any(k in NEGATIONS or k.endswith("n't") for _, k, _ in terms[max(0, i - window):i]):
                out.add(key if is_number else stem(key))
    return out
