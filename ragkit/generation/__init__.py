"""Stage 5: generation. Question + retrieved hits -> answer text with checked citations.

Protocol: `Generator.generate(question, hits, trace) -> Generated`, built by `make_generator(config)`.
Context block `n` (1-based) is `hits[n-1]`; a generator cites it as `[n]` in its text and
`resolve_citations` (citations.py) turns markers into `Citation`s, dropping and flagging any `[n]`
that is not a provided block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, Field

from ragkit.config import (
    ExtractiveGeneratorConfig,
    GeneratorConfig,
    LocalGeneratorConfig,
    OpenAIGeneratorConfig,
)
from ragkit.schema import Citation, Hit, Trace

if TYPE_CHECKING:
    from ragkit.indexes.embedder import Embedder


class Generated(BaseModel):
    text: str
    citations: list[Citation] = Field(default_factory=list)
    # With an "I don't know": chunks that were related to the question without answering it.
    related: list[Citation] = Field(default_factory=list)


class Generator(Protocol):
    def generate(self, question: str, hits: list[Hit], trace: Trace) -> Generated: ...


def make_generator(config: GeneratorConfig, embedder: Embedder, analyzer: Callable[[str], list[str]]) -> Generator:
    """Build the configured generator (implementations imported lazily: the openai SDK is slow to import)."""
    if isinstance(config, ExtractiveGeneratorConfig):
        from ragkit.generation.extractive import ExtractiveGenerator

        return ExtractiveGenerator(config, embedder, analyzer)
    if isinstance(config, OpenAIGeneratorConfig):
        from ragkit.generation.openai_chat import OpenAIGenerator

        return OpenAIGenerator(config)
    if isinstance(config, LocalGeneratorConfig):
        from ragkit.generation.local_llama import LocalGenerator

        return LocalGenerator(config)
    raise ValueError(f"unknown generator {config!r}")  # unreachable: config validates names
