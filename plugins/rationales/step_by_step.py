"""``step-by-step``: rationales for question/answer records, after Hsieh et al. 2023,
"Distilling Step-by-Step! Outperforming Larger Language Models with Less Training Data
and Smaller Model Sizes".

As in the paper, the teacher is prompted few-shot with chain-of-thought examples of
(input, rationale, label) triplets, then for the record's input it writes a rationale
ending in "So the answer is ...". The rationale and the teacher's answer are parsed out;
the rationale is kept only when the teacher's answer agrees with the record's answer
(token F1, or the teacher's answer contained in the record's), otherwise the record says
why it was dropped. The data set exporter can then write the paper's multi-task pairs:
``predict: <input>`` -> answer and ``explain: <input>`` -> rationale, the input being the
question and its source chunk (``closed_book`` leaves the chunk out); the trainer fits
them with the multi-task loss, ``syllabus run --train`` picks that format when records
have rationales, and the server asks such a model with ``predict:``, as the paper does.

A rationale that quotes the context (a quotation of 12 characters or more) must quote it:
one whose words are not, at 90% or more, a passage of the context is dropped with the
quotation in the reason (not in the paper, whose teacher was PaLM 540B: a small teacher
makes quotations up).

A base model (a teacher with ``base_model``) gets the same few-shot examples as one
completion prompt (``GenerationParams.prompt``), which is the paper's own setting (PaLM
prompted few-shot), with rationales that quote the context first (``BASE_EXAMPLES``) and
the continuation primed with ``The context says "``; its continuation is cut at the end of its line (each example's answer
is one line). When that line has no "So the answer is", the answer is extracted with a
second completion of the prompt, the rationale and " So the answer is" (the answer
extraction step of zero-shot chain of thought, Kojima et al. 2022): Gemma 3 270M wrote a
reasoning line without the marker for most questions.

Options: ``examples`` (list of {context, question, rationale, answer}; replaces the
built-in few-shot examples, editable in the recipe), ``agreement_threshold`` (0.5),
``require_rationale`` (false: a record without an agreeing rationale is still kept, with
the reason; true: it is rejected), ``temperature`` (0.0), ``max_tokens`` (512).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

from syllabus.contracts import (
    TASK_RATIONALE,
    ChatMessage,
    Failure,
    GenerationParams,
    OutputParseError,
    Parsed,
    QARecord,
    RecordDecision,
    Teacher,
    TechniqueOutput,
    ask,
    hookimpl,
    prompt_hash,
)

__all__ = ["DEFAULT_EXAMPLES", "StepByStep", "agreement", "parse_rationale",
           "register_rationale_generators"]

VERSION = "1"
MARKER = re.compile(r"so the answer is\s*:?\s*", re.IGNORECASE)

SYSTEM = ("Answer the question using only the context. Think step by step: first explain "
          "the reasoning, quoting the context where it helps, then end with exactly one "
          "line \"So the answer is <answer>.\"")

DEFAULT_EXAMPLES: list[dict[str, str]] = [
    {
        "context": "The library lends up to twelve items per card. Books are lent for three "
                   "weeks and may be renewed twice online, unless another reader has "
                   "reserved them. Films are lent for one week and cannot be renewed.",
        "question": "How many times can a library book be renewed?",
        "rationale": "The context says books are lent for three weeks and \"may be renewed "
                     "twice online\". The only exception is a book another reader has "
                     "reserved.",
        "answer": "Twice, unless another reader has reserved it",
    },
    {
        "context": "Water in a closed cooling loop is treated with an inhibitor because "
                   "untreated water corrodes the steel pipes. The inhibitor level is "
                   "checked every month and topped up when it falls below 200 ppm.",
        "question": "Why is the water in the cooling loop treated with an inhibitor?",
        "rationale": "The context gives the reason directly: the water is treated "
                     "\"because untreated water corrodes the steel pipes\". So the inhibitor "
                     "protects the pipes from corrosion.",
        "answer": "Because untreated water would corrode the steel pipes",
    },
    {
        "context": "Expense claims must be filed within 60 days of the purchase. Claims "
                   "over 500 euros also need the approval of a department head before "
                   "finance pays them.",
        "question": "What does a claim of 800 euros need before finance pays it?",
        "rationale": "800 euros is over the 500-euro limit. The context says claims over "
                     "500 euros \"need the approval of a department head before finance "
                     "pays them\".",
        "answer": "The approval of a department head",
    },
]


#: the base-model examples: the same, with rationales that quote the context first. The
#: base model's continuation is primed with ``BASE_PRIMER``, so it starts with a quote,
#: which a small model copies from the context instead of making up its own account
#: (Gemma 3 270M, asked with DEFAULT_EXAMPLES, explained "the outer layer of bees" as
#: skin made of keratin)
BASE_PRIMER = 'The context says "'
BASE_EXAMPLES: list[dict[str, str]] = [
    {**DEFAULT_EXAMPLES[0], "rationale": 'The context says "Books are lent for three weeks and '
     'may be renewed twice online, unless another reader has reserved them." So a book can '
     "be renewed twice, unless it is reserved."},
    {**DEFAULT_EXAMPLES[1], "rationale": 'The context says "Water in a closed cooling loop is '
     'treated with an inhibitor because untreated water corrodes the steel pipes." So the '
     "inhibitor protects the pipes from corrosion."},
    {**DEFAULT_EXAMPLES[2], "rationale": 'The context says "Claims over 500 euros also need '
     'the approval of a department head before finance pays them." 800 euros is over 500 '
     "euros."},
]

# every quotation, short ones too (pairing stays right); those under 12 characters are
# not checked
_QUOTE = re.compile(r'"([^"]*)"|\u201c([^\u201d]*)\u201d')
_QUOTE_WORD = re.compile(r"[a-z0-9]+")


def unfaithful_quote(rationale: str, context: str) -> str | None:
    """The first quotation in ``rationale`` (12 characters or more) whose words are not, in
    order, a passage of ``context`` (90% of its words in a row, case and punctuation
    aside), or None."""
    ctx = " " + " ".join(_QUOTE_WORD.findall(context.lower())) + " "
    for m in _QUOTE.finditer(rationale):
        quote = m.group(1) if m.group(1) is not None else m.group(2)
        words = _QUOTE_WORD.findall(quote.lower())
        if len(quote) < 12 or not words:
            continue
        # the longest run of the quote's words found in the context as one passage
        best, i = 0, 0
        while i < len(words):
            j = i + 1
            while j <= len(words) and f" {' '.join(words[i:j])} " in ctx:
                j += 1
            best = max(best, j - 1 - i)
            i = max(j - 1, i + 1)
        if best < 0.9 * len(words):
            return quote
    return None


def _format(example: dict[str, str], *, with_answer: bool) -> str:
    text = f"Context: {example['context']}\nQuestion: {example['question']}\nAnswer:"
    if with_answer:
        text += f" {example['rationale']} So the answer is {example['answer']}."
    return text


def parse_rationale(text: str) -> tuple[str, str]:
    """(rationale, answer) from "<rationale> So the answer is <answer>."."""
    matches = list(MARKER.finditer(text))
    if not matches:
        raise OutputParseError('the output has no "So the answer is ..." line')
    m = matches[-1]
    rationale = text[:m.start()].strip()
    if rationale.lower().startswith("answer:"):
        rationale = rationale[7:].strip()
    answer = text[m.end():].strip().splitlines()[0].strip() if text[m.end():].strip() else ""
    answer = answer.rstrip(".").strip().strip('"').strip()
    if not rationale:
        raise OutputParseError("the rationale before \"So the answer is\" is empty")
    if not answer:
        raise OutputParseError("the answer after \"So the answer is\" is empty")
    return rationale, answer


def _tokens(text: str) -> list[str]:
    text = text.lower()
    text = "".join(" " if c in string.punctuation else c for c in text)
    return [t for t in text.split() if t not in {"a", "an", "the"}]


def agreement(teacher_answer: str, reference: str) -> float:
    """Token F1 between the answers (SQuAD normalisation); 1.0 when every token of the
    teacher's answer occurs in the reference (a short answer to a full-sentence one)."""
    pred, gold = _tokens(teacher_answer), _tokens(reference)
    if not pred or not gold or pred == ["unknown"]:
        return 0.0
    common = Counter(pred) & Counter(gold)
    overlap = sum(common.values())
    if overlap == len(pred):
        return 1.0
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


