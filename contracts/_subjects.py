"""Every subject on the bus, and the stream that keeps them.

Subjects follow ``syllabus.<noun>.<verb>``. No service builds a subject string by hand:
it imports the constant from here (``dlq_subject`` builds the one family that is keyed
by the failing service).
"""

from __future__ import annotations

import re

__all__ = [
    "API_SPECS_SUBMITTED",
    "CHUNKS_CREATED",
    "CHUNKS_DROPPED",
    "DATASETS_BUILT",
    "DATASETS_FAILED",
    "DATASETS_REQUESTED",
    "DLQ_ALL",
    "DOCUMENTS_INGESTED",
    "DOCUMENTS_REJECTED",
    "DOCUMENTS_SUBMITTED",
    "GENERATION_FAILED",
    "HEADER_COLLECTION",
    "HEADER_MSG_ID",
    "HEADER_RUN_ID",
    "MODELS_DEPLOYED",
    "PASSED_OVER",
    "QA_GENERATED",
    "QA_RATIONALIZED",
    "RECORDS_ACCEPTED",
    "RECORDS_REJECTED",
    "STREAM_NAME",
    "STREAM_SUBJECTS",
    "TOOLS_ANNOTATED",
    "TRAINING_COMPLETED",
    "TRAINING_FAILED",
    "TRAINING_PROGRESS",
    "TRAINING_REQUESTED",
    "dlq_subject",
]

#: The one JetStream stream that is the durable log of the pipeline.
STREAM_NAME = "SYLLABUS"
STREAM_SUBJECTS = ["syllabus.>"]

DOCUMENTS_SUBMITTED = "syllabus.documents.submitted"
DOCUMENTS_INGESTED = "syllabus.documents.ingested"
DOCUMENTS_REJECTED = "syllabus.documents.rejected"
CHUNKS_CREATED = "syllabus.chunks.created"
CHUNKS_DROPPED = "syllabus.chunks.dropped"
QA_GENERATED = "syllabus.qa.generated"
QA_RATIONALIZED = "syllabus.qa.rationalized"
GENERATION_FAILED = "syllabus.generation.failed"
#: work a technique or filter was not given, and why (a chunk in a language it does not
#: work in)
PASSED_OVER = "syllabus.techniques.passed_over"
RECORDS_ACCEPTED = "syllabus.records.accepted"
RECORDS_REJECTED = "syllabus.records.rejected"
DATASETS_REQUESTED = "syllabus.datasets.requested"
DATASETS_BUILT = "syllabus.datasets.built"
DATASETS_FAILED = "syllabus.datasets.failed"
API_SPECS_SUBMITTED = "syllabus.specs.submitted"
TOOLS_ANNOTATED = "syllabus.tools.annotated"
TRAINING_REQUESTED = "syllabus.training.requested"
TRAINING_PROGRESS = "syllabus.training.progress"
TRAINING_COMPLETED = "syllabus.training.completed"
TRAINING_FAILED = "syllabus.training.failed"
MODELS_DEPLOYED = "syllabus.models.deployed"
DLQ_ALL = "syllabus.dlq.>"

#: Headers every publish carries.
HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_RUN_ID = "Syllabus-Run-Id"
HEADER_COLLECTION = "Syllabus-Collection"

_SERVICE = re.compile(r"^[a-z][a-z0-9-]*$")


def dlq_subject(service: str) -> str:
    """``syllabus.dlq.<service>``: where a service's undeliverable messages go."""
    if not _SERVICE.match(service):
        raise ValueError(f"invalid service name for a dead-letter subject: {service!r}")
    return f"syllabus.dlq.{service}"
