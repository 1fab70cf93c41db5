"""The rationale handler."""

from __future__ import annotations

import logging

from faststream.nats import NatsRouter

from syllabus.contracts import (
    QA_GENERATED,
    QA_RATIONALIZED,
    PluginRef,
    QARecord,
    RecordDecision,
    unsupported,
)
from syllabus.plugins._language import record_language

from ..runtime import HandlerContext, Runtime
from ..runtime._records import chunk_text, publish_output

__all__ = ["SERVICE", "build_router"]

SERVICE = "rationale"
log = logging.getLogger("syllabus.rationale")


def build_router(rt: Runtime) -> NatsRouter:
    cfg = rt.settings.rationale
    reg = rt.plugins.get("register_rationale_generators", cfg.technique) if cfg.technique else None
    teacher = rt.teacher() if reg is not None else None
    router = NatsRouter()

    # teacher-bound: keep at least as many messages in flight as the teacher takes calls
    concurrency = max(rt.settings.bus.concurrency,
                      teacher.settings.concurrency if teacher is not None else 0)

    @rt.bus.consumer(router, service=SERVICE, subject=QA_GENERATED, model=QARecord,
                     concurrency=concurrency)
    async def add_rationale(record: QARecord, ctx: HandlerContext) -> None:
        """Add a step-by-step rationale to a record (or forward it unchanged)."""
        run_id = record.run_id or ctx.run_id
        if reg is None:
            await rt.bus.publish(record, subject=QA_RATIONALIZED)
            return
        technique = PluginRef(name=reg.name, version=reg.version)
        language = record_language(record)
        why = unsupported(language, [(reg.name, reg.obj), (f"the {teacher.kind} teacher",
                                                           teacher)])
        if why is not None:  # the record goes on without a rationale; its decision says
            # why (the run report counts it, as it counts the filters' passed-over records)
            decision = RecordDecision(filter=reg.name, kept=True, reason=f"passed over: {why}",
                                      details={"passed_over": "language", "language": language,
                                               "dropped": "passed over (language)"})
            await rt.bus.publish(record.model_copy(update={
                "decisions": [*record.decisions, decision], "run_id": run_id}),
                subject=QA_RATIONALIZED)
            return
        context = await chunk_text(rt, record.chunk_id)
        out = await reg.obj.rationalize(record, context=context, teacher=teacher,
                                        options=dict(cfg.options))
        await publish_output(rt, out, stage=SERVICE, subject=QA_RATIONALIZED,
                             technique=technique, teacher=teacher.ref,
                             collection=record.collection, chunk_id=record.chunk_id,
                             run_id=run_id)

    return router
