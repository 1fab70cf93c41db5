"""Answer-aware rule-based question generation, and instruction backtranslation.

Question generation over-generates and ranks, after Heilman & Smith (2010): every
sentence that parses as a declarative clause (see ``_extractive_clause``) is matched
against templates, each of which picks an *answer phrase* in the sentence, removes it and
asks for it with the matching wh-word:

===========  =========================================  ==================================
template     answer phrase                              question
===========  =========================================  ==================================
definition   predicate of "X is/are a/an/the/how ..."   What is X?
             "X is called/known as Y"                   What is X called?
quantity     "up to 2,000 eggs", subject "Thousands     How many eggs does a queen lay a
             of bees"                                   day? / How many bees pour out ...?
duration     "about six weeks" (a time unit)            How long does a worker bee live?
time         "in early spring", "in 1851", a fronted    When does the urge to swarm build
             "When ..." clause                          up?
cause        "because ...", "due to ..."                Why is a swarm usually gentle?
purpose      "is used to/for ...", "so that ...",       What is propolis used for? / Why
             "in order to ..."                          do beekeepers ...?
name         a capitalised multi-word name              Who decoded ...? / Where ...?
which        the modifiers of the subject               Which bees search ...?
object       the object of a simple verb                What do workers build?
===========  =========================================  ==================================

Questions use subject-auxiliary inversion or do-support with a lemmatised verb. A
leading "It"/"They"/"She" is replaced by the subject of one of the three sentences before
(matching in number), or the sentence is skipped. A question is kept only when it ends
with "?", starts with a capital, has 4 to 25 words, holds no unresolved pronoun or
demonstrative, and does not contain its answer phrase. The answer is the sentence (or its
main clause, for long sentences) as written in the passage, pronoun resolved.

Ranking: template weight (definition > quantity > time > cause/purpose > name > which >
object), plus content words in the answer, minus long questions, long sentences and
resolved pronouns; earlier sentences break ties. One pair per sentence first, then a
second pass; questions are de-duplicated.

Backtranslation (Humpback, Li et al. 2023, done without a model) writes the instruction a
response answers: from a heading, a definitional first sentence ("What is X?"), a causal
first sentence ("Why ...?"), numbered or imperative steps, or else the response's main
topic ("Describe X.").
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ._extractive_clause import (
    TIME_UNITS,
    Clause,
    Context,
    Span,
    analyse,
    cause_spans,
    finish_question,
    is_time_intro,
    name_spans,
    quantity_spans,
    remember,
    time_spans,
)
from ._extractive_rationale import Reader
from ._extractive_text import (
    ADJECTIVES,
    COMPARATIVES,
    DETERMINERS,
    PREPOSITIONS,
    STOPWORDS,
    Sentence,
    content_words,
    is_adverb,
    is_number_word,
    join_words,
    split_sentences,
    stem,
    tokenize,
    verb_form,
    word_count,
)

__all__ = ["Candidate", "backtranslate", "candidates", "qa_pairs"]

WEIGHTS = {"definition": 3.0, "quantity": 2.8, "duration": 2.8, "time": 2.6, "cause": 2.4,
           "purpose": 2.4, "name": 2.0, "which": 1.4, "object": 1.2}
_GENERIC_HEADS = frozenset({
    "result", "reason", "sign", "problem", "answer", "way", "thing", "point", "idea", "fact",
    "difference", "aim", "goal", "key", "trick", "rule", "rest", "best", "first", "second",
    "last", "other", "one", "part", "step", "element", "aspect", "feature", "question",
    "issue", "option", "solution", "purpose", "effect", "outcome", "consequence", "main",
    "important", "same", "following", "former", "latter", "case", "example", "method",
})
_DEF_STARTERS = frozenset({"a", "an", "the", "one", "how", "what", "where", "when", "any",
                           "each"})
_NAMING_VERBS = frozenset({"call", "know", "name", "term", "refer"})
_UNRESOLVED = frozenset({"it", "they", "them", "he", "she", "him", "her", "this", "these",
                         "those", "here", "there", "such", "former", "latter", "above",
                         "we", "us", "you", "i", "me", "our", "my", "your"})
_ADJECTIVE_HINTS = ADJECTIVES
_LIGHT_VERBS = frozenset({"be", "seem", "become", "remain", "appear", "look", "mean", "get",
                          "stay", "go", "come", "feel", "sound", "tend", "want", "need",
                          "try", "begin", "start", "continue", "help", "allow", "let",
                          "spend", "take", "do"})


@dataclass
class Candidate:
    question: str
    answer: str
    kind: str
    #: the answer phrase the question asks for (must not occur in the question)
    focus: str
    sentence: int
    score: float = 0.0


# --- templates --------------------------------------------------------------------------


def _phrase(text: str) -> str:
    """A phrase answer: the passage's words, first letter capitalised."""
    text = text.strip().rstrip(".,;:")
    return text[:1].upper() + text[1:]


