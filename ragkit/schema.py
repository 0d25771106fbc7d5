"""The data that flows through ragkit, stage to stage.

Document -> Chunk (loading, chunking) -> Hit (retrieval) -> Answer (generation).
Every model is a pydantic model so it serialises to JSON exactly as it is shown
to users (`ragkit query --json`) and validates what comes back from disk.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def content_hash(*parts: str, length: int = 16) -> str:
    """A short, stable hex digest of `parts` (NUL-separated so ("ab","c") != ("a","bc"))."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:length]


class Document(BaseModel):
    """One loaded source document: its full text and where it came from.

    `id` is stable for the same source (a file path, or path + row id for JSONL/CSV rows);
    `source` is the path the user gave (relative paths stay relative), which is what
    citations show. `metadata` carries loader facts such as `title`, `pages`
    (list of {"page": n, "start": i, "end": j} character ranges for PDFs) or row fields.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    source: str
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class Chunk(BaseModel):
    """A span of a document: `text == document.text[start:end]` always holds.

    `id` is a content hash of (doc_id, start, text): the same text at the same place in
    the same document always gets the same id, so re-ingesting never duplicates it.
    `metadata` carries e.g. `page` (PDF) and `headings` (markdown heading path).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    doc_id: str
    source: str
    text: str
    start: int
    end: int
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_span(
        cls, document: Document, start: int, end: int, metadata: dict[str, Any] | None = None
    ) -> Chunk:
        """The chunk of `document` covering text[start:end], with its content-hash id."""
        if not 0 <= start < end <= len(document.text):
            raise ValueError(
                f"chunk span [{start}, {end}) is outside document {document.source!r} "
                f"of length {len(document.text)}"
            )
        text = document.text[start:end]
        return cls(
            id=content_hash(document.id, str(start), text),
            doc_id=document.id,
            source=document.source,
            text=text,
            start=start,
            end=end,
            metadata=dict(metadata or {}),
        )


class RetrieverScore(BaseModel):
    """What one retriever (dense, sparse, rerank) said about a chunk: 1-based rank and raw score."""

    rank: int
    score: float


class Hit(BaseModel):
    """A retrieved chunk with its final score and each retriever's rank/score."""

    chunk: Chunk
    score: float
    retrievers: dict[str, RetrieverScore] = Field(default_factory=dict)


class Citation(BaseModel):
    """Context block `n` (1-based, as numbered in the prompt) and the chunk it points to."""

    n: int
    chunk_id: str
    source: str
    start: int
    end: int


class StageTrace(BaseModel):
    ms: float


class Trace(BaseModel):
    """Per-stage wall time and every warning raised while answering (skipped stages, dropped citations)."""

    stages: dict[str, StageTrace] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage (accumulating if it runs twice)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            ms = (time.perf_counter() - started) * 1000.0
            previous = self.stages.get(name)
            self.stages[name] = StageTrace(ms=ms + (previous.ms if previous else 0.0))


class Answer(BaseModel):
    text: str
    citations: list[Citation] = Field(default_factory=list)
    hits: list[Hit] = Field(default_factory=list)
    trace: Trace = Field(default_factory=Trace)
    # With an "I don't know": the chunks nearest to answering ("related, not answering"); never citations.
    related: list[Citation] = Field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        """The public `ragkit query --json` shape (a stable contract; see README)."""
        return {
            "answer": self.text,
            "citations": [c.model_dump() for c in self.citations],
            "related": [c.model_dump() for c in self.related],
            "hits": [
                {
                    "chunk_id": h.chunk.id,
                    "source": h.chunk.source,
                    "score": float(h.score),
                    "text": h.chunk.text,
                }
                for h in self.hits
            ],
            "trace": {
                "stages": {name: {"ms": s.ms} for name, s in self.trace.stages.items()},
                "warnings": list(self.trace.warnings),
            },
        }


class LoadFailure(BaseModel):
    """A file that could not be loaded, and why (shown in the ingest summary)."""

    path: str
    reason: str
