"""The pydantic models of every message on the bus.

Each message carries ``schema_version`` and knows its own ``dedup_id()``: the
content-derived id that goes into ``Nats-Msg-Id`` so a redelivery or a rerun publishes
nothing new. ``SUBJECT_MODELS`` ties each subject to the model that travels on it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import _subjects as s
from ._ids import COLLECTION_PATTERN, content_id

__all__ = [
    "SCHEMA_VERSION",
    "SUBJECT_MODELS",
    "ApiSpecSubmitted",
    "ChunkCreated",
    "ChunkDropReason",
    "ChunkDropped",
    "ChunkLineage",
    "DatasetBuilt",
    "DatasetFailed",
    "DatasetRequested",
    "DeadLetter",
    "DocumentIngested",
    "DocumentRejected",
    "DocumentSubmitted",
    "Event",
    "GenerationFailed",
    "ModelDeployed",
    "PassedOver",
    "PluginRef",
    "QARecord",
    "RecordDecision",
    "RejectionReason",
    "TeacherRef",
    "ToolTrajectory",
    "TrainingCompleted",
    "TrainingFailed",
    "TrainingProgress",
    "TrainingRequested",
]

SCHEMA_VERSION = 1

Collection = Field(pattern=COLLECTION_PATTERN, description="collection (data set) name")


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every message. Unknown fields are ignored so that an older consumer keeps
    working when a newer producer adds one; ``schema_version`` says which shape was sent.
    An infinite or NaN float travels as ``"Infinity"`` / ``"NaN"`` (JSON has neither;
    pydantic's default, ``null``, would silently turn ``source_temperature = inf`` into
    "not set")."""

    model_config = ConfigDict(extra="ignore", frozen=False, ser_json_inf_nan="strings")

    subject: ClassVar[str]
    schema_version: int = SCHEMA_VERSION

    def dedup_id(self) -> str:
        """The ``Nats-Msg-Id``. By default a hash of the whole message; events override it
        with the id of what they announce."""
        return f"{type(self).__name__}:{content_id(self.model_dump(mode='json'))}"


class PluginRef(BaseModel):
    """Which technique plugin produced something, and at which version."""

    name: str
    version: str = "0"


class TeacherRef(BaseModel):
    """The teacher (LLM back end, or the offline ``extractive`` one) and its model."""

    kind: str
    model: str


# --- documents -------------------------------------------------------------------------


class RejectionReason(StrEnum):
    """Why a document was not ingested. Every value shows up in the run report."""

    EMPTY = "empty_file"
    TOO_LARGE = "too_large"
    UNKNOWN_TYPE = "unknown_type"
    ENCRYPTED = "encrypted"
    CORRUPT = "corrupt"
    NO_TEXT_LAYER = "no_text_layer"
    NO_TEXT = "no_text"
    #: an Office file whose only content is a macro project (macros are never run)
    MACRO_ONLY = "macro_only"
    #: text, but too little of it for one chunk (``ingest.min_tokens``)
    TOO_SHORT = "too_short"
    UNSAFE_NAME = "unsafe_name"
    MISSING_OBJECT = "missing_object"
    #: an OpenAPI/Swagger spec that does not validate (the detail names the JSON path)
    INVALID_SPEC = "invalid_spec"


class DocumentSubmitted(Event):
    """A document's bytes are in the store under ``store_key``; please ingest them."""

    subject: ClassVar[str] = s.DOCUMENTS_SUBMITTED
    doc_id: str = Field(description="sha256 of the document's bytes")
    collection: str = Collection
    filename: str = Field(description="the original file name, without folders")
    store_key: str
    size_bytes: int = Field(ge=0)
    media_type: str | None = Field(default=None, description="a hint; ingest sniffs the content")
    run_id: str | None = None
    submitted_at: datetime = Field(default_factory=_now)

    def dedup_id(self) -> str:
        return f"documents.submitted:{self.collection}:{self.doc_id}"


