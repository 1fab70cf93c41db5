"""The trainer handler: ``TrainingRequested`` in; ``TrainingProgress`` while it runs;
``TrainingCompleted`` or ``TrainingFailed`` out.

One job at a time per replica: the durable consumer ``trainer`` fetches one message at a
time and runs one handler, and the message is acked only when the job has finished or
failed for good. While the job runs, the bus keeps the message alive (``in_progress``);
if the replica is stopped or dies, the request is redelivered after
``trainer.ack_wait`` seconds and the next replica resumes from the last checkpoint in the
store. A worker crash is relaunched ``trainer.crash_retries`` times (from the last
checkpoint; it must be below ``trainer.max_deliver``, checked at start-up), then reported
as ``TrainingFailed`` with the tail of the worker's log.

A job id names one request: the request is kept at ``models/<model_id>/request.json``
and a different request under the same job id is refused (the model id comes from the
job id, so it would otherwise resume or report the other request's model).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faststream.nats import NatsRouter

from syllabus.contracts import (
    TRAINING_REQUESTED,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
    sha256_hex,
)

from ..runtime import Bus, HandlerContext, Runtime
from ..runtime._store import InvalidKey, validate_key
from ._artifact import RECORD_FILE, model_card, model_prefix, upload_model
from ._checkpoint import (
    STATE_FILE,
    checkpoint_prefix,
    download_checkpoint,
    latest_checkpoint,
    upload_folder,
    world_size_mismatch,
)
from ._config import Hyperparameters, JobSpec, hyperparameters, model_id_for, parse_dataset
from ._data import DataError, read_rows, row_to_example
from ._http import job_status
from ._launch import other_node_commands, run_worker, torchrun_command, worker_env
from ._metrics import (
    TRAINING_ACTIVE,
    TRAINING_CHECKPOINTS,
    TRAINING_EVAL_LOSS,
    TRAINING_GPU_MEMORY,
    TRAINING_JOBS,
    TRAINING_LEARNING_RATE,
    TRAINING_LOSS,
    TRAINING_SECONDS,
    TRAINING_STEP,
    TRAINING_TOKENS_PER_SECOND,
)

__all__ = ["SERVICE", "Plan", "build_router", "plan_job", "run_job", "trainer_bus"]

SERVICE = "trainer"
log = logging.getLogger("syllabus.trainer")

_WEIGHTS = (".safetensors", ".bin")
#: the request as the store keeps it for its job id (``models/<model_id>/request.json``)
REQUEST_FILE = "request.json"
#: what makes two requests the same job (the job id picks the model id; these must match)
_REQUEST_FIELDS = ("dataset", "base_model", "method", "gpus", "nodes", "hyperparameters")


def _request_fields(request: dict[str, Any]) -> dict[str, Any]:
    return {k: request.get(k) for k in _REQUEST_FIELDS}


def _request_mismatch(job: str, model_id: str, stored: dict[str, Any],
                      request: TrainingRequested) -> str | None:
    """Why ``request`` is not the request ``stored`` for its job id (None: it is)."""
    old, new = _request_fields(stored), _request_fields(request.model_dump(mode="json"))
    diff = [f"{k}: {old[k]!r} before, {new[k]!r} now" for k in _REQUEST_FIELDS
            if old[k] != new[k]]
    if not diff:
        return None
    return (f"job id {job!r} (model {model_id}) was already used for a different request; "
            f"{'; '.join(diff)}. A job id names one training run: use a new job id")


def trainer_bus(rt: Runtime) -> Bus:
    """The runtime's bus with the trainer's own delivery settings: one message fetched and
    handled at a time (FastStream runs a fetched batch concurrently), a longer ack wait and
    its own delivery limit. Same broker, same stream."""
    cfg = rt.settings.trainer
    bus = copy.copy(rt.bus)
    bus.bus_settings = rt.settings.bus.model_copy(update={
        "batch_size": 1, "concurrency": 1, "ack_wait": cfg.ack_wait,
        "max_deliver": cfg.max_deliver})
    return bus


@dataclass
class Plan:
    """A validated request: what to download and how to launch."""

    request: TrainingRequested
    model_id: str
    collection: str
    version: str
    dataset_prefix: str
    manifest: dict[str, Any]
    manifest_bytes: bytes
    hp: Hyperparameters
    base_kind: str  # "store" or "local"
    base_ref: str
    nproc: int
    backend: str


def _base_model(rt: Runtime, ref: str) -> tuple[str, str]:
    """Where the base model is: a store prefix holding config.json and weights, or (only
    under ``trainer.base_model_roots``) a local folder."""
    ref = ref.strip()
    if not ref:
        raise ValueError("base_model is empty")
    path = Path(ref).expanduser()
    roots = [Path(r).expanduser().resolve() for r in rt.settings.trainer.base_model_roots]
    if path.is_absolute() or ref.startswith((".", "~")):
        resolved = path.resolve()
        if not any(resolved == r or r in resolved.parents for r in roots):
            raise ValueError(f"base model {ref!r} is a local path outside trainer."
                             f"base_model_roots ({', '.join(map(str, roots)) or 'none set'}); "
                             f"upload it to the store (syllabus train does) or allow its folder")
        if not (resolved / "config.json").is_file():
            raise ValueError(f"base model {ref!r} is missing: no config.json in {resolved}")
        if not any(p.suffix in _WEIGHTS for p in resolved.iterdir()):
            raise ValueError(f"base model {ref!r} has no weights (*.safetensors) in {resolved}")
        return "local", str(resolved)
    prefix = ref.rstrip("/") + "/"
    try:
        keys = list(rt.store.list(prefix))
    except ValueError as exc:
        raise ValueError(f"base model {ref!r} is not a store prefix: {exc}") from None
    names = {k[len(prefix):] for k in keys}
    if "config.json" not in names:
        raise ValueError(f"base model {ref!r} is missing: no {prefix}config.json in the store")
    if not any(n.endswith(_WEIGHTS) for n in names):
        raise ValueError(f"base model {ref!r} has no weights (*.safetensors) under {prefix}")
    return "store", prefix


def _devices(rt: Runtime, request: TrainingRequested, hp: Hyperparameters) -> tuple[int, str]:
    cfg = rt.settings.trainer
    if request.gpus > 0:
        import torch

        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if request.gpus > have:
            raise ValueError(f"the request asks for {request.gpus} GPU(s) per node; this "
                             f"trainer has {have} (gpus=0 trains on CPUs with gloo)")
        backend = "nccl" if cfg.backend == "auto" else cfg.backend
        return request.gpus, backend
    if cfg.backend == "nccl":
        raise ValueError("trainer.backend is nccl, which needs GPUs, but the request has gpus=0")
    return hp.cpu_processes, "gloo"


def plan_job(rt: Runtime, request: TrainingRequested) -> Plan:
    """Validate a request against the store and this replica; ``ValueError`` says what is
    wrong. Blocking (store calls): run it in a thread."""
    cfg = rt.settings.trainer
    collection, version = parse_dataset(request.dataset)
    prefix = f"datasets/{collection}/{version}/"
    if not rt.store.exists(prefix + "manifest.json"):
        raise ValueError(f"unknown data set {request.dataset!r}: no {prefix}manifest.json in "
                         f"the store (build one with syllabus dataset build)")
    manifest_bytes = rt.store.get(prefix + "manifest.json")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError as exc:  # UnicodeDecodeError included
        raise ValueError(f"data set {request.dataset!r}: {prefix}manifest.json is not valid "
                         f"JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"data set {request.dataset!r}: {prefix}manifest.json must be a JSON "
                         f"object, got {type(manifest).__name__}")
    if not rt.store.exists(prefix + "train.jsonl"):
        raise ValueError(f"data set {request.dataset!r} has no train.jsonl")
    hp = hyperparameters(cfg.hyperparameters, request.hyperparameters)
    if request.method != "lora" and any(k.startswith("lora_") for k in request.hyperparameters):
        raise ValueError(f"bad hyper-parameters: "
                         f"{sorted(k for k in request.hyperparameters if k.startswith('lora_'))}"
                         f" apply to method 'lora', not {request.method!r}")
    base_kind, base_ref = _base_model(rt, request.base_model)
    nproc, backend = _devices(rt, request, hp)
    if request.nodes > 1 and not cfg.master_addr:
        raise ValueError(f"the request asks for {request.nodes} nodes; set trainer.master_addr "
                         f"(the address the other nodes reach this one at)")
    return Plan(request=request, model_id=model_id_for(request.job_id, request.dataset,
                                                       request.method),
                collection=collection, version=version, dataset_prefix=prefix,
                manifest=manifest, manifest_bytes=manifest_bytes, hp=hp, base_kind=base_kind,
                base_ref=base_ref, nproc=nproc, backend=backend)


def _check_rows(path: Path) -> int:
    """Every row parses into a training example (the tokenizer comes later, in the worker);
    a bad one raises ``DataError`` naming the file and line."""
    n = 0
    for where, row in read_rows(path):
        row_to_example(row, where)
        n += 1
    return n


def _download_base(rt: Runtime, prefix: str, base: Path) -> None:
    """The base model's files under ``base``: every listed key must be a valid store key
    under ``prefix`` whose file lands inside ``base``; each file is written to a ``.tmp``
    and renamed, so a file left by a killed attempt is always complete."""
    root = base.resolve()
    for key in rt.store.list(prefix):
        try:
            validate_key(key)
        except InvalidKey as exc:
            raise ValueError(f"base model {prefix!r}: the store lists an unsafe key: "
                             f"{exc}") from None
        rel = key[len(prefix):]
        target = (base / rel).resolve()
        if not key.startswith(prefix) or not rel or not target.is_relative_to(root) \
                or target == root:
            raise ValueError(f"base model {prefix!r}: the store lists {key!r}, which is not "
                             f"a file under {prefix}")
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(rt.store.get(key))
        tmp.replace(target)


def _prepare(rt: Runtime, plan: Plan, job_dir: Path) -> JobSpec:
    """Download the data set, the base model and the last checkpoint into ``job_dir``."""
    data = job_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ("train.jsonl", "eval.jsonl"):
        key = plan.dataset_prefix + name
        if rt.store.exists(key):
            (data / name).write_bytes(rt.store.get(key))
            files[name] = data / name
    if _check_rows(files["train.jsonl"]) == 0:
        raise DataError(f"data set {plan.request.dataset!r}: train.jsonl has no rows")
    if "eval.jsonl" in files:
        _check_rows(files["eval.jsonl"])
    if plan.base_kind == "store":
        base = job_dir / "base"
        base.mkdir(exist_ok=True)
        _download_base(rt, plan.base_ref, base)
    else:
        base = Path(plan.base_ref)
    resume = None
    step = latest_checkpoint(rt.store, plan.model_id)
    if step is not None:
        resume = download_checkpoint(rt.store, plan.model_id, step,
                                     job_dir / "resume" / f"step-{step}")
        saved = json.loads((resume / STATE_FILE).read_text()).get("world_size")
        world = plan.nproc * plan.request.nodes
        if saved is not None and int(saved) != world:
            raise ValueError(world_size_mismatch(step, int(saved), world))
        log.info("%s resumes from the checkpoint at step %d", plan.model_id, step)
    out = job_dir / "out"
    shutil.rmtree(out, ignore_errors=True)  # a crashed attempt's leftovers
    out.mkdir(parents=True)
    return JobSpec(job_id=plan.request.job_id, model_id=plan.model_id,
                   method=plan.request.method, base_model=base,
                   train_file=files["train.jsonl"], eval_file=files.get("eval.jsonl"),
                   dataset_format=str(plan.manifest.get("format", "")), out_dir=out,
                   resume_from=resume, backend=plan.backend, hp=plan.hp)


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and math.isfinite(float(v))}


async def run_job(rt: Runtime, request: TrainingRequested, *, deliveries: int = 1) -> None:
    """Run one training request to its end: completed, failed, or (a crash with retries
    left) an exception, so the bus redelivers it."""
    cfg = rt.settings.trainer
    job = request.job_id
    model_id = model_id_for(job, request.dataset, request.method)
    prefix = model_prefix(model_id)
    if await rt.to_thread(rt.store.exists, prefix + RECORD_FILE):
        record = json.loads(await rt.to_thread(rt.store.get, prefix + RECORD_FILE))
        if (why := _request_mismatch(job, model_id, record.get("request", {}),
                                     request)) is not None:
            log.warning("job %s refused: %s", job, why)
            TRAINING_JOBS.labels(outcome="invalid").inc()
            await rt.bus.publish(TrainingFailed(job_id=job, reason=why))
            return
        log.info("job %s: %s is already complete in the store", job, prefix)
        TRAINING_JOBS.labels(outcome="already_done").inc()
        await rt.bus.publish(TrainingCompleted(job_id=job, model_id=model_id,
                                               store_prefix=prefix, dataset=request.dataset,
                                               metrics=_finite(record.get("metrics", {}))))
        return
    async def refuse(reason: str) -> None:
        log.warning("job %s refused: %s", job, reason)
        TRAINING_JOBS.labels(outcome="invalid").inc()
        await rt.bus.publish(TrainingFailed(job_id=job, reason=reason))

    # one job id, one request: a different request under a used job id would otherwise
    # resume (or report) the other request's model
    if await rt.to_thread(rt.store.exists, prefix + REQUEST_FILE):
        stored = json.loads(await rt.to_thread(rt.store.get, prefix + REQUEST_FILE))
        if (why := _request_mismatch(job, model_id, stored, request)) is not None:
            await refuse(why)
            return
    try:
        plan = await rt.to_thread(plan_job, rt, request)
    except ValueError as exc:
        await refuse(str(exc))
        return
    await rt.to_thread(rt.store.put, prefix + REQUEST_FILE,
                       request.model_dump_json(indent=2).encode(),
                       content_type="application/json")

    job_dir = Path(cfg.work_dir).expanduser().resolve() / model_id
    try:
        spec = await rt.to_thread(_prepare, rt, plan, job_dir)
    except DataError as exc:
        await refuse(f"bad data set row: {exc}")
        return
    except ValueError as exc:
        await refuse(str(exc))
        return
    spec_path = job_dir / "spec.json"
    spec_path.write_text(spec.model_dump_json(indent=2))
    cmd = torchrun_command(spec_path, nproc=plan.nproc, nnodes=request.nodes,
                           torchrun=cfg.torchrun, master_addr=cfg.master_addr,
                           master_port=cfg.master_port,
                           rendezvous_timeout=cfg.rendezvous_timeout)
    if request.nodes > 1:
        # the service starts node 0 only; the other nodes must be started by the operator
        # or the cluster (README "Several nodes")
        for i, line in enumerate(other_node_commands(
                spec_path, nproc=plan.nproc, nnodes=request.nodes, torchrun=cfg.torchrun,
                master_addr=cfg.master_addr, master_port=cfg.master_port,
                rendezvous_timeout=cfg.rendezvous_timeout), 1):
            log.info("job %s: waiting up to %d s for node %d; start it with: %s", job,
                     cfg.rendezvous_timeout, i, line)
    out_dir = (job_dir / "out").resolve()
    ckpt_dir = out_dir / "checkpoints"

    uploads: list[asyncio.Task] = []
    lock = asyncio.Lock()
    started: dict[str, Any] = {}
    ckpt_prefix = checkpoint_prefix(model_id)

    async def upload_checkpoint(step: int, folder: Path) -> None:
        async with lock:  # one at a time, in step order
            await rt.to_thread(upload_folder, rt.store, folder, f"{ckpt_prefix}step-{step}/",
                               last=STATE_FILE)
            await rt.to_thread(shutil.rmtree, folder, True)
        TRAINING_CHECKPOINTS.labels(model_id=model_id).inc()
        log.info("job %s: checkpoint at step %d is in the store", job, step)

    async def on_event(ev: dict[str, Any]) -> None:
        kind = ev["event"]
        if kind == "start":
            started.update(ev)
            log.info("job %s: %d steps on %d process(es), %s%s", job, ev["total_steps"],
                     ev["world_size"], f"resuming at step {ev['start_step']}"
                     if ev["start_step"] else "from the start",
                     f", gradient checkpointing in {ev['checkpointed_layers']} layer(s)"
                     if ev.get("checkpointed_layers") else "")
        elif kind == "progress":
            status["current"].update({k: ev.get(k) for k in (
                "step", "total_steps", "loss", "tokens_per_second")})
            if ev.get("eval_loss") is not None:
                status["current"]["eval_loss"] = ev["eval_loss"]
            labels = {"model_id": model_id}
            TRAINING_STEP.labels(**labels).set(ev["step"])
            TRAINING_LOSS.labels(**labels).set(ev["loss"])
            TRAINING_LEARNING_RATE.labels(**labels).set(ev["learning_rate"])
            TRAINING_TOKENS_PER_SECOND.labels(**labels).set(ev["tokens_per_second"])
            if ev.get("eval_loss") is not None:
                TRAINING_EVAL_LOSS.labels(**labels).set(ev["eval_loss"])
            if ev.get("gpu_memory_bytes") is not None:
                TRAINING_GPU_MEMORY.labels(**labels).set(ev["gpu_memory_bytes"])
            try:
                await rt.bus.publish(TrainingProgress(
                    job_id=job, step=ev["step"], total_steps=ev["total_steps"],
                    epoch=ev["epoch"], loss=ev["loss"], eval_loss=ev.get("eval_loss"),
                    learning_rate=ev["learning_rate"],
                    tokens_per_second=ev["tokens_per_second"],
                    gpu_memory_bytes=ev.get("gpu_memory_bytes")))
            except Exception as exc:  # a lost progress event must not stop the training
                log.warning("job %s: progress at step %s not published: %s", job, ev["step"],
                            exc)
        elif kind == "checkpoint":
            # only this job's own checkpoint folders are uploaded (and then removed)
            folder = Path(str(ev.get("path", ""))).resolve()
            step = ev.get("step")
            if not (isinstance(step, int) and folder == ckpt_dir / f"step-{step}"):
                log.warning("job %s: ignored a checkpoint event for %s (step %r): not %s/"
                            "step-<step>", job, ev.get("path"), step, ckpt_dir)
                return
            uploads.append(asyncio.create_task(upload_checkpoint(step, folder)))

    status = job_status(rt)
    status["current"] = {"job_id": job, "model_id": model_id, "dataset": request.dataset,
                         "method": request.method, "processes": plan.nproc * request.nodes,
                         "backend": plan.backend, "step": 0, "total_steps": None,
                         "loss": None, "eval_loss": None, "tokens_per_second": None,
                         "started": time.time()}
    t0 = time.perf_counter()
    TRAINING_ACTIVE.inc()
    try:
        result = await run_worker(cmd, cwd=job_dir, env=worker_env(), on_event=on_event,
                                  tail_lines=cfg.log_tail_lines, label=f"[{model_id}] ")
        if uploads:
            await asyncio.gather(*uploads)
    except BaseException:
        for task in uploads:
            task.cancel()
        raise
    finally:
        TRAINING_ACTIVE.dec()
        TRAINING_SECONDS.observe(time.perf_counter() - t0)
        status["current"] = None

    final_dir = Path(str((result.done or {}).get("path", ""))).resolve()
    if result.returncode == 0 and result.done is not None and final_dir != out_dir / "final":
        result.errors.insert(0, f"the worker reported its model at {final_dir}, not "
                                f"{out_dir / 'final'}")
        result.done = None
    if result.returncode != 0 or result.done is None:
        reason = (result.errors[0] if result.errors else
                  f"the worker exited with code {result.returncode}")
        if result.returncode == 0 and not result.errors:
            reason = "the worker exited without reporting a finished model"
        if request.nodes > 1 and not result.ranks:
            reason = (f"the other {request.nodes - 1} node(s) did not join the rendezvous at "
                      f"{cfg.master_addr}:{cfg.master_port} within {cfg.rendezvous_timeout} s "
                      f"(trainer.rendezvous_timeout); this service starts node 0 only: run "
                      f"the logged torchrun command on each other node, or use the "
                      f"Kubeflow TrainJob in deploy/ ({reason})")
        if deliveries <= cfg.crash_retries:
            raise RuntimeError(f"training worker failed ({reason}); relaunching from the last "
                               f"checkpoint")
        status["last"] = {"job_id": job, "model_id": model_id, "outcome": "failed",
                          "reason": reason}
        log.error("job %s failed: %s", job, reason)
        TRAINING_JOBS.labels(outcome="failed").inc()
        await rt.bus.publish(TrainingFailed(job_id=job, reason=reason,
                                            log_tail=result.log_tail))
        return

    done = result.done
    metrics = _finite(done.get("metrics", {}))
    record = {
        "job_id": job, "model_id": model_id, "dataset": request.dataset,
        "base_model": request.base_model, "method": request.method,
        "hyperparameters": plan.hp.model_dump(mode="json"),
        "request": request.model_dump(mode="json"),
        "manifest_key": plan.dataset_prefix + "manifest.json",
        "manifest_sha256": sha256_hex(plan.manifest_bytes),
        "backend": plan.backend, "world_size": started.get("world_size"),
        "multitask": started.get("multitask", False), "metrics": metrics,
        "checkpointed_layers": started.get("checkpointed_layers", 0),
        "history": done.get("history", []), "ranks": done.get("ranks", []),
    }
    card = model_card(model_id=model_id, record=record, manifest=plan.manifest)
    await rt.to_thread(upload_model, rt.store, final_dir, model_id, card=card,
                       manifest_bytes=plan.manifest_bytes, record=record)
    if not cfg.keep_work_dir:
        await rt.to_thread(shutil.rmtree, job_dir, True)
    TRAINING_JOBS.labels(outcome="completed").inc()
    status["last"] = {"job_id": job, "model_id": model_id, "outcome": "completed",
                      "store_prefix": prefix, "metrics": metrics}
    log.info("job %s: model %s is in the store (loss %.4f -> %.4f)", job, prefix,
             metrics.get("train_loss_first", math.nan), metrics.get("train_loss_last", math.nan))
    await rt.bus.publish(TrainingCompleted(job_id=job, model_id=model_id, store_prefix=prefix,
                                           dataset=request.dataset, metrics=metrics))


def build_router(rt: Runtime) -> NatsRouter:
    # the deployment's default hyper-parameters must be valid when the service starts
    cfg = rt.settings.trainer
    try:
        hyperparameters(cfg.hyperparameters, {})
    except ValueError as exc:
        raise ValueError(f"trainer.hyperparameters: {exc}") from None
    # the last crash must be reported on a delivery the bus still hands to the handler:
    # otherwise the request is dead-lettered with no TrainingFailed
    if cfg.crash_retries >= cfg.max_deliver:
        raise ValueError(f"trainer.crash_retries ({cfg.crash_retries}) must be below "
                         f"trainer.max_deliver ({cfg.max_deliver}): the job is relaunched on "
                         f"redelivery, and the delivery after the last retry reports the "
                         f"failure")
    router = NatsRouter()
    bus = trainer_bus(rt)

    @bus.consumer(router, service=SERVICE, subject=TRAINING_REQUESTED, model=TrainingRequested,
                  concurrency=1)
    async def train(request: TrainingRequested, ctx: HandlerContext) -> None:
        """Fine-tune the requested model; publish progress, then completed or failed."""
        await run_job(rt, request, deliveries=ctx.deliveries)

    return router
