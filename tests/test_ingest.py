"""The ingest service on a real nats-server, with the local store and a real S3 server:
the examples end to end, bad inputs, idempotent re-ingest, two replicas de-duplicating,
redelivery after a failure."""

from __future__ import annotations

import asyncio
import io
import random
from collections import Counter

from syllabus.contracts import (
    CHUNKS_CREATED,
    CHUNKS_DROPPED,
    DLQ_ALL,
    DOCUMENTS_INGESTED,
    DOCUMENTS_REJECTED,
    ChunkCreated,
    ChunkDropped,
    DocumentIngested,
    DocumentRejected,
    DocumentSubmitted,
    RejectionReason,
)
from syllabus.services.cli._run import wait_drained
from syllabus.services.ingest import build_router, iter_files, submit_file, submit_path
from syllabus.services.runtime import LocalStore, Runtime, replay

from ._docs import write_bad_inputs
from .conftest import EXAMPLES


async def _ingest_runtime(settings, *, store=None, name="ingest-test") -> Runtime:
    rt = Runtime.create(settings, store=store, client_name=name)
    rt.bus.broker.include_router(build_router(rt))
    await rt.bus.start()
    return rt


async def _events(rt: Runtime, subject: str, model):
    return [model.model_validate_json(m.data) for m in await replay(rt.bus, subject)]


async def test_examples_end_to_end_on_s3(settings, s3_store):
    settings.collection = "bees"
    rt = await _ingest_runtime(settings, store=s3_store)
    try:
        files = list(iter_files([EXAMPLES]))
        docs = [f for f in files if f.suffix in {".pdf", ".html", ".md", ".txt"}]
        assert len(docs) >= 7
        for f in docs:
            res = await submit_path(rt, f, collection="bees", run_id="r1")
            assert res.outcome == "submitted", res
        await wait_drained(rt, timeout=120)

        ingested = await _events(rt, DOCUMENTS_INGESTED, DocumentIngested)
        assert sorted(e.filename for e in ingested) == sorted(f.name for f in docs)
        assert await _events(rt, DOCUMENTS_REJECTED, DocumentRejected) == []
        chunks = await _events(rt, CHUNKS_CREATED, ChunkCreated)
        assert len(chunks) == len({c.chunk_id for c in chunks}) >= 2 * len(docs)
        by_doc = {e.doc_id: e for e in ingested}
        for c in chunks:
            # stored once under its content id, in S3, with its lineage
            assert ChunkCreated.model_validate_json(s3_store.get(c.store_key)) == c
            assert c.lineage.doc_id in by_doc and c.chunk_id in by_doc[c.lineage.doc_id].chunk_ids
            assert c.token_count <= settings.ingest.max_tokens
            if c.lineage.media_type == "application/pdf":
                assert c.lineage.pages and all(p >= 1 for p in c.lineage.pages)
        pdfs = [e for e in ingested if e.media_type == "application/pdf"]
        assert pdfs and all(e.pages >= 2 for e in pdfs)
        # the reposted waggle-dance article and the original share near-duplicate chunks:
        # whichever of the two was handled second lost them
        dropped = await _events(rt, CHUNKS_DROPPED, ChunkDropped)
        pair = {e.doc_id: e for e in ingested
                if e.filename in ("waggle-dance-repost.md", "foragers-waggle-dance.html")}
        assert len(pair) == 2
        assert sum(sum(e.chunks_dropped.values()) for e in pair.values()) >= 3
        near = [d for d in dropped if d.doc_id in pair and d.reason == "near_duplicate"]
        assert near and all(d.similarity >= settings.ingest.near_duplicate_threshold for d in near)
        kept = {c.chunk_id: c for c in chunks}
        assert all(kept[d.duplicate_of].lineage.doc_id in pair for d in near)
        # headers and footers repeated on every PDF page never reach a chunk
        assert not any("Page 1 of" in c.text or "Page 2 of" in c.text for c in chunks)
        assert await replay(rt.bus, DLQ_ALL) == []
    finally:
        await rt.bus.close()


