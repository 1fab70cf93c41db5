"""Heuristic judges: Humpback-style self-curation scores, and groundedness judging.

``curate`` scores an (instruction, response) pair on the 5-point scale of Humpback's
self-curation prompt (Li et al. 2023, "Self-Alignment with Instruction Backtranslation",
Table 1), with rules in place of the model:

====  ========================================================================
5     a perfect answer from an AI assistant: on topic, complete, neutral style
4     written from an assistant's perspective, minor room for improvement
3     helpful but not assistant-like: a blog post, forum reply, personal account
2     addresses the request only partly or indirectly
1     incomplete, off topic, or promotional / navigation text
====  ========================================================================

Start at 5 and deduct, each rule naming itself in the reasoning:

* first-person or forum style ("I ", "my ", "in my experience", "comments", "share"):
  1 point, 2 for three or more cues or "in my experience";
* promotional or navigation text ("click here", "subscribe", "cookie", "menu"): 2 points,
  3 for three or more;
* links or HTML leftovers (``http://``, ``www.``, tags, entities, Markdown links): 1;
* the response repeating the instruction: 1 (2 when it is little more than that);
* length: under 5 words 2, under 15 words 1, over 800 words 1;
* topic overlap (share of the instruction's topic words, stemmed, found in the response;
  instruction verbs and question-frame words such as "how far", "the difference",
  "mean" are not topic words): under 25% 3, under 50% 2, any missing 1 (naming them);
* fit -- does the response answer *this* instruction (Humpback's "clear focus on
  addressing the instruction")? It does not open on the instruction's topic (its first
  sentence has none of the topic words): 1; the question form asks for something the
  response lacks (a number for "how many / how long / ...", a time for "when", a reason
  for "why"): 1; its numbered list starts after 1 (Table 1: "numbered list does not start
  from the beginning"): 2;
* a truncated ending (no final punctuation): 1;
* heavy repetition (a repeated sentence, or under 30% distinct words in 50+): 1.

``judge`` scores a (question, answer) record against its source context, for filters:
groundedness (the share of the answer's content words found in the context) sets the base
(90% -> 5, 75% -> 4, 50% -> 3, 25% -> 2, else 1); a malformed question (no "?" or
imperative form, no wh-word or auxiliary, under 3 or over 40 words), an incomplete answer
(empty, truncated, or a copy of the question) and the style deductions above take a point
each.
"""

from __future__ import annotations

import re

from ._extractive_text import (
    AUXILIARIES,
    WH_WORDS,
    content_stems,
    content_words,
    is_number_word,
    split_sentences,
    stem,
    tokenize,
    word_count,
)

__all__ = ["Finding", "curate", "judge", "style_findings"]

