"""``heuristic-quality``: rule-based quality gates on one record, each check named.

LIMA (Zhou et al. 2023, "LIMA: Less Is More for Alignment", section 2.1) built its
training set by hand-filtering community answers: answers that are too short or too long,
written in the first person, referring to other answers ("as mentioned above"), or
carrying links and images were removed, and the rest lightly cleaned. H2O LLM DataStudio's
cleaning steps (length bounds, boilerplate, markup and language filters) do the same for
generated question/answer pairs. This plugin applies those rules with no model, so it runs
offline and every decision can be reproduced and explained.

Departures from LIMA: its answers were checked by people, these by rules; the default
length window is for question/answer pairs (2 to 4,000 characters), since LIMA's 1,200
to 4,096 would drop nearly every factual answer (``length_window = "lima"`` is LIMA's);
LIMA's balancing across sources and its 1,000-example size are part of the data set
selection (``lima = true`` there), not of this per-record filter.

Checks (each on by default; turn one off with its name, e.g. ``{"grounded": false}``):

``length``
    ``instruction``: ``min_instruction_chars`` 10 .. ``max_instruction_chars`` 1000
    characters and ``min_instruction_words`` 2 .. ``max_instruction_words`` 200 words.
    ``response``: ``min_response_words`` 2 .. ``max_response_words`` (none) words and
    ``min_response_chars`` 2 .. ``max_response_chars`` 4000 characters. Short answers are
    legitimate in question answering ("Thousands of bees."), so the response's lower bound
    is low; ``null`` turns any bound off. ``length_window = "lima"`` is LIMA's window for
    its community answers instead (section 2.1: answers under 1,200 or over 4,096
    characters were dropped): ``min_response_chars`` 1200 and ``max_response_chars`` 4096,
    unless set. It suits long-form answers (how-tos, explanations), not short factual QA,
    whose answers it would drop nearly all; hence not the default (``"qa"``).
``grounded``
    The share of the response's content words (lowercased, stopwords removed, lightly
    stemmed; numbers normalised, so ``2,000`` = ``2000`` = ``two thousand``) found in the
    record's source chunk must be at least ``min_grounding`` (0.6). Skipped, and said so,
    when there is no source context. A ``backtranslation`` record's response *is* its
    chunk, so it passes trivially.
``well_formed``
    The instruction is a question (its last sentence ends with ``?``) or an imperative
    (it starts, after an optional "Please", with one of ``imperative_verbs``: Explain,
    Describe, List, ...); it starts with a capital letter; it is self-contained, with none
    of ``dangling_phrases`` ("the passage", "the text", "the above", "this article", "as
    mentioned", "according to the document", ...), which point at a text the reader of
    the question does not have; and it is not a fragment (it does not end on "and", "the",
    "of", a comma or an ellipsis, and its brackets and quotes are balanced).
``boilerplate``
    Neither field contains promotional or navigation text (``boilerplate_phrases``: "click
    here", "subscribe", "sign up", "cookie", "privacy policy", "share this", "read more",
    "buy now", "all rights reserved", "follow us", "menu", "skip to content", ...). For a
    corpus of software manuals, where "menu", "cookie" or "sign up" are the subject
    matter, set a shorter list.
``first_person``
    The response is not written in the first person or forum style: no "I", "I'm", "my",
    "me" (when ``first_person_pronouns``, default true) and none of ``forum_phrases`` ("in
    my experience", "as mentioned above", "edit:", "thanks for", "lol", "IMO", "hope this
    helps", ...). Quoted passages are ignored, and so is a capital "I" used as a Roman
    numeral ("World War I", "Type I", "Louis I", "(I)").
``markup``
    Neither field carries links or HTML left over from the source: ``http(s)://``,
    ``www.``, ``<tags>``, entities such as ``&amp;``, Markdown links ``[text](url)``.
``language``
    Each field's language, by the detector every stage shares
    (``syllabus.plugins._language``, fastText's lid.176): with ``languages`` set
    (e.g. ``["en"]``), both fields must be in one of them; by default (``[]``) any
    language is fine. Either way, with ``same_language`` (true) the instruction and the
    response must be in the same language (a small teacher that asks in German and answers
    in English fails here). A field under ``min_language_words`` (5) words, or whose
    language cannot be told, is skipped with a note, unless ``unknown_language`` is
    ``"drop"``.

**Languages.** ``length``, ``grounded``, ``markup`` and ``language`` work in any language.
``well_formed``, ``boilerplate`` and ``first_person`` match English words and phrases
(``CHECK_LANGUAGES``): for a record in another language they are passed over, not failed,
and the decision says so (``details.passed_over`` names them, ``details.language`` the
record's language); the run report counts them. Before, a German record failed the
``language`` check, whose default was English only.

The decision lists every failed check. ``score`` is the share of the evaluated checks that
passed (skipped ones do not count); the record is kept when at most ``max_failures`` (0)
checks failed, and ``threshold`` is the score that allows. ``details`` holds each check's
result and measurements. An unknown option name or a wrong type raises ``ValueError`` (a
typo in a recipe should not quietly change nothing).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from syllabus.contracts import (
    QARecord,
    RecordDecision,
    Teacher,
    hookimpl,
    language_name,
)

from .._language import detect_language, record_language
from ._text import (
    content_keys,
    content_terms,
    split_sentences,
    strip_quotes,
    words,
)

__all__ = [
    "BOILERPLATE_PHRASES",
    "CHECKS",
    "CHECK_LANGUAGES",
    "DANGLING_PHRASES",
    "DEFAULTS",
    "FORUM_PHRASES",
    "IMPERATIVE_VERBS",
    "HeuristicQualityFilter",
    "register_filters",
]

VERSION = "1"

CHECKS = ("length", "grounded", "well_formed", "boilerplate", "first_person", "markup",
          "language")

#: the checks that only work in some languages (their word and phrase lists are English);
#: the rest work in any
CHECK_LANGUAGES: dict[str, tuple[str, ...]] = {
    "well_formed": ("en",), "boilerplate": ("en",), "first_person": ("en",)}

IMPERATIVE_VERBS = (
    "explain", "describe", "list", "summarize", "summarise", "write", "give", "name",
    "compare", "contrast", "define", "state", "identify", "outline", "discuss", "show",
    "provide", "tell", "suggest", "recommend", "calculate", "estimate", "translate",
    "classify", "evaluate", "assess", "create", "draft", "rewrite", "convert", "find",
    "determine", "illustrate", "detail", "elaborate", "propose", "rank", "sort", "extract",
    "paraphrase", "analyse", "analyze", "justify", "predict", "recall", "mention",
)
DANGLING_PHRASES = (
    "the passage", "this passage", "the text", "this text", "the given text", "the above",
    "above text", "this article", "the article", "as mentioned", "according to the document",
    "the document", "this document", "the excerpt", "this excerpt", "the paragraph",
    "this paragraph", "the context", "the provided", "the given", "this section",
    "the following", "the source",
)
BOILERPLATE_PHRASES = (
    "click here", "subscribe", "sign up", "cookie", "privacy policy",
    "terms of use", "terms of service", "share this", "read more", "buy now", "add to cart",
    "shop now", "order now", "all rights reserved", "follow us", "menu", "skip to content",
    "skip to main content", "newsletter", "free shipping", "special offer", "advertisement",
    "sponsored", "next post", "previous post", "back to top", "©",
)
FORUM_PHRASES = (
    "in my experience", "in my opinion", "as mentioned above", "as i said", "edit:",
    "thanks for", "thank you for", "lol", "imo", "imho", "hope this helps",
    "hope that helps", "cheers", "upvote", "this thread", "dm me", "pm me", "op said",
    "good luck!",
)

#: the response's character bounds per ``length_window``: Syllabus's for QA pairs, and
#: LIMA's (Zhou et al. 2023, section 2.1)
LENGTH_WINDOWS: dict[str, dict[str, int]] = {
    "qa": {"min_response_chars": 2, "max_response_chars": 4000},
    "lima": {"min_response_chars": 1200, "max_response_chars": 4096},
}

DEFAULTS: dict[str, Any] = {
    **{name: True for name in CHECKS},
    "max_failures": 0,
    # length
    "min_instruction_chars": 10, "max_instruction_chars": 1000,
    "min_instruction_words": 2, "max_instruction_words": 200,
    "min_response_words": 2, "max_response_words": None,
    "min_response_chars": 2, "max_response_chars": 4000,
    "length_window": "qa",
    # grounded
    "min_grounding": 0.6,
    # well_formed
    "imperative_verbs": list(IMPERATIVE_VERBS),
    "dangling_phrases": list(DANGLING_PHRASES),
    # boilerplate, first_person
    "boilerplate_phrases": list(BOILERPLATE_PHRASES),
    "forum_phrases": list(FORUM_PHRASES),
    "first_person_pronouns": True,
    # language
    "languages": [],
    "same_language": True,
    "min_language_words": 5,
    "unknown_language": "keep",
}


def _options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"heuristic-quality: unknown option(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(DEFAULTS))}")
    opts = {**DEFAULTS, **options}
    if opts["length_window"] not in LENGTH_WINDOWS:
        raise ValueError(f"heuristic-quality: option length_window must be one of "
                         f"{', '.join(LENGTH_WINDOWS)}, not {opts['length_window']!r}")
    for key, value in LENGTH_WINDOWS[opts["length_window"]].items():
        if key not in options:  # a bound set by name wins over the window's
            opts[key] = value
    for key, default in DEFAULTS.items():
        value = opts[key]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"heuristic-quality: option {key} must be true or false, "
                             f"not {value!r}")
        if isinstance(default, list) and not (isinstance(value, list | tuple) and all(
                isinstance(v, str) for v in value)):
            raise ValueError(f"heuristic-quality: option {key} must be a list of strings")
        if (key.startswith(("min_", "max_")) and value is not None
                and (isinstance(value, bool) or not isinstance(value, int | float))):
            raise ValueError(f"heuristic-quality: option {key} must be a number or null, "
                             f"not {value!r}")
    if opts["unknown_language"] not in ("keep", "drop"):
        raise ValueError("heuristic-quality: option unknown_language must be 'keep' or 'drop'")
    if opts["max_failures"] is None or opts["max_failures"] < 0:
        raise ValueError("heuristic-quality: option max_failures must be 0 or more")
    return opts


@dataclass
class Check:
    """One check's outcome: ``passed`` is None when it was skipped."""

    passed: bool | None
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"passed": self.passed, **self.details}
        if self.problems:
            out["problems"] = self.problems
        if self.note:
            out["note"] = self.note
        return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _phrase_pattern(phrases: list[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern for a list of phrases, on word boundaries (a final
    plural "s" allowed: "cookie" matches "cookies")."""
    parts = []
    for p in sorted({p.strip().lower() for p in phrases if p.strip()}, key=len, reverse=True):
        body = r"\s+".join(re.escape(w) for w in p.split())
        pre = r"(?<!\w)" if p[0].isalnum() else ""
        post = r"s?(?!\w)" if p[-1].isalnum() else ""
        parts.append(f"{pre}{body}{post}")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _found(pattern: re.Pattern[str] | None, text: str) -> list[str]:
    if pattern is None:
        return []
    seen: list[str] = []
    for m in pattern.finditer(text):
        hit = m.group(0).lower()
        if hit not in seen:
            seen.append(hit)
    return seen


def _quote(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(f"'{i}'" for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# --- the checks ------------------------------------------------------------------------


def _length(record: QARecord, o: dict[str, Any]) -> Check:
    problems: list[str] = []
    details: dict[str, Any] = {}
    for fname in ("instruction", "response"):
        text = getattr(record, fname).strip()
        chars, nwords = len(text), len(text.split())
        details[f"{fname}_chars"], details[f"{fname}_words"] = chars, nwords
        for unit, value in (("chars", chars), ("words", nwords)):
            label = "character" if unit == "chars" else "word"
            low, high = o[f"min_{fname}_{unit}"], o[f"max_{fname}_{unit}"]
            if low is not None and value < low:
                problems.append(f"the {fname} has {_plural(value, label)}, under the "
                                f"minimum of {low}")
            if high is not None and value > high:
                problems.append(f"the {fname} has {_plural(value, label)}, over the "
                                f"maximum of {high}")
    return Check(not problems, problems, details)


def _grounded(record: QARecord, context: str | None, o: dict[str, Any]) -> Check:
    if context is None:
        return Check(None, note="skipped: the record has no source context")
    terms = content_terms(record.response)
    if not terms:
        return Check(True, details={"content_words": 0, "grounding": None},
                     note="the response has no content words to check")
    known = content_keys(context)
    missing: list[str] = []
    found = 0
    for surface, key in terms:
        if key in known:
            found += 1
        elif surface not in missing:
            missing.append(surface)
    share = found / len(terms)
    threshold = float(o["min_grounding"])
    details = {"content_words": len(terms), "grounded_words": found,
               "grounding": round(share, 3), "threshold": threshold, "missing": missing[:20]}
    if share >= threshold:
        return Check(True, details=details)
    return Check(False, [
        f"only {found} of {len(terms)} content words of the response "
        f"({share:.0%}) appear in the source, under {threshold:.0%} (not in the source: "
        f"{_quote(missing)})"], details)


_CONNECTORS = frozenset({"and", "or", "but", "the", "a", "an", "of", "to", "with", "for",
                         "in", "on", "at", "by", "from", "that", "which", "whose", "is",
                         "are", "its", "their", "as"})
_LEAD_INS = frozenset({"please", "now", "briefly", "kindly", "also", "then"})


def _well_formed(record: QARecord, o: dict[str, Any]) -> Check:
    text = record.instruction.strip()
    problems: list[str] = []
    details: dict[str, Any] = {}
    sentences = split_sentences(text) or [text]
    last = sentences[-1].rstrip("\"'”’)] ")
    imperative = set(o["imperative_verbs"])

    def starts_imperative(sentence: str) -> bool:
        ws = words(sentence)
        while ws and ws[0] in _LEAD_INS:
            ws = ws[1:]
        return bool(ws) and ws[0] in imperative

    is_question = last.endswith("?")
    is_imperative = starts_imperative(text) or starts_imperative(sentences[-1])
    details["question"], details["imperative"] = is_question, is_imperative
    if not (is_question or is_imperative):
        problems.append("the instruction is neither a question ending in '?' nor starts with "
                        "an imperative verb (Explain, Describe, List, ...)")
    first_letter = next((c for c in text if c.isalnum()), "")
    if first_letter.isalpha() and not first_letter.isupper():
        problems.append("the instruction does not start with a capital letter")
    dangling = _found(_phrase_pattern(o["dangling_phrases"]), text)
    details["dangling_references"] = dangling
    if dangling:
        problems.append(f"the instruction is not self-contained: it refers to {_quote(dangling)}, "
                        "a text its reader does not have")
    fragment: list[str] = []
    ws = words(text)
    if ws and ws[-1] in _CONNECTORS:
        fragment.append(f"ends on '{ws[-1]}'")
    if text.endswith(("...", "…", ",", ";", ":", "-")):
        fragment.append(f"ends with '{text[-1]}'")
    for a, b in (("(", ")"), ("[", "]"), ("“", "”")):
        if text.count(a) != text.count(b):
            fragment.append(f"unbalanced '{a}{b}'")
    if text.count('"') % 2:
        fragment.append("unbalanced '\"'")
    if fragment:
        problems.append("the instruction is a fragment (" + ", ".join(fragment) + ")")
    return Check(not problems, problems, details)


def _boilerplate(record: QARecord, o: dict[str, Any]) -> Check:
    pattern = _phrase_pattern(o["boilerplate_phrases"])
    problems: list[str] = []
    details: dict[str, Any] = {}
    for fname in ("instruction", "response"):
        hits = _found(pattern, getattr(record, fname))
        details[fname] = hits
        if hits:
            problems.append(f"the {fname} contains promotional or navigation text: "
                            f"{_quote(hits)}")
    return Check(not problems, problems, details)


_PRONOUNS = re.compile(r"\bI(?:'|’)(?:m|ve|d|ll)\b|\b[Mm](?:y|e|ine|yself)\b|\bI\b")
_NUMERAL_CONTEXT = frozenset({
    "type", "class", "phase", "part", "chapter", "act", "volume", "vol", "stage", "grade",
    "war", "schedule", "appendix", "title", "section", "level", "category", "tier", "book",
    "article", "annex", "series", "group", "division", "league", "figure", "table", "step",
    "round", "period", "unit", "complex", "photosystem", "and", "or",
})
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s*[\"'“”‘’(]*)\s*$")


def _roman_numeral(text: str, start: int, end: int) -> bool:
    """True when the capital "I" at ``text[start:end]`` reads as a Roman numeral."""
    after = text[end:end + 1]
    if after in ("-", ")") or after.isdigit():
        return True
    before = text[:start]
    if before.endswith("(") or (re.search(r"(?:^|\n)\s*$", before) and after == "."):
        return True
    m = re.search(r"([A-Za-z][\w.]*)\s+$", before)
    if m is None:
        return False
    prev = m.group(1).rstrip(".")
    low = prev.lower()
    if low in _NUMERAL_CONTEXT or low.rstrip("s") in _NUMERAL_CONTEXT:
        # "Types I and II", "World War I"; "and"/"or" only between numerals ("II and I")
        if low in ("and", "or"):
            return bool(re.search(r"\b[IVX]+\s+(?:and|or)\s+$", before))
        return True
    if re.fullmatch(r"[IVXL]+", prev):
        return True
    if prev[0].isupper():
        # a capitalised word not at the start of a sentence: a name ("Louis I")
        return not _SENTENCE_START.search(before[:m.start()])
    return False


def _first_person(record: QARecord, o: dict[str, Any]) -> Check:
    text = strip_quotes(record.response)
    cues: list[str] = []
    if o["first_person_pronouns"]:
        for m in _PRONOUNS.finditer(text):
            if m.group(0) == "I" and _roman_numeral(text, m.start(), m.end()):
                continue
            cue = m.group(0).replace("’", "'")
            cue = cue if cue.startswith("I") else cue.lower()
            if cue not in cues:
                cues.append(cue)
    for hit in _found(_phrase_pattern(o["forum_phrases"]), text):
        if hit not in cues:
            cues.append(hit)
    if cues:
        return Check(False, [f"the response is written in the first person or forum style: "
                             f"{_quote(cues)}"], {"cues": cues})
    return Check(True, details={"cues": []})


_MARKUP: list[tuple[str, re.Pattern[str]]] = [
    ("a link", re.compile(r"https?://\S+|\bwww\.\S+", re.IGNORECASE)),
    ("a Markdown link", re.compile(r"!?\[[^\]\n]+\]\([^)\s]+\)")),
    ("an HTML tag", re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]{0,200})?/?>")),
    ("an HTML entity", re.compile(r"&(?:[a-zA-Z]{2,8}|#\d{1,6}|#x[0-9a-fA-F]{1,6});")),
]


def _markup(record: QARecord, o: dict[str, Any]) -> Check:
    problems: list[str] = []
    details: dict[str, Any] = {}
    for fname in ("instruction", "response"):
        text = getattr(record, fname)
        hits = []
        for label, pattern in _MARKUP:
            m = pattern.search(text)
            if m:
                hits.append(f"{label} ('{m.group(0)[:60]}')")
        details[fname] = hits
        if hits:
            problems.append(f"the {fname} contains " + ", ".join(hits))
    return Check(not problems, problems, details)


def _language(record: QARecord, o: dict[str, Any]) -> Check:
    allowed = [lang.lower() for lang in o["languages"]]
    problems: list[str] = []
    notes: list[str] = []
    details: dict[str, Any] = {"languages": allowed}
    found: dict[str, str] = {}
    evaluated = False
    for fname in ("instruction", "response"):
        text = getattr(record, fname)
        n_words = len(words(text))
        code = detect_language(text) if n_words >= o["min_language_words"] else None
        details[fname] = {"language": code, "words": n_words}
        if code is None:
            if n_words >= o["min_language_words"] and o["unknown_language"] == "drop":
                evaluated = True
                problems.append(f"the language of the {fname} cannot be told")
            else:
                why = (f"too short to tell ({n_words} words, under {o['min_language_words']})"
                       if n_words < o["min_language_words"] else "its language cannot be told")
                details[fname]["note"] = why
                notes.append(f"{fname} skipped: {why}")
            continue
        evaluated = True
        found[fname] = code
        if allowed and code not in allowed:
            problems.append(f"the {fname} is in {language_name(code)}, not in the configured "
                            f"language(s) {', '.join(allowed)}")
    if o["same_language"] and len(set(found.values())) > 1:
        problems.append(f"the instruction is in {language_name(found['instruction'])} and the "
                        f"response in {language_name(found['response'])}")
    note = "; ".join(notes)
    if not evaluated:
        return Check(None, details=details, note=note)
    return Check(not problems, problems, details, note)


_RUNNERS: dict[str, Callable[[QARecord, str | None, dict[str, Any]], Check]] = {
    "length": lambda r, c, o: _length(r, o),
    "grounded": _grounded,
    "well_formed": lambda r, c, o: _well_formed(r, o),
    "boilerplate": lambda r, c, o: _boilerplate(r, o),
    "first_person": lambda r, c, o: _first_person(r, o),
    "markup": lambda r, c, o: _markup(r, o),
    "language": lambda r, c, o: _language(r, o),
}


class HeuristicQualityFilter:
    """LIMA-style quality gates; see the module docstring for the checks and options."""

    name = "heuristic-quality"

    def evaluate(self, record: QARecord, *, context: str | None,
                 options: dict[str, Any] | None = None) -> RecordDecision:
        """The decision, synchronously (``judge`` is the Protocol's async face)."""
        o = _options(options or {})
        language = record_language(record)
        passed_over = [name for name in CHECKS if o[name] and language is not None
                       and language not in CHECK_LANGUAGES.get(name, (language,))]
        results: dict[str, Check] = {
            name: Check(None, note=f"passed over: it works in "
                        f"{', '.join(map(language_name, CHECK_LANGUAGES[name]))} only; the "
                        f"record is in {language_name(language)}")
            if name in passed_over else _RUNNERS[name](record, context, o)
            for name in CHECKS if o[name]}
        failed = [n for n, r in results.items() if r.passed is False]
        evaluated = [n for n, r in results.items() if r.passed is not None]
        skipped = [n for n, r in results.items() if r.passed is None]
        disabled = [n for n in CHECKS if not o[n]]
        max_failures = int(o["max_failures"])
        kept = len(failed) <= max_failures
        n = len(evaluated)
        score = (n - len(failed)) / n if n else 1.0
        threshold = max(0.0, (n - max_failures) / n) if n else 0.0
        what = "; ".join(f"{name}: {'; '.join(results[name].problems)}" for name in failed)
        extra = ""
        if skipped:
            extra = " (" + "; ".join(f"{s} {results[s].note}" for s in skipped) + ")"
        if not failed:
            reason = f"passed all {_plural(n, 'check')}{extra}"
        elif kept:
            reason = (f"kept with {len(failed)} of {n} checks failed (max_failures="
                      f"{max_failures}): {what}")
        else:
            reason = f"failed {len(failed)} of {n} checks: {what}"
        return RecordDecision(
            filter=self.name, kept=kept, score=round(score, 4), threshold=round(threshold, 4),
            reason=reason,
            details={"checks": {name: r.as_dict() for name, r in results.items()},
                     "failed": failed, "skipped": skipped, "disabled": disabled,
                     "max_failures": max_failures, "language": language,
                     **({"passed_over": passed_over} if passed_over else {})})

    async def judge(self, record: QARecord, *, context: str | None, teacher: Teacher | None,
                    options: dict[str, Any]) -> RecordDecision:
        return self.evaluate(record, context=context, options=options)


@hookimpl
def register_filters(register):
    register(HeuristicQualityFilter())
