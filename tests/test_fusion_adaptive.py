"""The fusion math: windowed normalisation, z-score convex fusion and the adaptive per-query weight,
checked against values computed by hand; edge cases (empty lists, ties, constant scores, deep
lists) included. The integration test on data/ is tests/test_fusion_integration.py."""

import math

import numpy as np
import pytest

from ragkit.components import build
from ragkit.config import parse_pipeline
from ragkit.retrieval.adaptive import AdaptiveConfig, adaptive_fusion, dense_weight, query_weights
from ragkit.retrieval.convex import ConvexConfig, convex_combination
from ragkit.retrieval.fusion import fuse, normalized

DENSE = [(10, 0.70), (11, 0.60), (12, 0.20)]
SPARSE = [(12, 9.0), (13, 3.0), (10, 0.0)]


def test_minmax_uses_the_window_floor_and_zeroes_what_lies_below():
    scores = np.array([0.9, 0.7, 0.5, 0.1])
    assert normalized(scores, "minmax", window=10).tolist() == pytest.approx([1.0, 0.75, 0.5, 0.0])
    # window 3: low = 0.5, top = 0.9; 0.1 lies below the window's floor -> 0 (like a missing candidate)
    assert normalized(scores, "minmax", window=3).tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0])


def test_zscore_counts_standard_deviations_above_the_window_floor():
    scores = np.array([4.0, 2.0, 0.0])  # mean 2, population std sqrt(8/3)
    std = math.sqrt(8 / 3)
    assert normalized(scores, "zscore", window=3).tolist() == pytest.approx([4 / std, 2 / std, 0.0])
    # a peaked list keeps its top hit's lead; min-max squeezes every top hit to 1
    peaked = np.concatenate([[10.0], np.linspace(1.0, 0.7, 49)])  # one hit far ahead of the rest
    even = np.linspace(10.0, 0.7, 50)
    assert normalized(peaked, "zscore", 50)[0] == pytest.approx(7.24, abs=0.01)
    assert normalized(even, "zscore", 50)[0] == pytest.approx(3.40, abs=0.01)
    assert normalized(peaked, "minmax", 50)[0] == normalized(even, "minmax", 50)[0] == 1.0


def test_normalisation_does_not_depend_on_how_deep_the_list_goes():
    rng = np.random.default_rng(0)
    head = np.sort(rng.normal(size=50))[::-1]
    deep = np.concatenate([head, head[-1] - np.abs(rng.normal(size=250)) - 0.01])
    for method in ("minmax", "zscore"):
        assert normalized(deep, method, 50)[:50].tolist() == pytest.approx(normalized(head, method, 50).tolist())
        assert not normalized(deep, method, 50)[50:].any()


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_constant_single_and_empty_lists(method):
    assert normalized(np.array([5.0, 5.0, 5.0]), method, 50).tolist() == [1.0, 1.0, 1.0]
    assert normalized(np.array([7.5]), method, 50).tolist() == [1.0]  # the only BM25 match counts
    assert normalized(np.array([]), method, 50).size == 0
    # equal scores in the window, lower ones below it
    assert normalized(np.array([2.0, 2.0, 1.0]), method, 2).tolist() == [1.0, 1.0, 0.0]


def test_dense_weight_is_a_logistic_of_the_top_dense_cosine():
    assert dense_weight(0.45, center=0.45, slope=5) == pytest.approx(0.5)
    assert dense_weight(0.65, center=0.45, slope=5) == pytest.approx(1 / (1 + math.exp(-1.0)))  # 0.7311
    assert dense_weight(0.25, center=0.45, slope=5) == pytest.approx(1 / (1 + math.exp(1.0)))  # 0.2689
    assert dense_weight(0.9, center=0.45, slope=0) == 0.5  # slope 0: equal weights whatever the cosine
    assert dense_weight(-1.0, center=0.45, slope=1e6) == 0.0 and dense_weight(1.0, center=0.45, slope=1e6) == 1.0
    assert query_weights({"dense": DENSE, "sparse": SPARSE}, 0.45, 5) == pytest.approx(
        {"dense": 1 / (1 + math.exp(-1.25)), "sparse": 1 - 1 / (1 + math.exp(-1.25))}
    )
    assert query_weights({"dense": [], "sparse": SPARSE}, 0.45, 5) == {"dense": 0.0, "sparse": 1.0}


