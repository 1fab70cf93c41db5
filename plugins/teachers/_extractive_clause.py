"""Shallow clause analysis for the ``extractive`` teacher.

A declarative sentence is read as ``[intro ,] subject verb-group rest``:

* the *intro* is a fronted adverbial ("In early spring, ...", "When the air cools, ...");
  of the commas among the first words, the first one after which a clause parses is used;
* the *subject* is the run of words before the first verb form that agrees with it (a
  known auxiliary, or a verb of the lexicon in base, -s or past form that does not follow
  a determiner, is not a participle followed by "by", and is not the plural noun of a
  "noun-s verb" pair such as "dances tell");
* the *verb group* is the auxiliary chain (with adverbs) or the main verb (with a
  particle such as "up" or "out");
* the *rest* runs to the end of the main clause: a ";" or ":", a comma that opens a new
  clause (", and", ", which", ", when", ", because", a comma before a determiner or a
  pronoun), or "and"/"but" followed by a new subject or verb.

``Clause.ask`` turns the clause into a question with subject-auxiliary inversion, or
do-support ("Workers build comb" -> "What do workers build?") for a simple verb. The span
finders (quantities, time expressions, causes, names) return token ranges that the
question templates remove and ask about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._extractive_text import (
    ADJECTIVES,
    AUXILIARIES,
    DETERMINERS,
    NOUN_MODIFIERS,
    PREPOSITIONS,
    STOPWORDS,
    SUBORDINATORS,
    WH_WORDS,
    Sentence,
    Token,
    is_adverb,
    is_number_word,
    join_words,
    tokenize,
    verb_form,
)

__all__ = [
    "Clause",
    "Context",
    "Span",
    "analyse",
    "cause_spans",
    "name_spans",
    "quantity_spans",
    "time_spans",
]

_NEGATIONS = frozenset({"not", "n't", "never", "no"})
_PARTICLES = frozenset({"up", "down", "out", "off", "away", "back"})
_QUANTIFIERS = frozenset({"most", "many", "some", "several", "all", "both", "few", "each",
                          "every", "no", "any", "more", "less", "much", "other", "another"})
_INTRO_STARTERS = frozenset({
    *PREPOSITIONS, "when", "once", "after", "before", "while", "whilst", "if", "unless",
    "because", "although", "though", "as", "since", "until", "however", "instead",
    "meanwhile", "therefore", "thus", "then", "today", "now", "eventually", "finally",
    "later", "first", "second", "next", "also", "again", "unlike", "like", "despite",
    "besides", "moreover", "furthermore", "indeed", "still", "yet", "so", "even", "here",
    "in", "inside", "outside", "every", "each", "at",
})
_PLURAL_IRREGULAR = frozenset({"larvae", "pupae", "people", "children", "men", "women",
                               "mice", "feet", "teeth", "geese", "data", "criteria", "bacteria",
                               "fungi", "nuclei", "stimuli", "species"})
_SUBJECT_PRONOUNS = {"it": False, "they": True, "he": False, "she": False}
_CLAUSE_OPENERS = frozenset({
    "and", "but", "or", "so", "yet", "which", "who", "whom", "whose", "where", "when", "while",
    "whilst", "whereas", "although", "though", "because", "since", "as", "if", "unless",
    "until", "before", "after", "once", "with", "without", "leaving", "making", "giving",
    "allowing", "causing", "forming", "using", "meaning", "including", "such", "then",
    "thus", "often", "usually", "this", "that", "these", "those", "it", "they", "he",
    "even", "especially", "particularly", "mainly", "except", "apart", "rather", "not",
    "she", "we", "i", "you", "there",
})


@dataclass(frozen=True)
class Span:
    """Tokens ``start:end`` of a clause's sentence, and what they are."""

    start: int
    end: int
    kind: str = ""
    #: kind-specific detail (the unit of a quantity, the head noun ...)
    info: str = ""


@dataclass
class Context:
    """What earlier sentences of the passage tell a later one: subjects for resolving a
    leading pronoun, and the words seen capitalised in mid-sentence (proper names)."""

    proper: set[str] = field(default_factory=set)
    #: (sentence index, subject text, plural?) of the sentences read so far
    subjects: list[tuple[int, str, bool]] = field(default_factory=list)

    @classmethod
    def of(cls, sentences: list[Sentence]) -> Context:
        proper: set[str] = set()
        for s in sentences:
            if s.heading:
                continue
            toks = [t for t in tokenize(s.text) if t.is_word]
            for prev, tok in zip(toks, toks[1:], strict=False):
                if tok.capitalised and not prev.text.endswith(":") and tok.low not in STOPWORDS:
                    proper.add(tok.low)
        return cls(proper=proper)

    def antecedent(self, index: int, plural: bool) -> str | None:
        for i, text, pl in reversed(self.subjects):
            if index - i > 3:
                break
            if pl == plural:
                return text
        return None


