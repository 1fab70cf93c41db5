"""The ``triton`` teacher: a model served by NVIDIA Triton Inference Server.

One ``complete`` is one request to Triton, by one of two protocols:

``http_generate`` (the default)
    Triton's **generate extension**: ``POST /v2/models/{model}[/versions/{v}]/generate``
    with the JSON body ``{"text_input": <prompt>, "parameters": {...}}``, answered by
    ``{"text_output": ...}``. Triton hands each top-level field, and each key of
    ``parameters``, to the model input of that name when the model has one, and
    otherwise passes it on as a request parameter; so the same body suits a
    TensorRT-LLM ensemble (``max_tokens`` is an input tensor) and the vLLM backend
    (sampling settings are request parameters). The model must answer with exactly one
    response: ``generate`` refuses a decoupled model that streams (use ``grpc_stream``).
    ``tritonclient`` has no call for the generate extension (its HTTP clients speak only
    the KServe v2 ``infer`` protocol) and the extension is plain JSON over HTTP, so the
    request goes through ``httpx``; ``tritonclient.http.aio`` answers ``ready()``.
``grpc_stream``
    A **streaming infer over gRPC** (``tritonclient.grpc.aio``'s ``stream_infer``), as
    *decoupled* models need, Triton's vLLM backend among them. The request carries the
    prompt in ``text_input`` (BYTES, shape ``[1]``), ``stream`` (BOOL) = true, and the
    sampling settings as one JSON string input ``sampling_parameters`` (the vLLM
    backend's convention). Responses are read until one carries the
    ``triton_final_response`` flag or the stream ends. Their ``text_output`` pieces are
    concatenated; when each piece repeats the text so far (a backend that streams
    cumulative text), the latest piece replaces the text instead (``stream_output``).

The runtime around the teacher adds bounded concurrency, retries with back-off, the
response cache and metrics; this module only says, through ``TeacherError.retryable``,
whether a failure is worth retrying.

The prompt. Triton serves text in and text out, so the chat messages are rendered into
one prompt by ``chat_template``:

``tagged`` (default)::

    <|system|>
    Be brief.
    <|user|>
    Say hello.
    <|assistant|>

``chatml``: ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, then
``<|im_start|>assistant\\n`` (for a raw Qwen- or ChatML-style model).

``plain``: one ``{role}: {content}`` line per message, then ``assistant:``.

The reply. A reply that starts with the whole prompt (the vLLM backend without
``exclude_input_in_output``) has the prompt removed. When ``GenerationParams.stop`` is
set, the reply is cut at the first stop string, whether or not the backend honoured it.
``GenerationParams.json_schema`` is not sent (Triton has no common structured-output
setting); the technique's prompt still asks for JSON. Token counts are the model's
``num_input_tokens`` / ``num_output_tokens`` outputs when it returns them (the vLLM
backend does on request), else whitespace-separated words of the prompt and reply.

Options (the recipe's ``[teacher]`` table; keys not listed are left to the runtime):

``model`` (required)
    The Triton model name.
``model_version``
    A version number; by default Triton picks by the model's version policy.
``protocol`` (default ``http_generate``)
    ``http_generate`` or ``grpc_stream``, as above.
``url``
    ``host:port``; by default ``127.0.0.1:8000`` for ``http_generate`` and
    ``127.0.0.1:8001`` for ``grpc_stream``. ``http://`` or ``https://`` (with an optional
    path prefix, for Triton behind a proxy) may be given for HTTP, ``grpc://`` or
    ``grpcs://`` (TLS) for gRPC; with a scheme the port may be left to it. A
    ``user:password@`` in it is ignored, never sent nor shown: use ``api_key`` or
    ``headers``.
``timeout`` (default 60)
    Seconds for the whole call: connect, send and wait (the gRPC stream's deadline).
``input_name`` / ``output_name`` (default ``text_input`` / ``text_output``)
    The model's prompt input and reply output.
``parameters``
    How ``GenerationParams`` fields are named for the model: a mapping from
    ``max_tokens``, ``temperature``, ``top_p`` and ``stop`` to the name the backend uses
    (each defaults to the same name, Triton's common one for TensorRT-LLM and vLLM;
    e.g. ``{max_tokens = "max_new_tokens"}``). An empty name leaves the field out. A
    field whose value is unset (``top_p = None``, no ``stop``) is never sent.
``parameters_as``
    Where the mapped values go. ``parameters`` (the default for ``http_generate``):
    request parameters (the generate body's ``parameters`` object; for gRPC, the
    request's parameters); request parameters hold only scalars, so a list (``stop``)
    is sent as its JSON text. ``inputs``: model inputs (top-level fields of the generate
    body; for gRPC, tensors typed from the value: bool -> BOOL, int -> INT32, float ->
    FP32, str or list of str -> BYTES). ``sampling_parameters`` (the default for
    ``grpc_stream``): one BYTES input ``sampling_parameters`` holding them as a JSON
    object, the vLLM backend's convention.
``extra_parameters``
    A mapping (or a JSON object string) of fixed values sent the same way with every
    call, e.g. ``{exclude_input_in_output = true}``. The mapped fields win on a clash;
    unmap a field to send a fixed value for it instead.
``stream_input`` (default ``stream``)
    ``grpc_stream`` only: a BOOL input set to true, which the vLLM backend needs to
    stream. An empty name sends none (for a model without that input).
``stream_output`` (default ``auto``)
    ``grpc_stream`` only: ``delta`` (concatenate the pieces), ``cumulative`` (each piece
    is the whole text so far) or ``auto`` (a piece that starts with the text so far
    replaces it, any other is appended).
``batch_dim`` (default false)
    ``grpc_stream`` only: give every input a leading batch dimension of 1, for a model
    with ``max_batch_size > 0`` (a TensorRT-LLM ensemble).
``chat_template`` (default ``tagged``)
    ``tagged``, ``chatml`` or ``plain``, as above.
``api_key`` / ``headers``
    For Triton behind an authenticating proxy: ``api_key`` is sent as ``Authorization:
    Bearer ...``; ``headers`` (a mapping or a JSON object string) with every request
    (as gRPC metadata for ``grpc_stream``). Neither appears in ``repr``, logs or error
    messages.
``concurrency`` (default 16)
    Sizes the HTTP connection pool to the runtime's concurrency for this teacher.

Errors: time-outs, refused or dropped connections, HTTP 408, 429 and 5xx, the gRPC
codes UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ABORTED, CANCELLED, INTERNAL
and UNKNOWN, and a 200 whose body is not JSON are ``TeacherError(retryable=True)``.
Other 4xx (404 for an unknown model or version, 400 for a bad request) and the other
gRPC codes (NOT_FOUND, INVALID_ARGUMENT, ...) are ``TeacherError(retryable=False)``
carrying Triton's message (at most 500 characters). An error that Triton reports inside
a gRPC stream, or in a 200 body, carries no code: it is retryable only when its words
say so (unavailable, time-out, queue full, resources exhausted). ``status`` is the HTTP
status, or for gRPC the HTTP status Triton pairs with the code (NOT_FOUND -> 404,
UNAVAILABLE -> 503, ...); ``grpc_code`` names the gRPC code.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from syllabus.contracts import (
    ChatMessage,
    Completion,
    GenerationParams,
    TeacherError,
    hookimpl,
)

from ._common import (
    Secret,
    choice_error,
    cut_at_stop,
    mapping_option,
    positive,
    required_model,
    reveal,
    scrub,
    snippet,
)
from ._http import http_client, post_json, response_json, retryable_status

__all__ = [
    "CHAT_TEMPLATES",
    "PARAMETERS_AS",
    "PROTOCOLS",
    "STREAM_OUTPUTS",
    "TritonTeacher",
    "TritonTeacherFactory",
    "register_teachers",
    "render_prompt",
]

KIND = "triton"
_WHO = "triton teacher"
_MODEL_HINT = 'the Triton model name, e.g. model = "ensemble" or model = "vllm_model"'
PROTOCOLS = ("http_generate", "grpc_stream")
PARAMETERS_AS = ("parameters", "inputs", "sampling_parameters")
STREAM_OUTPUTS = ("auto", "delta", "cumulative")
CHAT_TEMPLATES = ("tagged", "chatml", "plain")
DEFAULT_HTTP_URL = "127.0.0.1:8000"
DEFAULT_GRPC_URL = "127.0.0.1:8001"
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONCURRENCY = 16
#: the GenerationParams fields a recipe can map to the backend's names
GENERATION_FIELDS = ("max_tokens", "temperature", "top_p", "stop")
SAMPLING_PARAMETERS = "sampling_parameters"
_INPUT_TOKENS = "num_input_tokens"
_OUTPUT_TOKENS = "num_output_tokens"
_FINAL_FLAG = "triton_final_response"
# gRPC code -> (the HTTP status Triton pairs with it, retryable)
_GRPC_CODES: dict[str, tuple[int, bool]] = {
    "CANCELLED": (499, True),
    "UNKNOWN": (500, True),
    "INVALID_ARGUMENT": (400, False),
    "DEADLINE_EXCEEDED": (504, True),
    "NOT_FOUND": (404, False),
    "ALREADY_EXISTS": (409, False),
    "PERMISSION_DENIED": (403, False),
    "RESOURCE_EXHAUSTED": (429, True),
    "FAILED_PRECONDITION": (400, False),
    "ABORTED": (409, True),
    "OUT_OF_RANGE": (400, False),
    "UNIMPLEMENTED": (501, False),
    "INTERNAL": (500, True),
    "UNAVAILABLE": (503, True),
    "DATA_LOSS": (500, False),
    "UNAUTHENTICATED": (401, False),
}
# words in a code-less error (in a gRPC stream, or a 200 body) that mean "try again"
_TRANSIENT_WORDS = ("unavailable", "timed out", "timeout", "deadline", "exceeds maximum queue",
                    "queue is full", "exhausted", "overloaded", "try again", "too many requests")
# request parameter names tritonclient refuses (it owns them), and its reserved prefix
_RESERVED_PARAMETERS = frozenset({"sequence_id", "sequence_start", "sequence_end", "priority",
                                  "timeout", "headers", "binary_data_output"})


# --- the prompt ------------------------------------------------------------------------


def render_prompt(messages: Sequence[ChatMessage], template: str = "tagged") -> str:
    """The chat messages as one prompt, ending where the assistant's reply begins."""
    if template == "tagged":
        body = "".join(f"<|{m.role}|>\n{m.content}\n" for m in messages)
        return body + "<|assistant|>\n"
    if template == "chatml":
        body = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages)
        return body + "<|im_start|>assistant\n"
    if template == "plain":
        body = "".join(f"{m.role}: {m.content}\n" for m in messages)
        return body + "assistant:"
    raise choice_error(_WHO, "chat_template", CHAT_TEMPLATES, template)


