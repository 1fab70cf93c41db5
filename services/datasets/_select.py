"""The selection of a data set version: a pure function of the accepted records.

``select(records, embedder=..., options=...)`` runs these steps, in this order, and says
for every record it removes which step removed it, why, and (for a duplicate) which
record it duplicates:

1. ``exact_duplicate``: the same normalised instruction and response (NFKC, case-folded,
   whitespace collapsed; ``normalise_text``), hashed.
2. ``near_duplicate``: MinHash over word shingles of the instruction and response
   (``shingle_words`` words each; 1 by default, because question/answer pairs are short:
   with 1-word shingles a 40-word pair that differs in three words has a Jaccard
   similarity of about 0.85, with 2-word shingles about 0.75, with the 5-word shingles
   ingest uses for chunks about 0.5). LSH bands cut for a lower threshold than
   ``near_duplicate_threshold`` (0.8) propose candidates; each candidate is verified with
   the *exact* Jaccard similarity of the two shingle sets, so the decision does not depend
   on MinHash's estimate. The signatures are computed with numpy a batch at a time and
   only the band keys are kept (``_near.py``), so 1M records need a few hundred MB.
3. ``semantic_duplicate``: cosine similarity of the records' sentence embeddings (the
   runtime's all-MiniLM-L6-v2), at or above ``semantic_threshold`` (0.95). Computed in
   blocks with numpy: a block of records against the kept ones, a column block at a time,
   so 100k records need a few tens of MB besides the embeddings (100k x 384 float32 =
   150 MB). Above ``ann_min_records`` (20,000) a record is compared with its 16 nearest
   neighbours in an HNSW graph instead (``_ann.py``; exactly with every earlier kept
   record when all 16 are at or above the threshold).
4. ``contaminated``: decontamination against an evaluation set, as phi-1 did (Gunasekar
   et al. 2023): a record that shares any word 13-gram (lower-cased, punctuation
   stripped) with the evaluation set is removed. Each field (instruction, response,
   rationale, system prompt) is checked on its own. This runs before the subset, so the
   subset is drawn from clean records and still reaches its target size.
5. ``diversity``: a LIMA-style (Zhou et al. 2023) small, diverse, high-quality subset of
   ``target_size`` records: greedy maximisation of the facility-location function
   ``F(S) = sum_i max_{j in S} q_j * max(0, cos(i, j))`` over a sparse graph of each
   record's ``neighbors`` (32) nearest neighbours (self included; found in an HNSW graph
   above ``ann_min_records`` records, exactly below), with lazy
   evaluations (the function is submodular, so a stale gain is an upper bound). ``q_j`` is
   the record's quality weight, below. Skipped when ``target_size`` is None or at least
   the number of records left.

   **Balanced across sources** (``source_temperature`` T): the subset's ``target_size``
   is first shared out among the records' source documents (``lineage.doc_id``; a record
   with no lineage, such as a tool trajectory, counts under its technique), each
   document's quota proportional to ``n_d ** (1 / T)`` for its ``n_d`` records, as
   multilingual pretraining mixes languages (T = 1: proportional, the same as no
   balancing; larger T: flatter; ``inf``: the same quota for every document), with no
   quota above ``n_d`` (what a small document cannot fill goes to the others); then the
   facility-location subset is drawn within each document. LIMA (Zhou et al. 2023,
   section 2.1) drew its 1,000 examples evenly across its sources (200 from each of the
   STEM and other Stack Exchange groups, 200 from wikiHow, ...), so that no one source
   dominates. ``lima = true`` sets both: ``target_size`` 1,000 and ``source_temperature``
   ``inf``, unless given.

Every choice is deterministic and independent of the input order. Records are ranked once
by *preference*: higher quality first, then the smaller record id. A duplicate step keeps
the preferred record of each group; the greedy subset breaks ties by preference too.

**Quality** (``quality_score``): the mean of the record's known scores, each mapped to
0..1 by the scale in ``quality_scores``: ``llm-judge`` / 5, ``curation`` (Humpback's
self-curation) / 5, ``heuristic-quality`` / 1 and ``sycophancy-detector`` / 1. A record
with none of them has quality 1.0 (nothing says it is worse). The subset weighs a record
by ``max(quality, 0.05)``, so an unscored collection is selected for diversity alone.

**Synthetic records** (``kind == "anti_sycophancy"``, Wei et al. 2023) are not run
through the near-duplicate, semantic or diversity steps (they share one template and
would all be near duplicates of each other), only through exact de-duplication and
decontamination. They are then mixed in at ``synthetic_ratio`` (5: one synthetic record
for every five selected instruction records, rounded up, as the augmenter counts), the
ones to take drawn by a hash of ``seed`` and their record id.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syllabus.contracts import QARecord, normalise_text, sha256_hex
from syllabus.services.datasets._near import near_duplicates

__all__ = [
    "DEFAULT_QUALITY_SCORES",
    "STEPS",
    "EvalSet",
    "Progress",
    "Removal",
    "SelectOptions",
    "Selection",
    "StepReport",
    "eval_set_from_bytes",
    "exact_key",
    "facility_location",
    "ngrams",
    "quality_score",
    "select",
    "semantic_duplicates",
    "split_eval",
    "words",
]

log = logging.getLogger("syllabus.datasets")

#: the steps, in the order they run
STEPS = ("exact_duplicate", "near_duplicate", "semantic_duplicate", "contaminated",
         "diversity")

#: score name -> the value that means "best" (the score is divided by it, then clipped)
DEFAULT_QUALITY_SCORES: dict[str, float] = {
    "llm-judge": 5.0,
    "curation": 5.0,
    "heuristic-quality": 1.0,
    "sycophancy-detector": 1.0,
}

#: ``progress(step, done, total)``: called during the long steps
Progress = Callable[[str, int, int], None]

_WORD = re.compile(r"\w+", re.UNICODE)
_MIN_WEIGHT = 0.05
#: LIMA's data set size (Zhou et al. 2023: 1,000 prompts and responses)
LIMA_TARGET_SIZE = 1000


class SelectOptions(BaseModel):
    """The selection settings. Every field goes into the version id; ``None`` turns a
    threshold's step off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exact: bool = True
    near_duplicate_threshold: float | None = Field(default=0.8, gt=0.0, le=1.0)
    shingle_words: int = Field(default=1, ge=1)
    num_perm: int = Field(default=128, ge=16)
    semantic_threshold: float | None = Field(default=0.95, gt=0.0, le=1.0)
    target_size: int | None = Field(default=None, ge=1)
    neighbors: int = Field(default=32, ge=2, description="nearest neighbours per record "
                           "in the facility-location graph")
    ngram: int = Field(default=13, ge=1, description="decontamination n-gram (words)")
    quality_scores: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_QUALITY_SCORES))
    synthetic_ratio: float = Field(default=5.0, gt=0.0,
                                   description="instruction records per synthetic record")
    seed: int = 0
    block_size: int = Field(default=1024, ge=16, description="rows per similarity block")
    source_temperature: float | None = Field(
        default=None, gt=0.0, description="share target_size among the source documents "
        "in proportion to n ** (1 / T) (inf: evenly); None: one subset over all records")
    lima: bool = Field(default=False, description="LIMA's subset: target_size 1000 and "
                       "source_temperature inf, unless given")
    ann_min_records: int | None = Field(
        default=20000, ge=2, description="the semantic and diversity steps search "
        "neighbours in an HNSW graph (usearch) above this many records, exactly below it; "
        "None: always exactly")

    @model_validator(mode="before")
    @classmethod
    def _lima(cls, data: Any) -> Any:
        """``lima = true`` fills in what was not given (None counts as not given)."""
        if isinstance(data, dict) and data.get("lima") is True:
            data = dict(data)
            if data.get("target_size") is None:
                data["target_size"] = LIMA_TARGET_SIZE
            if data.get("source_temperature") is None:
                data["source_temperature"] = math.inf
        return data

    @model_validator(mode="after")
    def _balanced_needs_a_size(self) -> SelectOptions:
        if self.source_temperature is not None and self.target_size is None:
            raise ValueError("source_temperature shares the target_size subset among the "
                             "source documents: set target_size too (or lima = true)")
        return self

    @field_validator("synthetic_ratio", mode="before")
    @classmethod
    def _ratio(cls, value: Any) -> Any:
        """Also ``"5:1"``."""
        if isinstance(value, str) and ":" in value:
            a, b = value.split(":", 1)
            return float(a) / float(b)
        return value

    def settings(self) -> dict[str, Any]:
        """What the version id hashes (``block_size`` changes no result, so it is left out;
        nor does ``lima``, whose effect is the fields it fills in; ``source_temperature``
        only when set, so versions built before it keep their ids; ``inf`` as a string,
        since JSON has none). ``ann_min_records`` is left out too: the build records the
        approximate search in the manifest's settings when a step used it."""
        out = self.model_dump(mode="json", exclude={"block_size", "lima",
                                                    "source_temperature",
                                                    "ann_min_records"})
        if self.source_temperature is not None:
            out["source_temperature"] = ("inf" if math.isinf(self.source_temperature)
                                         else self.source_temperature)
        return out