@dataclass
class Clause:
    sentence: Sentence
    tokens: list[Token]
    #: token range of a fronted adverbial (without its comma), or None
    intro: tuple[int, int] | None
    subj: tuple[int, int]
    #: the subject as it reads inside a question (pronoun resolved, first word's case fixed)
    subject: str
    resolved: bool
    plural: bool
    aux: str | None
    aux_i: int | None
    #: index of the main verb; None for a copula ("is") without a verb after it
    verb_i: int | None
    lemma: str | None
    tense: str
    particle: str
    #: index of the first token after the verb group
    vg_end: int
    #: index where the main clause ends (exclusive)
    clause_end: int
    #: index where the sentence's words end (final punctuation excluded)
    end: int
    negated: bool

    # --- pieces of text ----------------------------------------------------------------

    def text(self, start: int, end: int) -> str:
        """The sentence's own text for tokens ``start:end`` ("" when empty)."""
        if end <= start:
            return ""
        return self.sentence.text[self.tokens[start].start:self.tokens[end - 1].end]

    def text_without(self, start: int, end: int, cut: tuple[int, int] | None) -> str:
        if cut is None:
            return self.text(start, end)
        return join_words([self.text(start, min(end, cut[0])), self.text(max(start, cut[1]), end)])

    @property
    def passive(self) -> bool:
        return (self.aux_i is not None and self.verb_i is not None
                and any(self.tokens[i].low in {"is", "are", "was", "were", "be", "been", "being"}
                        for i in range(self.aux_i, self.verb_i))
                and (verb_form(self.tokens[self.verb_i].low) or ("", ""))[1] in {"past", "part"})

    def verb_group_text(self) -> str:
        """The verb group as written (for questions that keep the subject's place)."""
        first = self.aux_i if self.aux_i is not None else self.verb_i
        assert first is not None
        return self.text(first, self.vg_end)

    def ask(self, wh: str, rest: str) -> str:
        """``wh`` + inverted clause + ``rest`` + "?" (subject-auxiliary inversion, or
        do-support for a simple present or past verb)."""
        if self.aux is not None:
            assert self.aux_i is not None
            middle = [t.text for t in self.tokens[self.aux_i + 1:self.vg_end]
                      if t.low not in _NEGATIONS]
            words = [wh, self.aux, self.subject, " ".join(middle), rest]
        else:
            assert self.verb_i is not None and self.lemma is not None
            do = "did" if self.tense == "past" else ("do" if self.plural else "does")
            if self.subject.lower() in {"i", "you", "we", "they"}:
                do = "did" if self.tense == "past" else "do"
            adverbs = self.text(self.subj[1], self.verb_i)
            words = [wh, do, self.subject, adverbs, self.lemma, self.particle, rest]
        return finish_question(join_words(words))

    def ask_subject(self, wh: str, rest: str) -> str:
        """``wh`` in the subject's place: "Who decoded the dance?" (no inversion)."""
        return finish_question(join_words([wh, self.verb_group_text(), rest]))

    def answer(self, until: int | None = None, *, from_intro: bool = True) -> str:
        """The clause (or the sentence up to token ``until``) as a short declarative answer,
        with a resolved pronoun subject replaced."""
        end = max(self.clause_end, until or 0)
        start_tok = 0 if (from_intro or self.intro is None) else self.subj[0]
        head = self.sentence.text[self.tokens[start_tok].start:self.tokens[self.subj[0]].start]
        subject = self.subject if self.resolved else self.text(*self.subj)
        body = self.sentence.text[self.tokens[self.subj[1] - 1].end:self.tokens[end - 1].end]
        text = (head + subject + body).strip().rstrip(",;:-\u2013\u2014 ")
        text = text[0].upper() + text[1:]
        if end >= self.end:
            tail = self.sentence.text[self.tokens[end - 1].end:].strip()
            if tail and tail[0] in ".!?":
                return text + tail
        return text + "."


def finish_question(text: str) -> str:
    text = text.strip().rstrip(" ,;:.?!")
    if not text:
        return ""
    return text[0].upper() + text[1:] + "?"


# --- helpers ----------------------------------------------------------------------------


def _is_plural_word(low: str) -> bool:
    if low in _PLURAL_IRREGULAR:
        return True
    return len(low) > 3 and low.endswith("s") and not re.search(r"(ss|us|is|ics)$", low)


