"""Launching the worker under torchrun, and following its output.

``torchrun_command`` builds the command line:

* one node: ``--standalone`` (a local rendezvous on a free port), ``--nproc_per_node=N``;
* several nodes: a static rendezvous on ``trainer.master_addr:master_port`` with this
  node as ``--node_rank=0`` (its rank 0 writes the checkpoints this service uploads). The
  other nodes run the same command with ``--node_rank=1..M-1``
  (``other_node_commands``), and every node must see the job folder (``work_dir`` on a
  shared volume), since the worker reads its spec, data and base model from there.

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
import shlex
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._config import MARKER

__all__ = ["WORKER_MODULE", "WorkerResult", "other_node_commands", "run_worker",
           "torchrun_command", "worker_env"]

WORKER_MODULE = "syllabus.services.trainer._worker"
log = logging.getLogger("syllabus.trainer.worker")


def _torchrun(torchrun: str) -> list[str]:
    return shlex.split(torchrun) if torchrun.strip() else \
        [sys.executable, "-m", "torch.distributed.run"]


def torchrun_command(spec_path: Path, *, nproc: int, nnodes: int = 1, torchrun: str = "",
                     master_addr: str | None = None, master_port: int = 29500,
                     node_rank: int = 0) -> list[str]:
    cmd = [*_torchrun(torchrun), f"--nproc_per_node={nproc}", f"--nnodes={nnodes}"]
    if nnodes == 1:
        cmd.append("--standalone")
    else:
        if not master_addr:
            raise ValueError("a job on several nodes needs trainer.master_addr (the address "
                             "the other nodes reach this one at)")
        cmd += [f"--node_rank={node_rank}", f"--master_addr={master_addr}",
                f"--master_port={master_port}"]
    cmd += ["--max_restarts=0", "-m", WORKER_MODULE, str(spec_path)]
    return cmd


def other_node_commands(spec_path: Path, *, nproc: int, nnodes: int, torchrun: str = "",
                        master_addr: str | None = None, master_port: int = 29500) -> list[str]:
    """The command line each other node runs to join a multi-node job."""
    return [shlex.join(torchrun_command(spec_path, nproc=nproc, nnodes=nnodes,
                                        torchrun=torchrun, master_addr=master_addr,
                                        master_port=master_port, node_rank=r))
            for r in range(1, nnodes)]


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The service's environment less every ``SYLLABUS_*`` variable (the worker needs no
    bus or store credentials), offline, unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
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
    at = line.find(MARKER)
    if at < 0:
        return None
    try:
        event = json.loads(line[at + len(MARKER):])
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
