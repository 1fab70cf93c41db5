"""Launching the worker under torchrun, and following its output.

``torchrun_command`` builds the command line:

* one node: ``--standalone`` (a local rendezvous on a free port), ``--nproc_per_node=N``;
* several nodes: a static rendezvous on ``trainer.master_addr:master_port`` with this
  node as ``--node_rank=0`` (its rank 0 writes the checkpoints this service uploads). The
  service does NOT start the other nodes: something else must run the same command with
  ``--node_rank=1..M-1`` on each of them (``other_node_commands``, which the service logs),
  within ``trainer.rendezvous_timeout`` seconds, and every node must see the job folder
  (``work_dir`` on a shared volume), since the worker reads its spec, data and base model
  from there. If they do not join in time, torchrun gives up and the job fails with a
  ``TrainingFailed`` that says so. Replicas of ``syllabus serve trainer`` never act as the
  other nodes (each takes whole jobs of its own); the multi-node path for clusters is the
  Kubeflow TrainJob in ``deploy/``.

``run_worker`` starts the command in its own process group, streams every output line
into the service log (``syllabus.trainer.worker``), hands the ``MARKER`` lines to the
caller as events, keeps the last lines for a failure report, and on cancellation (the
service is stopping) terminates the whole group, so no training process outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._config import MARKER

__all__ = ["WORKER_MODULE", "WorkerResult", "other_node_commands", "parse_event", "run_worker",
           "torchrun_command", "worker_env"]

WORKER_MODULE = "syllabus.services.trainer._worker"
log = logging.getLogger("syllabus.trainer.worker")


def _torchrun(torchrun: str) -> list[str]:
    return shlex.split(torchrun) if torchrun.strip() else \
        [sys.executable, "-m", "torch.distributed.run"]


def torchrun_command(spec_path: Path, *, nproc: int, nnodes: int = 1, torchrun: str = "",
                     master_addr: str | None = None, master_port: int = 29500,
                     node_rank: int = 0, rendezvous_timeout: int = 600) -> list[str]:
    cmd = [*_torchrun(torchrun), f"--nproc_per_node={nproc}", f"--nnodes={nnodes}"]
    if nnodes == 1:
        cmd.append("--standalone")
    else:
        if not master_addr:
            raise ValueError("a job on several nodes needs trainer.master_addr (the address "
                             "the other nodes reach this one at)")
        cmd += [f"--node_rank={node_rank}", f"--master_addr={master_addr}",
                f"--master_port={master_port}", f"--rdzv_conf=timeout={rendezvous_timeout}"]
    cmd += ["--max_restarts=0", "-m", WORKER_MODULE, str(spec_path)]
    return cmd


def other_node_commands(spec_path: Path, *, nproc: int, nnodes: int, torchrun: str = "",
                        master_addr: str | None = None, master_port: int = 29500,
                        rendezvous_timeout: int = 600) -> list[str]:
    """The command line each other node runs to join a multi-node job."""
    return [shlex.join(torchrun_command(spec_path, nproc=nproc, nnodes=nnodes,
                                        torchrun=torchrun, master_addr=master_addr,
                                        master_port=master_port, node_rank=r,
                                        rendezvous_timeout=rendezvous_timeout))
            for r in range(1, nnodes)]


#: the variables the worker inherits: the system's basics and what Python, torch, CUDA,
#: NCCL, the math libraries and transformers read; nothing else (no store, bus or cloud
#: credentials: the worker touches only local files)
_ENV_NAMES = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
              "TMPDIR", "TMP", "TEMP", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "CONDA_PREFIX",
              "XDG_CACHE_HOME", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK",
              "LOCAL_RANK", "NODE_RANK"}
_ENV_PREFIXES = ("LC_", "CUDA", "NCCL_", "NVIDIA_", "OMP_", "MKL_", "KMP_", "OPENBLAS_",
                 "TORCH", "PYTORCH_", "GLOO_", "TP_", "HF_", "TRANSFORMERS_", "TOKENIZERS_",
                 "PYTHON")
#: never passed, even under an allowed prefix (HF_TOKEN, ...)
_ENV_SECRET = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|API_?KEY|"
                         r"ACCESS_?KEY|PRIVATE_?KEY)(_|$)")


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """An allow-list of the service's environment (``_ENV_NAMES``, ``_ENV_PREFIXES``; no
    ``SYLLABUS_*``, ``AWS_*``, NATS or token variables: the worker needs no credentials),
    offline, unbuffered; ``extra`` on top."""
    env = {k: v for k, v in os.environ.items()
           if (k in _ENV_NAMES or k.startswith(_ENV_PREFIXES)) and not _ENV_SECRET.search(k)}
    env.update({"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false"})
    env.update(extra or {})
    return env


@dataclass
class WorkerResult:
    returncode: int
    tail: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    done: dict[str, Any] | None = None
    ranks: set[int] = field(default_factory=set)

    @property
    def log_tail(self) -> str:
        return "\n".join(self.tail)


def parse_event(line: str) -> dict[str, Any] | None:
    """The event of a line that starts with ``MARKER`` (the worker prints each one whole,
    flushed); anything else, e.g. a log line quoting a marker, is plain output."""
    if not line.startswith(MARKER):
        return None
    try:
        event = json.loads(line[len(MARKER):])
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


async def run_worker(cmd: list[str], *, cwd: Path, env: dict[str, str],
                     on_event: Callable[[dict[str, Any]], Awaitable[None]],
                     tail_lines: int = 80, label: str = "") -> WorkerResult:
    log.info("%slaunching: %s", label, shlex.join(cmd))
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=str(cwd), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True, limit=1 << 22)
    tail: deque[str] = deque(maxlen=tail_lines)
    result = WorkerResult(returncode=-1)
    try:
        assert proc.stdout is not None
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                break
            line = raw.decode("utf-8", "replace").rstrip("\n")
            event = parse_event(line)
            if event is None:
                tail.append(line)
                log.info("%s%s", label, line)
                continue
            kind = event["event"]
            if kind == "error":
                result.errors.append(str(event.get("message", "")))
                tail.append(f"[rank {event.get('rank')}] error: {event.get('message')}")
            elif kind == "rank":
                result.ranks.add(int(event["rank"]))
            elif kind == "done":
                result.done = event
            elif kind == "warning":
                tail.append(f"warning: {event.get('message')}")
                log.warning("%s%s", label, event.get("message"))
            await on_event(event)
        result.returncode = await proc.wait()
    except BaseException:
        await _stop(proc)
        raise
    result.tail = list(tail)
    return result


async def _stop(proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """SIGTERM to the worker's process group (torchrun forwards it to every rank), then
    SIGKILL after ``grace`` seconds."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
