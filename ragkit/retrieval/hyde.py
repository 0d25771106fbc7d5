"""HyDE (Gao et al. 2022, "Precise Zero-Shot Dense Retrieval without Relevance Labels"): the
pipeline's LLM writes `n` hypothetical passages answering the question, and retrieval searches
with them. One variant: dense searches with the mean of the passages' embeddings and (when
`include_original`) the question's, as in the paper; BM25 searches with the question
(`sparse_query: question`) or the question followed by the passages (`question+passage`). Why the
mean rather than separate searches fused: measured on boolq-dev, see README "Query transforms".
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from ragkit.components import ComponentConfig, register
from ragkit.errors import UserError
from ragkit.protocols import ChatModel, QueryVariant
from ragkit.retrieval.transforms import ask, normalised
from ragkit.schema import Trace


class HydeConfig(ComponentConfig):
    """HyDE: the pipeline's LLM writes `n` hypothetical passages answering the question, and
    retrieval searches with them (dense: the mean of question and passage embeddings)."""

    uses_chat_model = True
    name: Literal["hyde"] = "hyde"
    n: int = Field(1, ge=1, le=8, description="hypothetical passages (one request each)")
    include_original: bool = Field(True, description="search with the question's own embedding too")
    combine: Literal["mean", "fuse"] = Field(
        "mean", description="mean: one search with the mean embedding; fuse: one search each, fused by RRF"
    )
    rrf_k: float = Field(60.0, gt=0, description="RRF constant (combine: fuse)")
    sparse_query: Literal["question", "question+passage"] = Field(
        "question", description="what BM25 searches with"
    )
    max_tokens: int = Field(160, gt=0, description="reply budget per passage")
    temperature: float = Field(0.0, ge=0, le=2, description="> 0 when n > 1, or the passages are identical")

    @model_validator(mode="after")
    def _varied_passages(self) -> HydeConfig:
        if self.n > 1 and self.temperature == 0:
            raise ValueError("n > 1 needs temperature > 0 (at temperature 0 every passage is the same)")
        return self


HYDE_SYSTEM = "You write short, factual encyclopedia passages."

HYDE_USER = """\
Write a short passage (2 to 4 sentences), in the style of an encyclopedia article, that answers \
the question below. Write only the passage.

Question: {question}"""


_PASSAGE_LABEL = re.compile(r"^\s*(?:passage|answer|hypothetical passage)\s*:\s*", re.IGNORECASE)


def clean_passage(text: str) -> str:
    """The passage text without a leading "Passage:" label, code fences or extra whitespace."""
    text = text.strip().strip("`").strip()
    text = _PASSAGE_LABEL.sub("", text)
    return " ".join(text.split())


@register("query_transform", "hyde", HydeConfig)
class HydeTransform:
    """Hypothetical passages by the pipeline's LLM, searched with (mean embedding or fused)."""

    name = "hyde"

    def __init__(self, config: HydeConfig, chat: ChatModel | None = None) -> None:
        if chat is None:
            raise UserError(
                "retrieval.query_transform (hyde) needs an LLM to call: configure an `openai` "
                "(or `local`) generator in the pipeline"
            )
        self.config = config
        self.chat = chat

    @property
    def rrf_k(self) -> float:
        return self.config.rrf_k

    def messages(self, question: str) -> list[dict[str, str]]:
        user = HYDE_USER.format(question=question.strip())
        return [{"role": "system", "content": HYDE_SYSTEM}, {"role": "user", "content": user}]

    def variants(self, question: str, trace: Trace) -> list[QueryVariant]:
        passages: list[str] = []
        with trace.stage("query_transform"):
            for _ in range(self.config.n):
                reply = ask(
                    self.chat, self.messages(question), "query_transform hyde", trace,
                    max_tokens=self.config.max_tokens, temperature=self.config.temperature,
                )  # fmt: skip
                if reply is None:
                    break  # the server is failing: don't wait for it n times
                passage = clean_passage(reply)
                if passage and normalised(passage) != normalised(question):
                    passages.append(passage)
        if not passages:
            if not any("query_transform hyde" in w for w in trace.warnings):
                trace.warn(
                    "query_transform hyde: the LLM wrote no passage; retrieved with the question alone"
                )
            return [QueryVariant.plain(question)]
        if self.config.combine == "fuse":  # each passage searched on its own, lists fused by RRF
            searches = [
                QueryVariant(
                    f"hyde {i}",
                    (p,),
                    question if self.config.sparse_query == "question" else f"{question}\n{p}",
                )
                for i, p in enumerate(passages, start=1)
            ]
            return [QueryVariant.plain(question), *searches] if self.config.include_original else searches
        dense = (question, *passages) if self.config.include_original else tuple(passages)
        sparse = question if self.config.sparse_query == "question" else "\n".join([question, *passages])
        return [QueryVariant("hyde", dense, sparse)]
