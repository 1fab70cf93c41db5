"""Robust use of a teacher's output, shared by every technique.

LLMs wrap JSON in prose and code fences, and sometimes get the format wrong. ``ask``
sends the prompt, parses the reply, and on failure asks once more with the error shown to
the model; if that fails too it returns the raw output and the error, never ``None``
pretending to be a value, so the caller records a rejection with what the model said.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from ._ids import sha256_hex
from ._protocols import ChatMessage, Completion, GenerationParams, Teacher

__all__ = [
    "OutputParseError",
    "Parsed",
    "ask",
    "extract_json",
    "json_model",
    "parse_score",
    "prompt_hash",
]

T = TypeVar("T")

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_SCORE = re.compile(r"score\s*[:=]\s*\**\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)


class OutputParseError(ValueError):
    """The teacher's output is not in the format the prompt asked for."""


def prompt_hash(*templates: str) -> str:
    """Short hash of a prompt template (lineage: which prompt made a record)."""
    return sha256_hex("\x1e".join(templates))[:16]


def _loads(text: str) -> Any:
    # strict=False: raw control characters (a newline) inside strings, which a small model
    # under llama.cpp's JSON grammar writes
    return json.loads(text, strict=False)


def extract_json(text: str) -> Any:
    """The first JSON object or array in ``text``, tolerating prose, code fences and raw
    control characters inside strings."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for cand in candidates:
        cand = cand.strip()
        try:
            return _loads(cand)
        except ValueError:
            pass
        for opener, closer in (("{", "}"), ("[", "]")):
            start = cand.find(opener)
            while start != -1:
                end = _matching(cand, start, opener, closer)
                if end is not None:
                    try:
                        return _loads(cand[start:end + 1])
                    except ValueError:
                        pass
                start = cand.find(opener, start + 1)
    raise OutputParseError("no JSON object or array found in the output")


def _matching(text: str, start: int, opener: str, closer: str) -> int | None:
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == opener:
            depth += 1
        elif c == closer:
            depth -= 1
            if depth == 0:
                return i
    return None


def json_model(model: type[BaseModel]) -> Callable[[str], BaseModel]:
    """A parser that extracts JSON from the output and validates it with ``model``."""

    def parse(text: str) -> BaseModel:
        try:
            return model.model_validate(extract_json(text))
        except ValidationError as exc:
            errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                               for e in exc.errors()[:5])
            raise OutputParseError(f"the JSON does not match the schema: {errors}") from exc

    return parse


def parse_score(text: str, *, low: int = 1, high: int = 5) -> tuple[int, str]:
    """``Score: N`` from the last line that has one (the Humpback format), and the text
    before it as the reasoning."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):
        m = _SCORE.search(lines[i])
        if m:
            value = float(m.group(1))
            if value != int(value) or not low <= value <= high:
                raise OutputParseError(f"score {m.group(1)} is not an integer from {low} to {high}")
            reasoning = "\n".join(lines[:i] + [lines[i][:m.start()].strip()]).strip()
            return int(value), reasoning
    raise OutputParseError('no "Score: <rating>" line in the output')


@dataclass
class Parsed(Generic[T]):
    """The outcome of ``ask``: a value, or the raw output and the error."""

    value: T | None
    raw: str
    error: str | None = None
    completions: list[Completion] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


async def ask(teacher: Teacher, messages: Sequence[ChatMessage], *, params: GenerationParams,
              parse: Callable[[str], T]) -> Parsed[T]:
    """Ask, parse, and on a parse failure ask once more.

    A chat model is shown the error and asked again. A base model (``teacher.base_model``
    with ``params.prompt`` set) cannot follow such a note, so its retry resamples the same
    completion prompt at a temperature of at least 0.7."""
    first = await teacher.complete(messages, params=params)
    try:
        return Parsed(parse(first.text), raw=first.text, completions=[first])
    except (OutputParseError, ValidationError, ValueError) as exc:
        error = str(exc)
    if params.prompt is not None and getattr(teacher, "base_model", False):
        retry_params = params.model_copy(update={"temperature": max(params.temperature, 0.7),
                                                 "attempt": 2})
        second = await teacher.complete(messages, params=retry_params)
    else:
        retry = [*messages, ChatMessage(role="assistant", content=first.text),
                 ChatMessage(role="user", content=(
                     f"That answer could not be used: {error}. Answer again, following the "
                     "requested format exactly, with nothing before or after it."))]
        second = await teacher.complete(retry, params=params.model_copy(update={"attempt": 2}))
    try:
        return Parsed(parse(second.text), raw=second.text, completions=[first, second])
    except (OutputParseError, ValidationError, ValueError) as exc:
        return Parsed(None, raw=second.text, error=f"{error}; after a retry: {exc}",
                      completions=[first, second])