# --- options ---------------------------------------------------------------------------


def _flag(options: Mapping[str, Any], key: str, default: bool) -> bool:
    raw = options.get(key)
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on", "0", "false",
                                                        "no", "off"):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    raise ValueError(f"triton teacher: {key} must be true or false, got {raw!r}")


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    value = str(value).strip()
    if value not in choices:
        raise choice_error(_WHO, key, choices, value)
    return value


def _parameter_names(value: Any) -> dict[str, str]:
    names = {field: field for field in GENERATION_FIELDS}
    for field, name in mapping_option(_WHO, value, "parameters").items():
        if field not in names:
            raise ValueError(f"triton teacher: parameters maps GenerationParams fields "
                             f"({', '.join(GENERATION_FIELDS)}); {field!r} is not one")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"triton teacher: parameters.{field} must be a name, got {name!r}")
        names[field] = (name or "").strip()
    return names


def _check_version(value: Any) -> str:
    if value is None or value == "":
        return ""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"triton teacher: model_version must be a positive whole number, "
                         f"got {value!r}")
    return str(int(text))


def _display_url(url: str) -> str:
    """``url`` without any ``user:password@``."""
    parts = urlsplit(url if "://" in url else "//" + url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")).lstrip("/")


def _parse_url(url: str, protocol: str) -> tuple[str, str, str]:
    """``(scheme, netloc, path)``: scheme is http/https or grpc/grpcs."""
    raw = str(url).strip()
    parts = urlsplit(raw if "://" in raw else "//" + raw)
    scheme = parts.scheme or ("http" if protocol == "http_generate" else "grpc")
    allowed = ("http", "https") if protocol == "http_generate" else ("grpc", "grpcs")
    if scheme not in allowed or not parts.hostname:
        raise ValueError(f"triton teacher: url for {protocol} must be host:port or "
                         f"{'/'.join(s + '://' for s in allowed)}host:port, "
                         f"got {_display_url(raw)!r}")
    if parts.port is None and "://" not in raw:  # with a scheme, its default port
        raise ValueError(f"triton teacher: url must name a port, got {_display_url(raw)!r}")
    path = parts.path.rstrip("/")
    if protocol == "grpc_stream" and path:
        raise ValueError(f"triton teacher: a gRPC url takes no path, got {_display_url(raw)!r}")
    netloc = parts.netloc.rpartition("@")[2]
    return scheme, netloc, path


def _grpc_modules() -> tuple[Any, Any]:
    try:
        import tritonclient.grpc as grpcclient
        import tritonclient.grpc.aio as grpcaio
    except ImportError as exc:  # pragma: no cover - the triton extra is not installed
        raise ValueError("triton teacher: protocol grpc_stream needs tritonclient[grpc] "
                         "(pip install 'syllabus[triton]')") from exc
    return grpcclient, grpcaio


# --- the teacher -----------------------------------------------------------------------


class TritonTeacher:
    """One model behind Triton (see the module docstring for the protocols and options).

    Holds one ``httpx.AsyncClient`` or one ``tritonclient.grpc.aio`` client, made on first
    use and remade if used from another event loop; close it with ``await
    teacher.aclose()`` or ``async with teacher``."""

    kind = KIND

    def __init__(self, *, model: str, url: str | None = None, protocol: str = "http_generate",
                 timeout: float = DEFAULT_TIMEOUT, model_version: Any = None,
                 input_name: str = "text_input", output_name: str = "text_output",
                 parameters: Mapping[str, Any] | None = None, parameters_as: str | None = None,
                 extra_parameters: Mapping[str, Any] | None = None,
                 stream_input: str | None = "stream", stream_output: str = "auto",
                 batch_dim: bool = False, chat_template: str = "tagged", api_key: Any = None,
                 headers: Mapping[str, Any] | None = None,
                 concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.model = required_model(_WHO, model, _MODEL_HINT)
        self.protocol = _choice(protocol, "protocol", PROTOCOLS)
        self.model_version = _check_version(model_version)
        default_url = DEFAULT_HTTP_URL if self.protocol == "http_generate" else DEFAULT_GRPC_URL
        self._scheme, self._netloc, self._path = _parse_url(url or default_url, self.protocol)
        self.timeout = float(timeout)
        if self.timeout <= 0:
            raise ValueError(f"triton teacher: timeout must be positive, got {timeout!r}")
        for key, name in (("input_name", input_name), ("output_name", output_name)):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"triton teacher: {key} must be a tensor name, got {name!r}")
        self.input_name = input_name.strip()
        self.output_name = output_name.strip()
        self.parameter_names = _parameter_names(parameters)
        default_as = "parameters" if self.protocol == "http_generate" else SAMPLING_PARAMETERS
        self.parameters_as = _choice(parameters_as or default_as, "parameters_as", PARAMETERS_AS)
        self.extra_parameters = mapping_option(_WHO, extra_parameters, "extra_parameters")
        self.stream_input = (stream_input or "").strip()
        self.stream_output = _choice(stream_output, "stream_output", STREAM_OUTPUTS)
        self.batch_dim = bool(batch_dim)
        self.chat_template = _choice(chat_template, "chat_template", CHAT_TEMPLATES)
        self.concurrency = max(1, int(concurrency))
        if self.parameters_as == "parameters":
            sent = [n for n in self.parameter_names.values() if n] + list(self.extra_parameters)
            bad = [n for n in sent if n in _RESERVED_PARAMETERS or n.startswith("triton_")]
            if bad:
                raise ValueError(f"triton teacher: {', '.join(sorted(set(bad)))} cannot be sent "
                                 f"as request parameters (Triton reserves them)")
        if self.protocol == "grpc_stream":
            _grpc_modules()
        secret_headers = {k: reveal(v) for k, v in mapping_option(_WHO, headers, "headers").items()}
        key = reveal(api_key) if api_key is not None else ""
        if key:
            secret_headers["Authorization"] = f"Bearer {key}"
        self._headers = {k: Secret(v) for k, v in secret_headers.items()}
        self._http: httpx.AsyncClient | None = None
        self._grpc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        """Where the teacher sends its calls, without credentials."""
        return f"{self._scheme}://{self._netloc}{self._path}"

    @property
    def endpoint(self) -> str:
        """The generate extension's URL (``http_generate``) or the gRPC target."""
        if self.protocol == "grpc_stream":
            return self._netloc
        version = f"/versions/{self.model_version}" if self.model_version else ""
        return f"{self.url}/v2/models/{quote(self.model, safe='')}{version}/generate"

    def __repr__(self) -> str:
        version = f", model_version={self.model_version!r}" if self.model_version else ""
        return (f"TritonTeacher(model={self.model!r}{version}, protocol={self.protocol!r}, "
                f"url={self.url!r})")

    # --- clients ---------------------------------------------------------------------

    def _header_values(self) -> dict[str, str]:
        return {k: v.value for k, v in self._headers.items()}

    def _same_loop(self) -> bool:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # pooled connections and gRPC channels belong to the loop that opened them
            self._http = None
            self._grpc = None
            self._loop = loop
            return False
        return True

    def _http_client(self) -> httpx.AsyncClient:
        if not self._same_loop() or self._http is None or self._http.is_closed:
            self._http = http_client(KIND, self._header_values(), self.timeout,
                                     self.concurrency)
        return self._http

    def _grpc_client(self) -> Any:
        if not self._same_loop() or self._grpc is None:
            _, grpcaio = _grpc_modules()
            self._grpc = grpcaio.InferenceServerClient(url=self._netloc,
                                                       ssl=self._scheme == "grpcs")
        return self._grpc

    async def aclose(self) -> None:
        http, grpc_client = self._http, self._grpc
        self._http = self._grpc = None
        self._loop = None
        if http is not None:
            await http.aclose()
        if grpc_client is not None:
            await grpc_client.close()

    async def __aenter__(self) -> TritonTeacher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def ready(self) -> bool:
        """Whether Triton reports the model ready, asked through ``tritonclient``
        (``is_model_ready``); False when Triton cannot be reached."""
        if self.protocol == "grpc_stream":
            return await self._grpc_ready()
        import aiohttp
        import tritonclient.http.aio as httpaio
        from tritonclient.utils import InferenceServerException

        client = httpaio.InferenceServerClient(url=self._netloc + self._path,
                                               ssl=self._scheme == "https",
                                               conn_timeout=self.timeout)
        try:
            async with client:
                return bool(await client.is_model_ready(
                    self.model, self.model_version, headers=self._header_values() or None))
        except (InferenceServerException, aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def _grpc_ready(self) -> bool:
        from tritonclient.utils import InferenceServerException

        try:
            return bool(await self._grpc_client().is_model_ready(
                self.model, self.model_version, headers=self._grpc_metadata() or None,
                client_timeout=self.timeout))
        except (InferenceServerException, OSError, TimeoutError):
            return False

    # --- one call --------------------------------------------------------------------

    def _values(self, params: GenerationParams) -> dict[str, Any]:
        values = dict(self.extra_parameters)
        for field, name in self.parameter_names.items():
            value = getattr(params, field)
            if not name or value is None or (field == "stop" and not value):
                continue
            values[name] = [str(s) for s in value] if field == "stop" else value
        return values

    async def complete(self, messages: Sequence[ChatMessage], *,
                       params: GenerationParams) -> Completion:
        started = time.perf_counter()
        prompt = render_prompt(messages, self.chat_template)
        if self.protocol == "http_generate":
            text, counts = await self._generate(prompt, params)
        else:
            text, counts = await self._stream(prompt, params)
        if prompt and text.startswith(prompt):
            text = text[len(prompt):]
        text = cut_at_stop(text, params.stop)
        return Completion(
            text=text, model=self.model,
            prompt_tokens=counts.get(_INPUT_TOKENS, len(prompt.split())),
            completion_tokens=counts.get(_OUTPUT_TOKENS, len(text.split())),
            latency_seconds=time.perf_counter() - started)

    # --- HTTP: the generate extension ------------------------------------------------

    def _generate_body(self, prompt: str, params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {self.input_name: prompt}
        values = self._values(params)
        if self.parameters_as == "parameters":
            if values:
                body["parameters"] = {k: _scalar(v) for k, v in values.items()}
        elif self.parameters_as == "inputs":
            body.update(values)
        elif values:
            body[SAMPLING_PARAMETERS] = json.dumps(values)
        return body

    async def _generate(self, prompt: str, params: GenerationParams) -> tuple[str, dict[str, int]]:
        client = self._http_client()
        body = self._generate_body(prompt, params)
        response = await post_json(client, self.endpoint, body, timeout=self.timeout,
                                   error=self._error)
        status = response.status_code
        if not response.is_success:
            raise self._error(f"HTTP {status}: {_snippet(_error_message(response))}",
                              retryable=retryable_status(status), status=status)
        data = response_json(response, self._error, _snippet)
        if not isinstance(data, dict):
            raise self._error(f"malformed response (HTTP {status}): {_snippet(response.text)}",
                              retryable=True, status=status)
        if self.output_name not in data:
            error = data.get("error")
            if error:  # e.g. a decoupled model asked through generate
                message = str(error)
                raise self._error(f"Triton error: {_snippet(message)}",
                                  retryable=_transient(message), status=status)
            keys = ", ".join(sorted(map(str, data))) or "none"
            raise self._error(f"the response has no {self.output_name!r} (output_name); its "
                              f"fields: {keys}", retryable=False, status=status)
        return _text(data[self.output_name]), _counts(data)

    # --- gRPC: a streaming infer ------------------------------------------------------

    def _grpc_metadata(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self._header_values().items()}

    def _grpc_request(self, prompt: str, params: GenerationParams) -> dict[str, Any]:
        grpcclient, _ = _grpc_modules()
        inputs = [_tensor(grpcclient, self.input_name, prompt, self.batch_dim)]
        if self.stream_input:
            inputs.append(_tensor(grpcclient, self.stream_input, True, self.batch_dim))
        values = self._values(params)
        request: dict[str, Any] = {"model_name": self.model, "model_version": self.model_version,
                                   "request_id": uuid.uuid4().hex}
        if self.parameters_as == "parameters":
            if values:
                request["parameters"] = {k: _scalar(v) for k, v in values.items()}
        elif self.parameters_as == "inputs":
            inputs.extend(_tensor(grpcclient, k, v, self.batch_dim) for k, v in values.items())
        elif values:
            inputs.append(_tensor(grpcclient, SAMPLING_PARAMETERS, json.dumps(values),
                                  self.batch_dim))
        request["inputs"] = inputs
        return request

    async def _stream(self, prompt: str, params: GenerationParams) -> tuple[str, dict[str, int]]:
        from tritonclient.utils import InferenceServerException

        try:
            request = self._grpc_request(prompt, params)
        except (InferenceServerException, ValueError, TypeError) as exc:
            raise self._error(f"cannot build the request: {exc}", retryable=False) from exc
        client = self._grpc_client()

        async def requests() -> AsyncIterator[dict[str, Any]]:
            # one request; the stream half-closes after it and Triton ends it once the
            # model has sent its last response
            yield request

        text = ""
        pieces = 0
        input_tokens: int | None = None
        output_tokens: list[int] = []
        mode = self.stream_output
        responses = None
        try:
            responses = client.stream_infer(requests(), stream_timeout=self.timeout,
                                            headers=self._grpc_metadata() or None)
            async for result, error in responses:
                if error is not None:
                    raise self._grpc_error(error)
                piece = _result_text(result, self.output_name)
                counts = _result_counts(result)
                if _INPUT_TOKENS in counts:
                    input_tokens = counts[_INPUT_TOKENS]
                if _OUTPUT_TOKENS in counts:
                    output_tokens.append(counts[_OUTPUT_TOKENS])
                if piece:
                    if mode == "auto" and text and piece.startswith(text):
                        mode = "cumulative"  # each response repeats the text so far
                    text = piece if mode == "cumulative" else text + piece
                    pieces += 1
                if _is_final(result):
                    break
        except TeacherError:
            raise
        except Exception as exc:
            if _grpc_code(exc) is None and not isinstance(exc, InferenceServerException):
                raise
            raise self._grpc_error(exc) from exc
        finally:
            if responses is not None:
                responses.cancel()  # a no-op once the stream has ended
        counts: dict[str, int] = {}
        if input_tokens is not None:
            counts[_INPUT_TOKENS] = input_tokens
        if output_tokens:
            counts[_OUTPUT_TOKENS] = (output_tokens[-1] if mode == "cumulative"
                                      else sum(output_tokens))
        return text, counts

    # --- errors ----------------------------------------------------------------------

    def _error(self, detail: str, *, retryable: bool, status: int | None = None,
               grpc_code: str | None = None) -> TeacherError:
        version = f" version {self.model_version}" if self.model_version else ""
        message = f"{_WHO} {self.model!r}{version} at {self.url}: {detail}"
        error = TeacherError(scrub(message, *self._headers.values()), retryable=retryable,
                             status=status)
        error.grpc_code = grpc_code  # type: ignore[attr-defined]
        return error

    def _grpc_error(self, exc: Any) -> TeacherError:
        code = _grpc_code(exc)
        message = _grpc_message(exc)
        if code is None:  # reported inside the stream: Triton sends no code
            return self._error(f"Triton error: {_snippet(message)}", retryable=_transient(message))
        status, retryable = _GRPC_CODES.get(code, (500, True))
        if code == "DEADLINE_EXCEEDED":
            message = f"timed out after {self.timeout:g} s ({message})"
        return self._error(f"gRPC {code}: {_snippet(message)}", retryable=retryable,
                           status=status, grpc_code=code)


# --- helpers ---------------------------------------------------------------------------


def _scalar(value: Any) -> Any:
    """Request parameters hold str, int, float or bool: anything else goes as JSON text."""
    if isinstance(value, (str, bool, int, float)):
        return value
    return json.dumps(value)


def _tensor(grpcclient: Any, name: str, value: Any, batch_dim: bool) -> Any:
    import numpy as np

    if isinstance(value, bool):
        array, dtype = np.array([value], dtype=np.bool_), "BOOL"
    elif isinstance(value, int):
        array, dtype = np.array([value], dtype=np.int32), "INT32"
    elif isinstance(value, float):
        array, dtype = np.array([value], dtype=np.float32), "FP32"
    elif isinstance(value, str):
        array, dtype = np.array([value.encode()], dtype=np.object_), "BYTES"
    elif isinstance(value, (list, tuple)):
        array = np.array([str(v).encode() for v in value], dtype=np.object_)
        dtype = "BYTES"
    else:
        raise TypeError(f"cannot send {name}={value!r} as a tensor")
    if batch_dim:
        array = array[np.newaxis, ...]
    tensor = grpcclient.InferInput(name, list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    return tensor


def _text(value: Any) -> str:
    """A generate response's output: a string, or (for a shaped output) nested lists."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_text(v) for v in value)
    return str(value)


def _count(value: Any) -> int | None:
    while isinstance(value, list) and value:
        value = value[0]
    try:
        return max(0, int(value)) if value is not None and value != [] else None
    except (TypeError, ValueError):
        return None


def _counts(data: Mapping[str, Any]) -> dict[str, int]:
    counts = {}
    for key in (_INPUT_TOKENS, _OUTPUT_TOKENS):
        value = _count(data.get(key))
        if value is not None:
            counts[key] = value
    return counts


def _output_names(result: Any) -> set[str]:
    try:
        return {output.name for output in result.get_response().outputs}
    except AttributeError:
        return set()


def _result_text(result: Any, name: str) -> str:
    if name not in _output_names(result):
        return ""  # e.g. an empty final response
    array = result.as_numpy(name)
    if array is None:
        return ""
    return "".join(v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
                   for v in array.reshape(-1))


def _result_counts(result: Any) -> dict[str, int]:
    counts = {}
    names = _output_names(result)
    for key in (_INPUT_TOKENS, _OUTPUT_TOKENS):
        if key in names:
            array = result.as_numpy(key)
            value = _count(array.reshape(-1).tolist()) if array is not None else None
            if value is not None:
                counts[key] = value
    return counts


def _is_final(result: Any) -> bool:
    try:
        parameters = result.get_response().parameters
    except AttributeError:
        return False
    return _FINAL_FLAG in parameters and bool(parameters[_FINAL_FLAG].bool_param)


def _grpc_code(exc: Any) -> str | None:
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            value = code()
        except Exception:  # noqa: BLE001 - an odd error object: no code
            value = None
        name = getattr(value, "name", None)
        if isinstance(name, str):
            return name
    status = getattr(exc, "status", None)
    if callable(status):
        value = status()
        if isinstance(value, str) and value:
            return value.rpartition(".")[2]  # tritonclient writes "StatusCode.UNAVAILABLE"
    return None


def _grpc_message(exc: Any) -> str:
    for attr in ("details", "message"):
        getter = getattr(exc, attr, None)
        if callable(getter):
            try:
                value = getter()
            except Exception:  # noqa: BLE001
                continue
            if value:
                return str(value)
    return str(exc) or type(exc).__name__


def _transient(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in _TRANSIENT_WORDS)


def _snippet(text: str) -> str:
    return snippet(_without_traceback(str(text)))


def _without_traceback(text: str) -> str:
    """A Python-backend error carries the model's traceback: keep what comes before it
    and the exception line that ends it, the part worth reading."""
    head, marker, rest = text.partition("Traceback (most recent call last)")
    if not marker:
        return text
    lines = [m.group(0).strip() for m in _EXCEPTION_LINE.finditer(rest)]
    lines = [line for line in lines if not line.endswith("Traceback (most recent call last):")]
    head = head.rstrip(" :\n")
    if not lines:
        return head or text
    return f"{head}: {lines[-1]}" if head else lines[-1]


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)\b:?.*$",
                             re.MULTILINE)


def _error_message(response: httpx.Response) -> str:
    """Triton's own words: ``{"error": "..."}``, else the body."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text or response.reason_phrase
    if isinstance(data, dict) and data.get("error"):
        error = data["error"]
        return error if isinstance(error, str) else json.dumps(error)
    return response.text


class TritonTeacherFactory:
    """Makes ``TritonTeacher`` objects from the recipe's ``[teacher]`` options."""

    kind = KIND

    def create(self, options: dict[str, Any]) -> TritonTeacher:
        options = dict(options or {})
        model = required_model(_WHO, options.get("model"), _MODEL_HINT)
        return TritonTeacher(
            model=model,
            url=str(options["url"]) if options.get("url") else None,
            protocol=str(options.get("protocol") or "http_generate"),
            timeout=positive(_WHO, options, "timeout", DEFAULT_TIMEOUT),
            model_version=options.get("model_version"),
            input_name=str(options.get("input_name") or "text_input"),
            output_name=str(options.get("output_name") or "text_output"),
            parameters=options.get("parameters"),
            parameters_as=options.get("parameters_as") or None,
            extra_parameters=options.get("extra_parameters"),
            stream_input=(str(options["stream_input"]) if options.get("stream_input") is not None
                          else "stream"),
            stream_output=str(options.get("stream_output") or "auto"),
            batch_dim=_flag(options, "batch_dim", False),
            chat_template=str(options.get("chat_template") or "tagged"),
            api_key=options.get("api_key") or None,
            headers=options.get("headers"),
            concurrency=int(positive(_WHO, options, "concurrency", DEFAULT_CONCURRENCY)),
        )

    def __repr__(self) -> str:
        return "TritonTeacherFactory()"


@hookimpl
def register_teachers(register: Any) -> None:
    register(TritonTeacherFactory())