def _rest(cl: Clause, start: int, end: int, cut: tuple[int, int] | None = None) -> str:
    text = cl.text_without(start, end, cut)
    return text.strip(" ,;")


def _definition(cl: Clause) -> list[Candidate]:
    if cl.intro is not None or cl.negated or cl.aux not in {"is", "are", "was", "were"}:
        return []
    assert cl.aux_i is not None
    toks = cl.tokens
    subj_words = [t.low for t in toks[cl.subj[0]:cl.subj[1]] if t.is_word]
    if not 1 <= len(subj_words) <= 7 or any(w in PREPOSITIONS - {"of"} for w in subj_words):
        return []
    if subj_words[0] == "the" and any(w in _GENERIC_HEADS for w in subj_words):
        return []
    if any(w in _GENERIC_HEADS for w in subj_words[-1:]):
        return []
    if cl.verb_i is not None:
        # "X is called Y", "X is known as Y"
        if cl.lemma in _NAMING_VERBS and cl.passive and cl.vg_end < cl.clause_end:
            j = cl.vg_end
            middle = cl.text(cl.aux_i + 1, j)
            if toks[j].low in {"as", "to"}:
                middle = f"{middle} {toks[j].text}"
                j += 1
            focus = _rest(cl, j, cl.clause_end)
            q = finish_question(join_words(["What", cl.aux, cl.subject, middle]))
            return [Candidate(q, cl.answer(), "definition", focus, cl.sentence.index)]
        return []
    if cl.vg_end != cl.aux_i + 1 or cl.vg_end >= cl.end:
        return []
    first = toks[cl.vg_end].low
    ok = first in _DEF_STARTERS
    if not ok and cl.aux in {"are", "were"}:
        # "Drones are male bees": a bare plural predicate, not an adjective phrase
        words = [t.low for t in toks[cl.vg_end:cl.clause_end] if t.is_word]
        phrase = []
        for w in words:
            if w in PREPOSITIONS or w in {"that", "which", "who", "than"}:
                break
            phrase.append(w)
        ok = (len(phrase) >= 1 and "than" not in words and not is_adverb(words[0])
              and words[0] not in STOPWORDS and words[0] not in _ADJECTIVE_HINTS
              and phrase[-1].endswith("s") and not phrase[-1].endswith("ss")
              and (verb_form(words[0]) or ("", ""))[1] not in {"past", "part", "ing"})
    if not ok:
        return []
    if first == "the" and cl.vg_end + 1 < cl.end and toks[cl.vg_end + 1].low in {
            "same", "most", "best", "first", "last", "only", "main", "key"}:
        return []
    focus = _rest(cl, cl.vg_end, cl.clause_end)
    q = finish_question(join_words(["What", cl.aux, cl.subject]))
    answer = cl.answer(cl.end) if word_count(cl.sentence.text) <= 35 else cl.answer()
    return [Candidate(q, answer, "definition", focus, cl.sentence.index)]


