"""``sycophancy-detector``: drop records whose response defers to the user, not the source.

Sycophancy is a model's tendency to tailor its answer to the opinion the user states
rather than to the facts: Sharma et al. 2023, "Towards Understanding Sycophancy in
Language Models", show that assistants trained on human preferences agree with a user's
stated belief ("I think the answer is X, but I'm really not sure") and give up correct
answers when challenged; Wei et al. 2023, "Simple synthetic data reduces sycophancy in
large language models", show that fine-tuning on examples where the answer follows the
facts *whatever* opinion the prompt asserts reduces it. A training set made from an
organisation's documents should therefore hold no example that teaches the opposite: a
response that agrees with a claim from the prompt which the source does not support.

The heuristic, for each record (no model):

1. **Claims in the prompt.** The instruction is searched, sentence by sentence, for an
   asserted opinion or claim, and the claim X is extracted: "I think / believe / am sure /
   agree that X", "I've heard that X", "Isn't it true that X", "Everyone knows X", "It's
   well known that X", "My professor says X", "According to my teacher, X", "I'm an expert
   beekeeper, and X", "Surely X", "Don't you agree that X", "Am I right that X", and tag
   questions "X, right?" / "X, don't they?". No claim: the record is kept ("no opinion
   asserted in the prompt").
2. **Deference in the response.** The response defers to X when it restates X (at least
   ``restate_overlap`` (0.6) of X's content words, all its numbers, and the same negation
   of those words, in one sentence), or when it opens with an agreement marker ("You're
   right", "Yes, that's correct", "I agree", "Absolutely", "As you said", "Great point")
   and then neither corrects X ("not quite", "that's not right", "a common
   misconception", a leading "No"; "actually", "in fact", "however" count only when the
   response did not open by agreeing) nor contradicts it (a sentence about X's words with
   other numbers, or negated the other way). A response that corrects the user is kept.
3. **Support in the source.** X is checked against the record's source chunk: a number in
   X that the source does not state, a word of X that the best-matching source sentence
   negates and X does not (or the reverse), or under ``min_support`` (0.6) of X's content
   words in the source means the source does not support X. Deferring to a supported claim
   is fine (agreeing with a true statement is not sycophancy); deferring to an unsupported
   one drops the record: "the response agrees with the claim '<X>' asserted in the prompt,
   which the source does not support: <what is missing or contradicted>".

``score`` is 1.0 when the response defers to no claim, else the support of the claim it
defers to (0 on a number or negation mismatch, else the share of X's content words in the
source); ``threshold`` is ``min_support``. Without a source context a deferring response
cannot be checked: it is kept, and said so, unless ``drop_unverifiable`` is true.

**Teacher mode** (``use_teacher``, false by default). The teacher gets ``JUDGE_PROMPT``
(the source, the prompt and the response, and a 1-5 scale from "agrees with a claim of the
user that the source does not support" to "follows the source, correcting the user where
needed") with ``GenerationParams(task="judge", inputs={"instruction", "response",
"context"})``, and answers JSON ``{"score": 1-5, "reasoning": str}``, parsed with
``syllabus.contracts.ask`` / ``json_model`` (one retry showing the parse error). The
record is kept at a score >= ``min_teacher_score`` (3); the decision's score is the
teacher's score mapped to 0..1. By default (``teacher_scope: "claims"``) only records
whose prompt asserts a claim are sent, since sycophancy needs an asserted opinion (set
``"all"`` to send every record). Output that cannot be parsed even after the retry falls
back to the heuristic decision, with the error and the raw output in ``details``. The
offline ``extractive`` teacher answers the ``judge`` task by its groundedness rules, a
rough proxy: an answer that repeats an unsupported claim is poorly grounded.

Options: ``min_support`` (0.6), ``restate_overlap`` (0.6), ``drop_unverifiable`` (false),
``use_teacher`` (false), ``teacher_scope`` ("claims"), ``min_teacher_score`` (3),
``max_tokens`` (256). Unknown options raise ``ValueError``.

Limits: claims are found by surface patterns, so an opinion phrased otherwise ("Queens
lay 20,000 eggs a day. How many do drones lay?") or held against X ("I don't think X") is
not seen, and a question about one's own belief ("How do I know X?") is, by design, not a
claim; support is word overlap,
not entailment, so a paraphrase with other words reads as unsupported and a claim that
reuses the source's words in a wrong relation ("workers mate with the queen") reads as
supported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from syllabus.contracts import (
    TASK_JUDGE,
    ChatMessage,
    GenerationParams,
    QARecord,
    RecordDecision,
    Teacher,
    ask,
    hookimpl,
    json_model,
)

from ._text import content_keys, content_terms, negated_stems, numbers, split_sentences

__all__ = ["DEFAULTS", "JUDGE_PROMPT", "Claim", "SycophancyDetector", "find_claims",
           "register_filters"]

VERSION = "1"

DEFAULTS: dict[str, Any] = {
    "min_support": 0.6,
    "restate_overlap": 0.6,
    "drop_unverifiable": False,
    "use_teacher": False,
    "teacher_scope": "claims",
    "min_teacher_score": 3,
    "max_tokens": 256,
}

JUDGE_PROMPT = '''You are checking one training example for sycophancy: a response that goes along with an opinion or claim the user states, instead of following the facts of the source.

Source:
"""
{context}
"""

User: {instruction}

Response: {response}

Rate the response from 1 to 5:
1: it agrees with a claim of the user that the source contradicts or does not support.
2: it partly goes along with such a claim, or hedges instead of correcting it.
3: it neither agrees nor disagrees with the user's claim, or the user states no opinion and the response follows the source only loosely.
4: it follows the source; any claim of the user it agrees with is supported by the source.
5: it answers from the source and politely corrects any wrong claim of the user.

Answer with JSON only: {{"score": <1-5>, "reasoning": "<one or two sentences>"}}'''

_SEP = r"(?:\s+that)?\s+"
_KIN = (r"professor|teacher|mentor|doctor|boss|colleague|friend|father|mother|dad|mom|mum|"
        r"grandfather|grandmother|grandpa|grandma|instructor|lecturer|textbook|supervisor|"
        r"neighbou?r|uncle|aunt|coach|tutor|vet|manager|husband|wife|partner|brother|sister")
_ROLE = (r"expert|professional|beekeeper|scientist|professor|entomologist|biologist|"
         r"researcher|specialist|apiarist|phd|teacher|doctor|engineer|lawyer")
_TAG = (r"right|correct|true|no|yes|isn't it|is it not|aren't they|don't they|doesn't it|"
        r"didn't they|didn't it|wasn't it|weren't they|can't they|can't it|won't it|"
        r"isn't that (?:so|right|true|correct)|am i right|wouldn't you (?:say|agree)|agreed")

#: (cue, pattern); the first pattern that matches a sentence gives its claim
_CLAIM_PATTERNS: list[tuple[str, re.Pattern[str]]] = [(cue, re.compile(p, re.IGNORECASE)) for cue, p in [
    ("expertise", rf"\b(?:I(?:'m|’m| am)|as)\s+an?\s+(?:[\w-]+\s+){{0,3}}?(?:{_ROLE})s?\b"
                  r"[^,.;:?!]*?(?:\s*[,;:]\s*(?:and|so)?|\s+and|\s+so)\s+"
                  r"(?:(?:I|we)\s+(?:know|can tell you|can assure you|am sure|'m sure)\s+)?"
                  r"(?:that\s+)?(?P<claim>.+)"),
    ("belief", r"\bI(?:'m|’m| am)\s+(?:(?!not\b)\w+\s+)?(?:sure|certain|convinced|positive|confident)"
               rf"{_SEP}(?P<claim>.+)"),
    ("belief", r"\bI\s+(?:\w+ly\s+)?(?:think|believe|feel|reckon|suppose|guess|know|assume|"
               rf"agree|heard|read|remember|learned|learnt){_SEP}(?P<claim>.+)"),
    ("belief", r"\bI(?:'ve|’ve| have)\s+(?:always\s+)?(?:heard|read|been told|learned|learnt)"
               rf"{_SEP}(?P<claim>.+)"),
    ("belief", rf"\bI\s+was\s+(?:told|taught){_SEP}(?P<claim>.+)"),
    ("leading question", r"\b(?:isn't|is it not|wasn't|was it not)\s+(?:it\s+)?"
                         r"(?:true|the case|correct|right|a fact)\s+that\s+(?P<claim>.+)"),
    ("common knowledge", r"\b(?:everyone|everybody|we all|anyone|most people|all \w+s|"
                         rf"every \w+)\s+knows?{_SEP}(?P<claim>.+)"),
    ("common knowledge", r"\bit(?:'s|’s| is)\s+(?:well[- ]known|common knowledge|obvious|"
                         r"(?:a\s+)?(?:well-known\s+|known\s+)?fact|clear|undeniable|a given)"
                         r"\s+that\s+(?P<claim>.+)"),
    ("authority", rf"\bmy\s+(?:[\w-]+\s+)?(?:{_KIN})\s+(?:says|said|told me|tells me|claims|"
                  r"claimed|insists|insisted|thinks|believes|maintains|swears|taught me)"
                  rf"{_SEP}(?P<claim>.+)"),
    ("authority", rf"\baccording to my\s+(?:[\w-]+\s+)?(?:{_KIN})\s*,\s*(?P<claim>.+)"),
    ("leading question", r"\b(?:don't|wouldn't|do not|would not)\s+you\s+agree"
                         r"(?:\s+with me)?\s+that\s+(?P<claim>.+)"),
    ("leading question", r"\b(?:can|could|would)\s+you\s+confirm\s+that\s+(?P<claim>.+)"),
    ("leading question", r"\bam\s+I\s+(?:right|correct)(?:\s+in\s+thinking|\s+to\s+think)?"
                         rf"{_SEP}(?P<claim>.+)"),
    ("leading question", r"^\W*(?:surely|obviously|clearly)\s*,?\s+(?P<claim>.+)"),
    ("tag question", rf"^(?P<claim>.+?)\s*,\s*(?:{_TAG})\s*\?+\W*$"),
]]
_TAG_SUFFIX = re.compile(rf"\s*,\s*(?:{_TAG})\s*\?*\W*$", re.IGNORECASE)
_LEADING_FILLER = re.compile(r"^(?:that|so|and|but|well|honestly|actually|really)\s*,?\s+",
                             re.IGNORECASE)

_AGREEMENT = re.compile(
    r"^\W*(?:(?:yes|yeah|yep|yup|indeed|absolutely|exactly|certainly|definitely|of course|"
    r"agreed|spot on|well said|great point|good point)\b"
    r"|(?:right|true|correct|precisely|sure)\b(?=\s*(?:[,.!;:\u2014-]|$))"
    r"|that(?:'s|’s| is) (?:(?!not\b)\w+ )?(?:right|correct|true|so|accurate)\b"
    r"|you(?:'re|’re| are) (?:(?!not\b)\w+ )?(?:right|correct)\b"
    r"|you(?:'ve|’ve| have) got it\b|i (?:(?!not\b)\w+ )?agree\b"
    r"|as you (?:said|say|mentioned|noted|pointed out|suggest(?:ed)?)\b"
    r"|your \w+ (?:is|was) (?:(?!not\b)\w+ )?(?:right|correct)\b)", re.IGNORECASE)
#: markers that always mean the response disagrees
_CORRECTION = re.compile(
    r"\b(?:not quite|not exactly|not (?:correct|true|right|accurate)"
    r"|(?:isn't|is not|that's not|that is not|wasn't|was not) (?:quite |entirely )?"
    r"(?:correct|true|right|accurate|the case)|incorrect|inaccurate|misconception|a myth"
    r"|contrary to|mistaken|that's wrong|is wrong|overestimate\w*|underestimate\w*"
    r"|exaggerat\w*)\b|^\W*no\b", re.IGNORECASE)
#: markers that mean a correction unless the response opens by agreeing ("Yes! In fact, ...")
_WEAK_CORRECTION = re.compile(r"\b(?:actually|in fact|in reality|unfortunately|however)\b",
                              re.IGNORECASE)


def _options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"sycophancy-detector: unknown option(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(DEFAULTS))}")
    o = {**DEFAULTS, **options}
    for key in ("drop_unverifiable", "use_teacher"):
        if not isinstance(o[key], bool):
            raise ValueError(f"sycophancy-detector: option {key} must be true or false")
    for key in ("min_support", "restate_overlap"):
        if isinstance(o[key], bool) or not isinstance(o[key], int | float) \
                or not 0 <= o[key] <= 1:
            raise ValueError(f"sycophancy-detector: option {key} must be a number from 0 to 1")
    if o["teacher_scope"] not in ("claims", "all"):
        raise ValueError("sycophancy-detector: option teacher_scope must be 'claims' or 'all'")
    if not isinstance(o["min_teacher_score"], int) or not 1 <= o["min_teacher_score"] <= 5:
        raise ValueError("sycophancy-detector: option min_teacher_score must be 1..5")
    return o


# --- claims ----------------------------------------------------------------------------


@dataclass
class Claim:
    """A claim X the prompt asserts, and the phrase that asserted it."""

    text: str
    cue: str
    sentence: str

    @property
    def stems(self) -> list[str]:
        out: list[str] = []
        for _, key in content_terms(self.text):
            if key not in out:
                out.append(key)
        return out


_TRAILER = re.compile(r"\s*,?\s+(?:but\s+I\b|(?:and|so|but)\s+(?:what|how|why|when|where|which|who|"
                      r"is|are|do|does|can|could|should)\b).*$", re.IGNORECASE)
#: words that turn "I think/know ..." into a question or a condition, not an assertion
_NOT_ASSERTING = frozenset({"do", "does", "did", "can", "could", "should", "would", "will",
                            "shall", "may", "might", "must", "how", "when", "why", "what",
                            "where", "which", "who", "if", "whether", "unless", "once"})


def _clean(claim: str) -> str:
    claim = claim.strip().strip("\"'“”‘’")
    claim = _TRAILER.sub("", claim)
    claim = _TAG_SUFFIX.sub("", claim)
    claim = claim.rstrip(" ?!.;:,").strip()
    prev = None
    while prev != claim:
        prev, claim = claim, _LEADING_FILLER.sub("", claim)
    return claim.strip("\"'“”‘’ ")


def find_claims(instruction: str) -> list[Claim]:
    """Every claim the instruction asserts (at most one per sentence)."""
    out: list[Claim] = []
    for sentence in split_sentences(instruction) or [instruction]:
        for cue, pattern in _CLAIM_PATTERNS:
            m = pattern.search(sentence)
            if not m:
                continue
            before = sentence[:m.start()].lower().split()
            if cue == "belief" and before and before[-1].strip(",") in _NOT_ASSERTING:
                continue  # "How do I know whether ...", "If I think ..."
            text = _clean(m.group("claim"))
            # a claim introduced by another pattern inside this one ("I'm sure X, right?")
            for _, inner in _CLAIM_PATTERNS:
                n = inner.search(text)
                if n and n.group("claim") != text:
                    text = _clean(n.group("claim"))
                    break
            if len(content_terms(text)) >= 2 and all(c.text != text for c in out):
                out.append(Claim(text=text, cue=cue, sentence=sentence.strip()))
            break
    return out


# --- deference and support -------------------------------------------------------------


def _overlap(claim_stems: list[str], text: str) -> float:
    have = content_keys(text)
    return sum(1 for s in claim_stems if s in have) / len(claim_stems) if claim_stems else 0.0


def _negation_mismatch(claim: Claim, sentence: str) -> list[str]:
    """The claim's words that one of (claim, sentence) negates and the other does not."""
    shared = set(claim.stems) & content_keys(sentence)
    a, b = negated_stems(claim.text) & shared, negated_stems(sentence) & shared
    return sorted(a ^ b)


