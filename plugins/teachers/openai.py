"""The ``openai`` teacher: any endpoint that speaks OpenAI's chat-completions protocol.

Meant for vLLM, TGI (its ``/v1`` Messages API), Ollama, the llama.cpp server and OpenAI
itself. One ``complete`` is one ``POST {url}/chat/completions``; the runtime around the
teacher adds bounded concurrency, retries with back-off, the response cache and metrics,
so this module does none of them. It only says, through ``TeacherError.retryable``,
whether a failure is worth retrying.

Options (the recipe's ``[teacher]`` table; keys not listed are left to the runtime):

``model`` (required)
    The model name the server knows (``--served-model-name`` for vLLM).
``url`` (default ``http://127.0.0.1:8000/v1``)
    The API base, as OpenAI's SDKs take it: the part before ``/chat/completions``. A URL
    with no path at all (``http://host:8000``) gets ``/v1`` appended; a URL with a path is
    used as given (``https://host/openai/v1``), so servers mounted elsewhere still work.
    Trailing slashes are ignored.
``api_key``
    A ``str`` or anything with ``get_secret_value()`` (pydantic's ``SecretStr``); sent as
    ``Authorization: Bearer ...``. It never appears in ``repr``, logs or error messages
    (a server that echoes it back has it replaced by ``***``).
``timeout`` (default 60)
    Seconds to connect, send, and wait for the reply. Waiting for a pooled connection is
    not timed: the runtime bounds concurrency.
``concurrency`` (default 16)
    Sizes the connection pool to the runtime's concurrency for this teacher.
``extra_headers``
    A mapping (or a JSON object string) of headers sent with every request.
``json_mode`` (default ``auto``)
    How to ask for structured output when ``GenerationParams.json_schema`` is set:
    ``json_schema`` sends ``response_format={"type": "json_schema", "json_schema": {...,
    "strict": false}}`` (OpenAI, vLLM, llama.cpp's ``llama-server``);
    ``json_object_schema`` sends ``{"type": "json_object", "schema": {...}}``
    (llama-cpp-python's server, which enforces the schema with a grammar);
    ``json_object`` sends ``{"type": "json_object"}`` (valid JSON of any shape); ``off``
    sends nothing (the prompt still asks for JSON). ``auto`` starts with ``json_schema``;
    when the server refuses it (any error status, 500 included, whose message names
    ``response_format``, ``json_schema`` or ``json_object``: llama-cpp-python answers a
    ``json_schema`` request with a 500 validation error) the same call is resent one step
    down the list, and the teacher remembers the step for its later calls.

``base_model`` (default false)
    True for a pretrained model that is not instruction-tuned (vLLM or llama.cpp serving a
    base checkpoint). Techniques then send few-shot completion prompts
    (``GenerationParams.prompt``), which go to ``POST {url}/completions`` as ``prompt``; a
    call without one still goes to ``/chat/completions``. Structured output is not asked
    for on ``/completions``: the few-shot prompts ask for plain-text formats.
``grammar`` (default false)
    True for a llama.cpp server (``llama-server`` or llama-cpp-python's, which both take
    a GBNF ``grammar`` on ``/completions``): a completion prompt's
    ``GenerationParams.grammar`` (a choice: ``root ::= " (" [AB] ")"``) is sent with it and
    enforced while decoding. Other servers may refuse the unknown field, so it is off by
    default and the grammar is not sent.

Function calling: ``GenerationParams.tools`` (and ``tool_choice``) are sent as OpenAI's
``tools``/``tool_choice``; messages carry their ``tool_calls``, ``tool_call_id`` and
``name``; the reply's ``message.tool_calls`` become ``Completion.tool_calls`` and its
``finish_reason`` is kept.

Errors: 408, 429, 5xx, time-outs, refused or dropped connections, and a 200 whose body is
not a chat completion are ``TeacherError(retryable=True)``; a 429 or 503 ``Retry-After``
(or ``retry-after-ms``) is on the error as ``retry_after`` (seconds, float). Any other
4xx is ``TeacherError(retryable=False)`` carrying the server's message (at most 500
characters).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from syllabus.contracts import (
    ChatMessage,
    Completion,
    GenerationParams,
    TeacherError,
    ToolCall,
    hookimpl,
)

from ._common import (
    Secret,
    bool_option,
    choice_error,
    mapping_option,
    positive,
    required_model,
    reveal,
    scrub,
    snippet,
)
from ._http import http_client, post_json, response_json, retryable_status

__all__ = ["JSON_MODES", "OpenAITeacher", "OpenAITeacherFactory", "register_teachers"]

KIND = "openai"
_WHO = "openai teacher"
_MODEL_HINT = 'the model name the server serves, e.g. model = "Qwen/Qwen2.5-7B-Instruct"'
JSON_MODES = ("auto", "json_schema", "json_object_schema", "json_object", "off")
DEFAULT_URL = "http://127.0.0.1:8000/v1"
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONCURRENCY = 16
# what the "auto" json_mode steps through, most structured first
_LADDER = ("json_schema", "json_object_schema", "json_object", "off")
_FORMAT_WORDS = ("response_format", "json_schema", "json_object")
_SCHEMA_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def _normalise_url(url: str) -> str:
    parts = urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"openai teacher: url must be an http(s) URL, got {_display_url(url)!r}")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _display_url(url: str) -> str:
    """``url`` without any ``user:password@``."""
    parts = urlsplit(str(url))
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def _headers_option(value: Any) -> dict[str, str]:
    return {k: reveal(v) for k, v in mapping_option(_WHO, value, "extra_headers").items()}


class OpenAITeacher:
    """One model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Holds one ``httpx.AsyncClient`` (made on first use, remade if used from another event
    loop); close it with ``await teacher.aclose()`` or ``async with teacher``."""

    kind = KIND

    def __init__(self, *, model: str, url: str = DEFAULT_URL, api_key: Any = None,
                 timeout: float = DEFAULT_TIMEOUT, extra_headers: Mapping[str, Any] | None = None,
                 json_mode: str = "auto", concurrency: int = DEFAULT_CONCURRENCY,
                 base_model: bool = False, grammar: bool = False) -> None:
        self.model = required_model(_WHO, model, _MODEL_HINT)
        if json_mode not in JSON_MODES:
            raise choice_error(_WHO, "json_mode", JSON_MODES, json_mode)
        self.url = _normalise_url(url)
        self.json_mode = json_mode
        self.timeout = float(timeout)
        self.concurrency = max(1, int(concurrency))
        key = reveal(api_key) if api_key is not None else ""
        self._api_key = Secret(key) if key else None
        self._extra_headers = _headers_option(extra_headers)
        self._endpoint = self.url + "/chat/completions"
        self._completions = self.url + "/completions"
        self.base_model = bool(base_model)
        #: send completion prompts' GBNF grammars (a llama.cpp server)
        self.grammar = bool(grammar)
        # index into _LADDER; only ever moves down, so concurrent calls agree
        self._format_step = 0
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return (f"OpenAITeacher(model={self.model!r}, url={_display_url(self.url)!r}, "
                f"json_mode={self.json_mode!r})")

    @property
    def structured_output(self) -> str:
        """What a call with a ``json_schema`` sends now: one of ``_LADDER``."""
        if self.json_mode == "auto":
            return _LADDER[self._format_step]
        return self.json_mode

    # --- the client ------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.value}"
        headers.update(self._extra_headers)
        return headers

    def _get_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop or self._client.is_closed:
            # a client's pooled connections belong to the loop that opened them
            self._client = http_client(KIND, self._headers(), self.timeout, self.concurrency)
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> OpenAITeacher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- one call --------------------------------------------------------------------

    def _body(self, messages: Sequence[ChatMessage], params: GenerationParams,
              structured: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.openai() for m in messages],
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
        }
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        if params.tools:
            body["tools"] = list(params.tools)
            if params.tool_choice is not None:
                body["tool_choice"] = params.tool_choice
        if params.json_schema is not None:
            if structured == "json_schema":
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": _schema_name(params), "schema": params.json_schema,
                    "strict": False}}
            elif structured == "json_object_schema":
                body["response_format"] = {"type": "json_object", "schema": params.json_schema}
            elif structured == "json_object":
                body["response_format"] = {"type": "json_object"}
        return body

    async def complete(self, messages: Sequence[ChatMessage], *,
                       params: GenerationParams) -> Completion:
        started = time.perf_counter()
        client = self._get_client()
        if self.base_model and params.prompt is not None:
            return await self._complete_prompt(client, params, started)
        while True:
            step = self._format_step
            structured = self.structured_output
            body = self._body(messages, params, structured)
            response = await post_json(client, self._endpoint, body, timeout=self.timeout,
                                       error=self._error)
            if (self.json_mode == "auto" and "response_format" in body
                    and _rejects_format(response) and step + 1 < len(_LADDER)):
                # the server cannot do this kind of structured output: step down, resend
                self._format_step = max(self._format_step, step + 1)
                continue
            break
        if not response.is_success:
            raise self._status_error(response)
        text, usage, calls, finish = self._parse(response)
        return Completion(text=text, model=self.model,
                          prompt_tokens=_count(usage, "prompt_tokens"),
                          completion_tokens=_count(usage, "completion_tokens"),
                          latency_seconds=time.perf_counter() - started,
                          tool_calls=calls, finish_reason=finish)

    async def _complete_prompt(self, client: httpx.AsyncClient, params: GenerationParams,
                               started: float) -> Completion:
        """One ``POST /completions`` with the technique's few-shot prompt."""
        body: dict[str, Any] = {"model": self.model, "prompt": params.prompt,
                                "temperature": params.temperature,
                                "max_tokens": params.max_tokens}
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        if params.grammar and self.grammar:
            body["grammar"] = params.grammar
        response = await post_json(client, self._completions, body, timeout=self.timeout,
                                   error=self._error)
        if not response.is_success:
            raise self._status_error(response)
        data = response_json(response, self._error)
        choices = data.get("choices") if isinstance(data, dict) else None
        first = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(first, dict) or not isinstance(first.get("text"), str):
            raise self._error(f"malformed response (no choices[0].text): "
                              f"{snippet(response.text)}", retryable=True,
                              status=response.status_code)
        usage = data.get("usage")
        finish = first.get("finish_reason")
        return Completion(text=first["text"], model=self.model,
                          prompt_tokens=_count(usage, "prompt_tokens"),
                          completion_tokens=_count(usage, "completion_tokens"),
                          latency_seconds=time.perf_counter() - started,
                          finish_reason=finish if isinstance(finish, str) else None)

    def _parse(self, response: httpx.Response
               ) -> tuple[str, Any, list[ToolCall], str | None]:
        data = response_json(response, self._error)
        choices = data.get("choices") if isinstance(data, dict) else None
        first = choices[0] if isinstance(choices, list) and choices else None
        message = first.get("message") if isinstance(first, dict) else None
        if not isinstance(message, dict):
            raise self._error(f"malformed response (no choices[0].message): "
                              f"{snippet(response.text)}", retryable=True,
                              status=response.status_code)
        text = _content_text(message.get("content"))
        calls = self._tool_calls(message.get("tool_calls"), response)
        refusal = message.get("refusal")
        if not text and not calls and isinstance(refusal, str) and refusal:
            raise self._error(f"the model refused: {snippet(refusal)}", retryable=False,
                              status=response.status_code)
        finish = first.get("finish_reason")
        return text, data.get("usage"), calls, finish if isinstance(finish, str) else None

    def _tool_calls(self, raw: Any, response: httpx.Response) -> list[ToolCall]:
        """``message.tool_calls`` as ``ToolCall``s (arguments kept as the JSON text the
        model wrote: a caller that cannot parse them reports that to the model)."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise self._error(f"malformed tool_calls (not a list): {snippet(raw)}",
                              retryable=True, status=response.status_code)
        calls: list[ToolCall] = []
        for i, item in enumerate(raw):
            fn = item.get("function") if isinstance(item, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise self._error(f"malformed tool_calls[{i}] (no function name): "
                                  f"{snippet(item)}", retryable=True,
                                  status=response.status_code)
            args = fn.get("arguments")
            if args is None:
                args = "{}"
            elif not isinstance(args, str):  # some servers send an object
                args = json.dumps(args, ensure_ascii=False)
            calls.append(ToolCall(id=str(item.get("id") or f"call_{i}"), name=fn["name"],
                                  arguments=args))
        return calls

    # --- errors ----------------------------------------------------------------------

    def _error(self, detail: str, *, retryable: bool, status: int | None = None,
               retry_after: float | None = None) -> TeacherError:
        message = f"{_WHO} {self.model!r} at {_display_url(self.url)}: {detail}"
        error = TeacherError(scrub(message, self._api_key), retryable=retryable, status=status)
        error.retry_after = retry_after  # type: ignore[attr-defined]
        return error

    def _status_error(self, response: httpx.Response) -> TeacherError:
        status = response.status_code
        retryable = retryable_status(status)
        return self._error(f"HTTP {status}: {snippet(_error_message(response))}",
                           retryable=retryable, status=status,
                           retry_after=_retry_after(response) if retryable else None)


def _schema_name(params: GenerationParams) -> str:
    schema = params.json_schema or {}
    for candidate in (schema.get("title"), params.task):
        if isinstance(candidate, str):
            name = _SCHEMA_NAME.sub("_", candidate).strip("_")[:64]
            if name:
                return name
    return "response"


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str) \
                    and part.get("type", "text") in ("text", "output_text"):
                texts.append(part["text"])
        return "".join(texts)
    return str(content)


def _count(usage: Any, key: str) -> int:
    value = usage.get(key) if isinstance(usage, dict) else None
    try:
        return max(0, int(value)) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _error_message(response: httpx.Response) -> str:
    """The server's own words: OpenAI's ``{"error": {"message"}}``, TGI's ``{"error"}``,
    FastAPI's ``{"detail"}``, ``{"message"}``, else the body."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for value in (error, data.get("message"), data.get("detail")):
            if value:
                return value if isinstance(value, str) else json.dumps(value)
    return response.text


