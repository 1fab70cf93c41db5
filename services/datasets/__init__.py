"""The dataset-builder service: a reproducible, versioned data set from a collection's
accepted records.

Consumes ``syllabus.datasets.requested`` (durable consumer ``dataset-builder``), reads the
collection's accepted records from ``syllabus.records.accepted``, selects (exact,
near-duplicate and semantic de-duplication, decontamination against an evaluation set, a
LIMA-style diverse subset, the anti-sycophancy share; see ``select``), exports the
records with the registered exporter for the format, writes
``datasets/<collection>/<version>/{train,eval}.jsonl`` and ``manifest.json`` to the store
and publishes ``DatasetBuilt`` on ``syllabus.datasets.built``. ``build_dataset`` does the
same without the bus request (the CLI's ``syllabus dataset build``).
"""

from ._build import (
    BuildResult,
    build,
    build_dataset,
    dataset_prefix,
    find_exporter,
    load_accepted,
    load_eval_set,
    record_hash,
    request_options,
)
from ._select import (
    DEFAULT_QUALITY_SCORES,
    STEPS,
    EvalSet,
    Progress,
    Removal,
    Selection,
    SelectOptions,
    StepReport,
    eval_set_from_bytes,
    facility_location,
    quality_score,
    select,
    semantic_duplicates,
    split_eval,
)
from ._service import SERVICE, build_router

__all__ = [
    "DEFAULT_QUALITY_SCORES",
    "SERVICE",
    "STEPS",
    "BuildResult",
    "EvalSet",
    "Progress",
    "Removal",
    "SelectOptions",
    "Selection",
    "StepReport",
    "build",
    "build_dataset",
    "build_router",
    "dataset_prefix",
    "eval_set_from_bytes",
    "facility_location",
    "find_exporter",
    "load_accepted",
    "load_eval_set",
    "quality_score",
    "record_hash",
    "request_options",
    "select",
    "semantic_duplicates",
    "split_eval",
]
