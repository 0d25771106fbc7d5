"""The one LLM-backed generator: a `ChatModel` (OpenAI-compatible HTTP, llama.cpp in-process, or a
plugin's) behind the steps every model-backed answer shares.

- no hits: "I don't know" without calling the model, and a trace warning;
- the grounded prompt (prompt.py) over the hits the model is shown (the first `max_blocks`);
- the finish checks (cut at max_tokens, content filter) and an empty reply;
- `[n]` citations resolved and checked against the shown hits (citations.py);
- streaming: display deltas renumbered as they arrive; a stream cut after some text keeps it
  and warns; a failure before any text is an error.

The chat model itself only completes messages (`ChatModel.complete/stream`, with per-call
overrides), so query transforms and the LLM reranker use the very same model instance.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

from ragkit.generation.citations import resolve_citations
from ragkit.generation.errors import GenerationError
from ragkit.generation.prompt import NO_ANSWER, PromptStyle, prompt_builder
from ragkit.generation.stream import AnswerStream
from ragkit.protocols import ChatModel, Generated, Messages
from ragkit.schema import Hit, Trace

__all__ = ["ChatGenerator", "StreamInterrupted", "check_finish", "warn_no_hits"]


class StreamInterrupted(GenerationError):
    """A stream that broke after some text had arrived: the text so far is the (partial) answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"stream interrupted: {reason}")
        self.reason = reason


def warn_no_hits(trace: Trace) -> None:
    trace.warn(f"retrieval found nothing: answered '{NO_ANSWER}' without calling the model")


def check_finish(finish_reason: str | None, max_tokens: int, trace: Trace) -> None:
    """Flag an answer the model did not finish on its own."""
    if finish_reason == "length":
        trace.warn(f"answer truncated: the model hit max_tokens={max_tokens}")
    elif finish_reason == "content_filter":
        trace.warn("answer incomplete: the endpoint's content filter stopped the model")


class ChatGenerator:
    """Grounded answers with checked `[n]` citations from any `ChatModel`."""

    def __init__(
        self,
        chat: ChatModel,
        *,
        prompt: PromptStyle,
        max_context_chars: int,
        max_tokens: int,
        max_blocks: int | None = None,
    ) -> None:
        self.chat = chat
        self.prompt = prompt
        self.max_context_chars = max_context_chars
        self.max_tokens = max_tokens
        self.max_blocks = max_blocks

    @property
    def chat_model(self) -> ChatModel:
        return self.chat

    def shown(self, hits: list[Hit]) -> list[Hit]:
        """The hits the model is shown (small models lose track of long contexts)."""
        return hits if self.max_blocks is None else hits[: self.max_blocks]

    def messages(self, question: str, hits: list[Hit]) -> Messages:
        """The grounded prompt for the hits the model is shown."""
        return prompt_builder(self.prompt)(question, self.shown(hits), self.max_context_chars)

    def generate(self, question: str, hits: list[Hit], trace: Trace) -> Generated:
        """Ask the model with the grounded prompt; resolve its `[n]` citations against the shown hits."""
        if not hits:
            warn_no_hits(trace)
            return Generated(text=NO_ANSWER)
        text, finish_reason = self.chat.complete(self.messages(question, hits))
        check_finish(finish_reason, self.max_tokens, trace)
        text = text.strip()
        if not text:
            trace.warn(f"the model returned no text (finish_reason={finish_reason}); answered '{NO_ANSWER}'")
            return Generated(text=NO_ANSWER)
        return resolve_citations(text, self.shown(hits), trace)

    def generate_stream(self, question: str, hits: list[Hit], trace: Trace) -> AnswerStream:
        """Like `generate`, but text arrives as the model produces it; see `AnswerStream`.

        The request is sent here (the model loaded), so a bad key, an unknown model or a missing
        package raises before anything is yielded."""
        if not hits:
            warn_no_hits(trace)
            return AnswerStream(iter([NO_ANSWER]), hits, trace)
        pieces = self.chat.stream(self.messages(question, hits))
        return AnswerStream(self._deltas(pieces, trace), self.shown(hits), trace, close=pieces.close)

    def _deltas(self, pieces: Generator[tuple[str, str | None], None, None], trace: Trace) -> Iterator[str]:
        got_text = False
        finish_reason: str | None = None
        try:
            for text, finish in pieces:
                finish_reason = finish or finish_reason
                if text:
                    got_text = True
                    yield text
        except StreamInterrupted as exc:
            trace.warn(f"answer incomplete: stream interrupted: {exc.reason}")
            return
        check_finish(finish_reason, self.max_tokens, trace)
        if not got_text:
            trace.warn(f"the model returned no text (finish_reason={finish_reason}); answered '{NO_ANSWER}'")
            yield NO_ANSWER