async def test_word_and_powerpoint_files_become_chunks_with_their_lineage(settings, tmp_path):
    """A Word document and a deck through the real service: each chunk names its
    document's media type, its heading path and (for the deck) its slides, whatever the
    files are called."""
    from ._office import HANDBOOK, handbook_docx_bytes, talk_pptx_bytes

    settings.ingest.min_tokens = 4  # the deck's slides are short
    rt = await _ingest_runtime(settings)
    try:
        (tmp_path / "handbook.docx").write_bytes(handbook_docx_bytes())
        (tmp_path / "talk.bin").write_bytes(talk_pptx_bytes())  # no Office name at all
        for name in ("handbook.docx", "talk.bin"):
            res = await submit_path(rt, tmp_path / name, collection="office", run_id="r1")
            assert res.outcome == "submitted", res
        await wait_drained(rt, timeout=60)
        assert await _events(rt, DOCUMENTS_REJECTED, DocumentRejected) == []
        ingested = {e.filename: e for e in await _events(rt, DOCUMENTS_INGESTED, DocumentIngested)}
        assert ingested["talk.bin"].pages == 3
        assert ingested["talk.bin"].media_type.endswith("presentationml.presentation")
        chunks = await _events(rt, CHUNKS_CREATED, ChunkCreated)
        word = [c for c in chunks if c.lineage.filename == "handbook.docx"]
        deck = [c for c in chunks if c.lineage.filename == "talk.bin"]
        assert word and deck
        assert all(c.lineage.media_type.endswith("wordprocessingml.document") for c in word)
        brood = [c for c in word if HANDBOOK["brood"][:30] in c.text]
        assert brood and brood[0].lineage.section == [HANDBOOK["title"], "Brood"]
        assert all(c.lineage.pages == [] for c in word)
        assert {p for c in deck for p in c.lineage.pages} == {1, 2, 3}
        notes = [c for c in deck if "wear a veil" in c.text]
        assert notes and notes[0].lineage.pages == [1]
        assert await replay(rt.bus, DLQ_ALL) == []
    finally:
        await rt.bus.close()


async def test_bad_inputs_are_rejected_with_reasons_and_good_ones_still_ingested(settings, tmp_path):
    settings.ingest.max_file_bytes = 200_000
    rt = await _ingest_runtime(settings)
    try:
        bad = write_bad_inputs(tmp_path / "bad")
        big = tmp_path / "bad" / "huge.txt"
        big.write_bytes(b"bees " * 50_000)  # 250 kB, over the limit set above
        bad["huge.txt"] = (big, RejectionReason.TOO_LARGE)
        for path, _ in bad.values():
            await submit_path(rt, path, collection="bad", run_id="r1")
        # an upload whose name tries to leave its folder, through the submit path ...
        res = await submit_file(rt, io.BytesIO(b"hello bees"), filename="../../etc/passwd",
                                collection="bad", run_id="r1")
        assert res.outcome == "rejected" and res.reason == "unsafe_name"
        # ... and straight on the bus from a careless producer
        rt.store.put("documents/x", b"hello")
        await rt.bus.publish(DocumentSubmitted(
            doc_id="f" * 64, collection="bad", filename="..\\..\\boot.ini", store_key="documents/x",
            size_bytes=5, run_id="r1"))
        good = EXAMPLES / "swarming.md"
        await submit_path(rt, good, collection="bad", run_id="r1")
        await wait_drained(rt, timeout=60)

        rejected = await _events(rt, DOCUMENTS_REJECTED, DocumentRejected)
        got = Counter((r.filename, r.reason) for r in rejected)
        for name, (_, reason) in bad.items():
            assert got[(name, reason)] == 1, (name, reason, got)
        unsafe = [r for r in rejected if r.reason is RejectionReason.UNSAFE_NAME]
        assert len(unsafe) == 2
        assert all("not allowed" in r.detail for r in unsafe)
        for r in rejected:
            assert r.detail  # every rejection says why
        ingested = await _events(rt, DOCUMENTS_INGESTED, DocumentIngested)
        assert [e.filename for e in ingested] == ["swarming.md"]
        assert await replay(rt.bus, DLQ_ALL) == []
    finally:
        await rt.bus.close()


