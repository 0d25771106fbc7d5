"""Reciprocal rank fusion (Cormack et al., 2009): score = sum_r weight_r / (k + rank_r)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.protocols import Fused, Ranking

Retriever = Literal["dense", "sparse"]
from ragkit.retrieval.fusion import collect, ranked


class RRFConfig(ComponentConfig):
    name: Literal["rrf"] = "rrf"
    k: float = Field(60.0, gt=0)
    weights: dict[Retriever, float] = Field(default_factory=lambda: dict[Retriever, float]({"dense": 1.0, "sparse": 1.0}))


def reciprocal_rank_fusion(
    rankings: Mapping[str, Ranking], k: float = 60.0, weights: Mapping[Any, float] | None = None
) -> list[Fused]:
    """RRF over `rankings`; a retriever without a weight counts 1."""
    fused = collect(rankings)
    for entry in fused.values():
        entry.score = sum((weights or {}).get(name, 1.0) / (k + s.rank) for name, s in entry.retrievers.items())
    return ranked(fused)


@register("fusion", "rrf", RRFConfig)
class RRFFusion:
    """Reciprocal rank fusion: ranks only, scores ignored."""

    def __init__(self, config: RRFConfig) -> None:
        self.config = config

    def fuse(self, rankings: Mapping[str, Ranking]) -> list[Fused]:
        return reciprocal_rank_fusion(rankings, k=self.config.k, weights=self.config.weights)

    def weights(self, rankings: Mapping[str, Ranking]) -> dict[str, float]:
        return {name: float(self.config.weights.get(name, 1.0)) for name in rankings}  # type: ignore[call-overload]

    def describe(self) -> dict[str, Any]:
        return {"method": "rrf", "k": self.config.k, "weights": dict(self.config.weights)}
