"""Publishing what a technique returned: kept records to the stage's subject, rejected
records (a decision with ``kept=False``) to ``syllabus.records.rejected``, failures to
``syllabus.generation.failed``. Shared by every record-producing service."""

from __future__ import annotations

import logging

from syllabus.contracts import (
    CHUNKS_DROPPED,
    GENERATION_FAILED,
    HEADER_COLLECTION,
    PASSED_OVER,
    RECORDS_REJECTED,
    ChunkCreated,
    ChunkDropped,
    ChunkDropReason,
    GenerationFailed,
    PassedOver,
    PluginRef,
    TeacherRef,
    TechniqueOutput,
    chunk_key,
)

from ._bus import replay
from ._metrics import RECORDS
from ._runtime import Runtime
from ._store import ObjectNotFound

__all__ = ["chunk_text", "dropped_occurrences", "pass_over", "publish_output"]

log = logging.getLogger("syllabus.records")


async def chunk_text(rt: Runtime, chunk_id: str | None) -> str | None:
    """The text of a record's source chunk, from the store (None when it has none)."""
    if not chunk_id:
        return None
    try:
        raw = await rt.to_thread(rt.store.get, chunk_key(chunk_id))
    except ObjectNotFound:
        log.warning("chunk %s is not in the store; the record is handled without context",
                    chunk_id)
        return None
    return ChunkCreated.model_validate_json(raw).text


#: the drops that take an occurrence out of the collection (``already_ingested`` is a
#: later run seeing what is already there: the earlier records stand)
_DUPLICATE_DROPS = {ChunkDropReason.EXACT_DUPLICATE, ChunkDropReason.NEAR_DUPLICATE}


async def dropped_occurrences(rt: Runtime, collection: str) -> set[tuple[str, str]]:
    """``(chunk_id, doc_id)`` of every occurrence that de-duplication dropped, including
    those announced first and superseded later by a document submitted before them
    (``syllabus.services.ingest._dedup``). Their records are not part of the collection."""
    out: set[tuple[str, str]] = set()
    for m in await replay(rt.bus, CHUNKS_DROPPED):
        header = (m.headers or {}).get(HEADER_COLLECTION)
        if header is not None and header != collection:
            continue
        ev = ChunkDropped.model_validate_json(m.data)
        if ev.collection == collection and ev.reason in _DUPLICATE_DROPS:
            out.add((ev.chunk_id, ev.doc_id))
    return out


async def publish_output(rt: Runtime, out: TechniqueOutput, *, stage: str, subject: str,
                         technique: PluginRef, teacher: TeacherRef, collection: str,
                         chunk_id: str | None, run_id: str | None) -> None:
    for record in out.records:
        if run_id and not record.run_id:
            record = record.model_copy(update={"run_id": run_id})
        if record.rejected:
            reason = next(d.filter for d in record.decisions if not d.kept)
            await rt.bus.publish(record, subject=RECORDS_REJECTED)
            RECORDS.labels(stage=stage, outcome="rejected", reason=reason).inc()
        else:
            await rt.bus.publish(record, subject=subject)
            RECORDS.labels(stage=stage, outcome="published", reason="").inc()
    for failure in out.failures:
        await rt.bus.publish(GenerationFailed(
            collection=collection, stage=stage, technique=technique, teacher=teacher,
            chunk_id=chunk_id, record_id=failure.record_id, reason=failure.reason,
            raw_output=failure.raw_output[:20000], run_id=run_id), subject=GENERATION_FAILED)
        RECORDS.labels(stage=stage, outcome="failed", reason="unusable_output").inc()


async def pass_over(rt: Runtime, *, stage: str, technique: PluginRef, teacher: TeacherRef | None,
                    collection: str, chunk_id: str | None, record_id: str | None,
                    language: str | None, detail: str, run_id: str | None) -> None:
    """Publish that ``technique`` was not given a chunk or record (``PassedOver``), so the
    run report counts it: never a silent gap, never a rejection for "low quality"."""
    await rt.bus.publish(PassedOver(
        collection=collection, stage=stage, technique=technique, teacher=teacher,
        chunk_id=chunk_id, record_id=record_id, language=language, detail=detail,
        run_id=run_id), subject=PASSED_OVER)
    RECORDS.labels(stage=stage, outcome="passed_over", reason="language").inc()
    log.info("%s %s: passed over %s (%s)", stage, technique.name,
             (chunk_id or record_id or "?")[:12], detail)
