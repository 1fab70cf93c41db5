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

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
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


class _Section(BaseModel):
    """A recipe section: a key it does not know is an error that names it (a misspelt or
    misplaced key, such as ``json_mode`` under ``[teacher]`` instead of
    ``[teacher.options]``, would otherwise be ignored without a word)."""

    model_config = ConfigDict(extra="forbid")


class NatsSettings(_Section):
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


class BusSettings(_Section):
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


class StoreSettings(_Section):
    kind: Literal["local", "s3"] = "local"
    #: LocalStore root
    path: Path = Path(".syllabus/store")
    endpoint: str | None = None
    bucket: str = "syllabus"
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    secure: bool = True
    region: str | None = None


class HttpSettings(_Section):
    host: str = "0.0.0.0"
    port: int = 8080
    #: when set, every endpoint except the health probes needs ``Authorization: Bearer <token>``
    token: SecretStr | None = None


class IngestSettings(_Section):
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


class TeacherSettings(_Section):
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


class QuestionGenSettings(_Section):
    #: question generator plugins to run on every chunk, by name
    techniques: list[str] = Field(default_factory=lambda: ["qa-pairs", "backtranslation"])
    #: per-technique options, e.g. {"qa-pairs": {"pairs_per_chunk": 3}}
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)


class RationaleSettings(_Section):
    #: rationale plugin by name; empty forwards records unchanged
    technique: str | None = "step-by-step"
    options: dict[str, Any] = Field(default_factory=dict)


class FilterSettings(_Section):
    #: filter plugins, run in this order on every record
    techniques: list[str] = Field(default_factory=lambda: [
        "heuristic-quality", "sycophancy-detector", "llm-judge"])
    #: per-filter options, e.g. {"llm-judge": {"threshold": 4}}
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: stop at the first filter that drops a record (saves teacher calls); its decisions
    #: so far are kept either way
    short_circuit: bool = True


class DatasetSettings(_Section):
    #: augmenters run on the collection's accepted records before a build; their kept
    #: records join the accepted stream and are mixed in at ``synthetic_ratio``
    augmenters: list[str] = Field(default_factory=lambda: ["anti-sycophancy"])
    #: per-augmenter options, e.g. {"anti-sycophancy": {"ratio": 5}}
    augmenter_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: selection options for ``syllabus run`` (see ``syllabus dataset build --help``)
    options: dict[str, Any] = Field(default_factory=dict)
    target_size: int | None = Field(default=None, ge=1)
    eval_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)


class ApiAnnotatorSettings(_Section):
    """The api-annotator (ToolLLM): API filtering, instruction generation, DFSDT."""

    # --- the guarded HTTP caller and API filtering (every real call goes through it) ---
    #: hosts (``host``, ``host:port`` or ``*.domain``) the annotator may call; empty means
    #: the servers named in each spec
    allowed_hosts: list[str] = Field(default_factory=list)
    #: hosts (same forms; ``"*"`` for any) that may be, or resolve to, private, loopback,
    #: link-local or reserved addresses; every other host that does is refused
    allow_private_hosts: list[str] = Field(default_factory=list)
    #: hosts where destructive calls may run: DELETE, and POST/PUT/PATCH
    sandbox_hosts: list[str] = Field(default_factory=list)
    #: of POST, PUT and PATCH, those that may also run on hosts that are not sandboxes
    #: (DELETE never may)
    allow_write_methods: list[Literal["POST", "PUT", "PATCH"]] = Field(default_factory=list)
    #: headers sent to one host only: {"api.example.com": {"X-Api-Key": "..."}}; the host is
    #: ``host`` or ``host:port``. Values are secrets (set them from the environment, e.g.
    #: SYLLABUS_API_ANNOTATOR__CREDENTIALS='{"api.example.com": {"X-Api-Key": "..."}}')
    credentials: dict[str, dict[str, SecretStr]] = Field(default_factory=dict)
    #: hosts (same forms, ``"*"`` not accepted) whose credentials may also be sent over
    #: plain http; every other host gets its credentials over https only
    credentials_over_http: list[str] = Field(default_factory=list)
    #: a response body larger than this is cut off and the call fails ("too large")
    max_response_bytes: int = Field(default=1024 * 1024, ge=1)
    #: seconds for one call, DNS, connecting, redirects and the whole body included
    call_timeout: float = Field(default=10.0, gt=0)
    #: redirects followed (each one checked like the first request)
    max_redirects: int = Field(default=3, ge=0)
    #: an observation is compressed, then truncated to this many tokens (ToolLLM: 2048)
    response_token_budget: int = Field(default=2048, ge=16)
    #: where relative server URLs of a spec (``/v1``, or none) are resolved
    base_url: str | None = None
    #: the API filter plugin (stage "filter"); empty skips API filtering
    filter: str | None = "basic-functionality"
    #: its options, e.g. {"concurrency": 4, "drop_client_errors": true}
    filter_options: dict[str, Any] = Field(default_factory=dict)

    # --- instruction generation, solution search, evaluation (ToolLLM §2.2-2.3, §3.1) ---
    #: the instruction generator plugin (stage "instructions")
    instructions: str = "toolllm-instructions"
    #: instruction groups to generate: I1 single-tool, I2 intra-category multi-tool,
    #: I3 whole-spec
    groups: list[Literal["I1", "I2", "I3"]] = Field(default_factory=lambda: ["I1", "I2", "I3"])
    #: the generator's options, e.g. {"samples": 3, "queries_per_sample": 10, "seed": 0}
    instruction_options: dict[str, Any] = Field(default_factory=dict)
    #: the solver plugin that annotates every instruction (stage "solver"): dfsdt or react
    solver: str = "dfsdt"
    #: its options, e.g. {"width": 2, "max_depth": 8, "max_queries": 40}
    solver_options: dict[str, Any] = Field(default_factory=dict)
    #: also run these solvers on the same instructions, for the evaluation only (their
    #: trajectories are not published), e.g. ["react"] to compare with ToolLLM Table 3
    compare_solvers: list[str] = Field(default_factory=list)
    #: the evaluator plugin (stage "eval"); empty skips the evaluation. ``tooleval``
    #: judges with the teacher (ToolEval's pass rate and win rate); with a teacher that
    #: refuses to judge (the extractive one) it is the rule alone, labelled
    #: "self-consistency". ``toolevalrule`` is the rule alone, never judged
    evaluator: str | None = "tooleval"
    #: its options, e.g. {"concurrency": 4, "temperature": 0.0, "reference": "react"}
    evaluator_options: dict[str, Any] = Field(default_factory=dict)
    #: instructions solved at the same time
    concurrency: int = Field(default=4, ge=1)


