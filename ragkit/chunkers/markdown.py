"""Heading-aware chunking: sections first, then the recursive algorithm inside each section.

Markdown documents are split at ATX (`# Title`) and setext (`Title` over `===`/`---`)
headings, ignoring anything inside fenced code blocks and YAML front matter. Other documents
use the heading offsets their loader recorded in `metadata["headings"]` (HTML, DOCX), and
without those are chunked exactly like the recursive chunker. Every chunk carries its heading
path in `metadata["headings"]`, and a section's heading line opens its first chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from ragkit.chunkers.recursive import ChunkerConfigBase, ChunkMetadata, TokenIndex, code_blocks, split_spans
from ragkit.chunkers.tokens import load_tokenizer
from ragkit.components import register
from ragkit.schema import Chunk, Document

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*))?$")
_ATX_CLOSING = re.compile(r"(?:^|[ \t]+)#+$")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_THEMATIC_BREAK = re.compile(r" {0,3}([-*_])[ \t]*(?:\1[ \t]*){2,}$")
# Lines that start a block (list item, quote, indented code) whose text is no setext heading.
_NOT_PARAGRAPH = re.compile(r" {0,3}(?:[-+*](?:[ \t]|$)|\d{1,9}[.)](?:[ \t]|$)|>)| {4}|\t")
_BLOCKED = -1  # `paragraph` value while inside such a block, until the next blank line

MARKDOWN_TYPES = {"md", "markdown"}


@dataclass(frozen=True)
class Section:
    """text[start:end] under `headings`; text[start:head_end] is the heading itself."""

    start: int
    head_end: int
    end: int
    headings: list[str]


def is_markdown(document: Document) -> bool:
    file_type = str(document.metadata.get("file_type") or "").lower()
    return file_type in MARKDOWN_TYPES or document.source.lower().endswith((".md", ".markdown"))


def markdown_headings(text: str, max_level: int = 6) -> list[tuple[int, int, int, str]]:
    """(start, head_end, level, title) of each heading up to `max_level`, in document order."""
    headings: list[tuple[int, int, int, str]] = []
    lines = text.split("\n")
    offsets = []
    pos = 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    i = _skip_front_matter(lines)
    fence: str | None = None  # the opening fence while inside a code block
    paragraph: int | None = None  # first line of the current paragraph, or _BLOCKED
    while i < len(lines):
        line = lines[i].rstrip("\r")
        line_end = min(offsets[i] + len(lines[i]) + 1, len(text))
        if fence is not None:
            close = _FENCE.match(line)
            if close and close.group(1)[0] == fence[0] and len(close.group(1)) >= len(fence):
                if not line[close.end() :].strip():
                    fence = None
            i += 1
            continue
        opened = _FENCE.match(line)
        if opened and not (opened.group(1)[0] == "`" and "`" in line[opened.end() :]):
            fence = opened.group(1)
            paragraph = None
        elif not line.strip():
            paragraph = None
        elif atx := _ATX.match(line):
            title = _ATX_CLOSING.sub("", (atx.group(2) or "").strip()).strip()
            if len(atx.group(1)) <= max_level:
                headings.append((offsets[i], line_end, len(atx.group(1)), title))
            paragraph = None
        elif paragraph is not None and paragraph >= 0 and (setext := _SETEXT.match(line)):
            level = 1 if setext.group(1)[0] == "=" else 2
            if level <= max_level:
                title = " ".join(lines[j].strip() for j in range(paragraph, i))
                headings.append((offsets[paragraph], line_end, level, title))
            paragraph = None
        elif _THEMATIC_BREAK.match(line):
            paragraph = None
        elif paragraph is None:
            paragraph = _BLOCKED if _NOT_PARAGRAPH.match(line) else i
        i += 1
    return headings


def markdown_code_blocks(text: str) -> list[tuple[int, int, str | None]]:
    """(start, end, language) of each fenced code block, fences included; the language is the
    first word of the opening fence's info string (```python -> "python")."""
    blocks: list[tuple[int, int, str | None]] = []
    pos = 0
    fence: str | None = None
    start, language = 0, None
    for line in text.split("\n"):
        line_end = pos + len(line)
        stripped = line.rstrip("\r")
        match = _FENCE.match(stripped)
        if fence is None:
            if match and not (match.group(1)[0] == "`" and "`" in stripped[match.end() :]):
                fence, start = match.group(1), pos
                info = stripped[match.end() :].strip().split()
                language = info[0].strip("{}.").lower() or None if info else None
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) and not stripped[match.end() :].strip():
            blocks.append((start, line_end, language))
            fence = None
        pos = line_end + 1
    if fence is not None:  # unclosed: the block runs to the end of the document
        blocks.append((start, len(text), language))
    return blocks