def _restates(claim: Claim, text: str, overlap: float) -> str | None:
    """The sentence of ``text`` that restates ``claim`` (its words, all its numbers, the
    same negation), if any."""
    wanted = set(numbers(claim.text))
    for sentence in split_sentences(text) or [text]:
        if _overlap(claim.stems, sentence) < overlap:
            continue
        if not wanted <= set(numbers(sentence)):
            continue
        if _negation_mismatch(claim, sentence):
            continue
        return sentence
    return None


def _contradicts(claim: Claim, text: str, overlap: float) -> str | None:
    """The sentence of ``text`` that speaks of what ``claim`` does (its words other than
    numbers) but with other numbers or the opposite negation, if any."""
    wanted = set(numbers(claim.text))
    words_only = [s for s in claim.stems if s not in wanted]
    if not words_only:
        return None
    for sentence in split_sentences(text) or [text]:
        if _overlap(words_only, sentence) < overlap:
            continue
        stated = set(numbers(sentence))
        if (wanted and stated and not wanted <= stated) or _negation_mismatch(claim, sentence):
            return sentence
    return None


@dataclass
class Deference:
    defers: bool
    agreement: str | None
    correction: str | None
    restated_in: str | None
    contradicted_in: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"defers": self.defers, "agreement_marker": self.agreement,
                "correction_marker": self.correction, "restated_in": self.restated_in,
                "contradicted_in": self.contradicted_in}


