"""ToolEval (ToolLLM, Qin et al. 2023, §3.1 "ToolEval", App. A.5; OpenBMB/ToolBench
``toolbench/tooleval``): the pass rate of a solution path, and the win rate of one
search method against another.

Two evaluators (stage ``eval``):

``tooleval`` -- the judged pass rate, as ToolEval computes it (its ``rtl`` evaluator):

1. A path whose last turn does not call ``Finish`` fails at once (answer *Unsolved*, task
   *Solvable*, no judge call).
2. Answer status. An empty final answer or a give-up (``give_up_and_restart``) is
   *Unsolved* with no call; otherwise the judge reads the query and the final answer
   (``check_answer_status``) and says *Solved*, *Unsolved* or *Unsure*; on *Unsure* it
   reads the whole path, the observations included (``parse_answer_status``), and decides.
3. Task status. An answer that is not *Solved* sends the query and the available tools to
   the judge (``check_task_solvable``): *Solvable*, *Unsolvable* or *Unsure*.
4. The matrix: *Solved* passes; *Unsolved* on a solvable task fails, on an unsure one is
   unsure, on an unsolvable one passes; *Unsure* on an unsolvable task passes, else is
   unsure.

   ``pass_rate`` counts an unsure verdict as half a pass: the expectation of ToolEval's
   coin flip, which would make the number change from run to run (a departure).
5. **The "sorry / cannot" rule** (ToolBench's ``check_real_valid``, the judge prompt's
   rule 1): a final answer with "sorry", "apologize", "apology", "unfortunately" or
   "couldn't" -- and, as the issue asks, "cannot", "can't" or "unable to" (a departure:
   ToolBench's list does not have them) -- is *Unsolved* without a judge call, so a
   small judge cannot pass a refusal.

**Win rate** (ToolEval's preference, ``normalized_openai_completions``): for every
instruction both methods searched, a *Solved* answer beats one that is not; of two
*Solved* (or, when none is, two *Unsure*) answers, or two failures, the judge picks the
better (``select_better_answer``: informative, factual, cheaper path). Departures: the
judge is asked twice, with the answers in both orders, and a disagreement is a tie (a
small model's position bias would otherwise decide); identical answers tie with no call;
a tie counts half. The report has, per pair of methods and group, ``wins``, ``losses``,
``ties`` and ``win_rate`` (DFSDT against ReAct is the paper's comparison).

**A teacher that cannot judge.** The ``extractive`` teacher refuses the ``tool_judge``
task: offline, its instructions are its own rewrites of the API descriptions, matched
back to them by its own policy, so a rule-based judge of them would agree with itself.
(it lists the task in ``Teacher.refuses``, so it is not asked). Then, and with no
teacher at all, the report is the rule-based pass rate below, **labelled ``self-consistency``** with the
reason, and the win rate compares rule passes. A judged report is labelled ``judged``.

``toolevalrule`` -- the rule-based part alone, labelled ``self-consistency``: a path
**passes** when its last assistant turn calls ``Finish`` with ``return_type ==
"give_answer"`` and a ``final_answer`` that is not empty (white space only counts as
empty) and is not a sorry message (rule 5), and no turn of the path gave up. The
trajectory is read from its own messages, not from the searcher's ``solved`` flag, so a
searcher that claims too much is caught (``disagreements`` counts them).

Both return, per method and per instruction group (I1, I2, I3, and ``all``):
``instructions``, ``passed``, ``pass_rate``, ``teacher_calls``, ``api_calls``, and
``calls_per_solved`` (teacher calls per passed instruction, ``None`` when none passed) --
the two numbers of ToolLLM Table 3's comparison of DFSDT and ReAct; ``tooleval`` adds
``unsure``, ``failed``, ``rule_passed``, the per-path ``verdicts``, and ``judge``: its
``calls``, unusable answers (``failures``) and ``label_bias``, the verdict of each check
on a content-free case ("N/A" everywhere; Zhao et al. 2021's probe): a judge that
answers "Solved" or "Unsolvable" to nothing passes everything, and this says so. Option
``label_bias`` (true) asks those three extra calls.

**Prompts.** An instruction-tuned teacher gets ToolEval's three rules prompts (in our
words) and answers JSON (``{"status": ..., "reason": ...}``, schema enforced where the
teacher can). A base model (``teacher.base_model``, the ``local`` teacher on Gemma 3 270M)
continues a few-shot completion prompt whose next word a llama.cpp grammar limits to the
allowed statuses (or ``0``/``1``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from syllabus.contracts import (
    FINISH_TOOL,
    TASK_TOOL_JUDGE,
    ChatMessage,
    GenerationParams,
    OutputParseError,
    SolveResult,
    Teacher,
    TeacherError,
    ToolInstruction,
    ask,
    hookimpl,
    json_model,
)

__all__ = ["ANSWER_STATUSES", "TASK_STATUSES", "ToolEvalJudge", "ToolEvalRule",
           "pass_label", "passes", "register_tool_annotators",
           "sorry_message"]

ANSWER_STATUSES = ("Solved", "Unsolved", "Unsure")
TASK_STATUSES = ("Solvable", "Unsolvable", "Unsure")

#: ToolBench's ``check_real_valid`` vocabulary, then the issue's "cannot" family
SORRY_WORDS = ("sorry", "apologize", "apology", "unfortunately", "couldn't",
               "cannot", "can't", "unable to")
_SORRY = re.compile("|".join(re.escape(w) for w in SORRY_WORDS).replace("'", "['\u2019]"),
                    re.IGNORECASE)


def sorry_message(answer: str) -> str | None:
    """The word that makes ``answer`` a sorry message, or None."""
    m = _SORRY.search(answer or "")
    return m.group(0).lower() if m else None


def pass_label(answer: str, task: str) -> str:
    """ToolEval's matrix: ``Passed``, ``Failed`` or ``Unsure`` for an answer status
    (``ANSWER_STATUSES``) and a task status (``TASK_STATUSES``)."""
    if answer not in ANSWER_STATUSES or task not in TASK_STATUSES:
        raise ValueError(f"unknown status: answer {answer!r}, task {task!r}")
    if answer == "Solved":
        return "Passed"
    if task == "Unsolvable":
        return "Passed"
    if answer == "Unsolved" and task == "Solvable":
        return "Failed"
    return "Unsure"


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


def _last_turn_finishes(messages: list[dict[str, Any]]) -> bool:
    turns = [m for m in messages if m.get("role") == "assistant"]
    return bool(turns) and any(
        (c.get("function") or {}).get("name") == FINISH_TOOL
        for c in turns[-1].get("tool_calls") or ())


def _final_answer(result: SolveResult) -> tuple[str, bool]:
    """The last ``Finish``'s answer (``""`` for a give-up) and whether any turn gave up."""
    finishes = _finish_calls(result.messages)
    gave_up = any(f.get("return_type") == "give_up_and_restart" for f in finishes)
    last = finishes[-1] if finishes else {}
    answer = last.get("final_answer") if last.get("return_type") == "give_answer" else ""
    return (answer if isinstance(answer, str) else ""), gave_up


