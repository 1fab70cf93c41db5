"""The dataset-builder handler: ``DatasetRequested`` in, ``DatasetBuilt`` out."""

from __future__ import annotations

import logging

from faststream.nats import NatsRouter

from syllabus.contracts import (
    DATASETS_REQUESTED,
    RECORDS_ACCEPTED,
    DatasetFailed,
    DatasetRequested,
    PluginRef,
    unsupported,
)
from syllabus.plugins._language import record_language

from ..runtime import HandlerContext, Runtime
from ..runtime._records import pass_over, publish_output
from ._build import BuildRefused, build, load_accepted

__all__ = ["SERVICE", "build_router"]

SERVICE = "dataset-builder"
log = logging.getLogger("syllabus.datasets")


async def augment(rt: Runtime, request: DatasetRequested, augmenters: list) -> None:
    """Run the augmenters on the collection's accepted records; what they keep joins the
    accepted stream (and so the build's synthetic pool), what filtration drops goes to
    syllabus.records.rejected with the reason, unusable output to generation.failed."""
    cfg = rt.settings.datasets
    # augmenters read instruction records: not their own output, not tool trajectories
    records = [r for r in await load_accepted(rt, request.collection)
               if r.kind not in ("anti_sycophancy", "tool")]
    if not records:
        return
    teacher = rt.teacher()
    languages = {r.record_id: record_language(r) for r in records}
    for reg in augmenters:
        technique = PluginRef(name=reg.name, version=reg.version)
        given = []
        for r in records:  # an augmenter with rules of one language is not given others
            why = unsupported(languages[r.record_id], [(reg.name, reg.obj)])
            if why is None:
                given.append(r)
            else:
                await pass_over(rt, stage=SERVICE, technique=technique, teacher=None,
                                collection=request.collection, chunk_id=r.chunk_id,
                                record_id=r.record_id, language=languages[r.record_id],
                                detail=why, run_id=request.run_id)
        if not given:
            continue
        out = await reg.obj.augment(given, teacher=teacher,
                                    options=dict(cfg.augmenter_options.get(reg.name, {})))
        await publish_output(rt, out, stage=SERVICE, subject=RECORDS_ACCEPTED,
                             technique=technique,
                             teacher=teacher.ref, collection=request.collection,
                             chunk_id=None, run_id=request.run_id)
        log.info("%s: %d synthetic records for %s", reg.name,
                 sum(not r.rejected for r in out.records), request.collection)


def build_router(rt: Runtime) -> NatsRouter:
    router = NatsRouter()
    # unknown augmenters fail here, when the service starts
    augmenters = [rt.plugins.get("register_augmenters", name)
                  for name in rt.settings.datasets.augmenters]

    # one build at a time: a build holds the collection's records and embeddings in memory
    @rt.bus.consumer(router, service=SERVICE, subject=DATASETS_REQUESTED,
                     model=DatasetRequested, concurrency=1)
    async def build_requested(request: DatasetRequested, ctx: HandlerContext) -> None:
        """Build the requested data set version and announce it on syllabus.datasets.built
        (or, when it can build nothing, say why on syllabus.datasets.failed)."""
        if request.run_id is None and ctx.run_id:
            request = request.model_copy(update={"run_id": ctx.run_id})
        try:
            if augmenters:
                await augment(rt, request, augmenters)
            # the service reads evaluation sets from the store only, never the pod's files
            result = await build(rt, request, allow_local_files=False)
        except BuildRefused as exc:
            # the same request would fail the same way again: answer it, do not retry it
            await rt.bus.publish(DatasetFailed(
                collection=request.collection, reason=exc.reason, detail=exc.detail,
                request_id=request.dedup_id(), run_id=request.run_id))
            log.warning("no data set for %s: %s", request.collection, exc.detail)
            return
        await rt.bus.publish(result.event)
        log.info("data set %s built (%s)", result.event.prefix,
                 "written" if result.written else "already in the store")

    return router
