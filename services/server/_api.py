"""The OpenAI-compatible HTTP API: ``/v1/chat/completions`` (streaming and not),
``/v1/completions`` and ``/v1/models``, answered by the models Triton serves.

Every generation goes to Triton through ``tritonclient``'s gRPC streaming infer (the
models are decoupled); a chat is first rendered into a prompt by the model's own chat
template. Streaming answers are server-sent events (``data: {chunk}``, then
``data: [DONE]``), as OpenAI sends them; ``stream_options.include_usage`` adds the usage
chunk.

Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400
(``invalid_request_error``) for a body that is not a JSON object or a bad field (naming
it in ``param``), including what ``json`` parses but nothing downstream can take: nesting
deeper than ``MAX_DEPTH``, a lone surrogate in a string or key (``invalid_unicode``),
``NaN``/``Infinity`` or a number out of float range, an empty prompt (``empty_prompt``);
404 for an unknown model, 413 for a body over ``server.max_request_bytes``, 429 (with
``Retry-After``) when ``server.concurrency`` requests are already being served, 503 when
Triton or the model is unavailable (only then), 502 for another Triton failure, 500 for
anything unexpected, 404/405 for an unknown path or method under ``/v1``; 401 comes from the
bearer-token middleware of every service (``http.token``). Limits: ``max_tokens`` up to
``server.max_tokens_limit``, at most 4 stop strings, ``n`` = 1, and the prompt: 400
``context_length_exceeded`` when it is longer than ``server.max_prompt_tokens`` or it plus
``max_tokens`` exceeds the model's ``max_position_embeddings`` (counted with the model's
tokenizer; a request that names no ``max_tokens`` gets what is left of the context). A
temperature under 1e-5 is greedy (as vLLM has it), and a top_p under 1e-8 is taken as
1e-8 (the most likely token only): smaller ones round to 0 in float32.

``/openapi.json`` (see ``syllabus.services.runtime._http``) describes every operation
here: the request bodies, the answers (JSON, or server-sent events), the errors, and the
limits of this server's settings (``max_tokens`` up to ``server.max_tokens_limit``).

A stream answers an error status, not 200, when generation fails before its first piece
(the first response from Triton is awaited before the answer starts).
``server.request_timeout`` bounds streams as well as whole answers. When the client goes
away, generation is cancelled (Triton stops the request) and the request's concurrency
slot is freed at once, streaming or not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..runtime import Runtime
from ..runtime._http import ApiRoute, error_responses, json_body
from ._deploy import ServerState, server_state
from ._metrics import API_REQUESTS, API_SECONDS, API_TTFT, IN_FLIGHT
from ._triton import TritonError

__all__ = ["ApiError", "api_routes", "openai_error"]

log = logging.getLogger("syllabus.server.api")

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                404: "invalid_request_error", 405: "invalid_request_error",
                413: "invalid_request_error", 429: "rate_limit_exceeded", 499: "client_closed", 500: "server_error", 502: "server_error",
                503: "server_error", 504: "server_error"}
_MAX_STOP = 4
#: a temperature under this is greedy (vLLM's _SAMPLING_EPS)
_SAMPLING_EPS = 1e-5
#: the smallest top_p passed on (a most likely token below it needs a 10^8-token vocabulary)
_MIN_TOP_P = 1e-8


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def openai_error(status: int, message: str, *, code: str | None = None,
                 param: str | None = None) -> JSONResponse:
    resp = JSONResponse({"error": {"message": message, "type": _ERROR_TYPES.get(status, "error"),
                                   "param": param, "code": code}}, status_code=status)
    if status == 429:
        resp.headers["Retry-After"] = "1"
    return resp


# --- request parsing ----------------------------------------------------------------------


#: the deepest nesting a body may have (OpenAI's bodies need 5: messages[i].content[j].text)
MAX_DEPTH = 32


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not valid JSON (numbers must be finite)")


def _field(path: list[str | int]) -> str:
    """``messages[0].content``: where in the body (a key that is not valid Unicode is
    shown escaped)."""
    out = ""
    for p in path:
        if isinstance(p, str):
            p = p.encode("utf-8", "backslashreplace").decode("utf-8")
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _check_tree(body: Any) -> None:
    """400 for what ``json`` accepts and nothing downstream can take: nesting deeper than
    ``MAX_DEPTH``, and strings (or keys) with a lone surrogate (``"\\ud800"``), which
    have no UTF-8. Iterative: a deep body costs no recursion here."""
    stack: list[tuple[Any, list[str | int]]] = [(body, [])]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise ApiError(400, f"the request body is nested deeper than {MAX_DEPTH} levels "
                                f"(at {_field(path[:3])}...)", param=_field(path[:1]) or None,
                           code="invalid_json")
        if isinstance(value, str):
            _utf8(value, path)
        elif isinstance(value, dict):
            for k, v in value.items():
                _utf8(k, [*path, k])
                stack.append((v, [*path, k]))
        elif isinstance(value, list):
            stack.extend((v, [*path, i]) for i, v in enumerate(value))


def _utf8(text: str, path: list[str | int]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = _field(path) or "the body"
        raise ApiError(400, f"{where}: the string has a lone surrogate "
                            f"({text[exc.start:exc.end]!a} at character {exc.start}), which "
                            "is not valid Unicode", param=_field(path) or None,
                       code="invalid_unicode") from None


async def _body(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object, read up to ``limit`` bytes (413 past it, while it
    streams); 400 for anything that is not a JSON object a generation can use."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the request body is {length} bytes; the limit is {limit}",
                       code="request_too_large")
    data = bytearray()
    try:
        async for chunk in request.stream():
            data.extend(chunk)
            if len(data) > limit:
                raise ApiError(413, f"the request body exceeds the limit of {limit} bytes",
                               code="request_too_large")
    except ClientDisconnect as exc:
        raise ApiError(400, "the client disconnected while sending the body") from exc
    if not data.strip():
        raise ApiError(400, "the request body is empty; send a JSON object",
                       code="invalid_json")
    try:
        body = json.loads(bytes(data), parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, f"the request body is nested deeper than {MAX_DEPTH} levels",
                       code="invalid_json") from None
    except ValueError as exc:  # also UnicodeDecodeError and ints of over 4300 digits
        raise ApiError(400, f"the request body is not valid JSON: {exc}",
                       code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not "
                            f"{_json_type(body)}", code="invalid_json")
    _check_tree(body)
    return body


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")


def _number(body: dict[str, Any], key: str, lo: float, hi: float, *, integer: bool = False,
            default: Any = None) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (integer and not isinstance(value, int)):
        raise ApiError(400, f"{key} must be {'an integer' if integer else 'a number'}",
                       param=key, code="invalid_value")
    if not lo <= value <= hi:
        raise ApiError(400, f"{key} must be between {lo:g} and {hi:g}, got {str(value)[:40]}",
                       param=key, code="invalid_value")
    return value


def _sampling(state: ServerState, body: dict[str, Any]) -> dict[str, Any]:
    cfg = state.cfg
    limit = cfg.max_tokens_limit
    # both are checked; max_completion_tokens (OpenAI's newer name) wins
    max_tokens = _number(body, "max_completion_tokens", 1, limit, integer=True)
    older = _number(body, "max_tokens", 1, limit, integer=True)
    if max_tokens is None:
        max_tokens = older if older is not None else min(cfg.default_max_tokens, limit)
    sampling: dict[str, Any] = {
        "max_tokens": max_tokens,
        "temperature": _number(body, "temperature", 0, 2, default=1.0),
    }
    # a temperature too small for float32 (5e-324) divides the logits by 0: as vLLM does,
    # anything under _SAMPLING_EPS is greedy
    if sampling["temperature"] < _SAMPLING_EPS:
        sampling["temperature"] = 0.0
    top_p = _number(body, "top_p", 0, 1)
    if top_p is not None:
        if top_p == 0:
            raise ApiError(400, "top_p must be above 0", param="top_p", code="invalid_value")
        # one that float32 rounds to 0 would keep no token at all; _MIN_TOP_P keeps the
        # most likely one only, as any top_p under its probability does
        sampling["top_p"] = max(top_p, _MIN_TOP_P)
    seed = _number(body, "seed", -(2**63), 2**63 - 1, integer=True)
    if seed is not None:
        sampling["seed"] = seed % (2**32)
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise ApiError(400, "stop must be a string or a list of strings", param="stop",
                           code="invalid_value")
        if len(stops) > _MAX_STOP:
            raise ApiError(400, f"stop takes at most {_MAX_STOP} strings", param="stop",
                           code="invalid_value")
        sampling["stop"] = [s for s in stops if s]
    ignore_eos = body.get("ignore_eos")  # vLLM's extension: generate all max_tokens
    if ignore_eos is not None:
        if not isinstance(ignore_eos, bool):
            raise ApiError(400, "ignore_eos must be true or false", param="ignore_eos")
        sampling["ignore_eos"] = ignore_eos
    n = _number(body, "n", 1, 1, integer=True, default=1)
    if n != 1:
        raise ApiError(400, "only n = 1 is supported", param="n")
    return sampling


def _model(state: ServerState, body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required (see GET /v1/models)", param="model",
                       code="missing_model")
    found = state.lookup(model)
    if found is None:
        raise ApiError(404, f"the model {model!r} does not exist or is not deployed",
                       param="model", code="model_not_found")
    return found.name


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a role",
                           param=f"messages[{i}]")
        role, content = m["role"], m.get("content")
        if role not in ("system", "developer", "user", "assistant"):
            raise ApiError(400, f"messages[{i}].role {role!r} is not supported (system, "
                                "user, assistant)", param=f"messages[{i}].role")
        if isinstance(content, list):  # content parts: text only
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or \
                        not isinstance(part.get("text"), str):
                    raise ApiError(400, f"messages[{i}].content: only text parts are "
                                        "supported", param=f"messages[{i}].content")
                parts.append(part["text"])
            content = "".join(parts)
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{i}].content must be a string",
                           param=f"messages[{i}].content")
        out.append({"role": "system" if role == "developer" else role, "content": content})
    return out


def _stream_flag(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream")
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false", param="stream")
    options = body.get("stream_options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object", param="stream_options")
    include_usage = options.get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        raise ApiError(400, "stream_options.include_usage must be true or false",
                       param="stream_options.include_usage")
    return stream, bool(include_usage)


def _unsupported(body: dict[str, Any]) -> None:
    for key in ("tools", "functions", "response_format", "logprobs"):
        value = body.get(key)
        if value and not (key == "response_format" and isinstance(value, dict)
                          and value.get("type") == "text"):
            raise ApiError(400, f"{key} is not supported by this server", param=key,
                           code="unsupported_parameter")


# --- the endpoints ------------------------------------------------------------------------

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class _Slot:
    """One of ``server.concurrency`` request slots (``take`` raises 429 when none is
    free); ``release`` is idempotent, so every path out may call it."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.held = False
        #: a streaming response took the slot over (it releases it when it ends)
        self.streaming = False

    def take(self) -> None:
        if self.state.in_flight >= self.state.cfg.concurrency:
            raise ApiError(429, f"the server is busy ({self.state.cfg.concurrency} requests "
                                "in flight); retry shortly", code="rate_limit_exceeded")
        self.state.in_flight += 1
        self.held = True
        IN_FLIGHT.set(self.state.in_flight)

    def release(self) -> None:
        if self.held:
            self.held = False
            self.state.in_flight -= 1
            IN_FLIGHT.set(self.state.in_flight)