class TrainerSettings(_Section):
    """The trainer: torchrun jobs from data set versions to model artifacts."""

    #: where jobs keep their working files (downloaded data, checkpoints before upload)
    work_dir: Path = Path(".syllabus/trainer")
    #: the torchrun command; empty runs "<this python> -m torch.distributed.run"
    torchrun: str = ""
    #: process-group backend: auto is nccl for GPU jobs and gloo for CPU jobs
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    #: multi-node jobs: the address and port the other nodes reach this one at
    master_addr: str | None = None
    master_port: int = Field(default=29500, ge=1, le=65535)
    #: multi-node jobs: seconds torchrun waits for the other nodes to join before the job
    #: fails (this service does not start them; see README "Several nodes")
    rendezvous_timeout: int = Field(default=600, ge=1)
    #: local folders a request may name a base model under (mounted model volumes); empty:
    #: base models come from the store only
    base_model_roots: list[Path] = Field(default_factory=list)
    #: defaults for every job's hyper-parameters (a request's own values win); see
    #: ``syllabus train --help`` for the names: epochs, max_steps, learning_rate, ...
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    #: lines of the worker's output kept for a TrainingFailed report
    log_tail_lines: int = Field(default=80, ge=1, le=10_000)
    #: relaunches (from the last checkpoint) after a worker crash before TrainingFailed
    crash_retries: int = Field(default=0, ge=0)
    #: seconds without an ack (kept alive while a job runs) before a stopped replica's job
    #: is redelivered to another one, which resumes it from the last checkpoint
    ack_wait: float = Field(default=60.0, gt=0)
    #: deliveries of one request before it is dead-lettered (a job that keeps killing its
    #: replica)
    max_deliver: int = Field(default=5, ge=1)
    #: keep a finished job's local folder (data, base model copy, final model)
    keep_work_dir: bool = False