def _head_index(tokens: list[Token], start: int, end: int) -> int:
    """The head noun of the noun phrase ``start:end``: the last word before a preposition,
    a relative pronoun, a participle or a comma."""
    head = start
    for i in range(start, end):
        tok = tokens[i]
        low = tok.low
        participle = (low.endswith("ing") and len(low) > 5) or (
            (verb_form(low) or ("", ""))[1] in {"past", "part"})
        after_det = tokens[i - 1].low in DETERMINERS or is_adverb(tokens[i - 1].low)
        if i > start and (low in PREPOSITIONS or low in {"that", "which", "who", ","}
                          or (participle and not after_det)):
            break
        if tok.is_word:
            head = i
    return head


def _noun_phrase_plural(tokens: list[Token], start: int, end: int) -> bool:
    words = [t.low for t in tokens[start:end] if t.is_word]
    if words and words[0] in _SUBJECT_PRONOUNS:
        return _SUBJECT_PRONOUNS[words[0]]
    if words and (verb_form(words[0]) or ("", ""))[1] == "ing":
        return False  # a gerund: "Adding boxes ... reduces congestion"
    if "and" in words[:_head_index(tokens, start, end) - start + 1]:
        return True
    head = tokens[_head_index(tokens, start, end)].low
    if words and (words[0] in {"both", "many", "several", "few", "these", "those"}
                  or (is_number_word(words[0]) and words[0] not in {"one", "1"})):
        return True
    return _is_plural_word(head)


def _candidate_verb(tokens: list[Token], i: int, subj_start: int, end: int) -> str | None:
    """'aux' or 'verb' when token ``i`` can start the verb group of a subject that begins
    at ``subj_start``; None otherwise."""
    tok = tokens[i]
    low = tok.low
    k = i - 1
    while k > subj_start and is_adverb(tokens[k].low):
        k -= 1
    prev = tokens[k].low if i > 0 else ""
    if not tok.is_word or (tok.capitalised and i > subj_start):
        return None
    prev_is_prep = prev in PREPOSITIONS and not (k > 0 and tokens[k - 1].low in DETERMINERS)
    if (prev in DETERMINERS or prev_is_prep or prev in {"'s", "of"}) and (
            low not in AUXILIARIES or prev in {"the", "a", "an"}):
        return None
    if low in AUXILIARIES:
        return "aux"
    form = verb_form(low)
    if form is None or form[1] in {"ing", "part"}:
        return None
    lemma, kind = form
    nxt = tokens[i + 1].low if i + 1 < end else ""
    plural = _noun_phrase_plural(tokens, subj_start, k + 1)
    if kind == "3sg":
        if plural:
            return None
        nxt_form = verb_form(nxt)
        if nxt_form and nxt_form[1] == "base" and nxt not in AUXILIARIES \
                and nxt not in ADJECTIVES:
            return None
        if nxt in AUXILIARIES and not (i + 1 < end and tokens[i + 1].capitalised):
            return None  # "mouse guards are used ...": the -s word is a plural noun  # "the bee dances tell ..." : the -s word is a plural noun
    elif kind == "base":
        if not plural:
            return None
    elif kind == "past":
        if nxt == "by":
            return None  # "colonies headed by old queens swarm ..."
        if nxt in PREPOSITIONS:
            for j in range(i + 1, end):
                if tokens[j].low in {",", ";", ":"}:
                    break
                if _candidate_verb_simple(tokens, j, subj_start):
                    return None  # a reduced relative: "bees reared in August live ..."
    return "verb"


def _candidate_verb_simple(tokens: list[Token], j: int, subj_start: int) -> bool:
    low = tokens[j].low
    if low in AUXILIARIES and not tokens[j].capitalised:
        return True
    form = verb_form(low)
    prev = tokens[j - 1].low
    return bool(form and form[1] in {"base", "3sg"} and prev not in DETERMINERS
                and prev not in PREPOSITIONS and _noun_phrase_plural(tokens, subj_start, j)
                == (form[1] == "base"))


def _skip_relative(tokens: list[Token], i: int, end: int) -> int:
    """Index after the verb group of the relative clause that starts at ``i`` ("that are
    reared", "that runs out"); -1 when none follows."""
    k = i + 1
    while k < min(end, i + 10):
        low = tokens[k].low
        if low in {",", ";", ":"}:
            return -1
        form = verb_form(low)
        if (low in AUXILIARIES and not tokens[k].capitalised) or (
                form and form[1] in {"base", "3sg", "past"}
                and tokens[k - 1].low not in DETERMINERS):
            break
        k += 1
    else:
        return -1
    k += 1
    while k < end and (tokens[k].low in _NEGATIONS or is_adverb(tokens[k].low)
                       or tokens[k].low in {"be", "been", "being"}
                       or (verb_form(tokens[k].low) or ("", ""))[1] in {"past", "part", "ing"}
                       or tokens[k].low in _PARTICLES):
        k += 1
    return k