_FORUM = [
    r"\bI\b", r"\bI'(?:m|ve|d|ll)\b", r"(?i)\bmy\b", r"(?i)\bme\b", r"(?i)\bmine\b",
    r"(?i)\bin my (?:experience|opinion)\b", r"(?i)\bcomments?\b", r"(?i)\bshare\b",
    r"(?i)\breply\b", r"(?i)\bposted (?:by|on|in)\b", r"(?i)\bthanks? (?:for|you)\b",
    r"(?i)\blol\b", r"(?i)\bimho\b", r"(?i)\bimo\b", r"(?i)^\s*edit\s*:", r"(?i)\bupvote",
    r"(?i)\breposted\b", r"(?i)\bforum\b", r"(?i)\bthread\b", r"(?i)\bdm me\b",
    r"(?i)\bguys\b", r"(?i)\bhey\b",
]
_PROMO = [
    r"(?i)\bclick here\b", r"(?i)\bsubscribe\b", r"(?i)\bcookies?\b", r"(?i)\bmenu\b",
    r"(?i)\bsign up\b", r"(?i)\blog ?in\b", r"(?i)\bnewsletter\b", r"(?i)\bbuy now\b",
    r"(?i)\bshop (?:now|online)\b", r"(?i)\bdiscount\b", r"(?i)\bfree shipping\b",
    r"(?i)\bfollow us\b", r"(?i)\bprivacy policy\b", r"(?i)\bterms of (?:use|service)\b",
    r"(?i)\ball rights reserved\b", r"(?i)\badvertisement\b", r"(?i)\bsponsored\b",
    r"(?i)\bread more\b", r"(?i)\b(?:next|previous) post\b", r"(?i)\badd to (?:cart|basket)\b",
    r"(?i)\border (?:now|today)\b", r"(?i)\bspecial offer\b", r"(?i)\bcoupon\b",
    r"(?i)\bhome\s*[|>]", r"(?i)\bskip to (?:main )?content\b", r"(?i)\bcopyright\b|\u00a9",
]
_MARKUP = [
    r"https?://", r"\bwww\.", r"</?[a-zA-Z][^>]{0,80}>", r"&(?:nbsp|amp|lt|gt|quot|#\d+);",
    r"\[[^\]]+\]\([^)]+\)",
]
_INSTRUCTION_VERBS = frozenset({
    "explain", "describe", "tell", "list", "give", "write", "summarise", "summarize", "name",
    "compare", "define", "state", "identify", "outline", "discuss", "show", "provide",
    "suggest", "recommend", "detail", "elaborate", "please", "briefly", "step", "steps",
    "instructions", "including",
})
_SCALE = {
    5: "It reads like a perfect answer from an AI assistant.",
    4: "It is a helpful, focused answer with minor room for improvement.",
    3: "It is helpful but reads like a blog post, forum reply or personal account rather "
       "than an assistant's answer.",
    2: "It addresses the request only partly or indirectly.",
    1: "It is incomplete, off topic, or promotional or navigation text.",
}


class Finding:
    """One deduction: how many points, and the words that name it in the reasoning."""

    __slots__ = ("label", "points")

    def __init__(self, points: int, label: str) -> None:
        self.points = points
        self.label = label

    def __repr__(self) -> str:
        return f"Finding({self.points}, {self.label!r})"


def _hits(patterns: list[str], text: str) -> list[str]:
    found = []
    for p in patterns:
        found.extend(m.group().strip() for m in re.finditer(p, text, flags=re.M))
    return found


def _quoted(cues: list[str]) -> str:
    seen: list[str] = []
    for c in cues:
        if c.lower() not in (s.lower() for s in seen):
            seen.append(c)
    return ", ".join(f'"{c}"' for c in seen[:3])


def style_findings(response: str) -> list[Finding]:
    """Deductions that depend on the response's style alone (forum, promotion, markup)."""
    out: list[Finding] = []
    forum = _hits(_FORUM, response)
    if forum:
        strong = len(forum) >= 3 or re.search(r"(?i)\bin my (experience|opinion)\b", response)
        out.append(Finding(2 if strong else 1,
                           f"first-person or forum style ({_quoted(forum)})"))
    promo = _hits(_PROMO, response)
    if promo:
        out.append(Finding(3 if len(promo) >= 3 else 2,
                           f"promotional or navigation text ({_quoted(promo)})"))
    markup = _hits(_MARKUP, response)
    if markup:
        out.append(Finding(1, "links or HTML leftovers"))
    return out


#: the frame of a question, not its topic: "how *far* is ...", "what is the *difference*
#: between ...", "what does X *mean*" -- an answer need not repeat these words
_QUESTION_FRAME = frozenset({
    "long", "far", "fast", "large", "big", "small", "old", "often", "much", "many", "tall",
    "high", "deep", "wide", "heavy", "difference", "differences", "mean", "means",
    "meaning", "cause", "causes", "reason", "reasons", "role", "purpose", "way", "ways",
    "kind", "kinds", "type", "types", "main", "important", "best", "called", "time",
    "work", "works", "happen", "happens", "allow", "allows", "keep", "start", "build",
    "make", "need", "needs", "used", "use", "example", "examples", "thing", "things",
})
_NOT_TOPIC = frozenset(stem(v) for v in _INSTRUCTION_VERBS | _QUESTION_FRAME)


