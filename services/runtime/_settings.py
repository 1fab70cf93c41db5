"""Settings: a ``syllabus.toml`` recipe, overridden by ``SYLLABUS_...`` environment variables.

Nested fields use ``__``: ``SYLLABUS_NATS__URL``, ``SYLLABUS_STORE__KIND``,
``SYLLABUS_INGEST__MAX_FILE_BYTES``. Secrets (``SecretStr``) come only from the
environment or mounted files (``SYLLABUS_SECRETS_DIR``); they never appear in logs or
in ``repr``. The recipe file is found at ``SYLLABUS_CONFIG`` or ``./syllabus.toml``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "ApiAnnotatorSettings",
    "BusSettings",
    "DatasetSettings",
    "FilterSettings",
    "HttpSettings",
    "IngestSettings",
    "NatsSettings",
    "QuestionGenSettings",
    "RationaleSettings",
    "ServerSettings",
    "Settings",
    "StoreSettings",
    "TeacherSettings",
    "TrainerSettings",
    "load_settings",
]


class NatsSettings(BaseModel):
    url: str = "nats://127.0.0.1:4222"
    #: seconds within which JetStream drops a second publish with the same Nats-Msg-Id
    duplicate_window: float = 3600.0
    #: seconds; 0 keeps messages until the limits below are hit
    max_age: float = 0.0
    max_bytes: int = -1
    connect_timeout: float = 5.0
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    creds_file: Path | None = None


class BusSettings(BaseModel):
    #: deliveries before a message goes to the dead-letter subject
    max_deliver: int = Field(default=5, ge=1)
    #: seconds to wait before each redelivery after a failure (the last one repeats)
    backoff: list[float] = Field(default_factory=lambda: [1.0, 5.0, 15.0, 30.0])
    #: seconds the server waits for an ack before it redelivers (kept alive while working)
    ack_wait: float = 30.0
    #: messages fetched per pull request
    batch_size: int = Field(default=4, ge=1)
    #: messages one replica handles at the same time
    concurrency: int = Field(default=4, ge=1)


class StoreSettings(BaseModel):
    kind: Literal["local", "s3"] = "local"
    #: LocalStore root
    path: Path = Path(".syllabus/store")
    endpoint: str | None = None
    bucket: str = "syllabus"
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    secure: bool = True
    region: str | None = None


class HttpSettings(BaseModel):
    host: str = "0.0.0.0"
    port: int = 8080
    #: when set, every endpoint except the health probes needs ``Authorization: Bearer <token>``
    token: SecretStr | None = None


class IngestSettings(BaseModel):
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    chunker: str = "structured"
    max_tokens: int = Field(default=384, ge=16)
    overlap_tokens: int = Field(default=48, ge=0)
    min_tokens: int = Field(default=8, ge=1)
    #: Jaccard similarity (on word shingles) at or above which a chunk is a near duplicate
    near_duplicate_threshold: float = Field(default=0.8, gt=0.0, le=1.0)
    shingle_words: int = Field(default=5, ge=1)
    num_perm: int = Field(default=128, ge=16)

    @field_validator("overlap_tokens")
    @classmethod
    def _overlap_below_budget(cls, v: int, info: Any) -> int:
        max_tokens = info.data.get("max_tokens", 384)
        if v >= max_tokens:
            raise ValueError(f"overlap_tokens ({v}) must be below max_tokens ({max_tokens})")
        return v


class TeacherSettings(BaseModel):
    """The teacher: ``kind`` picks the plugin (extractive, openai, triton, transformers)."""

    kind: str = "extractive"
    model: str | None = None
    url: str | None = None
    api_key: SecretStr | None = None
    #: calls in flight at once, per process
    concurrency: int = Field(default=8, ge=1)
    #: seconds for one call
    timeout: float = Field(default=120.0, gt=0)
    #: retries after the first try, on 429/5xx, time-outs and connection errors
    max_retries: int = Field(default=4, ge=0)
    backoff_base: float = Field(default=1.0, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)
    #: keep responses in the store (cache/teacher/...), so a rerun makes no repeated calls
    cache: bool = True
    #: further options for the teacher plugin
    options: dict[str, Any] = Field(default_factory=dict)


class QuestionGenSettings(BaseModel):
    #: question generator plugins to run on every chunk, by name
    techniques: list[str] = Field(default_factory=lambda: ["qa-pairs", "backtranslation"])
    #: per-technique options, e.g. {"qa-pairs": {"pairs_per_chunk": 3}}
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)


class RationaleSettings(BaseModel):
    #: rationale plugin by name; empty forwards records unchanged
    technique: str | None = "step-by-step"
    options: dict[str, Any] = Field(default_factory=dict)


class FilterSettings(BaseModel):
    #: filter plugins, run in this order on every record
    techniques: list[str] = Field(default_factory=lambda: [
        "heuristic-quality", "sycophancy-detector", "llm-judge"])
    #: per-filter options, e.g. {"llm-judge": {"threshold": 4}}
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: stop at the first filter that drops a record (saves teacher calls); its decisions
    #: so far are kept either way
    short_circuit: bool = True


class DatasetSettings(BaseModel):
    #: augmenters run on the collection's accepted records before a build; their kept
    #: records join the accepted stream and are mixed in at ``synthetic_ratio``
    augmenters: list[str] = Field(default_factory=lambda: ["anti-sycophancy"])
    #: per-augmenter options, e.g. {"anti-sycophancy": {"ratio": 5}}
    augmenter_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: selection options for ``syllabus run`` (see ``syllabus dataset build --help``)
    options: dict[str, Any] = Field(default_factory=dict)
    target_size: int | None = Field(default=None, ge=1)
    eval_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)


class ApiAnnotatorSettings(BaseModel):
    """The api-annotator (ToolLLM): API filtering, instruction generation, DFSDT."""

    #: hosts (``host`` or ``host:port``) the annotator may call; empty means the servers
    #: named in each spec
    allowed_hosts: list[str] = Field(default_factory=list)


class TrainerSettings(BaseModel):
    """The trainer: torchrun jobs from data set versions to model artifacts."""

    #: where jobs keep their working files (downloaded data, checkpoints before upload)
    work_dir: Path = Path(".syllabus/trainer")


class ServerSettings(BaseModel):
    """The server: Triton behind an OpenAI-compatible API."""

    #: an external Triton's HTTP URL; empty starts the embedded tritonserver (CPU)
    triton_url: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SYLLABUS_",
        env_nested_delimiter="__",
        extra="ignore",
        secrets_dir=os.environ.get("SYLLABUS_SECRETS_DIR") or None,
    )

    collection: str = "default"
    #: comma-separated allow-list of plugin (entry point) names; empty loads them all
    plugins: str = ""
    log_level: str = "INFO"
    nats: NatsSettings = Field(default_factory=NatsSettings)
    bus: BusSettings = Field(default_factory=BusSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)
    question_gen: QuestionGenSettings = Field(default_factory=QuestionGenSettings)
    rationale: RationaleSettings = Field(default_factory=RationaleSettings)
    filters: FilterSettings = Field(default_factory=FilterSettings)
    datasets: DatasetSettings = Field(default_factory=DatasetSettings)
    api_annotator: ApiAnnotatorSettings = Field(default_factory=ApiAnnotatorSettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings,
                                                     file_secret_settings]
        recipe = _recipe_path()
        if recipe is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=recipe))
        return tuple(sources)

    def plugin_allow_list(self) -> set[str] | None:
        names = {p.strip() for p in self.plugins.split(",") if p.strip()}
        return names or None


def _recipe_path() -> Path | None:
    explicit = os.environ.get("SYLLABUS_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"SYLLABUS_CONFIG names {path}, which is not a file")
        return path
    default = Path("syllabus.toml")
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Settings from the recipe and the environment; ``overrides`` win over both."""
    return Settings(**overrides)
