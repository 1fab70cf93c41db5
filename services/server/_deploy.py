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
model whose record says ``deployed``. The record is written (``published: false``) before
``ModelDeployed`` is published and marked ``published`` after: a redelivery that finds an
unpublished record publishes its event again (JetStream drops the copy when the first
publish did arrive, by ``Nats-Msg-Id``).

Versions: each deployment of a name writes a new version folder (1, 2, ...) and pins it in
``config.pbtxt`` (``version_policy: specific``), so a ``--force`` redeploy loads next to
the version being served: Triton swaps to the new one only once it has loaded. A new
version that fails to load or is refused by the gate is removed and the previous one
stays served (its record kept); older versions are removed once a new one is deployed.

Triton's health: ``ready_checks()`` is part of ``/health/ready``; ``watch()`` restarts an
embedded ``tritonserver`` that has exited (and loads the deployed models into it again).

Outcomes: ``deployed``; ``refused`` (the model loaded, but a score missed its floor; it is
unloaded); ``failed`` (missing or corrupt files, Triton could not load it; Triton's reason
is kept). All three are published (refusals and failures with the reason), counted in
``syllabus_server_deployments_total`` and logged; other models keep being served. When
Triton cannot be reached the handler raises, so the bus retries with back-off.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syllabus.contracts import (
    ModelDeployed,
    TrainingCompleted,
    inference_prefix,
    inference_system,
)

from ..runtime import Runtime
from ._metrics import DEPLOYMENTS, SERVED
from ._repository import is_model_file, repository_files, triton_name
from ._triton import EmbeddedTriton, TritonClient, TritonError

__all__ = ["RECORD_FILE", "ServerState", "record_key", "server_state"]

log = logging.getLogger("syllabus.server")