def passes(result: SolveResult) -> bool:
    """The rule-based pass: finished with a non-empty answer that is not a sorry message,
    and not a give-up."""
    if not _finish_calls(result.messages):
        return False
    answer, gave_up = _final_answer(result)
    return not gave_up and bool(answer.strip()) and sorry_message(answer) is None


def _table(rows: Sequence[tuple[ToolInstruction, SolveResult, dict[str, Any]]]
           ) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method and group: counts and rates from each path's ``credit`` (1 passed,
    0.5 unsure, 0 failed) and ``rule`` (the rule-based pass)."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for instruction, result, verdict in rows:
        for group in (instruction.group, "all"):
            row = table.setdefault(result.method, {}).setdefault(group, {
                "instructions": 0, "passed": 0, "unsure": 0, "failed": 0, "rule_passed": 0,
                "teacher_calls": 0, "api_calls": 0})
            row["instructions"] += 1
            row[{1.0: "passed", 0.5: "unsure", 0.0: "failed"}[verdict["credit"]]] += 1
            row["rule_passed"] += verdict["rule"]
            row["teacher_calls"] += result.teacher_calls
            row["api_calls"] += result.api_calls
    for groups in table.values():
        for row in groups.values():
            n, k = row["instructions"], row["passed"]
            row["pass_rate"] = round((k + 0.5 * row["unsure"]) / n, 4) if n else 0.0
            row["rule_pass_rate"] = round(row["rule_passed"] / n, 4) if n else 0.0
            row["calls_per_solved"] = round(row["teacher_calls"] / k, 2) if k else None
    return {m: dict(sorted(g.items())) for m, g in sorted(table.items())}


