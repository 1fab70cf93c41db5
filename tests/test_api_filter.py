"""API filtering (ToolLLM's basic functionality test) against real local HTTP APIs: the
working operations are kept, each broken kind is dropped with its reason; the example
Hive API passes except for the DELETE that its recipe does not allow."""

from __future__ import annotations

import httpx
import pytest

from syllabus.contracts import ApiFilter, ToolResponse
from syllabus.plugins.tools.api_filter import BasicFunctionalityFilter
from syllabus.services.api_annotator._caller import CallPolicy, GuardedCaller
from syllabus.services.api_annotator._example_api import EXAMPLE_SPEC, build_example_api
from syllabus.services.api_annotator._specs import load_spec
from syllabus.services.runtime import PluginManager

from .tool_api import BROKEN, DESTRUCTIVE, WORKING, LocalServer

pytestmark = pytest.mark.timeout(60)


async def _check(policy: CallPolicy, tools, **options):
    async with GuardedCaller(policy) as caller:
        return await BasicFunctionalityFilter().check(tools, caller=caller, options=options)


async def test_keeps_the_good_and_drops_each_broken_kind(tool_api):
    tools = tool_api.tools()
    policy = tool_api.policy(allow_write_methods=frozenset({"POST"}), call_timeout=1.5)
    verdicts = await _check(policy, tools)
    assert [v.tool for v in verdicts] == [t.name for t in tools]  # one each, in order
    by_tool = {v.tool: v for v in verdicts}
    assert sorted(n for n, v in by_tool.items() if v.kept) == sorted(WORKING)
    for name, reason in BROKEN.items():
        assert (by_tool[name].kept, by_tool[name].reason) == (False, reason), by_tool[name]
    for name in DESTRUCTIVE:
        v = by_tool[name]
        assert (v.kept, v.reason) == (False, "refused") and "sandbox" in v.detail
    assert all(v.reason == "ok" and v.status in (200, 201) for v in verdicts if v.kept)
    assert by_tool["weatherAlerts"].status == 500 and "internal error" in \
        by_tool["weatherAlerts"].sample
    assert by_tool["radarMap"].sample.startswith("<!DOCTYPE html>")
    assert "not JSON" in by_tool["legacyRates"].detail
    assert by_tool["rateHistory"].detail == "the body is a JSON string; the spec declares object"
    assert by_tool["slowCatalog"].detail.startswith("timeout")
    # the hanging operation did not hold up the others
    assert max(v.elapsed_seconds for v in verdicts if v.kept) < 1.0


async def test_sandbox_host_lets_the_delete_through(tool_api):
    tools = [tool_api.tool(name) for name in DESTRUCTIVE]
    verdicts = await _check(tool_api.policy(sandbox_hosts=(tool_api.host,)), tools)
    assert [(v.kept, v.reason) for v in verdicts] == [(True, "ok")]


async def test_client_errors(tool_api):
    tool = tool_api.tool("getBook").model_copy(update={"example_arguments": {"book_id": "nope"}})
    [dropped] = await _check(tool_api.policy(), [tool])
    assert (dropped.kept, dropped.reason, dropped.status) == (False, "client error", 404)
    [kept] = await _check(tool_api.policy(), [tool], drop_client_errors=False)
    assert kept.kept


async def test_refused_hosts_are_dropped_as_refused(tool_api):
    verdicts = await _check(tool_api.policy(allow_private_hosts=()), tool_api.tools()[:3])
    assert {(v.kept, v.reason) for v in verdicts} == {(False, "refused")}
    assert "loopback" in verdicts[0].detail
    assert tool_api.hits == []


async def test_options_are_checked(tool_api):
    with pytest.raises(ValueError, match="unknown option"):
        await _check(tool_api.policy(), [], treshold=3)
    with pytest.raises(ValueError, match="concurrency"):
        await _check(tool_api.policy(), [], concurrency=0)


def test_judge_edge_cases(tool_api):
    f = BasicFunctionalityFilter()
    tool = tool_api.tool("getBook")
    no_body = tool.model_copy(update={"response_media_type": None, "response_schema": None})
    assert f.judge(no_body, ToolResponse(ok=True, status=204)) == ("ok", "")
    assert f.judge(tool, ToolResponse(ok=True, status=200))[0] == "empty body"
    # a declared number accepts an integer; a declared array rejects an object
    num = tool.model_copy(update={"response_schema": {"type": "number"}})
    assert f.judge(num, ToolResponse(ok=True, status=200, observation="3", body_bytes=1,
                                     json_body=True)) == ("ok", "")
    arr = tool.model_copy(update={"response_schema": {"type": "array"}})
    resp = ToolResponse(ok=True, status=200, observation='{"a":1}', body_bytes=7,
                        json_body=True)
    assert f.judge(arr, resp)[0] == "wrong type"
    assert f.judge(arr, resp, check_response_type="off") == ("ok", "")
    html = tool.model_copy(update={"response_media_type": "text/html"})
    assert f.judge(html, ToolResponse(ok=True, status=200, observation="<html></html>",
                                      media_type="text/html", body_bytes=13)) == ("ok", "")


def test_registered_as_a_plugin():
    reg = PluginManager().get("register_tool_annotators", "basic-functionality")
    assert reg.plugin == "api-filter" and reg.obj.stage == "filter"
    assert isinstance(reg.obj, ApiFilter)


async def test_example_hive_api_passes_except_the_refused_delete():
    with LocalServer(build_example_api(), name="hive-api") as server:
        data = EXAMPLE_SPEC.read_bytes().replace(b"http://127.0.0.1:8765", server.url.encode())
        spec = load_spec(data, filename="openapi.yaml")
        host = server.url.removeprefix("http://")
        policy = CallPolicy(allowed_hosts=(host,), allow_private_hosts=(host,),
                            allow_write_methods=frozenset({"POST"}), call_timeout=5)
        verdicts = await _check(policy, spec.tools)
        # the server also serves its spec, with its own URL as the server
        async with httpx.AsyncClient() as client:
            served = (await client.get(f"{server.url}/openapi.yaml")).content
        assert load_spec(served, filename="served.yaml").servers == [server.url]
    dropped = {v.tool: v.reason for v in verdicts if not v.kept}
    assert dropped == {"deleteHive": "refused"}, [v for v in verdicts if not v.kept]
    assert len(verdicts) == 9
