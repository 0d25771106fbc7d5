"""Fusion: RRF and convex combination, checked against hand-computed values."""

import pytest

from ragkit.config import ConvexConfig, RRFConfig
from ragkit.retrieval.fusion import convex_combination, fuse, min_max, reciprocal_rank_fusion

import numpy as np

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
