"""A training job's settings: the validated hyper-parameters, the model id, the job spec
that the service hands to the torchrun worker.

``Hyperparameters`` is the one place that knows every knob, its default and its bounds:
the request's ``hyperparameters`` are laid over ``TrainerSettings.hyperparameters`` (the
deployment's defaults) and validated here, so a typo or an out-of-range value fails the
job up front with a message naming the field, before a process is launched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from syllabus.contracts import sha256_hex

__all__ = ["DATASET_PATTERN", "MARKER", "Hyperparameters", "JobSpec", "hyperparameters", "model_id_for",
           "parse_dataset"]

#: ``<collection>/<version>`` (a version is the builder's 16 hex digits, or any safe name)
DATASET_PATTERN = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63})/([A-Za-z0-9][A-Za-z0-9._-]{0,63})$")


class Hyperparameters(BaseModel):
    """Every training knob. Unknown names are refused (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid")

    #: passes over train.jsonl (ignored when max_steps is set)
    epochs: float = Field(default=3.0, gt=0)
    #: optimizer steps in all; overrides epochs
    max_steps: int | None = Field(default=None, ge=1)
    #: peak learning rate; default 2e-4 for LoRA, 2e-5 for full fine-tuning
    learning_rate: float | None = Field(default=None, gt=0, le=1.0)
    #: examples per process per micro-step
    batch_size: int = Field(default=4, ge=1, le=4096)
    #: micro-steps per optimizer step
    grad_accum: int = Field(default=1, ge=1, le=1024)
    #: tokens per sequence; longer ones are cut (the answer must keep at least one token)
    max_seq_len: int = Field(default=1024, ge=8, le=1 << 20)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    #: warm-up as a share of the steps (warmup_steps wins when set)
    warmup_ratio: float = Field(default=0.03, ge=0.0, lt=1.0)
    warmup_steps: int | None = Field(default=None, ge=0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=1.0, ge=0.0)
    seed: int = 0
    #: ddp (default), or fsdp (shards parameters, gradients and optimizer state)
    strategy: Literal["ddp", "fsdp"] = "ddp"
    #: auto: bf16 autocast on GPUs that support it, fp32 elsewhere
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    gradient_checkpointing: bool = False
    # LoRA (method "lora")
    lora_r: int = Field(default=16, ge=1, le=4096)
    lora_alpha: float = Field(default=32.0, gt=0)
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    #: module names to adapt, or "all-linear"
    lora_target_modules: list[str] | Literal["all-linear"] = "all-linear"
    #: merge: the merged model only; keep: the merged model plus the adapter in adapter/
    lora_adapter: Literal["merge", "keep"] = "merge"
    #: step-by-step data sets: alpha * L(predict) + (1 - alpha) * L(explain) (Hsieh et al.)
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    #: optimizer steps between checkpoints (0: none but the final model)
    checkpoint_every: int = Field(default=200, ge=0)
    #: optimizer steps between evaluations on eval.jsonl (0: only at the end)
    eval_every: int = Field(default=200, ge=0)
    #: optimizer steps between progress events
    log_every: int = Field(default=10, ge=1)
    #: processes per node when the job runs on CPUs (gpus = 0)
    cpu_processes: int = Field(default=1, ge=1, le=256)

    @model_validator(mode="after")
    def _warmup_below_steps(self) -> Hyperparameters:
        if self.warmup_steps is not None and self.max_steps is not None \
                and self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below max_steps "
                             f"({self.max_steps})")
        return self

    def warmup(self, total_steps: int) -> int:
        """Warm-up steps for a job of ``total_steps``; ``ValueError`` when they would take
        the whole job (known only once the worker has counted the samples)."""
        if self.warmup_steps is None:
            return int(self.warmup_ratio * total_steps)
        if self.warmup_steps >= total_steps:
            raise ValueError(f"bad hyper-parameters: warmup_steps ({self.warmup_steps}) must "
                             f"be below the job's {total_steps} optimizer steps (epochs="
                             f"{self.epochs:g} over this data set and world size)")
        return self.warmup_steps

    def lr(self, method: str) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-4 if method == "lora" else 2e-5


def hyperparameters(defaults: dict[str, Any], request: dict[str, Any]) -> Hyperparameters:
    """The request's values over the deployment's defaults, validated. Raises ``ValueError``
    naming each bad field."""
    try:
        return Hyperparameters(**{**defaults, **request})
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'hyperparameters'}: {e['msg']}"
            + (f" (got {e['input']!r})" if e["type"] != "extra_forbidden" else "")
            for e in exc.errors())
        raise ValueError(f"bad hyper-parameters: {errors}") from None


def parse_dataset(ref: str) -> tuple[str, str]:
    m = DATASET_PATTERN.match(ref or "")
    if not m:
        raise ValueError(f"dataset {ref!r} is not <collection>/<version> (e.g. "
                         f"bees/0123456789abcdef)")
    return m.group(1), m.group(2)


def model_id_for(job_id: str, dataset: str, method: str) -> str:
    """A model id derived from the request alone (a redelivery gets the same one):
    ``<collection>-<method>-<first 12 hex digits of sha256(job_id)>``."""
    collection = dataset.split("/", 1)[0] if "/" in dataset else "model"
    collection = re.sub(r"[^a-z0-9_-]", "-", collection.lower())[:40] or "model"
    return f"{collection}-{method}-{sha256_hex(job_id)[:12]}"


class JobSpec(BaseModel):
    """What the service writes to ``spec.json`` for the worker: local paths only, no
    secrets and no store access (the service moves files to and from the store)."""

    job_id: str
    model_id: str
    method: Literal["full", "lora"]
    base_model: Path
    train_file: Path
    eval_file: Path | None
    dataset_format: str
    out_dir: Path
    resume_from: Path | None = None
    backend: Literal["nccl", "gloo"] = "gloo"
    hp: Hyperparameters


#: the worker's progress lines on stdout: ``@@syllabus-train {"event": ..., ...}``
MARKER = "@@syllabus-train "
