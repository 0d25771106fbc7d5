"""What every model-backed generator shares: the streamed answer and the finish checks.

Kept apart from the generators so the local (llama.cpp) generator does not import the openai SDK
and the OpenAI one does not import llama.cpp.
"""

from __future__ import annotations

from collections.abc import Iterator

from ragkit.generation import Generated
from ragkit.generation.citations import CitationNumbering, StreamRenumberer, resolve_citations
from ragkit.generation.prompt import NO_ANSWER
from ragkit.schema import Hit, Trace

__all__ = ["AnswerStream", "check_finish", "warn_no_hits"]


def warn_no_hits(trace: Trace) -> None:
    trace.warn(f"retrieval found nothing: answered '{NO_ANSWER}' without calling the model")


def check_finish(finish_reason: str | None, max_tokens: int, trace: Trace) -> None:
    """Flag an answer the model did not finish on its own."""
    if finish_reason == "length":
        trace.warn(f"answer truncated: the model hit max_tokens={max_tokens}")
    elif finish_reason == "content_filter":
        trace.warn("answer incomplete: the endpoint's content filter stopped the model")


class AnswerStream:
    """A streamed answer: iterate for text deltas; `result()` gives the checked `Generated`.

    The deltas are the model's text as it arrives, with `[n]` markers renumbered for display as in
    the final answer (1, 2, 3... in order of first citation; markers naming no block dropped);
    `result()` resolves citations on the whole raw text, draining the stream first if it was not
    read to the end. If the stream broke mid-way, the result holds the partial text and the trace
    says so.
    """

    def __init__(self, deltas: Iterator[str], hits: list[Hit], trace: Trace) -> None:
        self._deltas = deltas
        self._hits = hits
        self._trace = trace
        self._parts: list[str] = []
        self._result: Generated | None = None
        self._failed: BaseException | None = None
        self._numbering = CitationNumbering()
        self._renumber = StreamRenumberer(len(hits), self._numbering)
        self._flushed = False

    def __iter__(self) -> AnswerStream:
        return self

    def __next__(self) -> str:
        if self._failed is not None:
            raise self._failed  # a failed stream must not later pass for an empty answer
        if self._result is not None:
            raise StopIteration
        while True:
            try:
                delta = next(self._deltas)
            except StopIteration:
                rest = self._renumber.flush()
                if rest and not self._flushed:
                    self._flushed = True
                    return rest
                self._result = resolve_citations(
                    "".join(self._parts).strip(), self._hits, self._trace, CitationNumbering()
                )
                raise
            except Exception as exc:
                self._failed = exc
                raise
            self._parts.append(delta)
            shown = self._renumber.feed(delta)
            if shown:
                return shown

    def result(self) -> Generated:
        """The final answer with resolved citations (reads whatever is left of the stream first)."""
        for _ in self:
            pass
        assert self._result is not None
        return self._result

    def close(self) -> None:
        """Stop early and release the connection (the deltas generator closes the SDK stream)."""
        close = getattr(self._deltas, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