def _proper_case(text: str, context: Context, tokens: list[Token], start: int) -> str:
    """Lower-case the subject's first word unless it is a name or an acronym."""
    first = tokens[start]
    nxt = tokens[start + 1] if start + 1 < len(tokens) else None
    keep = first.low not in DETERMINERS and (first.low == "i" or (first.text.isupper() and len(first.text) > 1)
            or first.low in context.proper or (nxt is not None and nxt.capitalised
                                               and nxt.low in context.proper))
    if keep or not text:
        return text
    return text[0].lower() + text[1:]


def _dequantify(text: str) -> str:
    """"Thousands of bees" -> "bees": the antecedent a later "they" refers to."""
    m = re.match(r"(?i)(?:(?:about|around|some|over|nearly|almost)\s+)?(?:thousands|hundreds|"
                 r"millions|dozens|many|most|some|several|all|both|each|[\d,]+|[a-z]+-?[a-z]*)"
                 r"\s+of\s+(?:the\s+)?(.+)$", text)
    if m and (is_number_word(text.split()[0].lower()) or text.split()[0].lower() in
              {"thousands", "hundreds", "millions", "dozens", "many", "most", "some",
               "several", "all", "both", "each", "about", "around", "over", "nearly",
               "almost"}):
        return m.group(1)
    m = re.match(r"(?i)(?:most|many|some|several|all|both)\s+(.+)$", text)
    return m.group(1) if m else text


# --- analysis ---------------------------------------------------------------------------


def analyse(sentence: Sentence, context: Context) -> Clause | None:
    """Read ``sentence`` as a declarative clause; None when it does not parse (imperative,
    existential "there is", question, subject not found, unresolved pronoun ...)."""
    tokens = tokenize(sentence.text)
    end = len(tokens)
    while end and not tokens[end - 1].is_word and tokens[end - 1].text in ".!?\"'\u201d\u2019)":
        end -= 1
    if end < 3 or sentence.text.rstrip().endswith("?"):
        return None
    starts = [0]
    if tokens[0].low in _INTRO_STARTERS or is_adverb(tokens[0].low):
        starts = [i + 1 for i in range(min(end, 30)) if tokens[i].text == ","]
        starts += [i for i in range(1, min(end, 10))
                   if (tokens[i].low in _SUBJECT_PRONOUNS or (
                       tokens[i].low in {"the", "a", "an"}
                       and tokens[i - 1].low not in PREPOSITIONS | DETERMINERS))
                   and tokens[i - 1].low != "to" and tokens[i - 1].text != ","
                   and tokens[i - 1].is_word]
    for start in starts:
        clause = _analyse_from(sentence, tokens, start, end, context)
        if clause is not None:
            return clause
    return None


