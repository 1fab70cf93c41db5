"""Held-out question answering: exact match and token F1 on a data set's ``eval.jsonl``.

The scores are SQuAD's (Rajpurkar et al. 2016, the official v1.1 evaluation script): both
the model's answer and the reference are normalised (lower case, punctuation and the
articles a/an/the removed, whitespace collapsed); **exact match** is 1 when the two are
equal, **token F1** is the harmonic mean of the precision and recall of their shared
tokens (a bag of words: each shared token counts as often as it occurs in both). The
result is the mean over the items.

Items come from the rows of an ``eval.jsonl`` the dataset builder wrote, in any of its
formats: ``openai`` (the messages up to the last assistant turn are the prompt, that
turn the reference), ``alpaca`` (``instruction`` + ``input`` -> ``output``, ``system``
when tagged), ``sharegpt`` (``conversations``, human/gpt/system) and ``step-by-step``
(only the ``predict`` rows: ``input`` -> ``output``). A row that fits none of them is an
error naming its line. Every item is asked at temperature 0; a failed call scores 0 and
is counted (with the first messages kept), never skipped.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from syllabus.contracts import (
    ChatMessage,
    GenerationParams,
    Teacher,
    TeacherError,
    normalize_answer,
    token_f1,
)

__all__ = ["QAItem", "exact_match", "normalize_answer", "parse_eval_rows", "run_qa_eval",
           "token_f1"]

_KEEP = 3
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant",
                   "assistant": "assistant", "system": "system"}


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


@dataclass(frozen=True)
class QAItem:
    """One held-out question: the chat to send and the reference answer."""

    line: int
    messages: tuple[ChatMessage, ...]
    reference: str


def _item(row: Any, line: int) -> QAItem | None:
    """The item of one row, ``None`` for a row that is deliberately not asked (a
    step-by-step ``explain`` row); ``ValueError`` for a row of no known format."""
    if not isinstance(row, dict):
        raise ValueError(f"line {line}: expected a JSON object, got {type(row).__name__}")
    if isinstance(row.get("messages"), list):
        msgs = [m for m in row["messages"] if isinstance(m, dict)]
        last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=None)
        if last is None or last == 0:
            raise ValueError(f"line {line}: the messages have no assistant answer after a prompt")
        prompt = tuple(ChatMessage(role=str(m.get("role")), content=str(m.get("content") or ""))
                       for m in msgs[:last])
        return QAItem(line, prompt, str(msgs[last].get("content") or ""))
    if isinstance(row.get("conversations"), list):
        turns = [(_SHAREGPT_ROLES.get(str(t.get("from")), str(t.get("from"))),
                  str(t.get("value") or "")) for t in row["conversations"] if isinstance(t, dict)]
        last = max((i for i, (r, _) in enumerate(turns) if r == "assistant"), default=None)
        if last is None or last == 0:
            raise ValueError(f"line {line}: the conversation has no gpt answer after a prompt")
        return QAItem(line, tuple(ChatMessage(role=r, content=c) for r, c in turns[:last]),
                      turns[last][1])
    if "instruction" in row and "output" in row:
        question = str(row["instruction"])
        if row.get("input"):
            question += "\n\n" + str(row["input"])
        prompt = ([ChatMessage(role="system", content=str(row["system"]))]
                  if row.get("system") else [])
        prompt.append(ChatMessage(role="user", content=question))
        return QAItem(line, tuple(prompt), str(row["output"]))
    if "input" in row and "output" in row:  # step-by-step
        if row.get("task", "predict") != "predict":
            return None
        return QAItem(line, (ChatMessage(role="user", content=str(row["input"])),),
                      str(row["output"]))
    raise ValueError(f"line {line}: not an openai, alpaca, sharegpt or step-by-step row "
                     f"(keys: {', '.join(sorted(row)) or 'none'})")


def parse_eval_rows(data: bytes | str, *, source: str = "eval.jsonl") -> list[QAItem]:
    """The QA items of an ``eval.jsonl``. Raises ``ValueError`` naming ``source`` and the
    line of the first row that is not JSON or fits no format."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    items: list[QAItem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{source}: line {number} is not JSON: {exc}") from exc
        try:
            item = _item(row, number)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc
        if item is not None:
            items.append(item)
    return items


async def run_qa_eval(teacher: Teacher, items: list[QAItem], *, limit: int | None = None,
                      concurrency: int = 8, max_tokens: int = 64,
                      source: str = "eval.jsonl", examples: int = _KEEP) -> dict[str, Any]:
    """Ask every item (the first ``limit``) and score the answers: the mean exact match
    and token F1, the counts, and the first ``examples`` answers. Raises ``TeacherError`` when every call
    failed (a score of 0 would be a lie)."""
    if limit is not None:
        items = items[:max(0, int(limit))]
    sem = asyncio.Semaphore(max(1, int(concurrency)))
    params = GenerationParams(temperature=0.0, max_tokens=max_tokens)
    errors: list[str] = []
    scored: list[tuple[QAItem, str, float, float]] = []

    async def one(item: QAItem) -> None:
        try:
            async with sem:
                done = await teacher.complete(list(item.messages), params=params)
        except TeacherError as exc:
            errors.append(f"line {item.line}: {str(exc)[:300]}")
            scored.append((item, "", 0.0, 0.0))
            return
        answer = done.text.strip()
        scored.append((item, answer, exact_match(answer, item.reference),
                       token_f1(answer, item.reference)))

    await asyncio.gather(*(one(item) for item in items))
    n = len(items)
    if n and len(errors) == n:
        raise TeacherError(f"every QA-eval call failed; the first: {errors[0]}",
                           retryable=False)
    scored.sort(key=lambda s: s[0].line)
    return {
        "eval": "qa",
        "source": source,
        "metric": "SQuAD exact match and token F1 (Rajpurkar et al. 2016)",
        "teacher": {"kind": teacher.kind, "model": teacher.model},
        "items": n,
        "exact_match": sum(s[2] for s in scored) / n if n else 0.0,
        "token_f1": sum(s[3] for s in scored) / n if n else 0.0,
        "errors": len(errors),
        "error_examples": errors[:_KEEP],
        "examples": [{"line": it.line, "question": it.messages[-1].content[:300],
                      "reference": it.reference[:300], "answer": ans[:300],
                      "exact_match": em, "token_f1": round(f1, 4)}
                     for it, ans, em, f1 in scored[:examples]],
    }
