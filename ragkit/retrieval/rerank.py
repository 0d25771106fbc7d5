"""Stage "reranker": reorder the top fused hits. `none` (the default) keeps the fused order;
`cross-encoder` and `llm` are components of their own modules. Protocol: `ragkit.protocols.Reranker`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ragkit.components import ComponentConfig, build, register
from ragkit.protocols import ChatModel, Reranker
from ragkit.schema import Hit, Trace

if TYPE_CHECKING:
    from ragkit.config import RerankConfig

__all__ = ["NoRerankConfig", "NoReranker", "Reranker", "make_reranker"]


class NoRerankConfig(ComponentConfig):
    name: Literal["none"] = "none"


@register("reranker", "none", NoRerankConfig)
class NoReranker:
    """Keeps the fused order."""

    def __init__(self, config: NoRerankConfig | None = None, chat: ChatModel | None = None) -> None:
        self.config = config or NoRerankConfig()

    @property
    def depth(self) -> int:
        return 0

    def rerank(self, question: str, hits: list[Hit], trace: Trace) -> list[Hit]:
        return hits


def make_reranker(config: RerankConfig, chat: ChatModel | None = None) -> Reranker:
    """The configured reranker; `chat` is the pipeline's LLM (what `name: llm` asks)."""
    reranker: Reranker = build("reranker", config, chat=chat)
    return reranker


def __getattr__(name: str) -> object:  # moved to its own module
    if name in ("CrossEncoderReranker", "CrossEncoderRerankConfig"):
        from ragkit.retrieval import cross_encoder

        return getattr(cross_encoder, name)
    raise AttributeError(f"module 'ragkit.retrieval.rerank' has no attribute {name!r}")
