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
    tool_eval_key,
    tool_filter_key,
)
from syllabus.plugins.exporters.standard import StandardExporter
from syllabus.plugins.teachers.openai import OpenAITeacher
from syllabus.plugins.tools.instructions import InstructionGenerator, parse_queries, sample
from syllabus.services.api_annotator import build_router
from syllabus.services.cli._run import wait_drained
from syllabus.services.runtime import ApiAnnotatorSettings, Runtime, replay
from tests.openai_server import error, json_reply, text
from tests.tool_api import BROKEN, ToolApi

pytestmark = pytest.mark.timeout(180)


async def _annotate(settings: Any, api: ToolApi, data: bytes, filename: str,
                    private: tuple[str, ...] = (), **cfg: Any) -> Runtime:
    s = settings.model_copy(deep=True)
    s.api_annotator = ApiAnnotatorSettings(allow_private_hosts=[api.host, *private],
                                           call_timeout=2.0, **cfg)
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
                verdicts = json.loads(rt.store.get(tool_filter_key(spec_id)))["verdicts"]
                kept = {v["tool"] for v in verdicts if v["kept"]}
                dropped = {v["tool"] for v in verdicts if not v["kept"]}
                assert set(BROKEN) <= dropped and kept and not kept & set(BROKEN)
                trajs = [ToolTrajectory.model_validate_json(m.data)
                         for m in await replay(rt.bus, TOOLS_ANNOTATED)]
                report = json.loads(rt.store.get(tool_eval_key(spec_id)))
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
        # the category of a multi-tool instruction is the spec (its title)
        assert i2 and all(t.category == "Test Tools" for t in i2)
        # the evaluation: with the extractive teacher, which wrote both the instructions
        # and the paths, the pass rate is the rule alone, and it is labelled so
        assert report["eval"]["evaluator"] == "tooleval"
        assert report["eval"]["label"] == "self-consistency"
        assert "does not judge" in report["eval"]["label_reason"]
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
                report = json.loads(rt.store.get(tool_eval_key(sha256_hex(bad))))
            finally:
                await rt.close()
        assert not trajs
        assert len(failed) == 1 and failed[0].stage == "api-annotator"
        assert failed[0].reason.startswith("invalid spec: broken.yaml")
        assert "broken.yaml" in report["error"]

    asyncio.run(main())


# a few operations of the test API that work and answer at once
_FAST_PATHS = ("/books/{book_id}", "/rates", "/convert", "/weather/current")


