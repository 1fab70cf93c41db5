"""The ``extractive`` teacher: the offline default, with no language model at all.

It answers the structured teacher tasks (``syllabus.contracts.TASKS``) from
``GenerationParams.inputs`` with deterministic, documented heuristics, in exactly the
output format an LLM teacher is prompted for, so every technique parses both the same way.
The chat messages are ignored. Same inputs, same output: there is no randomness.

Techniques, by task:

``qa_pairs`` -- answer-aware, rule-based question generation
    In the overgenerate-and-rank tradition of Heilman & Smith (2010), "Good Question!
    Statistical Ranking for Question Generation" (NAACL), and Heilman's syntactic
    transformations (2011), with shallow analysis in place of a parser. Each declarative
    sentence is read as ``[intro,] subject verb-group rest``; templates pick an answer
    phrase -- a definition's predicate, a quantity with its unit, a duration, a time
    expression, a reason ("because", "due to"), a purpose ("is used for", "so that"), a
    capitalised multi-word name, a subject's modifiers, or an object -- and ask for it
    with subject-auxiliary inversion or do-support ("A queen lays up to 2,000 eggs a day"
    -> "How many eggs does a queen lay a day?"). A leading pronoun is replaced by an
    earlier subject or the sentence is skipped. Questions that are not self-contained, that
    contain their own answer, or that an extractive reader answers from a different
    sentence of the passage (round-trip consistency, Alberti et al. 2019) are dropped; the
    rest are ranked by template and content, and the best ``n`` returned as
    ``{"pairs": [{"question": ..., "answer": ...}]}``. See ``_extractive_questions``.

``backtranslate`` -- instruction backtranslation without a model
    The instruction a response answers (Humpback, Li et al. 2023): from its heading, a
    definitional first sentence ("What is X?"), a causal one ("Why ...?"), step lists, or
    its main topic ("Describe X."). One line of plain text.

``curate`` -- heuristic self-curation
    Humpback's 5-point quality scale, scored by deductions for forum or first-person
    style, promotional and navigation text, links and HTML, repeating the instruction,
    length, topic overlap, truncation and repetition. Reasoning, then ``Score: N``. See
    ``_extractive_judging``.

``rationale`` -- extractive evidence rationales and extractive QA
    The supporting sentences of the context, ranked by weighted overlap with the question,
    are quoted as the step-by-step rationale (as in ERASER-style extractive rationales,
    DeYoung et al. 2020, used for distilling step-by-step, Hsieh et al. 2023); the answer
    is the span of the best sentence the question asks for. Ends with
    ``So the answer is <answer>.`` or ``So the answer is unknown.`` See
    ``_extractive_rationale``.

``judge`` -- heuristic record judging
    Groundedness of the answer in the context, well-formedness of the question,
    completeness of the answer and the style deductions of ``curate``, as JSON
    ``{"score": 1-5, "reasoning": ...}``.

``tool_instructions`` -- template instruction generation from API documentation
    ToolLLM's instruction-generation task (App. B.1) without a model: each API's
    description as a request, with its example arguments written in; I2/I3 queries join
    two APIs' requests. JSON ``[{"query", "related_apis"}]``. See ``_extractive_tools``.

``educational`` -- refused
    phi-1's educational-value rating (the ``educational-value`` filter) is a model's
    judgement; answering it with a rule would relabel ``judge``'s groundedness. The filter
    names the refusal when it starts.

``tool_judge`` -- refused
    ToolEval's judge (``plugins/tools/tooleval.py``) is not answered: the teacher wrote
    both the instructions and the paths, so its verdict would be self-consistency. The
    ``tooleval`` evaluator then reports the rule-based pass rate, labelled so.

``tool_call`` -- a lexical function-calling policy
    Splits the query into requests, matches each to a function by TF-IDF similarity with
    its name, description and parameters, fills the arguments from values in the request,
    reads the observations in the messages, tries the next-best function after a failure
    (and skips the actions a DFSDT diversity prompt lists), and ends with ``Finish``
    (``give_answer`` quoting the observations, or ``give_up_and_restart``). The answer is
    ``Completion.tool_calls``. See ``_extractive_tools``.

The model name, ``extractive-v2``, versions these rules: it is part of every record's
lineage and of the response-cache key, so it changes whenever the rules' output does.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from syllabus.contracts import (
    TASK_EDUCATIONAL,
    TASK_TOOL_CALL,
    TASK_TOOL_JUDGE,
    TASKS,
    TOOL_TASKS,
    ChatMessage,
    Completion,
    GenerationParams,
    TeacherError,
    ToolCall,
    content_id,
    hookimpl,
)

from ._extractive_judging import curate, judge
from ._extractive_questions import backtranslate, qa_pairs
from ._extractive_rationale import rationale
from ._extractive_tools import tool_call, tool_instructions

__all__ = ["MODEL", "ExtractiveTeacher", "ExtractiveTeacherFactory", "register_teachers"]

#: bump whenever a rule change alters any output
MODEL = "extractive-v2"


def _words(text: str) -> int:
    return len(re.findall(r"\S+", text))


def _text(inputs: dict[str, Any], key: str) -> str:
    value = inputs[key]
    if not isinstance(value, str):
        raise TeacherError(f"extractive teacher: input {key!r} must be a string, "
                           f"not {type(value).__name__}", retryable=False)
    return value


def _qa_pairs(inputs: dict[str, Any]) -> str:
    n = inputs["n"]
    if isinstance(n, bool) or not isinstance(n, int | str):
        raise TeacherError(f"extractive teacher: input 'n' must be an integer, not {n!r}",
                           retryable=False)
    try:
        count = int(n)
    except ValueError:
        raise TeacherError(f"extractive teacher: input 'n' must be an integer, not {n!r}",
                           retryable=False) from None
    pairs = qa_pairs(_text(inputs, "passage"), count)
    return json.dumps({"pairs": pairs}, ensure_ascii=False)


def _backtranslate(inputs: dict[str, Any]) -> str:
    return backtranslate(_text(inputs, "response"))


def _curate(inputs: dict[str, Any]) -> str:
    return curate(_text(inputs, "instruction"), _text(inputs, "response"))


def _rationale(inputs: dict[str, Any]) -> str:
    return rationale(_text(inputs, "question"), _text(inputs, "context"))


def _judge(inputs: dict[str, Any]) -> str:
    score, reasoning = judge(_text(inputs, "instruction"), _text(inputs, "response"),
                             _text(inputs, "context"))
    return json.dumps({"score": score, "reasoning": reasoning}, ensure_ascii=False)


def _tool_instructions(inputs: dict[str, Any]) -> str:
    n = inputs["n"]
    apis = inputs["apis"]
    if isinstance(n, bool) or not isinstance(n, int):
        raise TeacherError(f"extractive teacher: input 'n' must be an integer, not {n!r}",
                           retryable=False)
    if not isinstance(apis, list):
        raise TeacherError("extractive teacher: input 'apis' must be a list of API "
                           "descriptions", retryable=False)
    return json.dumps(tool_instructions(str(inputs["group"]), n, apis), ensure_ascii=False)


def _no_messages(inputs: dict[str, Any]) -> str:  # pragma: no cover - complete() routes it
    raise TeacherError("extractive teacher: tool_call is answered by complete(), which "
                       "sees the messages and the tools", retryable=False)


def _refuse_educational(inputs: dict[str, Any]) -> str:
    raise TeacherError("extractive teacher: it does not rate educational value "
                       "(educational): phi-1's label is a language model's judgement of "
                       "what a student learns, and a rule would only restate the "
                       "groundedness rule of 'judge'; use an LLM teacher", retryable=False)


def _refuse_tool_judge(inputs: dict[str, Any]) -> str:
    raise TeacherError("extractive teacher: it does not judge tool answers (tool_judge): "
                       "its instructions and solution paths are its own rules' output, so "
                       "a rule judging them would only agree with itself; use an LLM "
                       "teacher for a judged pass rate", retryable=False)


_HANDLERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "qa_pairs": _qa_pairs,
    "backtranslate": _backtranslate,
    "curate": _curate,
    "rationale": _rationale,
    "judge": _judge,
    "tool_instructions": _tool_instructions,
    TASK_TOOL_CALL: _no_messages,
    TASK_TOOL_JUDGE: _refuse_tool_judge,
    TASK_EDUCATIONAL: _refuse_educational,
}
assert set(_HANDLERS) == set(TASKS) | set(TOOL_TASKS), "every contract task needs a handler"
_REQUIRED = {**TASKS, **TOOL_TASKS}


class ExtractiveTeacher:
    """Answers the structured tasks with rules; see the module docstring."""

    kind = "extractive"
    model = MODEL
    #: tasks answered only with a refusal (``Teacher.refuses``)
    refuses = frozenset({TASK_TOOL_JUDGE, TASK_EDUCATIONAL})
    #: its rules (question patterns, clauses, stopwords, judging) are English ones: a
    #: chunk in another language is passed over, and the run report says so
    languages = ("en",)

    def run(self, task: str | None, inputs: dict[str, Any]) -> str:
        """The task's output text (synchronous; ``complete`` wraps it)."""
        supported = ", ".join(sorted(_HANDLERS))
        if task is None:
            raise TeacherError("extractive teacher: params.task is not set; it answers "
                               f"only the structured tasks ({supported})", retryable=False)
        handler = _HANDLERS.get(task)
        if handler is None:
            raise TeacherError(f"extractive teacher: unknown task {task!r}; supported "
                               f"tasks: {supported}", retryable=False)
        missing = [k for k in _REQUIRED[task] if k not in inputs]
        if missing:
            raise TeacherError(f"extractive teacher: task {task!r} is missing input(s) "
                               f"{', '.join(missing)}", retryable=False)
        return handler(inputs)

    async def complete(self, messages: Sequence[ChatMessage], *,
                       params: GenerationParams) -> Completion:
        started = time.perf_counter()
        if params.task == TASK_TOOL_CALL:
            return self._tool_call(messages, params, started)
        text = self.run(params.task, params.inputs)
        prompt = sum(_words(m.content) for m in messages) or sum(
            _words(v) if isinstance(v, str) else 1 for v in params.inputs.values())
        return Completion(text=text, model=self.model, prompt_tokens=prompt,
                          completion_tokens=_words(text),
                          latency_seconds=time.perf_counter() - started)

    def _tool_call(self, messages: Sequence[ChatMessage], params: GenerationParams,
                   started: float) -> Completion:
        query = params.inputs.get("query")
        if not isinstance(query, str) or not query.strip():
            raise TeacherError("extractive teacher: task 'tool_call' needs the input "
                               "'query' (the instruction)", retryable=False)
        if not params.tools:
            raise TeacherError("extractive teacher: task 'tool_call' needs "
                               "params.tools (the functions it may call)", retryable=False)
        try:
            thought, name, args = tool_call(query, messages, params.tools)
        except ValueError as exc:
            raise TeacherError(f"extractive teacher: {exc}", retryable=False) from exc
        arguments = json.dumps(args, ensure_ascii=False)
        call_id = "call_" + content_id([m.model_dump(mode="json", exclude_none=True)
                                        for m in messages], name, arguments)[:16]
        prompt = sum(_words(m.content) for m in messages)
        return Completion(text=thought, model=self.model, prompt_tokens=prompt,
                          completion_tokens=_words(thought) + _words(arguments),
                          latency_seconds=time.perf_counter() - started,
                          tool_calls=[ToolCall(id=call_id, name=name, arguments=arguments)],
                          finish_reason="tool_calls")

    def __repr__(self) -> str:
        return f"ExtractiveTeacher(model={self.model!r})"


class ExtractiveTeacherFactory:
    """Makes the ``extractive`` teacher. It has no settings: the recipe's ``model``, if
    given, is ignored, since the records must name the rules that made them."""

    kind = "extractive"

    def create(self, options: dict[str, Any]) -> ExtractiveTeacher:
        return ExtractiveTeacher()


@hookimpl
def register_teachers(register: Callable[[Any], None]) -> None:
    register(ExtractiveTeacherFactory())