def _quantity(cl: Clause) -> list[Candidate]:
    if cl.negated:
        return []
    toks = cl.tokens
    out: list[Candidate] = []
    for span in quantity_spans(toks, cl.subj[0], cl.clause_end):
        unit = span.info
        if unit == "percent":
            continue
        unit_words = unit.split()
        if span.start == cl.subj[0] and span.end <= cl.subj[1]:
            # the subject counts something: "Thousands of bees pour out ..."
            if not _plural_unit(unit_words) or cl.resolved or span.end != cl.subj[1]:
                continue
            rest = _rest(cl, cl.vg_end, cl.clause_end)
            q = cl.ask_subject(f"How many {unit}", rest)
            focus = cl.text(span.start, _number_end(toks, span))
            out.append(Candidate(q, _phrase(cl.text(*cl.subj)), "quantity", focus,
                                 cl.sentence.index))
            continue
        if cl.verb_i is None and cl.aux_i is not None:
            continue  # "the trip is 3 km long": no clean question
        start = cl.vg_end
        if start < cl.end and toks[start].low == "for":
            start += 1
        if span.start != start and not (span.start == cl.vg_end + 1
                                         and toks[cl.vg_end].low == "for"):
            continue
        if span.end > cl.clause_end:
            continue
        rest = _rest(cl, span.end, cl.clause_end)
        focus = cl.text(span.start, _number_end(toks, span))
        if unit_words[0] in TIME_UNITS:
            if cl.lemma in {"be", None}:
                continue
            q = cl.ask("How long", rest)
            out.append(Candidate(q, cl.answer(), "duration", focus, cl.sentence.index))
        elif _plural_unit(unit_words):
            q = cl.ask(f"How many {unit}", rest)
            out.append(Candidate(q, cl.answer(), "quantity", focus, cl.sentence.index))
    return out


def _number_end(toks: list, span: Span) -> int:
    """The end of the number part of a quantity span (modifier and numerals)."""
    i = span.start
    while i < span.end and not (is_number_word(toks[i].low)):
        i += 1
    while i < span.end and (is_number_word(toks[i].low)
                            or toks[i].low in {"or", "to", "and", "-", "\u2013"}):
        i += 1
    return i


def _plural_unit(words: list[str]) -> bool:
    head = words[0] if "of" not in words else words[0]
    last = words[-1] if "of" not in words else words[words.index("of") - 1]
    return bool(head) and (last.endswith("s") or last in {"larvae", "pupae", "people",
                                                          "children", "mice"})


def _time(cl: Clause) -> list[Candidate]:
    if cl.negated:
        return []
    out: list[Candidate] = []
    if cl.intro is not None and is_time_intro(cl):
        rest = _rest(cl, cl.vg_end, cl.clause_end)
        focus = cl.text(*cl.intro)
        if not content_words(focus) or any(
                t.low in _UNRESOLVED for t in cl.tokens[cl.intro[0]:cl.intro[1]]):
            return []
        q = cl.ask("When", rest)
        out.append(Candidate(q, cl.answer(), "time", focus, cl.sentence.index))
        return out
    for span in time_spans(cl.sentence.text, cl.tokens):
        if span.start < cl.vg_end or span.end > cl.clause_end:
            continue
        cut_end = span.end
        k = span.end
        while k < cl.clause_end and cl.tokens[k].low in {"soon", "shortly", "just", "right",
                                                          "immediately", "long", ","}:
            k += 1
        if k < cl.clause_end and cl.tokens[k].low in {"after", "before", "when", "until",
                                                       "once", "while", "as"}:
            cut_end = cl.clause_end
        rest = _rest(cl, cl.vg_end, cl.clause_end, (span.start, cut_end))
        q = cl.ask("When", rest)
        out.append(Candidate(q, cl.answer(), "time", cl.text(span.start, span.end),
                             cl.sentence.index))
        break
    return out


def _cause(cl: Clause) -> list[Candidate]:
    if cl.negated:
        return []
    out: list[Candidate] = []
    toks = cl.tokens
    if cl.intro is not None and toks[0].low == "because":
        rest = _rest(cl, cl.vg_end, cl.clause_end)
        q = cl.ask("Why", rest)
        return [Candidate(q, cl.answer(), "cause", cl.text(*cl.intro), cl.sentence.index)]
    for span in cause_spans(toks, cl.vg_end, cl.end):
        stop = span.start
        if stop > cl.clause_end and not (
                toks[cl.clause_end].text == "," and cl.clause_end + 1 == span.start):
            continue
        stop = min(stop, cl.clause_end)
        rest = _rest(cl, cl.vg_end, stop)
        q = cl.ask("Why", rest)
        out.append(Candidate(q, cl.answer(span.end), span.kind, cl.text(span.start, span.end),
                             cl.sentence.index))
        break
    return out


