"""A simple, exact chunker shared by index tests: one chunk per blank-line-separated paragraph."""

from __future__ import annotations

from ragkit.schema import Chunk, Document


def paragraphs(document: Document) -> list[Chunk]:
    chunks, start = [], 0
    for part in document.text.split("\n\n"):
        if part.strip():
            chunks.append(Chunk.from_span(document, start, start + len(part)))
        start += len(part) + 2
    return chunks
