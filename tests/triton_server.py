"""A real Triton Inference Server serving models with scripted replies: the one kind of
Triton test double DESIGN.md allows for a remote LLM endpoint.

``ScriptedTriton`` runs the ``tritonserver`` binary that the ``nvidia-pytriton`` wheel
carries (on the CPU) through PyTriton, on free 127.0.0.1 ports for HTTP, gRPC and
metrics. PyTriton's Python backend hands each request to a function in *this* process,
so the tests steer the replies directly. Two models:

``scripted``
    Not decoupled: one response per request. Inputs ``text_input`` (BYTES ``[1]``) and
    the optional ``max_tokens`` (INT32), ``temperature`` and ``top_p`` (FP32) and
    ``stop`` (BYTES ``[-1]``), as a TensorRT-LLM ensemble declares them; output
    ``text_output`` (BYTES ``[1]``), and ``num_input_tokens`` / ``num_output_tokens``
    (INT32) only for a reply built with ``counted``. Reachable through Triton's HTTP generate extension
    (``POST /v2/models/scripted/generate``) and through gRPC.
``scripted_stream``
    Decoupled: streams each reply in ``chunks`` responses (3 by default). Inputs
    ``text_input``, the optional ``stream`` (BOOL) and ``sampling_parameters`` (BYTES,
    a JSON object), as Triton's vLLM backend declares them; the same outputs.

Replies. ``server.replies`` maps a prompt substring to a reply, tried in insertion
order; with no match a request gets ``echo: <the prompt's last line of text>`` (the line
before the assistant's turn). A reply is a ``str``, a ``Reply`` (``text``, ``slow``,
``fail``, ``stream``, ``counted``) or a callable ``(ReceivedRequest) -> str`` such as
``echo_parameters`` (the JSON of every input and request parameter the model got)::

    server.replies["hello"] = "Hi there"
    server.replies["show"] = echo_parameters
    server.replies["late"] = slow(2.0, "sorry")
    server.replies["boom"] = fail("scripted failure")
    server.replies["story"] = stream("once upon a time", chunks=4, cumulative=True)

Triton forwards request headers named ``x-syllabus-...`` (HTTP and gRPC) to the models
as request parameters, so a test can see the headers a client sent.

Every request is kept in ``server.requests`` (``model``, ``prompt``, ``inputs``,
``parameters``) in arrival order. ``server.reset()`` clears both.

Start-up here takes about 5 s (the server, then one Python-backend stub per model) and
shutting down about 5 s, so the server is session-scoped: the ``triton_server`` fixture
starts one per test session, and the function-scoped ``triton`` fixture hands it to a
test and resets its replies and requests afterwards. Load them with
``pytest_plugins = ["tests.triton_server"]``.

Running Triton here needs two things, both handled by ``start``:

- ``numpy<2`` (PyTriton's requirement; the project pins it);
- the interpreter's own ``libpython`` first on ``LD_LIBRARY_PATH`` when tritonserver
  starts. The Python-backend stub otherwise loads another ``libpython3.x`` from the
  system, the model's initialisation fails (``'_thread.RLock' object has no attribute
  '_recursion_count'`` with pyenv's 3.11.7 against the system's 3.11), and the model is
  UNAVAILABLE. PyTriton copies ``os.environ`` when it starts the server, so ``start``
  sets the variable for that moment only and restores it afterwards.

PyTriton's ``Triton.run()`` does not fail when a model fails to load (it only logs a
warning), so ``start`` checks that both models are READY and raises with the tail of
the server's log if not. ``stop`` stops the server (SIGINT, then PyTriton's wait) and
makes sure the tritonserver process, found by its PID, is gone. On CPU-only machines
the server logs "Failed to initialize NVML" and "CudaDriverHelper has not been
initialized": both are harmless.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

__all__ = [
    "HEADER_FORWARD_PATTERN",
    "MODEL",
    "STREAM_MODEL",
    "ReceivedRequest",
    "Reply",
    "ScriptedTriton",
    "counted",
    "echo_parameters",
    "fail",
    "slow",
    "stream",
    "text",
    "triton",
    "triton_server",
]

MODEL = "scripted"
STREAM_MODEL = "scripted_stream"
#: request headers Triton hands to the models as request parameters
HEADER_FORWARD_PATTERN = "x-syllabus-.*"
_READY_TIMEOUT_S = 60.0


@dataclass
class ReceivedRequest:
    model: str
    #: the ``text_input`` the model received
    prompt: str
    #: every other input, decoded: bytes -> str, one-element arrays -> their element
    inputs: dict[str, Any]
    #: the request parameters (Triton's, not the inputs)
    parameters: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class Reply:
    """One scripted answer; build it with ``text``, ``slow``, ``fail`` or ``stream``."""

    content: str | Callable[[ReceivedRequest], str] = ""
    #: seconds to wait before the first response
    delay: float = 0.0
    #: raise this message in the model instead of answering
    error: str | None = None
    #: the streaming model: how many responses the reply is split into
    chunks: int = 3
    #: the streaming model: each response carries the whole text so far
    cumulative: bool = False
    #: also answer ``num_input_tokens`` / ``num_output_tokens`` (as the vLLM backend can)
    token_counts: tuple[int, int] | None = None


def text(content: str | Callable[[ReceivedRequest], str]) -> Reply:
    return Reply(content=content)


def slow(seconds: float, content: str = "slow reply") -> Reply:
    return Reply(content=content, delay=seconds)


def fail(message: str = "scripted failure") -> Reply:
    """The model raises ``RuntimeError(message)``; Triton reports it as an error."""
    return Reply(error=message)


def stream(content: str, *, chunks: int = 3, cumulative: bool = False) -> Reply:
    return Reply(content=content, chunks=chunks, cumulative=cumulative)


def counted(content: str, input_tokens: int, output_tokens: int) -> Reply:
    """A reply that also reports token counts (for a stream: each response reports its
    piece's share of ``output_tokens``, the last one the remainder)."""
    return Reply(content=content, token_counts=(input_tokens, output_tokens))


def echo_parameters(request: ReceivedRequest) -> str:
    """A reply that shows what reached the model: ``{"inputs": ..., "parameters": ...}``."""
    return json.dumps({"inputs": request.inputs, "parameters": request.parameters},
                      sort_keys=True)


def _last_line(prompt: str) -> str:
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    while lines and (lines[-1].startswith("<|") or lines[-1] == "assistant:"):
        lines.pop()  # the assistant's turn marker
    if not lines:
        return ""
    return lines[-1].removeprefix("user:").removesuffix("<|im_end|>").strip()


def _decode(array: np.ndarray) -> Any:
    values = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v.item()
              for v in np.asarray(array).reshape(-1)]
    return values[0] if len(values) == 1 else values


