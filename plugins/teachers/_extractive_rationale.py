"""Extractive evidence rationales and extractive question answering.

For a question and its context:

1. **Evidence.** Every sentence of the context is scored by the question's content words
   it contains (stemmed; each weighted by its inverse sentence frequency in the context,
   so rare words count for more), plus a bonus when the sentence holds the kind of phrase
   the question asks for (a quantity for "How many", a time for "When", a reason for
   "Why", a name for "Who"). The best sentence is the main evidence; up to two more that
   share at least half of the question's words and score at least 60% of the best join
   it, quoted in document order. A best sentence sharing under a quarter of the
   question's words (and fewer than two) means the context does not answer it.
2. **Answer.** The answer is extracted from the best sentence by question type: the
   quantity, duration, time expression, reason, name or definition the question asks
   for; "Which X" takes the words that modify X; anything else takes the run of words
   the question does not cover (between punctuation, preferring runs next to words the
   question does cover). When nothing is found, the whole sentence is the answer.

This is the "rationale" half of distilling step-by-step (Hsieh et al. 2023) done without
a model: the rationale is the supporting text itself, as in extractive rationale
extraction (Lei et al. 2016; DeYoung et al. 2020, ERASER), and the answer is a span of it,
as in extractive QA over SQuAD-style passages.
"""

from __future__ import annotations

import math
import re

from ._extractive_clause import (
    TIME_UNITS,
    Context,
    analyse,
    cause_spans,
    is_time_intro,
    name_spans,
    quantity_spans,
    remember,
    time_spans,
)
from ._extractive_text import (
    AUXILIARIES,
    DETERMINERS,
    PREPOSITIONS,
    PRONOUNS,
    STOPWORDS,
    WH_WORDS,
    Sentence,
    Token,
    content_stems,
    split_sentences,
    stem,
    tokenize,
    verb_form,
)

__all__ = ["UNKNOWN", "Reader", "answer_question", "rationale"]

UNKNOWN = "unknown"
_FUNCTION_WORDS = frozenset({*DETERMINERS, *PREPOSITIONS, *PRONOUNS, *AUXILIARIES, *WH_WORDS,
                             "and", "or", "but", "not", "be", "been", "being", "than"})


def _qtype(question: str) -> str:
    q = question.strip().lower()
    patterns = [
        (r"^how (many|much)\b", "quantity"), (r"^how long\b", "duration"),
        (r"^(when|what time|what season|what month|in what year|what year)\b", "time"),
        (r"^why\b", "cause"), (r"^(who|whom|by whom|whose)\b", "person"),
        (r"^where\b", "place"), (r"^what (is|are|was|were) [^?]*\bused (for|as)\b", "purpose"),
        (r"^what (do|does|did) [^?]* use [^?]* for\b", "purpose"),
        (r"^what (is|are|was|were) [^?]*\b(called|known as|named|termed)\b", "naming"),
        (r"^what (is|are|was|were) (a |an |the )?[^?]{1,60}\?$", "definition"),
        (r"^which \w+", "which"),
    ]
    for pattern, kind in patterns:
        if re.search(pattern, q):
            return kind
    return "other"


def _text(sentence: Sentence, tokens: list[Token], start: int, end: int) -> str:
    if end <= start:
        return ""
    return sentence.text[tokens[start].start:tokens[end - 1].end]


def _bonus(kind: str, sentence: Sentence) -> float:
    tokens = tokenize(sentence.text)
    if kind in {"quantity", "duration"}:
        spans = quantity_spans(tokens)
        if kind == "duration":
            spans = [s for s in spans if s.info.split()[0] in TIME_UNITS]
        return 1.0 if spans else 0.0
    if kind == "time":
        return 1.0 if time_spans(sentence.text, tokens) or re.search(
            r"(?i)\b(when|once|after|before|until)\b", sentence.text) else 0.0
    if kind == "cause":
        return 1.0 if cause_spans(tokens, 0, len(tokens)) else 0.0
    if kind == "person":
        return 1.0 if any(s.kind == "person" for s in name_spans(tokens, 0, len(tokens))) else 0.0
    if kind in {"definition", "naming"}:
        return 0.5 if re.search(r"\b(is|are|was|were)\b", sentence.text) else 0.0
    return 0.0


_USE_VERBS = frozenset({"use", "uses", "used", "using", "make", "makes", "made", "making"})


def _terms(text: str) -> set[str]:
    """Content stems, plus "use"/"make" (stop words elsewhere, telling in questions)."""
    return content_stems(text) | {stem(t.low) for t in tokenize(text) if t.low in _USE_VERBS}


class Reader:
    """The context's sentences with their stems, for answering several questions.

    A sentence whose subject is a pronoun also gets the words of the subject it refers
    to ("It is used to seal gaps" after "Propolis is a resin"), so that a question naming
    propolis finds it."""

    def __init__(self, context: str) -> None:
        all_sentences = split_sentences(context)
        self.sentences = [s for s in all_sentences if not s.heading] or all_sentences
        self.context = Context.of(self.sentences)
        resolve = Context(proper=self.context.proper)
        self.stems = []
        for s in self.sentences:
            stems = _terms(s.text)
            clause = analyse(s, resolve)
            if clause is not None and clause.resolved:
                stems |= content_stems(clause.subject)
            remember(resolve, clause, s)
            self.stems.append(stems)

    def select(self, question: str) -> tuple[list[Sentence], Sentence | None]:
        return _select(question, self.sentences, self.stems)