async def test_reingest_gives_same_chunk_ids_and_no_new_announcements(settings):
    # long enough to outlast the first drain on a loaded 2-core machine, short enough to wait
    settings.nats.duplicate_window = 4.0
    rt = await _ingest_runtime(settings)
    try:
        docs = [EXAMPLES / "swarming.md", EXAMPLES / "honeybee-colony.pdf"]
        for d in docs:
            assert (await submit_path(rt, d, collection="re", run_id="r1")).outcome == "submitted"
        await wait_drained(rt, timeout=60)
        first = await _events(rt, CHUNKS_CREATED, ChunkCreated)
        assert first

        # again at once: JetStream drops the duplicate submissions (same Nats-Msg-Id)
        for d in docs:
            assert (await submit_path(rt, d, collection="re", run_id="r2")).outcome == "duplicate"
        # again after the duplicate window: ingest sees them, and announces nothing new
        await asyncio.sleep(4.5)
        for d in docs:
            assert (await submit_path(rt, d, collection="re", run_id="r3")).outcome == "submitted"
        await wait_drained(rt, timeout=60)

        assert await _events(rt, CHUNKS_CREATED, ChunkCreated) == first
        ingested = await _events(rt, DOCUMENTS_INGESTED, DocumentIngested)
        r1 = {e.filename: e for e in ingested if e.run_id == "r1"}
        r3 = {e.filename: e for e in ingested if e.run_id == "r3"}
        assert set(r3) == {d.name for d in docs}
        for name, e in r3.items():
            assert e.chunk_ids == []
            assert e.chunks_dropped == {"already_ingested": len(r1[name].chunk_ids)}
    finally:
        await rt.bus.close()


def _paragraph(rng: random.Random, n: int = 80) -> str:
    """About 250 (approximate) tokens: one chunk. One word changed in the middle leaves
    Jaccard ~0.88 on five-word shingles."""
    words = "hive comb brood nectar pollen queen drone worker wax frame colony swarm".split()
    return " ".join(rng.choice(words) + str(rng.randint(0, 9999)) for _ in range(n)) + "."


