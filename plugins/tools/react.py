"""``react``: the ReAct baseline of ToolLLM's comparison (Yao et al. 2023, "ReAct:
Synergizing Reasoning and Acting in Language Models"; ToolLLM §2.3 and Table 3, OpenBMB/
ToolBench ``Algorithms/single_chain.py``): one chain of thought-and-call steps with the same
prompts, functions and ``Finish`` as ``dfsdt``, and no backtracking. The chain ends at
``Finish`` (``give_answer``: solved when the answer is not empty; ``give_up_and_restart``:
not solved, with no restart), at the depth limit, when the query budget is spent, or
when a teacher call fails (``teacher_error``, unsolved, the error in ``stats["error"]``).

Options: ``max_depth`` (8), ``max_queries`` (40), ``temperature`` (0.0), ``max_tokens``
(1024).
"""

from __future__ import annotations

from typing import Any

from syllabus.contracts import (
    ApiTool,
    SolveResult,
    Teacher,
    TeacherError,
    ToolCaller,
    ToolInstruction,
    hookimpl,
)

from ._search import Environment, Step, option

__all__ = ["ReActSearcher", "register_tool_annotators"]


class ReActSearcher:
    """One chain, no backtracking (see the module docstring)."""

    name = "react"
    stage = "solver"

    async def solve(self, instruction: ToolInstruction, tools: list[ApiTool], *,
                    teacher: Teacher, caller: ToolCaller,
                    options: dict[str, Any]) -> SolveResult:
        max_depth = option(options, "max_depth", 8, int, 1)
        env = Environment.from_options(instruction, tools, teacher=teacher, caller=caller,
                                       options=options)
        budget = env.budget
        root = env.root()
        steps: list[Step] = []
        reason = "depth_limit"
        error: str | None = None
        while len(steps) < max_depth:
            if budget.spent:
                reason = "budget"
                break
            messages = list(root)
            for s in steps:
                messages += s.messages
            try:
                completion = await env.think(messages)
            except TeacherError as exc:  # retries spent: unsolved, with the reason
                reason, error = "teacher_error", str(exc)
                break
            step = await env.step(completion, len(steps))
            steps.append(step)
            if step.finished or step.gave_up:
                reason = "answer" if step.finished else "give_up"
                break
        last = steps[-1] if steps else None
        solved = bool(last is not None and last.finished and (last.final_answer or "").strip())
        if last is not None and last.finished and not solved:
            reason = "empty_answer"
        stats: dict[str, Any] = {**env.stats, "nodes": len(steps), "stop_reason": reason,
                                 "max_depth": max_depth, "max_queries": budget.max_queries}
        return env.result(self.name, root, steps, solved=solved,
                          gave_up=bool(last is not None and last.gave_up), stats=stats,
                          error=error)


@hookimpl
def register_tool_annotators(register: Any) -> None:
    register(ReActSearcher())
