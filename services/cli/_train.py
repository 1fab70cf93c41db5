"""``syllabus train``: publish a ``TrainingRequested``; with ``--wait``, follow the job.

A local base-model folder is uploaded to the store first (``base-models/<name>-<sha256 of
its files>/``), so the trainer service reads base models from the store like everything
else. (``base-models/`` is a key prefix DESIGN.md's table does not list: content-addressed,
like the other keys.)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from syllabus.contracts import (
    TRAINING_COMPLETED,
    TRAINING_FAILED,
    TRAINING_PROGRESS,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
    sha256_hex,
)

from ._common import key_value_pairs

__all__ = ["follow_job", "train_command", "upload_base_model", "upload_files"]

_SUBJECTS = {TRAINING_PROGRESS: TrainingProgress, TRAINING_COMPLETED: TrainingCompleted,
             TRAINING_FAILED: TrainingFailed}


def upload_base_model(store, folder: Path) -> str:
    """Put a local model folder to ``base-models/<hash>/`` (its files' names and bytes);
    returns the store prefix. Files already there are not written again."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is not a model folder: no config.json")
    digest = sha256_hex("".join(f"{p.relative_to(folder).as_posix()}:"
                                f"{sha256_hex(p.read_bytes())}\n" for p in files))
    prefix = f"base-models/{folder.name[:40] or 'model'}-{digest[:16]}/"
    return upload_files(store, folder, prefix, last="config.json")


def upload_files(store, folder: Path, prefix: str, *, last: str | None = None) -> str:
    """Put every file of ``folder`` under ``prefix`` (``last``, a relative name, after the
    others); files already there are not written again."""
    files = sorted((p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: (p.relative_to(folder).as_posix() == last, str(p)))
    for p in files:
        key = prefix + p.relative_to(folder).as_posix()
        if not store.exists(key):
            with p.open("rb") as fh:
                store.put(key, fh, length=p.stat().st_size)
    return prefix


async def follow_job(bus, job_id: str, *, on_progress: Callable[[TrainingProgress], None]
                     | None = None, timeout: float | None = None
                     ) -> TrainingCompleted | TrainingFailed:
    """Read ``syllabus.training.>`` from the start of the stream (an ordered consumer) until
    the job's ``TrainingCompleted`` or ``TrainingFailed``."""
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import ConsumerConfig, DeliverPolicy

    sub = await bus.js.subscribe("syllabus.training.>", ordered_consumer=True,
                                 config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            left = 5.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"training job {job_id} did not finish in {timeout}s")
            try:
                msg = await sub.next_msg(timeout=min(left, 5.0))
            except (NatsTimeout, TimeoutError):
                continue
            model = _SUBJECTS.get(msg.subject)
            if model is None:
                continue
            try:
                event = model.model_validate_json(msg.data)
            except ValueError:
                continue
            if event.job_id != job_id:
                continue
            if isinstance(event, TrainingProgress):
                if on_progress is not None:
                    on_progress(event)
                continue
            return event
    finally:
        await sub.unsubscribe()


class ProgressBar:
    """A rich progress bar fed by ``TrainingProgress`` events."""

    def __init__(self, progress: Progress, label: str = "training") -> None:
        self.progress = progress
        self.task = progress.add_task(label, total=None, loss="")

    def __call__(self, ev: TrainingProgress) -> None:
        loss = f"loss {ev.loss:.4f}" if ev.loss is not None else ""
        if ev.eval_loss is not None:
            loss += f", eval {ev.eval_loss:.4f}"
        if ev.tokens_per_second:
            loss += f", {ev.tokens_per_second:,.0f} tok/s"
        self.progress.update(self.task, completed=ev.step, total=ev.total_steps, loss=loss)


def progress_columns() -> list:
    return [TextColumn("[bold]{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[loss]}")]


@click.command("train")
@click.option("--dataset", "-d", required=True, metavar="COLLECTION/VERSION",
              help="The data set version to train on (syllabus dataset build prints it).")
@click.option("--base-model", "-m", required=True, metavar="PATH|KEY",
              help="A local model folder (uploaded to the store first), a store prefix "
                   "holding one (e.g. base-models/tiny-0123abcd/), or a GGUF file or the "
                   "key gemma3-270m (converted to a transformers model once and cached "
                   "in the store under base-models/).")
@click.option("--method", type=click.Choice(["full", "lora"]), default="lora",
              show_default=True, help="Full fine-tuning or LoRA (peft).")
@click.option("--gpus", type=click.IntRange(min=0), default=0, show_default=True,
              help="GPUs per node (one process each, NCCL); 0 trains on CPUs with gloo.")
@click.option("--cpu-processes", type=click.IntRange(min=1), default=None,
              help="Processes per node when --gpus 0 (default: trainer settings, 1).")
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Nodes (needs trainer.master_addr on the trainer).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Optimizer steps in all (overrides --epochs).")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True),
              default=None, help="Peak learning rate (default 2e-4 LoRA, 2e-5 full).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Examples per process per micro-step.")
@click.option("--max-seq-len", type=click.IntRange(min=8), default=None)
@click.option("--strategy", type=click.Choice(["ddp", "fsdp"]), default=None)
@click.option("--schedule", type=click.Choice(["cosine", "linear", "constant"]), default=None)
@click.option("--alpha", type=click.FloatRange(0, 1), default=None,
              help="Step-by-step data sets: weight of L(predict) (the rest: L(explain)).")
