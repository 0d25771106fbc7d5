"""Convex combination of normalised scores: score = sum_r weight_r * norm(score_r)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.protocols import Fused, Ranking

Retriever = Literal["dense", "sparse"]
from ragkit.retrieval.fusion import Normalization, collect, normalized, ranked

WINDOW = 50  # = the default dense_k / sparse_k: normalisation statistics from the pipeline's depth


class ConvexConfig(ComponentConfig):
    """score = sum(weight_r * norm(score_r)); a retriever that missed a chunk contributes 0.

    Fixed weights for every query and corpus: the 0.75 / 0.25 default was tuned on boolq-dev,
    where dense retrieval wins; on corpora where BM25 wins it falls below BM25 alone (nDCG@10
    0.963 vs 0.982 on HaluEval QA), which is why `adaptive` is the default now
    (docs/benchmarks.md#fusion-that-never-loses)."""

    name: Literal["convex"] = "convex"
    weights: dict[Retriever, float] = Field(default_factory=lambda: dict[Retriever, float]({"dense": 0.75, "sparse": 0.25}))
    normalization: Normalization = "minmax"
    window: int = Field(WINDOW, gt=0, description="normalisation statistics from each list's first `window` scores")


def min_max(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant list maps to all ones (every candidate equally good)."""
    if scores.size == 0:
        return scores
    low, high = float(scores.min()), float(scores.max())
    if high - low <= 1e-12:
        return np.ones_like(scores, dtype=np.float64)
    return (scores - low) / (high - low)


def convex_combination(
    rankings: Mapping[str, Ranking],
    weights: Mapping[Any, float],
    normalization: Normalization = "minmax",
    window: int = WINDOW,
) -> list[Fused]:
    """score = sum_r weight_r * normalized(score_r); a retriever that missed a candidate adds 0."""
    fused = collect(rankings)
    for name, ranking in rankings.items():
        values = normalized(np.array([s for _, s in ranking], dtype=np.float64), normalization, window)
        weight = weights.get(name, 0.0)
        for (row, _), value in zip(ranking, values):
            fused[int(row)].score += weight * float(value)
    return ranked(fused)


@register("fusion", "convex", ConvexConfig)
class ConvexFusion:
    """Weighted sum of normalised scores with fixed weights."""

    def __init__(self, config: ConvexConfig) -> None:
        self.config = config

    def fuse(self, rankings: Mapping[str, Ranking]) -> list[Fused]:
        c = self.config
        return convex_combination(rankings, weights=c.weights, normalization=c.normalization, window=c.window)

    def weights(self, rankings: Mapping[str, Ranking]) -> dict[str, float]:
        return {name: float(self.config.weights.get(name, 0.0)) for name in rankings}  # type: ignore[call-overload]

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {"method": "convex", "normalization": c.normalization, "window": c.window, "weights": dict(c.weights)}
