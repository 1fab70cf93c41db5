"""The sycophancy-filter handler."""

from __future__ import annotations

import logging

from faststream.nats import NatsRouter

from syllabus.contracts import (
    QA_RATIONALIZED,
    RECORDS_ACCEPTED,
    RECORDS_REJECTED,
    TASK_EDUCATIONAL,
    QARecord,
    RecordDecision,
    unsupported,
)
from syllabus.plugins._language import record_language

from ..runtime import RECORDS, HandlerContext, Runtime, default_embedder
from ..runtime._records import chunk_text

__all__ = ["SERVICE", "build_router"]

SERVICE = "sycophancy-filter"
log = logging.getLogger("syllabus.sycophancy_filter")

#: filters that call the teacher (the service makes one only when one of these is on)
TEACHER_FILTERS = {"llm-judge", "educational-value"}
#: filters that keep state in the store and embed text (phi-1's classifier); the service
#: hands them the store and the embedder, since plugins never import the runtime
STORE_EMBEDDER_FILTERS = {"educational-value"}


def build_router(rt: Runtime) -> NatsRouter:
    cfg = rt.settings.filters
    filters = [rt.plugins.get("register_filters", name) for name in cfg.techniques]
    uses_teacher = {name for name in cfg.techniques
                    if name in TEACHER_FILTERS or cfg.options.get(name, {}).get("use_teacher")}
    needs_teacher = bool(uses_teacher)
    teacher = rt.teacher() if needs_teacher else None
    if "educational-value" in cfg.techniques and teacher is not None and \
            TASK_EDUCATIONAL in teacher.refuses:  # named when the service starts
        raise ValueError(f"filters.techniques has educational-value, which needs a language "
                         f"model to annotate educational value, and the {teacher.kind} "
                         "teacher refuses that task: configure an LLM teacher (local, "
                         "openai, ...) or leave educational-value out")
    router = NatsRouter()

    # teacher-bound: keep at least as many messages in flight as the teacher takes calls
    concurrency = max(rt.settings.bus.concurrency,
                      teacher.settings.concurrency if teacher is not None else 0)

    @rt.bus.consumer(router, service=SERVICE, subject=QA_RATIONALIZED, model=QARecord,
                     concurrency=concurrency)
    async def filter_record(record: QARecord, ctx: HandlerContext) -> None:
        """Run every filter on a record; accept it or reject it, with the reasons."""
        context = await chunk_text(rt, record.chunk_id)
        decisions = list(record.decisions)
        scores = dict(record.scores)
        language = record_language(record)
        for reg in filters:
            parties = [(reg.name, reg.obj)]
            if reg.name in uses_teacher and teacher is not None:
                parties.append((f"the {teacher.kind} teacher", teacher))
            why = unsupported(language, parties)
            if why is not None:  # not judged by rules of another language: kept, and said
                decisions.append(RecordDecision(
                    filter=reg.name, kept=True, reason=f"passed over: {why}",
                    details={"passed_over": "language", "language": language}))
                continue
            options = dict(cfg.options.get(reg.name, {}))
            if reg.name in STORE_EMBEDDER_FILTERS:
                options.update(store=rt.store, embedder=default_embedder())
            decision = await reg.obj.judge(record, context=context, teacher=teacher,
                                           options=options)
            decisions.append(decision)
            if decision.score is not None:
                scores[reg.name] = decision.score
            if not decision.kept and cfg.short_circuit:
                break
        out = record.model_copy(update={"decisions": decisions, "scores": scores,
                                        "run_id": record.run_id or ctx.run_id})
        if out.rejected:
            reason = next(d.filter for d in decisions if not d.kept)
            await rt.bus.publish(out, subject=RECORDS_REJECTED)
            RECORDS.labels(stage=SERVICE, outcome="rejected", reason=reason).inc()
        else:
            await rt.bus.publish(out, subject=RECORDS_ACCEPTED)
            RECORDS.labels(stage=SERVICE, outcome="accepted", reason="").inc()

    return router
