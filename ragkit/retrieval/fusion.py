"""Fusing ranked lists from several retrievers into one ranking (stage "fusion").

Input: for each retriever name, its candidates as (row, score) best first. Output: `Fused`
candidates best first, each remembering every retriever's 1-based rank and raw score.
Ties in the fused score are broken by row so results are deterministic. The methods are
components of their own (`rrf`, `convex`); `fuse(rankings, config)` runs the configured one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ragkit.components import ComponentConfig, build
from ragkit.protocols import Fused, Fusion, Ranking
from ragkit.schema import RetrieverScore

if TYPE_CHECKING:
    from ragkit.config import FusionConfig

__all__ = ["Fused", "Ranking", "collect", "fuse", "merge_duplicates", "ranked"]


def collect(rankings: Mapping[str, Ranking]) -> dict[int, Fused]:
    """Every candidate row once, with each retriever's rank and score (fused score 0)."""
    fused: dict[int, Fused] = {}
    for name, ranking in rankings.items():
        for rank, (row, score) in enumerate(ranking, start=1):
            entry = fused.setdefault(int(row), Fused(int(row), 0.0))
            entry.retrievers[name] = RetrieverScore(rank=rank, score=float(score))
    return fused


def ranked(fused: dict[int, Fused]) -> list[Fused]:
    """Best fused score first, ties by lower row."""
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


def make_fusion(config: ComponentConfig) -> Fusion:
    fusion: Fusion = build("fusion", config)
    return fusion


def fuse(rankings: Mapping[str, Ranking], config: FusionConfig) -> list[Fused]:
    """`rankings` fused by the method `config` names."""
    return make_fusion(config).fuse(rankings)


def __getattr__(name: str) -> object:  # the methods' functions, importable from here as before
    if name in ("reciprocal_rank_fusion",):
        from ragkit.retrieval import rrf

        return getattr(rrf, name)
    if name in ("min_max", "convex_combination"):
        from ragkit.retrieval import convex

        return getattr(convex, name)
    raise AttributeError(f"module 'ragkit.retrieval.fusion' has no attribute {name!r}")