def _purpose(cl: Clause) -> list[Candidate]:
    """"X is used to/for Y" -> "What is X used for?"; "S use(s) O to Y" -> "What do S use
    O for?"."""
    toks = cl.tokens
    if cl.negated or cl.verb_i is None or cl.lemma != "use":
        return []
    if cl.passive and cl.vg_end < cl.end and toks[cl.vg_end].low in {"to", "for", "as", "in"}:
        prep = "as" if toks[cl.vg_end].low == "as" else "for"
        assert cl.aux is not None and cl.aux_i is not None
        middle = cl.text(cl.aux_i + 1, cl.vg_end)
        q = finish_question(join_words(["What", cl.aux, cl.subject, middle, prep]))
        focus = _rest(cl, cl.vg_end, cl.clause_end)
        return [Candidate(q, cl.answer(), "purpose", focus, cl.sentence.index)]
    if cl.passive:
        return []
    for k in range(cl.vg_end + 1, min(cl.clause_end, cl.vg_end + 8)):
        if toks[k].low in {"to", "for"} and k + 1 < cl.end:
            obj = _rest(cl, cl.vg_end, k)
            if not content_words(obj):
                return []
            q = cl.ask("What", f"{obj} for")
            focus = _rest(cl, k, cl.clause_end)
            return [Candidate(q, cl.answer(), "purpose", focus, cl.sentence.index)]
        if toks[k].low in PREPOSITIONS:
            break
    return []


_WHERE_PREPS = frozenset({"in", "at", "from", "to", "near", "across", "into", "throughout"})


def _name(cl: Clause) -> list[Candidate]:
    if cl.negated:
        return []
    toks = cl.tokens
    out: list[Candidate] = []
    for span in name_spans(toks, 0, cl.end):
        wh = "Who" if span.kind == "person" else "What"
        focus = cl.text(span.start, span.end)
        answer = cl.answer()
        if span.end == cl.subj[1] and span.start >= cl.subj[0] and not cl.resolved:
            if wh == "What":
                continue
            q = cl.ask_subject(wh, _rest(cl, cl.vg_end, cl.clause_end))
            answer = _phrase(cl.text(*cl.subj))
        elif span.start == cl.vg_end and cl.verb_i is not None and not cl.passive:
            q = cl.ask(wh, _rest(cl, span.end, cl.clause_end))
        elif span.start >= cl.vg_end and span.end <= cl.clause_end and span.start > 0:
            prep = toks[span.start - 1].low
            if prep == "by" and span.kind == "person" and cl.passive:
                rest = _rest(cl, cl.vg_end, cl.clause_end, (span.start - 1, span.end))
                q = cl.ask("By whom", rest)
            elif prep in _WHERE_PREPS and span.kind == "name" and span.start - 1 >= cl.vg_end:
                rest = _rest(cl, cl.vg_end, cl.clause_end, (span.start - 1, span.end))
                q = cl.ask("Where", rest)
            else:
                continue
        else:
            continue
        out.append(Candidate(q, answer, "name", focus, cl.sentence.index))
    return out


def _which(cl: Clause) -> list[Candidate]:
    """"Scout bees search ..." -> "Which bees search ...?" (answer: the modifiers)."""
    if cl.negated or cl.resolved or cl.intro is not None:
        return []
    words = cl.tokens[cl.subj[0]:cl.subj[1]]
    if not all(t.is_word for t in words):
        return []
    lows = [t.low for t in words]
    if lows[0] in {"the", "a", "an"}:
        lows, words = lows[1:], words[1:]
    if not 2 <= len(lows) <= 3 or any(w in STOPWORDS or is_number_word(w) for w in lows):
        return []
    if any(w in DETERMINERS for w in lows) or any((verb_form(w) or ("", ""))[1] in
                                                   {"3sg", "past"} for w in lows):
        return []
    head = words[-1].text.lower()
    if not cl.plural or head in _GENERIC_HEADS:
        return []
    rest = _rest(cl, cl.vg_end, cl.clause_end)
    if not content_words(rest):
        return []
    q = cl.ask_subject(f"Which {head}", rest)
    focus = " ".join(t.text for t in words[:-1])
    return [Candidate(q, _phrase(cl.text(*cl.subj)), "which", focus, cl.sentence.index)]


