"""The trainer's Prometheus metrics (in the runtime's registry, exposed on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ..runtime import REGISTRY

__all__ = [
    "TRAINING_ACTIVE",
    "TRAINING_CHECKPOINTS",
    "TRAINING_EVAL_LOSS",
    "TRAINING_GPU_MEMORY",
    "TRAINING_JOBS",
    "TRAINING_LEARNING_RATE",
    "TRAINING_LOSS",
    "TRAINING_SECONDS",
    "TRAINING_STEP",
    "TRAINING_TOKENS_PER_SECOND",
]

TRAINING_JOBS = Counter(
    "syllabus_training_jobs_total",
    "Training jobs by outcome (completed, failed, invalid, already_done)", ["outcome"],
    registry=REGISTRY)
TRAINING_ACTIVE = Gauge("syllabus_training_active_jobs", "Jobs running on this replica",
                        registry=REGISTRY)
TRAINING_STEP = Gauge("syllabus_training_step", "Last optimizer step reported", ["model_id"],
                      registry=REGISTRY)
TRAINING_LOSS = Gauge("syllabus_training_loss", "Training loss (mean since the last report)",
                      ["model_id"], registry=REGISTRY)
TRAINING_EVAL_LOSS = Gauge("syllabus_training_eval_loss", "Loss on eval.jsonl", ["model_id"],
                           registry=REGISTRY)
TRAINING_LEARNING_RATE = Gauge("syllabus_training_learning_rate", "Current learning rate",
                               ["model_id"], registry=REGISTRY)
TRAINING_TOKENS_PER_SECOND = Gauge("syllabus_training_tokens_per_second",
                                   "Training throughput, all processes together",
                                   ["model_id"], registry=REGISTRY)
TRAINING_GPU_MEMORY = Gauge("syllabus_training_gpu_memory_bytes",
                            "Peak GPU memory of rank 0", ["model_id"], registry=REGISTRY)
TRAINING_CHECKPOINTS = Counter("syllabus_training_checkpoints_total",
                               "Checkpoints uploaded to the store", ["model_id"],
                               registry=REGISTRY)
TRAINING_SECONDS = Histogram(
    "syllabus_training_job_seconds", "Wall time of a training job on this replica",
    buckets=(10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400), registry=REGISTRY)
