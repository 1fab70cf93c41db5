"""The runtime around every teacher: bounded concurrency, a time-out, retries with
exponential back-off and jitter, a response cache in the artifact store, and metrics.

``ManagedTeacher`` satisfies the ``Teacher`` Protocol itself, so techniques receive it
as their ``teacher`` and never see the difference. The cache key hashes the teacher's
kind and model, the messages and every generation parameter, and lives at
``cache/teacher/<sha256>.json``: a rerun after a crash makes no repeated calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from syllabus.contracts import (
    ArtifactStore,
    ChatMessage,
    Completion,
    GenerationParams,
    Teacher,
    TeacherError,
    TeacherRef,
    content_id,
    teacher_cache_key,
)

from ._metrics import TEACHER_CACHE, TEACHER_CALLS, TEACHER_SECONDS, TEACHER_TOKENS
from ._plugins import PluginManager
from ._settings import TeacherSettings

__all__ = ["ManagedTeacher", "TaskStats", "TeacherStats", "make_teacher"]

log = logging.getLogger("syllabus.teacher")


@dataclass
class TaskStats:
    """One task's calls (``GenerationParams.task``: qa_pairs, curate, judge...)."""

    #: requests made, cache hits and ``ask``'s retries included
    requests: int = 0
    #: ``ask``'s second requests, after an output that could not be used
    parse_retries: int = 0
    #: the runtime's retries after a failed call (time-outs, 429s, 5xx)
    retries: int = 0
    #: calls that failed for good
    failures: int = 0
    completion_tokens: int = 0


@dataclass
class TeacherStats:
    #: calls the teacher answered (cache hits not included)
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    #: calls that failed for good (after their retries)
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: the answered calls' durations, summed (over concurrency: more than the wall time)
    seconds: float = 0.0
    #: wall time with at least one call in flight
    busy_seconds: float = 0.0
    #: per task (``GenerationParams.task``; "other" when unset)
    tasks: dict[str, TaskStats] = dataclasses.field(default_factory=dict)

    def task(self, name: str | None) -> TaskStats:
        return self.tasks.setdefault(name or "other", TaskStats())