def _object(cl: Clause) -> list[Candidate]:
    """"Workers build comb" -> "What do workers build?"."""
    if cl.negated or cl.verb_i is None or cl.lemma in _LIGHT_VERBS or cl.passive:
        return []
    toks = cl.tokens
    i = cl.vg_end
    j = i
    while j < cl.clause_end:
        t = toks[j]
        low = t.low
        if low == "of" and j > i and j + 1 < cl.clause_end and toks[j + 1].is_word and \
                toks[j + 1].low not in PREPOSITIONS:
            j += 1  # "dozens of these circuits"
            continue
        if not t.is_word or low in PREPOSITIONS or low in {"that", "which", "who", "and",
                                                           "or", "but", "to", "when", "while",
                                                           "less", "more", "than", "again"}:
            break
        if is_adverb(low) and j > i:
            break
        if j > i and (verb_form(low) or ("", ""))[1] in {"ing"} and toks[j - 1].low != "of":
            break
        j += 1
    if j == i or j - i > 6:
        return []
    obj_words = [t.low for t in toks[i:j]]
    if any(w in {"the", "a", "an"} and obj_words[k - 1] not in DETERMINERS | {"of"}
           for k, w in enumerate(obj_words) if k > 0):
        return []  # two noun phrases ("tells other workers the direction"): no clean object
    if obj_words[0] in COMPARATIVES or (obj_words[0] in ADJECTIVES and (
            len(obj_words) == 1 or obj_words[1] in {"of", "to", "than", "enough", "for"})):
        return []
    if len(obj_words) == 1 and (obj_words[0] in _ADJECTIVE_HINTS or re.search(
            r"(ful|ous|ive|able|ible|al|ic|ent|ant|less|ish)$", obj_words[0])):
        return []
    if obj_words[0] in {"it", "them", "this", "these", "those", "him", "her", "one", "what",
                        "how", "why", "where", "when", "who", "whether"} or \
            not any(w not in STOPWORDS for w in obj_words) or is_adverb(obj_words[0]):
        return []
    rest = ""
    infinitive = j + 1 < cl.end and toks[j].low == "to" and (
        verb_form(toks[j + 1].low) or ("", ""))[1] == "base"
    if j < cl.clause_end and toks[j].low in PREPOSITIONS and toks[j].low != "of" \
            and not infinitive:
        rest = _rest(cl, j, cl.clause_end).split(",")[0]
        if word_count(rest) > 8:
            rest = ""
    q = cl.ask("What", rest)
    return [Candidate(q, _phrase(cl.text(i, j)), "object", cl.text(i, j), cl.sentence.index)]


_TEMPLATES = (_definition, _quantity, _time, _cause, _purpose, _name, _which, _object)


# --- filtering and ranking --------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _valid(c: Candidate) -> bool:
    q = c.question
    if not q or not q.endswith("?") or not q[0].isupper():
        return False
    words = [t.low for t in tokenize(q) if t.is_word]
    if not (3 if c.kind == "definition" else 4) <= len(words) <= 25:
        return False
    if any(w in _UNRESOLVED for w in words):
        return False
    if q.count("(") != q.count(")") or q.count('"') % 2 or ":" in q or ";" in q:
        return False
    if len([w for w in words if w not in STOPWORDS]) < 1:
        return False
    focus = _norm(c.focus)
    if focus and content_words(c.focus) and f" {focus} " in f" {_norm(q)} ":
        return False
    return _norm(c.answer) != _norm(q)


def _score(c: Candidate, sentence: Sentence) -> float:
    score = WEIGHTS[c.kind]
    score += 0.08 * min(10, len(content_words(c.answer)))
    score -= 0.04 * max(0, word_count(c.question) - 14)
    n = word_count(sentence.text)
    score -= 0.3 if n > 30 else 0.0
    score -= 0.002 * sentence.index
    return score


