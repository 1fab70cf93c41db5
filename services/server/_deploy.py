"""Deployment: a trained model in the store -> a Triton model repository -> loaded, ready,
evaluated -> announced on ``syllabus.models.deployed``.

``ServerState`` (one per runtime, ``server_state(rt)``) holds the Triton the server uses
(the embedded one, started on first use, or the one at ``server.triton_url``), the
deployment records and the tokenizers the API renders chats with.

A deployment record, ``triton/<name>/deployment.json`` in the store, is the
``ModelDeployed`` event plus the model's store prefix. It makes deployment idempotent: a
redelivered ``training.completed`` for a model that already has a record is not deployed
again (``duplicate``; a deployed model missing from Triton, after a restart, is only
loaded again). ``syllabus deploy --force`` redoes it. On start the server loads every
model whose record says ``deployed``.

Outcomes: ``deployed``; ``refused`` (the model loaded, but a score missed its floor; it is
unloaded); ``failed`` (missing or corrupt files, Triton could not load it; Triton's reason
is kept). All three are published (refusals and failures with the reason), counted in
``syllabus_server_deployments_total`` and logged; other models keep being served. When
Triton cannot be reached the handler raises, so the bus retries with back-off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syllabus.contracts import ModelDeployed, TrainingCompleted

from ..runtime import Runtime
from ._metrics import DEPLOYMENTS, SERVED
from ._repository import is_model_file, repository_files, triton_name
from ._triton import EmbeddedTriton, TritonClient, TritonError

__all__ = ["RECORD_FILE", "ServerState", "record_key", "server_state"]

log = logging.getLogger("syllabus.server")

RECORD_FILE = "deployment.json"
VERSION = 1
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_TOKENIZER_LOCK = threading.Lock()
_REPOSITORY_README = (b"This prefix is a Triton model repository, written by the Syllabus server: "
                      b"<model>/config.pbtxt, <model>/<version>/model.py (or model.json) and "
                      b"<model>/<version>/hf/ (the weights). tritonserver "
                      b"--model-repository=s3://<host:port>/<bucket>/triton "
                      b"--model-control-mode=explicit\n")


def record_key(name: str) -> str:
    return f"triton/{name}/{RECORD_FILE}"


def server_state(rt: Runtime) -> ServerState:
    """The runtime's server state (made on first use)."""
    state = rt.state.get("server")
    if state is None:
        state = rt.state["server"] = ServerState(rt)
    return state


def _grpc_url(cfg: Any) -> str:
    if cfg.triton_grpc_url:
        return cfg.triton_grpc_url.split("://", 1)[-1]
    host = cfg.triton_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    return f"{host}:8001"


