"""De-duplication state in JetStream KV, shared by replicas: two independent connections
race on the same near-duplicate and exact-duplicate chunks, and of each pair the one with
the smaller priority (the document submitted first) is kept, whichever is handled first."""

from __future__ import annotations

import asyncio
import random

import nats

from syllabus.services.ingest._dedup import BUCKET, Deduplicator, VerdictKind

WORDS = ("hive comb brood nectar pollen queen drone worker wax propolis frame super smoker "
         "veil forage colony swarm cell larva pupa royal jelly dance flower field season "
         "winter cluster mite varroa treatment inspection honey extractor apiary water").split()


def _text(rng: random.Random, n: int = 120) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randint(0, 999)) for _ in range(n)) + "."


def _near_copy(text: str, rng: random.Random, changes: int = 1) -> str:
    """One word changed in 120: about 5 of 116 five-word shingles differ, Jaccard ~0.92."""
    words = text.split()
    for _ in range(changes):
        words[rng.randrange(len(words))] = "changed" + str(rng.randint(0, 99))
    return " ".join(words)


async def _replica(url: str) -> tuple[nats.NATS, Deduplicator]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    kv = await js.create_key_value(bucket=BUCKET, history=1)
    return nc, Deduplicator(kv, threshold=0.8, num_perm=128, shingle_words=5)


def _effective(verdicts, *occurrences):
    """Which of ``occurrences`` ((chunk_id, doc_id)) end up dropped, from their own
    verdicts and the supersessions all the verdicts name."""
    dropped = set()
    for occ, v in zip(occurrences, verdicts, strict=True):
        if v.kind in (VerdictKind.NEAR, VerdictKind.EXACT):
            dropped.add(occ)
        dropped.update((s.chunk_id, s.doc_id) for s in v.supersedes)
    return dropped


async def test_two_replicas_racing_keep_the_earlier_submitted_near_duplicate(nats_server):
    rng = random.Random(7)
    (nc1, d1), (nc2, d2) = await asyncio.gather(_replica(nats_server.url),
                                                _replica(nats_server.url))
    try:
        pairs = []
        for i in range(25):
            original = _text(rng)
            pairs.append((f"a{i:03d}".ljust(64, "0"), original,
                          f"b{i:03d}".ljust(64, "0"), _near_copy(original, rng)))

        async def one_pair(i, a_id, a_text, b_id, b_text):
            # doc-a was submitted first (stream sequence 1), doc-b after it (2); which
            # replica gets there first is up to the race
            return await asyncio.gather(
                d1.check(collection="c1", chunk_id=a_id, doc_id="doc-a", run_id="r",
                         text=a_text, priority=(1, i)),
                d2.check(collection="c1", chunk_id=b_id, doc_id="doc-b", run_id="r",
                         text=b_text, priority=(2, i)))

        results = await asyncio.gather(*(one_pair(i, *p) for i, p in enumerate(pairs)))
        for (a_id, _, b_id, _), (va, vb) in zip(pairs, results, strict=True):
            assert va.kind is VerdictKind.NEW, (a_id, va)
            assert _effective((va, vb), (a_id, "doc-a"), (b_id, "doc-b")) == {(b_id, "doc-b")}
            if vb.kind is VerdictKind.NEAR:
                assert vb.duplicate_of == a_id and vb.similarity >= 0.8
            else:  # b was judged before a registered: a supersedes it
                assert vb.kind is VerdictKind.NEW
                [sup] = va.supersedes
                assert sup.similarity >= 0.8 and sup.reason is VerdictKind.NEAR

        # unrelated texts are all kept
        fresh = await asyncio.gather(*(
            (d1 if i % 2 else d2).check(collection="c1", chunk_id=f"u{i:03d}".ljust(64, "0"),
                                        doc_id="doc-u", run_id="r", text=_text(rng),
                                        priority=(3, i))
            for i in range(20)))
        assert all(v.kind is VerdictKind.NEW and not v.supersedes for v in fresh)
    finally:
        await nc1.close()
        await nc2.close()


async def test_the_outcome_does_not_depend_on_the_order(nats_server):
    """Three near copies and an exact copy, handled in every order: the same one wins."""
    import itertools

    rng = random.Random(3)
    base = _text(rng)
    texts = {"p": base, "q": _near_copy(base, rng), "r": _near_copy(base, rng)}
    occurrences = [("p", "doc-1", (10, 0)), ("q", "doc-2", (5, 3)), ("r", "doc-3", (7, 1)),
                   ("q", "doc-4", (4, 9))]  # doc-4 holds q's very text, and came first
    nc, d = await _replica(nats_server.url)
    try:
        outcomes = set()
        for n, order in enumerate(itertools.permutations(occurrences)):
            verdicts = [await d.check(collection=f"perm{n}", chunk_id=c.ljust(64, "0"),
                                      doc_id=doc, run_id="r", text=texts[c], priority=prio)
                        for c, doc, prio in order]
            dropped = _effective(verdicts, *((c.ljust(64, "0"), doc) for c, doc, _ in order))
            outcomes.add(frozenset(doc for _, doc in dropped))
        # doc-4 (priority (4, 9)) is first; everything else is a copy of it
        assert outcomes == {frozenset({"doc-1", "doc-2", "doc-3"})}
    finally:
        await nc.close()


async def test_exact_duplicate_race_and_rerun_outcomes(nats_server):
    (nc1, d1), (nc2, d2) = await asyncio.gather(_replica(nats_server.url),
                                                _replica(nats_server.url))
    try:
        text = _text(random.Random(1))
        cid = "e" * 64
        v1, v2 = await asyncio.gather(
            d1.check(collection="c2", chunk_id=cid, doc_id="doc-1", run_id="r1", text=text,
                     priority=(1, 0)),
            d2.check(collection="c2", chunk_id=cid, doc_id="doc-2", run_id="r1", text=text,
                     priority=(2, 0)))
        assert v1.kind is VerdictKind.NEW
        assert _effective((v1, v2), (cid, "doc-1"), (cid, "doc-2")) == {(cid, "doc-2")}
        await d1.mark_announced(collection="c2", chunk_id=cid, doc_id="doc-1")

        # the winner's own message redelivered: announce again (Nats-Msg-Id dedups it)
        again = await d2.check(collection="c2", chunk_id=cid, doc_id="doc-1", run_id="r1",
                               text=text, priority=(1, 0))
        assert again.kind is VerdictKind.REDELIVERED
        # the loser's message redelivered: dropped again
        loser = await d1.check(collection="c2", chunk_id=cid, doc_id="doc-2", run_id="r1",
                               text=text, priority=(2, 0))
        assert loser.kind is VerdictKind.EXACT
        # the same document ingested again by a later run: already ingested
        later = await d2.check(collection="c2", chunk_id=cid, doc_id="doc-1", run_id="r2",
                               text=text, priority=(9, 0))
        assert later.kind is VerdictKind.ALREADY
        # another collection is independent
        other = await d1.check(collection="c3", chunk_id=cid, doc_id="doc-9", run_id="r1",
                               text=text, priority=(3, 0))
        assert other.kind is VerdictKind.NEW
    finally:
        await nc1.close()
        await nc2.close()
