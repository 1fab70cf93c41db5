"""De-duplication within a collection, with its state in JetStream KV, decided the same way
whatever order the chunks arrive in.

An *occurrence* is one chunk text in one document: ``(chunk_id, doc_id)``. Its *priority*
is ``(the stream sequence of the document's submission, the chunk's index in it)``: the
document submitted first wins, then the earlier chunk. The stream sequence is fixed when
the submission is stored, so a redelivery, a crash and resume, or another replica sees the
same priority.

The rule: **an occurrence is dropped exactly when another occurrence whose text is the
same (an exact duplicate) or near (MinHash Jaccard at or above the threshold) has a
smaller priority.** The rule looks at facts only (texts and priorities), never at who came
first, so its outcome is a function of the set of occurrences: a clean run, a run killed
and resumed at any point, and any number of replicas all end with the same chunks. It is
also monotone: an occurrence that is dropped stays dropped, so there is no cascade.

Because chunks arrive in any order, an occurrence may be announced (``chunks.created``)
and later *superseded* by one with a smaller priority that arrives after it (the original
document redelivered after its repost was handled). The occurrence that wins then
publishes ``chunks.dropped`` for the one it supersedes (``superseded=True``); data set
builds and ``chunks.jsonl`` leave out the records of every dropped occurrence
(``syllabus.services.runtime.dropped_occurrences``).

State, in the KV bucket ``syllabus-dedup``:

* ``<collection>.x.<chunk_id>``: the occurrences of one text, a JSON list of
  ``{doc, prio, run, state, dup_of, sim}``, appended to with compare-and-set;
* ``<collection>.m.<chunk_id>``: the text's MinHash signature;
* ``<collection>.b.<band>.<hash>``: the chunk ids in one LSH band bucket, appended to
  with compare-and-set.

Every occurrence first registers itself (in its ``x`` key, then in its band buckets) and
then reads what is registered. Compare-and-set writes and reads go to the stream's
leader (the bucket has no direct gets), so of two near-duplicates handled at the same
time at least one sees the other, and the rule is applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from syllabus.contracts import normalise_text

__all__ = ["BUCKET", "Deduplicator", "Superseded", "Verdict", "VerdictKind"]

BUCKET = "syllabus-dedup"
_WORD = re.compile(r"\w+", re.UNICODE)
_SEED = 1
#: compare-and-set attempts on one key before giving up (each loses only to a concurrent
#: writer, so this is only reached under a pathological pile-up)
_CAS_ATTEMPTS = 200

Priority = tuple[int, int]


class VerdictKind(StrEnum):
    NEW = "new"
    REDELIVERED = "redelivered"  # this very message was handled before: publish again
    EXACT = "exact_duplicate"
    NEAR = "near_duplicate"
    ALREADY = "already_ingested"


@dataclass(frozen=True)
class Superseded:
    """An occurrence that this one drops: it has the same or a near text and a larger
    priority (it may already have been announced)."""

    chunk_id: str
    doc_id: str
    run_id: str | None
    reason: VerdictKind  # EXACT or NEAR
    similarity: float


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    duplicate_of: str | None = None
    similarity: float | None = None
    #: occurrences this one drops; publish a ``ChunkDropped`` for each
    supersedes: tuple[Superseded, ...] = field(default=())


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
                    text: str, priority: Priority) -> Verdict:
        """Register the occurrence ``(chunk_id, doc_id)`` and apply the rule to it.

        A redelivery of the same run's message applies the rule again (the facts can only
        have grown, and the rule is monotone), so what a crash interrupted is redone: the
        same verdict, and the same supersessions published again (their ``Nats-Msg-Id``
        makes that a no-op). The same document in a later run is ``ALREADY`` ingested."""
        run = run_id or ""
        xkey = f"{collection}.x.{chunk_id}"
        mine: dict[str, Any] = {"doc": doc_id, "prio": [int(priority[0]), int(priority[1])],
                                "run": run, "state": "claimed"}
        before: dict[str, Any] = {}

        def register(occs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            own = next((o for o in occs if o.get("doc") == doc_id), None)
            if own is None:
                return [*occs, mine]
            before.clear()
            before.update(own)
            if own.get("state") == "claimed" and own.get("run") != run:
                # an earlier run claimed it and stopped before deciding: this run takes over
                own["run"] = run
                return occs
            return None  # registered before: nothing to write

        occs = await self._update(xkey, register)
        if before and before.get("run") != run and before.get("state") != "claimed":
            return Verdict(VerdictKind.ALREADY, duplicate_of=chunk_id, similarity=1.0)
        prio = _prio(before or mine)  # the priority it was first registered with

        dominated_by: tuple[tuple[int, int, str], VerdictKind, str, float] | None = None
        supersedes: list[Superseded] = []

        def judge(other_id: str, others: list[dict[str, Any]], kind: VerdictKind,
                  sim: float) -> None:
            nonlocal dominated_by
            for o in others:
                if o.get("doc") == doc_id and other_id == chunk_id:
                    continue  # this occurrence itself
                if _prio(o) < prio:
                    if dominated_by is None or _prio(o) < dominated_by[0]:
                        dominated_by = (_prio(o), kind, other_id, sim)
                elif o.get("state") != "dropped":
                    supersedes.append(Superseded(other_id, str(o.get("doc")),
                                                 o.get("run") or None, kind, sim))

        # exact duplicates: the other occurrences of this very text
        judge(chunk_id, occs, VerdictKind.EXACT, 1.0)
        # near duplicates: register in every band bucket, then judge what shares one
        sig = await asyncio.to_thread(self.signature, text)  # CPU work off the event loop
        await self.kv.put(f"{collection}.m.{chunk_id}", sig.tobytes())
        candidates: set[str] = set()
        for key in self._band_keys(collection, sig):
            members = await self._update(key, lambda ids: None if chunk_id in ids
                                         else [*ids, chunk_id])
            candidates.update(m for m in members if m != chunk_id)
        for other_id in sorted(candidates):
            sim = await self._similarity(collection, sig, other_id)
            if sim is not None and sim >= self.threshold:
                judge(other_id, await self._occurrences(collection, other_id),
                      VerdictKind.NEAR, sim)

        if dominated_by is None:
            kind = VerdictKind.REDELIVERED if before.get("state") == "announced" \
                else VerdictKind.NEW
            return Verdict(kind, supersedes=tuple(supersedes))
        _, kind, dup_of, sim = dominated_by
        await self._set_state(collection, chunk_id, doc_id, state="dropped")
        return Verdict(kind, duplicate_of=dup_of, similarity=sim, supersedes=tuple(supersedes))

    async def mark_announced(self, *, collection: str, chunk_id: str, doc_id: str) -> None:
        await self._set_state(collection, chunk_id, doc_id, state="announced")

    # --- KV helpers --------------------------------------------------------------------

    async def _set_state(self, collection: str, chunk_id: str, doc_id: str, **fields: Any
                         ) -> None:
        def change(occs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            for o in occs:
                if o.get("doc") == doc_id:
                    if all(o.get(k) == v for k, v in fields.items()):
                        return None
                    o.update(fields)
                    return occs
            return None

        await self._update(f"{collection}.x.{chunk_id}", change)

    async def _update(self, key: str, change: Callable[[list[Any]], list[Any] | None]
                      ) -> list[Any]:
        """Compare-and-set: ``change(current)`` returns the new list (or None to leave it);
        returns the list as it is after the write (or as read, when nothing was written).

        Most keys are new, so the first attempt is a ``create`` of ``change([])`` (one
        round trip); a key that exists is read and updated at its revision."""
        first = change([])
        if first is not None:
            try:
                await self.kv.create(key, _dump(first))
                return first
            except KeyWrongLastSequenceError:
                pass
        for _ in range(_CAS_ATTEMPTS):
            try:
                entry = await self.kv.get(key)
                current, revision = _load(entry.value), entry.revision
            except KeyNotFoundError:
                current, revision = [], None
            new = change(json.loads(json.dumps(current)))
            if new is None:
                return current
            try:
                if revision is None:
                    await self.kv.create(key, _dump(new))
                else:
                    await self.kv.update(key, _dump(new), last=revision)
                return new
            except KeyWrongLastSequenceError:
                continue  # another replica wrote it first: read again
        raise RuntimeError(f"de-duplication key {key} kept changing under "
                           f"{_CAS_ATTEMPTS} attempts to update it")

    async def _occurrences(self, collection: str, chunk_id: str) -> list[dict[str, Any]]:
        try:
            return _load((await self.kv.get(f"{collection}.x.{chunk_id}")).value)
        except KeyNotFoundError:
            return []

    async def _similarity(self, collection: str, sig: np.ndarray, other: str) -> float | None:
        try:
            theirs = np.frombuffer((await self.kv.get(f"{collection}.m.{other}")).value,
                                   dtype=np.uint64)
        except KeyNotFoundError:
            return None
        if theirs.shape != sig.shape:
            return None
        return float(np.count_nonzero(theirs == sig)) / float(len(sig))


def _prio(occurrence: dict[str, Any]) -> tuple[int, int, str]:
    """The occurrence's priority, with its document id to break a tie (two submissions
    without a stream sequence), so that it is a total order."""
    p = occurrence.get("prio") or [1 << 62, 0]
    return (int(p[0]), int(p[1]), str(occurrence.get("doc") or ""))


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _load(raw: bytes | None) -> list[Any]:
    try:
        value = json.loads(raw or b"[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []
