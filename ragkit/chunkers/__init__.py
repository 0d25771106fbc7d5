"""Stage 2: chunking. `Document` -> `Chunk`s whose offsets point back into the document exactly.

Protocol: `Chunker.chunk(document) -> list[Chunk]`, built by `make_chunker(config)`.
Invariant for every chunker: `document.text[c.start:c.end] == c.text`.
"""

from __future__ import annotations

from typing import Protocol

from ragkit.chunkers.markdown import MarkdownChunker
from ragkit.chunkers.recursive import RecursiveChunker
from ragkit.chunkers.tokens import Tokenizer, count_tokens, load_tokenizer
from ragkit.config import ChunkerConfig
from ragkit.schema import Chunk, Document

__all__ = [
    "Chunker",
    "MarkdownChunker",
    "RecursiveChunker",
    "Tokenizer",
    "count_tokens",
    "load_tokenizer",
    "make_chunker",
]


class Chunker(Protocol):
    def chunk(self, document: Document) -> list[Chunk]: ...


def make_chunker(config: ChunkerConfig) -> Chunker:
    """The chunker named by `config.name`; loads its tokenizer now, so a bad one fails early."""
    if config.name == "recursive":
        return RecursiveChunker(config)
    if config.name == "markdown":
        return MarkdownChunker(config)
    raise ValueError(f"unknown chunker {config.name!r}; expected 'recursive' or 'markdown'")
