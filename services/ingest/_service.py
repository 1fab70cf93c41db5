"""The ingest handler: ``syllabus.documents.submitted`` -> parse -> chunk -> de-duplicate ->
``syllabus.chunks.created`` (and ``chunks.dropped``, ``documents.ingested`` or
``documents.rejected``, so every document and every chunk has an outcome on the bus)."""

from __future__ import annotations

import logging
import time
from collections import Counter

from faststream.nats import NatsRouter

from syllabus.contracts import (
    DOCUMENTS_SUBMITTED,
    ChunkCreated,
    ChunkDropped,
    ChunkDropReason,
    ChunkLineage,
    ChunkOptions,
    DocumentIngested,
    DocumentRejected,
    DocumentSubmitted,
    ParseError,
    PluginRef,
    RejectionReason,
    chunk_key,
    content_id,
    normalise_text,
    sha256_hex,
)
from syllabus.plugins._language import detect_language

from ..runtime import (
    CHUNKS,
    DOCUMENTS,
    INGEST_BYTES,
    PARSE_SECONDS,
    HandlerContext,
    ObjectNotFound,
    Runtime,
)
from ._dedup import BUCKET, Deduplicator, VerdictKind
from ._documents import SNIFF_BYTES, Rejection, check_filename, detect_parser, sniff_mismatch

__all__ = ["SERVICE", "build_router", "chunk_key", "reject"]

SERVICE = "ingest"
log = logging.getLogger("syllabus.ingest")


async def reject(rt: Runtime, *, doc_id: str, collection: str, filename: str,
                 reason: RejectionReason, detail: str, run_id: str | None) -> DocumentRejected:
    event = DocumentRejected(doc_id=doc_id, collection=collection, filename=filename,
                             reason=reason, detail=detail, run_id=run_id)
    await rt.bus.publish(event)
    DOCUMENTS.labels(outcome="rejected", reason=reason.value).inc()
    log.warning("rejected %s: %s", filename, detail)
    return event


def _ocr_lineage(ocr_pages: dict[int, float], pages: list[int]) -> dict[str, object]:
    """``ocr`` and ``ocr_confidence`` of a chunk's lineage: whether any of its pages was
    read by OCR, and the lowest confidence among those."""
    scores = [ocr_pages[p] for p in pages if p in ocr_pages]
    return {"ocr": True, "ocr_confidence": min(scores)} if scores else {}