@dataclass(frozen=True)
class Removal:
    record_id: str
    step: str
    reason: str
    duplicate_of: str | None = None
    similarity: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"record_id": self.record_id, "reason": self.reason}
        if self.duplicate_of is not None:
            out["duplicate_of"] = self.duplicate_of
        if self.similarity is not None:
            out["similarity"] = round(self.similarity, 4)
        return out


@dataclass
class StepReport:
    step: str
    records_in: int
    removed: list[Removal] = field(default_factory=list)
    skipped: str | None = None
    seconds: float = 0.0

    @property
    def records_out(self) -> int:
        return self.records_in - len(self.removed)

    def as_dict(self) -> dict[str, Any]:
        """For the manifest: no timings, so the manifest is reproducible."""
        out: dict[str, Any] = {"step": self.step, "in": self.records_in,
                               "removed": len(self.removed), "out": self.records_out}
        if self.skipped:
            out["skipped"] = self.skipped
        out["removed_records"] = [r.as_dict() for r in
                                  sorted(self.removed, key=lambda r: r.record_id)]
        return out


@dataclass
class EvalSet:
    """The n-grams of an evaluation set to decontaminate against."""

    source: str
    sha256: str
    n: int
    grams: set[str]


@dataclass
class Selection:
    """What ``select`` chose. ``records`` and ``synthetic`` are sorted by record id."""

    records: list[QARecord]
    synthetic: list[QARecord]
    steps: list[StepReport]
    synthetic_steps: list[StepReport]
    synthetic_available: int
    quality: dict[str, float]
    options: SelectOptions
    #: seconds spent embedding texts (inside the semantic and diversity steps; their
    #: ``StepReport.seconds`` leave it out)
    embed_seconds: float = 0.0
    #: the steps that searched neighbours approximately (``_ann.py``)
    approximate_steps: list[str] = field(default_factory=list)

    @property
    def all_records(self) -> list[QARecord]:
        return sorted([*self.records, *self.synthetic], key=lambda r: r.record_id)

    def removed(self) -> dict[str, Removal]:
        return {r.record_id: r for s in (*self.steps, *self.synthetic_steps) for r in s.removed}

    def counts(self, records_in: int) -> dict[str, int]:
        out = {"accepted": records_in}
        for s in self.steps:
            out[s.step] = len(s.removed)
        out["selected"] = len(self.records)
        out["synthetic_available"] = self.synthetic_available
        out["synthetic"] = len(self.synthetic)
        return out