class DocumentIngested(Event):
    """Summary of one document's ingest: pages, chunks created and dropped, timings."""

    subject: ClassVar[str] = s.DOCUMENTS_INGESTED
    doc_id: str
    collection: str = Collection
    filename: str
    media_type: str
    parser: PluginRef
    chunker: PluginRef
    pages: int = 0
    #: pages whose text was read by OCR (no text layer)
    ocr_pages: int = 0
    size_bytes: int = 0
    chunk_ids: list[str] = Field(default_factory=list, description="chunks announced for it")
    chunks_dropped: dict[str, int] = Field(default_factory=dict, description="by reason")
    parse_seconds: float = 0.0
    chunk_seconds: float = 0.0
    warnings: list[str] = Field(default_factory=list)
    run_id: str | None = None

    def dedup_id(self) -> str:
        return f"documents.ingested:{self.collection}:{self.doc_id}:{self.run_id}"


class DocumentRejected(Event):
    """A document that could not be ingested, with the reason, so nothing is lost silently."""

    subject: ClassVar[str] = s.DOCUMENTS_REJECTED
    doc_id: str
    collection: str = Collection
    filename: str
    reason: RejectionReason
    detail: str
    run_id: str | None = None

    def dedup_id(self) -> str:
        return f"documents.rejected:{self.collection}:{self.doc_id}:{self.reason}:{self.run_id}"


# --- chunks ----------------------------------------------------------------------------


class ChunkLineage(BaseModel):
    """Where a chunk came from: the document, the pages and span, and who made it."""

    doc_id: str
    filename: str
    media_type: str
    pages: list[int] = Field(default_factory=list, description="1-based page numbers")
    section: list[str] = Field(default_factory=list, description="heading path")
    language: str | None = Field(default=None, description="ISO 639 code of the chunk's "
                                 "language (fastText's lid.176), or None when it is too short "
                                 "to tell")
    ocr: bool = Field(default=False, description="some of its text was read by OCR from a "
                      "page without a text layer")
    ocr_confidence: float | None = Field(default=None, description="the lowest OCR confidence "
                                         "of its OCR pages (0..1), when ocr is true")
    char_start: int = Field(ge=0, description="start of the chunk in the document's normalised "
                            "text (what the chunker's normalise_document returns)")
    char_end: int = Field(ge=0, description="end of that span (exclusive)")
    parser: PluginRef
    chunker: PluginRef
    settings_hash: str = Field(description="hash of the chunker settings")


class ChunkCreated(Event):
    """A new, de-duplicated chunk. Its JSON is also stored at ``chunks/<chunk_id>.json``."""

    subject: ClassVar[str] = s.CHUNKS_CREATED
    chunk_id: str = Field(description="sha256 of the normalised text")
    collection: str = Collection
    text: str
    token_count: int
    index: int = Field(ge=0, description="position of the chunk in its document")
    store_key: str
    lineage: ChunkLineage
    run_id: str | None = None

    def dedup_id(self) -> str:
        # per occurrence: the same text in another document is announced for it when that
        # document wins the de-duplication (see syllabus.services.ingest._dedup)
        return f"chunks.created:{self.collection}:{self.chunk_id}:{self.lineage.doc_id}"


class ChunkDropReason(StrEnum):
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    ALREADY_INGESTED = "already_ingested"
    TOO_SHORT = "too_short"


class ChunkDropped(Event):
    """A chunk of a document that is not (or no longer) part of the collection, and why
    (a duplicate names what it duplicates).

    ``superseded`` is set when the occurrence was handled first and may have been
    announced, and an occurrence with a smaller priority (a document submitted earlier)
    arrived later and drops it: data set builds leave its records out. ``run_id`` is
    then the run of the dropped occurrence, so both its own verdict and the supersession
    carry one ``Nats-Msg-Id``."""

    subject: ClassVar[str] = s.CHUNKS_DROPPED
    chunk_id: str
    collection: str = Collection
    doc_id: str
    reason: ChunkDropReason
    duplicate_of: str | None = None
    #: the document of the chunk it duplicates, when known
    duplicate_doc_id: str | None = None
    similarity: float | None = None
    superseded: bool = False
    run_id: str | None = None

    def dedup_id(self) -> str:
        return f"chunks.dropped:{self.collection}:{self.doc_id}:{self.chunk_id}:{self.run_id}"


# --- question/answer records -----------------------------------------------------------


class RecordDecision(BaseModel):
    """One filter's verdict on one record: kept or dropped, with score and reason."""

    filter: str
    kept: bool
    score: float | None = None
    threshold: float | None = None
    reason: str
    details: dict[str, Any] = Field(default_factory=dict)