def _outputs(content: str, counts: tuple[int, int] | None) -> dict[str, np.ndarray]:
    outputs = {"text_output": np.array([content.encode()], dtype=np.object_)}
    if counts is not None:
        outputs["num_input_tokens"] = np.array([counts[0]], dtype=np.int32)
        outputs["num_output_tokens"] = np.array([counts[1]], dtype=np.int32)
    return outputs


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _split(content: str, chunks: int) -> list[str]:
    chunks = max(1, min(chunks, len(content) or 1))
    size = -(-len(content) // chunks) if content else 0
    return [content[i:i + size] for i in range(0, len(content), size)] if size else [""]


class ScriptedTriton:
    """Triton with the ``scripted`` and ``scripted_stream`` models (see the module
    docstring). ``start()`` / ``stop()``, or use it as a context manager."""

    def __init__(self) -> None:
        self.replies: dict[str, Reply | str | Callable[[ReceivedRequest], str]] = {}
        self.requests: list[ReceivedRequest] = []
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.startup_seconds = 0.0
        self.pid: int | None = None
        self._lock = threading.Lock()
        self._triton: Any = None

    # --- addresses ---------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint, as the triton teacher's ``url`` takes it."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.http_url}"

    def logs(self) -> str:
        server = getattr(self._triton, "_triton_server", None)
        return server.logs() if server is not None else ""

    # --- the script ------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.replies.clear()
            self.requests.clear()

    def _receive(self, model: str, request: Any) -> tuple[ReceivedRequest, Reply]:
        data = dict(request.data)
        prompt = _decode(data.pop("text_input")) if "text_input" in data else ""
        received = ReceivedRequest(
            model=model, prompt=str(prompt),
            inputs={name: _decode(value) for name, value in data.items()},
            parameters=dict(request.parameters or {}))
        with self._lock:
            self.requests.append(received)
            replies = list(self.replies.items())
        reply = next((r for needle, r in replies if needle in received.prompt),
                     f"echo: {_last_line(received.prompt)}")
        if not isinstance(reply, Reply):
            reply = Reply(content=reply)
        return received, reply

    @staticmethod
    def _content(reply: Reply, received: ReceivedRequest) -> str:
        if reply.delay:
            time.sleep(reply.delay)
        if reply.error is not None:
            raise RuntimeError(reply.error)
        return reply.content(received) if callable(reply.content) else reply.content

    def _infer(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        responses = []
        for request in requests:
            received, reply = self._receive(MODEL, request)
            content = self._content(reply, received)
            responses.append(_outputs(content, reply.token_counts))
        return responses

    def _infer_stream(self, requests: list[Any]) -> Iterator[list[dict[str, np.ndarray]]]:
        # one list of responses per step, one response per request (Triton hands a
        # decoupled model without batching one request at a time, but need not)
        streams = []
        for request in requests:
            received, reply = self._receive(STREAM_MODEL, request)
            content = self._content(reply, received)
            pieces, sent = [], ""
            for piece in _split(content, reply.chunks):
                sent += piece
                pieces.append(sent if reply.cumulative else piece)
            counts: list[tuple[int, int] | None] = [None] * len(pieces)
            if reply.token_counts is not None:
                total_in, total_out = reply.token_counts
                share = total_out // len(pieces)
                counts = [(total_in, share) for _ in pieces]
                counts[-1] = (total_in, total_out - share * (len(pieces) - 1))
            streams.append(list(zip(pieces, counts, strict=True)))
        for step in range(max(len(p) for p in streams)):
            yield [_outputs(*(p[step] if step < len(p) else ("", None))) for p in streams]

    # --- the server ------------------------------------------------------------------

    def start(self) -> ScriptedTriton:
        from pytriton.model_config import ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig

        self.http_port, self.grpc_port, self.metrics_port = (_free_port() for _ in range(3))
        config = TritonConfig(
            http_address="127.0.0.1", http_port=self.http_port,
            grpc_address="127.0.0.1", grpc_port=self.grpc_port,
            metrics_address="127.0.0.1", metrics_port=self.metrics_port,
            http_header_forward_pattern=HEADER_FORWARD_PATTERN,
            grpc_header_forward_pattern=HEADER_FORWARD_PATTERN,
            exit_timeout_secs=5)
        # the counts are optional outputs: a reply built with ``counted`` sends them
        outputs = [Tensor(name="text_output", dtype=bytes, shape=(1,)),
                   Tensor(name="num_input_tokens", dtype=np.int32, shape=(1,)),
                   Tensor(name="num_output_tokens", dtype=np.int32, shape=(1,))]
        started = time.monotonic()
        triton = Triton(config=config)
        self._triton = triton
        triton.bind(
            model_name=MODEL, infer_func=self._infer,
            inputs=[Tensor(name="text_input", dtype=bytes, shape=(1,)),
                    Tensor(name="max_tokens", dtype=np.int32, shape=(1,), optional=True),
                    Tensor(name="temperature", dtype=np.float32, shape=(1,), optional=True),
                    Tensor(name="top_p", dtype=np.float32, shape=(1,), optional=True),
                    Tensor(name="stop", dtype=bytes, shape=(-1,), optional=True)],
            outputs=outputs, config=ModelConfig(batching=False))
        triton.bind(
            model_name=STREAM_MODEL, infer_func=self._infer_stream,
            inputs=[Tensor(name="text_input", dtype=bytes, shape=(1,)),
                    Tensor(name="stream", dtype=np.bool_, shape=(1,), optional=True),
                    Tensor(name="sampling_parameters", dtype=bytes, shape=(1,), optional=True)],
            outputs=outputs, config=ModelConfig(batching=False, decoupled=True))
        saved = os.environ.get("LD_LIBRARY_PATH")
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        os.environ["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, saved) if p)
        try:
            triton.run()
        except Exception:
            self.stop()
            raise
        finally:
            if saved is None:
                os.environ.pop("LD_LIBRARY_PATH", None)
            else:
                os.environ["LD_LIBRARY_PATH"] = saved
        running = getattr(getattr(triton, "_triton_server", None), "_tritonserver_running_cmd",
                          None)
        self.pid = getattr(running, "pid", None)
        try:
            self._wait_ready()
        except Exception:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self) -> None:
        import tritonclient.http as httpclient

        deadline = time.monotonic() + _READY_TIMEOUT_S
        with contextlib.closing(httpclient.InferenceServerClient(self.http_url)) as client:
            while True:
                try:
                    if all(client.is_model_ready(m) for m in (MODEL, STREAM_MODEL)):
                        return
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                if time.monotonic() > deadline:
                    tail = self.logs()[-4000:]
                    raise RuntimeError(f"Triton's scripted models are not READY after "
                                       f"{_READY_TIMEOUT_S:g} s; server log tail:\n{tail}")
                time.sleep(0.2)

    def stop(self) -> None:
        triton, self._triton = self._triton, None
        if triton is not None:
            triton.stop()
        pid, self.pid = self.pid, None
        if pid is not None:
            _reap(pid)

    def __enter__(self) -> ScriptedTriton:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def _reap(pid: int, timeout: float = 10.0) -> None:
    """Make sure the tritonserver process ``pid`` (which we started) has exited."""
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def triton_server() -> Iterator[ScriptedTriton]:
    """One real Triton for the whole session (about 5 s to start)."""
    with ScriptedTriton() as server:
        yield server


@pytest.fixture
def triton(triton_server: ScriptedTriton) -> Iterator[ScriptedTriton]:
    """The session's Triton, with its replies and requests cleared after the test."""
    triton_server.reset()
    yield triton_server
    triton_server.reset()