RULE = ("Finish(give_answer) with a non-empty final_answer that is not a sorry message "
        f"({', '.join(SORRY_WORDS)}), no give-up")
SELF_CONSISTENCY = ("self-consistency: the pass rate is the rule alone, read from paths the "
                    "same teacher wrote; it shows the searcher and the teacher agree, not "
                    "that the instructions were solved")


class ToolEvalRule:
    """The rule-based pass rate per method and instruction group (module docstring)."""

    name = "toolevalrule"
    stage = "eval"

    def evaluate(self, results: list[tuple[ToolInstruction, SolveResult]]) -> dict[str, Any]:
        rows, disagreements = [], 0
        for instruction, result in results:
            ok = passes(result)
            disagreements += ok != result.solved
            rows.append((instruction, result, {"credit": float(ok), "rule": ok}))
        table = _table(rows)
        for groups in table.values():
            for row in groups.values():
                for key in ("unsure", "failed", "rule_passed", "rule_pass_rate"):
                    row.pop(key)
        return {"evaluator": self.name, "label": "self-consistency",
                "label_reason": SELF_CONSISTENCY, "rule": RULE, "methods": table,
                "disagreements": disagreements}


# --- the judge ---------------------------------------------------------------------------


class _Status(BaseModel):
    status: str
    reason: str = ""


class _Better(BaseModel):
    index: int = Field(ge=0, le=1)
    reason: str = ""


_ANSWER_RULES = """\
Given a query and the final answer an assistant gave after calling tools, decide the \
answer's status:
1. If the answer is a sorry message, or not a positive, straight response to the query, \
the status is "Unsolved".
2. If it is a positive, straight response: if it is not enough to tell whether it solves \
the query, the status is "Unsure"; if you are sure, the status is "Solved" or "Unsolved"."""

_DETAIL_RULES = """\
Given a query and the whole execution of an answer (the tool calls and what each tool \
returned), decide the answer's status:
1. If every tool message shows an error, the status is "Unsolved".
2. If the information in the final answer is not true or valid according to the tool \
messages, the status is "Unsolved".
3. If you cannot verify that the information is true and valid, the status is "Unsure".
4. If tool calls succeeded and they do solve the query, the status is "Solved"."""

_TASK_RULES = """\
Decide whether a task can be solved with the available tools:
1. If the query gives invalid information (an invalid e-mail address or phone number, \
say), the status is "Unsolvable".
2. If the query needs more information to be solved (the name of the target restaurant \
in a navigation task, say), the status is "Unsolvable".
3. If you cannot draw a conclusion, the status is "Unsure".
4. If the available tools are enough to solve the query, the status is "Solvable"."""

_BETTER_RULES = """\
Given a query and two answers, select the better one, 0 for Answer 0 or 1 for Answer 1:
1. Compare the final answers: informative (all the information the query needs), factual \
(what was done and what failed, described accurately), and, for an answer that does not \
solve the query, a detailed and accurate reason for the failure.
2. If you cannot decide yet, compare the executions: fewer failed and repeated tool \
calls, fewer steps, more of the query's parts done, more useful tools tried."""