def _analyse_from(sentence: Sentence, tokens: list[Token], start: int, end: int,
                  context: Context) -> Clause | None:
    if start >= end - 1:
        return None
    first = tokens[start].low
    if first in {"there", "here"}:
        return None
    if (verb_form(first) or ("", ""))[1] == "base" and (
            first not in NOUN_MODIFIERS or tokens[start + 1].low in DETERMINERS
            or tokens[start + 1].low in _SUBJECT_PRONOUNS
            or tokens[start + 1].low in {"them", "every", "each"}
            or is_number_word(tokens[start + 1].low)):
        return None  # an imperative: "Move the hive ...", "Fit mouse guards ..."
    if first in AUXILIARIES or first in {"this", "these", "those", "that", "such", "we",
                                         "you", "i", "one", "each"} or first in WH_WORDS \
            or first in SUBORDINATORS or first in {"and", "but", "or", "so", "yet", "nor"}:
        return None
    verb_at, kind = None, None
    i = start + 1
    while i < min(end, start + 20):
        low = tokens[i].low
        if low in {",", ";", ":", "(", ")", "\u2014", "\u2013", "-"}:
            return None
        if low in {"that", "which", "who"}:
            i = _skip_relative(tokens, i, end)
            if i < 0:
                return None
            continue
        if is_adverb(low) and i + 1 < end:
            i += 1
            continue
        kind = _candidate_verb(tokens, i, start, end)
        if kind:
            verb_at = i
            break
        i += 1
    if verb_at is None or kind is None:
        return None
    # adverbs directly before the verb belong to the verb group, not the subject
    subj_end = verb_at
    while subj_end - 1 > start and is_adverb(tokens[subj_end - 1].low):
        subj_end -= 1
    if not any(t.is_word and t.low not in STOPWORDS for t in tokens[start:subj_end]) \
            and tokens[start].low not in _SUBJECT_PRONOUNS:
        return None
    for k in range(start + 1, subj_end):
        low, prev = tokens[k].low, tokens[k - 1].low
        if low in {"when", "before", "after", "because", "if", "while", "although", "since",
                   "until", "unless", "whereas"}:
            return None
        if low in _SUBJECT_PRONOUNS:
            return None
        if low in {"the", "a", "an"} and prev not in PREPOSITIONS and prev not in {
                "and", "or", "than", "'s"} and not prev.endswith("'s"):
            return None

    aux = aux_i = verb_i = lemma = None
    tense, particle, negated = "present", "", False
    j = verb_at
    if kind == "aux":
        aux, aux_i = tokens[verb_at].low, verb_at
        aux_lemma, aux_tense, _ = AUXILIARIES[aux]
        tense = aux_tense
        j = verb_at + 1
        while j < end and (tokens[j].low in _NEGATIONS or is_adverb(tokens[j].low)):
            negated = negated or tokens[j].low in _NEGATIONS
            j += 1
        while j < end and tokens[j].low in {"be", "been", "being", "have", "had"}:
            j += 1
            while j < end and is_adverb(tokens[j].low):
                j += 1
        form = verb_form(tokens[j].low) if j < end else None
        if form and form[1] in {"past", "part", "ing", "base"} and not (
                form[1] == "base" and aux_lemma in {"be", "have"}):
            verb_i, lemma = j, form[0]
            j += 1
        elif tokens[j - 1].low in {"be", "been", "being"} or aux_lemma == "be":
            pass  # copula: "is a resin", "can be useful"
        elif aux_lemma in {"have", "do"} and j == verb_at + 1:
            # main-verb "has"/"have"/"had"/"does": do-support
            verb_i, lemma, aux, aux_i = verb_at, aux_lemma, None, None
            if aux_lemma == "do":
                return None
        else:
            return None
        if aux_i is not None and verb_i is None:
            # copula: the adverbs after it stay in the verb group
            j = aux_i + 1
            while j < end and (tokens[j].low in _NEGATIONS or is_adverb(tokens[j].low)
                               or tokens[j].low in {"be", "been", "being"}):
                j += 1
    else:
        verb_i = verb_at
        lemma, vkind = verb_form(tokens[verb_at].low) or (tokens[verb_at].low, "base")
        tense = "past" if vkind == "past" else "present"
        j = verb_at + 1
    if j < end and tokens[j].low in _PARTICLES and verb_i is not None and not (
            tokens[j].low == "up" and j + 1 < end and tokens[j + 1].low == "to") and (
            j + 1 >= end or tokens[j + 1].low in PREPOSITIONS | DETERMINERS | {",", "and"}
            or not tokens[j + 1].is_word):
        particle = tokens[j].text if aux is None else ""
        j += 1
    vg_end = j

    clause_end = _clause_end(tokens, vg_end, end)
    plural = _noun_phrase_plural(tokens, start, subj_end)
    subj_text = sentence.text[tokens[start].start:tokens[subj_end - 1].end]
    resolved = False
    if tokens[start].low == "it" and subj_end - start == 1 and (
            verb_i is None or lemma in {"seem", "appear", "take"}) and any(
            tokens[k].low in {"to", "that"} for k in range(vg_end, min(end, vg_end + 4))):
        return None  # an expletive: "It is often better to unite ..."
    if subj_end - start == 1 and tokens[start].low in _SUBJECT_PRONOUNS:
        antecedent = context.antecedent(sentence.index, plural)
        if antecedent is None:
            return None
        subj_text, resolved = antecedent, True
        subject = antecedent
    else:
        subject = _proper_case(subj_text, context, tokens, start)
    clause = Clause(
        sentence=sentence, tokens=tokens,
        intro=(0, start - 1) if start > 0 and tokens[start - 1].text == "," else
        ((0, start) if start > 0 else None),
        subj=(start, subj_end), subject=subject, resolved=resolved, plural=plural,
        aux=aux, aux_i=aux_i, verb_i=verb_i, lemma=lemma, tense=tense, particle=particle,
        vg_end=vg_end, clause_end=clause_end, end=end, negated=negated)
    return clause


