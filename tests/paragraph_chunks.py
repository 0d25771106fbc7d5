"""A simple, exact chunker shared by index tests: one chunk per blank-line-separated paragraph."""

from __future__ import annotations

from ragkit.schema import Chunk, Document


class _Paragraphs:
    """A `Chunker` (ragkit.protocols): one chunk per blank-line-separated paragraph."""

    def chunk(self, document: Document) -> list[Chunk]:
        chunks, start = [], 0
        for part in document.text.split("\n\n"):
            if part.strip():
                chunks.append(Chunk.from_span(document, start, start + len(part)))
            start += len(part) + 2
        return chunks

    def __call__(self, document: Document) -> list[Chunk]:
        return self.chunk(document)


paragraphs = _Paragraphs()
