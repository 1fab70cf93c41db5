"""Near-duplicate removal for a data set version, in bounded memory: MinHash signatures
computed with numpy a batch of records at a time, LSH band keys kept as one ``uint64``
per band and record, and exact Jaccard verification only for the records that share a
band bucket with another.

Why not datasketch's ``MinHashLSH``, which this replaced: it keeps every record's
signature as 128 ``uint64`` (1 kB), every band bucket as a Python set in a dict, and every
kept record's shingle set, about 10.8 kB per record at 1M records (12.4 GB in
``benchmarks/bench_select.py``). Here a record costs its band keys (18 x 8 bytes at the
default threshold) and two ``int32`` per band while the groups are found; a signature
(``num_perm`` ``uint32``, 512 bytes) lives only while its batch is hashed; and shingle sets
are rebuilt only for the records in a shared bucket.

The decision is the same as before: records are taken in order (best quality first), and a
record is a near duplicate when a record *kept before it* that shares at least one LSH band
bucket with it has an exact word-shingle Jaccard similarity at or above the threshold. The
bands are cut for a threshold 0.2 lower than the decision's (datasketch's optimal banding,
so at 0.8: 18 bands of 7 rows, which miss about 1.5 % of the pairs at J = 0.8), so MinHash
only proposes candidates and never decides.

The hash family: each shingle is hashed to 32 bits (CRC-32 of its UTF-8 bytes), and
permutation ``p`` maps a hash ``x`` to ``((a_p * x + b_p) mod 2**64) >> 32`` with random
odd ``a_p`` and random ``b_p`` (multiply-add-shift, a 2-universal family for 32-bit keys;
Dietzfelbinger 1996), all from a fixed seed, so a selection is reproducible.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["band_keys", "band_layout", "minhash_signatures", "near_duplicates",
           "shingle_hashes"]

#: the seed of the permutations and band key multipliers
SEED = 1
#: records hashed together (bounds the ``shingles x num_perm`` working array)
BATCH = 2048

Progress = Callable[[str, int, int], None]


def band_layout(threshold: float, num_perm: int) -> tuple[int, int]:
    """``(bands, rows)``: datasketch's optimal banding for ``threshold`` (equal weights
    on false positives and negatives), the layout ``MinHashLSH`` would use."""
    from datasketch.lsh import _optimal_param

    b, r = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return int(b), int(r)


def shingle_hashes(shingles: set[str]) -> np.ndarray:
    """Each shingle's CRC-32, as ``uint64`` (at least one element: pass ``{""}`` for an
    empty text)."""
    return np.fromiter((zlib.crc32(s.encode("utf-8")) for s in shingles), dtype=np.uint64,
                       count=len(shingles))


def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    a = rng.integers(0, 2 ** 63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2 ** 63, num_perm, dtype=np.uint64)
    return a, b


def minhash_signatures(hashes: Sequence[np.ndarray], num_perm: int) -> np.ndarray:
    """The MinHash signatures of several shingle-hash arrays, ``(len(hashes), num_perm)``
    ``uint32``. Every array must be non-empty."""
    a, b = _permutations(num_perm)
    lengths = np.fromiter((len(h) for h in hashes), dtype=np.int64, count=len(hashes))
    if len(hashes) == 0:
        return np.zeros((0, num_perm), dtype=np.uint32)
    if lengths.min() < 1:
        raise ValueError("every record needs at least one shingle")
    flat = np.concatenate(hashes)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    out = np.empty((len(hashes), num_perm), dtype=np.uint32)
    # columns in slices, so the working array stays near 16 MB
    step = max(1, (1 << 21) // max(1, len(flat)))
    for c in range(0, num_perm, step):
        v = flat[:, None] * a[None, c:c + step] + b[None, c:c + step]  # wraps mod 2**64
        v >>= np.uint64(32)
        out[:, c:c + step] = np.minimum.reduceat(v, starts, axis=0)
    return out


def _band_multipliers(bands: int, rows: int) -> np.ndarray:
    rng = np.random.default_rng(SEED + 1)
    return rng.integers(0, 2 ** 63, (bands, rows), dtype=np.uint64) * np.uint64(2) + \
        np.uint64(1)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One ``uint64`` key per band and record, ``(n, bands)``: a random linear hash of the
    band's ``rows`` signature values (two records share a key when their band agrees, and
    by chance with probability about 2**-64)."""
    mult = _band_multipliers(bands, rows)
    sig = signatures.astype(np.uint64)
    keys = np.zeros((signatures.shape[0], bands), dtype=np.uint64)
    for band in range(bands):
        part = sig[:, band * rows:(band + 1) * rows] * mult[band][None, :]
        keys[:, band] = part.sum(axis=1, dtype=np.uint64)
    return keys


def near_duplicates(shingles: Callable[[int], set[str]], n: int, *, threshold: float,
                    num_perm: int, progress: Progress | None = None
                    ) -> list[tuple[int, int, float]]:
    """Greedy in row order: row ``i`` (of ``n``; ``shingles(i)`` gives its shingle set) is a
    near duplicate of the best earlier *kept* row that shares an LSH band bucket with it
    and whose exact Jaccard similarity is at or above ``threshold`` (ties go to the earlier
    row). Returns ``(row, duplicate_of_row, jaccard)`` for each removed row, in row
    order. ``shingles`` is called once per row while hashing, and again only for rows in
    a shared bucket."""
    bands, rows = band_layout(max(0.3, threshold - 0.2), num_perm)
    keys = np.empty((n, bands), dtype=np.uint64)
    for start in range(0, n, BATCH):
        stop = min(n, start + BATCH)
        sig = minhash_signatures([shingle_hashes(shingles(i)) for i in range(start, stop)],
                                 num_perm)
        keys[start:stop] = band_keys(sig, bands, rows)
        if progress is not None:
            progress("near_duplicate:minhash", stop, n)
    # each band's bucket of each row, and whether another row shares it
    group = np.empty((bands, n), dtype=np.int32 if n < 2 ** 31 else np.int64)
    shared = np.zeros((bands, n), dtype=bool)
    for band in range(bands):
        _, inverse, counts = np.unique(keys[:, band], return_inverse=True,
                                       return_counts=True)
        group[band] = inverse
        shared[band] = counts[inverse] > 1
    del keys
    candidates_of = np.flatnonzero(shared.any(axis=0))
    kept_in: list[dict[int, list[int]]] = [{} for _ in range(bands)]
    kept_sets: dict[int, set[str]] = {}
    out: list[tuple[int, int, float]] = []
    for done, i in enumerate(candidates_of.tolist(), 1):
        sh = shingles(i)
        my_bands = np.flatnonzero(shared[:, i]).tolist()
        my_groups = [int(group[band, i]) for band in my_bands]
        cands: set[int] = set()
        for band, g in zip(my_bands, my_groups, strict=True):
            cands.update(kept_in[band].get(g, ()))
        best: tuple[float, int] | None = None
        for j in sorted(cands):
            other = kept_sets[j]
            sim = len(sh & other) / len(sh | other)
            if sim >= threshold and (best is None or sim > best[0]):
                best = (sim, j)
        if best is not None:
            out.append((i, best[1], best[0]))
        else:
            kept_sets[i] = sh
            for band, g in zip(my_bands, my_groups, strict=True):
                kept_in[band].setdefault(g, []).append(i)
        if progress is not None and done % 5000 == 0:
            progress("near_duplicate", done, len(candidates_of))
    return out