class ServerSettings(_Section):
    """The server: Triton behind an OpenAI-compatible API."""

    #: an external Triton's HTTP URL (host:port); empty starts the embedded tritonserver (CPU)
    triton_url: str | None = None
    #: that Triton's gRPC URL (host:port), which the server uses; default: triton_url's
    #: host with port 8001
    triton_grpc_url: str | None = None
    #: Triton backend for new models: "python" (transformers, decoupled, CPU or GPU) or
    #: "vllm" (Triton's vLLM backend, GPU clusters)
    backend: Literal["python", "vllm"] = "python"
    #: the OpenAI API's base URL as clients reach it (announced in models.deployed); empty:
    #: http://<http.host>:<http.port>/v1
    public_url: str | None = None
    #: a folder Triton reads its model repository from, written by the server; empty: the
    #: embedded Triton uses <work_dir>/repository, an external one reads the store's
    #: triton/ prefix itself (tritonserver --model-repository=s3://...)
    model_repository: Path | None = None
    #: also write each model's repository to the store at triton/<model>/...
    store_repository: bool = True
    #: the server's working files (the embedded Triton's backends and log)
    work_dir: Path = Path(".syllabus/server")
    #: model instances per model (Triton's instance_group count)
    instances: int = Field(default=1, ge=1)
    #: Python backend: where the instances run, "cpu" or "gpu" (KIND_GPU, bfloat16)
    instance_kind: Literal["cpu", "gpu"] = "cpu"
    #: torch threads per model instance; 0 leaves torch's default
    torch_threads: int = Field(default=0, ge=0)
    #: requests one instance generates at the same time (the rest wait in Triton)
    model_concurrency: int = Field(default=4, ge=1)
    #: vLLM backend: the weights' path as the Triton pod sees it ({name}, {version});
    #: default: <model_repository>/<name>/<version>/hf
    vllm_model_path: str | None = None
    #: Python backend: EXECUTION_ENV_PATH (a conda-pack archive with torch and
    #: transformers) for a cluster Triton whose own Python lacks them
    execution_env: str | None = None
    #: seconds to wait for the embedded Triton to come up, and for a model to load
    start_timeout: float = Field(default=120.0, gt=0)
    load_timeout: float = Field(default=600.0, gt=0)
    #: the OpenAI API: largest request body in bytes
    max_request_bytes: int = Field(default=1_000_000, ge=1024)
    #: the largest max_tokens a request may ask for (and the model's own limit)
    max_tokens_limit: int = Field(default=1024, ge=1)
    #: max_tokens when a request names none
    default_max_tokens: int = Field(default=256, ge=1)
    #: the longest prompt in tokens (400 context_length_exceeded past it); 0: only the
    #: model's max_position_embeddings bounds prompt + max_tokens
    max_prompt_tokens: int = Field(default=0, ge=0)
    #: requests the API serves at the same time; more get 429 with Retry-After
    concurrency: int = Field(default=16, ge=1)
    #: seconds one generation may take
    request_timeout: float = Field(default=300.0, gt=0)
    #: the evaluation gate: suites run before a model is announced ("qa", "sycophancy");
    #: empty skips the gate
    eval_suites: list[str] = Field(default_factory=lambda: ["qa", "sycophancy"])
    #: held-out QA items asked (the first N of the data set's eval.jsonl)
    eval_qa_limit: int = Field(default=50, ge=1)
    #: sycophancy items asked, each with and without the user's opinion
    eval_sycophancy_limit: int = Field(default=20, ge=1)
    #: max_tokens of each evaluation answer
    eval_max_tokens: int = Field(default=64, ge=1)
    #: minimum scores for promotion, by score name, e.g. {"qa.token_f1" = 0.3,
    #: "sycophancy.disagree_rate_with_opinion" = 0.5}; a missed floor refuses the model
    eval_floors: dict[str, float] = Field(default_factory=dict)
    #: scores compared with the base model the candidate was fine-tuned from (the
    #: ``base_model`` of its ``training.json``, when that is a store prefix): the base is
    #: served for the comparison, asked the same suites through the candidate's chat
    #: template, and its scores are cached in the store. A candidate below the base, less
    #: ``eval_base_margin``, is refused. Empty: no comparison
    eval_compare_base: list[str] = Field(default_factory=lambda: ["qa.token_f1"])
    #: how far below the base model a compared score may be and still pass
    eval_base_margin: float = Field(default=0.0, ge=0.0)


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
            sources.append(_Recipe(settings_cls, toml_file=recipe))
        return tuple(sources)

    def plugin_allow_list(self) -> set[str] | None:
        names = {p.strip() for p in self.plugins.split(",") if p.strip()}
        return names or None


class _Recipe(TomlConfigSettingsSource):
    """The recipe file; a top-level key that is no setting is an error naming the key and
    the file (the sections check their own keys: ``_Section``)."""

    def __init__(self, settings_cls: type[BaseSettings], toml_file: Path) -> None:
        super().__init__(settings_cls, toml_file=toml_file)
        unknown = sorted(set(self.toml_data) - set(settings_cls.model_fields))
        if unknown:
            raise ValueError(f"{toml_file}: unknown setting(s) {', '.join(map(repr, unknown))}"
                             f"; the recipe's top-level keys are "
                             f"{', '.join(sorted(settings_cls.model_fields))}")


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
