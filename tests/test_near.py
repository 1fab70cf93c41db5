"""The data set builder's near-duplicate step (``services/datasets/_near.py``), checked
against a brute-force greedy Jaccard over every pair and against the true Jaccard of the
texts, neither of which uses the MinHash code under test."""

from __future__ import annotations

import random

import numpy as np
import pytest

from syllabus.services.datasets._near import (
    band_layout,
    minhash_signatures,
    near_duplicates,
    shingle_hashes,
)

WORDS = [f"w{i}" for i in range(3000)]


def _texts(n_base: int, copies: int, rng: random.Random) -> list[set[str]]:
    """``n_base`` random 40-word texts, each followed by ``copies`` edited copies (one to
    eight words replaced), shuffled."""
    out = []
    for _ in range(n_base):
        base = rng.sample(WORDS, 40)
        out.append(set(base))
        for _ in range(copies):
            edit = list(base)
            for pos in rng.sample(range(40), rng.randint(1, 8)):
                edit[pos] = rng.choice(WORDS)
            out.append(set(edit))
    rng.shuffle(out)
    return out


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b)


def _brute_force(sets: list[set[str]], threshold: float) -> dict[int, int]:
    kept: list[int] = []
    dup: dict[int, int] = {}
    for i, s in enumerate(sets):
        best = None
        for j in kept:
            sim = _jaccard(s, sets[j])
            if sim >= threshold and (best is None or sim > best[0]):
                best = (sim, j)
        if best is None:
            kept.append(i)
        else:
            dup[i] = best[1]
    return dup


def test_band_layout_is_datasketchs_for_the_lowered_threshold():
    # the layout ingest and the old MinHashLSH used at 0.8 - 0.2
    assert band_layout(0.6, 128) == (18, 7)


def test_signature_agreement_estimates_the_true_jaccard():
    rng = random.Random(3)
    pairs = []
    for _ in range(200):
        a = set(rng.sample(WORDS, 60))
        b = set(list(a)[:rng.randint(10, 60)]) | set(rng.sample(WORDS, rng.randint(0, 30)))
        pairs.append((a, b))
    sig = minhash_signatures([shingle_hashes(s) for p in pairs for s in p], 256)
    assert sig.dtype == np.uint32 and sig.shape == (400, 256)
    est = (sig[0::2] == sig[1::2]).mean(axis=1)
    true = np.array([_jaccard(a, b) for a, b in pairs])
    err = np.abs(est - true)
    # standard error of a 256-permutation estimate is at most 0.031
    assert err.mean() < 0.03 and err.max() < 0.15


def test_signatures_are_reproducible_and_need_a_shingle():
    h = [shingle_hashes({"a", "b", "c"}), shingle_hashes({"c", "d"})]
    assert (minhash_signatures(h, 64) == minhash_signatures(h, 64)).all()
    with pytest.raises(ValueError, match="at least one shingle"):
        minhash_signatures([np.zeros(0, dtype=np.uint64)], 64)


def test_near_duplicates_match_a_brute_force_greedy_jaccard():
    rng = random.Random(7)
    sets = _texts(150, 3, rng)  # 600 texts
    truth = _brute_force(sets, 0.8)
    assert 150 < len(truth) < 450  # the copies span both sides of the threshold
    got = near_duplicates(lambda i: sets[i], len(sets), threshold=0.8, num_perm=128)
    found = {i: j for i, j, _ in got}
    # exact verification: nothing below the threshold, and every similarity is the truth
    for i, j, sim in got:
        assert j < i and j not in found
        assert sim == pytest.approx(_jaccard(sets[i], sets[j])) and sim >= 0.8
    # LSH proposes candidates only: a miss is allowed right at the threshold, rarely
    missed = set(truth) - set(found)
    assert len(missed) <= 0.03 * len(truth)
    assert len(set(found) - set(truth)) <= 0.03 * len(truth)
    agree = sum(found.get(i) == j for i, j in truth.items())
    assert agree >= 0.95 * len(truth)


def test_distinct_texts_are_all_kept_and_progress_is_reported():
    rng = random.Random(11)
    sets = [set(rng.sample(WORDS, 30)) for _ in range(3000)]
    seen: list[tuple[str, int, int]] = []
    assert near_duplicates(lambda i: sets[i], len(sets), threshold=0.8, num_perm=128,
                           progress=lambda *a: seen.append(a)) == []
    assert seen[-1][0] == "near_duplicate:minhash" and seen[-1][1:] == (3000, 3000)
    assert near_duplicates(lambda i: sets[i], 0, threshold=0.8, num_perm=128) == []
