"""The real model on the api-annotator's techniques: Gemma 3 270M (a base model) behind
the ``local`` teacher writes ToolLLM instructions for a real local API and DFSDT searches
with it, through completion prompts and llama.cpp grammars. What the model writes is its
own; the test checks the shapes the grammar and the parsers promise, and that the calls
it made really reached the API."""

from __future__ import annotations

import pytest

from syllabus.plugins.teachers.local import LocalTeacherFactory
from syllabus.plugins.tools.dfsdt import DFSDTSearcher
from syllabus.plugins.tools.instructions import BASE_EXAMPLES, InstructionGenerator
from tests.tool_search_api import LocalToolApi, ToolSpec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def api():
    specs = [ToolSpec("get_hive", "Returns one hive by its id: its site, queen and weight",
                      required={"hive_id": None}, category="hives"),
             ToolSpec("list_hives", "Lists the hives of an apiary site",
                      required={"site": None}, category="hives"),
             ToolSpec("honey_price", "The market price of honey per kilogram today",
                      category="market")]
    with LocalToolApi(specs) as server:
        yield server


async def test_gemma_writes_instructions_and_searches_with_real_calls(api, tmp_path):
    teacher = LocalTeacherFactory().create({"log_dir": str(tmp_path), "engine_check": 0})
    try:
        tools = api.tools()
        instructions, failures = await InstructionGenerator().generate(
            tools, group="I1", teacher=teacher, options={"samples": 1, "temperature": 0.0})
        assert instructions, [f.reason for f in failures]
        for ins in instructions:
            assert len(ins.query) >= 8 and ins.query not in BASE_EXAMPLES
            assert set(ins.relevant_apis) <= {t.name for t in tools}
        async with api.caller() as caller:
            result = await DFSDTSearcher().solve(
                instructions[0], tools, teacher=teacher, caller=caller,
                options={"max_queries": 6})
    finally:
        await teacher.aclose()
    # the grammar names only known functions (a turn cut at the token cap before its
    # JSON closed makes no call, and is counted); every API call the caller did not refuse
    # for its arguments (Gemma passes Finish's to an API) reached the server
    calls = [c["function"]["name"] for m in result.messages if m["role"] == "assistant"
             for c in m.get("tool_calls") or []]
    assert calls and set(calls) <= {t.name for t in tools} | {"Finish"}, result.messages
    assert result.stats["hallucinated_calls"] == 0
    assert result.stats["no_call_turns"] < result.teacher_calls
    refused = sum(1 for m in result.messages if m["role"] == "tool"
                  and '"error": "invalid arguments' in m["content"])
    assert sum(api.hits.values()) == result.api_calls - refused, result.messages[2:]