class ManagedTeacher:
    def __init__(self, inner: Teacher, *, settings: TeacherSettings,
                 store: ArtifactStore | None) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.model = inner.model
        #: a base model: techniques send few-shot completion prompts (``params.prompt``)
        self.base_model = bool(getattr(inner, "base_model", False))
        #: tasks the teacher refuses outright (``Teacher.refuses``): techniques check this
        #: before asking, so a refusal is a labelled fallback, not a failed call
        self.refuses = frozenset(getattr(inner, "refuses", ()))
        #: the languages it reads and writes, ``None`` for any (``syllabus.contracts.
        #: unsupported``): a chunk in another language is passed over, with that reason
        languages = getattr(inner, "languages", None)
        self.languages = tuple(languages) if languages is not None else None
        self.settings = settings
        self.store = store if settings.cache else None
        self.stats = TeacherStats()
        self._sem = asyncio.Semaphore(settings.concurrency)
        self._in_flight = 0
        self._busy_since = 0.0

    @property
    def ref(self) -> TeacherRef:
        return TeacherRef(kind=self.kind, model=self.model)

    def cache_key(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str:
        # function-calling fields (tool_calls, tool_call_id, name; tools, tool_choice), the
        # completion prompt and the attempt are hashed when set and left out when unset, so
        # plain calls keep their earlier keys
        unset = {k for k in ("tools", "tool_choice", "prompt") if getattr(params, k) is None}
        if params.attempt == 1:
            unset.add("attempt")
        digest = content_id(self.kind, self.model,
                            [m.model_dump(mode="json", exclude_none=True) for m in messages],
                            params.model_dump(mode="json", exclude=unset))
        return teacher_cache_key(digest)

    async def complete(self, messages: Sequence[ChatMessage], *,
                       params: GenerationParams) -> Completion:
        key = self.cache_key(messages, params)
        labels = {"kind": self.kind, "model": self.model}
        task = self.stats.task(params.task)
        task.requests += 1
        if params.attempt > 1:
            task.parse_retries += 1
        if self.store is not None:
            cached = await asyncio.to_thread(_read_cache, self.store, key)
            if cached is not None:
                self.stats.cache_hits += 1
                TEACHER_CACHE.labels(**labels).inc()
                return cached
        s = self.settings
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                async with self._sem:
                    started = time.perf_counter()
                    self._enter()
                    try:
                        result = await asyncio.wait_for(
                            self.inner.complete(messages, params=params), timeout=s.timeout)
                    finally:
                        self._leave()
            except (TeacherError, TimeoutError, ConnectionError, OSError) as exc:
                retryable = getattr(exc, "retryable", True)
                TEACHER_CALLS.labels(**labels, outcome="error").inc()
                if not retryable or attempt > s.max_retries:
                    self.stats.failures += 1
                    task.failures += 1
                    if isinstance(exc, TeacherError):
                        raise
                    raise TeacherError(f"{self.kind} teacher call failed: {type(exc).__name__}: "
                                       f"{str(exc) or 'timed out'}", retryable=True) from exc
                delay = min(s.backoff_max, s.backoff_base * 2 ** (attempt - 1))
                delay = random.uniform(0.5, 1.0) * delay  # jitter
                retry_after = getattr(exc, "retry_after", None)
                if retry_after:
                    delay = max(delay, min(float(retry_after), s.backoff_max))
                self.stats.retries += 1
                task.retries += 1
                log.warning("%s teacher call failed (%s: %s), retry %d/%d in %.1fs", self.kind,
                            type(exc).__name__, str(exc) or "timed out", attempt, s.max_retries,
                            delay)
                await asyncio.sleep(delay)
                continue
            elapsed = time.perf_counter() - started
            break
        result = result.model_copy(update={"latency_seconds": elapsed, "cached": False})
        self.stats.calls += 1
        self.stats.seconds += elapsed
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.completion_tokens += result.completion_tokens
        task.completion_tokens += result.completion_tokens
        TEACHER_CALLS.labels(**labels, outcome="ok").inc()
        TEACHER_SECONDS.labels(**labels).observe(elapsed)
        TEACHER_TOKENS.labels(**labels, direction="prompt").inc(result.prompt_tokens)
        TEACHER_TOKENS.labels(**labels, direction="completion").inc(result.completion_tokens)
        if self.store is not None:
            await asyncio.to_thread(self.store.put, key,
                                    result.model_dump_json().encode(),
                                    content_type="application/json")
        return result

    def snapshot(self) -> TeacherStats:
        """The stats now, the busy time of calls still in flight included."""
        busy = self.stats.busy_seconds
        if self._in_flight:
            busy += time.perf_counter() - self._busy_since
        return dataclasses.replace(
            self.stats, busy_seconds=busy,
            tasks={k: dataclasses.replace(v) for k, v in self.stats.tasks.items()})

    def _enter(self) -> None:
        if self._in_flight == 0:
            self._busy_since = time.perf_counter()
        self._in_flight += 1

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self.stats.busy_seconds += time.perf_counter() - self._busy_since

    async def aclose(self) -> None:
        closer = getattr(self.inner, "aclose", None)
        if closer is not None:
            await closer()


def _read_cache(store: ArtifactStore, key: str) -> Completion | None:
    try:
        if not store.exists(key):
            return None
        return Completion.model_validate(json.loads(store.get(key))).model_copy(
            update={"cached": True})
    except Exception as exc:  # a damaged cache entry is a miss, not a failure
        log.warning("ignoring unreadable teacher cache entry %s: %s", key, exc)
        return None


def make_teacher(settings: TeacherSettings, plugins: PluginManager,
                 store: ArtifactStore | None) -> ManagedTeacher:
    """The configured teacher, wrapped. ``kind`` picks the ``TeacherFactory``."""
    factories = {r.obj.kind: r.obj for r in plugins.objects("register_teachers")}
    if settings.kind not in factories:
        known = ", ".join(sorted(factories)) or "none"
        raise ValueError(f"no teacher of kind {settings.kind!r} is installed (known: {known})")
    options: dict[str, Any] = dict(settings.options)
    for name in ("model", "url", "timeout", "concurrency"):
        value = getattr(settings, name)
        if value is not None:
            options.setdefault(name, value)
    if settings.api_key is not None:
        options.setdefault("api_key", settings.api_key.get_secret_value())
    return ManagedTeacher(factories[settings.kind].create(options), settings=settings, store=store)
