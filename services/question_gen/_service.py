"""The question-gen handler."""

from __future__ import annotations

import logging

from faststream.nats import NatsRouter

from syllabus.contracts import CHUNKS_CREATED, QA_GENERATED, ChunkCreated, PluginRef, unsupported

from ..runtime import HandlerContext, Runtime
from ..runtime._records import pass_over, publish_output

__all__ = ["SERVICE", "build_router"]

SERVICE = "question-gen"
log = logging.getLogger("syllabus.question_gen")


def build_router(rt: Runtime) -> NatsRouter:
    cfg = rt.settings.question_gen
    if not cfg.techniques:
        raise ValueError("question_gen.techniques is empty: name at least one question "
                         "generator (e.g. qa-pairs, backtranslation)")
    # unknown plugins and teachers fail here, when the service starts
    generators = [rt.plugins.get("register_question_generators", name) for name in cfg.techniques]
    teacher = rt.teacher()
    router = NatsRouter()

    # teacher-bound: keep at least as many messages in flight as the teacher takes calls
    @rt.bus.consumer(router, service=SERVICE, subject=CHUNKS_CREATED,
                     concurrency=max(rt.settings.bus.concurrency, teacher.settings.concurrency))
    async def generate_questions(chunk: ChunkCreated, ctx: HandlerContext) -> None:
        """Write instruction/response records from one chunk."""
        run_id = chunk.run_id or ctx.run_id
        for reg in generators:
            technique = PluginRef(name=reg.name, version=reg.version)
            why = unsupported(chunk.lineage.language, [
                (reg.name, reg.obj), (f"the {teacher.kind} teacher", teacher)])
            if why is not None:  # e.g. a German chunk and the extractive teacher's rules
                await pass_over(rt, stage=SERVICE, technique=technique, teacher=teacher.ref,
                                collection=chunk.collection, chunk_id=chunk.chunk_id,
                                record_id=None, language=chunk.lineage.language,
                                detail=why, run_id=run_id)
                continue
            out = await reg.obj.generate(chunk, teacher=teacher,
                                         options=dict(cfg.options.get(reg.name, {})))
            await publish_output(rt, out, stage=SERVICE, subject=QA_GENERATED,
                                 technique=technique, teacher=teacher.ref,
                                 collection=chunk.collection, chunk_id=chunk.chunk_id,
                                 run_id=run_id)
            log.info("%s: %d records, %d failures from chunk %s", reg.name, len(out.records),
                     len(out.failures), chunk.chunk_id[:12])

    return router