async def _ask_base(teacher: Teacher, messages: list[ChatMessage], params: GenerationParams,
                    primer: str) -> Parsed[tuple[str, str]]:
    """A base model's rationale (its continuation of ``primer``), then (when it gave none)
    its answer, extracted."""
    first = await teacher.complete(messages, params=params)
    line = (primer + first.text).strip() if first.text.strip() else ""
    try:
        return Parsed(parse_rationale(line), raw=first.text, completions=[first])
    except OutputParseError as exc:
        error = str(exc)
    if not line:
        return Parsed(None, raw=first.text, error="the rationale is empty",
                      completions=[first])
    extraction = params.model_copy(update={
        "prompt": f"{params.prompt.removesuffix(' ' + primer) if primer else params.prompt} "
                  f"{line} So the answer is", "max_tokens": 32,
        "stop": ["\n", ". "]})
    second = await teacher.complete(messages, params=extraction)
    text = f"{line} So the answer is{second.text}"
    try:
        return Parsed(parse_rationale(text), raw=text, completions=[first, second])
    except OutputParseError as exc:
        return Parsed(None, raw=text, error=f"{error}; after answer extraction: {exc}",
                      completions=[first, second])


class StepByStep:
    name = "step-by-step"

    async def rationalize(self, record: QARecord, *, context: str | None, teacher: Teacher,
                          options: dict[str, Any]) -> TechniqueOutput:
        base = bool(getattr(teacher, "base_model", False))
        primer = BASE_PRIMER if base and not options.get("examples") else ""
        examples = options.get("examples") or (BASE_EXAMPLES if base else DEFAULT_EXAMPLES)
        threshold = float(options.get("agreement_threshold", 0.5))
        require = bool(options.get("require_rationale", False))
        target = {"context": context or "(no context)", "question": record.instruction}
        shots = "\n\n".join(_format(e, with_answer=True) for e in examples)
        messages = [ChatMessage(role="system", content=SYSTEM),
                    ChatMessage(role="user", content=f"{shots}\n\n{_format(target, with_answer=False)}")]
        params = GenerationParams(temperature=float(options.get("temperature", 0.0)),
                                  max_tokens=int(options.get("max_tokens", 160 if base else 512)),
                                  # a shot's answer is one line; Gemma 3 270M goes on
                                  # with a "Question:" of its own
                                  stop=["\n"] if base else None,
                                  prompt=f"{shots}\n\n{_format(target, with_answer=False)}"
                                  f"{' ' + primer if primer else ''}" if base else None,
                                  task=TASK_RATIONALE,
                                  inputs={"question": record.instruction,
                                          "context": context or ""})
        if base:
            result = await _ask_base(teacher, messages, params, primer)
        else:
            result = await ask(teacher, messages, params=params, parse=parse_rationale)
        name = self.name
        if not result.ok:
            decision = RecordDecision(
                filter=name, kept=not require, reason=f"rationale dropped: unusable teacher "
                f"output ({result.error})", details={"raw_output": result.raw[:4000],
                                                    "dropped": "unusable output"})
            out = record.model_copy(update={"decisions": [*record.decisions, decision]})
            return TechniqueOutput(records=[out], failures=[Failure(
                reason=f"unusable step-by-step output: {result.error}", raw_output=result.raw,
                record_id=record.record_id)])
        rationale, answer = result.value
        score = agreement(answer, record.response)
        made_up = unfaithful_quote(rationale, context or "") if context else None
        agrees = score >= threshold and made_up is None
        decision = RecordDecision(
            filter=name, kept=agrees or not require, score=round(score, 4), threshold=threshold,
            reason=(f"rationale kept: the teacher's answer {answer!r} agrees with the record's "
                    f"(F1 {score:.2f} >= {threshold})" if agrees else
                    f"rationale dropped: it quotes {made_up[:120]!r}, which the context does "
                    "not say" if made_up is not None else
                    f"rationale dropped: the teacher's answer {answer!r} disagrees with the "
                    f"record's (F1 {score:.2f} < {threshold})"),
            details={"teacher_answer": answer, "technique_version": VERSION,
                     "prompt_hash": prompt_hash(SYSTEM, shots),
                     # why, in a word the run report counts by
                     **({} if agrees else {"dropped": "quotes what the context does not say"
                                           if made_up is not None else
                                           "answer disagrees"})})
        update: dict[str, Any] = {
            "decisions": [*record.decisions, decision],
            "scores": {**record.scores, "rationale_agreement": round(score, 4)},
        }
        if agrees:
            update["rationale"] = rationale
        return TechniqueOutput(records=[record.model_copy(update=update)])


@hookimpl
def register_rationale_generators(register):
    register(StepByStep())

