"""The api-annotator end to end on a real NATS server and a real local HTTP API (offline,
with the extractive teacher); ToolLLM instruction generation with a scripted OpenAI
teacher (hallucinated APIs dropped); tool trajectories in the data set formats."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from syllabus.contracts import (
    GENERATION_FAILED,
    TOOLS_ANNOTATED,
    ApiSpecSubmitted,
    ApiTool,
    GenerationFailed,
    PluginRef,
    TeacherRef,
    ToolTrajectory,
    sha256_hex,
    spec_key,
)
from syllabus.plugins.exporters.standard import StandardExporter
from syllabus.plugins.teachers.openai import OpenAITeacher
from syllabus.plugins.tools.instructions import InstructionGenerator, parse_queries, sample
from syllabus.services.api_annotator import build_router, eval_key, filter_key
from syllabus.services.cli._run import wait_drained
from syllabus.services.runtime import ApiAnnotatorSettings, Runtime, replay
from tests.openai_server import json_reply, text
from tests.tool_api import BROKEN, ToolApi

pytestmark = pytest.mark.timeout(180)


async def _annotate(settings: Any, api: ToolApi, data: bytes, filename: str,
                    **cfg: Any) -> Runtime:
    s = settings.model_copy(deep=True)
    s.api_annotator = ApiAnnotatorSettings(allow_private_hosts=[api.host], call_timeout=2.0,
                                           **cfg)
    rt = Runtime.create(s)
    rt.bus.broker.include_router(build_router(rt))
    await rt.bus.start()
    spec_id = sha256_hex(data)
    rt.store.put(spec_key(spec_id), data)
    await rt.bus.publish(ApiSpecSubmitted(spec_id=spec_id, filename=filename, collection="lib",
                                          store_key=spec_key(spec_id), run_id="run-1"))
    await wait_drained(rt, timeout=120)
    return rt


def test_spec_in_trajectories_out_on_the_bus(settings):
    async def main() -> None:
        with ToolApi() as api:
            data = api.spec_bytes
            rt = await _annotate(settings, api, data, "library.yaml", groups=["I1", "I2"],
                                 instruction_options={"samples": 1, "queries_per_sample": 3},
                                 compare_solvers=["react"])
            try:
                spec_id = sha256_hex(data)
                verdicts = json.loads(rt.store.get(filter_key(spec_id)))["verdicts"]
                kept = {v["tool"] for v in verdicts if v["kept"]}
                dropped = {v["tool"] for v in verdicts if not v["kept"]}
                assert set(BROKEN) <= dropped and kept and not kept & set(BROKEN)
                trajs = [ToolTrajectory.model_validate_json(m.data)
                         for m in await replay(rt.bus, TOOLS_ANNOTATED)]
                report = json.loads(rt.store.get(eval_key(spec_id)))
                failed = [GenerationFailed.model_validate_json(m.data)
                          for m in await replay(rt.bus, GENERATION_FAILED)]
            finally:
                await rt.close()
        assert not failed
        # every instruction of I1 and I2 got one published search (DFSDT only: the ReAct
        # comparison is for the evaluation)
        assert {t.group for t in trajs} == {"I1", "I2"}
        assert len(trajs) == sum(g["kept"] for g in report["instructions"].values())
        assert {t.method for t in trajs} == {"dfsdt"}
        assert all(t.run_id == "run-1" and t.spec_id == spec_id for t in trajs)
        solved = [t for t in trajs if t.solved]
        assert solved and len(solved) >= len(trajs) - 1
        for t in trajs:
            offered = {f["function"]["name"] for f in t.tools}
            assert "Finish" in offered and offered - {"Finish"} <= kept
            calls = [c["function"]["name"] for m in t.messages if m["role"] == "assistant"
                     for c in m.get("tool_calls") or ()]
            assert set(calls) <= offered and not set(calls) & set(BROKEN)
            assert t.teacher.kind == "extractive"
            if t.solved:
                assert calls[-1] == "Finish" and t.final_answer and not t.reason
                assert t.messages[1]["role"] == "user" and t.instruction in \
                    t.messages[1]["content"]
                assert set(t.relevant_apis) <= set(calls)
        i2 = [t for t in trajs if t.group == "I2"]
        assert all(len(t.relevant_apis) == 2 for t in i2)
        # the evaluation: ToolEval's rule-based pass rate per method and group
        methods = report["eval"]["methods"]
        assert set(methods) == {"dfsdt", "react"}
        assert methods["dfsdt"]["all"]["passed"] == len(solved)
        assert methods["dfsdt"]["all"]["instructions"] == len(trajs)
        assert methods["react"]["all"]["instructions"] == len(trajs)
        assert report["eval"]["disagreements"] == 0
        assert report["working_tools"] == len(kept)

    asyncio.run(main())


def test_an_invalid_spec_is_reported_not_retried(settings):
    async def main() -> None:
        with ToolApi() as api:
            bad = b"openapi: 3.0.3\ninfo: {title: broken}\npaths:\n  /x:\n    get: 17\n"
            rt = await _annotate(settings, api, bad, "broken.yaml", groups=["I1"])
            try:
                failed = [GenerationFailed.model_validate_json(m.data)
                          for m in await replay(rt.bus, GENERATION_FAILED)]
                trajs = await replay(rt.bus, TOOLS_ANNOTATED)
                report = json.loads(rt.store.get(eval_key(sha256_hex(bad))))
            finally:
                await rt.close()
        assert not trajs
        assert len(failed) == 1 and failed[0].stage == "api-annotator"
        assert failed[0].reason.startswith("invalid spec: broken.yaml")
        assert "broken.yaml" in report["error"]

    asyncio.run(main())


# --- instruction generation -----------------------------------------------------------


def _tools() -> list[ApiTool]:
    def tool(name: str, category: str, path: str) -> ApiTool:
        return ApiTool(name=name, description=f"{name} operation", category=category,
                       method="GET", path=path, server="http://api.test",
                       example_arguments={"id": "7"})
    return [tool("list_hives", "hives", "/hives"), tool("get_hive", "hives", "/hives/{id}"),
            tool("hive_weight", "hives", "/hives/{id}/weight"),
            tool("add_note", "hives", "/hives/{id}/notes"),
            tool("weather_now", "weather", "/weather"),
            tool("forecast", "weather", "/weather/forecast"),
            tool("honey_price", "market", "/market/honey"),
            tool("wax_price", "market", "/market/wax"),
            tool("list_sites", "sites", "/sites")]


def test_sampling_follows_the_papers_groups():
    import random

    tools = _tools()
    i1 = sample(tools, "I1", rng=random.Random(1), samples=10)
    assert all(len(s) == 1 for s in i1) and len(i1) == 4  # one window per tool (tag)
    for _ in range(5):
        for s in sample(tools, "I2", rng=random.Random(_), samples=3):
            assert 2 <= len(s) <= 4  # 2-5 tools of the spec (it has 4)
            assert all(len(apis) <= 3 for apis in s.values())
    i3 = sample(tools, "I3", rng=random.Random(0), samples=1)[0]
    assert set(i3) == {"hives", "weather", "market", "sites"}
    assert len(i3["hives"]) == 3
    again = sample(tools, "I2", rng=random.Random(5), samples=3)
    assert again == sample(tools, "I2", rng=random.Random(5), samples=3)
    # a spec with one tag: tools are the operations' first path segments
    one_tag = [t.model_copy(update={"category": "api"}) for t in tools]
    assert len(sample(one_tag, "I2", rng=random.Random(0), samples=1)[0]) >= 2


def test_instructions_with_hallucinated_apis_are_dropped(openai_server):
    def answer(request: dict[str, Any]) -> Any:
        prompt = request["messages"][1]["content"]
        doc = json.loads(prompt.split("INPUT:\n", 1)[1].split("\nPlease produce", 1)[0])
        doc = doc if isinstance(doc, list) else [doc]
        apis = [(t["tool_name"], a["name"]) for t in doc for a in t["api_list"]]
        (t1, a1), (t2, a2) = apis[0], apis[-1]
        return json_reply([
            {"query": f"Please use {a1} and {a2} for hive 7 today.",
             "related_apis": [[t1, a1], [t2, a2]]},
            {"query": "Order a new queen from Italy.", "related_apis": [[t1, "order_queen"]]},
            {"query": "Mismatched tool.", "related_apis": [["nonsense", a1]]},
            {"query": "", "related_apis": [[t1, a1]]},
        ])

    openai_server.default = answer

    async def main() -> Any:
        async with OpenAITeacher(model="scripted-model", url=openai_server.url) as teacher:
            return await InstructionGenerator().generate(
                _tools(), group="I2", teacher=teacher, options={"samples": 2, "seed": 3})

    instructions, failures = asyncio.run(main())
    assert len(instructions) == 2 and len(failures) == 6
    reasons = sorted(f.reason.split(":")[0] for f in failures)
    assert reasons.count("hallucinated api") == 4
    assert any("order_queen not in the sampled set" in f.reason for f in failures)
    assert any("nonsense/" in f.reason for f in failures)
    for ins in instructions:
        assert ins.group == "I2" and set(ins.relevant_apis) <= set(ins.sampled_tools)
    request = openai_server.requests[0].json
    assert request["messages"][0]["content"].startswith("You are QueryGPT")
    prompt = request["messages"][1]["content"]
    assert "employ API functions of multiple tools" in prompt
    assert "These are only examples to show you how to write the query" in prompt
    assert "Please produce 10 queries" in prompt
    assert request["temperature"] == 0.6


def test_unparseable_output_is_retried_once_then_reported(openai_server):
    openai_server.script(text("Sure! Here are some queries: none"),
                         text("[{\"Query1\": \"List my hives.\", "
                              "\"related_apis\": [\"list_hives\"]}]"),
                         text("no"), text("still no"))

    async def main() -> Any:
        async with OpenAITeacher(model="scripted-model", url=openai_server.url) as teacher:
            return await InstructionGenerator().generate(
                [t for t in _tools() if t.category == "hives"][:2] + _tools()[4:6],
                group="I1", teacher=teacher, options={"samples": 2})

    instructions, failures = asyncio.run(main())
    assert [i.query for i in instructions] == ["List my hives."]
    assert len(failures) == 1 and failures[0].reason.startswith("unparseable instructions")
    assert failures[0].raw_output == "still no"
    retry = openai_server.requests[1].json["messages"]
    assert retry[-1]["content"].startswith("Your output could not be parsed")


def test_parse_queries_accepts_the_papers_format():
    items = parse_queries('```json\n[{"Query1: ": "Find bees.", "related_apis": ["a"]}, '
                          '{"query": "More.", "related apis": [["t", "b"]]}]\n```')
    assert items == [{"query": "Find bees.", "related_apis": ["a"]},
                     {"query": "More.", "related_apis": [["t", "b"]]}]
    with pytest.raises(ValueError):
        parse_queries("nothing here")


# --- export -------------------------------------------------------------------------------


def _trajectory() -> ToolTrajectory:
    call = {"id": "c1", "type": "function",
            "function": {"name": "get_hive", "arguments": '{"hive_id": "h1"}'}}
    fin = {"id": "c2", "type": "function", "function": {
        "name": "Finish",
        "arguments": '{"return_type": "give_answer", "final_answer": "Hive h1 is strong."}'}}
    tools = [{"type": "function", "function": {"name": "get_hive", "description": "d",
                                               "parameters": {"type": "object"}}},
             {"type": "function", "function": {"name": "Finish", "description": "f",
                                               "parameters": {"type": "object"}}}]
    messages = [{"role": "system", "content": "You are AutoGPT"},
                {"role": "user", "content": "How is hive h1?"},
                {"role": "assistant", "content": "Look it up.", "tool_calls": [call]},
                {"role": "tool", "content": '{"error": "", "response": "strong"}',
                 "tool_call_id": "c1", "name": "get_hive"},
                {"role": "assistant", "content": "", "tool_calls": [fin]},
                {"role": "tool", "content": '{"response": "successfully giving the final '
                 'answer."}', "tool_call_id": "c2", "name": "Finish"}]
    return ToolTrajectory(trajectory_id="t1", spec_id="s", group="I1", collection="lib",
                          instruction="How is hive h1?", tools=tools, messages=messages,
                          final_answer="Hive h1 is strong.", solved=True,
                          technique=PluginRef(name="dfsdt"),
                          teacher=TeacherRef(kind="extractive", model="extractive-v1"))


def test_trajectories_export_as_openai_tools_and_sharegpt_function_calls():
    record = _trajectory().as_record()
    assert record.kind == "tool" and record.response == "Hive h1 is strong."
    exporter = StandardExporter()
    out = io.BytesIO()
    assert exporter.export([record], fmt="openai", out=out) == 1
    row = json.loads(out.getvalue())
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "tool",
                                                    "assistant"]
    assert row["messages"][-1]["tool_calls"][0]["function"]["name"] == "Finish"
    assert [t["function"]["name"] for t in row["tools"]] == ["get_hive", "Finish"]
    assert row["metadata"]["kind"] == "tool" and row["metadata"]["technique"] == "dfsdt@0"

    share = exporter.rows(record, "sharegpt")[0]
    assert [c["from"] for c in share["conversations"]] == ["system", "human", "function_call",
                                                           "observation", "gpt"]
    fc = json.loads(share["conversations"][2]["value"])
    assert fc == {"name": "get_hive", "arguments": {"hive_id": "h1"}}
    assert share["conversations"][-1]["value"] == "Hive h1 is strong."
    assert [f["name"] for f in json.loads(share["tools"])] == ["get_hive"]
    alpaca = exporter.rows(record, "alpaca")[0]
    assert alpaca["instruction"] == "How is hive h1?" and alpaca["output"] == "Hive h1 is strong."


# --- syllabus run -----------------------------------------------------------------------


@pytest.mark.slow
def test_syllabus_run_on_a_folder_with_a_spec_works_offline(tmp_path):
    from rich.console import Console

    from syllabus.services.cli._run import run_pipeline
    from syllabus.services.runtime import Settings

    folder = tmp_path / "in"
    folder.mkdir()
    with ToolApi() as api:
        (folder / "library.yaml").write_bytes(api.spec_bytes)
        settings = Settings(api_annotator=ApiAnnotatorSettings(
            allow_private_hosts=[api.host], call_timeout=2.0, groups=["I1", "I2"],
            instruction_options={"samples": 1, "queries_per_sample": 3}))
        console = Console(file=io.StringIO(), width=120)
        report = asyncio.run(run_pipeline([folder], collection="lib", out=tmp_path / "out",
                                          settings=settings, console=console, timeout=150))
    stage = report.stages["api-annotator"]
    solved = sum(n for k, n in stage.items() if k.endswith(" solved"))
    assert stage["records"] >= 4 and solved >= stage["records"] - 1
    assert "extractive" in report.teacher and not report.dead_letters
    rows = [json.loads(line) for name in ("train.jsonl", "eval.jsonl")
            for line in (tmp_path / "out" / "dataset" / name).read_text().splitlines()]
    assert rows and all(r["metadata"]["kind"] == "tool" for r in rows)
    for row in rows:
        assert row["tools"][-1]["function"]["name"] == "Finish"
        last = row["messages"][-1]
        assert last["role"] == "assistant" and \
            last["tool_calls"][0]["function"]["name"] == "Finish"
    report.render(console)
    assert "api-annotator records" in console.file.getvalue()
