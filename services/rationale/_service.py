"""The rationale handler."""

from __future__ import annotations

import logging

from faststream.nats import NatsRouter

from syllabus.contracts import (
    QA_GENERATED,
    QA_RATIONALIZED,
    ChunkCreated,
    PluginRef,
    QARecord,
    chunk_key,
)

from ..runtime import HandlerContext, ObjectNotFound, Runtime
from ..runtime._records import publish_output

__all__ = ["SERVICE", "build_router"]

SERVICE = "rationale"
log = logging.getLogger("syllabus.rationale")


def build_router(rt: Runtime) -> NatsRouter:
    cfg = rt.settings.rationale
    reg = rt.plugins.get("register_rationale_generators", cfg.technique) if cfg.technique else None
    teacher = rt.teacher() if reg is not None else None
    router = NatsRouter()

    @rt.bus.consumer(router, service=SERVICE, subject=QA_GENERATED, model=QARecord)
    async def add_rationale(record: QARecord, ctx: HandlerContext) -> None:
        """Add a step-by-step rationale to a record (or forward it unchanged)."""
        run_id = record.run_id or ctx.run_id
        if reg is None:
            await rt.bus.publish(record, subject=QA_RATIONALIZED)
            return
        context = None
        if record.chunk_id:
            try:
                raw = await rt.to_thread(rt.store.get, chunk_key(record.chunk_id))
                context = ChunkCreated.model_validate_json(raw).text
            except ObjectNotFound:
                log.warning("chunk %s of record %s is not in the store; no context",
                            record.chunk_id, record.record_id)
        out = await reg.obj.rationalize(record, context=context, teacher=teacher,
                                        options=dict(cfg.options))
        await publish_output(rt, out, stage=SERVICE, subject=QA_RATIONALIZED,
                             technique=PluginRef(name=reg.name, version=reg.version),
                             teacher=teacher.ref, collection=record.collection,
                             chunk_id=record.chunk_id, run_id=run_id)

    return router