def test_adaptive_scores_by_hand():
    w = 1 / (1 + math.exp(-5 * (0.70 - 0.45)))  # 0.7773
    d_std = np.std([0.7, 0.6, 0.2])  # 0.2160
    s_std = np.std([9.0, 3.0, 0.0])  # 3.7417
    fused = adaptive_fusion({"dense": DENSE, "sparse": SPARSE}, center=0.45, slope=5, window=50)
    scores = {f.row: f.score for f in fused}
    assert scores[10] == pytest.approx(w * 0.5 / d_std)  # sparse's floor: adds 0
    assert scores[11] == pytest.approx(w * 0.4 / d_std)
    assert scores[12] == pytest.approx((1 - w) * 9.0 / s_std)  # dense's floor: adds 0
    assert scores[13] == pytest.approx((1 - w) * 3.0 / s_std)
    assert [f.row for f in fused] == [10, 11, 12, 13]
    assert fused[0].retrievers["dense"].rank == 1 and fused[0].retrievers["sparse"].rank == 3

    # a low top cosine hands the query to BM25 (dense weight 0.32): its exact match comes first,
    # where fixed 0.75/0.25 min-max weights keep dense's unsure top hit first
    unsure = [(10, 0.30), (11, 0.25), (12, 0.05)]
    assert adaptive_fusion({"dense": unsure, "sparse": SPARSE})[0].row == 12
    assert convex_combination({"dense": unsure, "sparse": SPARSE}, {"dense": 0.75, "sparse": 0.25})[0].row == 10


def test_adaptive_with_an_empty_list_keeps_the_other_lists_order():
    assert [f.row for f in adaptive_fusion({"dense": DENSE, "sparse": []})][:2] == [10, 11]
    assert [f.row for f in adaptive_fusion({"dense": [], "sparse": SPARSE})][:2] == [12, 13]
    assert adaptive_fusion({"dense": [], "sparse": []}) == []


def test_ties_are_broken_by_row():
    # both lists constant: every candidate scores the same -> ascending rows
    fused = adaptive_fusion({"dense": [(7, 0.5), (3, 0.5)], "sparse": [(9, 2.0), (1, 2.0)]}, center=0.5, slope=5)
    assert [f.row for f in fused] == [1, 3, 7, 9]
    assert len({round(f.score, 12) for f in fused}) == 1


def test_convex_zscore_by_hand_and_minmax_unchanged_within_the_window():
    d_std, s_std = np.std([0.7, 0.6, 0.2]), np.std([9.0, 3.0, 0.0])
    fused = convex_combination({"dense": DENSE, "sparse": SPARSE}, {"dense": 0.5, "sparse": 0.5}, "zscore")
    scores = {f.row: f.score for f in fused}
    assert scores[12] == pytest.approx(0.5 * 9.0 / s_std) and scores[10] == pytest.approx(0.5 * 0.5 / d_std)
    # min-max over lists no deeper than the window is the old whole-list min-max
    old = {f.row: f.score for f in convex_combination({"dense": DENSE, "sparse": SPARSE}, {"dense": 0.7, "sparse": 0.3})}
    assert old == pytest.approx({10: 0.7, 11: 0.7 * 0.8, 12: 0.3, 13: 0.3 / 3})


def test_components_are_registered_configurable_and_describe_themselves():
    config = parse_pipeline({"retrieval": {"fusion": {"name": "adaptive", "center": 0.5, "slope": 10}}}).retrieval.fusion
    assert isinstance(config, AdaptiveConfig) and (config.center, config.slope) == (0.5, 10)
    fusion = build("fusion", config)
    assert fusion.describe()["method"] == "adaptive" and "0.5" in fusion.describe()["dense weight"]
    assert fusion.weights({"dense": [(1, 0.5)], "sparse": []}) == {"dense": 0.5, "sparse": 0.5}
    assert fuse({"dense": DENSE, "sparse": SPARSE}, config)[0].row == 10
    convex = build("fusion", ConvexConfig(normalization="zscore"))
    assert convex.weights({"dense": DENSE, "sparse": SPARSE}) == {"dense": 0.75, "sparse": 0.25}
    with pytest.raises(Exception, match="slope"):
        parse_pipeline({"retrieval": {"fusion": {"name": "adaptive", "slope": -1}}})