RECORD_FILE = "deployment.json"
VERSION = 1  # the first version of a name; each redeploy takes the next
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
    #: name -> max_position_embeddings of its config.json (0: unknown)
    contexts: dict[str, int] = field(default_factory=dict)
    #: per model: the system prompt of a chat that brings none (``inference_system``)
    systems: dict[str, str | None] = field(default_factory=dict)
    #: per model: the prefix of the last user turn (``inference_prefix``)
    prefixes: dict[str, str | None] = field(default_factory=dict)
    #: name -> the version Triton was last asked to serve
    versions: dict[str, int] = field(default_factory=dict)
    #: restarts of the embedded tritonserver after it exited
    restarts: int = 0
    _start_lock: threading.Lock = field(default_factory=threading.Lock)
    _deploy_locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    _name_locks: dict[tuple[int, str], asyncio.Lock] = field(default_factory=dict)

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

    def _name_lock(self, name: str) -> asyncio.Lock:
        key = (id(asyncio.get_running_loop()), name)
        lock = self._name_locks.get(key)
        if lock is None:
            lock = self._name_locks[key] = asyncio.Lock()
        return lock

    def triton_client(self) -> TritonClient:
        """The client, or 503 while Triton is down (being restarted)."""
        client = self.client
        if client is None:
            raise TritonError("Triton is not running (it is being restarted)", status=503)
        return client

    async def ready(self) -> bool:
        if self.triton is not None and self.triton.exited() is not None:
            return False
        return self.client is not None and await self.client.live()

    async def ready_checks(self) -> dict[str, bool]:
        """The server's part of ``/health/ready``: Triton is up and answers."""
        return {"triton": await self.ready()}

    async def watch(self, interval: float = 2.0) -> None:
        """Every ``interval`` seconds: when the embedded tritonserver has exited, start a
        new one and load the deployed models into it (until cancelled)."""
        while True:
            await asyncio.sleep(interval)
            triton = self.triton
            if triton is None or triton.exited() is None:
                continue
            log.error("the embedded tritonserver exited (code %s); restarting it. Log "
                      "tail:\n%s", triton.exited(), triton.logs(2000))
            try:
                async with self._deploy_lock():
                    await self.close()
                    await self.start()
                self.restarts += 1
                log.info("the embedded tritonserver is back (restart %d)", self.restarts)
            except Exception as exc:  # noqa: BLE001 - try again on the next round
                log.error("could not restart the embedded tritonserver: %s", exc)

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
                version = rec["event"].version
                if self.repository is not None and \
                        not (self.repository / name / str(version)).is_dir():
                    await self._materialize(name, rec["store_prefix"], version=version,
                                            store_copy=False)
                await self._load(name, version)
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
        try:
            name = triton_name(event.model_id)
        except ValueError as exc:  # no retry can help: report it
            result = self._event(_invalid_name(event.model_id), event, status="failed",
                                 reason=str(exc))
            await self.rt.bus.publish(result)
            DEPLOYMENTS.labels(outcome="failed").inc()
            log.error("model %s failed: %s", event.model_id, exc)
            return result
        await self.start()
        async with self._deploy_lock():
            previous = self.records.get(name) or await self._read_record(name)
            if previous is not None and previous["event"].model_id != event.model_id \
                    and not force:
                # two ids, one name (only a hash collision now): never replace silently
                result = self._event(name, event, status="failed", reason=(
                    f"the Triton name {name!r} is taken by model "
                    f"{previous['event'].model_id!r}; use --force to replace it"))
                await self.rt.bus.publish(result)
                DEPLOYMENTS.labels(outcome="failed").inc()
                log.error("model %s failed: %s", event.model_id, result.reason)
                return result
            if previous is not None and not force:
                return await self._duplicate(name, previous)
            # past every version tried before (a failed redeploy's too: its announcement
            # must not share a Nats-Msg-Id with an earlier one)
            version = max(previous["event"].version, previous.get("last_version", 0)) + 1 \
                if previous is not None else VERSION
            serving = previous if previous is not None and \
                previous["event"].status == "deployed" else None
            result = await self._deploy(name, event, version, serving)
            # a failed or refused redeploy leaves the previous version served, and its record
            keep = serving is not None and result.status != "deployed"
            record = {"event": result, "store_prefix": event.store_prefix,
                      "recorded_at": time.time(), "published": False}
            await self._write_record(record if not keep else {**serving, "last_version": version})
            await self.rt.bus.publish(result)
            if not keep:
                record["published"] = True
                await self._write_record(record)
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
            await self._load(name, ev.version)  # Triton restarted: serve it again
        self.records[name] = previous
        if not previous.get("published", True):
            # the first try stopped between the record and the announcement
            log.info("announcing model %s again (its first announcement was lost)", ev.model_id)
            await self.rt.bus.publish(ev)
            await self._write_record({**previous, "published": True})
        return ev

    def _event(self, name: str, source: TrainingCompleted, *, version: int = VERSION,
               **fields: Any) -> ModelDeployed:
        return ModelDeployed(model_id=source.model_id, name=name, version=version,
                             endpoint=self.endpoint, job_id=source.job_id,
                             dataset=source.dataset, backend=self.cfg.backend, **fields)

    async def _deploy(self, name: str, event: TrainingCompleted, version: int,
                      serving: dict[str, Any] | None) -> ModelDeployed:
        """Deploy ``event``'s model as ``version`` of ``name``; ``serving``: the record of
        the version Triton serves now, which stays served when this one fails."""
        from ._gate import run_gate

        try:
            await self._materialize(name, event.store_prefix, version=version,
                                    store_copy=self.cfg.store_repository)
        except (ValueError, OSError, KeyError) as exc:
            await self._roll_back(name, version, serving, loaded=False)
            return self._event(name, event, version=version, status="failed",
                               reason=f"the model files under {event.store_prefix}: {exc}")
        try:
            await self._load(name, version)
        except TritonError as exc:
            if exc.status == 503 and not await self.client.live():
                raise  # Triton is down: let the bus retry
            # Triton's message, less the Python traceback the backend appends ("At: ...")
            reason = str(exc).split("\n\nAt:", 1)[0].strip()
            await self._roll_back(name, version, serving, loaded=False)
            return self._event(name, event, version=version, status="failed",
                               reason=reason[:2000])
        gate = await run_gate(self, name, event)
        if gate.refused:
            await self._roll_back(name, version, serving, loaded=True)
            return self._event(name, event, version=version, status="refused",
                               reason=gate.reason, eval_scores=gate.scores,
                               eval_floors=gate.floors, eval_details=gate.details)
        # the versions before this one are done with (the store keeps its copies)
        if self.repository is not None:
            await self.rt.to_thread(_remove_versions, self.repository / name, keep=version)
        await self.rt.to_thread(_remove_versions, self.work_dir / "models" / name, keep=version)
        return self._event(name, event, version=version, status="deployed",
                           eval_scores=gate.scores, eval_floors=gate.floors,
                           eval_details=gate.details)

    async def _roll_back(self, name: str, version: int, serving: dict[str, Any] | None, *,
                         loaded: bool) -> None:
        """Take a new version that failed out again: with nothing served before, unload
        the name; else pin the served version in config.pbtxt again and, when the new
        version had ``loaded`` (the gate refused it), reload the old one (Triton keeps
        serving it throughout; a load that failed left Triton on the old version)."""
        if serving is None:
            await self._unload_quietly(name)
            return
        old = serving["event"].version
        try:
            plan = await self._plan(name, [], old, check=False)
            if self.repository is not None:
                config = self.repository / name / "config.pbtxt"
                await self.rt.to_thread(config.write_bytes, plan.generated["config.pbtxt"])
                await self.rt.to_thread(_remove_versions, self.repository / name, keep=old)
            if self.cfg.store_repository:
                await self.rt.to_thread(self.rt.store.put, f"triton/{name}/config.pbtxt",
                                        plan.generated["config.pbtxt"])
            if loaded:
                await self._load(name, old)
            self.versions[name] = old
            self.tokenizers.pop(name, None)
            self.contexts.pop(name, None)
            self.systems.pop(name, None)
            self.prefixes.pop(name, None)
            self.records[name] = serving
        except (TritonError, OSError) as exc:
            log.error("could not go back to version %d of %s: %s", old, name, exc)

    async def _load(self, name: str, version: int | None = None) -> None:
        if self.client is None:
            raise TritonError("Triton is not started", status=503)
        try:
            await asyncio.wait_for(self.client.load(name), timeout=self.cfg.load_timeout)
        except TimeoutError as exc:
            raise TritonError(f"model {name!r} did not load in {self.cfg.load_timeout:g}s",
                              status=504) from exc
        if not await self.client.ready(name):
            raise TritonError(f"model {name!r} loaded but is not ready", status=503)
        if version is not None:
            self.versions[name] = version
        self.tokenizers.pop(name, None)
        self.contexts.pop(name, None)
        self.systems.pop(name, None)
        self.prefixes.pop(name, None)

    async def _unload_quietly(self, name: str) -> None:
        try:
            await self.client.unload(name)
        except TritonError as exc:
            log.warning("could not unload %s: %s", name, exc)

    # --- files --------------------------------------------------------------------------

    def _version(self, name: str) -> int:
        """The version of ``name`` Triton serves (or was last asked to)."""
        if name in self.versions:
            return self.versions[name]
        rec = self.records.get(name)
        return rec["event"].version if rec is not None else VERSION

    def staging(self, name: str, version: int | None = None) -> Path:
        """The local copy of a model version's files (the tokenizer the API renders chats
        with)."""
        version = self._version(name) if version is None else version
        return self.work_dir / "models" / name / str(version) / "hf"

    async def _plan(self, name: str, files: list[str], version: int, *, check: bool = True
                    ) -> Any:
        cfg = self.cfg
        params = {"max_tokens_limit": str(cfg.max_tokens_limit),
                  "max_concurrent": str(cfg.model_concurrency),
                  "max_prompt_tokens": str(cfg.max_prompt_tokens or ""),
                  "threads": str(cfg.torch_threads) if cfg.torch_threads else ""}
        repo_root = self.repository
        vllm_path = None
        if cfg.backend == "vllm":
            template = cfg.vllm_model_path or (
                f"{repo_root}/{{name}}/{{version}}/hf" if repo_root else None)
            vllm_path = template.format(name=name, version=version) if template else None
        if not check:  # only config.pbtxt is wanted: any complete file list will do
            files = ["config.json", "model.safetensors", "tokenizer.json"]
        return repository_files(name, files, version=version, backend=cfg.backend,
                                parameters=params if cfg.backend == "python" else {},
                                vllm_model_path=vllm_path, instances=cfg.instances,
                                execution_env=cfg.execution_env, kind=cfg.instance_kind)

    async def _materialize(self, name: str, store_prefix: str, *, version: int,
                           store_copy: bool) -> None:
        """Download the model's files, then write its repository's ``version``: into the
        local repository folder (when there is one) and, when ``store_copy``, into the
        store at ``triton/<name>/``. Raises ``ValueError`` for a model that lacks files."""
        prefix = store_prefix.rstrip("/") + "/"
        keys = await self.rt.to_thread(lambda: list(self.rt.store.list(prefix)))
        files = sorted(k[len(prefix):] for k in keys if is_model_file(k[len(prefix):]))
        if not files:
            raise ValueError(f"no model files in the store under {prefix}")
        plan = await self._plan(name, files, version)
        staging = self.staging(name, version)
        async with self._name_lock(name):
            await self.rt.to_thread(self._download, prefix, files, staging)
        if self.repository is not None:
            await self.rt.to_thread(self._write_local, self.repository / name, plan, staging)
        if store_copy:
            await self._write_store(name, plan, staging)

    def _download(self, prefix: str, files: list[str], staging: Path) -> None:
        """The files into ``staging``, whole or not at all: they are written to a
        temporary folder that then takes ``staging``'s place."""
        staging.parent.mkdir(parents=True, exist_ok=True)
        tmp = staging.with_name(f".{staging.name}.{os.getpid()}.{threading.get_ident()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            for f in files:
                with (tmp / f).open("wb") as fh:
                    for chunk in self.rt.store.stream(prefix + f):
                        fh.write(chunk)
            if staging.exists():
                shutil.rmtree(staging)
            tmp.rename(staging)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _write_local(model_dir: Path, plan: Any, staging: Path) -> None:
        # only this version's folder is replaced: the version Triton serves stays until
        # the new one has loaded
        version_dir = model_dir / str(plan.version)
        if version_dir.exists():
            shutil.rmtree(version_dir)
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

    async def _small_files(self, name: str) -> Path:
        """The model's folder with at least its small files (tokenizer, config.json),
        downloaded once: concurrent first requests wait for the one download."""
        staging = self.staging(name)
        if staging.is_dir():
            return staging
        async with self._name_lock(name):
            if staging.is_dir():
                return staging
            rec = self.records.get(name)
            if rec is None:
                raise TritonError(f"model {name!r} is not deployed", status=404)
            prefix = rec["store_prefix"].rstrip("/") + "/"
            keys = await self.rt.to_thread(lambda: list(self.rt.store.list(prefix)))
            small = [k[len(prefix):] for k in keys if is_model_file(k[len(prefix):])
                     and not k.endswith(_WEIGHT_SUFFIXES)]
            await self.rt.to_thread(self._download, prefix, small, staging)
        return staging

    async def context_length(self, name: str) -> int:
        """The model's ``max_position_embeddings`` (from its config.json); 0 if unknown."""
        if name not in self.contexts:
            path = await self._small_files(name) / "config.json"
            try:
                config = json.loads(await self.rt.to_thread(path.read_bytes))
                self.contexts[name] = int(config.get("max_position_embeddings") or 0)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("no context length for %s: %s", name, exc)
                self.contexts[name] = 0
        return self.contexts[name]

    async def count_tokens(self, name: str, prompt: str) -> int:
        """The prompt's tokens, as the backend will count them."""
        tok = await self.tokenizer(name)
        return await asyncio.to_thread(
            lambda: len(tok(prompt, add_special_tokens=False)["input_ids"]))

    async def tokenizer(self, name: str) -> Any:
        tok = self.tokenizers.get(name)
        if tok is None:
            staging = await self._small_files(name)

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
                    tok = self.tokenizers[name] = AutoTokenizer.from_pretrained(str(staging))
                    return tok

            tok = self.tokenizers[name] = await asyncio.to_thread(load)
        return tok

    async def _manifest(self, name: str) -> dict[str, Any] | None:
        """The model's data set manifest (``dataset_manifest.json``, copied with its small
        files), or None."""
        path = await self._small_files(name) / "dataset_manifest.json"
        try:
            manifest = json.loads(await self.rt.to_thread(path.read_bytes))
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) else None

    async def inference_system(self, name: str) -> str | None:
        """The system prompt the model is asked with when a chat brings none: Humpback's
        S_a when its data set was tagged (``humpback_tags``), else None."""
        if name not in self.systems:
            self.systems[name] = inference_system(await self._manifest(name))
        return self.systems[name]

    async def inference_prefix(self, name: str) -> str | None:
        """The prefix of the last user turn: ``predict: `` for a model trained on the
        step-by-step format (Hsieh et al.'s answer task), else None."""
        if name not in self.prefixes:
            self.prefixes[name] = inference_prefix(await self._manifest(name))
        return self.prefixes[name]

    async def render_chat(self, name: str, messages: list[dict[str, Any]]) -> str:
        """The prompt for ``messages``, by the model's own chat template, with the
        model's ``inference_system`` prompt first when the messages have no system turn
        and its ``inference_prefix`` before the last user turn (unless it starts with a
        task prefix already). Raises ``ValueError`` when the model has none or the
        template rejects them."""
        tok = await self.tokenizer(name)
        if not getattr(tok, "chat_template", None):
            raise ValueError(f"model {name!r} has no chat template; use /v1/completions")
        system = await self.inference_system(name)
        if system and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": system}, *messages]
        prefix = await self.inference_prefix(name)
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        if prefix and users and isinstance(messages[users[-1]].get("content"), str):
            last = messages[users[-1]]
            if not last["content"].startswith(("predict:", "explain:")):
                messages = [*messages]
                messages[users[-1]] = {**last, "content": prefix + last["content"]}
        try:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # jinja's TemplateError, a role the template refuses
            raise ValueError(f"the model's chat template rejects these messages: {exc}") from exc


def _invalid_name(model_id: str) -> str:
    """A name for the failure event of a model id that makes no Triton name."""
    return "invalid-" + hashlib.sha256(model_id.encode()).hexdigest()[:8]


def _remove_versions(model_dir: Path, *, keep: int) -> None:
    """Remove a model folder's version folders other than ``keep``."""
    if not model_dir.is_dir():
        return
    for child in model_dir.iterdir():
        if child.is_dir() and child.name.isdigit() and int(child.name) != keep:
            shutil.rmtree(child, ignore_errors=True)