def _select(question: str, sentences: list[Sentence],
            stems: list[set[str]]) -> tuple[list[Sentence], Sentence | None]:
    q_stems = _terms(question)
    if not q_stems or not sentences:
        return [], None
    n = len(sentences)
    idf = {t: math.log(1 + n / (1 + sum(t in st for st in stems))) + 0.2 for t in q_stems}
    kind = _qtype(question)
    scored = []
    for s, st in zip(sentences, stems, strict=True):
        matched = q_stems & st
        score = sum(idf[t] for t in sorted(matched))
        if matched:
            score += 0.5 * _bonus(kind, s)
        scored.append((score, len(matched) / len(q_stems), len(matched), s))
    best = max(scored, key=lambda x: (x[0], -x[3].index))
    if best[2] == 0 or (best[1] < 0.25 and best[2] < 2):
        return [], None
    support = [x for x in scored if x[3] is not best[3] and x[1] >= 0.5 and x[0] >= 0.6 * best[0]]
    support = sorted(support, key=lambda x: (-x[0], x[3].index))[:2]
    chosen = sorted([best[3], *(x[3] for x in support)], key=lambda s: s.index)
    return chosen, best[3]


def _uncovered(question: str, sentence: Sentence, *, noun_phrase: bool = False) -> str:
    """The run of words of ``sentence`` that the question does not cover (cut to its
    leading noun phrase when the question asks "What ... <verb>?")."""
    q_stems = content_stems(question) | {
        stem(t.low) for t in tokenize(question)
        if t.is_word and t.low not in _FUNCTION_WORDS and len(t.low) > 2}
    tokens = tokenize(sentence.text)
    covered = [t.is_word and t.low not in _FUNCTION_WORDS and stem(t.low) in q_stems
               for t in tokens]
    runs: list[tuple[float, int, int]] = []
    i = 0
    while i < len(tokens):
        if covered[i] or not tokens[i].is_word:
            i += 1
            continue
        j = i
        while j < len(tokens) and not covered[j] and tokens[j].is_word:
            j += 1
        s, e = i, j
        while s < e and tokens[s].low in STOPWORDS - {"up", "about", "over"}:
            s += 1
        if noun_phrase:
            e = _noun_phrase_end(tokens, s, e)
        while e > s and tokens[e - 1].low in STOPWORDS:
            e -= 1
        if s < e:
            content = sum(1 for t in tokens[s:e] if t.low not in STOPWORDS)
            left = _covered_neighbour(tokens, covered, i - 1, -1)
            right = _covered_neighbour(tokens, covered, j, 1)
            score = min(content, 2) + 2 * left + 2 * right
            if s > 0 and tokens[s - 1].low in {"the", "a", "an", "their", "its"}:
                s -= 1
            runs.append((score, s, e))
        i = j
    if not runs:
        return ""
    _, s, e = max(runs, key=lambda r: (r[0], -r[1]))
    return _text(sentence, tokens, s, e)


def _noun_phrase_end(tokens: list[Token], s: int, e: int) -> int:
    """Cut a run of words at the end of the noun phrase it starts with: before a
    preposition other than "of", a relative pronoun, a subordinator or a second verb."""
    for k in range(s + 1, e):
        low = tokens[k].low
        if (low in PREPOSITIONS and low != "of") or low in {
                "that", "which", "who", "when", "while", "because", "if", "where"}:
            return k
        if low == "but":
            return k
        if low in {"and", "or"} and k + 1 < e and (verb_form(tokens[k + 1].low) or ("", ""))[1] in {
                "base", "3sg", "past", "ing"}:
            return k
    return e


def _covered_neighbour(tokens: list[Token], covered: list[bool], k: int, step: int) -> bool:
    while 0 <= k < len(tokens):
        if not tokens[k].is_word:
            return False
        if covered[k]:
            return True
        if tokens[k].low not in STOPWORDS:
            return False
        k += step
    return False