def _deference(claim: Claim, response: str, overlap: float) -> Deference:
    """Whether ``response`` defers to ``claim``: it restates the claim, or it opens by
    agreeing and neither corrects nor contradicts it."""
    sentences = split_sentences(response) or [response]
    agree = _AGREEMENT.search(sentences[0])
    if agree is None and len(sentences) > 1:
        # "Great question! You're right, ..." -- agreement opening the second sentence
        agree = _AGREEMENT.search(sentences[1])
    correct = _CORRECTION.search(response)
    if correct is None and agree is None:
        correct = _WEAK_CORRECTION.search(response)
    restated = _restates(claim, response, overlap)
    contradicted = _contradicts(claim, response, overlap)
    defers = restated is not None or (agree is not None and correct is None
                                      and contradicted is None)
    return Deference(defers, agree.group(0).strip() if agree else None,
                     correct.group(0).strip() if correct else None, restated, contradicted)


@dataclass
class Support:
    score: float
    supported: bool
    why: str
    details: dict[str, Any]


def _shown(number: str, text: str) -> str:
    """A normalised number as ``text`` writes it (``20000`` -> ``20,000``)."""
    return next((surface for surface, key in content_terms(text) if key == number), number)


def _support(claim: Claim, context: str, min_support: float) -> Support:
    stems = claim.stems
    coverage = _overlap(stems, context)
    have_numbers = set(numbers(context))
    missing_numbers = [n for n in numbers(claim.text) if n not in have_numbers]
    sentences = split_sentences(context) or [context]
    best = max(sentences, key=lambda s: _overlap(stems, s))
    best_overlap = _overlap(stems, best)
    flipped = _negation_mismatch(claim, best) if best_overlap >= 0.5 else []
    details = {"coverage": round(coverage, 3), "missing_numbers": missing_numbers,
               "best_sentence": best, "best_overlap": round(best_overlap, 3),
               "negation_mismatch": flipped}
    if missing_numbers:
        shown = ", ".join(_shown(n, claim.text) for n in missing_numbers)
        stated = [_shown(n, best) for n in numbers(best) if n not in numbers(claim.text)]
        says = f"; it says {', '.join(stated)}: '{best}'" if stated and best_overlap >= 0.5 else ""
        return Support(0.0, False, f"the source does not state the number {shown}{says}",
                       details)
    if flipped:
        return Support(0.0, False, f"the source says the opposite about "
                                   f"{', '.join(repr(f) for f in flipped)}: '{best}'", details)
    if coverage < min_support:
        found = round(coverage * len(stems))
        return Support(round(coverage, 3), False,
                       f"only {found} of {len(stems)} of the claim's content words appear in "
                       f"the source ({coverage:.0%}, under {min_support:.0%})", details)
    return Support(round(coverage, 3), True, f"'{best}'", details)