class QARecord(Event):
    """An instruction/response pair with its lineage, scores and every filter decision."""

    subject: ClassVar[str] = s.QA_GENERATED
    record_id: str
    collection: str = Collection
    kind: Literal["qa", "backtranslation", "anti_sycophancy", "tool"] = "qa"
    instruction: str
    response: str
    rationale: str | None = None
    chunk_id: str | None = None
    lineage: ChunkLineage | None = None
    technique: PluginRef
    teacher: TeacherRef
    prompt_hash: str | None = None
    system: str | None = Field(default=None, description="system prompt the example is tagged "
                               "with (Humpback's 'Answer with knowledge from web search.')")
    scores: dict[str, float] = Field(default_factory=dict)
    decisions: list[RecordDecision] = Field(default_factory=list)
    run_id: str | None = None
    #: a tool-call trajectory (``kind == "tool"``, from a ``ToolTrajectory``): the OpenAI
    #: ``tools`` it may call and its chat ``messages`` (system, user, assistant
    #: ``tool_calls``, ``tool`` observations, the final answer)
    tools: list[dict[str, Any]] | None = None
    messages: list[dict[str, Any]] | None = None

    def dedup_id(self) -> str:
        # one message per record, source document and subject (Bus.publish prefixes the
        # subject when a record travels on another subject than qa.generated): the same
        # chunk text in another document that wins the de-duplication later makes the
        # same record again, credited to that document
        doc = f":{self.lineage.doc_id}" if self.lineage is not None else ""
        return f"qa:{self.collection}:{self.record_id}{doc}"

    @property
    def rejected(self) -> bool:
        """True when any filter decided to drop it."""
        return any(not d.kept for d in self.decisions)

    @staticmethod
    def make_id(*, chunk_id: str | None, technique: PluginRef, teacher: TeacherRef,
                settings: dict[str, Any], instruction: str, response: str) -> str:
        return content_id(chunk_id, technique.model_dump(), teacher.model_dump(), settings,
                          instruction, response)


class GenerationFailed(Event):
    """A teacher's output that could not be used even after one retry showing it the error:
    kept with the raw output, so "why is there no record for this chunk?" has an answer."""

    subject: ClassVar[str] = s.GENERATION_FAILED
    collection: str = Collection
    stage: str = Field(description="the service: question-gen, rationale, ...")
    technique: PluginRef
    teacher: TeacherRef
    chunk_id: str | None = None
    record_id: str | None = None
    reason: str
    raw_output: str = ""
    run_id: str | None = None

    def dedup_id(self) -> str:
        return (f"generation.failed:{self.collection}:{self.stage}:{self.technique.name}:"
                f"{self.chunk_id}:{self.record_id}")


class PassedOver(Event):
    """A chunk (or record) that a technique was not given, and why: it is in a language
    the technique, or the teacher it asks, does not work in (``syllabus.contracts.
    unsupported``). Nothing was asked and nothing failed; the run report counts these
    apart from failures and rejections."""

    subject: ClassVar[str] = s.PASSED_OVER
    collection: str = Collection
    stage: str = Field(description="the service: question-gen, rationale, ...")
    technique: PluginRef
    teacher: TeacherRef | None = None
    chunk_id: str | None = None
    record_id: str | None = None
    reason: Literal["language"] = "language"
    language: str | None = Field(default=None, description="ISO 639 code of the text")
    detail: str = Field(description="who works in which languages, and the text's language")
    run_id: str | None = None

    def dedup_id(self) -> str:
        return (f"passed.over:{self.collection}:{self.stage}:{self.technique.name}:"
                f"{self.chunk_id}:{self.record_id}:{self.run_id}")


# --- data sets -------------------------------------------------------------------------


class DatasetRequested(Event):
    """Build a data set version from a collection's accepted records."""

    subject: ClassVar[str] = s.DATASETS_REQUESTED
    collection: str = Collection
    target_size: int | None = Field(default=None, ge=1,
                                    description="records to select (LIMA-style subset)")
    format: Literal["openai", "alpaca", "sharegpt", "step-by-step"] = "openai"
    eval_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    seed: int = 0
    #: selection settings (thresholds, decontamination set key, synthetic share...)
    options: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None

    def dedup_id(self) -> str:
        return f"datasets.requested:{self.collection}:{content_id(self.model_dump(mode='json', exclude={'run_id'}))}:{self.run_id}"