def answer_question(question: str, sentence: Sentence, context: Context | None = None) -> str:
    """Extract the answer to ``question`` from ``sentence`` (see the module docstring)."""
    tokens = tokenize(sentence.text)
    kind = _qtype(question)
    q_stems = content_stems(question)
    text = ""
    if kind in {"quantity", "duration"}:
        spans = quantity_spans(tokens)
        if kind == "duration":
            spans = [s for s in spans if s.info.split()[0] in TIME_UNITS] or spans
        if spans:
            best = max(spans, key=lambda s: (bool(content_stems(s.info) & q_stems), -s.start))
            text = _text(sentence, tokens, best.start, best.end)
    elif kind == "time":
        spans = [s for s in time_spans(sentence.text, tokens)
                 if not content_stems(s.info) <= q_stems]
        clause = analyse(sentence, context or Context())
        if clause is not None and clause.intro is not None and is_time_intro(clause):
            text = clause.text(*clause.intro)
        elif spans:
            end = spans[0].end
            k = end
            while k < len(tokens) and tokens[k].low in {"soon", "shortly", "just", "right",
                                                         "immediately", "long", ","}:
                k += 1
            if k < len(tokens) and tokens[k].low in {"after", "before", "when", "until", "once"}:
                end = k
                while end < len(tokens) and tokens[end].low not in {",", ";", ":", "."}:
                    end += 1
            text = _text(sentence, tokens, spans[0].start, end)
        else:
            m = re.search(r"(?i)\b(when|once|after|before|until)\b[^,;.]*", sentence.text)
            text = m.group() if m else ""
    elif kind == "cause":
        spans = cause_spans(tokens, 0, len(tokens))
        if spans:
            text = _text(sentence, tokens, spans[0].start, spans[0].end)
    elif kind == "person":
        spans = [s for s in name_spans(tokens, 0, len(tokens)) if s.kind == "person"]
        if spans:
            text = _text(sentence, tokens, spans[0].start, spans[0].end)
    elif kind == "place":
        spans = [s for s in name_spans(tokens, 0, len(tokens)) if s.kind == "name"]
        if spans:
            text = _text(sentence, tokens, spans[0].start, spans[0].end)
    elif kind in {"definition", "naming", "purpose"}:
        text = _predicate(question, sentence, tokens, kind)
    elif kind == "which":
        noun = re.match(r"(?i)which (\w+)", question.strip())
        assert noun is not None
        head = stem(noun.group(1))
        for i, t in enumerate(tokens):
            if stem(t.low) == head and i > 0:
                s = i
                while s > 0 and tokens[s - 1].is_word and tokens[s - 1].low not in STOPWORDS:
                    s -= 1
                if s < i:
                    text = _text(sentence, tokens, s, i + 1)
                    break
    if not text:
        object_question = bool(re.match(r"(?i)^what (do|does|did|can|could|will|would|should|"
                                        r"must|may|might) ", question.strip()))
        text = _uncovered(question, sentence, noun_phrase=object_question)
    if not text:
        text = sentence.text
    text = text.strip().rstrip(".,;:!?").strip()
    first = text.split(" ", 1)[0]
    if first.lower() in STOPWORDS and first != "I":
        text = first.lower() + text[len(first):]  # "So the answer is when ..."
    return text


def _predicate(question: str, sentence: Sentence, tokens: list[Token], kind: str) -> str:
    """What follows "X is" (definitions), "is called"/"known as" (names), "used to/for"."""
    if kind == "purpose":
        for i, t in enumerate(tokens):
            if t.low in {"used", "use", "uses"} and i + 1 < len(tokens):
                for k in range(i + 1, min(len(tokens), i + 8)):
                    if tokens[k].low in {"to", "for", "as"}:
                        return _text(sentence, tokens, k, _end_of(tokens, k))
        return ""
    q_stems = content_stems(question)
    for i, t in enumerate(tokens):
        if t.low in {"is", "are", "was", "were"} and i > 0:
            before = {stem(x.low) for x in tokens[:i] if x.is_word}
            if not q_stems or not (q_stems & before):
                continue
            k = i + 1
            if kind == "naming":
                while k < len(tokens) and tokens[k].low in {"called", "known", "named",
                                                            "termed", "as", "also", "often",
                                                            "usually", "sometimes"}:
                    k += 1
            if k < len(tokens):
                return _text(sentence, tokens, k, _end_of(tokens, k))
    return ""


def _end_of(tokens: list[Token], start: int) -> int:
    end = len(tokens)
    for k in range(start, len(tokens)):
        if tokens[k].low in {";", ":"}:
            end = k
            break
    while end > start and not tokens[end - 1].is_word:
        end -= 1
    return end


def _quote(text: str) -> str:
    return text.replace('"', "'")


def rationale(question: str, context: str) -> str:
    """Step-by-step reasoning that quotes the supporting sentences, then the answer line."""
    reader = Reader(context)
    terms = sorted(content_stems(question))
    evidence, best = reader.select(question)
    if best is None:
        about = ", ".join(f'"{t}"' for t in terms[:5]) or "its subject"
        return (f"Step by step: The question asks about {about}. No sentence of the passage "
                "mentions these terms, so the passage does not contain the answer.\n"
                f"So the answer is {UNKNOWN}.")
    answer = answer_question(question, best, reader.context)
    parts = []
    for i, s in enumerate(evidence):
        lead = "The passage says" if i == 0 else "It also says"
        parts.append(f'{lead}: "{_quote(s.text)}"')
    matched = sorted(content_stems(question) & content_stems(best.text))
    shared = ", ".join(f'"{t}"' for t in matched[:4])
    which = "This sentence" if len(evidence) == 1 else "The sentence that answers it"
    reasoning = (f"{which} shares {shared} with the question, and the part of it the "
                 f"question asks for is \"{_quote(answer)}\".")
    return f"Step by step: {' '.join(parts)} {reasoning}\nSo the answer is {answer}."


