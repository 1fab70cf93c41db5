"""What a technique plugin implements, and what it is handed.

Plugins register *objects* that satisfy one of these Protocols, so the hook signatures
stay stable while a technique's interface grows. Everything a technique needs (a teacher,
a store, an HTTP client with an allow-list) reaches it as an argument described here;
plugins never import ``syllabus.services``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from ._messages import ChunkCreated, QARecord, RecordDecision, RejectionReason

__all__ = [
    "ArtifactStore",
    "Augmenter",
    "ChatMessage",
    "ChunkDraft",
    "ChunkOptions",
    "Chunker",
    "Completion",
    "Embedder",
    "Exporter",
    "Failure",
    "Filter",
    "GenerationParams",
    "ParseError",
    "ParsedDocument",
    "PermanentError",
    "Parser",
    "QuestionGenerator",
    "RationaleGenerator",
    "Section",
    "TechniqueOutput",
    "Teacher",
    "TeacherError",
    "TeacherFactory",
    "ToolCall",
]


# --- the store -------------------------------------------------------------------------


@runtime_checkable
class ArtifactStore(Protocol):
    """Keys are ``/``-separated relative paths (``chunks/<id>.json``); they never contain
    ``..`` or start with ``/``. Writes go to content-addressed keys, so they are idempotent."""

    def put(self, key: str, data: bytes | IO[bytes], *, length: int | None = None,
            content_type: str = "application/octet-stream") -> None: ...

    def get(self, key: str) -> bytes: ...

    def stream(self, key: str, *, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def presign(self, key: str, *, expires_seconds: int = 3600) -> str: ...


# --- ingest ----------------------------------------------------------------------------


class PermanentError(Exception):
    """A failure that would happen again on every delivery of the same message (bad
    settings in a request, a deterministic bug on one input). The bus does not retry it:
    the message is dead-lettered at once with this error as the reason. A handler that
    has an event for the outcome publishes that instead (``DatasetFailed``)."""


class ParseError(Exception):
    """Raised by a parser for input it cannot turn into text. ``reason`` is reported."""

    def __init__(self, reason: RejectionReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class Section(BaseModel):
    """A run of text with the structure it sits in: a PDF page, or a block under a heading."""

    text: str
    heading_path: list[str] = Field(default_factory=list)
    page: int | None = Field(default=None, description="1-based page number, when paged")
    kind: str = Field(default="paragraph", description="paragraph | heading | page | list | table")
    ocr_confidence: float | None = Field(default=None, ge=0, le=1, description="the OCR "
                                         "engine's confidence when the text was read by OCR "
                                         "(a page without a text layer), else None")


class ParsedDocument(BaseModel):
    media_type: str
    title: str | None = None
    pages: int = Field(default=0, description="page count for paged media, else 0")
    sections: list[Section]
    warnings: list[str] = Field(default_factory=list)


@runtime_checkable
class Parser(Protocol):
    """Turns one media type's bytes into sections of text."""

    name: str
    media_types: tuple[str, ...]
    #: higher is tried first when sniffing
    priority: int

    def sniff(self, head: bytes, filename: str) -> bool:
        """True when ``head`` (the first 8 KiB) looks like this parser's media type."""
        ...

    def parse(self, data: bytes, *, filename: str) -> ParsedDocument:
        """Raise ``ParseError`` for encrypted, corrupt or text-less input."""
        ...


class ChunkOptions(BaseModel):
    max_tokens: int = Field(default=384, ge=16)
    overlap_tokens: int = Field(default=48, ge=0)
    min_tokens: int = Field(default=8, ge=1)


class ChunkDraft(BaseModel):
    text: str
    token_count: int
    heading_path: list[str] = Field(default_factory=list)
    pages: list[int] = Field(default_factory=list)
    char_start: int = 0
    char_end: int = 0


@runtime_checkable
class Chunker(Protocol):
    name: str

    def chunk(self, doc: ParsedDocument, *, options: ChunkOptions) -> list[ChunkDraft]: ...


# --- embeddings ------------------------------------------------------------------------


@runtime_checkable
class Embedder(Protocol):
    """Sentence embeddings (the runtime's is all-MiniLM-L6-v2, offline). Vectors are
    L2-normalised, so a dot product is the cosine similarity."""

    model: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


# --- teachers --------------------------------------------------------------------------


class ToolCall(BaseModel):
    """One function call an assistant turn makes (OpenAI function calling)."""

    id: str
    name: str
    #: the arguments as a JSON object string, exactly as the model wrote them
    arguments: str = "{}"

    def openai(self) -> dict[str, Any]:
        """The ``tool_calls`` entry of an OpenAI chat message."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


class ChatMessage(BaseModel):
    """One chat message. Function calling (all optional, so plain messages stay two
    fields): an assistant turn may carry ``tool_calls``; a ``tool`` message answers one of
    them, named by ``tool_call_id`` (and ``name``, the function)."""

    role: str
    content: str = ""
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def openai(self) -> dict[str, Any]:
        """This message as the OpenAI chat protocol writes it."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.openai() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