def build_router(rt: Runtime) -> NatsRouter:
    """The ingest service's FastStream router, bound to ``rt``'s bus, store and plugins."""
    cfg = rt.settings.ingest
    parsers = rt.plugins.objects("register_parsers")
    if not parsers:
        raise RuntimeError("ingest needs at least one parser plugin; none is loaded "
                           f"(plugin errors: {rt.plugins.errors or 'none'})")
    chunker_reg = rt.plugins.get("register_chunkers", cfg.chunker)
    options = ChunkOptions(max_tokens=cfg.max_tokens, overlap_tokens=cfg.overlap_tokens,
                           min_tokens=cfg.min_tokens)
    settings_hash = content_id(options.model_dump())[:16]
    chunker_ref = PluginRef(name=f"{chunker_reg.plugin}:{chunker_reg.name}",
                            version=chunker_reg.version)
    dedup: dict[str, Deduplicator] = {}

    async def deduplicator() -> Deduplicator:
        if "d" not in dedup:
            kv = await rt.bus.broker.key_value(BUCKET, history=1)
            dedup["d"] = Deduplicator(kv, threshold=cfg.near_duplicate_threshold,
                                      num_perm=cfg.num_perm, shingle_words=cfg.shingle_words)
        return dedup["d"]

    router = NatsRouter()

    @rt.bus.consumer(router, service=SERVICE, subject=DOCUMENTS_SUBMITTED)
    async def ingest_document(doc: DocumentSubmitted, ctx: HandlerContext) -> None:
        """Parse a submitted document into de-duplicated chunks."""
        run_id = doc.run_id or ctx.run_id
        try:
            check_filename(doc.filename)
            if doc.size_bytes == 0:
                raise Rejection(RejectionReason.EMPTY, f"{doc.filename} is empty (0 bytes)")
            if doc.size_bytes > cfg.max_file_bytes:
                raise Rejection(RejectionReason.TOO_LARGE,
                                f"{doc.filename} is {doc.size_bytes} bytes, over the "
                                f"{cfg.max_file_bytes}-byte limit (ingest.max_file_bytes)")
            try:
                data = await rt.to_thread(rt.store.get, doc.store_key)
            except ObjectNotFound as exc:
                raise Rejection(RejectionReason.MISSING_OBJECT,
                                f"{doc.filename}: {doc.store_key} is not in the store") from exc
            if sha256_hex(data) != doc.doc_id:
                raise Rejection(RejectionReason.CORRUPT,
                                f"{doc.filename}: stored bytes do not match doc_id {doc.doc_id}")
            if not data:
                raise Rejection(RejectionReason.EMPTY, f"{doc.filename} is empty (0 bytes)")
            parser_reg = detect_parser(data[:SNIFF_BYTES], doc.filename, parsers)
            # the content decides the type; a name that says otherwise is worth a warning
            mismatch = sniff_mismatch(doc.filename, getattr(parser_reg.obj, "media_types", ()))
            if mismatch:
                log.warning("%s: %s", doc.filename, mismatch)
            started = time.perf_counter()
            try:
                parsed = await rt.to_thread(parser_reg.obj.parse, data, filename=doc.filename)
            except ParseError as exc:
                detail = exc.detail if exc.detail.startswith(doc.filename) \
                    else f"{doc.filename}: {exc.detail}"
                raise Rejection(exc.reason, detail + (f" ({mismatch})" if mismatch else "")
                                ) from exc
            except Exception as exc:
                log.exception("parser %s failed on %s", parser_reg.name, doc.filename)
                raise Rejection(RejectionReason.CORRUPT,
                                f"{doc.filename}: the {parser_reg.name} parser failed "
                                f"({type(exc).__name__}: {exc})") from exc
        except Rejection as rej:
            await reject(rt, doc_id=doc.doc_id, collection=doc.collection,
                         filename=doc.filename, reason=rej.reason, detail=rej.detail,
                         run_id=run_id)
            return
        parse_seconds = time.perf_counter() - started
        ocr_pages = {sec.page: sec.ocr_confidence for sec in parsed.sections
                     if sec.ocr_confidence is not None and sec.page is not None}
        PARSE_SECONDS.labels(media_type=parsed.media_type).observe(parse_seconds)
        INGEST_BYTES.inc(len(data))

        started = time.perf_counter()
        drafts = await rt.to_thread(chunker_reg.obj.chunk, parsed, options=options)
        chunk_seconds = time.perf_counter() - started
        parser_ref = PluginRef(name=f"{parser_reg.plugin}:{parser_reg.name}",
                               version=parser_reg.version)
        if not drafts:
            await reject(rt, doc_id=doc.doc_id, collection=doc.collection,
                         filename=doc.filename, reason=RejectionReason.TOO_SHORT,
                         detail=f"{doc.filename}: the chunker made no chunk of at least "
                                f"{cfg.min_tokens} tokens (ingest.min_tokens) from its "
                                f"{sum(len(x.text) for x in parsed.sections)} characters of text",
                         run_id=run_id)
            return
        d = await deduplicator()
        # the document's place in the stream orders it before every later submission, the
        # same on a redelivery, after a crash or on another replica (see _dedup)
        doc_rank = ctx.stream_sequence if ctx.stream_sequence is not None else 1 << 62
        announced: list[str] = []
        dropped: Counter[str] = Counter()
        seen_here: set[str] = set()
        for index, draft in enumerate(drafts):
            chunk_id = sha256_hex(normalise_text(draft.text))
            if chunk_id in seen_here:  # the same text twice in one document
                dropped[ChunkDropReason.EXACT_DUPLICATE.value] += 1
                continue
            seen_here.add(chunk_id)
            verdict = await d.check(collection=doc.collection, chunk_id=chunk_id,
                                    doc_id=doc.doc_id, run_id=run_id, text=draft.text,
                                    priority=(doc_rank, index))
            for sup in verdict.supersedes:
                # an occurrence handled before this one that this one drops (it may have
                # been announced: builds leave its records out)
                await rt.bus.publish(ChunkDropped(
                    chunk_id=sup.chunk_id, collection=doc.collection, doc_id=sup.doc_id,
                    reason=ChunkDropReason(sup.reason.value), duplicate_of=chunk_id,
                    duplicate_doc_id=doc.doc_id, similarity=sup.similarity,
                    superseded=True, run_id=sup.run_id))
                CHUNKS.labels(outcome="superseded", reason=sup.reason.value).inc()
            if verdict.kind in (VerdictKind.NEW, VerdictKind.REDELIVERED):
                chunk = ChunkCreated(
                    chunk_id=chunk_id, collection=doc.collection, text=draft.text,
                    token_count=draft.token_count, index=index, store_key=chunk_key(chunk_id),
                    run_id=run_id,
                    lineage=ChunkLineage(
                        doc_id=doc.doc_id, filename=doc.filename, media_type=parsed.media_type,
                        pages=draft.pages, section=draft.heading_path,
                        language=detect_language(draft.text),
                        **_ocr_lineage(ocr_pages, draft.pages),
                        char_start=draft.char_start, char_end=draft.char_end,
                        parser=parser_ref, chunker=chunker_ref, settings_hash=settings_hash))
                if not await rt.to_thread(rt.store.exists, chunk.store_key):
                    await rt.to_thread(rt.store.put, chunk.store_key,
                                       chunk.model_dump_json().encode(),
                                       content_type="application/json")
                await rt.bus.publish(chunk)
                await d.mark_announced(collection=doc.collection, chunk_id=chunk_id,
                                       doc_id=doc.doc_id)
                announced.append(chunk_id)
                if verdict.kind is VerdictKind.NEW:
                    CHUNKS.labels(outcome="created", reason="").inc()
            else:
                reason = ChunkDropReason(verdict.kind.value)
                await rt.bus.publish(ChunkDropped(
                    chunk_id=chunk_id, collection=doc.collection, doc_id=doc.doc_id,
                    reason=reason, duplicate_of=verdict.duplicate_of,
                    similarity=verdict.similarity, run_id=run_id))
                dropped[reason.value] += 1
                CHUNKS.labels(outcome="dropped", reason=reason.value).inc()

        await rt.bus.publish(DocumentIngested(
            doc_id=doc.doc_id, collection=doc.collection, filename=doc.filename,
            media_type=parsed.media_type, parser=parser_ref, chunker=chunker_ref,
            pages=parsed.pages, ocr_pages=len(ocr_pages), size_bytes=len(data),
            chunk_ids=announced,
            chunks_dropped=dict(dropped), parse_seconds=parse_seconds,
            chunk_seconds=chunk_seconds,
            warnings=([mismatch] if mismatch else []) + parsed.warnings, run_id=run_id))
        DOCUMENTS.labels(outcome="ingested", reason="").inc()
        log.info("ingested %s: %d chunks, %d dropped", doc.filename, len(announced),
                 sum(dropped.values()))

    return router
