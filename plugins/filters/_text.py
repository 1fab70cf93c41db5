"""Shallow text analysis shared by the built-in filters (stdlib only).

Words come from one regular expression, stems from a few suffix rules applied the same way
to both sides of a comparison, numbers are normalised (``2,000`` = ``2000`` = ``two
thousand``), and the language of a text is guessed from its script and its share of each
language's most frequent function words. Everything is a pure function of its input, so
every decision a filter makes is reproducible.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "LANGUAGE_NAMES",
    "NEGATIONS",
    "STOPWORDS",
    "LanguageGuess",
    "content_keys",
    "content_terms",
    "content_words",
    "detect_language",
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
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}


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


# --- language --------------------------------------------------------------------------

LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
    "nl": "Dutch", "pt": "Portuguese", "ru": "Russian (Cyrillic script)",
    "el": "Greek", "ar": "Arabic (script)", "he": "Hebrew", "hi": "Hindi (Devanagari)",
    "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "th": "Thai",
}

#: The most frequent function words of each Latin-script language the detector knows.
_FUNCTION_WORDS: dict[str, frozenset[str]] = {lang: frozenset(ws.split()) for lang, ws in {
    "en": """the and of to a in is it that for on with as are was be by this they from at or
        an which their has have not but can its were been will there what when how do does
        up into than also more these only each about who all if so he she we you i his her
        our them would should could may after before between""",
    "de": """der die das und ist in den von zu mit sich des auf für im dem nicht ein eine
        einer eines einem einen als auch es an werden aus er hat dass daß sie nach wird bei
        um am sind noch wie über so zum zur nur oder aber vor bis mehr durch man kann wenn
        ihr ihre was wir ich sehr vom diese dieser dieses haben wird wurden wurde kein keine
        zwischen""",
    "fr": """le la les de des du et en un une est que qui dans pour pas au aux sur par plus
        ne se ce cette ces il elle ils elles sont avec son sa ses ou mais comme on nous
        vous leur leurs été être a l d qu c n j s y entre très""",
    "es": """el la los las de del y en un una es que por para con no se su sus al lo como
        más pero o este esta estos estas son entre cuando muy sin sobre también hay está
        ha fue ser a e ya desde todo nos le les puede""",
    "it": """il lo la i gli le di del della dei delle e è in un una uno che per con non si
        da al alla nel nella sono come più ma o anche questo questa suo sua ha hanno essere
        a tra fra dal dalla loro ci degli sul sulla""",
    "nl": """de het een en van in is dat op te zijn voor met die niet aan er om ook als bij
        of door maar naar dan wordt worden uit tot kan nog over hun deze dit wat zo haar
        hij zij we wij ze heeft hebben was al""",
    "pt": """o a os as de do da dos das e em no na nos nas um uma é que para por com não se
        ao à mais como mas ou seu sua são foi ser pelo pela também quando muito já entre
        está tem há isso este esta ela ele""",
}.items()}

#: Scripts that settle the language on their own (one script, one language: see the
#: limits in ``detect_language``).
_SCRIPTS: list[tuple[str, str]] = [
    ("CYRILLIC", "ru"), ("GREEK", "el"), ("ARABIC", "ar"), ("HEBREW", "he"),
    ("DEVANAGARI", "hi"), ("HIRAGANA", "ja"), ("KATAKANA", "ja"), ("HANGUL", "ko"),
    ("CJK", "zh"), ("THAI", "th"),
]
_LETTERS = re.compile(r"[^\W\d_]+")


@dataclass
class LanguageGuess:
    """``language`` is None when the text is too short or has too few function words;
    ``candidates`` are the best-scoring languages (several on a tie)."""

    language: str | None
    candidates: list[str] = field(default_factory=list)
    script: str = "LATIN"
    scores: dict[str, float] = field(default_factory=dict)
    words: int = 0
    note: str = ""


def _script(text: str) -> tuple[str, str | None]:
    counts: dict[str, int] = {}
    for ch in text:
        if not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        for script, _ in _SCRIPTS:
            if name.startswith(script):
                counts[script] = counts.get(script, 0) + 1
                break
        else:
            counts["LATIN"] = counts.get("LATIN", 0) + 1
    if not counts:
        return "LATIN", None
    script = max(counts, key=counts.get)
    if script == "LATIN":
        return script, None
    if script == "CJK" and (counts.get("HIRAGANA", 0) + counts.get("KATAKANA", 0)):
        return "CJK", "ja"
    return script, dict(_SCRIPTS)[script]


def detect_language(text: str, *, min_words: int = 5, min_score: float = 0.1) -> LanguageGuess:
    """Guess the language of ``text`` (stdlib only; a heuristic with known limits).

    1. A text mostly in a non-Latin script gets that script's language: Cyrillic -> ``ru``
       (also Ukrainian, Bulgarian, Serbian...), Arabic script -> ``ar`` (also Persian,
       Urdu), Han -> ``zh`` (``ja`` with kana), Hangul -> ``ko``, and so on.
    2. A Latin-script text is scored against the function words of en, de, fr, es, it, nl
       and pt: the share of its words in each list. The best share wins; on a tie every
       tied language is a candidate. Under ``min_words`` words (script checks aside), or
       when no list reaches ``min_score``, the language is None ("unknown").

    Limits: other Latin-script languages (Polish, Swedish, Latin, ...) come out unknown or
    as the nearest listed language; a mixed-language text gets its majority language;
    close pairs (es/pt, nl/de) can be confused on a short text; word lists, tables and
    code have few function words and come out unknown.
    """
    script, by_script = _script(text)
    tokens = [t.lower() for t in _LETTERS.findall(text)]
    if by_script is not None:
        return LanguageGuess(by_script, [by_script], script=script, words=len(tokens),
                             note=f"{script.title()} script")
    if len(tokens) < min_words:
        return LanguageGuess(None, words=len(tokens),
                             note=f"too short to tell ({len(tokens)} words, under {min_words})")
    scores = {lang: round(sum(1 for t in tokens if t in ws) / len(tokens), 3)
              for lang, ws in _FUNCTION_WORDS.items()}
    best = max(scores.values())
    if best < min_score:
        return LanguageGuess(None, scores=scores, words=len(tokens),
                             note=f"too few function words to tell (best share {best:.0%})")
    candidates = sorted(lang for lang, s in scores.items() if s == best)
    return LanguageGuess(candidates[0] if len(candidates) == 1 else None, candidates,
                         scores=scores, words=len(tokens),
                         note="" if len(candidates) == 1 else "tie: " + ", ".join(candidates))