class GenerationParams(BaseModel):
    """How to generate. ``task`` and ``inputs`` name the structured request behind the
    prompt (see ``syllabus.contracts.TASKS``): an LLM teacher answers the messages and may
    ignore them; the offline ``extractive`` teacher answers from them, in the output format
    the task's prompt asks for, so the technique parses both the same way."""

    temperature: float = 0.0
    max_tokens: int = 512
    top_p: float | None = None
    json_schema: dict[str, Any] | None = Field(
        default=None, description="ask for JSON matching this schema (structured output)")
    stop: list[str] | None = None
    task: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    #: functions the model may call: OpenAI ``tools`` entries
    #: (``{"type": "function", "function": {"name", "description", "parameters"}}``)
    tools: list[dict[str, Any]] | None = None
    #: ``"auto"``, ``"none"``, ``"required"`` or ``{"type": "function", "function": {"name"}}``
    tool_choice: str | dict[str, Any] | None = None
    #: a few-shot *completion* prompt for a base model (pretrained, not instruction-tuned):
    #: a teacher whose ``base_model`` is true sends it to ``/v1/completions`` instead of the
    #: messages, and its output is the prompt's continuation. The technique parses both.
    prompt: str | None = None
    #: a GBNF grammar (llama.cpp's) the continuation of ``prompt`` must follow, e.g.
    #: ``root ::= " (" [AB] ")"`` for a choice: a teacher that can enforce one (the
    #: ``local`` teacher's llama.cpp servers) sends it with the completion; others ignore
    #: it, so the technique still parses what comes back. Use it where every allowed
    #: continuation is a whole answer: a grammar of ``[1-5]`` turns a model's "10" into
    #: "1" (it cannot look ahead), which is a wrong score, not a parsed one
    grammar: str | None = None
    #: 1 for a first call; 2 for ``ask``'s retry after unusable output (the report counts
    #: these per task)
    attempt: int = 1


class Completion(BaseModel):
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    latency_seconds: float = 0.0
    #: the function calls of the assistant turn, when it made any
    tool_calls: list[ToolCall] = Field(default_factory=list)
    #: why generation stopped (``stop``, ``length``, ``tool_calls``...), when known
    finish_reason: str | None = None


class TeacherError(Exception):
    """A failed teacher call. ``retryable`` (429, 5xx, time-outs, dropped connections) tells
    the runtime to retry with back-off; anything else fails the call at once."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


@runtime_checkable
class Teacher(Protocol):
    """An LLM (or the offline ``extractive`` heuristics) that generates and judges.

    A teacher makes one call per ``complete``; the runtime around it adds bounded
    concurrency, the time-out, retries, the response cache and metrics."""

    kind: str
    model: str
    #: Optional (read with ``getattr(teacher, "base_model", False)``): true for a base
    #: model, which techniques prompt few-shot through ``GenerationParams.prompt``.
    #: Optional (read with ``getattr(teacher, "refuses", ())``): the tasks it will not
    #: answer (the ``extractive`` teacher's ``tool_judge``); a technique that sees its task
    #: there falls back to its documented, labelled alternative instead of asking.
    #: Optional (read with ``getattr(teacher, "languages", None)``): the languages it reads
    #: and writes (the ``extractive`` teacher's ``("en",)``); ``None`` for any. Techniques,
    #: filters and augmenters may declare ``languages`` the same way
    #: (``syllabus.contracts.unsupported``).

    async def complete(self, messages: Sequence[ChatMessage], *,
                       params: GenerationParams) -> Completion: ...


@runtime_checkable
class TeacherFactory(Protocol):
    """What ``register_teachers`` registers: makes a ``Teacher`` of one ``kind`` from the
    recipe's ``[teacher]`` options (``model``, ``url``, ...)."""

    kind: str

    def create(self, options: dict[str, Any]) -> Teacher: ...


# --- record techniques -----------------------------------------------------------------


class Failure(BaseModel):
    """Teacher output a technique could not use (after one retry), with the raw output."""

    reason: str
    raw_output: str = ""
    record_id: str | None = None


class TechniqueOutput(BaseModel):
    """What a generating technique returns. A record carrying a decision with
    ``kept=False`` is rejected (it goes to ``syllabus.records.rejected``, reason included);
    a failure goes to ``syllabus.generation.failed``. Nothing is dropped silently."""

    records: list[QARecord] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)


@runtime_checkable
class QuestionGenerator(Protocol):
    """Chunk -> instruction/response records (qa-pairs, backtranslation, ...)."""

    name: str

    async def generate(self, chunk: ChunkCreated, *, teacher: Teacher,
                       options: dict[str, Any]) -> TechniqueOutput: ...


@runtime_checkable
class RationaleGenerator(Protocol):
    """Record -> the same record with a rationale (or a decision saying why it has none)."""

    name: str

    async def rationalize(self, record: QARecord, *, context: str | None, teacher: Teacher,
                          options: dict[str, Any]) -> TechniqueOutput:
        """``context`` is the text of the record's source chunk, when it has one."""
        ...


@runtime_checkable
class Filter(Protocol):
    """Decides whether one record is kept, with a score and a reason (the sycophancy-filter
    service runs every configured filter on every record and keeps all decisions)."""

    name: str

    async def judge(self, record: QARecord, *, context: str | None, teacher: Teacher | None,
                    options: dict[str, Any]) -> RecordDecision:
        """``context`` is the record's source chunk text, when it has one."""
        ...


@runtime_checkable
class Augmenter(Protocol):
    """Makes synthetic records from a collection's accepted records (anti-sycophancy...)."""

    name: str

    async def augment(self, records: Sequence[QARecord], *, teacher: Teacher | None,
                      options: dict[str, Any]) -> TechniqueOutput: ...


@runtime_checkable
class Exporter(Protocol):
    name: str
    formats: tuple[str, ...]

    def export(self, records: Iterable[QARecord], *, fmt: str, out: IO[bytes]) -> int:
        """Write ``records`` to ``out`` in ``fmt``; return how many were written."""
        ...