_JSON_TAIL = 'Answer with JSON only: {{"status": "{choices}", "reason": "<one sentence>"}}'

#: few-shot examples a base model continues, per check (``Status:`` / ``Better:`` lines)
_BASE_SHOTS = {
    "answer_status": [
        ("Query: Find the price of the H-200 hive.\n"
         "Final answer: I looked for the H-200 hive.", "Unsure"),
        ("Query: List the open orders of customer 17.\n"
         "Final answer: The weather in Oslo is 4 degrees.", "Unsolved"),
        ("Query: What is the weather in Oslo today?\n"
         "Final answer: It is 4 degrees and raining in Oslo today.", "Solved"),
    ],
    "parse_answer_status": [
        ("Query: Get the balance of account 42.\n"
         'Execution: balance(account="42") returned "<html>...</html>"\n'
         "Final answer: The balance was returned.", "Unsure"),
        ("Query: Get the balance of account 42.\n"
         'Execution: balance(account="42") returned {"error": "500 Internal Server Error"}\n'
         "Final answer: Account 42 holds 900.", "Unsolved"),
        ("Query: Get the balance of account 42.\n"
         'Execution: balance(account="42") returned {"balance": 310.5}\n'
         "Final answer: Account 42 holds 310.5.", "Solved"),
    ],
    "task_solvable": [
        ("Query: Send the report to jane@@example.\n"
         "Available tools: send_email (Sends an e-mail to an address)", "Unsolvable"),
        ("Query: Book a table at the restaurant.\n"
         "Available tools: book_table (Books a table at a named restaurant)", "Unsolvable"),
        ("Query: What is the weather in Oslo today?\n"
         "Available tools: forecast (The weather forecast for a city)", "Solvable"),
    ],
}
#: the content-free case of contextual calibration (Zhao et al. 2021): what a judge says
#: with nothing to judge is its label bias (``label_bias``)
CONTENT_FREE = {"query": "N/A", "answer": "N/A", "execution": "N/A", "tools": "N/A"}

_CHECKS = {
    "answer_status": (_ANSWER_RULES, ANSWER_STATUSES),
    "parse_answer_status": (_DETAIL_RULES, ANSWER_STATUSES),
    "task_solvable": (_TASK_RULES, TASK_STATUSES),
}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " [...]"


def _execution(result: SolveResult, limit: int = 1500) -> str:
    """The path's tool calls and what each returned, one line each."""
    calls: dict[str, str] = {}
    lines = []
    for m in result.messages:
        if m.get("role") == "assistant":
            for c in m.get("tool_calls") or ():
                fn = c.get("function") or {}
                if fn.get("name") != FINISH_TOOL:
                    calls[c.get("id", "")] = f"{fn.get('name')}({fn.get('arguments') or ''})"
        elif m.get("role") == "tool":
            call = calls.get(m.get("tool_call_id", ""), m.get("name") or "a tool")
            lines.append(f"{call} returned {_clip(str(m.get('content', '')), 240)}")
    return _clip("\n".join(lines) or "(no tool was called)", limit)


def _tools_line(result: SolveResult) -> str:
    out = []
    for t in result.tools:
        fn = t.get("function") or {}
        if fn.get("name") != FINISH_TOOL:
            out.append(f"{fn.get('name')} ({_clip(str(fn.get('description', '')), 120)})")
    return "; ".join(out) or "(none)"


def _base_case(check: str, fields: dict[str, str]) -> str:
    if check == "answer_status":
        return f"Query: {fields['query']}\nFinal answer: {fields['answer']}"
    if check == "parse_answer_status":
        return (f"Query: {fields['query']}\nExecution: {fields['execution']}\n"
                f"Final answer: {fields['answer']}")
    return f"Query: {fields['query']}\nAvailable tools: {fields['tools']}"