def remember(context: Context, clause: Clause | None, sentence: Sentence) -> None:
    """Record the sentence's subject for resolving a later pronoun."""
    if clause is None:
        return
    text = clause.subject
    words = text.split()
    if len(words) > 6 or any(w.lower() in {"that", "which", "who"} for w in words):
        head = clause.tokens[_head_index(clause.tokens, *clause.subj)].text
        text = head if clause.resolved is False else text
        if clause.resolved is False:
            det = clause.tokens[clause.subj[0]].low
            text = f"the {head}" if det in {"the", "a", "an"} else head
    context.subjects.append((sentence.index, _dequantify(text), clause.plural))


def _verb_ahead(tokens: list[Token], start: int, end: int) -> bool:
    """A finite verb follows within a few words (before a comma): a new clause."""
    for k in range(start, min(end, start + 6)):
        low = tokens[k].low
        if low in {",", ";", ":"}:
            return False
        form = verb_form(low)
        if (low in AUXILIARIES and not tokens[k].capitalised) or (
                form and form[1] in {"3sg", "past", "base"} and tokens[k - 1].low not in
                DETERMINERS and tokens[k - 1].low not in PREPOSITIONS):
            return True
    return False


def _clause_end(tokens: list[Token], start: int, end: int) -> int:
    depth = 0
    for i in range(start, end):
        low = tokens[i].low
        if low == "(":
            depth += 1
        elif low == ")":
            depth = max(0, depth - 1)
        if depth:
            continue
        if low in {";", ":", "\u2014", "\u2013"} or (low == "-" and i > start):
            return i
        if low == "," and i + 1 < end:
            nxt = tokens[i + 1].low
            if nxt in _CLAUSE_OPENERS or nxt in DETERMINERS or (
                    nxt.endswith("ing") and len(nxt) > 5):
                return i
        if low in {"and", "but", "or"} and i + 1 < end and i >= start:
            nxt = tokens[i + 1]
            form = verb_form(nxt.low)
            if nxt.low in {"it", "they", "he", "she", "there", "then"} \
                    or nxt.low in AUXILIARIES or (form and form[1] in {"base", "3sg", "past"}
                                                   and nxt.low not in PREPOSITIONS):
                return i
            if nxt.low in {"the", "a", "an", "many", "most", "some", "its", "their", "this",
                           "these"} and _verb_ahead(tokens, i + 2, end):
                return i
        if low in {"which", "whom", "whereas", "while", "although", "though"} and i > start:
            return i - 1 if tokens[i - 1].low in PREPOSITIONS and i - 1 > start else i
    return end


# --- span finders -----------------------------------------------------------------------

_MODIFIERS = ("up to", "more than", "less than", "fewer than", "at least", "at most",
              "as many as", "as much as", "as few as", "about", "around", "roughly",
              "approximately", "nearly", "almost", "over", "under", "some", "only", "just",
              "between", "well over", "no more than", "close to", "perhaps", "up to about")
TIME_UNITS = frozenset({
    "second", "seconds", "minute", "minutes", "hour", "hours", "day", "days", "week",
    "weeks", "month", "months", "year", "years", "decade", "decades", "season", "seasons",
    "generation", "generations", "night", "nights", "fortnight", "fortnights",
})


def quantity_spans(tokens: list[Token], start: int = 0, end: int | None = None) -> list[Span]:
    """Numbers with what they count: "up to 2,000 eggs", "about six weeks", "thousands of
    bees", "three or four combs". ``info`` is the unit phrase ("eggs", "weeks")."""
    end = len(tokens) if end is None else end
    out: list[Span] = []
    i = start
    while i < end:
        low = tokens[i].low
        if not (tokens[i].is_word and is_number_word(low)) or low in {"one", "1"} and (
                i + 1 < end and tokens[i + 1].low == "of"):
            i += 1
            continue
        if low in {"one", "tens"} and not (i + 1 < end and tokens[i + 1].low in TIME_UNITS):
            i += 1
            continue
        s = i
        if s > start and tokens[s - 1].low in {"a", "one"} and low in {
                "hundred", "thousand", "million", "billion", "dozen"}:
            s -= 1  # "a hundred flowers"
        # modifiers before the number
        for mod in sorted(_MODIFIERS, key=lambda m: -len(m.split())):
            words = mod.split()
            k = s - len(words)
            if k >= start and [t.low for t in tokens[k:s]] == words:
                s = k
                break
        j = i + 1
        # ranges: "three or four", "seven to nine", "between 10 and 20"
        if j + 1 < end and tokens[j].low in {"or", "to", "and", "-", "\u2013"} \
                and is_number_word(tokens[j + 1].low):
            j += 2
        if j < end and tokens[j].low in {"percent", "per", "%"}:
            out.append(Span(s, j + 1, "quantity", "percent"))
            i = j + 1
            continue
        unit_start = j
        if j < end and tokens[j].low == "of" and low in {"thousands", "hundreds", "millions",
                                                         "dozens", "tens"}:
            j += 1
            unit_start = j
            if j < end and tokens[j].low == "the":
                j += 1
        unit_end = j
        while unit_end < end and unit_end - unit_start < 3:
            t = tokens[unit_end]
            if not t.is_word or t.low in STOPWORDS or is_number_word(t.low):
                break
            form = verb_form(t.low)
            if form and unit_end > unit_start:
                break
            unit_end += 1
        if unit_end == unit_start:
            i = j
            continue
        unit = " ".join(t.low for t in tokens[unit_start:unit_end])
        # a measure unit with what it measures: "50 kilograms of honey"
        if unit_end + 1 < end and tokens[unit_end].low == "of" and tokens[unit_end + 1].is_word \
                and tokens[unit_end + 1].low not in STOPWORDS:
            unit_end += 2
            unit = " ".join(t.text for t in tokens[unit_start:unit_end])
        out.append(Span(s, unit_end, "quantity", unit))
        i = unit_end
    return out


