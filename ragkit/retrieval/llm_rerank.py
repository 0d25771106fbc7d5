"""Reranking fused candidates with the generator LLM: pointwise relevance scores (0-10).

One request per hit ("how relevant is this passage to the question, 0 to 10? reply with the
number only"); the first number from 0 to 10 in the reply is the hit's score. Pointwise rather
than a listwise permutation (RankGPT style) because a small local model cannot be trusted to
return a complete permutation of ten passages, while one number per passage parses reliably and
a bad reply costs only that hit.

Robustness (never crash, never drop hits):
- a reply without a usable number leaves that hit *unscored*: it keeps its fused position and the
  scored hits are reordered (by score, ties in fused order) in the remaining positions;
- an LLM error (server down, HTTP error, timeout) stops the scoring — the hits not scored yet keep
  their fused positions — so a dead server costs one failed request, not one per hit;
- both are reported in the trace. Scored hits get `retrievers["rerank"]` (rank, LLM score) and
  the LLM score as `Hit.score`; unscored hits keep their fused score.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.errors import UserError
from ragkit.protocols import ChatModel
from ragkit.retrieval.chat import describe_error
from ragkit.schema import Hit, RetrieverScore, Trace


class LLMRerankConfig(ComponentConfig):
    """Pointwise relevance scores (0-10) from the pipeline's LLM, one request per hit."""

    uses_chat_model = True
    name: Literal["llm"] = "llm"
    top_n: int = Field(10, gt=0, description="how many fused candidates the LLM scores (one request each)")
    max_tokens: int = Field(8, gt=0, description="reply budget per score (the reply is one number)")
    max_passage_chars: int = Field(1000, gt=0, description="passage text shown to the model")

RERANK_SYSTEM = "You judge how relevant a passage is to a search question."

RERANK_USER = """\
Question: {question}

Passage:
{passage}

How relevant is the passage to the question, from 0 (unrelated) to 10 (it answers the question)? \
Reply with the number only."""

# The first number in 0..10 not glued to other digits ("7", "7/10", "Score: 8.5", but not "85").
_SCORE = re.compile(r"(?<![\d.])(10(?:\.0+)?|\d(?:\.\d+)?)(?![\d])")
# "10. The passage is irrelevant": a list number starting a sentence, not a score (seen from
# SmolLM2-135M).
_LIST_NUMBER = re.compile(r"^\s*\d+\.\s+[^\W\d_]")


def parse_score(text: str) -> float | None:
    """The relevance score in the reply, or None when there is no number from 0 to 10."""
    if _LIST_NUMBER.match(text):
        return None
    match = _SCORE.search(text)
    return float(match.group(1)) if match else None


@register("reranker", "llm", LLMRerankConfig)
class LLMReranker:
    """Pointwise 0-10 relevance scores from the pipeline's LLM (one request per hit)."""

    def __init__(self, config: LLMRerankConfig, chat: ChatModel | None = None) -> None:
        if chat is None:
            raise UserError(
                "retrieval.rerank (llm) needs an LLM to call: configure an `openai` (or `local`) generator"
            )
        self.config = config
        self.chat = chat

    @property
    def depth(self) -> int:
        return self.config.top_n

    def messages(self, question: str, passage: str) -> list[dict[str, str]]:
        passage = passage.strip()[: self.config.max_passage_chars]
        user = RERANK_USER.format(question=question.strip(), passage=passage)
        return [{"role": "system", "content": RERANK_SYSTEM}, {"role": "user", "content": user}]

    def scores(self, question: str, hits: list[Hit], trace: Trace) -> list[float | None]:
        """One LLM score per hit; None where the reply had no score or the LLM failed."""
        scores: list[float | None] = [None] * len(hits)
        unparsed: list[str] = []
        with trace.stage("llm_rerank"):
            for i, hit in enumerate(hits):
                try:
                    reply, _finish_reason = self.chat.complete(
                        self.messages(question, hit.chunk.text), max_tokens=self.config.max_tokens
                    )
                except Exception as exc:  # any LLM failure: keep the fused order for the rest
                    trace.warn(
                        f"retrieval.rerank llm: the LLM request failed ({describe_error(exc)}); "
                        f"{len(hits) - i} of {len(hits)} hits keep their fused order"
                    )
                    break
                scores[i] = parse_score(reply)
                if scores[i] is None:
                    unparsed.append(reply.strip()[:60])
        if unparsed:
            trace.warn(
                f"retrieval.rerank llm: {len(unparsed)} of {len(hits)} replies had no 0-10 score "
                f"(first: {unparsed[0]!r}); those hits keep their fused positions"
            )
        return scores

    def rerank(self, question: str, hits: list[Hit], trace: Trace) -> list[Hit]:
        if not hits:
            return hits
        return reorder(hits, self.scores(question, hits, trace))


def reorder(hits: list[Hit], scores: list[float | None]) -> list[Hit]:
    """Scored hits sorted by score (ties: fused order) into the positions of scored hits;
    unscored hits stay where they were. Returns `hits` itself when nothing was scored."""
    scored = [i for i, s in enumerate(scores) if s is not None]
    if not scored:
        return hits
    by_score = sorted(scored, key=lambda i: (-float(scores[i]), i))  # type: ignore[arg-type]
    result = list(hits)
    for slot, (position, i) in enumerate(zip(scored, by_score), start=1):
        hit = hits[i]
        score = float(scores[i])  # type: ignore[arg-type]
        retrievers = dict(hit.retrievers)
        retrievers["rerank"] = RetrieverScore(rank=slot, score=score)
        result[position] = hit.model_copy(update={"score": score, "retrievers": retrievers})
    return result
