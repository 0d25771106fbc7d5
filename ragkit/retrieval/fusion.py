"""Fusing ranked lists from several retrievers into one ranking.

Input: for each retriever name, its candidates as (row, score) best first. Output: `Fused`
candidates best first, each remembering every retriever's 1-based rank and raw score.
Ties in the fused score are broken by row so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ragkit.config import ConvexConfig, FusionConfig, RRFConfig
from ragkit.schema import RetrieverScore

Ranking = Sequence[tuple[int, float]]


@dataclass
class Fused:
    row: int
    score: float
    retrievers: dict[str, RetrieverScore] = field(default_factory=dict)


def _collect(rankings: Mapping[str, Ranking]) -> dict[int, Fused]:
    fused: dict[int, Fused] = {}
    for name, ranking in rankings.items():
        for rank, (row, score) in enumerate(ranking, start=1):
            entry = fused.setdefault(int(row), Fused(int(row), 0.0))
            entry.retrievers[name] = RetrieverScore(rank=rank, score=float(score))
    return fused


def _sorted(fused: dict[int, Fused]) -> list[Fused]:
    return sorted(fused.values(), key=lambda f: (-f.score, f.row))


def merge_duplicates(rankings: Mapping[str, Ranking], key_of_row: Mapping[int, str]) -> dict[str, Ranking]:
    """Collapse candidates with the same key (chunk-text hash) into one row before fusing.

    Identical chunks (boilerplate, a file repeated 1,000 times) otherwise fill a retriever's
    whole candidate list with one text: the fused top-k shows it k times, and min-max
    normalisation of such a constant list rates it as highly as a real match. Every list maps a
    text to the same representative row (its lowest row, so dense and sparse agree) and keeps
    that text's best rank only.
    """
    representative: dict[str, int] = {}
    for ranking in rankings.values():
        for row, _ in ranking:
            key = key_of_row[int(row)]
            representative[key] = min(int(row), representative.get(key, int(row)))
    merged: dict[str, Ranking] = {}
    for name, ranking in rankings.items():
        seen: set[str] = set()
        kept: list[tuple[int, float]] = []
        for row, score in ranking:
            key = key_of_row[int(row)]
            if key not in seen:
                seen.add(key)
                kept.append((representative[key], float(score)))
        merged[name] = kept
    return merged


def reciprocal_rank_fusion(
    rankings: Mapping[str, Ranking], k: float = 60.0, weights: Mapping[str, float] | None = None
) -> list[Fused]:
    """RRF (Cormack et al., 2009): score = sum_r weight_r / (k + rank_r)."""
    fused = _collect(rankings)
    for entry in fused.values():
        entry.score = sum(
            (weights or {}).get(name, 1.0) / (k + s.rank) for name, s in entry.retrievers.items()
        )
    return _sorted(fused)


def min_max(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant list maps to all ones (every candidate equally good)."""
    if scores.size == 0:
        return scores
    low, high = float(scores.min()), float(scores.max())
    if high - low <= 1e-12:
        return np.ones_like(scores, dtype=np.float64)
    return (scores - low) / (high - low)


def convex_combination(
    rankings: Mapping[str, Ranking], weights: Mapping[str, float]
) -> list[Fused]:
    """score = sum_r weight_r * minmax(score_r); a retriever that missed a candidate adds 0."""
    fused = _collect(rankings)
    for name, ranking in rankings.items():
        normalised = min_max(np.array([s for _, s in ranking], dtype=np.float64))
        weight = weights.get(name, 0.0)
        for (row, _), value in zip(ranking, normalised):
            fused[int(row)].score += weight * float(value)
    return _sorted(fused)


def fuse(rankings: Mapping[str, Ranking], config: FusionConfig) -> list[Fused]:
    if isinstance(config, RRFConfig):
        return reciprocal_rank_fusion(rankings, k=config.k, weights=config.weights)
    if isinstance(config, ConvexConfig):
        return convex_combination(rankings, weights=config.weights)
    raise ValueError(f"unknown fusion {config!r}")  # unreachable: config validates names