_SEASON = r"(?i:spring|summer|autumn|fall|winter|midsummer|midwinter)"
_MONTH = (r"(?:January|February|March|April|May|June|July|August|September|October|"
          r"November|December)")
_PART = r"(?:(?i:the\s+)?(?i:early|late|mid-?|middle\s+of)\s*)"
_WHEN_WORD = rf"(?:{_PART}?(?:{_SEASON}|{_MONTH}))"
_TIME_PATTERNS = [
    re.compile(rf"\b(?i:in|during|by|until|till|from|since|before|after|throughout|through|"
               rf"over|into|each|every|this|next|last|early\s+in|late\s+in)\s+(?i:the\s+)?"
               rf"{_WHEN_WORD}(?:(?:\s*,\s*|\s+(?:and|or|to|through|until)\s+)(?:the\s+)?"
               rf"{_WHEN_WORD})*\b"),
    re.compile(r"\b(?i:in|by|since|until|before|after|from|around|about|circa)\s+(?:the\s+)?"
               r"(?:year\s+)?(?:1[0-9]{3}|20[0-9]{2})s?\b"),
    re.compile(r"\bin\s+the\s+(?:\w+\s+)?(?:\w+(?:st|nd|rd|th))\s+century\b"),
    re.compile(r"\b(?i:at|by|during|before|after|until)\s+(?:night|dawn|dusk|midday|noon|"
               r"midnight|sunrise|sunset)\b"),
    re.compile(r"\b(?i:through|during|over|in|for)\s+the\s+(?:(?:cold|warm|winter|summer|"
               r"dark|first|last|following|next)\s+)(?:months|weeks|days|years|season)\b"),
    re.compile(r"\b(?i:in|during)\s+the\s+(?:early\s+|late\s+)?(?:morning|afternoon|evening|"
               r"night|day(?:time)?)\b"),
    re.compile(r"\b(?i:on)\s+(?:a\s+|the\s+)?(?:first\s+)?(?:warm|cold|calm|sunny|bright|"
               r"Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b[^.;]{0,30}?"
               r"\b(?:days?|mornings?|afternoons?|evenings?|Monday|Tuesday|Wednesday|"
               r"Thursday|Friday|Saturday|Sunday)\b"),
]
_TIME_INTRO = frozenset({"when", "once", "after", "before", "until", "during", "whenever",
                         "in", "by", "throughout", "each", "every", "at", "on"})


def time_spans(sentence: str, tokens: list[Token]) -> list[Span]:
    """Time expressions: "in early spring", "in 1851", "during the winter", "at night",
    "in August and September", "on a warm, bright day" (token ranges)."""
    out: list[Span] = []
    for pattern in _TIME_PATTERNS:
        for m in pattern.finditer(sentence):
            text = m.group()
            # months are capitalised; seasons in any case; prepositions lowercase
            if not re.search(_MONTH, text) and not re.search(_SEASON, text) \
                    and not re.search(r"\d|century|night|dawn|dusk|noon|midday|morning|"
                                      r"afternoon|evening|day|sunrise|sunset", text):
                continue
            s = next((i for i, t in enumerate(tokens) if t.start == m.start()), None)
            e = next((i + 1 for i, t in enumerate(tokens) if t.end == m.end()), None)
            if s is None or e is None:
                continue
            if any(sp.start <= s < sp.end or s <= sp.start < e for sp in out):
                continue
            out.append(Span(s, e, "time", text))
    return sorted(out, key=lambda sp: sp.start)


