"""Checkpoints: written by the worker to a local folder, moved to the store by the service.

A checkpoint folder ``step-<n>/`` holds

* ``model.safetensors``: the trainable weights, gathered in full (for LoRA the adapter
  only; DDP and FSDP give the same file);
* ``optimizer.pt`` (full, keyed by parameter name), ``scheduler.pt``;
* ``rng-<rank>.pt``: each process's Python and torch (and CUDA) RNG states;
* ``trainer_state.json``: the step, epoch, loss history and token count, written last,
  so a folder with it is complete.

In the store it lives at ``models/<model_id>/checkpoints/step-<n>/<file>``; the service
uploads ``trainer_state.json`` last there too, and resumes from the highest complete step.

A checkpoint resumes only with the world size that saved it (``trainer_state.json``'s
``world_size``): the data order and the RNG streams are per process, so another world
size could not continue the same run. The service refuses such a job with a clear
``TrainingFailed``, and ``load_checkpoint`` checks it again.

The ``.pt`` files are read with ``torch.load(weights_only=True)`` (tensors, numbers,
strings, lists, tuples, dicts and None only): a file in the store can never run code in the
worker.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

__all__ = [
    "STATE_FILE",
    "checkpoint_prefix",
    "download_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "upload_folder",
    "world_size_mismatch",
]

STATE_FILE = "trainer_state.json"
_STEP = re.compile(r"^step-(\d+)$")


def checkpoint_prefix(model_id: str) -> str:
    return f"models/{model_id}/checkpoints/"


# --- worker side (inside torchrun) ------------------------------------------------------


def _options(*, trainable_only: bool):
    """Full (gathered, unsharded) state dicts on the CPU; LoRA: the trainable weights only."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True,
                            ignore_frozen_params=trainable_only)


def save_checkpoint(folder: Path, *, model, optimizer, scheduler, state: dict[str, Any],
                    trainable_only: bool) -> None:
    """Collective: every rank calls it. Rank 0 writes the model, optimizer and scheduler;
    every rank its RNG state; rank 0 writes ``trainer_state.json`` after a barrier."""
    import torch
    import torch.distributed as dist
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import get_state_dict

    rank = dist.get_rank()
    folder.mkdir(parents=True, exist_ok=True)
    msd, osd = get_state_dict(model, optimizer, options=_options(trainable_only=trainable_only))
    version, internal, gauss = random.getstate()
    rng = {"python": [version, list(internal), gauss], "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, folder / f"rng-{rank}.pt")
    if rank == 0:
        # tied weights (embeddings and LM head) share memory: stored as two copies
        save_file({k: v.detach().clone().contiguous() for k, v in msd.items()},
                  str(folder / "model.safetensors"))
        torch.save(osd, folder / "optimizer.pt")
        torch.save(scheduler.state_dict(), folder / "scheduler.pt")
    dist.barrier()
    if rank == 0:
        tmp = folder / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(folder / STATE_FILE)
    dist.barrier()


def load_checkpoint(folder: Path, *, model, optimizer, scheduler,
                    trainable_only: bool) -> dict[str, Any]:
    """Collective: restore the weights, optimizer, scheduler and this rank's RNG; returns
    the saved ``trainer_state.json``. Every rank reads the folder (node-local copies)."""
    import torch
    import torch.distributed as dist
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = json.loads((folder / STATE_FILE).read_text())
    saved_world = state.get("world_size")
    if saved_world is not None and int(saved_world) != dist.get_world_size():
        raise ValueError(world_size_mismatch(int(state["step"]), int(saved_world),
                                             dist.get_world_size()))
    msd = load_file(str(folder / "model.safetensors"))
    osd = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # LoRA: the frozen base weights are not in the file (strict=False)
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True, strict=not trainable_only)
    set_state_dict(model, optimizer, model_state_dict=msd, optim_state_dict=osd, options=opts)
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    rng = torch.load(folder / f"rng-{dist.get_rank()}.pt", weights_only=True)
    # pickled as a list (weights_only loads lists); random.setstate wants tuples
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return state


def world_size_mismatch(step: int, saved: int, now: int) -> str:
    return (f"the checkpoint at step {step} was saved by {saved} process(es) and this job "
            f"runs {now}: a checkpoint resumes only with the same world size (the data "
            f"order and RNG streams are per process); run the job with {saved} process(es) "
            f"(gpus x nodes, or trainer.hyperparameters.cpu_processes on CPUs) or under a "
            f"new job id to start afresh")


# --- service side (the store) ----------------------------------------------------------


def upload_folder(store, folder: Path, prefix: str, *, last: str | None = None) -> list[str]:
    """Put every file under ``folder`` to ``prefix + <relative path>``; ``last`` (a file
    name) goes after all the others, as the completion marker. Returns the keys."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))
    files.sort(key=lambda p: p.name == last)
    keys = []
    for path in files:
        key = prefix + path.relative_to(folder).as_posix()
        with path.open("rb") as fh:
            store.put(key, fh, length=path.stat().st_size)
        keys.append(key)
    return keys


def latest_checkpoint(store, model_id: str) -> int | None:
    """The highest step with a complete checkpoint in the store (``trainer_state.json``)."""
    prefix = checkpoint_prefix(model_id)
    steps = set()
    for key in store.list(prefix):
        rest = key[len(prefix):]
        parts = rest.split("/")
        if len(parts) == 2 and parts[1] == STATE_FILE and (m := _STEP.match(parts[0])):
            steps.add(int(m.group(1)))
    return max(steps) if steps else None


def download_checkpoint(store, model_id: str, step: int, folder: Path) -> Path:
    prefix = f"{checkpoint_prefix(model_id)}step-{step}/"
    folder.mkdir(parents=True, exist_ok=True)
    for key in store.list(prefix):
        rel = key[len(prefix):]
        if not rel or "/" in rel:
            continue
        (folder / rel).write_bytes(store.get(key))
    return folder
