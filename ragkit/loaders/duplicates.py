"""Documents that say the same thing from two paths: indexed once, reported as duplicates.

Two kinds, both only for whole-file documents (rows of JSONL/CSV files keep their own identity):

- **Same content**: a file whose text, compared case- and whitespace-insensitively, equals a file
  loaded before it in the same ingest (a copied page, a mirrored directory).
- **Sphinx source twins**: Sphinx publishes each page's source next to the HTML, as
  `_sources/<page>.rst.txt` (or `.md.txt`, `.txt`) beside `<page>.html`. The twin holds the same
  text as reStructuredText markup, so every page would be indexed twice, once without its
  rendering (no headings, raw directives). A `_sources/` file is taken as the twin of the page at
  the matching path when that page is ingested too and most of its words occur in the page:
  on 55 twin pairs of Debian's Python 3.11 docs at least 64 % (median 95 %) of a twin's distinct
  words occur in its page, against a median of 24 % for another page. Otherwise it is indexed.

The first one loaded (files are loaded in path order; a twin always yields to its page) is
indexed; the other is reported in the ingest summary and not indexed (and removed from the index
if an earlier ingest had indexed it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from pydantic import BaseModel

from ragkit.loaders.base import source_of
from ragkit.schema import Document

TWIN_MIN_OVERLAP = 0.5  # share of a twin's distinct words that must occur in its page
_WORD = re.compile(r"[^\W\d_]{3,}")
_SOURCE_SUFFIXES = (".rst.txt", ".md.txt", ".txt")


class Duplicate(BaseModel):
    """A file not indexed because another one holds the same content."""

    source: str
    duplicate_of: str
    reason: str


def content_key(text: str) -> str:
    """Identical up to case and whitespace."""
    return hashlib.sha256(" ".join(text.lower().split()).encode("utf-8", "surrogatepass")).hexdigest()


def sphinx_page_of(path: Path) -> Path | None:
    """The HTML page a `_sources/...txt` file is the published source of (by path), else None."""
    parts = path.parts
    if "_sources" not in parts:
        return None
    at = len(parts) - 1 - parts[::-1].index("_sources")
    relative = "/".join(parts[at + 1 :])
    for suffix in _SOURCE_SUFFIXES:
        if relative.endswith(suffix):
            stem = relative[: -len(suffix)]
            return Path(*parts[:at], f"{stem}.html") if stem else None
    return None


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


class DuplicateFilter:
    """Passes documents through, holding back duplicates (see the module docstring)."""

    def __init__(self, files: Sequence[Path]) -> None:
        sources = {source_of(f) for f in files}
        self.twin_page: dict[str, str] = {}  # twin source -> page source
        for f in files:
            page = sphinx_page_of(f)
            if page is not None and source_of(page) in sources:
                self.twin_page[source_of(f)] = source_of(page)
        self.duplicates: list[Duplicate] = []
        self._seen: dict[str, str] = {}  # content key -> source of the first document
        self._pages: dict[str, set[str]] = {}  # loaded page source -> its words (pages with twins)
        self._waiting: dict[str, list[Document]] = {}  # page source -> twins loaded before it
        self._wanted_pages = set(self.twin_page.values())

    def filter(self, documents: Iterable[Document]) -> Iterator[Document]:
        for document in documents:
            yield from self._one(document)

    def _one(self, document: Document) -> Iterator[Document]:
        if document.id != document.source:  # a row of a JSONL/CSV file: never a file duplicate
            yield document
            return
        key = content_key(document.text)
        if key in self._seen:
            self.duplicates.append(Duplicate(source=document.source, duplicate_of=self._seen[key], reason="same content"))
            return
        page = self.twin_page.get(document.source)
        if page is not None:
            if page not in self._pages:
                self._waiting.setdefault(page, []).append(document)  # decided once the page is loaded
                return
            if self._is_twin(document, page):
                return
        self._seen[key] = document.source
        if document.source in self._wanted_pages:
            self._pages[document.source] = _words(document.text)
        yield document
        for twin in self._waiting.pop(document.source, []):
            if not self._is_twin(twin, document.source):
                yield from self._one_plain(twin)

    def _one_plain(self, document: Document) -> Iterator[Document]:
        key = content_key(document.text)
        if key in self._seen:
            self.duplicates.append(Duplicate(source=document.source, duplicate_of=self._seen[key], reason="same content"))
            return
        self._seen[key] = document.source
        yield document

    def _is_twin(self, twin: Document, page: str) -> bool:
        words = _words(twin.text)
        overlap = len(words & self._pages[page]) / len(words) if words else 1.0
        if overlap >= TWIN_MIN_OVERLAP:
            self.duplicates.append(Duplicate(
                source=twin.source, duplicate_of=page,
                reason=f"Sphinx source of the page ({overlap:.0%} of its words are in the page)",
            ))
            return True
        return False

    def finish(self) -> Iterator[Document]:
        """Twins whose page never loaded (it failed): indexed after all."""
        for twins in self._waiting.values():
            for twin in twins:
                yield from self._one_plain(twin)
        self._waiting.clear()
