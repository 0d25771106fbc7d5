"""HTML (.html, .htm): visible text only, block elements become paragraphs.

Uses the stdlib `html.parser`, which is iterative: deeply nested markup cannot hit the
recursion limit the way tree-building parsers can. Headings are recorded with their
character offset in the output text so a heading-aware chunker can use them.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.loaders.base import LoaderError, decode_text, make_document, read_bytes
from ragkit.schema import Document, LoadFailure

if TYPE_CHECKING:
    from ragkit.config import LoaderConfig

FILE_TYPE = "html"

# Content of these is never shown to a reader.
_HIDDEN = frozenset({"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object"})
_BLOCK = frozenset(
    """address article aside blockquote body br caption dd details dialog div dl dt fieldset
    figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html legend li main menu
    nav ol option p pre section summary table tbody tfoot thead tr ul""".split()
)
_HEAD_CONTENT = frozenset({"title", "meta", "link", "base", "style", "script", "noscript", "template"})
_CELLS = frozenset({"td", "th"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_SPACE = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.length = 0  # length of "\n\n".join(paragraphs), kept incrementally
        self.headings: list[dict[str, Any]] = []
        self.title: str | None = None
        self._buffer: list[str] = []
        self._hidden: list[str] = []  # open hidden elements, innermost last
        self._pre = 0
        self._in_title = False
        self._title_parts: list[str] = []
        self._heading_level: int | None = None
        self._heading_parts: list[str] = []
        self._heading_start: int | None = None

    # --- paragraphs --------------------------------------------------------------------

    def _flush(self) -> None:
        raw = "".join(self._buffer)
        self._buffer.clear()
        text = raw.strip("\n") if self._pre else _SPACE.sub(" ", raw).strip()
        if not text.strip():
            return
        if self.paragraphs:
            self.length += 2  # the "\n\n" separator
        start = self.length
        self.paragraphs.append(text)
        self.length += len(text)
        if self._heading_level is not None:
            if self._heading_start is None:
                self._heading_start = start
            self._heading_parts.append(text)

    # --- parser callbacks --------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._hidden == ["head"] and tag not in _HEAD_CONTENT:
            # Body content (or <body>) implicitly closes an unclosed <head>, as browsers do.
            self._hidden.clear()
        if self._in_title and (tag in _BLOCK or tag in _HIDDEN):
            self._end_title()  # an unclosed <title> must not swallow the page
        if tag in _HIDDEN:
            self._hidden.append(tag)
            return
        if tag == "title" and not self._hidden_now(ignore_head=True):
            self._in_title = True
            self._title_parts = []
            return
        if self._hidden:
            return
        if tag == "br" and self._pre:
            self._buffer.append("\n")  # inside <pre> a line break is just a line break
            return
        if tag in _BLOCK:
            self._flush()
            if tag == "pre":
                self._pre += 1
            if tag in _HEADINGS:
                self._heading_level = _HEADINGS[tag]
                self._heading_parts = []
                self._heading_start = None

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            if tag in self._hidden:
                # Close the innermost matching element and anything left open inside it.
                last = len(self._hidden) - 1 - self._hidden[::-1].index(tag)
                del self._hidden[last:]
            return
        if tag == "title" and self._in_title:
            self._end_title()
            return
        if self._hidden:
            return
        if tag in _CELLS:
            self._buffer.append(" ")  # keep neighbouring cells apart
        elif tag in _BLOCK:
            self._flush()
            if tag == "pre" and self._pre:
                self._pre -= 1
            if tag in _HEADINGS and self._heading_level is not None:
                self._end_heading()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)
        elif not self._hidden:
            self._buffer.append(data)

    def close(self) -> None:
        super().close()
        self._flush()
        if self._heading_level is not None:
            self._end_heading()

    # --- helpers -----------------------------------------------------------------------

    def _hidden_now(self, ignore_head: bool = False) -> bool:
        return any(tag != "head" or not ignore_head for tag in self._hidden)

    def _end_title(self) -> None:
        self._in_title = False
        title = _SPACE.sub(" ", "".join(self._title_parts)).strip()
        if title and self.title is None:
            self.title = title

    def _end_heading(self) -> None:
        if self._heading_parts and self._heading_start is not None and self._heading_level is not None:
            text = " ".join(self._heading_parts)
            self.headings.append({"level": self._heading_level, "text": text, "start": self._heading_start})
        self._heading_level = None
        self._heading_parts = []
        self._heading_start = None


def extract(html: str) -> tuple[str, str | None, list[dict[str, Any]]]:
    """(visible text, <title>, headings) of an HTML string."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    return "\n\n".join(parser.paragraphs), parser.title, parser.headings


def load(path: Path, config: LoaderConfig) -> list[Document]:
    data = read_bytes(path)
    declared = _META_CHARSET.search(data[:4096])
    html, encoding = decode_text(data, declared.group(1).decode("ascii") if declared else None)
    text, title, headings = extract(html)
    if not text.strip():
        raise LoaderError("no visible text (empty page, or content only in scripts/markup)")
    metadata: dict[str, Any] = {"encoding": encoding, "headings": headings}
    if title:
        metadata["title"] = title
    return [make_document(path, text, FILE_TYPE, metadata)]


class HtmlLoaderConfig(ComponentConfig):
    name: Literal["html"] = Field("html", exclude=True)


@register("loader", "html", HtmlLoaderConfig, extensions=(".html", ".htm"))
class HtmlLoader:
    """HTML pages: visible text with headings, title and declared charset."""

    def __init__(self, config: HtmlLoaderConfig) -> None:
        self.config = config

    def load(self, path: Path, settings: LoaderConfig) -> tuple[list[Document], list[LoadFailure]]:
        return (load(path, settings), [])
