"""De-duplication state in JetStream KV, shared by replicas: two independent connections
race on the same near-duplicate and exact-duplicate chunks, and exactly one of each pair
is kept."""

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


async def test_two_replicas_racing_keep_exactly_one_of_each_near_duplicate(nats_server):
    rng = random.Random(7)
    (nc1, d1), (nc2, d2) = await asyncio.gather(_replica(nats_server.url),
                                                _replica(nats_server.url))
    try:
        pairs = []
        for i in range(25):
            original = _text(rng)
            pairs.append((f"a{i:03d}".ljust(64, "0"), original,
                          f"b{i:03d}".ljust(64, "0"), _near_copy(original, rng)))

        async def one_pair(a_id, a_text, b_id, b_text):
            return await asyncio.gather(
                d1.check(collection="c1", chunk_id=a_id, doc_id="doc-a", run_id="r", text=a_text),
                d2.check(collection="c1", chunk_id=b_id, doc_id="doc-b", run_id="r", text=b_text))

        results = await asyncio.gather(*(one_pair(*p) for p in pairs))
        for (a_id, _, b_id, _), (va, vb) in zip(pairs, results, strict=True):
            kinds = sorted([va.kind, vb.kind])
            assert kinds == [VerdictKind.NEAR, VerdictKind.NEW], (a_id, va, vb)
            loser = va if va.kind is VerdictKind.NEAR else vb
            assert loser.duplicate_of in (a_id, b_id)
            assert loser.similarity >= 0.8

        # unrelated texts are all kept
        fresh = await asyncio.gather(*(
            (d1 if i % 2 else d2).check(collection="c1", chunk_id=f"u{i:03d}".ljust(64, "0"),
                                        doc_id="doc-u", run_id="r", text=_text(rng))
            for i in range(20)))
        assert all(v.kind is VerdictKind.NEW for v in fresh)
    finally:
        await nc1.close()
        await nc2.close()


async def test_exact_duplicate_race_and_rerun_outcomes(nats_server):
    (nc1, d1), (nc2, d2) = await asyncio.gather(_replica(nats_server.url),
                                                _replica(nats_server.url))
    try:
        text = _text(random.Random(1))
        cid = "e" * 64
        v1, v2 = await asyncio.gather(
            d1.check(collection="c2", chunk_id=cid, doc_id="doc-1", run_id="r1", text=text),
            d2.check(collection="c2", chunk_id=cid, doc_id="doc-2", run_id="r1", text=text))
        assert sorted([v1.kind, v2.kind]) == [VerdictKind.EXACT, VerdictKind.NEW]
        winner = "doc-1" if v1.kind is VerdictKind.NEW else "doc-2"
        await d1.mark_announced(collection="c2", chunk_id=cid, doc_id=winner, run_id="r1")

        # the winner's own message redelivered: announce again (Nats-Msg-Id dedups it)
        again = await d2.check(collection="c2", chunk_id=cid, doc_id=winner, run_id="r1", text=text)
        assert again.kind is VerdictKind.REDELIVERED
        # the same document ingested again by a later run: already ingested
        later = await d2.check(collection="c2", chunk_id=cid, doc_id=winner, run_id="r2", text=text)
        assert later.kind is VerdictKind.ALREADY
        # another collection is independent
        other = await d1.check(collection="c3", chunk_id=cid, doc_id="doc-9", run_id="r1", text=text)
        assert other.kind is VerdictKind.NEW
    finally:
        await nc1.close()
        await nc2.close()