def _topic_stems(instruction: str) -> set[str]:
    return {s for s in content_stems(instruction) if s not in _NOT_TOPIC}


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _repeats(instruction: str, response: str) -> int:
    """0, 1 (the response restates the instruction) or 2 (it is little more than that)."""
    ins, res = _norm(instruction), _norm(response)
    if not ins or not res:
        return 0
    ins_stems, res_stems = content_stems(instruction), content_stems(response)
    if res_stems and res_stems <= ins_stems:
        return 2
    if word_count(instruction) >= 4 and ins in res:
        return 2 if len(res) < 1.5 * len(ins) + 20 else 1
    return 0


def _truncated(response: str) -> bool:
    text = response.rstrip()
    return bool(text) and text[-1] not in ".!?\"')]\u201d\u2019`*>|:" and not re.search(
        r"(?m)^\s*(?:[-*]|\d+[.)])\s+\S[^\n]*$", text.splitlines()[-1])


def _repetitive(response: str) -> bool:
    sentences = [_norm(s.text) for s in split_sentences(response)]
    sentences = [s for s in sentences if len(s.split()) >= 4]
    if len(sentences) != len(set(sentences)):
        return True
    words = [t.low for t in tokenize(response) if t.is_word]
    return len(words) >= 50 and len(set(words)) / len(words) < 0.3


_NUMERIC_ASKS = re.compile(r"(?i)^\s*(?:how (?:many|much|long|old|far|often|big|large|"
                           r"tall|high|fast|heavy|deep|wide)|what (?:percentage|proportion|"
                           r"share|number|temperature|year|age))\b")
_WHEN_ASKS = re.compile(r"(?i)^\s*(?:when|in (?:what|which) (?:year|month|season|century))\b")
_WHY_ASKS = re.compile(r"(?i)^\s*(?:why|what (?:causes|caused|makes|made))\b")
_NUMBER = re.compile(r"\d")
_TIME_WORDS = re.compile(r"(?i)\b(?:january|february|march|april|may|june|july|august|"
                         r"september|october|november|december|spring|summer|autumn|fall|"
                         r"winter|century|decade|year|years|before|after|during|until|since|"
                         r"morning|evening|night|dawn|dusk|today|daily|weekly|season)\b")
_CAUSE_WORDS = re.compile(r"(?i)\b(?:because|due to|since|so that|in order to|as a result|"
                          r"caus(?:e|es|ed|ing)|reason|leads? to|results? in|therefore|thus|"
                          r"allows?|helps?|prevents?|protects?|so)\b")
_NUMBERED_ITEM = re.compile(r"(?m)^\s*(\d{1,2})[.)]\s+\S")


def _fit_findings(instruction: str, response: str, topic: set[str]) -> list[Finding]:
    """Whether the response answers *this* instruction (Humpback's "clear focus on
    addressing the instruction"; Table 1's "numbered list does not start from the
    beginning"): a point each when the response does not open on the instruction's topic,
    when it lacks what the question form asks for (a number for "how many", a time for
    "when", a reason for "why"), and when its numbered list starts after 1."""
    out: list[Finding] = []
    sentences = split_sentences(response)
    lead = sentences[0].text if sentences else response
    if len(sentences) > 1 and not topic & content_stems(lead):
        out.append(Finding(1, "it does not open on the instruction's topic"))
    if _NUMERIC_ASKS.search(instruction) and not (
            _NUMBER.search(response) or any(is_number_word(t.low) for t in tokenize(response))):
        out.append(Finding(1, "the instruction asks for a quantity and it gives no number"))
    elif _WHEN_ASKS.search(instruction) and not (_NUMBER.search(response)
                                                 or _TIME_WORDS.search(response)):
        out.append(Finding(1, "the instruction asks when and it gives no time"))
    elif _WHY_ASKS.search(instruction) and not _CAUSE_WORDS.search(response):
        out.append(Finding(1, "the instruction asks why and it gives no reason"))
    items = [int(m.group(1)) for m in _NUMBERED_ITEM.finditer(response)]
    if items and items[0] > 1:
        out.append(Finding(2, f"its numbered list starts at {items[0]}, not 1"))
    return out


