"""De-duplication within a collection, with its state in JetStream KV.

Exact duplicates: the chunk id is the hash of the normalised text, and the first replica
to ``create`` the key ``<collection>.x.<chunk_id>`` owns it (KV ``create`` is atomic).

Near duplicates: MinHash over word shingles, and LSH bands kept in the same bucket as
``<collection>.b.<band>.<hash>`` -> owning chunk id. A chunk stores its signature, then
claims its band keys in band order with ``create``. When a band is already owned by
another chunk, the two signatures are compared; at or above the Jaccard threshold the
later chunk is a near duplicate and gives back the bands it claimed. Because every
replica claims bands in the same order, two near-duplicates processed at the same time
meet first on the lowest band they share, where exactly one ``create`` wins: one is kept
and one is dropped, never both kept and never both dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from datasketch import MinHash, MinHashLSH
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from syllabus.contracts import normalise_text

__all__ = ["BUCKET", "Deduplicator", "Verdict", "VerdictKind"]

BUCKET = "syllabus-dedup"
_WORD = re.compile(r"\w+", re.UNICODE)
_SEED = 1


class VerdictKind(StrEnum):
    NEW = "new"
    REDELIVERED = "redelivered"  # this very message was handled before: publish again
    EXACT = "exact_duplicate"
    NEAR = "near_duplicate"
    ALREADY = "already_ingested"


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    duplicate_of: str | None = None
    similarity: float | None = None


class Deduplicator:
    def __init__(self, kv: KeyValue, *, threshold: float, num_perm: int,
                 shingle_words: int) -> None:
        self.kv = kv
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle_words = shingle_words
        # LSH only proposes candidates; each is verified against ``threshold`` on the full
        # signature. Banding for the threshold itself misses most pairs right at it (at
        # J=0.8, 9 bands of 13 rows miss 60%), so the bands are cut for a lower one: at
        # threshold 0.8 that is 18 bands of 7 rows, which miss 1.5% at J=0.8 and 0.1% at 0.85.
        lsh = MinHashLSH(threshold=max(0.3, threshold - 0.2), num_perm=num_perm)
        self.bands, self.rows = lsh.b, lsh.r

    # --- signatures --------------------------------------------------------------------

    def signature(self, text: str) -> np.ndarray:
        words = _WORD.findall(normalise_text(text))
        k = self.shingle_words
        if len(words) <= k:
            shingles = [" ".join(words)]
        else:
            shingles = [" ".join(words[i:i + k]) for i in range(len(words) - k + 1)]
        mh = MinHash(num_perm=self.num_perm, seed=_SEED)
        mh.update_batch([s.encode("utf-8") for s in shingles])
        return mh.hashvalues.astype(np.uint64)

    def _band_keys(self, collection: str, sig: np.ndarray) -> list[str]:
        keys = []
        for b in range(self.bands):
            part = sig[b * self.rows:(b + 1) * self.rows].tobytes()
            keys.append(f"{collection}.b.{b}.{hashlib.sha1(part).hexdigest()[:20]}")
        return keys

    # --- the decision ------------------------------------------------------------------

    async def check(self, *, collection: str, chunk_id: str, doc_id: str, run_id: str | None,
                    text: str) -> Verdict:
        xkey = f"{collection}.x.{chunk_id}"
        claim = {"doc": doc_id, "run": run_id or "", "state": "claimed"}
        try:
            await self.kv.create(xkey, _dump(claim))
        except KeyWrongLastSequenceError:
            entry = _load((await self.kv.get(xkey)).value)
            if entry.get("doc") != doc_id:
                return Verdict(VerdictKind.EXACT, duplicate_of=chunk_id, similarity=1.0)
            if entry.get("run") != (run_id or ""):
                return Verdict(VerdictKind.ALREADY, duplicate_of=chunk_id, similarity=1.0)
            # a redelivery of the message that made this claim
            if entry.get("state") == "announced":
                return Verdict(VerdictKind.REDELIVERED)
            if entry.get("state") == "dropped":
                return Verdict(VerdictKind.NEAR, entry.get("dup_of"), entry.get("sim"))

        sig = await asyncio.to_thread(self.signature, text)  # CPU work off the event loop
        await self.kv.put(f"{collection}.m.{chunk_id}", sig.tobytes())
        claimed: list[tuple[str, int]] = []
        for key in self._band_keys(collection, sig):
            try:
                rev = await self.kv.create(key, chunk_id.encode())
                claimed.append((key, rev))
                continue
            except KeyWrongLastSequenceError:
                pass
            try:
                owner = (await self.kv.get(key)).value.decode()
            except KeyNotFoundError:  # given back between our create and get: take it
                with contextlib.suppress(KeyWrongLastSequenceError):
                    claimed.append((key, await self.kv.create(key, chunk_id.encode())))
                continue
            if owner == chunk_id:
                continue
            sim = await self._similarity(collection, sig, owner)
            if sim is not None and sim >= self.threshold:
                await self._give_back(claimed)
                await self.kv.put(xkey, _dump({**claim, "state": "dropped", "dup_of": owner,
                                               "sim": sim}))
                return Verdict(VerdictKind.NEAR, duplicate_of=owner, similarity=sim)
        return Verdict(VerdictKind.NEW)

    async def mark_announced(self, *, collection: str, chunk_id: str, doc_id: str,
                             run_id: str | None) -> None:
        await self.kv.put(f"{collection}.x.{chunk_id}",
                          _dump({"doc": doc_id, "run": run_id or "", "state": "announced"}))

    async def _similarity(self, collection: str, sig: np.ndarray, owner: str) -> float | None:
        try:
            other = np.frombuffer((await self.kv.get(f"{collection}.m.{owner}")).value,
                                  dtype=np.uint64)
        except KeyNotFoundError:
            return None
        if other.shape != sig.shape:
            return None
        return float(np.count_nonzero(other == sig)) / float(len(sig))

    async def _give_back(self, claimed: list[tuple[str, int]]) -> None:
        for key, rev in claimed:
            with contextlib.suppress(KeyWrongLastSequenceError, KeyNotFoundError):
                await self.kv.delete(key, last=rev)


def _dump(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def _load(raw: bytes | None) -> dict:
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return {}
