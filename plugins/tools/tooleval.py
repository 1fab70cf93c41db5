"""``toolevalrule``: the rule-based part of ToolEval's pass rate (ToolLLM, Qin et al. 2023,
§3.1 "ToolEval", OpenBMB/ToolBench ``tooleval``).

ToolEval counts an instruction as passed when its solution path ends in a final answer
that solves it; the rules below are the part that needs no judge model: a path **passes**
when its last assistant turn calls ``Finish`` with ``return_type == "give_answer"`` and a
``final_answer`` that is not empty (white space only counts as empty), and no turn of the
path gave up (``give_up_and_restart``). The trajectory is read from its own messages, not
from the searcher's ``solved`` flag, so a searcher that claims too much is caught
(``disagreements`` counts them).

``evaluate`` returns, per method and per instruction group (I1, I2, I3, and ``all``):
``instructions``, ``passed``, ``pass_rate``, ``teacher_calls``, ``api_calls``, and
``calls_per_solved`` (teacher calls per passed instruction, ``None`` when none passed) --
the two numbers of ToolLLM Table 3's comparison of DFSDT and ReAct.
"""

from __future__ import annotations

import json
from typing import Any

from syllabus.contracts import FINISH_TOOL, SolveResult, ToolInstruction, hookimpl

__all__ = ["ToolEvalRule", "passes", "register_tool_annotators"]


def _finish_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if m.get("role") != "assistant":
            continue
        for call in m.get("tool_calls") or ():
            fn = call.get("function") or {}
            if fn.get("name") == FINISH_TOOL:
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except ValueError:
                    args = {}
                out.append(args if isinstance(args, dict) else {})
    return out


def passes(result: SolveResult) -> bool:
    """The rule-based pass: finished with a non-empty answer, and not a give-up."""
    finishes = _finish_calls(result.messages)
    if not finishes or any(f.get("return_type") == "give_up_and_restart" for f in finishes):
        return False
    last = finishes[-1]
    answer = last.get("final_answer")
    return last.get("return_type") == "give_answer" and isinstance(answer, str) \
        and bool(answer.strip())


class ToolEvalRule:
    """Pass rate per method and instruction group (see the module docstring)."""

    name = "toolevalrule"
    stage = "eval"

    def evaluate(self, results: list[tuple[ToolInstruction, SolveResult]]) -> dict[str, Any]:
        table: dict[str, dict[str, dict[str, Any]]] = {}
        disagreements = 0
        for instruction, result in results:
            ok = passes(result)
            disagreements += ok != result.solved
            for group in (instruction.group, "all"):
                row = table.setdefault(result.method, {}).setdefault(group, {
                    "instructions": 0, "passed": 0, "teacher_calls": 0, "api_calls": 0})
                row["instructions"] += 1
                row["passed"] += ok
                row["teacher_calls"] += result.teacher_calls
                row["api_calls"] += result.api_calls
        for groups in table.values():
            for row in groups.values():
                n, k = row["instructions"], row["passed"]
                row["pass_rate"] = round(k / n, 4) if n else 0.0
                row["calls_per_solved"] = round(row["teacher_calls"] / k, 2) if k else None
        return {"evaluator": self.name,
                "rule": "Finish(give_answer) with a non-empty final_answer, no give-up",
                "methods": {m: dict(sorted(g.items())) for m, g in sorted(table.items())},
                "disagreements": disagreements}


@hookimpl
def register_tool_annotators(register: Any) -> None:
    register(ToolEvalRule())