@dataclass
class ServerState:
    rt: Runtime
    triton: EmbeddedTriton | None = None
    client: TritonClient | None = None
    #: name -> record ({"event": ModelDeployed, "store_prefix": ...})
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokenizers: dict[str, Any] = field(default_factory=dict)
    in_flight: int = 0
    started: bool = False
    _start_lock: threading.Lock = field(default_factory=threading.Lock)
    _deploy_locks: dict[int, asyncio.Lock] = field(default_factory=dict)

    @property
    def cfg(self):
        return self.rt.settings.server

    @property
    def work_dir(self) -> Path:
        return Path(self.cfg.work_dir).resolve()

    @property
    def repository(self) -> Path | None:
        """The local model-repository folder, or None when Triton reads the store."""
        if self.cfg.model_repository is not None:
            return Path(self.cfg.model_repository).resolve()
        return None if self.cfg.triton_url else self.work_dir / "repository"

    @property
    def endpoint(self) -> str:
        if self.cfg.public_url:
            return self.cfg.public_url.rstrip("/")
        http = self.rt.settings.http
        host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
        return f"http://{host}:{http.port}/v1"

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start (or connect to) Triton and load the models deployed before. Idempotent."""
        if self.started:
            return
        await asyncio.to_thread(self._start_triton)
        if not self.started:
            self.started = True
            if self.cfg.triton_url and self.repository is None:
                await self._mark_store_repository()
            await self.restore()

    def _start_triton(self) -> None:
        with self._start_lock:
            if self.client is not None:
                return
            if self.cfg.triton_url:
                self.client = TritonClient(_grpc_url(self.cfg), timeout=self.cfg.load_timeout)
                return
            assert self.repository is not None
            triton = EmbeddedTriton(self.repository, work_dir=self.work_dir / "triton",
                                    start_timeout=self.cfg.start_timeout)
            triton.start()
            self.triton = triton
            self.client = TritonClient(triton.grpc_url, timeout=self.cfg.load_timeout)

    async def _mark_store_repository(self) -> None:
        """Triton reading ``s3://.../triton`` needs the prefix to exist before the first
        model: one small object makes it so (Triton ignores files at the top level)."""
        key = "triton/README.txt"
        if not await self.rt.to_thread(self.rt.store.exists, key):
            await self.rt.to_thread(self.rt.store.put, key, _REPOSITORY_README)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        triton, self.triton = self.triton, None
        self.client = None
        self.started = False
        if triton is not None:
            await asyncio.to_thread(triton.stop)

    def _deploy_lock(self) -> asyncio.Lock:
        key = id(asyncio.get_running_loop())
        lock = self._deploy_locks.get(key)
        if lock is None:
            lock = self._deploy_locks[key] = asyncio.Lock()
        return lock

    async def ready(self) -> bool:
        return self.client is not None and await self.client.live()

    # --- records ------------------------------------------------------------------------

    def deployed(self) -> dict[str, ModelDeployed]:
        """The models the API serves, by name."""
        return {name: rec["event"] for name, rec in self.records.items()
                if rec["event"].status == "deployed"}

    def lookup(self, model: str) -> ModelDeployed | None:
        """A deployed model by its name or its model id."""
        served = self.deployed()
        if model in served:
            return served[model]
        return next((ev for ev in served.values() if ev.model_id == model), None)

    async def _read_record(self, name: str) -> dict[str, Any] | None:
        store, key = self.rt.store, record_key(name)
        if not await self.rt.to_thread(store.exists, key):
            return None
        data = json.loads(await self.rt.to_thread(store.get, key))
        return {**data, "event": ModelDeployed.model_validate(data["event"])}

    async def _write_record(self, record: dict[str, Any]) -> None:
        event: ModelDeployed = record["event"]
        payload = {**record, "event": json.loads(event.model_dump_json())}
        await self.rt.to_thread(self.rt.store.put, record_key(event.name),
                                json.dumps(payload, indent=2).encode())
        self.records[event.name] = record
        SERVED.set(len(self.deployed()))

    async def load_records(self) -> dict[str, dict[str, Any]]:
        """Every deployment record in the store."""
        keys = await self.rt.to_thread(lambda: list(self.rt.store.list("triton/")))
        names = sorted({k.split("/")[1] for k in keys
                        if k.count("/") == 2 and k.endswith("/" + RECORD_FILE)})
        out = {}
        for name in names:
            try:
                rec = await self._read_record(name)
            except (ValueError, KeyError) as exc:
                log.error("deployment record %s is unreadable: %s", record_key(name), exc)
                continue
            if rec is not None:
                out[name] = rec
        return out

    async def restore(self) -> None:
        """Load every model whose record says deployed (after a restart), all at once
        (Triton loads them in parallel)."""
        async def one(name: str, rec: dict[str, Any]) -> None:
            try:
                if self.repository is not None and \
                        not (self.repository / name / "config.pbtxt").is_file():
                    await self._materialize(name, rec["store_prefix"], store_copy=False)
                await self._load(name)
                self.records[name] = rec
                log.info("restored model %s (%s)", name, rec["event"].model_id)
            except Exception as exc:  # noqa: BLE001 - one broken model must not stop the rest
                log.error("could not restore model %s: %s", name, exc)

        jobs = []
        for name, rec in (await self.load_records()).items():
            if rec["event"].status == "deployed":
                jobs.append(one(name, rec))
            else:
                self.records[name] = rec
        await asyncio.gather(*jobs)
        SERVED.set(len(self.deployed()))

    # --- deployment ---------------------------------------------------------------------

    async def deploy(self, event: TrainingCompleted, *, force: bool = False) -> ModelDeployed:
        """Deploy one trained model (see the module docstring). Returns the event that was
        published, or for a duplicate the one published before."""
        await self.start()
        name = triton_name(event.model_id)
        async with self._deploy_lock():
            previous = self.records.get(name) or await self._read_record(name)
            if previous is not None and not force and \
                    previous["event"].model_id == event.model_id:
                return await self._duplicate(name, previous)
            result = await self._deploy(name, event)
            await self._write_record({"event": result, "store_prefix": event.store_prefix,
                                      "recorded_at": time.time()})
            await self.rt.bus.publish(result)
            DEPLOYMENTS.labels(outcome=result.status).inc()
            if result.status == "deployed":
                log.info("model %s deployed as %s (scores %s)", event.model_id, name,
                         result.eval_scores)
            else:
                log.error("model %s %s: %s", event.model_id, result.status, result.reason)
            return result

    async def _duplicate(self, name: str, previous: dict[str, Any]) -> ModelDeployed:
        DEPLOYMENTS.labels(outcome="duplicate").inc()
        ev: ModelDeployed = previous["event"]
        log.info("model %s was already handled (%s); not deploying it again", ev.model_id,
                 ev.status)
        if ev.status == "deployed" and not await self.client.ready(name):
            await self._load(name)  # Triton restarted: serve it again
        self.records[name] = previous
        return ev

    def _event(self, name: str, source: TrainingCompleted, **fields: Any) -> ModelDeployed:
        return ModelDeployed(model_id=source.model_id, name=name, version=VERSION,
                             endpoint=self.endpoint, job_id=source.job_id,
                             dataset=source.dataset, backend=self.cfg.backend, **fields)

    async def _deploy(self, name: str, event: TrainingCompleted) -> ModelDeployed:
        from ._gate import run_gate

        try:
            await self._materialize(name, event.store_prefix,
                                    store_copy=self.cfg.store_repository)
        except (ValueError, OSError, KeyError) as exc:
            return self._event(name, event, status="failed",
                               reason=f"the model files under {event.store_prefix}: {exc}")
        try:
            await self._load(name)
        except TritonError as exc:
            if exc.status == 503 and not await self.client.live():
                raise  # Triton is down: let the bus retry
            # Triton's message, less the Python traceback the backend appends ("At: ...")
            reason = str(exc).split("\n\nAt:", 1)[0].strip()
            await self._unload_quietly(name)
            return self._event(name, event, status="failed", reason=reason[:2000])
        gate = await run_gate(self, name, event)
        if gate.refused:
            await self._unload_quietly(name)
            return self._event(name, event, status="refused", reason=gate.reason,
                               eval_scores=gate.scores, eval_floors=gate.floors,
                               eval_details=gate.details)
        return self._event(name, event, status="deployed", eval_scores=gate.scores,
                           eval_floors=gate.floors, eval_details=gate.details)

    async def _load(self, name: str) -> None:
        if self.client is None:
            raise TritonError("Triton is not started", status=503)
        try:
            await asyncio.wait_for(self.client.load(name), timeout=self.cfg.load_timeout)
        except TimeoutError as exc:
            raise TritonError(f"model {name!r} did not load in {self.cfg.load_timeout:g}s",
                              status=504) from exc
        if not await self.client.ready(name):
            raise TritonError(f"model {name!r} loaded but is not ready", status=503)
        self.tokenizers.pop(name, None)

    async def _unload_quietly(self, name: str) -> None:
        try:
            await self.client.unload(name)
        except TritonError as exc:
            log.warning("could not unload %s: %s", name, exc)

    # --- files --------------------------------------------------------------------------

    def staging(self, name: str) -> Path:
        """The local copy of a model's files (the tokenizer the API renders chats with)."""
        return self.work_dir / "models" / name / "hf"

    async def _materialize(self, name: str, store_prefix: str, *, store_copy: bool) -> None:
        """Download the model's files, then write its repository: into the local
        repository folder (when there is one) and, when ``store_copy``, into the store at
        ``triton/<name>/``. Raises ``ValueError`` for a model that lacks files."""
        prefix = store_prefix.rstrip("/") + "/"
        keys = await self.rt.to_thread(lambda: list(self.rt.store.list(prefix)))
        files = sorted(k[len(prefix):] for k in keys if is_model_file(k[len(prefix):]))
        if not files:
            raise ValueError(f"no model files in the store under {prefix}")
        cfg = self.cfg
        params = {"max_tokens_limit": str(cfg.max_tokens_limit),
                  "max_concurrent": str(cfg.model_concurrency),
                  "threads": str(cfg.torch_threads) if cfg.torch_threads else ""}
        repo_root = self.repository
        vllm_path = None
        if cfg.backend == "vllm":
            template = cfg.vllm_model_path or (
                f"{repo_root}/{{name}}/{{version}}/hf" if repo_root else None)
            vllm_path = template.format(name=name, version=VERSION) if template else None
        plan = repository_files(name, files, version=VERSION, backend=cfg.backend,
                                parameters=params if cfg.backend == "python" else {},
                                vllm_model_path=vllm_path, instances=cfg.instances,
                                execution_env=cfg.execution_env, kind=cfg.instance_kind)
        staging = self.staging(name)
        await self.rt.to_thread(self._download, prefix, files, staging)
        if repo_root is not None:
            await self.rt.to_thread(self._write_local, repo_root / name, plan, staging)
        if store_copy:
            await self._write_store(name, plan, staging)

    def _download(self, prefix: str, files: list[str], staging: Path) -> None:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        for f in files:
            tmp = staging / f".{f}.part"
            with tmp.open("wb") as fh:
                for chunk in self.rt.store.stream(prefix + f):
                    fh.write(chunk)
            tmp.replace(staging / f)

    @staticmethod
    def _write_local(model_dir: Path, plan: Any, staging: Path) -> None:
        if model_dir.exists():
            shutil.rmtree(model_dir)
        for rel, data in plan.generated.items():
            path = model_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for rel, source in plan.weights.items():
            path = model_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(staging / source, path)  # same file system: no second copy
            except OSError:
                shutil.copy2(staging / source, path)

    async def _write_store(self, name: str, plan: Any, staging: Path) -> None:
        store = self.rt.store
        for rel, data in plan.generated.items():
            await self.rt.to_thread(store.put, f"triton/{name}/{rel}", data)
        for rel, source in plan.weights.items():
            path = staging / source

            def put(path: Path = path, key: str = f"triton/{name}/{rel}") -> None:
                with path.open("rb") as fh:
                    store.put(key, fh, length=path.stat().st_size)

            await self.rt.to_thread(put)

    # --- chats --------------------------------------------------------------------------

    async def tokenizer(self, name: str) -> Any:
        tok = self.tokenizers.get(name)
        if tok is None:
            staging = self.staging(name)
            if not staging.is_dir():
                rec = self.records.get(name)
                if rec is None:
                    raise TritonError(f"model {name!r} is not deployed", status=404)
                prefix = rec["store_prefix"].rstrip("/") + "/"
                keys = await self.rt.to_thread(lambda: list(self.rt.store.list(prefix)))
                small = [k[len(prefix):] for k in keys if is_model_file(k[len(prefix):])
                         and not k.endswith(_WEIGHT_SUFFIXES)]
                await self.rt.to_thread(self._download, prefix, small, staging)

            def load() -> Any:
                # one at a time: transformers' lazy imports are not thread-safe, and
                # concurrent evaluation calls would all load the same tokenizer
                with _TOKENIZER_LOCK:
                    if name in self.tokenizers:
                        return self.tokenizers[name]
                    try:
                        from transformers import AutoTokenizer
                    except ImportError as exc:
                        raise TritonError("the server renders chats with the model's "
                                          "tokenizer and needs transformers (pip install "
                                          "'syllabus[serve]')", status=503) from exc
                    return AutoTokenizer.from_pretrained(str(staging))

            tok = self.tokenizers[name] = await asyncio.to_thread(load)
        return tok

    async def render_chat(self, name: str, messages: list[dict[str, Any]]) -> str:
        """The prompt for ``messages``, by the model's own chat template. Raises
        ``ValueError`` when the model has none or the template rejects the messages."""
        tok = await self.tokenizer(name)
        if not getattr(tok, "chat_template", None):
            raise ValueError(f"model {name!r} has no chat template; use /v1/completions")
        try:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # jinja's TemplateError, a role the template refuses
            raise ValueError(f"the model's chat template rejects these messages: {exc}") from exc