def _usable(s: Sentence) -> bool:
    n = word_count(s.text)
    text = s.text.rstrip()
    return (not s.heading and 6 <= n <= 45 and not text.endswith(("?", ":"))
            and "|" not in text and text.count(",") <= 6 and text[0].isalnum()
            and not re.search(r"https?://|www\.|@\w", text))


def candidates(passage: str) -> list[Candidate]:
    """Every question the templates produce for ``passage``, scored, in no fixed order.

    Round-trip consistency (Alberti et al. 2019): a question is kept only when the
    extractive reader of the ``rationale`` task, given the whole passage, picks the very
    sentence the question was made from; otherwise the question is ambiguous in its
    passage ("What do bees fill?" when two sentences say so)."""
    sentences = split_sentences(passage)
    context = Context.of(sentences)
    reader = Reader(passage)
    out: list[Candidate] = []
    for s in sentences:
        clause = analyse(s, context) if not s.heading else None
        if clause is not None and _usable(s):
            for template in _TEMPLATES:
                for c in template(clause):
                    if not _valid(c):
                        continue
                    _, best = reader.select(c.question)
                    if best is None or best.index != s.index:
                        continue
                    c.score = _score(c, s)
                    out.append(c)
        remember(context, clause, s)
    return out


def qa_pairs(passage: str, n: int) -> list[dict[str, str]]:
    """Up to ``n`` question/answer pairs, best first (see the module docstring)."""
    if n <= 0:
        return []
    ranked = sorted(candidates(passage), key=lambda c: (-c.score, c.sentence, c.question))
    chosen: list[Candidate] = []
    seen_q: set[str] = set()
    used_sentences: set[int] = set()
    for second_pass in (False, True):
        for c in ranked:
            if len(chosen) >= n:
                break
            key = _norm(c.question)
            if key in seen_q or (not second_pass and c.sentence in used_sentences):
                continue
            if any(c is d for d in chosen):
                continue
            chosen.append(c)
            seen_q.add(key)
            used_sentences.add(c.sentence)
    return [{"question": c.question, "answer": c.answer} for c in chosen]


# --- backtranslation --------------------------------------------------------------------

_WH_HEADING = re.compile(r"(?i)^(how|why|what|when|where|which|who)\b")


def _lower_first(text: str, proper: set[str]) -> str:
    words = text.split()
    out = []
    for i, w in enumerate(words):
        low = w.lower()
        keep = (w.isupper() and len(w) > 1 and not (i == 0 and len(words) > 1 and all(
            x.isupper() for x in words))) or (i > 0 and low in proper)
        out.append(w if keep else low)
    return " ".join(out)


def _from_heading(heading: str, proper: set[str]) -> str:
    heading = heading.strip().rstrip(".")
    if heading.isupper():
        heading = heading.lower()
    if heading.endswith("?"):
        return heading
    head, _, tail = heading.partition(":")
    head, tail = head.strip(), tail.strip()
    if tail and _WH_HEADING.match(tail):
        if head.split()[0].lower() in PREPOSITIONS:
            return f"Explain {_lower_first(tail, proper)}."
        return f"Describe {_lower_first(head, proper)} and {_lower_first(tail, proper)}."
    if tail:
        head = f"{head}: {tail}"
    m = _WH_HEADING.match(head)
    if m:
        return f"Explain {_lower_first(head, proper)}."
    words = head.split()
    first = words[0].lower()
    form = verb_form(first)
    clause = analyse(Sentence(head + ".", 0, 0), Context())
    if clause is not None and clause.verb_i is not None and not clause.negated and \
            clause.vg_end < clause.end and not any(
                t.low in PREPOSITIONS for t in clause.tokens[clause.subj[0]:clause.subj[1]]):
        return f"Explain how {_lower_first(head, proper)}."
    if form and form[1] == "ing" and not any(w.lower().endswith("ing") for w in words[1:]):
        rest = _lower_first(" ".join(head.split()[1:]), proper)
        return f"Explain how to {form[0]} {rest}."
    return f"Describe {_lower_first(head, proper)}."