@click.option("--set", "extra", multiple=True, callback=key_value_pairs, metavar="KEY=VALUE",
              help="Any other hyper-parameter (warmup_ratio, grad_accum, lora_r, "
                   "lora_adapter=keep, gradient_checkpointing=true, checkpoint_every, ...).")
@click.option("--job-id", default=None,
              help="Job id (default: a new one). Sending the same id again resumes or "
                   "reports that job instead of starting another.")
@click.option("--wait", is_flag=True, help="Show progress until the job completes or fails.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after SECONDS.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def train_command(dataset: str, base_model: str, method: str, gpus: int,
                  cpu_processes: int | None, nodes: int, epochs: float | None,
                  max_steps: int | None, learning_rate: float | None, batch_size: int | None,
                  max_seq_len: int | None, strategy: str | None, schedule: str | None,
                  alpha: float | None, extra: dict[str, Any], job_id: str | None, wait: bool,
                  timeout: float | None, as_json: bool) -> None:
    """Ask the trainer service to fine-tune BASE_MODEL on a data set version.

    Publishes a TrainingRequested on the configured NATS (SYLLABUS_NATS__URL); a trainer
    (syllabus serve trainer) picks it up. The model lands in the store under
    models/<model_id>/. With --wait, shows a progress bar and exits 0 when the job
    completed, 1 when it failed (with the reason and the end of the worker's log).
    """
    from ..runtime import Runtime
    from ..trainer import hyperparameters, model_id_for, parse_dataset
    from ._base_model import gguf_base_model, is_gguf_ref
    from ._common import cli_settings

    try:
        parse_dataset(dataset)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--dataset") from None
    hp = {k: v for k, v in {"epochs": epochs, "max_steps": max_steps,
                            "learning_rate": learning_rate, "batch_size": batch_size,
                            "max_seq_len": max_seq_len, "strategy": strategy,
                            "schedule": schedule, "alpha": alpha,
                            "cpu_processes": cpu_processes}.items() if v is not None}
    hp.update(extra)
    try:
        hyperparameters({}, hp)  # the same check the service makes, before anything is sent
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--set") from None
    settings = cli_settings()
    # Departure from DESIGN.md ("every id is content-derived"): without --job-id a job id is
    # new each time, so running the same command twice trains twice (a content-derived id
    # would make the second request a JetStream duplicate, silently ignored). --job-id
    # gives the idempotent behaviour: the same id resumes or reports that job.
    job = job_id or f"{dataset.split('/')[0]}-{time.strftime('%Y%m%dT%H%M%S')}-" \
                    f"{uuid.uuid4().hex[:6]}"
    console = Console(stderr=True)

    async def go() -> TrainingCompleted | TrainingFailed | None:
        rt = Runtime.create(settings, client_name="syllabus-train")
        await rt.bus.start()
        try:
            base = base_model
            local = Path(base_model).expanduser()
            if is_gguf_ref(base_model):
                console.print(f"base model {base_model}: converting the GGUF file to a "
                              "transformers model (once; cached in the store)")
                try:
                    base = await rt.to_thread(gguf_base_model, rt.store, base_model)
                except ValueError as exc:
                    raise click.BadParameter(str(exc), param_hint="--base-model") from None
                console.print(f"base model {base_model} is {base} in the store")
            elif local.is_dir():
                base = await rt.to_thread(upload_base_model, rt.store, local)
                console.print(f"base model {local} uploaded to the store as {base}")
            request = TrainingRequested(job_id=job, dataset=dataset, base_model=base,
                                        method=method, gpus=gpus, nodes=nodes,
                                        hyperparameters=hp)
            await rt.bus.publish(request)
            console.print(f"training job {job} requested: model "
                          f"models/{model_id_for(job, dataset, method)}/")
            if not wait:
                return None
            with Progress(*progress_columns(), console=console) as progress:
                return await follow_job(rt.bus, job, on_progress=ProgressBar(progress),
                                        timeout=timeout)
        finally:
            await rt.close()

    try:
        outcome = asyncio.run(go())
    except (OSError, TimeoutError, ValueError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    if outcome is None:
        if as_json:
            click.echo(json.dumps({"job_id": job,
                                   "model_id": model_id_for(job, dataset, method)}))
        return
    if as_json:
        click.echo(json.dumps({"outcome": "completed" if isinstance(outcome, TrainingCompleted)
                               else "failed", **outcome.model_dump(mode="json")}, indent=2))
    elif isinstance(outcome, TrainingCompleted):
        m = outcome.metrics
        click.echo(f"completed: {outcome.store_prefix} (loss {m.get('train_loss_first', 0):.4f}"
                   f" -> {m.get('train_loss_last', 0):.4f}, eval loss "
                   f"{m.get('eval_loss', float('nan')):.4f}, "
                   f"{m.get('tokens_per_second', 0):,.0f} tokens/s)")
    else:
        click.echo(f"failed: {outcome.reason}", err=True)
        if outcome.log_tail:
            click.echo(outcome.log_tail, err=True)
    if isinstance(outcome, TrainingFailed):
        raise SystemExit(1)
