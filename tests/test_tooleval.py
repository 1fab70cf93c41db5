"""ToolEval (ToolLLM, Qin et al. 2023): the judged pass rate, its solvable/solved/unsure
matrix, the "sorry / cannot" rule, the win rate of DFSDT against ReAct, and the
"self-consistency" label of the offline (rule-only) pass rate.

The matrix is checked against ToolBench's own table (``rtl.py``'s ``is_passed``), written
out here case by case. The judge's flow runs against a scripted OpenAI server (its
replies fixed, one of them unusable); the real model (Gemma 3 270M through the ``local``
teacher) judges once in the slow test."""

from __future__ import annotations

import json
from typing import Any

import pytest

from syllabus.contracts import (
    TASK_TOOL_JUDGE,
    GenerationParams,
    SolveResult,
    TeacherError,
    ToolInstruction,
)
from syllabus.plugins.teachers.extractive import ExtractiveTeacher
from syllabus.plugins.teachers.openai import OpenAITeacherFactory
from syllabus.plugins.tools.tooleval import (
    ToolEvalJudge,
    ToolEvalRule,
    pass_label,
    passes,
    sorry_message,
)
from tests.openai_server import ScriptedOpenAI, json_reply, text

pytest_plugins = ["tests.openai_server"]


def path(method: str, answer: str | None = "", *, give_up: bool = False, finish: bool = True,
         observation: str = '{"error": "", "response": "{\\"price\\": 12}"}') -> SolveResult:
    """A solution path: one API call, its observation, then Finish (or no Finish)."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are AutoGPT"},
        {"role": "user", "content": "the query"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "honey_price", "arguments": '{"country": "Kenya"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "honey_price", "content": observation}]
    if finish:
        args = ({"return_type": "give_up_and_restart"} if give_up else
                {"return_type": "give_answer", "final_answer": answer})
        messages.append({"role": "assistant", "content": "", "tool_calls": [
            {"id": "c2", "type": "function",
             "function": {"name": "Finish", "arguments": json.dumps(args)}}]})
    tools = [{"type": "function", "function": {
        "name": "honey_price", "description": "The market price of honey in a country",
        "parameters": {"type": "object", "properties": {"country": {"type": "string"}}}}}]
    return SolveResult(method=method, solved=bool(answer) and finish and not give_up,
                       messages=messages, tools=tools, teacher_calls=2, api_calls=1)


def ins(iid: str, group: str = "I1",
        query: str = "What is the price of honey in Kenya?") -> ToolInstruction:
    return ToolInstruction(instruction_id=iid, group=group, query=query,
                           relevant_apis=["honey_price"], sampled_tools=["honey_price"])


# --- the matrix and the rules ------------------------------------------------------------

#: ToolBench ``rtl.py`` ``is_passed``: (answer status, task status) -> pass label
TOOLBENCH_MATRIX = {
    ("Solved", "Solvable"): "Passed", ("Solved", "Unsure"): "Passed",
    ("Solved", "Unsolvable"): "Passed",
    ("Unsolved", "Solvable"): "Failed", ("Unsolved", "Unsure"): "Unsure",
    ("Unsolved", "Unsolvable"): "Passed",
    ("Unsure", "Solvable"): "Unsure", ("Unsure", "Unsure"): "Unsure",
    ("Unsure", "Unsolvable"): "Passed",
}


@pytest.mark.parametrize(("statuses", "label"), sorted(TOOLBENCH_MATRIX.items()))
def test_pass_label_is_toolevals_matrix(statuses, label):
    assert pass_label(*statuses) == label


def test_pass_label_refuses_unknown_statuses():
    with pytest.raises(ValueError, match="unknown status"):
        pass_label("Maybe", "Solvable")


@pytest.mark.parametrize("answer", [
    "Sorry, I could not find the price.", "I apologize, the API failed.",
    "Unfortunately the service is down.", "I couldn't reach the API.",
    "I cannot answer this.", "I can\u2019t find it.", "I was unable to get the price."])
def test_a_sorry_message_does_not_pass_the_rule(answer):
    assert sorry_message(answer)
    assert not passes(path("dfsdt", answer))


def test_a_straight_answer_passes_the_rule():
    assert sorry_message("Honey costs 12 dollars a kilogram in Kenya.") is None
    assert passes(path("dfsdt", "Honey costs 12 dollars a kilogram in Kenya."))


def test_the_rule_report_is_labelled_self_consistency():
    report = ToolEvalRule().evaluate([(ins("a"), path("dfsdt", "Sorry, no price.")),
                                      (ins("b"), path("dfsdt", "12 dollars."))])
    assert report["label"] == "self-consistency"
    assert report["methods"]["dfsdt"]["all"]["passed"] == 1
    assert report["disagreements"] == 1  # the searcher called the sorry message solved


# --- offline: the extractive teacher refuses to judge -----------------------------------


async def test_the_extractive_teacher_refuses_the_judge_task():
    teacher = ExtractiveTeacher()
    assert TASK_TOOL_JUDGE in teacher.refuses
    with pytest.raises(TeacherError, match="does not judge") as exc:
        await teacher.complete([], params=GenerationParams(
            task=TASK_TOOL_JUDGE, inputs={"check": "answer_status", "query": "q"}))
    assert not exc.value.retryable


async def test_tooleval_with_the_extractive_teacher_is_self_consistency():
    results = [(ins("a"), path("dfsdt", "12 dollars.")), (ins("a"), path("react", "")),
               (ins("b"), path("dfsdt", "Sorry.")), (ins("b"), path("react", "12."))]
    report = await ToolEvalJudge().evaluate(results, teacher=ExtractiveTeacher())
    assert report["label"] == "self-consistency"
    assert "does not judge" in report["label_reason"]
    assert "judge" not in report
    assert report["methods"]["dfsdt"]["all"]["passed"] == 1
    # win rate from rule passes: a wins for dfsdt, b for react
    row = report["win_rates"]["dfsdt_vs_react"]["all"]
    assert (row["wins"], row["losses"], row["ties"], row["win_rate"]) == (1, 1, 0, 0.5)


# --- the judge's flow, on a scripted OpenAI server ---------------------------------------


def _check(request: dict[str, Any]) -> str:
    prompt = request["messages"][-1]["content"]
    if "decide the answer's status" in prompt and "whole execution" in prompt:
        return "parse_answer_status"
    if "decide the answer's status" in prompt:
        return "answer_status"
    if "can be solved with the available tools" in prompt:
        return "task_solvable"
    return "better_answer"


async def test_the_judge_follows_toolevals_steps(openai_server: ScriptedOpenAI):
    asked: list[str] = []

    def judge(request: dict[str, Any]) -> Any:
        check = _check(request)
        asked.append(check)
        prompt = request["messages"][-1]["content"]
        if check == "answer_status":
            status = ("Solved" if "12 dollars" in prompt else
                      "Unsure" if "price was returned" in prompt else "Unsolved")
            return json_reply({"status": status, "reason": "r"})
        if check == "parse_answer_status":
            return json_reply({"status": "Unsolved", "reason": "the API failed"})
        if check == "task_solvable":
            status = "Unsolvable" if "Atlantis" in prompt else "Solvable"
            return json_reply({"status": status, "reason": "r"})
        # better_answer: prefer the answer that names a number, in either order
        a0 = prompt.split("Answer 0:")[1].split("Answer 1:")[0]
        return json_reply({"index": 0 if any(c.isdigit() for c in a0) else 1,
                           "reason": "r"})

    openai_server.default = judge
    teacher = OpenAITeacherFactory().create({"url": openai_server.url, "model": "judge"})
    results = [
        (ins("solved"), path("dfsdt", "Honey costs 12 dollars a kilogram.")),
        (ins("solved"), path("react", "Sorry, the price API failed.")),
        (ins("unsure", "I2"), path("dfsdt", "The price was returned.",
                                   observation='{"error": "500", "response": ""}')),
        (ins("unsure", "I2"), path("react", finish=False)),
        (ins("atlantis", "I3", "What is the price of honey in Atlantis?"),
         path("dfsdt", "There is no such country.")),
    ]
    try:
        report = await ToolEvalJudge().evaluate(results, teacher=teacher,
                                                options={"concurrency": 1, "label_bias": False})
    finally:
        await teacher.aclose()
    assert report["label"] == "judged"
    v = {(x["instruction_id"], x["method"]): x for x in report["verdicts"]}
    assert v[("solved", "dfsdt")]["label"] == "Passed"
    # the sorry message is Unsolved by the rule, with no answer-status call; solvable
    assert v[("solved", "react")]["answer_status"] == "Unsolved"
    assert "sorry" in v[("solved", "react")]["reason"]
    assert v[("solved", "react")]["label"] == "Failed"
    # Unsure -> the execution is read -> Unsolved on a solvable task: failed
    assert v[("unsure", "dfsdt")]["reason"] == "judged from the execution"
    assert v[("unsure", "dfsdt")]["label"] == "Failed"
    # no Finish: failed with no call
    assert v[("unsure", "react")]["reason"] == "the path does not end with a Finish call"
    # an unsolvable task passes though the answer is Unsolved
    assert v[("atlantis", "dfsdt")]["answer_status"] == "Unsolved"
    assert v[("atlantis", "dfsdt")]["label"] == "Passed"
    assert asked.count("answer_status") == 3 and asked.count("parse_answer_status") == 1
    # three tasks checked: the sorry message's, the unsure one's, Atlantis's
    assert asked.count("task_solvable") == 3
    d = report["methods"]["dfsdt"]["all"]
    assert (d["instructions"], d["passed"], d["failed"], d["pass_rate"]) == (3, 2, 1, 0.6667)
    # win rate: solved beats unsolved; Unsolved (a wrong answer) vs Unsolved (no Finish)
    # goes to the judge, asked in both orders
    win = report["win_rates"]["dfsdt_vs_react"]
    assert win["I1"]["wins"] == 1 and win["all"]["instructions"] == 2
    assert report["judge"]["calls"] == len(asked) and report["judge"]["failures"] == []


async def test_an_unusable_judge_answer_is_counted_and_unsure(openai_server: ScriptedOpenAI):
    openai_server.script(text("Solved, I think"), text("still not JSON"),
                         json_reply({"status": "Solvable", "reason": "r"}))
    teacher = OpenAITeacherFactory().create({"url": openai_server.url, "model": "judge"})
    try:
        report = await ToolEvalJudge().evaluate(
            [(ins("x"), path("dfsdt", "Honey costs 12 dollars."))], teacher=teacher,
            options={"label_bias": False})
    finally:
        await teacher.aclose()
    (verdict,) = report["verdicts"]
    assert verdict["answer_status"] == "Unsure" and verdict["label"] == "Unsure"
    assert verdict["reason"] == "the judge's answer could not be used"
    assert report["methods"]["dfsdt"]["all"]["pass_rate"] == 0.5
    assert report["judge"]["failures"]


# --- the real model ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_gemma_judges_paths_through_grammars(tmp_path):
    from syllabus.plugins.teachers.local import LocalTeacherFactory

    teacher = LocalTeacherFactory().create({"log_dir": str(tmp_path), "engine_check": 0})
    results = [(ins("a"), path("dfsdt", "Honey costs 12 dollars a kilogram in Kenya.")),
               (ins("a"), path("react", "Sorry, I could not get the price.")),
               (ins("b", "I2"), path("dfsdt", "The price was returned.",
                                     observation='{"error": "500 Internal Server Error"}')),
               (ins("b", "I2"), path("react", "Kenya."))]
    try:
        report = await ToolEvalJudge().evaluate(results, teacher=teacher)
    finally:
        await teacher.aclose()
    assert report["label"] == "judged", report
    assert report["judge"]["base_model"] and report["judge"]["calls"] >= 3
    # the grammar leaves the model only the statuses: nothing unusable
    assert report["judge"]["failures"] == [], report["judge"]["failures"]
    v = {(x["instruction_id"], x["method"]): x for x in report["verdicts"]}
    assert v[("a", "react")]["label"] == "Failed" or v[("a", "react")]["task_status"] != \
        "Solvable"
    for x in report["verdicts"]:
        assert x["answer_status"] in ("Solved", "Unsolved", "Unsure")
        assert x["task_status"] in ("Solvable", "Unsolvable", "Unsure")
    assert report["win_rates"]["dfsdt_vs_react"]["all"]["instructions"] == 2
    # the content-free probe: one verdict per check, from the allowed words
    bias = report["judge"]["label_bias"]
    assert set(bias) == {"answer_status", "parse_answer_status", "task_solvable"}
    assert bias["task_solvable"] in ("Solvable", "Unsolvable", "Unsure")
