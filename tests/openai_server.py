"""A real local HTTP server speaking OpenAI's chat-completions protocol, with scripted
replies: the one kind of test double DESIGN.md allows for a remote LLM endpoint.

``ScriptedOpenAI`` runs uvicorn + starlette in a background thread on a free 127.0.0.1
port. ``.url`` is the API base (``http://127.0.0.1:PORT/v1``); it serves
``POST /v1/chat/completions`` (streaming too, as server-sent events), ``POST
/v1/completions`` (a base model's endpoint: ``prompt`` in, ``choices[0].text`` out, from
the same script) and ``GET /v1/models``.

Each chat completion takes the next scripted reply, or, when the script is empty, asks
the ``default`` responder (``(request_json) -> str | Reply``; it echoes the last user
message unless told otherwise)::

    server.script(text("hello"), error(429, retry_after=2), slow(3, "late"),
                  json_reply({"a": 1}), malformed(), no_choices())

Function calling: ``tool_call(name, args, content="thought")`` is an assistant turn that
calls one function (``tool_calls(*calls)`` several: ``call(name, args)`` builds each);
its ``finish_reason`` is ``tool_calls``. A ``default`` responder may return these too, so a
policy that reads the request's ``messages`` and ``tools`` can be scripted.

Every chat request is kept in ``.requests`` (``.json``, ``.headers``) in arrival order.

For benchmarks, ``latency`` adds a fixed delay to every chat completion, and
``max_concurrency`` lets only that many be answered at once (the rest wait their turn);
``peak_in_flight`` is the most requests the server held at once, waiting ones included,
and ``peak_active`` the most that were being answered at once.

Load with ``pytest_plugins = ["tests.openai_server"]`` for the function-scoped
``openai_server`` fixture. uvicorn and starlette are imported only when a server starts.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ._local_server import LocalServer

__all__ = [
    "ReceivedRequest",
    "Reply",
    "ScriptedOpenAI",
    "echo_last_user",
    "error",
    "json_reply",
    "malformed",
    "no_choices",
    "openai_server",
    "parts",
    "slow",
    "text",
    "call",
    "tool_call",
    "tool_calls",
]


@dataclass
class Reply:
    """One scripted answer. Build them with ``text``, ``json_reply``, ``parts``, ``error``,
    ``slow``, ``malformed`` and ``no_choices``."""

    #: the assistant message's content: a string, or a list of content parts
    content: Any = ""
    #: not 200: answer with this status and ``body`` (an OpenAI-style error by default)
    status: int = 200
    #: a raw body that replaces the chat completion (``str`` is sent as is, else as JSON)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: seconds to wait before answering
    delay: float = 0.0
    #: ``{"prompt_tokens": .., "completion_tokens": ..}``; None counts words; False omits
    usage: dict[str, int] | bool | None = None
    finish_reason: str = "stop"
    #: the assistant message's ``tool_calls`` (OpenAI form), when it calls functions
    tool_calls: list[dict[str, Any]] | None = None


def call(name: str, args: Any = None, *, id: str | None = None) -> dict[str, Any]:
    """One ``tool_calls`` entry: ``args`` is a dict (sent as JSON text) or a raw string."""
    arguments = args if isinstance(args, str) else json.dumps(args or {})
    digest = hashlib.sha256(f"{name}\0{arguments}".encode()).hexdigest()[:12]
    return {"id": id or f"call_{digest}", "type": "function",
            "function": {"name": name, "arguments": arguments}}


def tool_calls(*calls: dict[str, Any], content: str = "") -> Reply:
    """An assistant turn that calls these functions (build each with ``call``)."""
    return Reply(content=content, tool_calls=list(calls), finish_reason="tool_calls")


def tool_call(name: str, args: Any = None, *, content: str = "",
              id: str | None = None) -> Reply:
    """An assistant turn that calls one function."""
    return tool_calls(call(name, args, id=id), content=content)


def text(content: str, *, usage: dict[str, int] | bool | None = None,
         delay: float = 0.0) -> Reply:
    return Reply(content=content, usage=usage, delay=delay)


def json_reply(obj: Any, *, usage: dict[str, int] | bool | None = None) -> Reply:
    """A structured answer: ``obj`` as the JSON text of the message."""
    return Reply(content=json.dumps(obj), usage=usage)


def parts(*texts: str) -> Reply:
    """The content as a list of ``{"type": "text", "text": ...}`` parts."""
    return Reply(content=[{"type": "text", "text": t} for t in texts])


def error(status: int, message: str | None = None, *, retry_after: float | str | None = None,
          type: str = "invalid_request_error", body: Any = None,
          headers: dict[str, str] | None = None) -> Reply:
    """An HTTP error with an OpenAI-style body ``{"error": {"message", "type", ...}}``."""
    hdrs = dict(headers or {})
    if retry_after is not None:
        hdrs["Retry-After"] = str(retry_after)
    if body is None:
        body = {"error": {"message": message or f"scripted error {status}", "type": type,
                          "param": None, "code": None}}
    return Reply(status=status, body=body, headers=hdrs)


def slow(seconds: float, content: str = "slow reply") -> Reply:
    return Reply(content=content, delay=seconds)


def malformed(body: str = "this is not JSON {", *, status: int = 200) -> Reply:
    """A body that is not JSON at all."""
    return Reply(status=status, body=body, headers={"Content-Type": "application/json"})


def no_choices() -> Reply:
    """Valid JSON that is not a chat completion."""
    return Reply(body={"id": "chatcmpl-broken", "object": "chat.completion", "model": "x"})


def echo_last_user(request: dict[str, Any]) -> str:
    """The default responder: the content of the last user message."""
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


@dataclass
class ReceivedRequest:
    json: Any
    headers: dict[str, str]
    path: str
    received_at: float


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v.get("text") if isinstance(v, dict) else v) for v in value)
    return 0


class ScriptedOpenAI:
    """An OpenAI-compatible server with scripted replies (see the module docstring)."""

    def __init__(self, *, default: Callable[[dict[str, Any]], str | Reply] | None = None,
                 latency: float = 0.0, max_concurrency: int | None = None,
                 models: tuple[str, ...] = ("scripted-model",)) -> None:
        self.default = default or echo_last_user
        self.latency = latency
        self.max_concurrency = max_concurrency
        self.models = models
        self.requests: list[ReceivedRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.active = 0
        self.peak_active = 0
        self.model_list_calls = 0
        self._queue: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        self._server: LocalServer | None = None
        self._semaphore: Any = None
        self._semaphore_size: int | None = None
        self._counter = 0
        self.port = 0

    # --- the script --------------------------------------------------------------------

    def script(self, *replies: Reply | str) -> ScriptedOpenAI:
        """Queue replies (a ``str`` is a text reply), answered in order."""
        for reply in replies:
            self._queue.append(text(reply) if isinstance(reply, str) else reply)
        return self

    @property
    def pending(self) -> int:
        """Scripted replies not yet used."""
        return len(self._queue)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.peak_in_flight = self.in_flight
            self.peak_active = self.active

    # --- the app -----------------------------------------------------------------------

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/completions", self._chat, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])

    async def _models(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        self.model_list_calls += 1
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "syllabus-tests"}
            for m in self.models]})

    async def _chat(self, request: Any) -> Any:
        import asyncio

        from starlette.responses import JSONResponse

        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(ReceivedRequest(
                json=body, headers={k.lower(): v for k, v in request.headers.items()},
                path=request.url.path, received_at=time.monotonic()))
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            legacy = request.url.path.endswith("/v1/completions")
            if legacy and isinstance(body, dict) and isinstance(body.get("prompt"), str):
                pass  # the completions endpoint: a prompt instead of messages
            elif not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return JSONResponse({"error": {"message": "request body must be a JSON object "
                                               "with 'messages'", "type": "invalid_request_error",
                                               "param": "messages", "code": None}}, 400)
            if self.max_concurrency is None:
                return await self._answer(body)
            if self._semaphore is None or self._semaphore_size != self.max_concurrency:
                self._semaphore = asyncio.Semaphore(self.max_concurrency)
                self._semaphore_size = self.max_concurrency
            async with self._semaphore:
                return await self._answer(body)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, body: dict[str, Any]) -> Any:
        import asyncio

        from starlette.responses import JSONResponse, Response

        with self._lock:
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
            self._counter += 1
            number = self._counter
        try:
            reply = self._queue.popleft() if self._queue else None
            if reply is None:
                answer = self.default(body)
                reply = answer if isinstance(answer, Reply) else text(str(answer))
            delay = self.latency + reply.delay
            if delay > 0:
                await asyncio.sleep(delay)
            if reply.body is not None or reply.status != 200:
                payload = reply.body if reply.body is not None else {}
                if isinstance(payload, str | bytes):
                    return Response(payload, reply.status, headers=reply.headers,
                                    media_type=reply.headers.get("Content-Type", "text/plain"))
                return JSONResponse(payload, reply.status, headers=reply.headers)
            completion = self._completion(body, reply, number)
            if body.get("stream"):
                return self._stream(completion, reply)
            return JSONResponse(completion, headers=reply.headers)
        finally:
            with self._lock:
                self.active -= 1

    def _completion(self, body: dict[str, Any], reply: Reply, number: int) -> dict[str, Any]:
        if "messages" not in body:  # /v1/completions
            return {"id": f"cmpl-scripted-{number}", "object": "text_completion",
                    "created": int(time.time()), "model": body.get("model") or self.models[0],
                    "choices": [{"index": 0, "text": reply.content, "logprobs": None,
                                 "finish_reason": reply.finish_reason}],
                    "usage": {"prompt_tokens": _words(body.get("prompt")),
                              "completion_tokens": _words(reply.content),
                              "total_tokens": _words(body.get("prompt"))
                              + _words(reply.content)}}
        out: dict[str, Any] = {
            "id": f"chatcmpl-scripted-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.models[0],
            "choices": [{"index": 0, "finish_reason": reply.finish_reason, "logprobs": None,
                         "message": {"role": "assistant", "content": reply.content}}],
        }
        if reply.tool_calls:
            out["choices"][0]["message"]["tool_calls"] = reply.tool_calls
        if reply.usage is not False:
            usage = reply.usage if isinstance(reply.usage, dict) else {
                "prompt_tokens": sum(_words(m.get("content")) for m in body["messages"]
                                     if isinstance(m, dict)),
                "completion_tokens": _words(reply.content)}
            usage = dict(usage)
            usage.setdefault("total_tokens", usage.get("prompt_tokens", 0)
                             + usage.get("completion_tokens", 0))
            out["usage"] = usage
        return out

    def _stream(self, completion: dict[str, Any], reply: Reply) -> Any:
        from starlette.responses import StreamingResponse

        content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
        pieces = content.split(" ")
        base = {k: completion[k] for k in ("id", "created", "model")}

        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            return "data: " + json.dumps({**base, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

        async def events() -> Any:
            yield chunk({"role": "assistant", "content": ""}, None)
            for i, piece in enumerate(pieces):
                yield chunk({"content": piece if i == 0 else " " + piece}, None)
            yield chunk({}, reply.finish_reason)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=reply.headers)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> ScriptedOpenAI:
        server = LocalServer(self._app(), name="scripted-openai",
                             what="the scripted OpenAI server", start_timeout=10.0)
        self._server = server.start()
        self.port = server.port
        return self

    def stop(self) -> None:
        """Stop at once: replies still being delayed are cut off. Idempotent."""
        if self._server is not None:
            self._server.stop(strict=True)

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    def __enter__(self) -> ScriptedOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture
def openai_server() -> Iterator[ScriptedOpenAI]:
    """A running ``ScriptedOpenAI`` for one test; set ``.default``, ``.latency`` or
    ``.max_concurrency`` on it, or ``.script(...)`` replies."""
    server = ScriptedOpenAI().start()
    try:
        yield server
    finally:
        server.stop()
