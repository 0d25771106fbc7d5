"""The data that flows through ragkit, stage to stage.

Document -> Chunk (loading, chunking) -> Hit (retrieval) -> Answer (generation).
Every model is a pydantic model so it serialises to JSON exactly as it is shown
to users (`ragkit query --json`) and validates what comes back from disk.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragkit.redaction import redact


def content_hash(*parts: str, length: int = 16) -> str:
    """A short, stable hex digest of `parts` (NUL-separated so ("ab","c") != ("a","bc"))."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:length]


_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` as valid Unicode that every later stage can encode: surrogate pairs that arrived as
    two code points are joined, lone surrogates and NUL characters become U+FFFD.

    A lone surrogate (JSON "\\ud800", a non-UTF-8 file name) cannot be encoded as UTF-8, so the
    tokenizer, SQLite and JSON output would each fail on it; NUL ends strings in C libraries.
    """
    if not _UNSAFE.search(text):
        return text
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return joined.replace("\x00", "\ufffd")


def clean_value(value: Any) -> Any:
    """`clean_text` applied to every string (keys too) inside JSON-like metadata."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_value(v) for v in value]
    return value


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

    # Whatever a loader (or an API caller) produced, a Document holds valid Unicode: this is the
    # one place every text passes before it reaches a chunker, the embedder or the store.
    @field_validator("id", "source", "text")
    @classmethod
    def _valid_unicode(cls, value: str) -> str:
        return clean_text(value)

    @field_validator("metadata")
    @classmethod
    def _valid_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        return clean_value(value)


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
    """A retrieved chunk with its final score and each retriever's rank/score.

    `hit.source`, `hit.text`, `hit.chunk_id` and `hit.metadata` are the chunk's, for convenience."""

    chunk: Chunk
    score: float
    retrievers: dict[str, RetrieverScore] = Field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.chunk.source

    @property
    def text(self) -> str:
        return self.chunk.text

    @property
    def chunk_id(self) -> str:
        return self.chunk.id

    @property
    def metadata(self) -> dict[str, Any]:
        return self.chunk.metadata


class Citation(BaseModel):
    """Citation `[n]` as the answer shows it (1, 2, 3... in order of first appearance) and the chunk
    it points to: context block `block` (1-based, as numbered in the prompt), i.e. `hits[block - 1]`."""

    n: int
    block: int
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
    # Which published index generation answered (set by retrieval; not part of `query --json`):
    # a server reports it so clients can tell which version of the index they saw.
    generation: int | None = None

    def warn(self, message: str) -> None:
        """Record a warning; secrets are masked here, so no trace can leak one (see ragkit.redaction)."""
        self.warnings.append(redact(message))

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
