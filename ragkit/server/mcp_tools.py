"""MCP tools over the served index (official `mcp` SDK): `search`, `ask`, `status`.

The same tools are served over streamable HTTP at `/mcp` by `ragkit serve` (behind the server's
API key, when one is set) and over stdio by `ragkit mcp --index DIR` for desktop clients. Tool
calls run on the server's query workers, like REST queries.
"""

from __future__ import annotations

from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from ragkit.server.errors import describe_exception
from ragkit.server.service import RagService, parse_filter, sources_markdown

INSTRUCTIONS = (
    "ragkit answers questions from a local document index with checked citations. Use `ask` for a "
    "cited answer, `search` for the matching passages (source, character offsets, text), and "
    "`status` for what the index holds and which metadata fields `filter` can use."
)
FILTER_DESCRIPTION = (
    'Optional metadata filter (Mongo-like), e.g. {"source": "data/planets/mars.md"} or {"page": {"$gte": 3}}.'
)


class Passage(BaseModel):
    n: int = Field(description="rank, 1-based")
    chunk_id: str
    source: str
    start: int = Field(description="character offset of the passage in its document")
    end: int
    score: float
    text: str


class SearchResult(BaseModel):
    passages: list[Passage]
    generation: int | None = Field(None, description="the index generation searched")


class Citation(BaseModel):
    n: int = Field(description="the [n] in the answer")
    chunk_id: str
    source: str
    start: int
    end: int
    text: str = Field(description="the cited passage")


class AskResult(BaseModel):
    answer: str = Field(description="the answer with its [n] citations, then a Sources list")
    citations: list[Citation]
    warnings: list[str]


def build_mcp(service: RagService) -> MCPServer:
    mcp = MCPServer("ragkit", instructions=INSTRUCTIONS)

    async def guarded(coro: Any) -> Any:
        try:
            return await coro
        except Exception as exc:  # a tool error the client can read, nothing internal
            raise ToolError(describe_exception(exc)[2]) from None

    @mcp.tool()
    async def search(query: str, top_k: int = 5, filter: dict[str, Any] | None = None) -> SearchResult:
        """Find the passages of the index that best match `query` (hybrid dense + BM25 retrieval)."""

        async def run() -> SearchResult:
            hits, trace = await service.retrieve(query, max(1, min(top_k, 100)), parse_filter(filter))
            passages = [
                Passage(
                    n=i, chunk_id=h.chunk.id, source=h.chunk.source, start=h.chunk.start, end=h.chunk.end,
                    score=float(h.score), text=h.chunk.text,
                )
                for i, h in enumerate(hits, 1)
            ]
            return SearchResult(passages=passages, generation=trace.generation)

        return await guarded(run())

    @mcp.tool()
    async def ask(question: str, top_k: int | None = None, filter: dict[str, Any] | None = None) -> AskResult:
        """Answer `question` from the index; the answer cites its passages as [n]."""

        async def run() -> AskResult:
            answer = await service.query(question, top_k, parse_filter(filter))
            texts = {h.chunk.id: h.chunk.text for h in answer.hits}
            citations = [Citation(**c.model_dump(), text=texts.get(c.chunk_id, "")) for c in answer.citations]
            return AskResult(
                answer=answer.text + sources_markdown(answer), citations=citations, warnings=answer.trace.warnings
            )

        return await guarded(run())

    @mcp.tool()
    async def status() -> dict[str, Any]:
        """Documents, chunks, generation, embedding model and filterable metadata fields of the index."""
        return await guarded(service.status())

    return mcp