def _skip_front_matter(lines: list[str]) -> int:
    """Index of the first line after a leading YAML front matter block (0 if there is none)."""
    if not lines or lines[0].rstrip("\r") != "---":
        return 0
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r") in ("---", "..."):
            return i + 1
    return 0


def loader_headings(document: Document, max_level: int = 6) -> list[tuple[int, int, int, str]]:
    """Headings recorded by a loader (`metadata["headings"]`: {"level", "text", "start"})."""
    text = document.text
    found = []
    for heading in document.metadata.get("headings") or []:
        level, start = int(heading["level"]), int(heading["start"])
        if level > max_level or not 0 <= start < len(text):
            continue
        line_end = text.find("\n", start)
        head_end = len(text) if line_end < 0 else line_end + 1
        found.append((start, head_end, level, str(heading.get("text", "")).strip()))
    return sorted(found, key=lambda h: h[0])


def sections(text: str, headings: list[tuple[int, int, int, str]]) -> list[Section]:
    """Split text into sections at `headings`, each with its heading path."""
    path: list[tuple[int, str]] = []  # (level, title) from the top
    bounds: list[tuple[int, int, list[str]]] = [(0, 0, [])]
    for start, head_end, level, title in headings:
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        if bounds[-1][0] == start:
            bounds.pop()  # two headings at one offset: the later, deeper path wins
        bounds.append((start, head_end, [t for _, t in path]))
    result = []
    for n, (start, head_end, path_titles) in enumerate(bounds):
        end = bounds[n + 1][0] if n + 1 < len(bounds) else len(text)
        if start < end:
            result.append(Section(start, min(head_end, end), end, path_titles))
    return result


class MarkdownChunkerConfig(ChunkerConfigBase):
    """Splits at markdown headings first; non-markdown documents fall back to recursive."""

    name: Literal["markdown"] = "markdown"
    max_heading_level: int = Field(6, ge=1, le=6)


@register("chunker", "markdown", MarkdownChunkerConfig)
class MarkdownChunker:
    """Sections at headings, each chunked recursively; non-markdown falls back to recursive."""

    def __init__(self, config: MarkdownChunkerConfig) -> None:
        self.config = config
        self.tokenizer = load_tokenizer(config.tokenizer)

    def chunk(self, document: Document) -> list[Chunk]:
        text = document.text
        headings: list[tuple[int, int, int, str]] | None
        if is_markdown(document):
            headings = markdown_headings(text, self.config.max_heading_level)
            blocks = markdown_code_blocks(text)
        else:
            headings = loader_headings(document, self.config.max_heading_level) if document.metadata.get("headings") else None
            blocks = code_blocks(document)
        whole = [(a, b) for a, b, _ in blocks]
        index = TokenIndex(text, self.tokenizer)
        meta = ChunkMetadata(document, blocks)
        size, overlap = self.config.chunk_size, self.config.chunk_overlap
        if headings is None:  # exactly the recursive chunker's output
            spans = split_spans(index, 0, len(text), size, overlap, keep_whole=whole)
            return [Chunk.from_span(document, a, b, meta.for_span(a, b)) for a, b in spans]
        chunks = []
        for section in sections(text, headings):
            head_end = section.head_end if section.head_end > section.start else None
            for a, b in split_spans(index, section.start, section.end, size, overlap, head_end, whole):
                metadata: dict[str, Any] = meta.for_span(a, b)
                metadata["headings"] = list(section.headings)
                chunks.append(Chunk.from_span(document, a, b, metadata))
        return chunks
