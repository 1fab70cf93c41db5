"""``anti-sycophancy``: synthetic examples that teach a model that a user's opinion does not
make a claim true or false.

After Wei et al. 2023, "Simple synthetic data reduces sycophancy in large language
models" (arXiv:2308.03958; reference code ``google/sycophancy-intervention``,
``code/generate_data.py``). The paper builds claims from NLP data sets ("<input> is
<label>" or "<input> is not <label>"), wraps each in a simulated user's introduction with
an opinion, and trains the model to answer by the truth of the claim alone. Here the claims
come from the collection's own accepted records:

* a **true claim** pairs a record's question with its own answer;
* a **false claim** pairs it with a wrong answer: another record's answer (``distractors =
  "records"``, the default; preferably one of the same kind and question type, "how
  many", "who", ...) or a plausible wrong answer the teacher writes (``distractors =
  "teacher"``; needs an LLM teacher). The paper negates the label instead ("is not");
  a wrong answer makes a claim about the collection's own content just as checkable.
  A wrong answer must not be a paraphrase of the right one, or the "false" claim is true:
  a candidate whose SQuAD token F1 with the right answer is ``max_distractor_f1`` (0.5)
  or more is refused (another record's answer is passed over; the teacher's is an
  unusable output, retried once), unless the two state different numbers ("5 legs" is a
  wrong answer to a question whose answer is "6 legs"; numbers as written, so "2,000"
  and "two thousand" count as different).

The prompt (the paper's ``PROMPT_NLP`` and ``TAIL``; its speaker tags ``Human:`` and
``Assistant:`` become the chat roles, so the instruction is the human turn and the
response the assistant's)::

    Hello, my name is {name}. I am a {age} year old professor at {school1} with a PhD in
    {field} from {school2}. I {agree|disagree} with the claim that {claim}. Do you agree or
    disagree with the following claim about the field of {field}? {Claim}.

    Choices:
     (A) Agree
     (B) Disagree

    Answer:

and the response, the paper's target completion of ``Assistant: I believe the best answer
is``: ``I believe the best answer is (A)`` (or ``(B)``), with no full stop, as in the paper.
The claim is ``the answer to the question "{question}" is "{answer}"`` (capitalised where
it starts the sentence). Without a ``field`` option, the field-specific words are left out:
``... professor at {school1} with a PhD from {school2}. ... Do you agree or disagree with
the following claim? {Claim}.``

As in the paper:

* the name is a first and a last name from fixed lists, the age is uniform in 30-90, and
  both schools are drawn (independently) from the paper's ten universities;
* the user agrees or disagrees with p = 0.5, and the two choices are listed in swapped
  order (``(A) Disagree`` / ``(B) Agree``) with p = 0.5;
* the target depends **only** on the truth of the claim: a true claim's target is the
  Agree letter and a false claim's the Disagree letter, whatever the user says.

**Filtration** (the paper's key step: an example is useful only when the model can know
the answer): each claim is put to the filtration model *without* the user's introduction
and opinion (the prompt from "Do you agree or disagree with the following claim ..." on,
with the same choices in the same order; the paper's no-opinion form). Its letter is parsed
(``parse_choice``: "(A)", "A)", "Answer: A", "I believe the best answer is (B)", "Agree",
"I don't agree", ...); an example it gets wrong, or whose answer cannot be parsed even after
one retry showing the error, is rejected with a ``RecordDecision`` saying so. The
filtration model is the ``teacher`` argument, or the ``Teacher`` object the caller passes
as the ``filtration_teacher`` option (the service resolves a named teacher from the recipe
and passes it). With no teacher, or the offline ``extractive`` teacher (which is not a
language model and cannot answer free prompts), no model is asked: the source record's own
answer is the oracle, which is correct by construction, so every example is kept and says
so in its decision (``filtration: oracle from source record; no LLM``). That is not the
paper's filtration, and the record states it plainly.

**Mix ratio**: ``ratio`` (5, the paper's 5:1 of instruction data to synthetic data) sets the
number of synthetic examples to ``ceil(len(eligible records) / ratio)`` *before*
filtration, half true claims and half false (alternating, so they differ by at most one).
Eligible records are the accepted (not rejected), non-``anti_sycophancy`` records with a
question and an answer, the answer at most ``max_answer_chars`` long (a claim quotes the
answer twice, so whole passages, such as backtranslation's outputs, make no claim).

Output: ``QARecord(kind="anti_sycophancy")`` with the source record's chunk, lineage,
collection and run; ``scores`` ``claim_true``, ``user_agrees``, ``agree_first`` (1.0 or
0.0), and ``filtration_correct`` when a model was asked; a ``RecordDecision(kept=True,
filter="anti-sycophancy:generated")`` with every field of the example, and the filtration
decision. Which records are used, and every random choice, are deterministic given
``seed``: each example draws from ``random.Random(seed + sha256(record id))``.

A base model (a teacher with ``base_model``) is asked the filtration question as the
paper's transcript, ``Human: <question>`` then ``Assistant: I believe the best answer is``,
and its continuation (" (A)") is parsed.

Options: ``ratio`` (5), ``seed`` (0), ``distractors`` ("records" | "teacher"),
``filtration`` (true), ``filtration_teacher`` (a ``Teacher``; default the ``teacher``),
``max_distractor_f1`` (0.5), ``field`` (none: e.g. "Apiculture" gives "a PhD in
Apiculture" and "about the field of Apiculture"), ``max_answer_chars`` (400),
``temperature`` (0.0, for teacher distractors), ``max_tokens`` (64, for the filtration
answer).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from syllabus.contracts import (
    ChatMessage,
    Failure,
    GenerationParams,
    OutputParseError,
    PluginRef,
    QARecord,
    RecordDecision,
    Teacher,
    TeacherError,
    TeacherRef,
    TechniqueOutput,
    ask,
    hookimpl,
    normalize_answer,
    prompt_hash,
    token_f1,
)

__all__ = [
    "ANSWER_PREFIX",
    "CHOICES",
    "CHOICES_SWAPPED",
    "DISTRACTOR_PROMPT",
    "FIRST_NAMES",
    "LAST_NAMES",
    "PROMPT",
    "SCHOOLS",
    "AntiSycophancyAugmenter",
    "SyntheticExample",
    "parse_choice",
    "question_type",
    "register_augmenters",
    "render_example",
]

VERSION = "1"
NAME = "anti-sycophancy"

#: The paper's ten universities (US News best global universities for mathematics, June
#: 2023), as listed in google/sycophancy-intervention's generate_data.py.
SCHOOLS = (
    "Stanford University",
    "MIT",
    "Princeton University",
    "the University of Cambridge",
    "Harvard University",
    "University of California Berkeley",
    "Universite de Paris",
    "University of Oxford",
    "ETH Zurich",
    "Sorbonne Universite",
)

#: The paper draws from 10,000 generated full names; these lists give 2,500 combinations.
FIRST_NAMES = (
    "Aaron", "Abigail", "Adam", "Alicia", "Amanda", "Andre", "Angela", "Brian", "Carla",
    "Carlos", "Catherine", "Daniel", "Deborah", "Diana", "Eric", "Erica", "Fatima", "Gary",
    "Grace", "Hannah", "Hiroshi", "Isabel", "Jacob", "Jasmine", "Jennifer", "Joseph", "Julia",
    "Kevin", "Laura", "Leila", "Marcus", "Maria", "Megan", "Michael", "Nathan", "Nicole",
    "Omar", "Patricia", "Paul", "Priya", "Rachel", "Robert", "Samuel", "Sandra", "Sofia",
    "Thomas", "Valerie", "Victor", "Wei", "Zachary",
)
LAST_NAMES = (
    "Adams", "Alvarez", "Anderson", "Bailey", "Bennett", "Brooks", "Campbell", "Chen", "Collins",
    "Cooper", "Diaz", "Edwards", "Evans", "Fischer", "Foster", "Garcia", "Gomez", "Gupta",
    "Harris", "Hughes", "Ito", "Jackson", "Kim", "Kowalski", "Lee", "Lopez", "Martin", "Mendez",
    "Mitchell", "Morgan", "Nguyen", "Okafor", "Parker", "Patel", "Perez", "Reed", "Rivera",
    "Roberts", "Rossi", "Sanders", "Schmidt", "Shaw", "Silva", "Sullivan", "Taylor", "Turner",
    "Walker", "Ward", "Wright", "Young",
)

#: The paper's answer block (its TAIL, up to the assistant turn) and the swapped order.
CHOICES = "\n\nChoices:\n (A) Agree\n (B) Disagree\n\nAnswer:"
CHOICES_SWAPPED = "\n\nChoices:\n (A) Disagree\n (B) Agree\n\nAnswer:"
#: The start of the paper's assistant turn; the target letter follows it.
ANSWER_PREFIX = "I believe the best answer is"
#: a base model's continuation of ANSWER_PREFIX held to one of the two choices (llama.cpp
#: GBNF, where the teacher enforces one)
CHOICE_GRAMMAR = 'root ::= " "? "(" [AB] ")"'

#: PROMPT_NLP of the paper, with {field} for "Linguistics" and {claim} for "<input> is
#: <label>"; {Claim} is the same claim capitalised.
PROMPT = (
    "Hello, my name is {name}. I am a {age} year old professor at {school1} with a PhD in"
    " {field} from {school2}. I {opinion} with the claim that {claim}. Do you agree or"
    " disagree with the following claim about the field of {field}? {Claim}.{choices}"
)
PROMPT_NO_FIELD = (
    "Hello, my name is {name}. I am a {age} year old professor at {school1} with a PhD"
    " from {school2}. I {opinion} with the claim that {claim}. Do you agree or disagree"
    " with the following claim? {Claim}.{choices}"
)
#: The filtration prompt: the same question with the user's introduction and opinion removed.
FILTRATION_PROMPT = ("Do you agree or disagree with the following claim about the field of"
                     " {field}? {Claim}.{choices}")
FILTRATION_PROMPT_NO_FIELD = "Do you agree or disagree with the following claim? {Claim}.{choices}"
CLAIM = 'the answer to the question "{question}" is "{answer}"'

DISTRACTOR_PROMPT = '''Here is a question and its correct answer.

Question: {question}
Correct answer: {answer}

Write one wrong answer to the question: plausible, of the same kind and length as the correct answer, but clearly incorrect. Write the wrong answer only, with nothing before or after it.'''

_AGREE, _DISAGREE = "agree", "disagree"
_WS = re.compile(r"\s+")
_QTYPE_TWO = {"how", "in", "on", "at", "for", "from", "to", "by", "with"}


# --- parsing the model's choice ---------------------------------------------------------

_ANSWER_IS = re.compile(
    r"(?i:answer)(?:\s+(?i:is|would\s+be|will\s+be))?\s*[:\-]?\s*\**\s*\(?([AB])\)?\**"
    r"(?![A-Za-z0-9])")
_LEADING = re.compile(r"^[\s*\"'`]*\(?([AB])(?:\)|[.:,]|\s*$|\s+(?i:agree|disagree)\b)")
_MARKED = re.compile(r"\(([AB])\)|(?<![A-Za-z0-9(])([AB])\)")
_NEGATED_AGREE = re.compile(r"(?:\bnot|n't|\bnever|\bcannot)\s+agree\b", re.IGNORECASE)
_AGREE_WORD = re.compile(r"\bagree\b", re.IGNORECASE)
_DISAGREE_WORD = re.compile(r"\bdisagree\b", re.IGNORECASE)


def parse_choice(text: str, *, agree_first: bool) -> str | None:
    """The letter, ``"(A)"`` or ``"(B)"``, that ``text`` chooses, or None.

    Tried in order: "answer is (X)" / "Answer: X" (the last one); a letter that opens the
    text ("(A)", "A)", "A.", "A", "B Disagree"); the one letter marked "(X)" or "X)"
    anywhere (when only one is); the words "agree" / "disagree" ("I don't agree" counts as
    disagreeing), mapped through the order of the choices (``agree_first``: "(A) Agree")."""
    t = text.strip()
    if not t:
        return None
    found = _ANSWER_IS.findall(t)
    if found:
        return f"({found[-1]})"
    m = _LEADING.match(t)
    if m:
        return f"({m.group(1)})"
    marked = {a or b for a, b in _MARKED.findall(t)}
    if len(marked) == 1:
        return f"({marked.pop()})"
    negated = bool(_NEGATED_AGREE.search(t))
    rest = _NEGATED_AGREE.sub(" ", t)
    says_disagree = negated or bool(_DISAGREE_WORD.search(rest))
    says_agree = bool(_AGREE_WORD.search(rest))
    if says_disagree == says_agree:
        return None
    agree_letter, disagree_letter = ("(A)", "(B)") if agree_first else ("(B)", "(A)")
    return disagree_letter if says_disagree else agree_letter


def _choice_parser(agree_first: bool):
    def parse(text: str) -> str:
        letter = parse_choice(text, agree_first=agree_first)
        if letter is None:
            raise OutputParseError('the answer names neither "(A)" nor "(B)"; answer with the '
                                   'letter of one choice')
        return letter
    return parse


# --- the template -----------------------------------------------------------------------


def _clean(text: str) -> str:
    return _WS.sub(" ", text).strip().replace('"', "'")


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class SyntheticExample:
    """One rendered example: the prompt, its no-opinion twin, and the target."""

    instruction: str
    filtration_prompt: str
    claim: str
    claim_true: bool
    opinion: str
    agree_first: bool
    name: str
    age: int
    school1: str
    school2: str

    @property
    def agree_letter(self) -> str:
        return "(A)" if self.agree_first else "(B)"

    @property
    def disagree_letter(self) -> str:
        return "(B)" if self.agree_first else "(A)"

    @property
    def target(self) -> str:
        """The Agree letter for a true claim, the Disagree letter for a false one."""
        return self.agree_letter if self.claim_true else self.disagree_letter

    @property
    def response(self) -> str:
        return f"{ANSWER_PREFIX} {self.target}"


def render_example(question: str, answer: str, *, claim_true: bool, opinion: str,
                   agree_first: bool, name: str, age: int, school1: str, school2: str,
                   field: str | None = None) -> SyntheticExample:
    """The paper's prompt for the claim that ``answer`` answers ``question``."""
    if opinion not in (_AGREE, _DISAGREE):
        raise ValueError(f"opinion must be 'agree' or 'disagree', not {opinion!r}")
    claim = CLAIM.format(question=_clean(question), answer=_clean(answer))
    choices = CHOICES if agree_first else CHOICES_SWAPPED
    values = {"name": name, "age": age, "school1": school1, "school2": school2,
              "opinion": opinion, "claim": claim, "Claim": _capitalise(claim),
              "choices": choices, "field": field}
    if field:
        instruction = PROMPT.format(**values)
        filtration = FILTRATION_PROMPT.format(**values)
    else:
        instruction = PROMPT_NO_FIELD.format(**values)
        filtration = FILTRATION_PROMPT_NO_FIELD.format(**values)
    return SyntheticExample(instruction=instruction, filtration_prompt=filtration, claim=claim,
                            claim_true=claim_true, opinion=opinion, agree_first=agree_first,
                            name=name, age=age, school1=school1, school2=school2)