class _Verdict(BaseModel):
    score: int = Field(ge=1, le=5)
    reasoning: str = ""


# --- the filter ------------------------------------------------------------------------


class SycophancyDetector:
    """See the module docstring."""

    name = "sycophancy-detector"
    #: its claim and agreement patterns are English: records in other languages are passed
    #: over, and the report counts them (``syllabus.contracts.unsupported``)
    languages = ("en",)

    def evaluate(self, record: QARecord, *, context: str | None,
                 options: dict[str, Any] | None = None) -> RecordDecision:
        """The heuristic decision (no teacher), synchronously."""
        return self._heuristic(record, context, _options(options or {}))[0]

    def _heuristic(self, record: QARecord, context: str | None,
                   o: dict[str, Any]) -> tuple[RecordDecision, list[Claim]]:
        min_support = float(o["min_support"])
        claims = find_claims(record.instruction)

        def decision(kept: bool, score: float, reason: str, **details: Any) -> RecordDecision:
            return RecordDecision(filter=self.name, kept=kept, score=round(score, 4),
                                  threshold=min_support, reason=reason,
                                  details={"method": "heuristic", **details})

        if not claims:
            return decision(True, 1.0, "no opinion asserted in the prompt", claims=[]), claims
        results: list[dict[str, Any]] = []
        verdicts: list[tuple[Claim, Deference, Support | None]] = []
        for claim in claims:
            d = _deference(claim, record.response, float(o["restate_overlap"]))
            s = _support(claim, context, min_support) if context is not None and d.defers \
                else None
            verdicts.append((claim, d, s))
            results.append({"claim": claim.text, "cue": claim.cue, "sentence": claim.sentence,
                            **d.as_dict(), "support": None if s is None else {
                                "score": s.score, "supported": s.supported, **s.details}})
        deferred = [(c, d, s) for c, d, s in verdicts if d.defers]
        if not deferred:
            c, d, _ = verdicts[0]
            how = (f" (it corrects it: '{d.correction}')" if d.correction else
                   f" (it contradicts it: '{d.contradicted_in}')" if d.contradicted_in else "")
            return decision(True, 1.0, f"the response does not defer to the claim "
                                       f"'{c.text}' asserted in the prompt{how}",
                            claims=results), claims
        if context is None:
            c = deferred[0][0]
            kept = not o["drop_unverifiable"]
            return decision(kept, 1.0 if kept else 0.0,
                            f"the response agrees with the claim '{c.text}' asserted in the "
                            "prompt, and there is no source to check it against",
                            claims=results), claims
        worst = min(deferred, key=lambda v: v[2].score)
        c, _, s = worst
        if s.supported and s.score >= min_support:
            return decision(True, s.score, f"the response agrees with the claim '{c.text}' "
                                           f"asserted in the prompt, which the source supports"
                                           f" ({s.why})", claims=results), claims
        return decision(False, s.score, f"the response agrees with the claim '{c.text}' "
                                        "asserted in the prompt, which the source does not "
                                        f"support: {s.why}", claims=results), claims

    async def judge(self, record: QARecord, *, context: str | None, teacher: Teacher | None,
                    options: dict[str, Any]) -> RecordDecision:
        o = _options(options)
        heuristic, claims = self._heuristic(record, context, o)
        if not o["use_teacher"]:
            return heuristic
        if teacher is None:
            raise ValueError("sycophancy-detector: use_teacher is set but no teacher was given")
        if not claims and o["teacher_scope"] == "claims":
            return heuristic
        inputs = {"instruction": record.instruction, "response": record.response,
                  "context": context or ""}
        prompt = JUDGE_PROMPT.format(context=context or "(no source given)", **{
            k: v for k, v in inputs.items() if k != "context"})
        parsed = await ask(
            teacher, [ChatMessage(role="user", content=prompt)],
            params=GenerationParams(temperature=0.0, max_tokens=int(o["max_tokens"]),
                                    task=TASK_JUDGE, inputs=inputs),
            parse=json_model(_Verdict))
        teacher_details = {"kind": teacher.kind, "model": teacher.model}
        if not parsed.ok:
            return heuristic.model_copy(update={
                "reason": f"{heuristic.reason} (the teacher's verdict could not be used: "
                          f"{parsed.error}; heuristic decision)",
                "details": {**heuristic.details, "teacher": {
                    **teacher_details, "error": parsed.error, "raw_output": parsed.raw}}})
        verdict: _Verdict = parsed.value
        k = int(o["min_teacher_score"])
        kept = verdict.score >= k
        return RecordDecision(
            filter=self.name, kept=kept, score=(verdict.score - 1) / 4,
            threshold=(k - 1) / 4,
            reason=(f"teacher sycophancy score {verdict.score} {'>=' if kept else '<'} {k}: "
                    f"{verdict.reasoning or 'no reasoning given'}"),
            details={"method": "teacher", "teacher": {**teacher_details,
                                                      "score": verdict.score,
                                                      "reasoning": verdict.reasoning},
                     "heuristic": {"kept": heuristic.kept, "reason": heuristic.reason,
                                   **heuristic.details}})


@hookimpl
def register_filters(register):
    register(SycophancyDetector())
