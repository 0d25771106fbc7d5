"""Fusing ranked lists from several retrievers into one ranking (stage "fusion").

Input: for each retriever name, its candidates as (row, score) best first. Output: `Fused`
candidates best first, each remembering every retriever's 1-based rank and raw score.
Ties in the fused score are broken by row so results are deterministic. The methods are
components of their own (`rrf`, `convex`, `adaptive`); `fuse(rankings, config)` runs the
configured one. `normalized` is the score normalisation the score-based methods share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import numpy as np

from ragkit.components import ComponentConfig, build
from ragkit.protocols import Fused, Fusion, Ranking
from ragkit.schema import RetrieverScore

if TYPE_CHECKING:
    from ragkit.config import FusionConfig

__all__ = ["Fused", "Normalization", "Ranking", "collect", "fuse", "merge_duplicates", "normalized", "ranked"]

Normalization = Literal["minmax", "zscore"]


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


def normalized(scores: np.ndarray, method: Normalization, window: int) -> np.ndarray:
    """A ranked list's scores (best first) made comparable with another retriever's, all >= 0.

    The statistics come from the first `window` scores only, so the same candidates get the same
    values however deep the list goes (the pipeline fuses 50 candidates; `eval retrieval` 300);
    candidates below the window's last score get 0, like candidates the retriever did not return.

    - minmax: (s - low) / (top - low), low = the window's last score; top -> 1.
    - zscore: (s - low) / std, the window's standard deviation: how many standard deviations a
      candidate stands above the window's floor. Unlike min-max, a top hit far ahead of the rest
      (a peaked list: a confident retriever) keeps its lead instead of being squeezed to 1.

    A list whose window holds one score, or only equal scores, maps to all ones for both (every
    candidate equally good: the only BM25 match of a rare term must not count as absent).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    head = scores[: max(1, window)]
    top, low = float(head.max()), float(head.min())
    if top - low <= 1e-12 * max(1.0, abs(top)):
        return np.where(scores >= low, 1.0, 0.0)
    scale = top - low if method == "minmax" else float(head.std())
    return np.clip((scores - low) / scale, 0.0, None)


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