def _topic_phrases(text: str) -> list[tuple[float, str]]:
    """Noun-phrase-like runs of content words, scored by how often their words occur."""
    toks = tokenize(text)
    stems = Counter(stem(t.low) for t in toks if t.is_word and t.low not in STOPWORDS)
    phrases: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    run: list[str] = []

    def close(pos: int) -> None:
        while run and (verb_form(run[-1].lower()) or ("", ""))[1] in {"3sg", "past", "ing"}:
            run.pop()
        if run:
            phrase = " ".join(run[-3:])
            phrases[phrase] += 1
            first_seen.setdefault(phrase, pos)
        run.clear()

    for pos, t in enumerate(toks):
        low = t.low
        form = verb_form(low)
        if (t.is_word and low not in STOPWORDS and not is_adverb(low) and not is_number_word(low)
                and not (form and form[1] in {"past", "ing", "part"} and not run)
                and len(low) > 2):
            run.append(t.text)
        else:
            close(pos)
    close(len(toks))
    scored = []
    for phrase, count in phrases.items():
        words = phrase.lower().split()
        freq = sum(stems[stem(w)] for w in words) / len(words)
        scored.append((count * 2 + freq + 0.5 * (len(words) - 1) - 0.001 * first_seen[phrase],
                       phrase))
    return sorted(scored, key=lambda x: (-x[0], x[1]))


def backtranslate(response: str) -> str:
    """The instruction ``response`` answers, as one line."""
    sentences = split_sentences(response)
    if not sentences:
        return "Write a short explanatory text."
    context = Context.of(sentences)
    proper = context.proper
    if sentences[0].heading and len(sentences) > 1:
        return _from_heading(sentences[0].text, proper)
    body = [s for s in sentences if not s.heading]
    if not body:
        return _from_heading(sentences[0].text, proper)
    first = body[0]
    clause = analyse(first, context)
    if clause is not None and not clause.resolved:
        definition = _definition(clause)
        if definition:
            return definition[0].question
        causes = _cause(clause)
        if causes and causes[0].kind == "cause" and _valid(causes[0]):
            return causes[0].question
    if clause is not None and not clause.resolved and not clause.negated and \
            clause.verb_i is not None and not clause.passive and clause.lemma not in _LIGHT_VERBS:
        how = _explain_how(clause)
        if how:
            return how
    imperative = sum(1 for s in body if (verb_form(s.text.split()[0].lower()) or ("", ""))[1]
                     == "base" and s.text[0].isupper())
    numbered = len(re.findall(r"(?m)^\s*(?:\d{1,2}[.)]|[-*])\s+\S", response))
    topic = None
    if clause is not None and not clause.resolved:
        subj = [t for t in clause.tokens[clause.subj[0]:clause.subj[1]] if t.is_word]
        if 1 <= len(subj) <= 5 and any(t.low not in STOPWORDS for t in subj) and \
                subj[-1].low not in _GENERIC_HEADS:
            topic = clause.subject
    phrases = _topic_phrases(response)
    if topic is None and phrases:
        topic = phrases[0][1]
        topic = _lower_first(topic, proper)
        if not topic.endswith("s") and topic.split()[0] not in DETERMINERS:
            topic = f"the {topic}"
    if topic is None:
        return "Write a short explanatory text."
    if imperative >= 2 or numbered >= 3:
        return f"Explain step by step what to do with {topic}."
    return f"Describe {topic}."


def _explain_how(clause: Clause) -> str | None:
    """"Colonies survive winter by forming a cluster." -> "Explain how colonies survive
    winter." (when the sentence says *how*: by, through, using, because, so that)."""
    toks = clause.tokens
    for k in range(clause.vg_end, clause.clause_end):
        if toks[k].low in {"by", "through", "using", "because", "so", "via", "thanks"}:
            rest = clause.text(clause.vg_end, k).strip(" ,")
            if word_count(rest) > 8:
                return None
            words = [clause.subject, clause.verb_group_text(), rest]
            return "Explain how " + join_words(words) + "."
    return None