class DatasetBuilt(Event):
    """A data set version: ``datasets/<collection>/<version>/{train,eval}.jsonl`` and
    ``manifest.json`` in the store. The same records and settings give the same version."""

    subject: ClassVar[str] = s.DATASETS_BUILT
    collection: str = Collection
    version: str
    prefix: str = Field(description="store prefix: datasets/<collection>/<version>/")
    format: str
    train_rows: int
    eval_rows: int
    counts: dict[str, int] = Field(default_factory=dict,
                                   description="records in, and removed by each step")
    run_id: str | None = None
    timings: dict[str, float] = Field(
        default_factory=dict,
        description="seconds of this build by phase, in order: load (reading the accepted "
                    "records), embed, each selection step that ran (without embedding), "
                    "export (splitting and formatting) and write (the store); not in the "
                    "manifest, which stays reproducible")

    def dedup_id(self) -> str:
        return f"datasets.built:{self.collection}:{self.version}:{self.run_id}"


# --- tools -----------------------------------------------------------------------------



class DatasetFailed(Event):
    """A data set request that built nothing, and why: ``no_accepted_records`` (the
    collection has no accepted records yet: a normal outcome, not an error) or
    ``invalid_request`` (options, format or evaluation set that can never work). Neither
    is retried, since the same request would fail the same way."""

    subject: ClassVar[str] = s.DATASETS_FAILED
    collection: str = Collection
    reason: Literal["no_accepted_records", "invalid_request"]
    detail: str
    #: the request's dedup id, so a failure names the request it answers
    request_id: str
    run_id: str | None = None

    def dedup_id(self) -> str:
        return f"datasets.failed:{self.collection}:{self.request_id}"

class ApiSpecSubmitted(Event):
    subject: ClassVar[str] = s.API_SPECS_SUBMITTED
    spec_id: str = Field(description="sha256 of the spec's bytes")
    collection: str = Collection
    filename: str
    store_key: str
    allowed_hosts: list[str] = Field(default_factory=list)
    run_id: str | None = None

    def dedup_id(self) -> str:
        return f"specs.submitted:{self.collection}:{self.spec_id}"


class ToolTrajectory(Event):
    """A verified tool-call trajectory in OpenAI chat form (``messages`` with ``tools``)."""

    subject: ClassVar[str] = s.TOOLS_ANNOTATED
    trajectory_id: str
    collection: str = Collection
    spec_id: str
    group: Literal["I1", "I2", "I3"]
    instruction: str
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    final_answer: str | None = None
    #: the solver plugin's name (``dfsdt``, ``react``, or a third party's)
    method: str = "dfsdt"
    solved: bool = False
    technique: PluginRef
    teacher: TeacherRef
    run_id: str | None = None
    #: the generated instruction this trajectory answers, and the APIs it names
    instruction_id: str = ""
    relevant_apis: list[str] = Field(default_factory=list)
    category: str | None = None
    #: the search ended with Finish(give_up_and_restart) (only when not solved)
    gave_up: bool = False
    #: why an unsolved search stopped (give-up, query budget, depth limit...); "" if solved
    reason: str = ""
    teacher_calls: int = 0
    api_calls: int = 0
    #: the search's own counts (nodes expanded, backtracks, ...)
    stats: dict[str, Any] = Field(default_factory=dict)

    def dedup_id(self) -> str:
        return f"tools.annotated:{self.collection}:{self.trajectory_id}"

    def as_record(self) -> QARecord:
        """The trajectory as an accepted record of ``kind == "tool"`` (what the data set
        builder selects and exports): the instruction, the final answer as the response,
        and the ``tools`` and ``messages`` to export."""
        return QARecord(
            record_id=self.trajectory_id, collection=self.collection, kind="tool",
            instruction=self.instruction, response=self.final_answer or "",
            technique=self.technique, teacher=self.teacher, run_id=self.run_id,
            tools=self.tools, messages=self.messages,
            scores={"teacher_calls": float(self.teacher_calls),
                    "api_calls": float(self.api_calls)})


# --- training and serving --------------------------------------------------------------