# --- choosing records and wrong answers -------------------------------------------------


def _record_rng(seed: int, record_id: str) -> random.Random:
    digest = hashlib.sha256(record_id.encode()).digest()
    return random.Random(seed + int.from_bytes(digest[:8], "big"))


def _rank(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


def _norm(text: str) -> str:
    return _WS.sub(" ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def question_type(question: str) -> str:
    """"what", "who", "how many", "in which"...: the question's opening word(s)."""
    words = _norm(question).split()
    if not words:
        return ""
    if words[0] in _QTYPE_TWO and len(words) > 1:
        return " ".join(words[:2])
    return words[0]


class _Distractors:
    """Other records' answers, indexed by (kind, question type), question type and kind."""

    def __init__(self, records: Sequence[QARecord], max_f1: float = 0.5) -> None:
        self.max_f1 = max_f1
        self.tiers: list[dict[Any, list[QARecord]]] = [{}, {}, {}, {"": []}]
        for r in sorted(records, key=lambda r: r.record_id):
            qtype = question_type(r.instruction)
            self.tiers[0].setdefault((r.kind, qtype), []).append(r)
            self.tiers[1].setdefault(qtype, []).append(r)
            self.tiers[2].setdefault(r.kind, []).append(r)
            self.tiers[3][""].append(r)

    def pick(self, source: QARecord, rng: random.Random) -> QARecord | None:
        qtype = question_type(source.instruction)
        keys = [(source.kind, qtype), qtype, source.kind, ""]
        def usable(r: QARecord) -> bool:  # a different answer, not a paraphrase of it
            return (r.record_id != source.record_id
                    and not paraphrase(r.response, source.response, self.max_f1))

        for tier, key in zip(self.tiers, keys, strict=True):
            pool = tier.get(key, [])
            if not pool:
                continue
            for _ in range(8):
                cand = pool[rng.randrange(len(pool))]
                if usable(cand):
                    return cand
            usable_pool = [r for r in pool if usable(r)]
            if usable_pool:
                return usable_pool[rng.randrange(len(usable_pool))]
        return None


def _numbers(text: str) -> list[str]:
    return sorted(w for w in normalize_answer(text).split() if any(c.isdigit() for c in w))


def paraphrase(candidate: str, right: str, max_f1: float = 0.5) -> bool:
    """Whether ``candidate`` may say what ``right`` says: SQuAD token F1 at ``max_f1`` or
    more, and the same numbers (or none)."""
    return _numbers(candidate) == _numbers(right) and token_f1(candidate, right) >= max_f1


def _distractor_parser(correct: str, limit: int, max_f1: float = 0.5):
    def parse(text: str) -> str:
        line = text.strip().strip('"').strip()
        for prefix in ("Wrong answer:", "wrong answer:", "Answer:", "answer:"):
            if line.startswith(prefix):
                line = line[len(prefix):].strip().strip('"').strip()
        if not line:
            raise OutputParseError("the wrong answer is empty")
        if _norm(line) == _norm(correct):
            raise OutputParseError("the wrong answer is the correct answer")
        if paraphrase(line, correct, max_f1):
            raise OutputParseError(f"the wrong answer is too close to the correct answer "
                                   f"(token F1 {token_f1(line, correct):.2f} >= "
                                   f"{max_f1:g}, the same numbers): a paraphrase would "
                                   "make the false claim true")
        if len(line) > limit:
            raise OutputParseError(f"the wrong answer is longer than {limit} characters")
        return line
    return parse


# --- the augmenter ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    ratio: float
    seed: int
    distractors: str
    filtration: bool
    field: str | None
    max_answer_chars: int
    temperature: float
    max_tokens: int
    max_distractor_f1: float = 0.5

    @classmethod
    def parse(cls, options: dict[str, Any]) -> _Options:
        ratio = float(options.get("ratio", 5))
        if not ratio > 0:
            raise ValueError(f"anti-sycophancy: ratio must be positive, got {ratio!r}")
        distractors = str(options.get("distractors", "records"))
        if distractors not in ("records", "teacher"):
            raise ValueError("anti-sycophancy: distractors must be 'records' or 'teacher', "
                             f"got {distractors!r}")
        field = options.get("field")
        return cls(ratio=ratio, seed=int(options.get("seed", 0)), distractors=distractors,
                   filtration=bool(options.get("filtration", True)),
                   field=str(field).strip() if field else None,
                   max_answer_chars=int(options.get("max_answer_chars", 400)),
                   temperature=float(options.get("temperature", 0.0)),
                   max_tokens=int(options.get("max_tokens", 64)),
                   max_distractor_f1=_unit(options.get("max_distractor_f1", 0.5),
                                           "max_distractor_f1"))


def _unit(value: Any, name: str) -> float:
    """A number in (0, 1], or a ``ValueError`` naming the option."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 < number <= 1.0:
        raise ValueError(f"anti-sycophancy: {name} must be a number in (0, 1], got {value!r}")
    return number


def _is_llm(teacher: Teacher | None) -> bool:
    return teacher is not None and teacher.kind != "extractive"


class AntiSycophancyAugmenter:
    name = NAME
    #: Wei et al.'s templates (and the names and claims filled in) are English: records in
    #: other languages are passed over, and the report counts them
    languages = ("en",)

    def eligible(self, records: Sequence[QARecord], *, max_answer_chars: int = 400
                 ) -> list[QARecord]:
        """The records claims are made from (see the module docstring), one per id."""
        seen: dict[str, QARecord] = {}
        for r in records:
            if (r.kind == "anti_sycophancy" or r.rejected or not r.instruction.strip()
                    or not r.response.strip() or len(r.response.strip()) > max_answer_chars):
                continue
            seen.setdefault(r.record_id, r)
        return list(seen.values())

    async def augment(self, records: Sequence[QARecord], *, teacher: Teacher | None,
                      options: dict[str, Any]) -> TechniqueOutput:
        opts = _Options.parse(options)
        filtration_teacher = options.get("filtration_teacher") or teacher
        if filtration_teacher is not None and not isinstance(filtration_teacher, Teacher):
            raise ValueError("anti-sycophancy: filtration_teacher must be a Teacher object "
                             f"(the caller resolves a named teacher), got {filtration_teacher!r}")
        if opts.distractors == "teacher" and not _is_llm(teacher):
            raise ValueError("anti-sycophancy: distractors = 'teacher' needs an LLM teacher; "
                             f"got {teacher.kind if teacher else 'none'} (use 'records')")
        pool = self.eligible(records, max_answer_chars=opts.max_answer_chars)
        count = math.ceil(len(pool) / opts.ratio) if pool else 0
        chosen = sorted(pool, key=lambda r: _rank(opts.seed, r.record_id))[:count]
        distractors = _Distractors(pool, opts.max_distractor_f1)
        results = await asyncio.gather(*(
            self._one(src, claim_true=(i % 2 == 0), opts=opts, teacher=teacher,
                      filtration_teacher=filtration_teacher, distractors=distractors)
            for i, src in enumerate(chosen)))
        out = TechniqueOutput()
        for result in results:
            if isinstance(result, Failure):
                out.failures.append(result)
            else:
                out.records.append(result)
        return out

    async def _one(self, src: QARecord, *, claim_true: bool, opts: _Options,
                   teacher: Teacher | None, filtration_teacher: Teacher | None,
                   distractors: _Distractors) -> QARecord | Failure:
        rng = _record_rng(opts.seed, src.record_id)
        opinion = _AGREE if rng.random() < 0.5 else _DISAGREE
        agree_first = rng.random() < 0.5
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        age = rng.randint(30, 90)
        school1, school2 = rng.choice(SCHOOLS), rng.choice(SCHOOLS)
        templates = [PROMPT if opts.field else PROMPT_NO_FIELD]
        details: dict[str, Any] = {"source_record_id": src.record_id, "claim_true": claim_true}
        if claim_true:
            answer = src.response.strip()
            details["answer_from"] = "source record"
        elif opts.distractors == "records":
            other = distractors.pick(src, rng)
            if other is None:
                return Failure(reason="anti-sycophancy: no wrong answer for a false claim (no "
                               "other eligible record has a different answer)",
                               record_id=src.record_id)
            answer = other.response.strip()
            details["answer_from"] = f"record {other.record_id}"
        else:
            assert teacher is not None
            templates.append(DISTRACTOR_PROMPT)
            prompt = DISTRACTOR_PROMPT.format(question=_clean(src.instruction),
                                              answer=_clean(src.response))
            try:
                made = await ask(teacher, [ChatMessage(role="user", content=prompt)],
                                 params=GenerationParams(temperature=opts.temperature,
                                                         max_tokens=256),
                                 parse=_distractor_parser(src.response,
                                                          opts.max_answer_chars,
                                                          opts.max_distractor_f1))
            except TeacherError as exc:
                return Failure(reason=f"anti-sycophancy: the distractor call failed: {exc}",
                               record_id=src.record_id)
            if not made.ok:
                return Failure(reason=f"anti-sycophancy: unusable wrong answer: {made.error}",
                               raw_output=made.raw, record_id=src.record_id)
            answer = made.value
            details["answer_from"] = f"teacher {teacher.kind}:{teacher.model}"
        if not claim_true:
            details["distractor_f1"] = round(token_f1(answer, src.response), 4)
        example = render_example(src.instruction, answer, claim_true=claim_true,
                                 opinion=opinion, agree_first=agree_first, name=name, age=age,
                                 school1=school1, school2=school2, field=opts.field)
        details.update({"claim": example.claim, "opinion": opinion,
                        "order": "agree-first" if agree_first else "disagree-first",
                        "agree_letter": example.agree_letter, "target": example.target,
                        "name": name, "age": age, "school1": school1, "school2": school2,
                        "field": opts.field, "distractors": opts.distractors,
                        "seed": opts.seed, "ratio": opts.ratio})
        scores = {"claim_true": float(claim_true), "user_agrees": float(opinion == _AGREE),
                  "agree_first": float(agree_first)}
        truth = "true" if claim_true else "false"
        decisions = [RecordDecision(
            filter=f"{NAME}:generated", kept=True,
            reason=(f"synthetic {truth} claim; the user says they {opinion}; the target, "
                    f"{example.target}, follows the claim's truth only"),
            details=details)]
        filtration = await self._filtration(example, src, opts, filtration_teacher)
        if isinstance(filtration, Failure):
            return filtration
        if filtration is not None:
            templates.append(FILTRATION_PROMPT if opts.field else FILTRATION_PROMPT_NO_FIELD)
            decisions.append(filtration)
            if "answered" in filtration.details:
                scores["filtration_correct"] = float(filtration.kept)
        else:
            details["filtration"] = "off"
        technique = PluginRef(name=NAME, version=VERSION)
        teacher_ref = (TeacherRef(kind=teacher.kind, model=teacher.model) if teacher is not None
                       else TeacherRef(kind="none", model="templates"))
        settings = {"seed": opts.seed, "ratio": opts.ratio, "distractors": opts.distractors,
                    "field": opts.field, "source": src.record_id}
        record_id = QARecord.make_id(chunk_id=src.chunk_id, technique=technique,
                                     teacher=teacher_ref, settings=settings,
                                     instruction=example.instruction, response=example.response)
        return QARecord(record_id=record_id, collection=src.collection, kind="anti_sycophancy",
                        instruction=example.instruction, response=example.response,
                        chunk_id=src.chunk_id, lineage=src.lineage, technique=technique,
                        teacher=teacher_ref, prompt_hash=prompt_hash(*templates),
                        scores=scores, decisions=decisions, run_id=src.run_id)

    async def _filtration(self, example: SyntheticExample, src: QARecord, opts: _Options,
                          teacher: Teacher | None) -> RecordDecision | Failure | None:
        if not opts.filtration:
            return None
        filt = f"{NAME}:filtration"
        if not _is_llm(teacher):
            return RecordDecision(
                filter=filt, kept=True,
                reason=("filtration: oracle from source record; no LLM (the "
                        f"{teacher.kind if teacher else 'missing'} teacher cannot answer the "
                        "claim, so the source record's answer decides, which is correct by "
                        "construction)"),
                details={"filtration": "oracle from source record; no LLM",
                         "target": example.target})
        assert teacher is not None
        try:
            # a base model continues the paper's own transcript ("Human: ... Assistant: I
            # believe the best answer is"), as the paper's models were prompted
            base = bool(getattr(teacher, "base_model", False))
            prompt = (f"Human: {example.filtration_prompt}\n\nAssistant: {ANSWER_PREFIX}"
                      if base else None)
            got = await ask(teacher, [ChatMessage(role="user", content=example.filtration_prompt)],
                            params=GenerationParams(
                                temperature=0.0, max_tokens=min(8, opts.max_tokens) if base
                                else opts.max_tokens, prompt=prompt,
                                grammar=CHOICE_GRAMMAR if base else None,
                                stop=["\n"] if base else None, task="filtration"),
                            parse=_choice_parser(example.agree_first))
        except TeacherError as exc:
            return Failure(reason=f"anti-sycophancy: the filtration call failed: {exc}",
                           record_id=src.record_id)
        details = {"filtration": f"{teacher.kind}:{teacher.model}", "target": example.target,
                   "raw_output": got.raw[:500]}
        if not got.ok:
            return RecordDecision(
                filter=filt, kept=False,
                reason=("the filtration model's answer without an opinion could not be parsed "
                        f"as (A) or (B): {got.error}"),
                details=details)
        details["answered"] = got.value
        if got.value != example.target:
            return RecordDecision(
                filter=filt, kept=False,
                reason=(f"the filtration model answered {got.value} without an opinion; the "
                        f"target is {example.target}"),
                details=details)
        return RecordDecision(
            filter=filt, kept=True,
            reason=(f"the filtration model answered {got.value} without an opinion, which is "
                    "the target"),
            details=details)


@hookimpl
def register_augmenters(register):
    register(AntiSycophancyAugmenter())
