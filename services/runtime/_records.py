"""Publishing what a technique returned: kept records to the stage's subject, rejected
records (a decision with ``kept=False``) to ``syllabus.records.rejected``, failures to
``syllabus.generation.failed``. Shared by every record-producing service."""

from __future__ import annotations

from syllabus.contracts import (
    GENERATION_FAILED,
    RECORDS_REJECTED,
    GenerationFailed,
    PluginRef,
    TeacherRef,
    TechniqueOutput,
)

from ._metrics import RECORDS
from ._runtime import Runtime

__all__ = ["publish_output"]


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
