"""Stage 5: generation. Question + retrieved hits -> answer text with checked citations.

Protocol: `ragkit.protocols.Generator` (`generate`, `generate_stream`, `chat_model`); built by
`make_generator(config, embedder, analyzer, sentences)` from the registry (stage "generator"). Context
block `n` (1-based) is `hits[n-1]`; a generator cites it as `[n]` in its text and
`resolve_citations` (citations.py) turns markers into `Citation`s, dropping and flagging any `[n]`
that is not a provided block. LLM-backed generators are a `ChatGenerator` (chat.py) over a
`ChatModel` (openai_chat.py, local_llama.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ragkit.components import build
from ragkit.protocols import Embedder, Generated, Generator

if TYPE_CHECKING:
    from ragkit.config import GeneratorConfig
    from ragkit.indexes.sentences import SentenceIndex

__all__ = ["Generated", "Generator", "make_generator"]


def make_generator(
    config: GeneratorConfig,
    embedder: Embedder,
    analyzer: Callable[[str], list[str]],
    sentences: Callable[[], SentenceIndex | None] | None = None,
) -> Generator:
    """The generator `config` names (SDKs and models are loaded when first used). `sentences`
    returns the current generation's stored sentence index (ragkit/indexes/sentences.py), if any."""
    generator: Generator = build("generator", config, embedder=embedder, analyzer=analyzer, sentences=sentences)
    return generator
