"""Triton: the embedded ``tritonserver`` process, and the ``tritonclient`` calls the server
makes (model control, readiness, streaming generation over gRPC).

``EmbeddedTriton`` starts the ``tritonserver`` binary that the ``nvidia-pytriton`` wheel
carries, on the CPU, the way PyTriton itself does (``pytriton.triton.Triton``), minus
PyTriton's own proxy models:

* a backend folder whose ``python/`` holds the wheel's ``libtriton_python.so`` and
  ``triton_python_backend_utils.py`` (symlinked) and the Python-backend stub built for
  this interpreter's version (``python_backend_stubs/3.11/...``, copied: the backend
  runs the stub from its own folder);
* ``LD_LIBRARY_PATH`` = this interpreter's ``LIBDIR`` first (DESIGN.md: otherwise the
  stub loads the system's ``libpython3.x`` and the model fails to initialise), then the
  wheel's bundled libraries (``nvidia_pytriton.libs``);
* ``PATH`` with this environment's ``bin`` first and ``PYTHONPATH`` = this interpreter's
  ``sys.path``, so the stub's embedded interpreter imports torch and transformers from
  our virtual environment (PyTriton puts the environment's ``bin`` on ``PATH`` for the
  same reason);
* ``--model-control-mode=explicit`` (models are loaded and unloaded through the
  model-control API only), free 127.0.0.1 ports for HTTP, gRPC and metrics, and a
  ``shm-region-prefix-name`` unique to the process (several Tritons on one machine must
  not share the Python backend's shared-memory regions).

numpy must be ``<2`` (the project pins it): the wheel's stub and PyTriton need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syllabus.contracts import parent_death_signal, stop_process

from ..runtime import free_port

__all__ = ["EmbeddedTriton", "GenerateChunk", "TritonClient", "TritonError", "find_tritonserver"]

log = logging.getLogger("syllabus.server.triton")

_FINAL_FLAG = "triton_final_response"


class TritonError(Exception):
    """A failed Triton call. ``status`` is the HTTP status that fits (400 for a bad request,
    404 for an unknown model, 503 when Triton cannot be reached or the model is not ready)."""

    def __init__(self, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


def find_tritonserver() -> Path:
    """The ``tritonserver`` folder inside the installed ``nvidia-pytriton`` wheel."""
    try:
        import pytriton
    except ImportError as exc:
        raise RuntimeError("the embedded Triton needs the nvidia-pytriton package "
                           "(pip install 'syllabus[serve]'), or set server.triton_url") from exc
    root = Path(pytriton.__file__).parent / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise RuntimeError(f"no tritonserver binary under {root}")
    return root


def _libs_dir(dist: Path) -> Path:
    wheel_libs = dist.parent.parent / "nvidia_pytriton.libs"
    return wheel_libs if wheel_libs.is_dir() else dist / "external_libs"


class EmbeddedTriton:
    """The real ``tritonserver`` on the CPU, serving ``repository`` (a folder, or an
    ``s3://`` URL) in explicit mode.

    ``start()`` returns once the server answers ``/v2/health/live``; ``stop()`` sends
    SIGINT, waits ``exit_timeout`` seconds, then kills. The server's output goes to
    ``<work_dir>/tritonserver.log``."""

    def __init__(self, repository: Path | str, *, work_dir: Path, host: str = "127.0.0.1",
                 start_timeout: float = 60.0, log_verbose: int = 0,
                 env: dict[str, str] | None = None) -> None:
        # a local folder, or a URL Triton reads itself (s3://host:port/bucket/prefix, with
        # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in ``env``)
        self.repository: Path | str = repository if "://" in str(repository) \
            else Path(repository).resolve()
        self.extra_env = dict(env or {})
        self.work_dir = Path(work_dir).resolve()
        self.host = host
        self.start_timeout = start_timeout
        self.log_verbose = log_verbose
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.process: subprocess.Popen | None = None
        self.log_path = self.work_dir / "tritonserver.log"
        self._log_file: Any = None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def logs(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def _backends(self, dist: Path) -> Path:
        backends = self.work_dir / "backends"
        python = backends / "python"
        python.mkdir(parents=True, exist_ok=True)
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            link = python / name
            if not link.exists():
                link.symlink_to(dist / "backends" / "python" / name)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise RuntimeError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
        target = python / "triton_python_backend_stub"
        if not target.exists():
            shutil.copy2(stub, target)
        return backends

    def environment(self, dist: Path) -> dict[str, str]:
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = ":".join(
            p for p in (libdir, str(_libs_dir(dist)), os.environ.get("LD_LIBRARY_PATH")) if p)
        env["PATH"] = ":".join(p for p in (str(Path(sys.executable).parent),
                                           os.environ.get("PATH")) if p)
        env["PYTHONPATH"] = ":".join(p for p in sys.path if p and Path(p).exists())
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))
        env.update(self.extra_env)
        return env

    def command(self, dist: Path, backends: Path) -> list[str]:
        prefix = f"syllabus{os.getpid()}-{uuid.uuid4().hex[:8]}"
        return [
            str(dist / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={backends}",
            f"--backend-config=python,shm-region-prefix-name={prefix}",
            "--backend-config=python,shm-default-byte-size=4194304",
            "--backend-config=python,shm-growth-byte-size=1048576",
            f"--cache-directory={dist / 'caches'}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=5",
            "--strict-readiness=true",
            f"--log-verbose={self.log_verbose}",
        ]

    def start(self) -> EmbeddedTriton:
        if self.process is not None:
            return self
        dist = find_tritonserver()
        if isinstance(self.repository, Path):
            self.repository.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        backends = self._backends(dist)
        self.http_port, self.grpc_port, self.metrics_port = (free_port() for _ in range(3))
        self._log_file = self.log_path.open("ab")
        started = time.monotonic()
        # its own process group (stop() signals the group: tritonserver and the Python
        # backend stubs it spawns), and, on Linux, SIGKILL when this process dies. The
        # kernel ties that signal to the forking thread: the server starts Triton from a
        # worker thread of asyncio's default executor, which lives as long as the loop.
        self.process = subprocess.Popen(self.command(dist, backends), env=self.environment(dist),
                                        stdout=self._log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, process_group=0,
                                        preexec_fn=parent_death_signal(os.getpid()))
        try:
            self._wait_live()
        except Exception:
            self.stop()
            raise
        # where it listens, for operators and tests (curl its generate endpoint)
        (self.work_dir / "endpoints.json").write_text(json.dumps(
            {"http": self.http_url, "grpc": self.grpc_url,
             "metrics": f"{self.host}:{self.metrics_port}", "pid": self.process.pid}))
        log.info("embedded tritonserver (pid %d) up in %.1fs: http %s, grpc %s", self.process.pid,
                 time.monotonic() - started, self.http_url, self.grpc_url)
        return self

    def exited(self) -> int | None:
        """The exit code when the started tritonserver has exited, else None."""
        process = self.process
        return None if process is None else process.poll()

    def _wait_live(self) -> None:
        import urllib.request

        deadline = time.monotonic() + self.start_timeout
        url = f"http://{self.http_url}/v2/health/live"
        while True:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited during start-up; log tail:\n"
                                   f"{self.logs()}")
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(url, timeout=1.0) as resp:  # noqa: S310 - local
                if resp.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"tritonserver is not live after {self.start_timeout:g}s; "
                                   f"log tail:\n{self.logs()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, signal.SIGINT, timeout=timeout)
            # whatever of its group is left (Python-backend stubs)
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> EmbeddedTriton:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- the client -------------------------------------------------------------------------


@dataclass
class GenerateChunk:
    """One response of a streaming generation."""

    text: str
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    final: bool = False


@dataclass
class TritonClient:
    """``tritonclient``'s gRPC asyncio client, one per event loop (a gRPC channel belongs to
    the loop that opened it)."""

    url: str
    timeout: float = 120.0
    _clients: dict[int, Any] = field(default_factory=dict, repr=False)

    def _client(self) -> Any:
        import tritonclient.grpc.aio as grpcaio

        loop = asyncio.get_running_loop()
        key = id(loop)
        client = self._clients.get(key)
        if client is None:
            client = grpcaio.InferenceServerClient(url=self.url)
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        key = id(asyncio.get_running_loop())
        client = self._clients.pop(key, None)
        if client is not None:
            await client.close()

    # --- control ------------------------------------------------------------------------

    async def live(self) -> bool:
        try:
            return bool(await self._client().is_server_live(client_timeout=5.0))
        except Exception:  # noqa: BLE001 - unreachable is "not live"
            return False

    async def load(self, name: str) -> None:
        from tritonclient.utils import InferenceServerException

        try:
            await self._client().load_model(name, client_timeout=self.timeout)
        except InferenceServerException as exc:
            raise TritonError(f"Triton could not load model {name!r}: {exc.message()}",
                              status=_status(exc)) from exc

    async def unload(self, name: str) -> None:
        from tritonclient.utils import InferenceServerException

        try:
            await self._client().unload_model(name, client_timeout=self.timeout)
        except InferenceServerException as exc:
            raise TritonError(f"Triton could not unload model {name!r}: {exc.message()}",
                              status=_status(exc)) from exc

    async def ready(self, name: str) -> bool:
        try:
            return bool(await self._client().is_model_ready(name, client_timeout=5.0))
        except Exception:  # noqa: BLE001 - unknown or unreachable is "not ready"
            return False

    async def index(self) -> list[dict[str, Any]]:
        """The repository index: ``[{"name", "version", "state", "reason"}]``."""
        from google.protobuf.json_format import MessageToDict

        reply = await self._client().get_model_repository_index(client_timeout=10.0)
        return [MessageToDict(m, preserving_proto_field_name=True) for m in reply.models]

    # --- generation ---------------------------------------------------------------------

    async def stream(self, model: str, prompt: str, sampling: dict[str, Any], *,
                     stream: bool = True) -> AsyncIterator[GenerateChunk]:
        """Generate through a streaming gRPC infer (the model is decoupled): one chunk per
        response, the last with ``final`` set. Raises ``TritonError``."""
        import grpc
        import numpy as np
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        def tensor(name: str, array: np.ndarray, dtype: str) -> Any:
            t = grpcclient.InferInput(name, list(array.shape), dtype)
            t.set_data_from_numpy(array)
            return t

        inputs = [tensor("text_input", np.array([prompt.encode()], dtype=np.object_), "BYTES"),
                  tensor("stream", np.array([stream], dtype=np.bool_), "BOOL"),
                  tensor("sampling_parameters",
                         np.array([json.dumps(sampling).encode()], dtype=np.object_), "BYTES")]
        # no enable_empty_final_response: tritonclient.grpc.aio ignores that key, and a
        # triton_* request parameter is refused by the client. Both backends put the FINAL
        # flag on a response that carries data (the Python backend's last response; the
        # vLLM backend's last output), which ends the loop below.
        request = {"model_name": model, "inputs": inputs, "request_id": uuid.uuid4().hex}

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield request

        responses = self._client().stream_infer(requests(), stream_timeout=self.timeout)
        try:
            async for result, error in responses:
                if error is not None:
                    raise TritonError(f"model {model!r}: {_message(error)}", status=_status(error))
                chunk = _chunk(result)
                yield chunk
                if chunk.final:
                    return
        except InferenceServerException as exc:
            raise TritonError(f"model {model!r}: {exc.message()}", status=_status(exc)) from exc
        except grpc.RpcError as exc:  # the channel itself failed (Triton down, a deadline)
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            status = {"UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404,
                      "INVALID_ARGUMENT": 400}.get(getattr(code, "name", ""), 502)
            details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            raise TritonError(f"model {model!r}: Triton: {details}", status=status) from exc
        finally:
            responses.cancel()


def _chunk(result: Any) -> GenerateChunk:
    response = result.get_response()
    final = bool(response.parameters.get(_FINAL_FLAG).bool_param) \
        if _FINAL_FLAG in response.parameters else False
    names = {o.name for o in response.outputs}

    def first(name: str) -> Any:
        if name not in names:
            return None
        array = result.as_numpy(name)
        return None if array is None or array.size == 0 else array.reshape(-1)[0]

    text = first("text_output")
    finish = first("finish_reason")
    n_in, n_out = first("num_input_tokens"), first("num_output_tokens")
    return GenerateChunk(
        text=text.decode("utf-8", errors="replace") if isinstance(text, bytes) else (text or ""),
        finish_reason=(finish.decode() if isinstance(finish, bytes) else finish) or None,
        input_tokens=int(n_in) if n_in is not None else None,
        output_tokens=int(n_out) if n_out is not None else None,
        final=final)


def _message(error: Any) -> str:
    message = getattr(error, "message", None)
    return message() if callable(message) else str(error)


def _status(error: Any) -> int:
    status = getattr(error, "status", None)
    code = status() if callable(status) else status
    text = _message(error).lower()
    if code is not None:
        code = str(code)
        if "NOT_FOUND" in code or "404" in code:
            return 404
        if "INVALID_ARGUMENT" in code or "400" in code:
            return 400
        if "UNAVAILABLE" in code:
            return 503
    if "unknown model" in text or "not found" in text:
        return 404
    if "must be" in text or "required" in text or "invalid" in text:
        return 400
    if "unavailable" in text or "not ready" in text:
        return 503
    return 502
