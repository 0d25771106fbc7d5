"""A streamed answer: display deltas as they arrive, then the checked `Generated`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ragkit.generation.citations import CitationNumbering, StreamRenumberer, resolve_citations
from ragkit.protocols import Generated
from ragkit.schema import Hit, Trace

__all__ = ["AnswerStream"]


class AnswerStream:
    """A streamed answer: iterate for text deltas; `result()` gives the checked `Generated`.

    The deltas are the model's text as it arrives, with `[n]` markers renumbered for display as in
    the final answer (1, 2, 3... in order of first citation; markers naming no block dropped);
    `result()` resolves citations on the whole raw text, draining the stream first if it was not
    read to the end. If the stream broke mid-way, the result holds the partial text and the trace
    says so. `close` (optional) stops the model at once when the reader stops early.
    """

    def __init__(
        self, deltas: Iterator[str], hits: list[Hit], trace: Trace, close: Callable[[], None] | None = None
    ) -> None:
        self._deltas = deltas
        self._hits = hits
        self._trace = trace
        self._close = close
        self._parts: list[str] = []
        self._result: Generated | None = None
        self._failed: BaseException | None = None
        self._renumber = StreamRenumberer(len(hits), CitationNumbering())
        self._flushed = False

    @classmethod
    def of(cls, generated: Generated) -> AnswerStream:
        """A stream of an answer that is already complete and checked: one delta, its text."""
        stream = cls(iter([generated.text] if generated.text else []), [], Trace())
        stream._precomputed = generated
        return stream

    _precomputed: Generated | None = None

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
                if self._precomputed is not None:
                    return delta  # already numbered for display
            except StopIteration:
                if self._precomputed is not None:
                    self._result = self._precomputed
                    raise
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
        """Stop early and release the model or connection."""
        if self._close is not None:
            self._close()

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