def is_time_intro(clause: Clause) -> bool:
    """The fronted adverbial is a time expression ("In late summer, ...", "When ...")."""
    if clause.intro is None:
        return False
    s, e = clause.intro
    first = clause.tokens[s].low
    if first in {"when", "once", "whenever", "after", "before", "until", "during",
                 "throughout"}:
        return True
    spans = time_spans(clause.sentence.text, clause.tokens)
    return any(sp.start == s and sp.end >= e - 1 for sp in spans) and first in _TIME_INTRO


_CAUSE_MARKERS = (("because", "of"), ("because",), ("due", "to"), ("owing", "to"),
                  ("as", "a", "result", "of"), ("thanks", "to"), ("so", "that"),
                  ("in", "order", "to"), ("so", "as", "to"))


def cause_spans(tokens: list[Token], start: int, end: int) -> list[Span]:
    """Reasons and purposes: "because ...", "due to ...", "so that ...", "in order to ..."
    from the marker to the end of its clause. ``kind`` is cause or purpose."""
    out: list[Span] = []
    i = start
    while i < end:
        for marker in _CAUSE_MARKERS:
            if [t.low for t in tokens[i:i + len(marker)]] == list(marker):
                stop = i + len(marker)
                while stop < end and tokens[stop].low not in {";", ":", "\u2014"}:
                    if i == 0 and tokens[stop].low == ",":
                        break  # a fronted "Because ..., S V" ends at its comma
                    if tokens[stop].low == "," and stop + 1 < end and \
                            tokens[stop + 1].low in {"and", "but", "which", "so", "while"}:
                        break
                    stop += 1
                kind = "purpose" if marker[0] in {"so", "in"} and marker != ("so",) else "cause"
                if marker == ("so", "that") or marker[:2] == ("in", "order"):
                    kind = "purpose"
                out.append(Span(i, stop, kind, " ".join(marker)))
                i = stop
                break
        else:
            i += 1
    return out


_NAME_PARTICLES = frozenset({"von", "van", "de", "der", "den", "da", "di", "du", "la", "le",
                             "of", "st", "st."})
_NOT_NAMES = frozenset({
    "i", "january", "february", "march", "april", "may", "june", "july", "august",
    "september", "october", "november", "december", "monday", "tuesday", "wednesday",
    "thursday", "friday", "saturday", "sunday", "celsius", "fahrenheit",
})
_ORG_PLACE = frozenset({
    "university", "institute", "society", "association", "college", "department", "river",
    "lake", "mount", "sea", "ocean", "island", "islands", "park", "street", "road", "prize",
    "award", "act", "company", "ltd", "inc", "museum", "centre", "center", "europe",
    "africa", "america", "asia", "australia", "kingdom", "states", "republic", "north",
    "south", "east", "west", "new", "county", "city", "valley", "agency", "service",
    "ministry", "council", "foundation", "journal", "press", "physiology", "medicine",
})
_PERSON_CUES = frozenset({"dr", "dr.", "prof", "prof.", "professor", "mr", "mrs", "ms", "sir",
                          "biologist", "scientist", "naturalist", "entomologist", "researcher",
                          "beekeeper", "reverend", "rev", "zoologist", "author", "writer"})


def name_spans(tokens: list[Token], start: int, end: int) -> list[Span]:
    """Capitalised names that do not merely start the sentence: "Karl von Frisch",
    "New Zealand". ``kind`` is person or name."""
    out: list[Span] = []
    i = max(start, 1)
    while i < end:
        tok = tokens[i]
        if not (tok.is_word and tok.capitalised) or tok.low in _NOT_NAMES or (
                tokens[i - 1].text in {".", "!", "?", ":", '"', "\u201c"}):
            i += 1
            continue
        j = i + 1
        while j < end:
            if tokens[j].is_word and tokens[j].capitalised and tokens[j].low not in _NOT_NAMES:
                j += 1
            elif tokens[j].low in _NAME_PARTICLES and j + 1 < end and \
                    tokens[j + 1].capitalised and tokens[j + 1].is_word:
                j += 2
            else:
                break
        words = [t.low for t in tokens[i:j]]
        caps = [w for w in words if w not in _NAME_PARTICLES]
        person = (len(caps) >= 2 and not any(w in _ORG_PLACE for w in words)) or (
            tokens[i - 1].low in _PERSON_CUES)
        if len(caps) >= 2 or tokens[i - 1].low in _PERSON_CUES:
            out.append(Span(i, j, "person" if person else "name"))
        i = j
    return out