def _usage(n_in: int, n_out: int) -> dict[str, int]:
    return {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}


def _status_error(exc: TritonError) -> ApiError:
    status = exc.status if exc.status in (400, 404, 503, 504) else 502
    return ApiError(status, str(exc), code="triton_error")


def _unexpected(exc: Exception) -> ApiError:
    """An error the endpoints do not expect, as an OpenAI error (never plain text)."""
    if isinstance(exc, TritonError):
        return _status_error(exc)
    # the embedded tritonserver could not start (a RecursionError or NotImplementedError
    # is a RuntimeError too, but a bug here, not an unavailable backend)
    if isinstance(exc, RuntimeError) and \
            not isinstance(exc, (RecursionError, NotImplementedError)):
        log.error("Triton is unavailable: %s", exc)
        return ApiError(503, f"Triton is unavailable: {str(exc).splitlines()[0]}",
                        code="triton_unavailable")
    if isinstance(exc, OSError):  # the store (a model's tokenizer), the file system
        log.error("the store or file system failed: %s", exc)
        return ApiError(503, f"a resource is unavailable: {exc}", code="unavailable")
    log.exception("unexpected error")
    return ApiError(500, f"internal error: {type(exc).__name__}", code="internal_error")


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone away (the body must have been read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _race(receive: Receive, aw: Any, timeout: float) -> Any:
    """``aw``'s result, unless the client disconnects first (499, and ``aw`` is
    cancelled: Triton stops the request) or ``timeout`` seconds pass (504)."""
    task = asyncio.ensure_future(aw)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({task, watch}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        if watch in done:
            raise ApiError(499, "the client closed the request", code="client_closed")
        raise ApiError(504, f"generation took longer than {timeout:g}s", code="timeout")
    finally:
        for t in (task, watch):
            t.cancel()
        await asyncio.gather(task, watch, return_exceptions=True)


async def _check_context(state: ServerState, name: str, prompt: str,
                         sampling: dict[str, Any], *, explicit: bool, param: str) -> None:
    """400 ``empty_prompt`` for a prompt of no tokens; 400 ``context_length_exceeded`` for
    a prompt over ``server.max_prompt_tokens``, or prompt + max_tokens over the model's
    context; a ``max_tokens`` the request did not name is cut to what the context
    leaves."""
    n = await state.count_tokens(name, prompt)
    if n == 0:  # the backend has nothing to continue (it failed with a 502)
        raise ApiError(400, "the prompt is empty: it has no tokens", param=param,
                       code="empty_prompt")
    limit = state.cfg.max_prompt_tokens
    if limit and n > limit:
        raise ApiError(400, f"the prompt has {n} tokens; this server takes at most {limit}",
                       param=param, code="context_length_exceeded")
    context = await state.context_length(name)
    if not context:
        return
    if not explicit and n < context:
        sampling["max_tokens"] = min(sampling["max_tokens"], context - n)
    if n + sampling["max_tokens"] > context:
        raise ApiError(400, f"this model's maximum context length is {context} tokens; "
                            f"the request asks for {n + sampling['max_tokens']} ({n} in the "
                            f"prompt, {sampling['max_tokens']} in the completion): shorten "
                            "the prompt or lower max_tokens", param=param,
                       code="context_length_exceeded")


def api_routes(rt: Runtime) -> list[Route]:
    async def handle(request: Request, endpoint: str, chat: bool) -> Response:
        state = server_state(rt)
        started = time.perf_counter()
        status = 200
        slot = _Slot(state)
        try:
            body = await _body(request, state.cfg.max_request_bytes)
            slot.take()
            await state.start()
            name = _model(state, body)
            _unsupported(body)
            sampling = _sampling(state, body)
            stream, include_usage = _stream_flag(body)
            if chat:
                try:
                    prompt = await state.render_chat(name, _messages(body))
                except ValueError as exc:
                    raise ApiError(400, str(exc), param="messages") from exc
            else:
                prompt = body.get("prompt")
                if isinstance(prompt, list) and len(prompt) == 1:
                    prompt = prompt[0]
                if not isinstance(prompt, str):
                    raise ApiError(400, "prompt must be a string (or a list of one)",
                                   param="prompt")
            explicit = body.get("max_tokens") is not None or \
                body.get("max_completion_tokens") is not None
            await _check_context(state, name, prompt, sampling, explicit=explicit,
                                 param="messages" if chat else "prompt")
            if stream:
                # the response owns the slot from here, and frees it when it ends
                return await _sse(request, state, slot, name, prompt, sampling, chat=chat,
                                  include_usage=include_usage, endpoint=endpoint,
                                  started=started)
            return await _whole(request, state, name, prompt, sampling, chat=chat,
                                timeout=state.cfg.request_timeout)
        except ApiError as exc:
            status = exc.status
            return openai_error(exc.status, exc.message, code=exc.code, param=exc.param)
        except Exception as exc:  # noqa: BLE001 - Triton, the store: an OpenAI error body
            err = _unexpected(exc)
            status = err.status
            return openai_error(err.status, err.message, code=err.code)
        finally:
            if not slot.streaming:
                slot.release()
            API_REQUESTS.labels(endpoint=endpoint, status=str(status)).inc()
            API_SECONDS.labels(endpoint=endpoint).observe(time.perf_counter() - started)

    def guarded(fn: Any, *methods: str) -> Any:
        """An endpoint that answers only ``methods`` (else 405) and turns any error into
        an OpenAI error body."""
        async def endpoint(request: Request) -> Response:
            if request.method not in methods and \
                    not (request.method == "HEAD" and "GET" in methods):
                resp = openai_error(405, f"{request.method} is not allowed on "
                                         f"{request.url.path} (use {', '.join(methods)})",
                                    code="method_not_allowed")
                resp.headers["Allow"] = ", ".join(methods)
                return resp
            try:
                return await fn(request)
            except ApiError as exc:
                return openai_error(exc.status, exc.message, code=exc.code, param=exc.param)
            except Exception as exc:  # noqa: BLE001 - never a plain-text 500
                err = _unexpected(exc)
                return openai_error(err.status, err.message, code=err.code)
        return endpoint

    async def chat_completions(request: Request) -> Response:
        return await handle(request, "chat.completions", chat=True)

    async def completions(request: Request) -> Response:
        return await handle(request, "completions", chat=False)

    async def models(_: Request) -> Response:
        state = server_state(rt)
        await state.start()
        data = [_model_card(state, ev) for ev in state.deployed().values()]
        return JSONResponse({"object": "list", "data": data})

    async def model(request: Request) -> Response:
        state = server_state(rt)
        await state.start()
        found = state.lookup(request.path_params["model"])
        if found is None:
            return openai_error(404, f"the model {request.path_params['model']!r} does not "
                                     "exist or is not deployed", code="model_not_found",
                                param="model")
        return JSONResponse(_model_card(state, found))

    async def unknown(request: Request) -> Response:
        return openai_error(404, f"no such endpoint: {request.method} {request.url.path}",
                            code="unknown_url")

    docs = _openapi(rt.settings.server.max_tokens_limit)
    return [ApiRoute("/v1/chat/completions", guarded(chat_completions, "POST"),
                     methods=_ALL_METHODS, openapi=docs["chat"], schemas=docs["schemas"]),
            ApiRoute("/v1/completions", guarded(completions, "POST"), methods=_ALL_METHODS,
                     openapi=docs["completions"]),
            ApiRoute("/v1/models", guarded(models, "GET"), methods=_ALL_METHODS,
                     openapi=docs["models"]),
            ApiRoute("/v1/models/{model:path}", guarded(model, "GET"), methods=_ALL_METHODS,
                     openapi=docs["model"]),
            Route("/v1/{path:path}", unknown, methods=_ALL_METHODS)]


# --- the OpenAPI description ----------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _openapi(max_tokens: int) -> dict[str, Any]:
    """The API's operations and schemas, for ``/openapi.json`` (``max_tokens`` up to
    ``server.max_tokens_limit``)."""
    nullable = ["null"]
    sampling = {
        "model": {"type": "string", "minLength": 1,
                  "description": "a deployed model's name or model id (GET /v1/models)"},
        "max_tokens": {"type": ["integer", *nullable], "minimum": 1, "maximum": max_tokens},
        "max_completion_tokens": {"type": ["integer", *nullable], "minimum": 1,
                                  "maximum": max_tokens},
        "temperature": {"type": ["number", *nullable], "minimum": 0, "maximum": 2},
        "top_p": {"type": ["number", *nullable], "exclusiveMinimum": 0, "maximum": 1},
        "seed": {"type": ["integer", *nullable], "minimum": -(2**63), "maximum": 2**63 - 1},
        "stop": {"anyOf": [{"type": "string"},
                           {"type": "array", "maxItems": _MAX_STOP, "items": {"type": "string"}},
                           {"type": "null"}]},
        "n": {"type": ["integer", *nullable], "minimum": 1, "maximum": 1},
        "stream": {"type": ["boolean", *nullable]},
        "stream_options": {"type": ["object", *nullable],
                           "properties": {"include_usage": {"type": ["boolean", *nullable]}}},
        "ignore_eos": {"type": ["boolean", *nullable],
                       "description": "vLLM's extension: generate all max_tokens"},
    }
    usage = {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
             "properties": {k: {"type": "integer", "minimum": 0}
                            for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
    finish = {"type": ["string", "null"]}
    head = {"id": {"type": "string"}, "created": {"type": "integer"}, "model": {"type": "string"},
            "usage": _ref("Usage")}
    schemas: dict[str, Any] = {
        "Usage": usage,
        "ChatMessage": {
            "type": "object", "required": ["role"],
            "properties": {
                "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
                "content": {"anyOf": [
                    {"type": "string"}, {"type": "null"},
                    {"type": "array", "items": {
                        "type": "object", "required": ["type", "text"],
                        "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}}]},
            }},
        "ChatCompletionRequest": {
            "type": "object", "required": ["model", "messages"],
            "properties": {"messages": {"type": "array", "minItems": 1,
                                        "items": _ref("ChatMessage")}, **sampling}},
        "CompletionRequest": {
            "type": "object", "required": ["model", "prompt"],
            "properties": {"prompt": {"anyOf": [
                {"type": "string"},
                {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "string"}}]},
                **sampling}},
        "ChatCompletion": {
            "type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
            "properties": {**head, "object": {"const": "chat.completion"}, "choices": {
                "type": "array", "items": {
                    "type": "object", "required": ["index", "message", "finish_reason"],
                    "properties": {"index": {"type": "integer"}, "finish_reason": finish,
                                   "logprobs": {"type": "null"},
                                   "message": {"type": "object", "required": ["role", "content"],
                                               "properties": {
                                                   "role": {"const": "assistant"},
                                                   "content": {"type": "string"}}}}}}}},
        "Completion": {
            "type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
            "properties": {**head, "object": {"const": "text_completion"}, "choices": {
                "type": "array", "items": {
                    "type": "object", "required": ["index", "text", "finish_reason"],
                    "properties": {"index": {"type": "integer"}, "text": {"type": "string"},
                                   "finish_reason": finish, "logprobs": {"type": "null"}}}}}},
        "ChatCompletionChunk": {
            "type": "object", "required": ["id", "object", "created", "model", "choices"],
            "properties": {**head, "object": {"const": "chat.completion.chunk"}, "choices": {
                "type": "array", "items": {
                    "type": "object", "required": ["index", "delta", "finish_reason"],
                    "properties": {"index": {"type": "integer"}, "finish_reason": finish,
                                   "logprobs": {"type": "null"},
                                   "delta": {"type": "object", "properties": {
                                       "role": {"const": "assistant"},
                                       "content": {"type": "string"}}}}}}}},
        "CompletionChunk": {
            "type": "object", "required": ["id", "object", "created", "model", "choices"],
            "properties": {**head, "object": {"const": "text_completion"}, "choices": {
                "type": "array", "items": {
                    "type": "object", "required": ["index", "text", "finish_reason"],
                    "properties": {"index": {"type": "integer"}, "text": {"type": "string"},
                                   "finish_reason": finish, "logprobs": {"type": "null"}}}}}},
        "Model": {
            "type": "object", "required": ["id", "object", "created", "owned_by"],
            "properties": {"id": {"type": "string"}, "object": {"const": "model"},
                           "created": {"type": "integer"}, "owned_by": {"type": "string"},
                           "model_id": {"type": "string"}, "dataset": {"type": ["string", "null"]},
                           "eval_scores": {"type": "object",
                                           "additionalProperties": {"type": ["number", "null"]}}}},
        "ModelList": {"type": "object", "required": ["object", "data"],
                      "properties": {"object": {"const": "list"},
                                     "data": {"type": "array", "items": _ref("Model")}}},
    }
    failures = error_responses(400, 404, 413, 429, 502, 503, 504,
                               _404="the model does not exist or is not deployed",
                               _429="server.concurrency requests are in flight (Retry-After)",
                               _503="Triton or the model is unavailable",
                               _504="generation took longer than server.request_timeout")

    def events(chunk: str) -> dict[str, Any]:
        """One server-sent event (as OpenAPI before 3.2 describes a stream: each event):
        ``data: {chunk}``, an error after the answer started, or ``data: [DONE]``."""
        return {"type": "object", "required": ["data"], "properties": {
            "event": {"const": "message"},
            "data": {"anyOf": [
                {"const": "[DONE]"},
                {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"anyOf": [_ref(chunk), _ref("Error")]}}]}}}

    def generation(summary: str, request: str, answer: str) -> dict[str, Any]:
        return {"post": {
            "summary": summary,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref(request)}}},
            "responses": {
                "200": {"description": "the answer, or with stream: true server-sent events "
                                       "(data: {chunk} ... data: [DONE])",
                        "content": {"application/json": {"schema": _ref(answer)},
                                    "text/event-stream": {"schema": events(answer + "Chunk")}}},
                **failures}}}

    model_param = {"name": "model", "in": "path", "required": True,
                   "schema": {"type": "string", "minLength": 1}}
    return {
        "schemas": schemas,
        "chat": generation("Chat completion (OpenAI-compatible)", "ChatCompletionRequest",
                           "ChatCompletion"),
        "completions": generation("Text completion (OpenAI-compatible)", "CompletionRequest",
                                  "Completion"),
        "models": {"get": {"summary": "The deployed models",
                           "responses": {"200": json_body(_ref("ModelList")),
                                         **error_responses(503)}}},
        "model": {"get": {"summary": "One deployed model", "parameters": [model_param],
                          "responses": {"200": json_body(_ref("Model")),
                                        **error_responses(404, 503)}}},
    }


def _model_card(state: ServerState, ev: Any) -> dict[str, Any]:
    created = (state.records.get(ev.name) or {}).get("recorded_at") or 0
    # JSON has no NaN (a score over no items): null
    scores = {k: v if isinstance(v, (int, float)) and math.isfinite(v) else None
              for k, v in ev.eval_scores.items()}
    return {"id": ev.name, "object": "model", "created": int(created), "owned_by": "syllabus",
            "model_id": ev.model_id, "dataset": ev.dataset, "eval_scores": scores}


async def _whole(request: Request, state: ServerState, name: str, prompt: str,
                 sampling: dict[str, Any], *, chat: bool, timeout: float) -> Response:
    from ._gate import generate

    try:
        text, finish, n_in, n_out = await _race(
            request.receive, generate(state, name, prompt, sampling), timeout)
    except TritonError as exc:
        raise _status_error(exc) from exc
    created = int(time.time())
    if chat:
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": created, "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish or "stop", "logprobs": None}],
            "usage": _usage(n_in, n_out)})
    return JSONResponse({
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": created,
        "model": name, "choices": [{"index": 0, "text": text, "finish_reason": finish or "stop",
                                    "logprobs": None}],
        "usage": _usage(n_in, n_out)})


