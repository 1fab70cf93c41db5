"""``dfsdt``: solution-path annotation with the depth-first search-based decision tree of
ToolLLM (Qin et al. 2023, "ToolLLM: Facilitating Large Language Models to Master 16000+
Real-world APIs", §2.3 and App. A.1; OpenBMB/ToolBench ``Algorithms/DFS.py`` with
``with_filter=False``).

Every sampled operation is a function, plus ``Finish(return_type: give_answer |
give_up_and_restart, final_answer)``. A node of the tree is one assistant turn (the
teacher's thought and function call) with the real observations of its calls. The search:

* **pre-order DFS, children generated lazily**: a node's first child is generated and
  searched to the end before its second child is generated;
* **width** (default 2): a node gets at most ``width`` children;
* **the diversity prompt**: when a node is expanded again, the teacher is shown its previous
  children's actions (name, arguments, function output) and the node's own observation
  ("This is not the first time you try this task, all previous trails failed. ...") and
  asked for a different action; the prompt is not kept in the children's messages. As in
  ToolBench, only children that made a function call are listed (a turn with no call has
  no action to differ from), and with none the prompt is not shown;
* **backtracking**: a ``Finish(give_up_and_restart)`` node returns 2, so its parent is
  abandoned too and the search continues at the grandparent (ToolBench's
  ``prune_back_length``); a node at the **depth limit** returns 1 (the parent tries its next
  child); a node whose children are all tried returns 1;
* **a query budget**: the search stops when it has made ``max_queries`` teacher calls;
* it stops at the first ``Finish(give_answer)`` with a non-empty answer: only such a path is
  a solution (``solved``). Otherwise the result carries the last path tried and why the
  search stopped (``budget``, ``exhausted``, or ``teacher_error``: a teacher call that
  failed, after the runtime's retries, ends the search unsolved with the error in
  ``stats["error"]`` instead of failing the whole spec).

Options: ``width`` (2), ``max_depth`` (assistant turns on one path, 8), ``max_queries``
(teacher calls per instruction, 40; ToolBench used 200 with ChatGPT), ``temperature``
(0.0), ``max_tokens`` (1024). Calls go through the ``ToolCaller`` the runtime hands in
(allow-listed, size- and time-capped); the teacher is the runtime's (cached, retried).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from syllabus.contracts import (
    ApiTool,
    ChatMessage,
    SolveResult,
    Teacher,
    TeacherError,
    ToolCaller,
    ToolInstruction,
    hookimpl,
)

from ._search import DIVERSITY_PROMPT, Environment, Step, option

__all__ = ["DFSDTSearcher", "register_tool_annotators"]

#: ToolBench's final_answer_back_length / prune_back_length
_ANSWER_BACK = 2
_PRUNE_BACK = 2
#: "stop the whole search" (ToolBench returns 10000 / 100000)
_STOP = 10_000


@dataclass
class _Node:
    step: Step | None
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)
    depth: int = 0

    def path(self) -> list[Step]:
        steps: list[Step] = []
        node: _Node | None = self
        while node is not None and node.step is not None:
            steps.append(node.step)
            node = node.parent
        return steps[::-1]


class _Search:
    def __init__(self, env: Environment, *, width: int, max_depth: int) -> None:
        self.env = env
        self.width = width
        self.max_depth = max_depth
        self.root_messages = env.root()
        self.solution: _Node | None = None
        self.last: _Node | None = None
        self.stop_reason = "exhausted"
        self.error: str | None = None
        self.stats = {"nodes": 0, "expansions": 0, "diversity_prompts": 0, "give_ups": 0,
                      "depth_limits": 0, "backtracks": 0, "max_depth_reached": 0}

    def messages(self, node: _Node) -> list[ChatMessage]:
        out = list(self.root_messages)
        for s in node.path():
            out += s.messages
        return out

    def diversity(self, node: _Node) -> ChatMessage | None:
        """The diversity prompt listing ``node``'s previous children's actions."""
        previous: list[dict[str, Any]] = []
        for child in node.children:
            if child.step is None:
                continue
            # ToolBench lists only the children with a function call
            for name, arguments, output, _code in child.step.actions:
                previous.append({"name": name, "arguments": arguments,
                                 "function_output": output})
        if not previous:
            return None
        text = json.dumps(previous, indent=2, ensure_ascii=False) + "\n"
        if node.step is not None and node.step.observations:
            text += ("again, your former observation: "
                     f"{node.step.observations[-1].content}\n")
        return ChatMessage(role="user",
                           content=DIVERSITY_PROMPT.replace("{previous_candidate}", text))

    async def dfs(self, node: _Node) -> int:
        """ToolBench's DFS: the number of levels to go back (``_STOP`` ends the search)."""
        self.last = node
        if node.step is not None:
            if node.step.finished:
                if (node.step.final_answer or "").strip():
                    self.solution = node
                    return _STOP
                return 1  # an empty answer is no answer: try elsewhere
            if node.step.gave_up:
                self.stats["give_ups"] += 1
                return _PRUNE_BACK
        self.stats["max_depth_reached"] = max(self.stats["max_depth_reached"], node.depth)
        if node.depth >= self.max_depth:
            self.stats["depth_limits"] += 1
            return 1
        self.stats["expansions"] += 1
        for _ in range(self.width):
            if self.env.budget.spent:
                self.stop_reason = "budget"
                return _STOP
            messages = self.messages(node)
            prompt = self.diversity(node) if node.children else None
            if prompt is not None:
                self.stats["diversity_prompts"] += 1
                messages.append(prompt)  # shown for this expansion only
            try:
                completion = await self.env.think(messages)
            except TeacherError as exc:
                # the runtime's retries are spent (or it cannot be retried): this search
                # ends unsolved with the reason; redelivering the whole spec would repeat
                # every real API call for one teacher failure
                self.stop_reason = "teacher_error"
                self.error = str(exc)
                return _STOP
            step = await self.env.step(completion, node.depth)
            child = _Node(step=step, parent=node, depth=node.depth + 1)
            node.children.append(child)
            self.stats["nodes"] += 1
            result = await self.dfs(child)
            if self.solution is not None or result >= _STOP:
                return _STOP
            if result > 1:
                self.stats["backtracks"] += 1
                return result - 1
        return 1


class DFSDTSearcher:
    """ToolLLM's DFSDT (see the module docstring)."""

    name = "dfsdt"
    stage = "solver"

    async def solve(self, instruction: ToolInstruction, tools: list[ApiTool], *,
                    teacher: Teacher, caller: ToolCaller,
                    options: dict[str, Any]) -> SolveResult:
        width = option(options, "width", 2, int, 1)
        max_depth = option(options, "max_depth", 8, int, 1)
        env = Environment.from_options(instruction, tools, teacher=teacher, caller=caller,
                                       options=options)
        search = _Search(env, width=width, max_depth=max_depth)
        root = _Node(step=None)
        await search.dfs(root)
        node = search.solution or search.last or root
        steps = node.path()
        solved = search.solution is not None
        last = steps[-1] if steps else None
        stats: dict[str, Any] = {**search.stats, **env.stats,
                                 "stop_reason": "answer" if solved else search.stop_reason,
                                 "width": width, "max_depth": max_depth,
                                 "max_queries": env.budget.max_queries}
        return env.result(self.name, search.root_messages, steps, solved=solved,
                          gave_up=not solved and last is not None and last.gave_up,
                          stats=stats, error=search.error)


@hookimpl
def register_tool_annotators(register: Any) -> None:
    register(DFSDTSearcher())