# --- text helpers ----------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation stripped (the decontamination tokens)."""
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> Iterable[str]:
    w = words(text)
    return (" ".join(w[i:i + n]) for i in range(len(w) - n + 1))


def exact_key(record: QARecord) -> str:
    return sha256_hex(normalise_text(record.instruction) + "\x1f" +
                      normalise_text(record.response))


def _record_text(record: QARecord) -> str:
    return f"{record.instruction}\n{record.response}"


def quality_score(record: QARecord, scales: dict[str, float] | None = None) -> float:
    """Mean of the known scores, each divided by its scale and clipped to 0..1; 1.0 when
    the record has none of them."""
    scales = DEFAULT_QUALITY_SCORES if scales is None else scales
    vals = [min(1.0, max(0.0, record.scores[k] / s)) for k, s in scales.items()
            if k in record.scores and s > 0]
    return sum(vals) / len(vals) if vals else 1.0


def eval_set_from_bytes(data: bytes, *, source: str, n: int = 13) -> EvalSet:
    """An evaluation set's n-grams. JSONL (every line a JSON value; each string in it is
    a text) or plain text (the whole file is one text)."""
    import json

    text = data.decode("utf-8", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    texts: list[str] = []
    try:
        values = [json.loads(ln) for ln in lines]
    except ValueError:
        texts = [text]
    else:
        for v in values:
            texts.extend(_strings(v))
    grams: set[str] = set()
    for t in texts:
        grams.update(ngrams(t, n))
    return EvalSet(source=source, sha256=sha256_hex(data), n=n, grams=grams)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _split_hash(seed: int, record_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{record_id}".encode()).digest()[:8], "big")


# --- the steps -------------------------------------------------------------------------


def _exact(records: list[QARecord]) -> tuple[list[QARecord], list[Removal]]:
    seen: dict[str, str] = {}
    kept, removed = [], []
    for r in records:
        key = exact_key(r)
        if key in seen:
            removed.append(Removal(r.record_id, "exact_duplicate",
                                   "same normalised instruction and response",
                                   duplicate_of=seen[key], similarity=1.0))
        else:
            seen[key] = r.record_id
            kept.append(r)
    return kept, removed


def _shingles(text: str, k: int) -> set[str]:
    w = _WORD.findall(normalise_text(text))
    if len(w) <= k:
        return {" ".join(w)}
    return {" ".join(w[i:i + k]) for i in range(len(w) - k + 1)}


def _near(records: list[QARecord], opts: SelectOptions,
          progress: Progress | None) -> tuple[list[QARecord], list[Removal]]:
    threshold = opts.near_duplicate_threshold
    assert threshold is not None
    k = opts.shingle_words

    def shingles(i: int) -> set[str]:
        return _shingles(_record_text(records[i]), k)

    dups = near_duplicates(shingles, len(records), threshold=threshold,
                           num_perm=opts.num_perm, progress=progress)
    gone = {i for i, _, _ in dups}
    removed = [Removal(records[i].record_id, "near_duplicate",
                       f"word {k}-shingle Jaccard {sim:.3f} >= {threshold:g}",
                       duplicate_of=records[j].record_id, similarity=sim)
               for i, j, sim in dups]
    return [r for i, r in enumerate(records) if i not in gone], removed


#: neighbours per row that the approximate semantic step looks at
SEMANTIC_NEIGHBOURS = 16


def semantic_duplicates(emb: np.ndarray, threshold: float, *, block: int = 1024,
                        col_block: int = 16384, approximate: bool = False,
                        progress: Progress | None = None) -> list[tuple[int, int, float]]:
    """Greedy in row order: row i is a duplicate when its cosine with an earlier kept row
    is at or above ``threshold``. Returns ``(row, duplicate_of_row, similarity)``.
    ``approximate``: the earlier rows are those among its nearest neighbours in an HNSW
    graph (``_ann.knn``), see ``_semantic_from_neighbours``."""
    if approximate:
        from . import _ann

        idx, val = _ann.knn(emb, SEMANTIC_NEIGHBOURS, step="semantic_duplicate",
                            progress=progress)
        return _semantic_from_neighbours(emb, idx, val, threshold)
    n = emb.shape[0]
    kept_idx = np.empty(n, dtype=np.int64)
    nk = 0
    out: list[tuple[int, int, float]] = []
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        e = emb[rows]
        best = np.full(len(rows), -np.inf, dtype=np.float32)
        arg = np.full(len(rows), -1, dtype=np.int64)
        for c in range(0, nk, col_block):
            cols = kept_idx[c:min(nk, c + col_block)]
            sims = e @ emb[cols].T
            a = sims.argmax(axis=1)
            v = sims[np.arange(len(rows)), a]
            better = v > best
            best[better] = v[better]
            arg[better] = cols[a[better]]
        inner = e @ e.T
        kept_here: list[int] = []
        for j in range(len(rows)):
            bv, ba = float(best[j]), int(arg[j])
            if kept_here:
                prev = np.asarray(kept_here)
                vals = inner[j, prev]
                k = int(vals.argmax())
                if float(vals[k]) > bv:
                    bv, ba = float(vals[k]), int(rows[prev[k]])
            if bv >= threshold:
                out.append((int(rows[j]), ba, bv))
            else:
                kept_here.append(j)
        for j in kept_here:
            kept_idx[nk] = rows[j]
            nk += 1
        if progress is not None:
            progress("semantic_duplicate", int(rows[-1]) + 1, n)
    return out


def _semantic_from_neighbours(emb: np.ndarray, idx: np.ndarray, val: np.ndarray,
                              threshold: float) -> list[tuple[int, int, float]]:
    """The greedy rule of ``semantic_duplicates`` over each row's neighbour list (sorted by
    decreasing exact cosine): row i is a duplicate of its most similar *earlier kept*
    neighbour at or above ``threshold``. When all of a row's listed neighbours are at or
    above it (a cluster larger than the list, so an earlier kept row may be missing
    from it), the row is checked exactly against every earlier kept row instead."""
    n = emb.shape[0]
    rows = np.arange(n)[:, None]
    close = (val >= threshold) & (idx >= 0) & (idx != rows)
    earlier = close & (idx < rows)
    saturated = close.sum(axis=1) >= idx.shape[1] - 1
    todo = np.flatnonzero(earlier.any(axis=1) | saturated)
    kept = np.ones(n, dtype=bool)
    out: list[tuple[int, int, float]] = []
    for i in todo.tolist():
        if saturated[i]:
            before = np.flatnonzero(kept[:i])
            if len(before):
                sims = emb[before] @ emb[i]
                j = int(sims.argmax())
                if float(sims[j]) >= threshold:
                    out.append((i, int(before[j]), float(sims[j])))
                    kept[i] = False
            continue
        cand = idx[i][earlier[i]]
        ok = kept[cand]
        if ok.any():
            first = int(np.flatnonzero(ok)[0])
            out.append((i, int(cand[first]), float(val[i][earlier[i]][first])))
            kept[i] = False
    return out


def _topk(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest values of each row and their columns (in no particular order).
    torch's top-k is several times faster than numpy's ``argpartition`` and is there
    whenever the runtime's embedder is; numpy is the fallback."""
    try:
        import torch
    except ImportError:
        width = values.shape[1]
        part = np.argpartition(values, width - k, axis=1)[:, width - k:]
        return np.take_along_axis(values, part, axis=1), part
    v, i = torch.topk(torch.from_numpy(np.ascontiguousarray(values)), k, dim=1,
                      sorted=False)
    return v.numpy(), i.numpy().astype(np.int64, copy=False)


def _knn(emb: np.ndarray, k: int, *, block: int = 1024, col_block: int = 16384,
         progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` most similar rows (itself included), cosine clipped at 0."""
    n = emb.shape[0]
    k = min(k, n)
    idx = np.empty((n, k), dtype=np.int64)
    val = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, block):
        e = emb[start:start + block]
        bi = np.empty((len(e), 0), dtype=np.int64)
        bv = np.empty((len(e), 0), dtype=np.float32)
        for c in range(0, n, col_block):
            sims = e @ emb[c:c + col_block].T
            width = sims.shape[1]
            if width > k:  # this column block's top k, then merge with the best so far
                sims, part = _topk(sims, k)
                cols = part + c
            else:
                cols = np.broadcast_to(np.arange(c, c + width), sims.shape)
            bi = np.concatenate([bi, cols], axis=1)
            bv = np.concatenate([bv, sims], axis=1)
            if bv.shape[1] > k:
                bv, part = _topk(bv, k)
                bi = np.take_along_axis(bi, part, axis=1)
        idx[start:start + len(e)] = bi
        val[start:start + len(e)] = bv
        if progress is not None:
            progress("diversity:neighbours", start + len(e), n)
    return _with_self(idx, val)


def _with_self(idx: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Self is always a neighbour, with similarity 1 (in place of the least similar
    neighbour where the search did not list it); unfilled slots (-1) become self too, at
    similarity 0; similarities clipped at 0."""
    n = idx.shape[0]
    rows = np.arange(n)
    has_self = (idx == rows[:, None]).any(axis=1)
    if not has_self.all():
        miss = np.flatnonzero(~has_self)
        worst = val[miss].argmin(axis=1)
        idx[miss, worst] = miss
    val[idx == rows[:, None]] = 1.0
    empty = idx < 0
    if empty.any():
        idx[empty] = np.broadcast_to(rows[:, None], idx.shape)[empty]
        val[empty] = 0.0
    return idx, np.maximum(val, 0.0)


def facility_location(emb: np.ndarray, weights: np.ndarray, size: int, *,
                      neighbors: int = 32, block: int = 1024, approximate: bool = False,
                      progress: Progress | None = None) -> list[int]:
    """Greedy (lazy) facility location: the ``size`` rows that maximise
    ``sum_i max_{j in S} w_j * sim(i, j)`` over each row's nearest neighbours (found in
    an HNSW graph when ``approximate``). Ties go to the lower row index. Returns the
    chosen rows in the order they were chosen."""
    n = emb.shape[0]
    if size >= n:
        return list(range(n))
    if approximate:
        from . import _ann

        idx, val = _with_self(*_ann.knn(emb, neighbors, step="diversity:neighbours",
                                        progress=progress))
    else:
        idx, val = _knn(emb, neighbors, block=block, progress=progress)
    # candidate j -> its clients i (rows that have j among their neighbours) and w_j*s_ij
    clients = np.repeat(np.arange(n), idx.shape[1])
    cands = idx.ravel()
    vals = val.ravel() * weights[cands]
    order = np.argsort(cands, kind="stable")
    clients, cands, vals = clients[order], cands[order], vals[order]
    bounds = np.searchsorted(cands, np.arange(n + 1))
    cur = np.zeros(n, dtype=np.float64)

    def gain(j: int) -> float:
        lo, hi = bounds[j], bounds[j + 1]
        d = vals[lo:hi] - cur[clients[lo:hi]]
        return float(d[d > 0].sum())

    heap = [(-gain(j), j) for j in range(n)]
    heapq.heapify(heap)
    chosen: list[int] = []
    taken = np.zeros(n, dtype=bool)
    while len(chosen) < size and heap:
        neg, j = heapq.heappop(heap)
        if taken[j]:
            continue
        g = gain(j)
        if heap and (-g, j) > heap[0]:
            heapq.heappush(heap, (-g, j))  # stale: re-queue with its true gain
            continue
        chosen.append(j)
        taken[j] = True
        lo, hi = bounds[j], bounds[j + 1]
        cl = clients[lo:hi]
        cur[cl] = np.maximum(cur[cl], vals[lo:hi])
        if progress is not None and len(chosen) % 1000 == 0:
            progress("diversity", len(chosen), size)
    return chosen


def _embed(embedder: Any, texts: Sequence[str], progress: Progress | None,
           batch: int = 2048) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), batch):
        chunk = list(texts[start:start + batch])
        if hasattr(embedder, "embed_array"):
            parts.append(np.asarray(embedder.embed_array(chunk), dtype=np.float32))
        else:
            parts.append(np.asarray(embedder.embed(chunk), dtype=np.float32))
        done = min(len(texts), start + batch)
        if progress is not None:
            progress("embedding", done, len(texts))
        log.info("embedded %d/%d records", done, len(texts))
    if not parts:
        return np.zeros((0, int(getattr(embedder, "dimension", 1))), dtype=np.float32)
    emb = np.concatenate(parts)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.where(norms > 0, norms, 1.0)


def _contaminated(records: list[QARecord], eval_set: EvalSet) -> tuple[list[QARecord],
                                                                        list[Removal]]:
    kept, removed = [], []
    for r in records:
        hit = None
        for name in ("instruction", "response", "rationale", "system"):
            text = getattr(r, name)
            if not text:
                continue
            hit = next((g for g in ngrams(text, eval_set.n) if g in eval_set.grams), None)
            if hit is not None:
                removed.append(Removal(r.record_id, "contaminated",
                                       f"{name} shares the {eval_set.n}-gram '{hit}' with "
                                       f"the evaluation set {eval_set.source}"))
                break
        if hit is None:
            kept.append(r)
    return kept, removed


# --- the selection ---------------------------------------------------------------------


def record_source(record: QARecord) -> str:
    """The source a record is balanced under: its document, else its technique."""
    if record.lineage is not None:
        return record.lineage.doc_id
    return f"technique:{record.technique.name}"


def source_quotas(counts: dict[str, int], size: int, temperature: float) -> dict[str, int]:
    """``size`` shared among sources in proportion to ``n ** (1 / temperature)`` (``inf``:
    evenly), none above its ``n``: a source that cannot fill its share keeps all it has and
    the rest is shared among the others again (water-filling). Whole numbers: the floors,
    then one more each by the largest remainder (ties: the source name). Deterministic."""
    quotas: dict[str, int] = {}
    left = min(size, sum(counts.values()))
    active = {k: n for k, n in counts.items() if n > 0}

    def weight(n: int) -> float:
        return 1.0 if math.isinf(temperature) else float(n) ** (1.0 / temperature)

    while active:
        total = sum(weight(n) for n in active.values())
        share = {k: left * weight(n) / total for k, n in active.items()}
        full = [k for k, n in active.items() if n <= share[k]]
        if not full:
            floors = {k: math.floor(v) for k, v in share.items()}
            extra = left - sum(floors.values())
            for k in sorted(share, key=lambda k: (floors[k] - share[k], k))[:extra]:
                floors[k] += 1
            quotas.update(floors)
            break
        for k in full:
            quotas[k] = active.pop(k)
            left -= quotas[k]
    return {k: quotas.get(k, 0) for k in counts}


def select(records: Iterable[QARecord], *, embedder: Any | None,
           options: SelectOptions | dict[str, Any] | None = None,
           synthetic: Iterable[QARecord] = (), eval_set: EvalSet | None = None,
           progress: Progress | None = None) -> Selection:
    """Choose a data set version's records (see the module's docstring).

    ``records`` are accepted records, one per record id; those of kind ``anti_sycophancy``
    join ``synthetic``. ``embedder`` (an ``Embedder``; ``embed_array`` is used when it has
    one) is needed only for the semantic and diversity steps.
    """
    opts = options if isinstance(options, SelectOptions) else SelectOptions(**(options or {}))
    pool: dict[str, QARecord] = {}
    syn_pool: dict[str, QARecord] = {}
    for r in records:
        (syn_pool if r.kind == "anti_sycophancy" else pool)[r.record_id] = r
    for r in synthetic:
        syn_pool[r.record_id] = r
    quality = {rid: quality_score(r, opts.quality_scores) for rid, r in pool.items()}
    current = sorted(pool.values(), key=lambda r: (-quality[r.record_id], r.record_id))
    steps: list[StepReport] = []

    def run(step: str, fn: Callable[[list[QARecord]], tuple[list[QARecord], list[Removal]]],
            skipped: str | None) -> None:
        nonlocal current
        rep = StepReport(step=step, records_in=len(current), skipped=skipped)
        if skipped is None and current:
            t0, e0 = time.perf_counter(), embed_time[0]
            current, rep.removed = fn(current)
            rep.seconds = time.perf_counter() - t0 - (embed_time[0] - e0)
            log.info("%s: %d in, %d removed (%.1fs)", step, rep.records_in, len(rep.removed),
                     rep.seconds)
        steps.append(rep)

    emb_cache: dict[str, np.ndarray] = {}
    embed_time = [0.0]

    def embeddings(recs: list[QARecord]) -> np.ndarray:
        missing = [r for r in recs if r.record_id not in emb_cache]
        if missing:
            if embedder is None:
                raise ValueError("the semantic and diversity steps need an embedder")
            t0 = time.perf_counter()
            vecs = _embed(embedder, [_record_text(r) for r in missing], progress)
            embed_time[0] += time.perf_counter() - t0
            for r, v in zip(missing, vecs, strict=True):
                emb_cache[r.record_id] = v
        if not recs:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([emb_cache[r.record_id] for r in recs])

    approximate_steps: list[str] = []

    def approximate(step: str, n: int) -> bool:
        """Whether this step's neighbour search over ``n`` rows uses the HNSW graph."""
        if opts.ann_min_records is None or n <= opts.ann_min_records:
            return False
        from . import _ann

        if not _ann.available():
            log.warning("%s over %d records: usearch is not installed, so the neighbours "
                        "are searched exactly (O(n^2)); pip install usearch", step, n)
            return False
        if step not in approximate_steps:
            approximate_steps.append(step)
        return True

    def semantic(recs: list[QARecord]) -> tuple[list[QARecord], list[Removal]]:
        thr = opts.semantic_threshold
        assert thr is not None
        dups = semantic_duplicates(embeddings(recs), thr, block=opts.block_size,
                                   approximate=approximate("semantic_duplicate", len(recs)),
                                   progress=progress)
        gone = {i: (d, s) for i, d, s in dups}
        removed = [Removal(recs[i].record_id, "semantic_duplicate",
                           f"embedding cosine {s:.3f} >= {thr:g}",
                           duplicate_of=recs[d].record_id, similarity=s)
                   for i, (d, s) in sorted(gone.items())]
        return [r for i, r in enumerate(recs) if i not in gone], removed

    def subset(recs: list[QARecord], size: int) -> set[int]:
        if size >= len(recs):
            return set(range(len(recs)))
        w = np.array([max(quality[r.record_id], _MIN_WEIGHT) for r in recs])
        return set(facility_location(embeddings(recs), w, size, neighbors=opts.neighbors,
                                     block=opts.block_size,
                                     approximate=approximate("diversity", len(recs)),
                                     progress=progress))

    def diverse(recs: list[QARecord]) -> tuple[list[QARecord], list[Removal]]:
        size = opts.target_size
        assert size is not None
        temperature = opts.source_temperature
        if temperature is None:
            keep = subset(recs, size)
            removed = [Removal(r.record_id, "diversity", f"not among the {size} records of "
                               "the facility-location subset")
                       for i, r in enumerate(recs) if i not in keep]
            return [r for i, r in enumerate(recs) if i in keep], removed
        by_source: dict[str, list[int]] = {}
        for i, r in enumerate(recs):
            by_source.setdefault(record_source(r), []).append(i)
        quotas = source_quotas({k: len(v) for k, v in by_source.items()}, size, temperature)
        kept: set[int] = set()
        removed = []
        for source in sorted(by_source):
            rows, quota = by_source[source], quotas[source]
            chosen = {rows[j] for j in subset([recs[i] for i in rows], quota)} if quota else set()
            kept |= chosen
            removed += [Removal(recs[i].record_id, "diversity", f"not among the {quota} "
                                f"of {len(rows)} records of source {source} in the "
                                f"facility-location subset (its share of {size} across "
                                f"{len(by_source)} sources at source_temperature "
                                f"{temperature:g})") for i in rows if i not in chosen]
        return [r for i, r in enumerate(recs) if i in kept], removed

    run("exact_duplicate", _exact, None if opts.exact else "off")
    run("near_duplicate", lambda rs: _near(rs, opts, progress),
        None if opts.near_duplicate_threshold is not None else "off")
    run("semantic_duplicate", semantic,
        None if opts.semantic_threshold is not None else "off")
    run("contaminated", lambda rs: _contaminated(rs, eval_set),  # type: ignore[arg-type]
        None if eval_set is not None else "no evaluation set given")
    size = opts.target_size
    run("diversity", diverse,
        "no target size" if size is None else
        (f"target size {size} >= {len(current)} records left" if size >= len(current)
         else None))
    selected = sorted(current, key=lambda r: r.record_id)

    # synthetic records: exact de-duplication and decontamination, then the share
    syn_steps: list[StepReport] = []
    syn = sorted(syn_pool.values(), key=lambda r: r.record_id)
    available = len(syn)
    for step, fn, skipped in (
            ("exact_duplicate", _exact, None if opts.exact else "off"),
            ("contaminated", lambda rs: _contaminated(rs, eval_set),  # type: ignore[arg-type]
             None if eval_set is not None else "no evaluation set given")):
        rep = StepReport(step=step, records_in=len(syn), skipped=skipped)
        if skipped is None and syn:
            syn, rep.removed = fn(syn)
        syn_steps.append(rep)
    share = min(len(syn), math.ceil(len(selected) / opts.synthetic_ratio))
    ranked = sorted(syn, key=lambda r: (_split_hash(opts.seed, r.record_id), r.record_id))
    rep = StepReport(step="synthetic_ratio", records_in=len(syn))
    rep.removed = [Removal(r.record_id, "synthetic_ratio",
                           f"beyond the share of 1 synthetic per {opts.synthetic_ratio:g} "
                           f"instruction records ({share})") for r in ranked[share:]]
    syn_steps.append(rep)
    chosen_syn = sorted(ranked[:share], key=lambda r: r.record_id)
    return Selection(records=selected, synthetic=chosen_syn, steps=steps,
                     synthetic_steps=syn_steps, synthetic_available=available,
                     quality={r.record_id: round(quality[r.record_id], 6) for r in selected},
                     options=opts, embed_seconds=embed_time[0],
                     approximate_steps=approximate_steps)


def split_eval(record_id: str, *, eval_fraction: float, seed: int) -> bool:
    """True when the record goes to the evaluation split: a hash of the seed and the record
    id, so adding records never moves the others."""
    return _split_hash(seed, record_id) < eval_fraction * 2.0 ** 64