async def test_two_replicas_share_the_consumer_and_the_dedup_state(settings):
    rng = random.Random(11)
    replicas = [await _ingest_runtime(settings, name=f"replica-{i}") for i in range(2)]
    try:
        groups = 10
        for g in range(groups):
            base = _paragraph(rng)
            words = base.split()
            words[len(words) // 2] = "changed"
            variants = [base, "  " + base.upper() + "\n", " ".join(words)]  # same, exact, near
            for v, text in enumerate(variants):
                res = await submit_file(replicas[(g + v) % 2], io.BytesIO(text.encode()),
                                        filename=f"g{g}-v{v}.txt", collection="dup", run_id="r1")
                assert res.outcome == "submitted"
        await asyncio.gather(*(wait_drained(r, timeout=120) for r in replicas))

        chunks = await _events(replicas[0], CHUNKS_CREATED, ChunkCreated)
        dropped = await _events(replicas[0], CHUNKS_DROPPED, ChunkDropped)
        gone = {(d.chunk_id, d.doc_id) for d in dropped}
        kept = [c for c in chunks if (c.chunk_id, c.lineage.doc_id) not in gone]
        # one per group, and always the variant submitted first, however the replicas raced
        assert sorted(c.lineage.filename for c in kept) == sorted(f"g{g}-v0.txt"
                                                                  for g in range(groups))
        assert Counter(d.reason.value for d in dropped) == {"exact_duplicate": groups,
                                                             "near_duplicate": groups}
    finally:
        for r in replicas:
            await r.bus.close()


class FlakyStore(LocalStore):
    """A real local store whose first read of a document fails, as a network blip would."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.failures = 0

    def get(self, key: str) -> bytes:
        if key.startswith("documents/") and self.failures == 0:
            self.failures += 1
            raise ConnectionError("store unreachable")
        return super().get(key)


async def test_failed_ingest_is_redelivered_and_then_succeeds(settings, tmp_path):
    store = FlakyStore(tmp_path / "flaky")
    rt = await _ingest_runtime(settings, store=store)
    try:
        await submit_path(rt, EXAMPLES / "swarming.md", collection="flaky", run_id="r1")
        await wait_drained(rt, timeout=60)
        assert store.failures == 1
        [ingested] = await _events(rt, DOCUMENTS_INGESTED, DocumentIngested)
        assert ingested.chunk_ids
        assert await replay(rt.bus, DLQ_ALL) == []
    finally:
        await rt.bus.close()


class FailsOnce(LocalStore):
    """A real local store whose first read of one document fails, so its message is
    redelivered after the back-off, as after a crash: documents submitted after it are
    handled first."""

    def __init__(self, root, key: str) -> None:
        super().__init__(root)
        self.key = key
        self.armed = False
        self.failures = 0

    def get(self, key: str) -> bytes:
        if key == self.key and self.armed:
            self.armed = False
            self.failures += 1
            raise ConnectionError("replica lost")
        return super().get(key)


async def _effective_chunks(rt: Runtime, collection: str) -> set[tuple[str, str]]:
    dropped = {(d.chunk_id, d.doc_id) for d in await _events(rt, CHUNKS_DROPPED, ChunkDropped)
               if d.collection == collection and d.reason.value != "already_ingested"}
    return {(c.chunk_id, c.lineage.filename) for c in await _events(rt, CHUNKS_CREATED,
                                                                      ChunkCreated)
            if c.collection == collection and (c.chunk_id, c.lineage.doc_id) not in dropped}


async def test_a_redelivered_original_still_wins_over_its_repost(settings, tmp_path):
    """The original is submitted first, but its first delivery fails, so its repost (near
    duplicates of its chunks) is handled and announced first. When the original comes back
    it supersedes them: the collection ends with the same chunks, credited to the same
    documents, as when nothing failed."""
    from syllabus.contracts import document_key, sha256_hex

    original = (EXAMPLES / "foragers-waggle-dance.html").read_bytes()
    repost = (EXAMPLES / "waggle-dance-repost.md").read_bytes()
    docs = [("foragers-waggle-dance.html", original), ("waggle-dance-repost.md", repost),
            ("swarming.md", (EXAMPLES / "swarming.md").read_bytes())]
    settings.bus.backoff = [3.0]  # the repost is long done when the original comes back
    store = FailsOnce(tmp_path / "store", document_key(sha256_hex(original)))
    rt = await _ingest_runtime(settings, store=store)
    try:
        for collection in ("clean", "failed"):
            store.armed = collection == "failed"
            for name, data in docs:
                res = await submit_file(rt, io.BytesIO(data), filename=name,
                                        collection=collection, run_id=f"r-{collection}")
                assert res.outcome == "submitted"
            await wait_drained(rt, timeout=60)
        assert store.failures == 1

        clean = await _effective_chunks(rt, "clean")
        failed = await _effective_chunks(rt, "failed")
        assert clean == failed
        assert "foragers-waggle-dance.html" in {name for _, name in clean}
        superseded = [d for d in await _events(rt, CHUNKS_DROPPED, ChunkDropped)
                      if d.collection == "failed" and d.superseded]
        assert superseded, "the repost was handled first, so the original must supersede it"
        assert {d.doc_id for d in superseded} == {sha256_hex(repost)}
        assert all(d.duplicate_doc_id == sha256_hex(original) for d in superseded)
        assert await replay(rt.bus, DLQ_ALL) == []
    finally:
        await rt.bus.close()