class _EventStream(StreamingResponse):
    """Server-sent events that end when the client goes away (not only at the next
    failed write), and that always close their source and free their slot."""

    def __init__(self, content: AsyncIterator[bytes], *, on_close: Any, **kw: Any) -> None:
        super().__init__(content, **kw)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        run = asyncio.ensure_future(self.stream_response(send))
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({run, watch}, return_when=asyncio.FIRST_COMPLETED)
            if run.done() and not run.cancelled():
                exc = run.exception()
                if exc is not None and not isinstance(exc, OSError):  # OSError: client gone
                    raise exc
        finally:
            for t in (run, watch):
                t.cancel()
            await asyncio.gather(run, watch, return_exceptions=True)
            try:
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
            finally:
                self._on_close()


async def _sse(request: Request, state: ServerState, slot: _Slot, name: str, prompt: str,
               sampling: dict[str, Any], *, chat: bool, include_usage: bool, endpoint: str,
               started: float) -> Response:
    ident = f"chatcmpl-{uuid.uuid4().hex}" if chat else f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"
    timeout = state.cfg.request_timeout
    deadline = asyncio.get_running_loop().time() + timeout

    def event(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    def chunk(delta: dict[str, Any] | str, finish: str | None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if chat:
            choice["delta"] = delta
        else:
            choice["text"] = delta
        return {"id": ident, "object": kind, "created": created, "model": name,
                "choices": [choice]}

    source = state.triton_client().stream(name, prompt, sampling, stream=True)
    # Triton's first response before the answer starts: a failure now is an error status
    try:
        first = await _race(request.receive, anext(source, None), timeout)
    except TritonError as exc:
        await source.aclose()
        raise _status_error(exc) from exc
    except BaseException:
        await source.aclose()
        raise

    async def pieces() -> AsyncIterator[Any]:
        piece = first
        while piece is not None:
            yield piece
            if piece.final:
                return
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError
            # its own timeout per piece: a cancelled wait closes the Triton stream
            piece = await asyncio.wait_for(anext(source, None), remaining)

    async def events() -> AsyncIterator[bytes]:
        first_text = True
        n_in = n_out = 0
        try:
            if chat:
                yield event(chunk({"role": "assistant", "content": ""}, None))
            finish = None
            async for piece in pieces():
                n_in = piece.input_tokens if piece.input_tokens is not None else n_in
                n_out = piece.output_tokens if piece.output_tokens is not None else n_out
                finish = piece.finish_reason or finish
                if piece.text:
                    if first_text:
                        API_TTFT.labels(endpoint=endpoint).observe(time.perf_counter() - started)
                        first_text = False
                    yield event(chunk({"content": piece.text} if chat else piece.text, None))
            yield event(chunk({} if chat else "", finish or "stop"))
            if include_usage:
                yield event({"id": ident, "object": kind, "created": created, "model": name,
                             "choices": [], "usage": _usage(n_in, n_out)})
        except TritonError as exc:  # after the answer started: an error event
            err = _status_error(exc)
            yield event({"error": {"message": err.message, "type": _ERROR_TYPES[err.status],
                                   "param": None, "code": err.code}})
        except TimeoutError:
            yield event({"error": {"message": f"generation took longer than {timeout:g}s",
                                   "type": "server_error", "param": None, "code": "timeout"}})
        finally:
            await source.aclose()
        yield b"data: [DONE]\n\n"

    slot.streaming = True
    return _EventStream(events(), on_close=slot.release, media_type="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
