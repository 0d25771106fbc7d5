"""Multi-query expansion: the pipeline's LLM rewrites the question `n` ways; each variant is
searched (dense + sparse, fused) and the per-variant fused lists are fused again with RRF.

One request asks for `n` rewrites, one per line; `parse_rewrites` keeps the usable lines
(numbering, bullets, quotes, blank lines, preambles such as "Here are 3 queries:" and repeats
of the question are dropped). Variants: the question (when `include_original`) and each rewrite.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.errors import UserError
from ragkit.protocols import ChatModel, QueryVariant
from ragkit.retrieval.transforms import ask, normalised
from ragkit.schema import Trace


class MultiQueryConfig(ComponentConfig):
    """The pipeline's LLM rewrites the question `n` ways; each variant is retrieved (dense + sparse,
    fused) and the per-variant fused lists are fused again with RRF."""

    uses_chat_model = True
    name: Literal["multi-query"] = "multi-query"
    n: int = Field(3, ge=1, le=10, description="rewrites asked for")
    include_original: bool = Field(True, description="retrieve for the question itself too")
    rrf_k: float = Field(60.0, gt=0, description="RRF constant for fusing the per-variant lists")
    max_tokens: int = Field(128, gt=0, description="reply budget for the rewrites")


MULTI_QUERY_SYSTEM = "You rewrite questions into search queries for a document search engine."

MULTI_QUERY_USER = """\
Write {n} different search queries that look for the information needed to answer the question \
below. Use other words and synonyms, keep the meaning, put each query on its own line and number \
them 1. to {n}. Write only the queries.

Question: {question}"""

# --- parsing the model's replies -------------------------------------------------------------

# A list marker at the start of a line: "1.", "2)", "(3)", "4:", "-", "*", "•", "Query 2:", "Q1."
_LIST_MARKER = re.compile(
    r"^\s*(?:[-*•]+|\(?\d{1,2}\s*[.):]|(?:search\s+)?(?:query|question|rewrite|q)\s*\d{0,2}\s*[:.)-])\s*",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    r"^(?:here\s+(?:are|is)|sure|certainly|okay|ok\b|note\b|these\s+queries)", re.IGNORECASE
)
_WORD = re.compile(r"[^\W_]", re.UNICODE)
MAX_REWRITE_CHARS = 300


def parse_rewrites(text: str, question: str, n: int) -> list[str]:
    """Up to `n` distinct rewrites from a reply with one query per line (see the module docstring)."""
    rewrites: list[str] = []
    seen = {normalised(question)}
    for line in text.splitlines():
        line = _LIST_MARKER.sub("", line, count=1).strip()
        line = line.strip("\"'`“”*_ ").strip()
        if not line or not _WORD.search(line) or len(line) > MAX_REWRITE_CHARS:
            continue
        if line.endswith(":") or _PREAMBLE.match(line):
            continue
        key = normalised(line)
        if not key or key in seen:
            continue
        seen.add(key)
        rewrites.append(line)
        if len(rewrites) == n:
            break
    return rewrites



@register("query_transform", "multi-query", MultiQueryConfig)
class MultiQueryTransform:
    """Rewrites of the question by the pipeline's LLM, each searched; lists fused by RRF."""

    name = "multi-query"

    def __init__(self, config: MultiQueryConfig, chat: ChatModel | None = None) -> None:
        if chat is None:
            raise UserError(
                "retrieval.query_transform (multi-query) needs an LLM to call: configure an `openai` "
                "(or `local`) generator in the pipeline"
            )
        self.config = config
        self.chat = chat

    @property
    def rrf_k(self) -> float:
        return self.config.rrf_k

    def messages(self, question: str) -> list[dict[str, str]]:
        user = MULTI_QUERY_USER.format(n=self.config.n, question=question.strip())
        return [{"role": "system", "content": MULTI_QUERY_SYSTEM}, {"role": "user", "content": user}]

    def variants(self, question: str, trace: Trace) -> list[QueryVariant]:
        plain = QueryVariant.plain(question)
        with trace.stage("query_transform"):
            reply = ask(
                self.chat, self.messages(question), "query_transform multi-query", trace, max_tokens=self.config.max_tokens
            )
        if reply is None:
            return [plain]
        rewrites = parse_rewrites(reply, question, self.config.n)
        if not rewrites:
            trace.warn(
                "query_transform multi-query: no usable rewrite in the LLM's reply "
                f"({reply.strip()[:120]!r}); "
                "retrieved with the question alone"
            )
            return [plain]
        variants = [QueryVariant(f"rewrite {i}", (text,), text) for i, text in enumerate(rewrites, start=1)]
        return [plain, *variants] if self.config.include_original else variants
