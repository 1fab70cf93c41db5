"""``basic-functionality``: API filtering, ToolLLM's "basic functionality test".

ToolLLM (Qin et al. 2023, "ToolLLM: Facilitating Large Language Models to Master 16000+
Real-world APIs", §2.1 "API Collection" / "API filtering") keeps only the APIs that
work: each one is called once and those that do not function properly (the paper names
404 errors, internal server errors and the like, and unreasonable responses) are
removed, before any instruction is generated from them. Here every operation of a spec is
called once, through the runtime's guarded caller, with arguments built from the spec's
examples, defaults, enums and schemas (``ApiTool.example_arguments``), and dropped when:

==================== ===================================================================
reason               when
==================== ===================================================================
``timeout``          no complete response within the caller's time cap
``server error``     status 5xx
``client error``     status 4xx (``drop_client_errors``, on by default: ToolLLM drops
                     "404 not found" APIs; with spec examples a 4xx means the
                     operation cannot be used as documented)
``html error page``  an HTML page where the spec does not declare HTML
``empty body``       an empty body where the spec declares a response body
``not json``         a body that does not parse as JSON where JSON is declared
``wrong type``       JSON of another type than the declared schema's (an object
                     declared, a string returned); ``check_response_type``
``refused``          the caller refused it (host, address, destructive method, ...)
``too large``        the body passed the caller's size cap
``connection failed`` no connection (refused, reset, DNS)
``invalid arguments`` the example arguments do not fit the operation
``redirects``        more redirects than the caller follows
==================== ===================================================================

Every tool gets an ``ApiVerdict``: kept (``reason="ok"``) or dropped, with the status,
the time, the particulars (``detail``) and the start of the response (``sample``).

Options (``api_annotator.filter_options``): ``concurrency`` (4) calls at once,
``drop_client_errors`` (true), ``check_response_type`` (``"type"``: the top-level JSON
type must match the declared schema; ``"off"``), ``sample_chars`` (200). An unknown
option or a wrong type raises ``ValueError``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from syllabus.contracts import ApiTool, ApiVerdict, ToolCaller, ToolResponse, hookimpl

__all__ = ["BasicFunctionalityFilter", "register_tool_annotators"]

_DEFAULTS: dict[str, Any] = {"concurrency": 4, "drop_client_errors": True,
                             "check_response_type": "type", "sample_chars": 200}

_JSON_TYPES = {"{": "object", "[": "array", '"': "string", "t": "boolean", "f": "boolean",
               "n": "null"}


def _options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(_DEFAULTS)
    if unknown:
        raise ValueError(f"basic-functionality: unknown option(s) {sorted(unknown)}; "
                         f"known: {sorted(_DEFAULTS)}")
    out = {**_DEFAULTS, **options}
    if not isinstance(out["concurrency"], int) or out["concurrency"] < 1:
        raise ValueError("basic-functionality: concurrency must be a positive integer")
    if not isinstance(out["drop_client_errors"], bool):
        raise ValueError("basic-functionality: drop_client_errors must be true or false")
    if out["check_response_type"] not in ("type", "off"):
        raise ValueError("basic-functionality: check_response_type must be 'type' or 'off'")
    if not isinstance(out["sample_chars"], int) or out["sample_chars"] < 0:
        raise ValueError("basic-functionality: sample_chars must be a non-negative integer")
    return out


def _declared_types(schema: Any) -> set[str]:
    """The JSON types a response schema allows at its top level (empty: any)."""
    if not isinstance(schema, dict):
        return set()
    typ = schema.get("type")
    if isinstance(typ, str):
        types = {typ}
    elif isinstance(typ, list):
        types = {t for t in typ if isinstance(t, str)}
    elif "properties" in schema or "additionalProperties" in schema:
        types = {"object"}
    elif "items" in schema:
        types = {"array"}
    else:
        types = set()
        for key in ("allOf", "oneOf", "anyOf"):
            parts = [_declared_types(s) for s in schema.get(key) or []]
            if key == "allOf" or parts and all(parts):
                for p in parts:
                    types |= p
    if "number" in types:
        types.add("integer")
    return types


def _json_type(observation: str) -> str | None:
    text = observation.lstrip()
    if not text:
        return None
    if text[0] in _JSON_TYPES:
        return _JSON_TYPES[text[0]]
    try:
        value = json.loads(text)
    except ValueError:
        return "number" if text[0] in "-0123456789" else None
    return "integer" if isinstance(value, int) else "number"


def _is_html(resp: ToolResponse) -> bool:
    if resp.media_type in ("text/html", "application/xhtml+xml"):
        return True
    head = resp.observation.lstrip()[:64].lower()
    return head.startswith(("<!doctype html", "<html"))


def _error_kind(error: str) -> str:
    for prefix, kind in (("refused:", "refused"), ("timeout", "timeout"),
                         ("too large", "too large"), ("too many redirects", "redirects"),
                         ("invalid arguments", "invalid arguments"),
                         ("connection failed", "connection failed")):
        if error.startswith(prefix):
            return kind
    return "error"


class BasicFunctionalityFilter:
    """ToolLLM's basic functionality test (see the module docstring)."""

    name = "basic-functionality"
    stage = "filter"

    def judge(self, tool: ApiTool, resp: ToolResponse, *, drop_client_errors: bool = True,
              check_response_type: str = "type") -> tuple[str, str]:
        """(reason, detail) for one response: ``("ok", "")`` when the tool works."""
        declared = (tool.response_media_type or "").lower()
        if resp.status is None:
            error = resp.error or "no response"
            return _error_kind(error), error
        if resp.status >= 500:
            return "server error", f"status {resp.status}"
        if 400 <= resp.status < 500:
            if drop_client_errors:
                return "client error", f"status {resp.status} with the example arguments"
        elif not resp.ok:
            return _error_kind(resp.error or ""), resp.error or f"status {resp.status}"
        if _is_html(resp) and "html" not in declared:
            return "html error page", (f"an HTML page ({resp.media_type or 'no media type'})"
                                       f" where {declared or 'no HTML'} is declared")
        if resp.body_bytes == 0 or not resp.observation.strip():
            if declared or tool.response_schema:
                return "empty body", f"status {resp.status} with an empty body"
            return "ok", ""  # nothing declared, nothing sent (a 204, say)
        if "json" in declared and not resp.json_body:
            return "not json", (f"the body ({resp.media_type or 'no media type'}) is not "
                                f"JSON, which {declared} declares")
        if check_response_type == "type" and resp.json_body and 200 <= resp.status < 300:
            allowed = _declared_types(tool.response_schema)
            got = _json_type(resp.observation)
            if allowed and got and got not in allowed and not (got == "null" and
                                                               "null" in allowed):
                return "wrong type", (f"the body is a JSON {got}; the spec declares "
                                      f"{' or '.join(sorted(allowed))}")
        return "ok", ""

    async def check(self, tools: list[ApiTool], *, caller: ToolCaller,
                    options: dict[str, Any]) -> list[ApiVerdict]:
        opts = _options(dict(options or {}))
        gate = asyncio.Semaphore(opts["concurrency"])

        async def one(tool: ApiTool) -> ApiVerdict:
            async with gate:
                resp = await caller.call(tool, dict(tool.example_arguments))
            reason, detail = self.judge(tool, resp,
                                        drop_client_errors=opts["drop_client_errors"],
                                        check_response_type=opts["check_response_type"])
            return ApiVerdict(tool=tool.name, kept=reason == "ok", reason=reason,
                              detail=detail, status=resp.status,
                              elapsed_seconds=resp.elapsed_seconds,
                              sample=(resp.observation or resp.error or "")
                              [:opts["sample_chars"]])

        return list(await asyncio.gather(*(one(t) for t in tools)))


@hookimpl
def register_tool_annotators(register):
    register(BasicFunctionalityFilter())