def status_prompts(check: str, fields: dict[str, str]) -> tuple[str, str, str]:
    """(chat prompt, base-model completion prompt, grammar) for one status check."""
    rules, choices = _CHECKS[check]
    case = _base_case(check, fields)
    chat = (f"{rules}\n\n{case}\n\n"
            + _JSON_TAIL.format(choices='" | "'.join(choices)))
    shots = "\n\n".join(f"{c}\nStatus: {s}" for c, s in _BASE_SHOTS[check])
    base = f"{rules}\n\n{shots}\n\n{case}\nStatus:"
    grammar = "root ::= " + " | ".join(f'" {c}"' for c in choices)
    return chat, base, grammar


def better_prompts(query: str, answers: Sequence[tuple[str, str]]) -> tuple[str, str, str]:
    """(chat prompt, base prompt, grammar) for ``select_better_answer`` of two
    (final answer, execution) pairs."""
    body = "\n\n".join(f"Answer {i}:\nFinal answer: {a or '(none)'}\nExecution: {e}"
                       for i, (a, e) in enumerate(answers))
    chat = (f"{_BETTER_RULES}\n\nQuery: {query}\n\n{body}\n\n"
            'Answer with JSON only: {"index": <0 or 1>, "reason": "<one sentence>"}')
    base = f"{_BETTER_RULES}\n\nQuery: {query}\n\n{body}\n\nThe better answer is Answer"
    return chat, base, 'root ::= " 0" | " 1"'


def _parse_choice(choices: Sequence[str], base: bool) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if base:
            word = text.strip().split()[0].strip(".,:") if text.strip() else ""
        else:
            word = json_model(_Status)(text).status.strip()
        for c in choices:
            if word.lower() == c.lower():
                return c
        raise OutputParseError(f"the status {word[:40]!r} is not one of {', '.join(choices)}")
    return parse


def _parse_index(base: bool) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if base:
            m = re.match(r"\s*([01])(?!\d)", text)
            if not m:
                raise OutputParseError(f"the continuation is not 0 or 1: {text[:40]!r}")
            return int(m.group(1))
        return json_model(_Better)(text).index
    return parse


class _Judge:
    """Asks one teacher ToolEval's checks, counting calls and failures."""

    def __init__(self, teacher: Teacher, options: dict[str, Any]) -> None:
        self.teacher = teacher
        self.base = bool(getattr(teacher, "base_model", False))
        self.temperature = float(options.get("temperature", 0.0))
        self.calls = 0
        self.failures: list[str] = []

    async def _ask(self, check: str, chat: str, base_prompt: str, grammar: str,
                   parse: Callable[[str], Any], schema: dict[str, Any], inputs: dict[str, Any]
                   ) -> Any:
        params = GenerationParams(
            temperature=self.temperature, max_tokens=4 if self.base else 200,
            json_schema=None if self.base else schema,
            prompt=base_prompt if self.base else None, grammar=grammar if self.base else None,
            task=TASK_TOOL_JUDGE, inputs={"check": check, **inputs})
        try:
            result = await ask(self.teacher, [ChatMessage(role="user", content=chat)],
                               params=params, parse=parse)
        except TeacherError as exc:  # after the runtime's retries: this check is unsure
            self.calls += 1
            self.failures.append(f"{check}: the teacher failed: {exc}")
            return None
        self.calls += len(result.completions)
        if not result.ok:
            self.failures.append(f"{check}: unusable output ({result.error}): "
                                 f"{result.raw[:200]!r}")
            return None
        return result.value

    async def status(self, check: str, fields: dict[str, str]) -> str | None:
        chat, base_prompt, grammar = status_prompts(check, fields)
        choices = _CHECKS[check][1]
        schema = {"type": "object", "required": ["status", "reason"],
                  "properties": {"status": {"enum": list(choices)},
                                 "reason": {"type": "string"}}}
        return await self._ask(check, chat, base_prompt, grammar,
                               _parse_choice(choices, self.base), schema, fields)

    async def label_bias(self) -> dict[str, str | None]:
        """Each check's verdict on the content-free case (``CONTENT_FREE``)."""
        return {check: await self.status(check, CONTENT_FREE) for check in _CHECKS}

    async def better(self, query: str, answers: Sequence[tuple[str, str]]) -> int | None:
        """0 or 1, asked in both orders; None for a tie (the two orders disagree)."""
        picks = []
        for order in ((0, 1), (1, 0)):
            chat, base_prompt, grammar = better_prompts(query, [answers[i] for i in order])
            pick = await self._ask("better_answer", chat, base_prompt, grammar,
                                   _parse_index(self.base), _Better.model_json_schema(),
                                   {"query": query})
            if pick is None:
                return None
            picks.append(order[pick])
        return picks[0] if picks[0] == picks[1] else None