class TrainingRequested(Event):
    subject: ClassVar[str] = s.TRAINING_REQUESTED
    job_id: str
    dataset: str = Field(description="<collection>/<version>")
    base_model: str = Field(description="a local path or a store key")
    method: Literal["full", "lora"] = "lora"
    gpus: int = Field(default=1, ge=0)
    nodes: int = Field(default=1, ge=1)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)

    def dedup_id(self) -> str:
        return f"training.requested:{self.job_id}"


class TrainingProgress(Event):
    subject: ClassVar[str] = s.TRAINING_PROGRESS
    job_id: str
    step: int
    total_steps: int
    epoch: float
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    gpu_memory_bytes: int | None = None

    def dedup_id(self) -> str:
        return f"training.progress:{self.job_id}:{self.step}"


class TrainingCompleted(Event):
    subject: ClassVar[str] = s.TRAINING_COMPLETED
    job_id: str
    model_id: str
    store_prefix: str
    dataset: str
    metrics: dict[str, float] = Field(default_factory=dict)

    def dedup_id(self) -> str:
        return f"training.completed:{self.job_id}"


class TrainingFailed(Event):
    subject: ClassVar[str] = s.TRAINING_FAILED
    job_id: str
    reason: str
    log_tail: str = ""

    def dedup_id(self) -> str:
        return f"training.failed:{self.job_id}"


class ModelDeployed(Event):
    """The server's verdict on a trained model: ``deployed`` (served and announced),
    ``refused`` (it loaded, but the evaluation gate found a score below its floor) or
    ``failed`` (it could not be loaded: corrupt or missing files, a Triton error)."""

    subject: ClassVar[str] = s.MODELS_DEPLOYED
    model_id: str
    name: str
    version: int = 1
    endpoint: str
    eval_scores: dict[str, float] = Field(default_factory=dict)
    status: Literal["deployed", "refused", "failed"] = "deployed"
    #: why a model was refused or failed
    reason: str | None = None
    job_id: str | None = None
    dataset: str | None = Field(default=None, description="<collection>/<version>")
    backend: str | None = Field(default=None, description="the Triton backend: python, vllm")
    #: the floors the gate applied, by score name
    eval_floors: dict[str, float] = Field(default_factory=dict)
    #: per suite: counts, errors and examples, or why it was skipped
    eval_details: dict[str, Any] = Field(default_factory=dict)

    def dedup_id(self) -> str:
        if self.status != "deployed":
            return f"models.deployed:{self.model_id}:{self.version}:{self.status}"
        return f"models.deployed:{self.model_id}:{self.version}"


# --- failures --------------------------------------------------------------------------


class DeadLetter(Event):
    """A message a service could not handle: the original payload, headers and the reason."""

    subject: ClassVar[str] = "syllabus.dlq.<service>"
    service: str
    original_subject: str
    reason: str
    deliveries: int
    payload_b64: str
    headers: dict[str, str] = Field(default_factory=dict)
    stream_sequence: int | None = None
    failed_at: datetime = Field(default_factory=_now)

    @classmethod
    def of(cls, *, service: str, subject: str, payload: bytes, headers: dict[str, str],
           reason: str, deliveries: int, stream_sequence: int | None) -> DeadLetter:
        return cls(service=service, original_subject=subject, reason=reason,
                   deliveries=deliveries, payload_b64=base64.b64encode(payload).decode(),
                   headers=dict(headers), stream_sequence=stream_sequence)

    @property
    def payload(self) -> bytes:
        return base64.b64decode(self.payload_b64)

    def dedup_id(self) -> str:
        return f"dlq:{self.service}:{self.stream_sequence}:{content_id(self.payload_b64)}"


#: Which model travels on which subject.
SUBJECT_MODELS: dict[str, type[Event]] = {
    m.subject: m
    for m in (
        DocumentSubmitted, DocumentIngested, DocumentRejected, ChunkCreated, ChunkDropped,
        GenerationFailed, PassedOver, DatasetRequested, DatasetBuilt, DatasetFailed,
        ApiSpecSubmitted, ToolTrajectory, TrainingRequested, TrainingProgress,
        TrainingCompleted, TrainingFailed, ModelDeployed,
    )
}
SUBJECT_MODELS[s.QA_RATIONALIZED] = QARecord
SUBJECT_MODELS[s.RECORDS_ACCEPTED] = QARecord
SUBJECT_MODELS[s.RECORDS_REJECTED] = QARecord
SUBJECT_MODELS[s.QA_GENERATED] = QARecord