def curate_findings(instruction: str, response: str) -> tuple[list[Finding], str]:
    out = style_findings(response)
    rep = _repeats(instruction, response)
    if rep:
        out.append(Finding(rep, "it repeats the instruction"
                           + (" and adds little else" if rep == 2 else "")))
    n = word_count(response)
    if n < 5:
        out.append(Finding(2, f"very short ({n} word{'s' if n != 1 else ''})"))
    elif n < 15:
        out.append(Finding(1, f"short ({n} words)"))
    elif n > 800:
        out.append(Finding(1, f"very long ({n} words)"))
    topic = _topic_stems(instruction)
    coverage = ""
    if topic:
        found = topic & content_stems(response)
        share = len(found) / len(topic)
        coverage = f"{len(found)} of {len(topic)}"
        if share < 0.25:
            out.append(Finding(3, f"off topic (only {coverage} of the instruction's topic "
                                  "words appear)"))
        elif share < 0.5:
            out.append(Finding(2, f"partly on topic ({coverage} of the instruction's topic "
                                  "words appear)"))
        elif share < 1:
            missing = [w for w in content_words(instruction) if stem(w) in topic - found]
            out.append(Finding(1, f"it does not mention {_quoted(missing)} of the "
                                  "instruction"))
        out.extend(_fit_findings(instruction, response, topic))
    if _truncated(response):
        out.append(Finding(1, "it ends mid-sentence"))
    if _repetitive(response):
        out.append(Finding(1, "it repeats itself"))
    return out, coverage


def curate(instruction: str, response: str) -> str:
    """Reasoning in one to three sentences, then ``Score: N`` on the last line."""
    findings, coverage = curate_findings(instruction, response)
    score = max(1, min(5, 5 - sum(f.points for f in findings)))
    covers = (f"The response covers {coverage} of the instruction's topic words"
              if coverage else "The instruction names no topic words to check")
    if not findings:
        first = (f"{covers}, is complete and well formed, and is written in a neutral, "
                 "helpful style without personal, promotional or navigation text.")
    else:
        first = f"{covers}. Deductions: {'; '.join(f.label for f in findings)}."
    return f"{first} {_SCALE[score]}\nScore: {score}"


def _question_findings(instruction: str) -> list[Finding]:
    text = instruction.strip()
    words = [t.low for t in tokenize(text) if t.is_word]
    out: list[Finding] = []
    if not words:
        return [Finding(1, "the question is empty")]
    imperative = words[0] in _INSTRUCTION_VERBS
    if not (text.endswith("?") or imperative):
        out.append(Finding(1, "the question does not end with a question mark"))
    elif text.endswith("?") and words[0] not in WH_WORDS and words[0] not in AUXILIARIES \
            and words[0] not in {"in", "on", "at", "by", "for", "from", "according", "to",
                                 "with", "of", "during", "after", "before"}:
        out.append(Finding(1, "the question does not start with a question word"))
    if not 3 <= len(words) <= 40:
        out.append(Finding(1, f"the question has {len(words)} words"))
    return out


def judge(instruction: str, response: str, context: str) -> tuple[int, str]:
    """A 1-5 score and its reasoning for a question/answer record and its source."""
    words = content_words(response)
    ctx = content_stems(context)
    stems = [stem(w) for w in words]
    grounded = sum(1 for s in stems if s in ctx)
    share = grounded / len(stems) if stems else 0.0
    base = 5 if share >= 0.9 else 4 if share >= 0.75 else 3 if share >= 0.5 else \
        2 if share >= 0.25 else 1
    findings = _question_findings(instruction)
    if not response.strip():
        findings.append(Finding(1, "the answer is empty"))
    elif word_count(response) >= 4 and _truncated(response):
        findings.append(Finding(1, "the answer ends mid-sentence"))
    if response.strip() and _repeats(instruction, response) == 2:
        findings.append(Finding(1, "the answer only repeats the question"))
    findings.extend(Finding(1, f.label) for f in style_findings(response))
    score = max(1, min(5, base - sum(f.points for f in findings)))
    parts = [f"Groundedness: {grounded} of {len(stems)} content words of the answer appear "
             f"in the context ({share:.0%})."]
    if findings:
        parts.append("Deductions: " + "; ".join(f.label for f in findings) + ".")
    else:
        parts.append("The question is well formed and the answer is complete.")
    return score, " ".join(parts)