async def _verdict(judge: _Judge, ins: ToolInstruction, res: SolveResult) -> dict[str, Any]:
    """One path's ToolEval verdict (module docstring, steps 1-5)."""
    answer, gave_up = _final_answer(res)
    rule = passes(res)
    out: dict[str, Any] = {"instruction_id": ins.instruction_id, "method": res.method,
                           "rule": rule}
    fields = {"query": ins.query, "answer": _clip(answer, 1500)}
    if not _finish_calls(res.messages) or not _last_turn_finishes(res.messages):
        out.update(answer_status="Unsolved", task_status="Solvable",
                   reason="the path does not end with a Finish call")
    else:
        word = sorry_message(answer)
        if gave_up or not answer.strip():
            status, why = "Unsolved", "an empty final answer or a give-up"
        elif word:
            status, why = "Unsolved", f"a sorry message ({word!r})"
        else:
            status = await judge.status("answer_status", fields)
            why = "judged from the final answer"
            if status == "Unsure":
                status = await judge.status("parse_answer_status", {
                    **fields, "execution": _execution(res)})
                why = "judged from the execution"
            if status is None:
                status, why = "Unsure", "the judge's answer could not be used"
        task = "Solvable"
        if status != "Solved":
            task = await judge.status("task_solvable", {"query": ins.query,
                                                        "tools": _tools_line(res)}) or "Unsure"
        out.update(answer_status=status, task_status=task, reason=why)
    out["label"] = pass_label(out["answer_status"], out["task_status"])
    out["credit"] = {"Passed": 1.0, "Unsure": 0.5, "Failed": 0.0}[out["label"]]
    return out


_RANK = {"Solved": 2, "Unsure": 1, "Unsolved": 0}


async def _preference(judge: _Judge | None, ins: ToolInstruction,
                      a: tuple[SolveResult, dict[str, Any]],
                      b: tuple[SolveResult, dict[str, Any]]) -> float:
    """1 when ``a`` wins, 0 when ``b`` does, 0.5 for a tie (ToolEval's preference)."""
    (ra, va), (rb, vb) = a, b
    if judge is None:  # self-consistency: rule passes only
        return 0.5 if va["rule"] == vb["rule"] else float(va["rule"])
    sa, sb = _RANK[va["answer_status"]], _RANK[vb["answer_status"]]
    if sa != sb:
        return float(sa > sb)
    answers = [(_final_answer(r)[0], _execution(r, 700)) for r in (ra, rb)]
    if answers[0] == answers[1]:
        return 0.5
    pick = await judge.better(ins.query, answers)
    return 0.5 if pick is None else float(pick == 0)


