"""DFSDT and ReAct (ToolLLM §2.3) against a real local HTTP API, with the ``openai``
teacher talking to a scripted OpenAI function-calling server; ToolEval's rule-based pass
rate; the ``extractive`` teacher annotating single-tool instructions end to end."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from syllabus.contracts import (
    ChatMessage,
    GenerationParams,
    SolveResult,
    ToolInstruction,
)
from syllabus.plugins.teachers.extractive import ExtractiveTeacher
from syllabus.plugins.teachers.openai import OpenAITeacher
from syllabus.plugins.tools.dfsdt import DFSDTSearcher
from syllabus.plugins.tools.react import ReActSearcher
from syllabus.plugins.tools.tooleval import ToolEvalRule, passes
from tests.openai_server import ScriptedOpenAI, call, error, text, tool_call, tool_calls
from tests.tool_search_api import LocalToolApi, ToolSpec

pytestmark = pytest.mark.timeout(120)

DIVERSITY = "This is not the first time you try this task"


def _last_tool(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    for m in reversed(messages):
        if m.get("role") == "tool":
            return m
        if m.get("role") == "assistant":
            return None
    return None


def wrong_then_right(request: dict[str, Any]) -> Any:
    """A teacher that first calls the broken legacy endpoint, gives up after its error,
    and only tries the working one when the diversity prompt asks for something else."""
    messages = request["messages"]
    assert request["tools"][-1]["function"]["name"] == "Finish"
    assert request.get("tool_choice") == "auto"
    last = messages[-1]
    if last["role"] == "user" and DIVERSITY in last["content"]:
        return tool_call("get_hive", {"hive_id": "H-17"}, content="Try the other endpoint.")
    observed = _last_tool(messages)
    if observed is None:
        return tool_call("get_hive_legacy", {"hive_id": "H-17"}, content="Look the hive up.")
    obs = json.loads(observed["content"])
    if obs["error"]:
        return tool_call("Finish", {"return_type": "give_up_and_restart"},
                         content="The call failed. I give up and restart.")
    return tool_call("Finish", {"return_type": "give_answer",
                                "final_answer": f"Hive H-17: {obs['response']}"})


@pytest.fixture
def hive_api():
    specs = [ToolSpec("get_hive", "Returns one hive by its id", required={"hive_id": "H-17"},
                      category="hives"),
             ToolSpec("get_hive_legacy", "Returns one hive (legacy endpoint)",
                      behaviour="500", required={"hive_id": None}, category="hives")]
    with LocalToolApi(specs) as api:
        yield api


def _instruction(query: str, tools: list[str], group: str = "I1") -> ToolInstruction:
    return ToolInstruction(instruction_id="t1", group=group, query=query,
                           relevant_apis=tools[:1], sampled_tools=tools)


async def _solve(searcher: Any, api: LocalToolApi, server: ScriptedOpenAI,
                 options: dict[str, Any] | None = None) -> SolveResult:
    tools = api.tools()
    async with OpenAITeacher(model="scripted-model", url=server.url) as teacher, \
            api.caller() as caller:
        return await searcher.solve(
            _instruction("How is hive H-17 doing?", [t.name for t in tools]), tools,
            teacher=teacher, caller=caller, options=options or {})


def test_dfsdt_backtracks_after_give_up_and_solves_where_react_fails(hive_api, openai_server):
    openai_server.default = wrong_then_right
    react = asyncio.run(_solve(ReActSearcher(), hive_api, openai_server))
    assert not react.solved and react.gave_up
    assert react.stats["stop_reason"] == "give_up"
    assert react.teacher_calls == 2 and react.api_calls == 1
    assert not passes(react)
    react_requests = len(openai_server.requests)
    assert hive_api.hits == {"get_hive_legacy": 1}

    dfsdt = asyncio.run(_solve(DFSDTSearcher(), hive_api, openai_server))
    assert dfsdt.solved and not dfsdt.gave_up
    assert dfsdt.final_answer.startswith("Hive H-17:") and "hive_id=H-17" in dfsdt.final_answer
    assert passes(dfsdt)
    # root -> legacy call -> give up (back two levels) -> root again, with the diversity
    # prompt -> the right call -> answer: four teacher calls, two real API calls
    assert dfsdt.teacher_calls == 4 and dfsdt.api_calls == 2
    assert dfsdt.stats["give_ups"] == 1 and dfsdt.stats["diversity_prompts"] == 1
    assert hive_api.hits["get_hive"] == 1 and hive_api.hits["get_hive_legacy"] == 2

    requests = [r.json for r in openai_server.requests[react_requests:]]
    diverse = [r for r in requests if DIVERSITY in r["messages"][-1]["content"]]
    assert len(diverse) == 1
    listed = diverse[0]["messages"][-1]["content"]
    assert '"name": "get_hive_legacy"' in listed and "internal error" in listed
    # the diversity prompt is not inherited by the children's messages
    assert DIVERSITY not in json.dumps(requests[-1]["messages"])
    # the kept path is the successful one: system, user, call, observation, Finish, obs
    roles = [m["role"] for m in dfsdt.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert dfsdt.messages[2]["tool_calls"][0]["function"]["name"] == "get_hive"
    assert "get_hive_legacy" not in json.dumps(dfsdt.messages[2:])
    assert dfsdt.messages[3]["tool_call_id"] == dfsdt.messages[2]["tool_calls"][0]["id"]


def test_dfsdt_depth_limit_width_and_query_budget(hive_api, openai_server):
    # a teacher that never finishes: it keeps calling the broken endpoint
    openai_server.default = lambda r: tool_call("get_hive_legacy", {"hive_id": "x"})
    full = asyncio.run(_solve(DFSDTSearcher(), hive_api, openai_server,
                              {"width": 2, "max_depth": 2, "max_queries": 100}))
    # pre-order DFS of a width-2, depth-2 tree: 2 + 2*2 nodes, then nothing is left
    assert not full.solved and full.stats["stop_reason"] == "exhausted"
    assert full.teacher_calls == 6 and full.stats["depth_limits"] == 4
    assert full.stats["nodes"] == 6 and full.stats["diversity_prompts"] == 3

    limited = asyncio.run(_solve(DFSDTSearcher(), hive_api, openai_server,
                                 {"width": 2, "max_depth": 2, "max_queries": 4}))
    assert not limited.solved and limited.stats["stop_reason"] == "budget"
    assert limited.teacher_calls == 4

    chain = asyncio.run(_solve(ReActSearcher(), hive_api, openai_server,
                               {"max_depth": 3, "max_queries": 100}))
    assert chain.stats["stop_reason"] == "depth_limit" and chain.teacher_calls == 3


def test_diversity_prompt_lists_only_children_that_made_a_call(hive_api, openai_server):
    """ToolBench lists a previous child only when it made a function call: a turn with no
    call is not an action to differ from (and with none, no diversity prompt at all)."""
    openai_server.script(text("Let me think."),
                         tool_call("get_hive_legacy", {"hive_id": "x"}, content="Try it."))
    openai_server.default = lambda r: text("Still thinking.")
    result = asyncio.run(_solve(DFSDTSearcher(), hive_api, openai_server,
                                {"width": 3, "max_depth": 1}))
    assert not result.solved and result.teacher_calls == 3
    requests = [r.json["messages"][-1]["content"] for r in openai_server.requests]
    # the second expansion: its only previous child made no call, so no prompt
    assert DIVERSITY not in requests[1]
    # the third: the legacy call is listed, the no-call turn is not
    assert DIVERSITY in requests[2] and '"name": "get_hive_legacy"' in requests[2]
    assert "Let me think" not in requests[2] and "null" not in requests[2]
    assert result.stats["diversity_prompts"] == 1


@pytest.mark.parametrize("searcher", [DFSDTSearcher(), ReActSearcher()],
                         ids=["dfsdt", "react"])
def test_a_failed_teacher_call_ends_the_search_unsolved(hive_api, openai_server, searcher):
    """A retryable teacher error (the runtime's retries spent) is this search's end, with
    the reason, not an exception that fails the whole spec."""
    openai_server.script(tool_call("get_hive", {"hive_id": "H-17"}),
                         error(503, "the model is overloaded"))
    result = asyncio.run(_solve(searcher, hive_api, openai_server))
    assert not result.solved and result.stats["stop_reason"] == "teacher_error"
    assert "overloaded" in result.stats["error"] and result.teacher_calls == 2
    assert result.api_calls == 1 and len(result.messages) == 4  # the path so far is kept


def test_hallucinated_function_bad_arguments_and_empty_answers_are_observed(hive_api,
                                                                           openai_server):
    openai_server.script(
        tool_calls(call("delete_everything", {}), content="Hmm."),
        tool_call("get_hive", "{not json"),
        tool_call("Finish", {"return_type": "give_answer", "final_answer": "  "}),
    )
    openai_server.default = lambda r: text("I am not sure.")
    result = asyncio.run(_solve(ReActSearcher(), hive_api, openai_server,
                                {"max_depth": 4}))
    observations = [json.loads(m["content"]) for m in result.messages if m["role"] == "tool"]
    assert observations[0]["error"] == "No such function name: delete_everything"
    assert "not valid JSON" in observations[1]["error"]
    assert result.stats["hallucinated_calls"] == 1 and result.stats["bad_arguments"] == 1
    assert result.api_calls == 0 and sum(hive_api.hits.values()) == 0
    # Finish with a blank answer ends the chain but is no solution
    assert not result.solved and result.stats["stop_reason"] == "empty_answer"
    assert not passes(result)


def test_tooleval_pass_rate_per_group_and_method():
    def result(method: str, answer: str | None, give_up: bool = False,
               claimed: bool = False) -> SolveResult:
        args = ({"return_type": "give_up_and_restart"} if give_up else
                {"return_type": "give_answer", "final_answer": answer})
        messages = [{"role": "user", "content": "q"},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"id": "c", "type": "function",
                         "function": {"name": "Finish", "arguments": json.dumps(args)}}]}]
        return SolveResult(method=method, solved=claimed, messages=messages,
                           teacher_calls=3, api_calls=1)

    def ins(group: str) -> ToolInstruction:
        return ToolInstruction(instruction_id=group, group=group, query="q",
                               relevant_apis=["a"], sampled_tools=["a"])

    report = ToolEvalRule().evaluate([
        (ins("I1"), result("dfsdt", "yes", claimed=True)),
        (ins("I1"), result("dfsdt", "", claimed=True)),       # empty: not passed
        (ins("I2"), result("dfsdt", "fine", claimed=True)),
        (ins("I1"), result("react", None, give_up=True)),
        (ins("I2"), result("react", "ok")),                    # claims unsolved, passes
    ])
    d = report["methods"]["dfsdt"]
    assert d["I1"]["instructions"] == 2 and d["I1"]["passed"] == 1 and d["I1"]["pass_rate"] == 0.5
    assert d["I2"]["pass_rate"] == 1.0 and d["all"]["passed"] == 2
    assert d["all"]["calls_per_solved"] == 4.5  # 9 teacher calls for 2 passed
    r = report["methods"]["react"]
    assert r["I1"]["passed"] == 0 and r["I1"]["calls_per_solved"] is None
    assert r["I2"]["passed"] == 1
    assert report["disagreements"] == 2


# --- the extractive teacher -------------------------------------------------------------

APIARY = [
    ToolSpec("list_hives", "Lists the hives of an apiary", required={"apiary_id": "north-field"},
             category="hives"),
    ToolSpec("get_weather", "Returns the weather forecast for a city",
             required={"city": "Lyon"}, category="weather"),
    ToolSpec("count_mites", "Counts the varroa mites found in a hive inspection",
             required={"hive_id": "H-17"}, category="inspections"),
    ToolSpec("get_honey_price", "Returns the market price of honey in a country",
             required={"country": None}, category="market",
             enum={"country": ["France", "Norway", "Kenya"]}),
]


def test_extractive_teacher_generates_and_annotates_single_tool_instructions():
    """The offline teacher's mechanics. Its paths are solved by construction (it wrote the
    instructions from the descriptions it then matches), so ``solved`` here proves only
    that the two rules agree ("self-consistency"); what the test checks beyond that is
    that every call reached the real API with the arguments written into the query."""
    teacher = ExtractiveTeacher()
    with LocalToolApi(APIARY) as api:
        tools = api.tools()
        apis = [{"tool": t.category, "api": t.name, "description": t.description,
                 "parameters": t.parameters, "example_arguments": t.example_arguments}
                for t in tools]
        completion = asyncio.run(teacher.complete([], params=GenerationParams(
            task="tool_instructions", inputs={"group": "I1", "n": 10, "apis": apis})))
        queries = json.loads(completion.text)
        assert [q["related_apis"] for q in queries] == [[[t.category, t.name]] for t in tools]
        assert queries[0]["query"] == 'List the hives of an apiary for apiary id "north-field".'
        assert queries[1]["query"].startswith("Return the weather forecast for a city")
        queries.append({"query": "What does honey sell for in Norway?",
                        "related_apis": [["market", "get_honey_price"]]})

        async def annotate() -> list[SolveResult]:
            out = []
            async with api.caller() as caller:
                for i, q in enumerate(queries):
                    ins = ToolInstruction(instruction_id=str(i), group="I1", query=q["query"],
                                          relevant_apis=[q["related_apis"][0][1]],
                                          sampled_tools=[t.name for t in tools])
                    out.append(await DFSDTSearcher().solve(ins, tools, teacher=teacher,
                                                           caller=caller, options={}))
            return out

        results = asyncio.run(annotate())
    for q, r in zip(queries, results, strict=True):
        assert r.solved, (q, r.stats)
        called = [c["function"]["name"] for m in r.messages if m["role"] == "assistant"
                  for c in m["tool_calls"]]
        assert called == [q["related_apis"][0][1], "Finish"]
        assert r.teacher_calls == 2 and r.api_calls == 1
    assert "country=Norway" in results[-1].final_answer
    assert "apiary_id=north-field" in results[0].final_answer
    assert api.hits == {**{t.name: 1 for t in tools}, "get_honey_price": 2}


def test_extractive_policy_tries_the_next_function_after_a_failure_and_gives_up_last():
    specs = [ToolSpec("get_hive_report", "Returns the inspection report of a hive",
                      behaviour="500", required={"hive_id": None}),
             ToolSpec("get_hive_summary", "Returns a short report of a hive",
                      required={"hive_id": "H-3"})]
    teacher = ExtractiveTeacher()
    with LocalToolApi(specs) as api:
        tools = api.tools()

        async def run(searcher: Any, query: str) -> SolveResult:
            async with api.caller() as caller:
                return await searcher.solve(
                    _instruction(query, [t.name for t in tools]), tools, teacher=teacher,
                    caller=caller, options={})

        ok = asyncio.run(run(ReActSearcher(), 'Show the inspection report of hive "H-3".'))
        assert ok.solved
        names = [c["function"]["name"] for m in ok.messages if m["role"] == "assistant"
                 for c in m["tool_calls"]]
        assert names == ["get_hive_report", "get_hive_summary", "Finish"]
        hopeless = asyncio.run(run(DFSDTSearcher(), "Book me a flight to Oslo."))
    assert not hopeless.solved and hopeless.gave_up


def test_extractive_tool_call_needs_query_and_tools():
    from syllabus.contracts import TeacherError

    teacher = ExtractiveTeacher()
    with pytest.raises(TeacherError, match="params.tools"):
        asyncio.run(teacher.complete([ChatMessage(role="user", content="x")],
                                     params=GenerationParams(task="tool_call",
                                                             inputs={"query": "x"})))


# --- function calling in the teacher protocol -------------------------------------------


def test_openai_teacher_sends_tools_and_parses_tool_calls(openai_server):
    from syllabus.contracts import ToolCall

    openai_server.script(
        tool_calls(call("get_hive", {"hive_id": "H-1"}, id="c9"),
                   {"id": "c10", "type": "function",  # arguments as an object
                    "function": {"name": "Finish", "arguments": {"return_type": "x"}}},
                   content="Two calls."))
    fn = {"type": "function", "function": {"name": "get_hive", "parameters": {}}}
    history = [ChatMessage(role="user", content="q"),
               ChatMessage(role="assistant", content="",
                           tool_calls=[ToolCall(id="c1", name="get_hive", arguments="{}")]),
               ChatMessage(role="tool", content='{"ok": 1}', tool_call_id="c1",
                           name="get_hive")]

    async def main() -> Any:
        async with OpenAITeacher(model="scripted-model", url=openai_server.url) as teacher:
            return await teacher.complete(history, params=GenerationParams(
                tools=[fn], tool_choice="auto"))

    completion = asyncio.run(main())
    assert completion.text == "Two calls." and completion.finish_reason == "tool_calls"
    assert [(c.id, c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("c9", "get_hive", {"hive_id": "H-1"}), ("c10", "Finish", {"return_type": "x"})]
    sent = openai_server.requests[0].json
    assert sent["tools"] == [fn] and sent["tool_choice"] == "auto"
    assert sent["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_hive",
                                                      "arguments": "{}"}}]}
    assert sent["messages"][2] == {"role": "tool", "content": '{"ok": 1}',
                                   "tool_call_id": "c1", "name": "get_hive"}


def test_teacher_cache_key_covers_tools_and_keeps_plain_keys(tmp_path):
    from syllabus.contracts import ToolCall, content_id, teacher_cache_key
    from syllabus.services.runtime import LocalStore, ManagedTeacher, TeacherSettings

    teacher = ManagedTeacher(ExtractiveTeacher(), settings=TeacherSettings(),
                             store=LocalStore(tmp_path))
    plain = [ChatMessage(role="user", content="hi")]
    params = GenerationParams(task="qa_pairs")
    # the key of a call without function calling (or a completion prompt, or a retry) is
    # what it was before those fields existed
    assert teacher.cache_key(plain, params) == teacher_cache_key(content_id(
        "extractive", "extractive-v2", [{"role": "user", "content": "hi"}],
        {k: v for k, v in params.model_dump(mode="json").items()
         if k not in ("tools", "tool_choice", "prompt", "attempt")}))
    fn = {"type": "function", "function": {"name": "f"}}
    keys = {teacher.cache_key(plain, params),
            teacher.cache_key(plain, params.model_copy(update={"tools": [fn]})),
            teacher.cache_key(plain, params.model_copy(update={"tools": [fn],
                                                                "tool_choice": "required"})),
            teacher.cache_key([ChatMessage(role="assistant", content="hi", tool_calls=[
                ToolCall(id="1", name="f")])], params),
            teacher.cache_key([ChatMessage(role="user", content="hi", name="x")], params),
            teacher.cache_key(plain, params.model_copy(update={"prompt": "Q:"})),
            teacher.cache_key(plain, params.model_copy(update={"attempt": 2}))}
    assert len(keys) == 7


def test_a_base_model_searches_by_continuing_a_react_transcript(hive_api, openai_server):
    """A base-model teacher gets ToolLLM's Action / Action Input / Observation transcript
    as a completion prompt, with a grammar naming the path's functions; its continuation
    is the turn's call. After a give-up, the call that follows DFSDT's diversity note
    (which a base model cannot read) is sampled, not greedy."""
    from syllabus.plugins.tools._search import REACT_EXAMPLE

    def base_policy(request: dict[str, Any]) -> Any:
        prompt = request["prompt"]
        assert prompt.startswith(REACT_EXAMPLE) and prompt.endswith("\nAction:")
        path = prompt.split("Question: How is hive H-17 doing?", 1)[1]
        if "Observation:" not in path:  # the first call of a path
            name = "get_hive" if request["temperature"] > 0 else "get_hive_legacy"
            return text(f' {name}\nAction Input: {{"hive_id": "H-17"}}')
        last = path.rsplit("Observation: ", 1)[1]
        if "internal error" in last:
            return text(' Finish\nAction Input: {"return_type": "give_up_and_restart"}')
        return text(' Finish\nAction Input: {"return_type": "give_answer", '
                    '"final_answer": "Hive H-17 is fine."}')

    openai_server.default = base_policy
    tools = hive_api.tools()

    async def main() -> SolveResult:
        async with OpenAITeacher(model="scripted-model", url=openai_server.url,
                                 base_model=True, grammar=True) as teacher, \
                hive_api.caller() as caller:
            return await DFSDTSearcher().solve(
                _instruction("How is hive H-17 doing?", [t.name for t in tools]), tools,
                teacher=teacher, caller=caller, options={})

    result = asyncio.run(main())
    assert result.solved and result.final_answer == "Hive H-17 is fine."
    assert result.stats["give_ups"] == 1 and result.stats["diversity_prompts"] == 1
    assert hive_api.hits == {"get_hive_legacy": 1, "get_hive": 1}
    requests = [r.json for r in openai_server.requests]
    assert all(r.path.endswith("/v1/completions") for r in openai_server.requests)
    first = requests[0]
    assert first["stop"] == ["\nObservation:"] and first["max_tokens"] == 160
    assert '"get_hive" | "get_hive_legacy" | "Finish"' in first["grammar"] or \
        '"get_hive_legacy" | "get_hive" | "Finish"' in first["grammar"]
    # the path's calls and observations are in the transcript of the later requests
    assert 'Action: get_hive\nAction Input: {"hive_id": "H-17"}\nObservation: ' in \
        requests[-1]["prompt"]
    # the kept path is the chat transcript of the successful calls, as for a chat model
    roles = [m["role"] for m in result.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert result.messages[2]["tool_calls"][0]["function"]["name"] == "get_hive"
