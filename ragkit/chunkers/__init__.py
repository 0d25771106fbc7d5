"""Stage 2: chunking. `Document` -> `Chunk`s whose offsets point back into the document exactly.

Protocol: `ragkit.protocols.Chunker`; implementations register as stage "chunker" and are built
by `make_chunker(config)`. Invariant for every chunker: `document.text[c.start:c.end] == c.text`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragkit.chunkers.markdown import MarkdownChunker
from ragkit.chunkers.recursive import RecursiveChunker
from ragkit.chunkers.tokens import Tokenizer, count_tokens, load_tokenizer
from ragkit.components import build
from ragkit.protocols import Chunker

if TYPE_CHECKING:
    from ragkit.config import ChunkerConfig

__all__ = ["Chunker", "MarkdownChunker", "RecursiveChunker", "Tokenizer", "count_tokens", "load_tokenizer", "make_chunker"]


def make_chunker(config: ChunkerConfig) -> Chunker:
    """The chunker `config` names; loads its tokenizer now, so a bad one fails early."""
    chunker: Chunker = build("chunker", config)
    return chunker