def _fast_spec(api: ToolApi, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    spec = api.spec
    spec["paths"] = {k: v for k, v in spec["paths"].items() if k in _FAST_PATHS + extra}
    return spec


def test_a_bad_server_url_drops_that_operation_only_on_the_first_delivery(settings):
    """One operation's server is an octal host, ``0177.0.0.2`` (127.0.0.2 to inet_aton,
    where a real socket listens; that address is even allowed as private): the filter
    refuses that operation as ``invalid_url``, the others are annotated, nothing is
    dead-lettered, and the spec is delivered once (no retry calls the APIs again)."""
    import select
    import socket

    import yaml

    from syllabus.contracts import STREAM_NAME, dlq_subject

    async def main() -> dict[str, Any]:
        with ToolApi() as api, socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
            sock.listen(8)
            port = sock.getsockname()[1]
            bad = f"http://0177.0.0.2:{port}"
            spec = _fast_spec(api, ("/books",))
            spec["paths"]["/books"]["get"]["servers"] = [{"url": bad}]
            data = yaml.safe_dump(spec, sort_keys=False).encode()
            rt = await _annotate(settings, api, data, "bad-server.yaml", groups=["I1"],
                                 private=(f"127.0.0.2:{port}", f"0177.0.0.2:{port}"),
                                 instruction_options={"samples": 1, "queries_per_sample": 2})
            try:
                spec_id = sha256_hex(data)
                out = {
                    "bad": bad,
                    "verdicts": {v["tool"]: v for v in json.loads(
                        rt.store.get(tool_filter_key(spec_id)))["verdicts"]},
                    "report": json.loads(rt.store.get(tool_eval_key(spec_id))),
                    "trajs": [ToolTrajectory.model_validate_json(m.data)
                              for m in await replay(rt.bus, TOOLS_ANNOTATED)],
                    "dead": await replay(rt.bus, dlq_subject("api-annotator")),
                    "failed": await replay(rt.bus, GENERATION_FAILED),
                    "delivered": (await rt.bus.js.consumer_info(
                        STREAM_NAME, "api-annotator")).delivered.consumer_seq,
                    "connected": bool(select.select([sock], [], [], 0)[0]),
                    "filter_hits": [h for h in api.hits if h == ("GET", "/books/b2")],
                }
            finally:
                await rt.close()
        return out

    out = asyncio.run(main())
    assert out["dead"] == [] and out["delivered"] == 1  # acked on the first delivery
    verdicts = out["verdicts"]
    bad = verdicts["searchBooks"]
    assert not bad["kept"] and bad["reason"] == "refused", bad
    assert bad["detail"].startswith(f"refused: invalid_url: the server URL of searchBooks "
                                    f"{out['bad']!r} is not a valid URL: ambiguous host "
                                    "'0177.0.0.2'"), bad["detail"]
    assert {t for t, v in verdicts.items() if v["kept"]} == {
        "getBook", "exchangeRates", "convertCurrency", "currentWeather"}
    assert not out["connected"]
    assert out["report"]["dropped_tools"] == {"refused": 1}
    assert "filter_reused" not in out["report"] and "error" not in out["report"]
    trajs = out["trajs"]
    assert trajs and any(t.solved for t in trajs)
    assert all("searchBooks" not in {f["function"]["name"] for f in t.tools} for t in trajs)
    assert out["failed"] == []


def test_a_plugin_that_raises_fails_its_search_or_its_spec_once(settings):
    """A solver that raises on one search (a bug, the same on every delivery) leaves that
    search unsolved with the error, and the others solved; an evaluator that raises leaves
    ``eval_error``; a filter that raises ends the spec with one ``generation.failed``
    naming it; an instruction generator that raises on a group is that group's one
    ``generation.failed``. ``annotate_spec`` returns every time: nothing goes back to the
    bus to be retried."""
    import yaml

    from syllabus.services.api_annotator import annotate_spec
    from syllabus.services.api_annotator._service import _plugin
    from syllabus.services.runtime._plugins import Registered

    class OneSearchFails:
        name, stage = "one-search-fails", "solver"

        def __init__(self, inner: Any) -> None:
            self.inner, self.calls = inner, 0

        async def solve(self, ins: Any, tools: Any, **kw: Any) -> Any:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("solver bug")
            return await self.inner.solve(ins, tools, **kw)

    class BrokenFilter:
        name, stage = "broken-filter", "filter"

        async def check(self, tools: Any, **kw: Any) -> Any:
            raise ZeroDivisionError("filter bug")

    class BrokenGenerator:
        name, stage = "broken-gen", "instructions"

        async def generate(self, tools: Any, **kw: Any) -> Any:
            raise ValueError("generator bug")

    class BrokenEvaluator:
        name, stage = "broken-eval", "eval"

        def evaluate(self, results: Any) -> Any:
            raise KeyError("pass_rate")

    async def main() -> tuple[dict, dict, list, list]:
        with ToolApi() as api:
            data = yaml.safe_dump(_fast_spec(api), sort_keys=False).encode()
            s = settings.model_copy(deep=True)
            s.api_annotator = ApiAnnotatorSettings(
                allow_private_hosts=[api.host], call_timeout=2.0, groups=["I1"],
                instruction_options={"samples": 4, "queries_per_sample": 3})
            cfg = s.api_annotator
            rt = await _runtime(s)
            try:
                spec_id = sha256_hex(data)
                rt.store.put(spec_key(spec_id), data)
                event = ApiSpecSubmitted(spec_id=spec_id, filename="fast.yaml",
                                         collection="lib", store_key=spec_key(spec_id),
                                         run_id="run-1")
                solver = _plugin(rt, cfg.solver, "solver")
                regs: dict[str, Any] = dict(
                    teacher=rt.teacher(), filter_reg=_plugin(rt, cfg.filter, "filter"),
                    generator=_plugin(rt, cfg.instructions, "instructions"),
                    solver=Registered(obj=OneSearchFails(solver.obj), kind="solver",
                                      plugin="tests", version="0"),
                    compare=[], evaluator=Registered(obj=BrokenEvaluator(), kind="eval",
                                                     plugin="tests", version="0"))
                solved = dict(await annotate_spec(rt, event, **regs))
                trajs = [ToolTrajectory.model_validate_json(m.data)
                         for m in await replay(rt.bus, TOOLS_ANNOTATED)]
                regs["filter_reg"] = Registered(obj=BrokenFilter(), kind="filter",
                                                plugin="tests", version="0")
                broken = dict(await annotate_spec(
                    rt, event.model_copy(update={"run_id": "run-2"}), **regs))
                regs["filter_reg"] = _plugin(rt, cfg.filter, "filter")
                regs["generator"] = Registered(obj=BrokenGenerator(), kind="instructions",
                                               plugin="tests", version="0")
                no_group = dict(await annotate_spec(
                    rt, event.model_copy(update={"run_id": "run-3"}), **regs))
                failed = [GenerationFailed.model_validate_json(m.data)
                          for m in await replay(rt.bus, GENERATION_FAILED)]
            finally:
                await rt.close()
        return solved, broken, no_group, trajs, failed

    solved, broken, no_group, trajs, failed = asyncio.run(main())
    errors = [t for t in trajs if t.reason.startswith("error")]
    assert len(errors) == 1 and not errors[0].solved, [t.reason for t in trajs]
    assert errors[0].reason == "error: RuntimeError: solver bug"
    assert len(trajs) >= 3 and sum(t.solved for t in trajs) >= len(trajs) - 2
    assert solved["searches"]["one-search-fails unsolved"] >= 1
    assert solved["eval_error"] == "the evaluator broken-eval failed: KeyError: 'pass_rate'"
    assert "error" not in solved
    assert broken["error"] == ("the filter broken-filter failed: ZeroDivisionError: "
                               "filter bug")
    assert [f.reason for f in failed] == [
        "the filter broken-filter failed: ZeroDivisionError: filter bug",
        "the instruction generator broken-gen failed on I1: ValueError: generator bug"]
    assert failed[0].record_id == f"{broken['spec_id']}:filter"
    assert failed[0].technique.name == "broken-filter"
    assert failed[1].technique.name == "broken-gen"
    # the generator's failure is that group's: the spec went on (no instructions, no error)
    assert no_group["instructions"]["I1"] == {"kept": 0, "dropped": 1}
    assert "error" not in no_group and no_group["working_tools"] == 4


async def _runtime(settings: Any) -> Runtime:
    rt = Runtime.create(settings)
    await rt.bus.start()
    return rt


def test_redelivery_reuses_filter_verdicts_and_a_skipped_group_says_why(settings):
    """A redelivered spec (same run) does not call its APIs again: the stored verdicts
    are reused; a new run tests them again. A spec with one tool has no I2 sample, and
    eval.json and the log say why."""
    import yaml

    from syllabus.services.api_annotator import annotate_spec
    from syllabus.services.api_annotator._service import _plugin

    async def main() -> tuple[list[dict[str, Any]], list[int], dict[str, Any]]:
        with ToolApi() as api:
            spec = api.spec
            spec["paths"] = {k: v for k, v in spec["paths"].items() if k.startswith("/books")}
            data = yaml.safe_dump(spec, sort_keys=False).encode()
            s = settings.model_copy(deep=True)
            s.api_annotator = ApiAnnotatorSettings(allow_private_hosts=[api.host],
                                                   call_timeout=1.0, groups=["I2"])
            cfg = s.api_annotator
            rt = Runtime.create(s)
            await rt.bus.start()
            try:
                spec_id = sha256_hex(data)
                rt.store.put(spec_key(spec_id), data)
                event = ApiSpecSubmitted(spec_id=spec_id, filename="books.yaml",
                                         collection="lib", store_key=spec_key(spec_id),
                                         run_id="run-1")
                regs: dict[str, Any] = dict(
                    teacher=rt.teacher(), filter_reg=_plugin(rt, cfg.filter, "filter"),
                    generator=_plugin(rt, cfg.instructions, "instructions"),
                    solver=_plugin(rt, cfg.solver, "solver"), compare=[], evaluator=None)
                outcomes, hits = [], []
                for run in ("run-1", "run-1", "run-2"):
                    outcomes.append(dict(await annotate_spec(
                        rt, event.model_copy(update={"run_id": run}), **regs)))
                    hits.append(len(api.hits))
                report = json.loads(rt.store.get(tool_eval_key(spec_id)))
            finally:
                await rt.close()
        return outcomes, hits, report

    outcomes, hits, report = asyncio.run(main())
    first, again, new_run = outcomes
    assert hits[0] >= 3 and hits[1] == hits[0]  # the redelivery called nothing
    assert again["filter_reused"] and "filter_reused" not in first
    assert again["working_tools"] == first["working_tools"] >= 1
    assert hits[2] == 2 * hits[0] and "filter_reused" not in new_run
    why = report["instructions"]["I2"]["skipped"]
    assert why.startswith("I2 needs at least 2 tools (option 'min_tools') and the spec has "
                          "1 (books)"), why
    assert report["instructions"]["I2"]["kept"] == 0


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


def test_every_api_of_a_tool_can_be_in_an_i1_window():
    """12 APIs, window 10, step 3: the steps give 0-9 only; the last window 2-11 makes
    APIs 10 and 11 reachable too."""
    import random

    tools = [ApiTool(name=f"op{i:02d}", description="d", category="t", method="GET",
                     path=f"/things/{i}", server="http://api.test") for i in range(12)]
    windows = sample(tools, "I1", rng=random.Random(0), samples=50)
    assert [[t.name for t in w["things"]] for w in windows] == [
        [f"op{i:02d}" for i in range(10)], [f"op{i:02d}" for i in range(2, 12)]]
    windows = sample(tools[:9], "I1", rng=random.Random(0), samples=50)
    assert len(windows) == 1 and len(windows[0]["things"]) == 9


def test_i3_samples_at_most_i3_max_tools_tools():
    import random

    tools = [ApiTool(name=f"op{i}", description="d", category=f"tag{i}", method="GET",
                     path=f"/p{i}", server="http://api.test") for i in range(8)]
    seen: set[int] = set()
    for seed in range(20):
        for picked in sample(tools, "I3", rng=random.Random(seed), samples=3):
            assert 2 <= len(picked) <= 5
            seen.add(len(picked))
    assert len(seen) > 1  # 2-5 tools, as the paper samples from a collection
    few = sample(tools[:4], "I3", rng=random.Random(0), samples=1)[0]
    assert len(few) == 4  # few enough: the whole spec
    capped = sample(tools, "I3", rng=random.Random(0), samples=5, i3_max_tools=3)
    assert capped and all(2 <= len(p) <= 3 for p in capped)


def test_sampling_options_are_checked_with_the_option_named():
    gen = InstructionGenerator()
    with pytest.raises(ValueError, match=r"option 'min_tools' \(6\) must not be more than "
                                         r"option 'max_tools' \(5\)"):
        asyncio.run(gen.generate(_tools(), group="I2", teacher=None,  # type: ignore[arg-type]
                                 options={"min_tools": 6}))
    with pytest.raises(ValueError, match="'i3_max_tools'"):
        gen.check_options({"min_tools": 4, "i3_max_tools": 3})
    with pytest.raises(ValueError, match="option 'samples' must be at least 1"):
        gen.check_options({"samples": 0})


def test_bad_instruction_options_stop_the_service_at_start(settings):
    s = settings.model_copy(deep=True)
    s.api_annotator = ApiAnnotatorSettings(instruction_options={"min_tools": 3,
                                                                "max_tools": 2})
    rt = Runtime.create(s)
    try:
        with pytest.raises(ValueError, match=r"^api_annotator.instruction_options: "
                                             r"toolllm-instructions: option 'min_tools'"):
            build_router(rt)
    finally:
        asyncio.run(rt.close())


def test_multi_tool_category_is_the_spec_and_teacher_errors_are_failures(openai_server):
    """I2's category is the spec's title (the service passes it as ``category``); a teacher
    call that fails (here a 503) is a reported Failure of that sample, the others go on."""
    def answer(request: dict[str, Any]) -> Any:
        prompt = request["messages"][1]["content"]
        doc = json.loads(prompt.split("INPUT:\n", 1)[1].split("\nPlease produce", 1)[0])
        (t1, a1), (t2, a2) = [(t["tool_name"], t["api_list"][0]["name"]) for t in doc[:2]]
        return json_reply([{"query": f"Use {a1} and {a2} for hive 7.",
                            "related_apis": [[t1, a1], [t2, a2]]}])

    openai_server.script(error(503, "overloaded"))
    openai_server.default = answer

    async def main() -> Any:
        async with OpenAITeacher(model="scripted-model", url=openai_server.url) as teacher:
            return await InstructionGenerator().generate(
                _tools(), group="I2", teacher=teacher,
                options={"samples": 3, "seed": 3, "category": "Hive API"})

    instructions, failures = asyncio.run(main())
    assert len(failures) == 1 and failures[0].reason.startswith("teacher error: ")
    assert "overloaded" in failures[0].reason and "sampled apis: " in failures[0].raw_output
    assert len(instructions) == 2
    assert all(i.category == "Hive API" and i.group == "I2" for i in instructions)


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


def test_a_base_model_writes_one_request_per_api_target(openai_server):
    """A base-model teacher gets few-shot completion prompts, one per request, ending
    "Request that needs <names>:"; I2 pairs APIs of two tools; a reply that copies the
    examples is asked again, then reported with its raw text."""
    from syllabus.plugins.tools.instructions import BASE_EXAMPLES, base_targets

    copied = " Please reserve book 5521 for member 204."

    stubborn: list[str] = []  # the first target asked gets the copy every time

    def answer(request: dict[str, Any]) -> Any:
        names = request["prompt"].rsplit("Request that needs ", 1)[1].rstrip(":")
        if not stubborn:
            stubborn.append(names)
        if names == stubborn[0]:
            return text(copied)  # retried once, then a Failure
        return text(f" Please use {names} for hive 7 today.\nAPI: more")

    openai_server.default = answer
    tools = _tools()
    picked = {"hives": tools[:2], "weather": tools[4:6]}
    assert [[t.name for t in pair] for pair in base_targets(picked, "I2", 10)] == [
        ["list_hives", "weather_now"], ["get_hive", "forecast"]]

    async def main() -> Any:
        async with OpenAITeacher(model="scripted-model", url=openai_server.url,
                                 base_model=True) as teacher:
            return await InstructionGenerator().generate(
                tools, group="I2", teacher=teacher,
                options={"samples": 2, "seed": 3})

    instructions, failures = asyncio.run(main())
    requests = [r for r in openai_server.requests]
    assert requests and all(r.path.endswith("/v1/completions") for r in requests)
    first = requests[0].json
    assert first["prompt"].startswith(BASE_EXAMPLES) and first["stop"] == ["\n"]
    assert first["max_tokens"] == 48
    for ins in instructions:  # the first line only, for the APIs it was asked for
        assert ins.query == f"Please use {' and '.join(ins.relevant_apis)} for hive 7 today."
        assert len(ins.relevant_apis) == 2 and ins.group == "I2"
    assert len(instructions) >= 2
    copies = [f for f in failures if "copies an example" in f.reason]
    assert copies and all(f.raw_output == copied for f in copies)
    asked = [r.json["prompt"].rsplit("needs ", 1)[1].rstrip(":") for r in requests]
    assert asked.count(stubborn[0]) == 2 * len(copies)  # each asked again once


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
                          teacher=TeacherRef(kind="extractive", model="extractive-v2"))


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
    assert (report.specs_submitted, report.submitted) == (1, 0)  # a spec, not a document
    filtering = report.stages["api filtering"]  # the verdicts, with the dropped by reason
    assert filtering["operations"] == filtering["kept"] + sum(
        n for k, n in filtering.items() if k.startswith("dropped ("))
    assert any(k.startswith("dropped (") for k in filtering), filtering
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
    assert "api specs submitted" in console.file.getvalue()
    assert "api filtering operations" in console.file.getvalue()
