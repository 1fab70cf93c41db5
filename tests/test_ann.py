"""The approximate neighbour search of large selections (``services/datasets/_ann.py``),
checked against the exact blockwise computations it replaces above
``SelectOptions.ann_min_records``."""

from __future__ import annotations

import numpy as np
import pytest

from syllabus.services.datasets import _ann
from syllabus.services.datasets._select import (
    _knn,
    facility_location,
    semantic_duplicates,
)

pytestmark = pytest.mark.skipif(not _ann.available(), reason="usearch is not installed")


def _clustered(n_clusters: int, sizes: list[int], dim: int = 64, noise: float = 0.12,
               seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters around random centres (cos within a cluster ~0.95-0.99),
    plus isolated rows, shuffled."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_clusters):
        centre = rng.standard_normal(dim)
        for _ in range(sizes[c % len(sizes)]):
            rows.append(centre / np.linalg.norm(centre) +
                        noise * rng.standard_normal(dim) / np.sqrt(dim))
    emb = np.asarray(rows, dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb[rng.permutation(len(emb))]


def test_neighbours_are_the_exact_ones_with_exact_similarities():
    emb = _clustered(400, [1, 3, 6])
    idx, val = _ann.knn(emb, 8, step="t")
    ex_idx, ex_val = _knn(emb, 8)
    assert idx.shape == (len(emb), 8) and (idx[:, 0] == np.arange(len(emb))).mean() > 0.99
    # the similarities are recomputed exactly, in decreasing order
    exact = np.einsum("id,ikd->ik", emb, emb[idx])
    assert np.allclose(val, exact, atol=1e-5)
    assert (np.diff(val, axis=1) <= 1e-6).all()
    recall = np.mean([len(set(a) & set(b)) / 8 for a, b in zip(idx, ex_idx, strict=True)])
    assert recall > 0.9
    again, _ = _ann.knn(emb, 8, step="t")
    assert (again == idx).all()  # one-thread build: the same graph every time


def test_semantic_duplicates_match_the_exact_greedy_including_large_clusters():
    # clusters of 40 exceed the 16 neighbours listed, so the exact fallback is exercised
    emb = _clustered(120, [1, 2, 5, 40])
    exact = {i: j for i, j, _ in semantic_duplicates(emb, 0.9)}
    approx = semantic_duplicates(emb, 0.9, approximate=True)
    got = {i: j for i, j, _ in approx}
    assert len(exact) > 500
    assert len(set(exact) ^ set(got)) <= 0.01 * len(exact)
    assert sum(got.get(i) == j for i, j in exact.items()) >= 0.97 * len(exact)
    for i, j, sim in approx:
        assert j < i and sim >= 0.9
        assert sim == pytest.approx(float(emb[i] @ emb[j]), abs=1e-5)


def test_facility_location_objective_is_close_to_the_exact_one():
    emb = _clustered(300, [1, 4, 9])
    w = np.random.default_rng(1).uniform(0.5, 1.0, len(emb))

    def objective(chosen: list[int]) -> float:
        sims = np.maximum(emb @ emb[chosen].T, 0) * w[chosen][None, :]
        return float(sims.max(axis=1).sum())

    exact = facility_location(emb, w, 150)
    approx = facility_location(emb, w, 150, approximate=True)
    assert len(approx) == len(set(approx)) == 150
    assert objective(approx) >= 0.98 * objective(exact)
    assert len(set(approx) & set(exact)) >= 0.8 * 150


def test_select_uses_it_only_above_the_threshold_and_the_manifest_says_so():
    from syllabus.services.datasets import select

    from .test_datasets import _rec

    records = [_rec(i, f"question {i} about topic {i % 7}",
                    f"answer number {i} with words {i * 3} {i * 5} {i * 7}")
               for i in range(300)]

    class Embed:
        def embed_array(self, texts):
            return _clustered(1, [len(texts)], noise=3.0, seed=len(texts))

    opts = {"near_duplicate_threshold": None, "target_size": 100}
    small = select(records, embedder=Embed(), options=opts)
    assert small.approximate_steps == []
    big = select(records, embedder=Embed(), options={**opts, "ann_min_records": 200})
    assert big.approximate_steps == ["semantic_duplicate", "diversity"]
    assert len(big.records) == 100
