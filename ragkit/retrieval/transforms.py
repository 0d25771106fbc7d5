"""Stage "query_transform": the searches to run for a question. `none` (the default) searches the
question as it is; `multi-query` (multi_query.py) and `hyde` (hyde.py) ask the pipeline's LLM.

A transform turns the question into `QueryVariant`s — what to embed for the dense search (several
texts are embedded and averaged into one query vector) and what BM25 searches with. Each variant
is retrieved like a plain question (dense + sparse, fused by the pipeline's fusion), and when
there are several, their fused lists are fused again with reciprocal rank fusion (RRF, equal
weights, `rrf_k`): a chunk found high by several rewrites rises, one found by a single rewrite
still gets in. RRF rather than score fusion because the variants' fused scores are not comparable
(RRF scores depend only on ranks).

- **multi-query** (`MultiQueryTransform`): one request asks for `n` rewrites, one per line;
  `parse_rewrites` keeps the usable lines (numbering, bullets, quotes, blank lines, preambles such
  as "Here are 3 queries:" and repeats of the question are dropped). Variants: the question (when
  `include_original`) and each rewrite.
- **hyde** (`HydeTransform`, Gao et al. 2022, "Precise Zero-Shot Dense Retrieval without Relevance
  Labels"): `n` requests each write a hypothetical passage answering the question. One variant:
  dense searches with the mean of the passages' embeddings and (when `include_original`) the
  question's, as in the paper; BM25 searches with the question (`sparse_query: question`) or the
  question followed by the passages (`question+passage`). Why the mean rather than separate
  searches fused: measured on boolq-dev, see README "Query transforms".

Failure never stops retrieval: when the LLM errors (server down, HTTP error, timeout) or its reply
has nothing usable, the transform falls back to the question alone and says so in the trace. Both
the LLM call ("query_transform") and the extra searches ("transform_retrieval") are timed there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from ragkit.components import ComponentConfig, build, register
from ragkit.protocols import ChatModel, Fused, QueryTransform, QueryVariant
from ragkit.retrieval.chat import describe_error
from ragkit.retrieval.rrf import reciprocal_rank_fusion
from ragkit.schema import Trace

if TYPE_CHECKING:
    from ragkit.config import QueryTransformConfig

__all__ = ["NoQueryTransform", "NoQueryTransformConfig", "QueryTransform", "QueryVariant", "fuse_variants", "make_query_transform"]


class NoQueryTransformConfig(ComponentConfig):
    name: Literal["none"] = "none"


@register("query_transform", "none", NoQueryTransformConfig)
class NoQueryTransform:
    """Searches the question as it is."""

    name = "none"
    rrf_k = 60.0

    def __init__(self, config: NoQueryTransformConfig | None = None, chat: ChatModel | None = None) -> None:
        self.config = config or NoQueryTransformConfig()

    def variants(self, question: str, trace: Trace) -> list[QueryVariant]:
        return [QueryVariant.plain(question)]


def make_query_transform(config: QueryTransformConfig, chat: ChatModel | None) -> QueryTransform:
    """The configured transform; `chat` is the pipeline's LLM (what the LLM transforms ask)."""
    transform: QueryTransform = build("query_transform", config, chat=chat)
    return transform


def ask(chat: ChatModel, messages: list[dict[str, str]], what: str, trace: Trace, **overrides: Any) -> str | None:
    """The model's reply text, or None (with a trace warning) when the request failed."""
    try:
        text, _finish_reason = chat.complete(messages, **overrides)
    except Exception as exc:  # any LLM failure (GenerationError, timeout, ...): degrade, don't fail
        trace.warn(
            f"{what}: the LLM request failed ({describe_error(exc)}); retrieved with the question alone"
        )
        return None
    return text


def normalised(text: str) -> str:
    """Lowercase words only: what makes two rewrites (or a passage and the question) the same."""
    import re

    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def fuse_variants(
    variants: Sequence[QueryVariant], fused_lists: Sequence[list[Fused]], rrf_k: float
) -> list[Fused]:
    """The per-variant fused lists fused again with RRF; one variant's list is returned as is.

    Each result keeps the `dense`/`sparse` scores from the first variant that found it, plus one
    `variant:<label>` entry per variant that did (its rank and fused score there)."""
    if len(fused_lists) == 1:
        return fused_lists[0]
    rankings = {
        f"variant:{variant.label}": [(f.row, f.score) for f in fused]
        for variant, fused in zip(variants, fused_lists)
    }
    merged = reciprocal_rank_fusion(rankings, k=rrf_k)
    first_seen: dict[int, Fused] = {}
    for fused in fused_lists:
        for entry in fused:
            first_seen.setdefault(entry.row, entry)
    for entry in merged:
        origin = first_seen[entry.row].retrievers
        entry.retrievers = {
            **{k: v for k, v in origin.items() if k in ("dense", "sparse")},
            **entry.retrievers,
        }
    return merged
