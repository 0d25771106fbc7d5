"""Fusion: RRF and convex combination, checked against hand-computed values."""

import numpy as np
import pytest

from ragkit.config import ConvexConfig, RRFConfig
from ragkit.retrieval.fusion import (
    convex_combination,
    fuse,
    merge_duplicates,
    min_max,
    reciprocal_rank_fusion,
)

DENSE = [(10, 0.9), (11, 0.8), (12, 0.1)]
SPARSE = [(12, 7.0), (13, 3.0), (10, 1.0)]


def test_rrf_scores_and_order():
    fused = reciprocal_rank_fusion({"dense": DENSE, "sparse": SPARSE}, k=60)
    scores = {f.row: f.score for f in fused}
    assert scores[10] == pytest.approx(1 / 61 + 1 / 63)
    assert scores[12] == pytest.approx(1 / 63 + 1 / 61)
    assert scores[11] == pytest.approx(1 / 62)
    assert scores[13] == pytest.approx(1 / 62)
    # equal fused scores are ordered by row, deterministically
    assert [f.row for f in fused] == [10, 12, 11, 13]
    assert fused[0].retrievers["dense"].rank == 1 and fused[0].retrievers["sparse"].rank == 3
    assert "dense" not in next(f for f in fused if f.row == 13).retrievers


def test_rrf_weights_and_k():
    fused = reciprocal_rank_fusion({"dense": DENSE, "sparse": SPARSE}, k=1, weights={"dense": 0.0, "sparse": 2.0})
    assert [f.row for f in fused][:3] == [12, 13, 10]
    assert fused[0].score == pytest.approx(2 / 2)


def test_min_max():
    assert min_max(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert min_max(np.array([5.0, 5.0])).tolist() == [1.0, 1.0]
    assert min_max(np.array([])).size == 0


def test_convex_combination():
    fused = convex_combination({"dense": DENSE, "sparse": SPARSE}, weights={"dense": 0.7, "sparse": 0.3})
    scores = {f.row: f.score for f in fused}
    # dense minmax: 10 -> 1, 11 -> 0.875, 12 -> 0; sparse minmax: 12 -> 1, 13 -> 1/3, 10 -> 0
    assert scores[10] == pytest.approx(0.7)
    assert scores[11] == pytest.approx(0.7 * 0.875)
    assert scores[12] == pytest.approx(0.3)
    assert scores[13] == pytest.approx(0.3 / 3)
    assert [f.row for f in fused] == [10, 11, 12, 13]


def test_fuse_dispatches_on_config_and_handles_empty_lists():
    assert fuse({"dense": DENSE, "sparse": []}, RRFConfig())[0].row == 10
    assert fuse({"dense": [], "sparse": []}, ConvexConfig()) == []


def test_merge_duplicates_keeps_one_row_per_text_at_its_best_rank():
    # rows 20..22 share one text ("dup"); dense ranks them 1-3, sparse ranks row 22 second.
    key_of_row = {20: "dup", 21: "dup", 22: "dup", 30: "a", 31: "b"}
    merged = merge_duplicates(
        {"dense": [(21, 0.9), (20, 0.9), (22, 0.9), (30, 0.5)], "sparse": [(31, 7.0), (22, 6.0), (30, 1.0)]},
        key_of_row,
    )
    # the same representative (lowest row, 20) in both lists, at each list's best rank for that text
    assert merged["dense"] == [(20, 0.9), (30, 0.5)]
    assert merged["sparse"] == [(31, 7.0), (20, 6.0), (30, 1.0)]
    fused = convex_combination(merged, weights={"dense": 0.75, "sparse": 0.25})
    assert sorted(f.row for f in fused) == [20, 30, 31]  # one fused candidate per text


def test_merging_duplicates_stops_a_flood_of_identical_chunks_from_drowning_a_real_match():
    # 50 identical dense candidates tie; min-max of a constant list is all ones. Unmerged, every
    # copy outranks the exact BM25 match; merged, the match is second.
    flood = [(row, 0.42) for row in range(50)]
    key_of_row = {row: "same paragraph" for row in range(50)} | {99: "the answer"}
    rankings = {"dense": flood, "sparse": [(99, 12.0)]}
    weights = {"dense": 0.75, "sparse": 0.25}
    unmerged = convex_combination(rankings, weights)
    assert [f.row for f in unmerged].index(99) == 50
    merged = convex_combination(merge_duplicates(rankings, key_of_row), weights)
    assert [f.row for f in merged] == [0, 99]
