"""``syllabus run --train``: after the data set is built, train a model on it: the
``--base-model`` (Gemma 3 270M by default; LoRA, with ``BASE_MODEL_HYPERPARAMETERS``), or
with ``--base-model tiny`` a tiny one made on the spot.

The real trainer path, embedded: the trainer service's router is mounted on the run's
broker; the base model is put in the store (a GGUF converted once, under ``base-models/``;
the tiny Llama-style model with its BPE tokenizer trained on the collection's chunks), and
a ``TrainingRequested`` for the new data set version is published. The trainer launches
torchrun (gloo, two CPU processes by default), streams progress, uploads checkpoints and
the final model to ``models/<model_id>/`` in the run's store, and the report gets the
training loss curve.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from syllabus.contracts import DatasetBuilt, TrainingCompleted, TrainingRequested, content_id

from ..runtime import Runtime
from ._train import ProgressBar, follow_job, progress_columns, upload_base_model

__all__ = ["BASE_MODEL_HYPERPARAMETERS", "DEFAULT_BASE_MODEL", "RUN_HYPERPARAMETERS",
           "TINY_BASE_MODEL", "render_training",
           "train_after_run"]

#: the embedded run's defaults for a tiny model on CPUs (trainer.hyperparameters and then
#: the request win over them): a few epochs, full fine-tuning, a high learning rate
RUN_HYPERPARAMETERS: dict[str, Any] = {
    "epochs": 3, "batch_size": 8, "max_seq_len": 384, "learning_rate": 3e-3,
    "warmup_ratio": 0.1, "cpu_processes": 2, "checkpoint_every": 50, "eval_every": 0,
    "log_every": 5,
}


#: what ``syllabus run --train`` fine-tunes when ``--base-model`` names nothing. Gemma 3
#: 270M, because it is the one real model every install has (a pip package) and it answers
#: in sentences, where the tiny random model answers blank lines (token F1 0). Measured on
#: 2 cores, 2026-12-02: ``syllabus run examples/bees --train --serve`` 7 min 54 s (the gate
#: refused the model: token F1 0.143 against the base's 0.147), with ``--teacher local``
#: 15 min 38 s (deployed: 0.164 against 0.128); about 6 minutes of each are converting,
#: training and serving. ``TINY_BASE_MODEL`` ("tiny") keeps the one-minute tiny model,
#: for tests and quick looks at the pipeline.
DEFAULT_BASE_MODEL = "gemma3-270m"
TINY_BASE_MODEL = "tiny"


#: the embedded run's defaults for a real base model (``--base-model``, e.g. Gemma 3 270M)
#: on CPUs: LoRA on every linear layer, one epoch, short sequences
BASE_MODEL_HYPERPARAMETERS: dict[str, Any] = {
    "epochs": 1, "batch_size": 4, "max_seq_len": 256, "learning_rate": 2e-4,
    "warmup_ratio": 0.1, "cpu_processes": 2, "checkpoint_every": 50, "eval_every": 0,
    "log_every": 5,
}


async def _base_model_prefix(rt: Runtime, ref: str) -> str:
    """The store prefix of ``--base-model``: a GGUF file or key (converted once), a local
    folder (uploaded), or a prefix already in the store."""
    from ._base_model import gguf_base_model, is_gguf_ref

    if is_gguf_ref(ref):
        return await rt.to_thread(gguf_base_model, rt.store, ref)
    local = Path(ref).expanduser()
    if local.is_dir():
        return await rt.to_thread(upload_base_model, rt.store, local)
    prefix = ref if ref.endswith("/") else ref + "/"
    if not await rt.to_thread(rt.store.exists, prefix + "config.json"):
        raise ValueError(f"--base-model {ref!r} is not a GGUF file, a known key, a model "
                         "folder or a store prefix holding config.json")
    return prefix


def _corpus(chunks_path: Path) -> list[str]:
    from ..runtime._tiny_model import builtin_corpus

    texts = []
    if chunks_path.is_file():
        for line in chunks_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line)["text"])
    return [*builtin_corpus(), *texts]


async def train_after_run(rt: Runtime, built: DatasetBuilt, *, out: Path, run_id: str,
                          console: Console, timeout: float | None = None,
                          base_model: str | None = None,
                          job_prefix: str | None = None) -> dict[str, Any]:
    """Make the tiny model (or find ``base_model``), request training on ``built``, wait;
    the report's section. The job id is ``run-<run id>`` (each run trains), or with
    ``job_prefix`` ``<job_prefix>-<hash of the data set version, base model, method and
    hyperparameters>``: a rerun on the same data set then gets the model already trained
    (the trainer answers a finished job id with its model)."""
    from ..runtime._tiny_model import init_tiny_model

    if base_model:
        console.print(f"base model {base_model}: preparing it for the trainer")
        base = await _base_model_prefix(rt, base_model)
        hp = {**BASE_MODEL_HYPERPARAMETERS, **rt.settings.trainer.hyperparameters}
        method = "lora"
    else:
        model_dir = out / "tiny-model"
        texts = await rt.to_thread(_corpus, out / "chunks.jsonl")
        await rt.to_thread(init_tiny_model, model_dir, corpus=texts)
        base = await rt.to_thread(upload_base_model, rt.store, model_dir)
        hp = {**RUN_HYPERPARAMETERS, **rt.settings.trainer.hyperparameters}
        method = "full"
    dataset = f"{built.collection}/{built.version}"
    job_id = (f"{job_prefix}-{content_id(dataset, base, method, hp)[:16]}" if job_prefix
              else f"run-{run_id}")
    request = TrainingRequested(job_id=job_id, dataset=dataset, base_model=base,
                                method=method, gpus=0, hyperparameters=hp)
    await rt.bus.publish(request)
    with Progress(*progress_columns(), console=console) as progress:
        outcome = await follow_job(rt.bus, request.job_id, on_progress=ProgressBar(progress),
                                   timeout=timeout)
    section: dict[str, Any] = {"job_id": request.job_id, "dataset": request.dataset,
                               "base_model": base, "method": request.method}
    if isinstance(outcome, TrainingCompleted):
        m = outcome.metrics
        section.update({
            "outcome": "completed", "model_id": outcome.model_id,
            "store_prefix": outcome.store_prefix,
            "model_dir": str(out / "store" / outcome.store_prefix),
            "first_loss": m.get("train_loss_first"), "last_loss": m.get("train_loss_last"),
            "eval_loss": m.get("eval_loss"), "tokens_per_second": m.get("tokens_per_second"),
            "steps": int(m.get("steps", 0)), "processes": int(m.get("world_size", 0)),
            "metrics": m,
        })
        record = json.loads(await rt.to_thread(rt.store.get,
                                               outcome.store_prefix + "training.json"))
        section["loss_curve"] = record.get("history", [])
    else:
        section.update({"outcome": "failed", "reason": outcome.reason,
                        "log_tail": outcome.log_tail})
    return section


def render_training(console: Console, training: dict[str, Any]) -> None:
    if not training:
        return
    if training.get("outcome") != "completed":
        console.print(f"[red]training failed[/red]: {training.get('reason')}")
        return
    curve = training.get("loss_curve", [])
    shown = ", ".join(f"{s}: {v:.3f}" for s, v in curve[:: max(1, len(curve) // 8)])
    console.print(
        f"training: model {training['model_id']} ({training['method']}, "
        f"{training['steps']} steps on {training['processes']} processes): loss "
        f"{training['first_loss']:.4f} -> {training['last_loss']:.4f}"
        + (f", eval loss {training['eval_loss']:.4f}" if training.get("eval_loss") else "")
        + f", {training['tokens_per_second']:,.0f} tokens/s\n"
        f"loss curve (step: loss): {shown}\n"
        f"model: {training['model_dir']}")
