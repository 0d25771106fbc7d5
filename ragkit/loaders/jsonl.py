"""JSON Lines (.jsonl): one JSON object per non-blank line, one document per row."""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ragkit.components import register
from ragkit.loaders.base import LoaderError, read_bytes
from ragkit.loaders.tabular import JsonlLoaderConfig, RowError, row_document, row_failure, strict
from ragkit.schema import Document, LoadFailure

if TYPE_CHECKING:
    from ragkit.config import LoaderConfig

FILE_TYPE = "jsonl"


def load_partial(path: Path, config: LoaderConfig) -> tuple[list[Document], list[LoadFailure]]:
    """Every good row as a Document, every bad row as a `path:LINE` failure."""
    data = read_bytes(path)
    if b"\x00" in data:
        raise LoaderError("looks like a binary file (NUL bytes); JSONL must be UTF-8 text")
    data = data.removeprefix(codecs.BOM_UTF8)
    documents: list[Document] = []
    failures: list[LoadFailure] = []
    seen_ids: dict[str, int] = {}
    rows = 0
    # Split bytes, not text, so one badly encoded line fails alone.
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        rows += 1
        try:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RowError(f"invalid UTF-8 at byte {exc.start} (JSONL must be UTF-8)") from None
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RowError(f"invalid JSON: {exc}") from None
            if not isinstance(row, dict):
                raise RowError(f"expected a JSON object, got a JSON {type(row).__name__}")
            documents.append(row_document(path, number, row, config.jsonl, FILE_TYPE, seen_ids))
        except RowError as exc:
            failures.append(row_failure(path, number, exc.reason))
    if rows == 0:
        raise LoaderError("empty file")
    return documents, failures


def load(path: Path, config: LoaderConfig) -> list[Document]:
    """All rows, or LoaderError if any row is bad (use `load_partial` to keep the good ones)."""
    return strict(*load_partial(path, config))


@register("loader", "jsonl", JsonlLoaderConfig, extensions=(".jsonl",))
class JsonlLoader:
    """JSON Lines: one document per row (loader.jsonl sets the fields)."""

    def __init__(self, config: JsonlLoaderConfig) -> None:
        self.config = config

    def load(self, path: Path, settings: LoaderConfig) -> tuple[list[Document], list[LoadFailure]]:
        return load_partial(path, settings)
