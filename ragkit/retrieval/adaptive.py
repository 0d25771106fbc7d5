"""Adaptive fusion: each query's dense weight follows how close its best dense match is.

    score(c) = w * zscore_dense(c) + (1 - w) * zscore_sparse(c)
    w        = 1 / (1 + exp(-slope * (top dense cosine - center)))     (per query)

`zscore` is `ragkit.retrieval.fusion.normalized`: standard deviations above the floor of each
list's first `window` scores. The weight needs no state: it is read off the query's own dense
list, so nothing is fitted at ingest and any index works as it is.

Why the top dense cosine. No fixed weight suits every corpus: with z-scores the best fixed dense
weight is 0.85 on boolq-dev (natural-language questions; MiniLM beats BM25 by 0.065 nDCG@10), 0.5
on HaluEval QA and 0.3 on NarrativeQA (questions about the characters of long plot summaries;
BM25 ahead by 0.097), and each of these loses to the better single retriever on another set. The
cosine of the query's best dense match says which side to trust: it is on an absolute scale
(normalised embeddings), and a low one means the embedding model found nothing it recognises as
close - names it does not know, text unlike its training data - which is when BM25's exact
matches are worth more. Median top cosines: pubmedqa 0.73, boolq-dev 0.69, HaluEval QA 0.65,
NarrativeQA 0.51; within a set, queries on which BM25 beats dense have lower ones. Features of a
list's shape (its top hit's lead, z-score, gap to the next) flag a confident list equally well
for both retrievers but not which retriever suits the corpus: scaling each list's weight by them
did no better than a fixed 0.6, and a gradient-boosted model choosing the weight from ten such
features (the cosine among them), trained on three of the four sets, fell 0.010 below the better
single retriever on two of them (an exploration; the one monotone feature generalises, the
flexible model did not).

`center` and `slope` were chosen by bench/fusion.py on the first half of the queries of boolq-dev
and HaluEval QA (the largest smaller-margin over the better single retriever), then checked on
the held-out halves and on NarrativeQA and PubMedQA, never used for choosing
(docs/benchmarks.md#fusion-that-never-loses). They belong to the embedder's cosine scale: the
default fits the bundled all-MiniLM-L6-v2; an embedder whose cosines sit much higher
(e5, for one, scores 0.7-0.9 even for unrelated text) needs its own `center`, measured the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.protocols import Fused, Ranking
from ragkit.retrieval.fusion import Normalization, collect, normalized, ranked

WINDOW = 50  # = the default dense_k / sparse_k


class AdaptiveConfig(ComponentConfig):
    """Per-query weights: dense weight = logistic(slope * (top dense cosine - center))."""

    name: Literal["adaptive"] = "adaptive"
    center: float = Field(0.5, description="top dense cosine at which dense and sparse weigh the same")
    slope: float = Field(5.0, ge=0, description="how fast the dense weight rises with the top dense cosine")
    normalization: Normalization = "zscore"
    window: int = Field(WINDOW, gt=0, description="normalisation statistics from each list's first `window` scores")


def dense_weight(top_dense_score: float, center: float, slope: float) -> float:
    """The logistic weight of the dense list for a query whose best dense score is `top_dense_score`."""
    x = slope * (top_dense_score - center)
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)  # the same value, without overflow for very negative x
    return e / (1.0 + e)


def query_weights(rankings: Mapping[str, Ranking], center: float, slope: float) -> dict[str, float]:
    """{"dense": w, "sparse": 1 - w} for these rankings; an empty dense list gives w = 0."""
    dense = rankings.get("dense") or []
    w = dense_weight(float(dense[0][1]), center, slope) if dense else 0.0
    return {"dense": w, "sparse": 1.0 - w}


def adaptive_fusion(
    rankings: Mapping[str, Ranking],
    center: float = 0.5,
    slope: float = 5.0,
    normalization: Normalization = "zscore",
    window: int = WINDOW,
) -> list[Fused]:
    """The rankings fused with this query's weights; a retriever that missed a candidate adds 0."""
    weights = query_weights(rankings, center, slope)
    fused = collect(rankings)
    for name, ranking in rankings.items():
        weight = weights.get(name, 0.0)
        values = normalized(np.array([s for _, s in ranking], dtype=np.float64), normalization, window)
        for (row, _), value in zip(ranking, values):
            fused[int(row)].score += weight * float(value)
    return ranked(fused)


@register("fusion", "adaptive", AdaptiveConfig)
class AdaptiveFusion:
    """Convex combination of z-scores whose dense weight rises with the query's top dense cosine."""

    def __init__(self, config: AdaptiveConfig) -> None:
        self.config = config

    def fuse(self, rankings: Mapping[str, Ranking]) -> list[Fused]:
        c = self.config
        return adaptive_fusion(rankings, c.center, c.slope, c.normalization, c.window)

    def weights(self, rankings: Mapping[str, Ranking]) -> dict[str, float]:
        return query_weights(rankings, self.config.center, self.config.slope)

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "method": "adaptive",
            "dense weight": f"1/(1+exp(-{c.slope:g}*(top dense cosine-{c.center:g})))",
            "normalization": c.normalization,
            "window": c.window,
        }