def _rejects_format(response: httpx.Response) -> bool:
    """A refusal of the structured-output request itself (not of the call): any error
    status whose message names it. llama-cpp-python answers 500 for a request body its
    own model does not allow."""
    if response.status_code < 400 or response.status_code in (408, 429):
        return False
    message = _error_message(response).lower()
    return any(word in message for word in _FORMAT_WORDS)


def _retry_after(response: httpx.Response) -> float | None:
    ms = response.headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # an HTTP date
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAITeacherFactory:
    """Makes ``OpenAITeacher`` objects from the recipe's ``[teacher]`` options."""

    kind = KIND

    def create(self, options: dict[str, Any]) -> OpenAITeacher:
        options = dict(options or {})
        model = required_model(_WHO, options.get("model"), _MODEL_HINT)
        json_mode = str(options.get("json_mode") or "auto")
        return OpenAITeacher(
            model=model,
            url=str(options.get("url") or DEFAULT_URL),
            api_key=options.get("api_key") or None,
            timeout=positive(_WHO, options, "timeout", DEFAULT_TIMEOUT),
            extra_headers=options.get("extra_headers"),
            json_mode=json_mode,
            concurrency=int(positive(_WHO, options, "concurrency", DEFAULT_CONCURRENCY)),
            base_model=bool_option(_WHO, options, "base_model", False),
            grammar=bool_option(_WHO, options, "grammar", False),
        )

    def __repr__(self) -> str:
        return "OpenAITeacherFactory()"


@hookimpl
def register_teachers(register: Any) -> None:
    register(OpenAITeacherFactory())
