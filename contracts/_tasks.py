"""The structured tasks techniques ask teachers for, with their inputs and output formats.

A technique sends a prompt (messages) *and* ``GenerationParams(task=..., inputs=...)``.
An LLM teacher answers the prompt; the offline ``extractive`` teacher answers the task from
``inputs``. Both answer in the format below, which the technique parses the same way.

=================  ===============================================  ==========================
task               inputs                                           output
=================  ===============================================  ==========================
``qa_pairs``       ``passage`` (str), ``n`` (int)                   JSON ``{"pairs": [{"question": str, "answer": str}, ...]}``
``backtranslate``  ``response`` (str)                               the instruction, as plain text
``curate``         ``instruction``, ``response`` (str)              brief reasoning, then ``Score: <1-5>`` on the last line
``rationale``      ``question``, ``context`` (str)                  step-by-step reasoning, then ``So the answer is <answer>.``
``judge``          ``instruction``, ``response``, ``context`` (str)  JSON ``{"score": <1-5>, "reasoning": str}``
``educational``    ``instruction``, ``response``, ``topic`` (str)    JSON ``{"score": <1-5>, "reasoning": str}`` (phi-1's
                                                                    educational value; the extractive teacher refuses it)
=================  ===============================================  ==========================

The api-annotator's tasks (ToolLLM, Qin et al. 2023) are in ``TOOL_TASKS``; the offline
teacher answers them too:

=====================  ================================================  ======================
task                   inputs                                            output
=====================  ================================================  ======================
``tool_instructions``  ``group`` (I1/I2/I3), ``n`` (int), ``apis`` (list  JSON list ``[{"query": str, "related_apis": [[tool, api], ...]}, ...]``
                       of ``{"tool", "api", "description", "parameters",
                       "example_arguments"}``)
``tool_call``          ``query`` (str); the messages carry the history    an assistant turn: ``Completion.tool_calls`` with one call of a
                       and ``GenerationParams.tools`` the functions       function in ``params.tools`` (``Finish`` ends), ``text`` the thought
``tool_judge``         ``check`` (``answer_status``,                      JSON ``{"status": ..., "reason": str}`` (``{"index": 0|1, ...}``
                       ``parse_answer_status``, ``task_solvable``,        for ``better_answer``); a base model continues with the status
                       ``better_answer``), ``query`` (str)                word (ToolEval's judge, ``plugins/tools/tooleval.py``)
=====================  ================================================  ======================

The extractive teacher refuses ``tool_judge`` (a non-retryable ``TeacherError``): a rule
judging its own rule-written paths would only agree with itself.
"""

from __future__ import annotations

__all__ = ["TASK_BACKTRANSLATE", "TASK_CURATE", "TASK_EDUCATIONAL", "TASK_JUDGE",
           "TASK_QA_PAIRS",
           "TASK_RATIONALE", "TASK_TOOL_CALL", "TASK_TOOL_INSTRUCTIONS", "TASK_TOOL_JUDGE",
           "TASKS", "TOOL_TASKS"]

TASK_QA_PAIRS = "qa_pairs"
TASK_BACKTRANSLATE = "backtranslate"
TASK_CURATE = "curate"
TASK_RATIONALE = "rationale"
TASK_JUDGE = "judge"
TASK_EDUCATIONAL = "educational"

TASKS: dict[str, tuple[str, ...]] = {
    TASK_QA_PAIRS: ("passage", "n"),
    TASK_BACKTRANSLATE: ("response",),
    TASK_CURATE: ("instruction", "response"),
    TASK_RATIONALE: ("question", "context"),
    TASK_JUDGE: ("instruction", "response", "context"),
    TASK_EDUCATIONAL: ("instruction", "response", "topic"),
}

TASK_TOOL_INSTRUCTIONS = "tool_instructions"
TASK_TOOL_CALL = "tool_call"
TASK_TOOL_JUDGE = "tool_judge"

#: the api-annotator's tasks, kept apart from ``TASKS`` (the record techniques' text tasks)
TOOL_TASKS: dict[str, tuple[str, ...]] = {
    TASK_TOOL_INSTRUCTIONS: ("group", "n", "apis"),
    TASK_TOOL_CALL: ("query",),
    TASK_TOOL_JUDGE: ("check", "query"),
}
