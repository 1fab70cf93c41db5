"""The trainer service: a data set version in, a fine-tuned model artifact out.

Consumes ``syllabus.training.requested`` (durable consumer ``trainer``, one job at a time
per replica), validates the request (the data set version and the base model exist, the
hyper-parameters are sane), downloads the data set, the base model and the last checkpoint
into ``trainer.work_dir``, and launches ``torchrun`` running ``_worker`` (DDP or FSDP,
NCCL on GPUs, gloo on CPUs; full fine-tuning or LoRA through peft; loss on the answer
tokens only; the step-by-step multi-task loss of Hsieh et al. 2023 on step-by-step data
sets). The worker reports as JSON lines on stdout; the service publishes them as
``TrainingProgress``, uploads checkpoints to ``models/<model_id>/checkpoints/step-<n>/``
and, at the end, the model (a plain Hugging Face folder with a model card) to
``models/<model_id>/``, then publishes ``TrainingCompleted`` (or ``TrainingFailed`` with
the reason and the tail of the worker's log). ``GET /v1/training/status`` shows the
replica's current and last job.
"""

from ._artifact import RECORD_FILE, model_card, model_prefix, upload_model
from ._checkpoint import checkpoint_prefix, latest_checkpoint
from ._config import Hyperparameters, JobSpec, hyperparameters, model_id_for, parse_dataset
from ._data import (
    IGNORE_INDEX,
    PLAIN_TEMPLATE,
    DataError,
    EncodedData,
    Example,
    collate,
    combine,
    encode_examples,
    encode_messages,
    load_examples,
    multitask_loss,
    plain_chat_template,
    read_rows,
    row_to_example,
    step_loss,
)
from ._http import http_routes, job_status
from ._launch import other_node_commands, torchrun_command, worker_env
from ._service import SERVICE, Plan, build_router, plan_job, run_job, trainer_bus

__all__ = [
    "IGNORE_INDEX",
    "PLAIN_TEMPLATE",
    "RECORD_FILE",
    "SERVICE",
    "DataError",
    "EncodedData",
    "Example",
    "Hyperparameters",
    "JobSpec",
    "Plan",
    "build_router",
    "checkpoint_prefix",
    "collate",
    "combine",
    "encode_examples",
    "encode_messages",
    "http_routes",
    "hyperparameters",
    "job_status",
    "latest_checkpoint",
    "load_examples",
    "model_card",
    "model_id_for",
    "model_prefix",
    "multitask_loss",
    "other_node_commands",
    "parse_dataset",
    "plain_chat_template",
    "read_rows",
    "plan_job",
    "row_to_example",
    "run_job",
    "step_loss",
    "torchrun_command",
    "trainer_bus",
    "upload_model",
    "worker_env",
]
