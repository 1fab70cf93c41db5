"""``llm-judge``: the teacher scores each record on a rubric, and records under a
threshold are dropped. The score and the teacher's reasoning are kept in the decision.

The rubric follows the quality bar of LIMA (Zhou et al. 2023, "LIMA: Less Is More for
Alignment", §2: responses that are helpful, correct and written in the style of an AI
assistant) and adds faithfulness to the source chunk, which matters for data generated
from an organisation's own documents.

A base model (a teacher with ``base_model``) continues the same rubric, source and pair
followed by ``Score (1-5):`` with the score alone, and gives no reasoning. Its score is
**recorded, not enforced** by default (``base_model_scores = "record"``): the decision
keeps the record, with the score and ``details["enforced"] = False``, and the run report
gives the scores' spread in a warning. An output with no score still follows
``on_failure``. Measured on ``examples/bees`` with Gemma 3 270M,
the base model scored 155 of 156 records 1 and one 5: it continues with the last number
of the rubric it has just read, whatever the pair, so enforcing its scores kept one record
of 156 and built a one-row data set. ``base_model_scores = "enforce"`` enforces them
anyway (for a larger base model that can judge). A departure from LIMA's quality gate,
made because a judge that cannot tell pairs apart is no gate.

Options: ``threshold`` (4, on the 1-5 scale), ``on_failure`` ("drop": a record whose
judgement cannot be parsed, even after one retry, is dropped with the raw output in the
decision; "keep" keeps it), ``temperature`` (0.0), ``base_model_scores`` ("record" or
"enforce", above).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from syllabus.contracts import (
    TASK_JUDGE,
    ChatMessage,
    GenerationParams,
    OutputParseError,
    QARecord,
    RecordDecision,
    Teacher,
    ask,
    hookimpl,
    json_model,
    prompt_hash,
)
from syllabus.plugins.teachers._common import choice_error

__all__ = ["JUDGE_PROMPT", "LLMJudge", "Verdict", "register_filters"]

JUDGE_PROMPT = '''You are reviewing training examples for an AI assistant. Rate the example below on a scale of 1 to 5.

5: The response answers the instruction completely and correctly, uses only facts stated in the source, and is written as a helpful AI assistant would write it, with nothing irrelevant.
4: Correct, faithful to the source and helpful, with minor room for improvement (e.g. it could be more concise).
3: Mostly correct, but incomplete, vague, or not written in an assistant's voice (e.g. reads like an excerpt of a web page).
2: It misses the point of the instruction, or adds facts that the source does not support.
1: It is wrong, contradicts the source, is off-topic, or contains navigation or promotional text.

Source:
"""
{context}
"""

Instruction:
{instruction}

Response:
{response}

Answer with JSON only: {{"score": <1-5>, "reasoning": "<one or two sentences>"}}'''


#: what ``base_model_scores`` may be
BASE_MODEL_SCORES = ("record", "enforce")


class Verdict(BaseModel):
    score: int = Field(ge=1, le=5)
    reasoning: str = ""


def base_prompt(chat_prompt: str) -> str:
    """The judge prompt as a base model's completion prompt: the request for JSON becomes
    ``Score (1-5):``."""
    return chat_prompt.rsplit("\n\nAnswer with JSON only", 1)[0] + "\n\nScore (1-5):"


def base_verdict(text: str) -> Verdict:
    """A base model's score: the digit its continuation starts with."""
    m = re.match(r"\s*([1-5])(?!\d)", text)
    if not m:
        raise OutputParseError(f"the continuation does not start with a score from 1 to 5: "
                               f"{text[:80]!r}")
    return Verdict(score=int(m.group(1)),
                   reasoning="(a base model gives the score alone, with no reasoning)")


class LLMJudge:
    name = "llm-judge"

    async def judge(self, record: QARecord, *, context: str | None, teacher: Teacher | None,
                    options: dict[str, Any]) -> RecordDecision:
        if teacher is None:
            raise ValueError("the llm-judge filter needs a teacher")
        threshold = float(options.get("threshold", 4))
        mode = str(options.get("base_model_scores", "record"))
        if mode not in BASE_MODEL_SCORES:
            raise choice_error(self.name, "base_model_scores", BASE_MODEL_SCORES, mode)
        inputs = {"instruction": record.instruction, "response": record.response,
                  "context": context or ""}
        messages = [ChatMessage(role="user", content=JUDGE_PROMPT.format(
            context=context or "(no source available)", **{k: inputs[k] for k in
                                                          ("instruction", "response")}))]
        base = bool(getattr(teacher, "base_model", False))
        params = GenerationParams(temperature=float(options.get("temperature", 0.0)),
                                  max_tokens=3 if base else 300,
                                  json_schema=None if base else Verdict.model_json_schema(),
                                  prompt=base_prompt(messages[0].content) if base else None,
                                  task=TASK_JUDGE, inputs=inputs)
        result = await ask(teacher, messages, params=params,
                           parse=base_verdict if base else json_model(Verdict))
        details: dict[str, Any] = {"teacher": f"{teacher.kind}:{teacher.model}",
                                   "prompt_hash": prompt_hash(JUDGE_PROMPT)}
        if not result.ok:
            keep = options.get("on_failure", "drop") == "keep"
            return RecordDecision(
                filter=self.name, kept=keep, threshold=threshold,
                reason=f"the judge's output could not be used ({result.error}); "
                       f"{'kept' if keep else 'dropped'} as on_failure says",
                details={**details, "raw_output": result.raw[:4000]})
        verdict: Verdict = result.value
        kept = verdict.score >= threshold
        if base and mode == "record":
            return RecordDecision(
                filter=self.name, kept=True, score=float(verdict.score), threshold=threshold,
                reason=(f"judge score {verdict.score} (a base model's score: recorded, not "
                        f"enforced; base_model_scores = \"enforce\" enforces it)"),
                details={**details, "reasoning": verdict.reasoning, "enforced": False})
        return RecordDecision(
            filter=self.name, kept=kept, score=float(verdict.score), threshold=threshold,
            reason=(f"judge score {verdict.score} {'>=' if kept else '<'} {threshold:g}: "
                    f"{verdict.reasoning or 'no reasoning given'}"),
            details={**details, "reasoning": verdict.reasoning})


@hookimpl
def register_filters(register):
    register(LLMJudge())