def _win_rates(prefs: dict[tuple[str, str], list[tuple[str, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (ma, mb), rows in sorted(prefs.items()):
        groups: dict[str, dict[str, Any]] = {}
        for group, score in rows:
            for g in (group, "all"):
                row = groups.setdefault(g, {"instructions": 0, "wins": 0, "losses": 0,
                                            "ties": 0})
                row["instructions"] += 1
                row[{1.0: "wins", 0.0: "losses", 0.5: "ties"}[score]] += 1
        for row in groups.values():
            row["win_rate"] = round((row["wins"] + 0.5 * row["ties"]) / row["instructions"], 4)
        out[f"{ma}_vs_{mb}"] = dict(sorted(groups.items()))
    return out


class ToolEvalJudge:
    """The judged pass rate and the win rate (module docstring). Options (the
    api-annotator's ``evaluator_options``): ``temperature`` (0.0), ``concurrency`` (4),
    ``reference`` (the method the others are compared with, ``react``), ``label_bias``
    (true)."""

    name = "tooleval"
    stage = "eval"

    async def evaluate(self, results: list[tuple[ToolInstruction, SolveResult]], *,
                       teacher: Teacher | None = None,
                       options: dict[str, Any] | None = None) -> dict[str, Any]:
        options = options or {}
        label, label_reason, judge = "judged", "", None
        if teacher is None:
            label, label_reason = "self-consistency", "no teacher to judge with; " \
                + SELF_CONSISTENCY
        elif TASK_TOOL_JUDGE in getattr(teacher, "refuses", ()):
            label = "self-consistency"
            label_reason = (f"the {teacher.kind} teacher does not judge tool answers; "
                            + SELF_CONSISTENCY)
        else:
            judge = _Judge(teacher, options)
        sem = asyncio.Semaphore(max(1, int(options.get("concurrency", 4))))
        if judge is None:
            verdicts = [{"instruction_id": i.instruction_id, "method": r.method,
                         "rule": passes(r), "credit": float(passes(r)),
                         "label": "Passed" if passes(r) else "Failed",
                         "reason": "rule"} for i, r in results]
        else:
            async def one(pair: tuple[ToolInstruction, SolveResult]) -> dict[str, Any]:
                async with sem:
                    return await _verdict(judge, *pair)

            verdicts = list(await asyncio.gather(*(one(p) for p in results)))
        rows = [(i, r, v) for (i, r), v in zip(results, verdicts, strict=True)]
        by_instruction: dict[str, dict[str, tuple[SolveResult, dict[str, Any]]]] = {}
        groups = {}
        for ins, res, v in rows:
            by_instruction.setdefault(ins.instruction_id, {})[res.method] = (res, v)
            groups[ins.instruction_id] = ins
        reference = str(options.get("reference", "react"))
        pairs = [(method, groups[iid], pair, methods[reference])
                 for iid, methods in by_instruction.items() if reference in methods
                 for method, pair in sorted(methods.items()) if method != reference]

        async def prefer(method: str, ins: ToolInstruction, a: Any, b: Any
                         ) -> tuple[str, str, float]:
            async with sem:
                return method, ins.group, await _preference(judge, ins, a, b)

        prefs: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for method, group, score in await asyncio.gather(*(prefer(*p) for p in pairs)):
            prefs.setdefault((method, reference), []).append((group, score))
        report: dict[str, Any] = {
            "evaluator": self.name, "label": label, "rule": RULE,
            "methods": _table(rows), "win_rates": _win_rates(prefs),
            "disagreements": sum(v["rule"] != r.solved for _, r, v in rows),
            "verdicts": [{k: v[k] for k in ("instruction_id", "method", "label", "reason",
                                            "answer_status", "task_status") if k in v}
                         for _, _, v in rows]}
        if label_reason:
            report["label_reason"] = label_reason
        if judge is not None:
            bias = await judge.label_bias() if options.get("label_bias", True) else None
            report["judge"] = {"teacher": f"{teacher.kind}:{teacher.model}",
                               "base_model": judge.base, "calls": judge.calls,
                               "failures": judge.failures, "label_bias": bias}
        return report


@hookimpl
def register_tool_annotators(register: Any) -> None:
    register(ToolEvalRule())
    register(ToolEvalJudge())
