"""CSV (.csv): `csv.DictReader`, one document per row (header row required)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.components import register
from ragkit.loaders.base import LoaderError, decode_text, read_bytes
from ragkit.loaders.tabular import CsvLoaderConfig, RowError, row_document, row_failure, strict
from ragkit.schema import Document, LoadFailure

if TYPE_CHECKING:
    from ragkit.config import LoaderConfig

FILE_TYPE = "csv"


def _newlines(value: Any) -> int:
    if isinstance(value, str):
        return value.count("\n")
    if isinstance(value, list):
        return sum(_newlines(v) for v in value)
    return 0


def load_partial(path: Path, config: LoaderConfig) -> tuple[list[Document], list[LoadFailure]]:
    """Every good row as a Document, every bad row as a `path:LINE` failure."""
    text, encoding = decode_text(read_bytes(path))
    if not text.strip():
        raise LoaderError("empty file")
    # Long text cells are the point of a RAG CSV; the default 128 KiB cell limit is too small.
    if csv.field_size_limit() < len(text):
        csv.field_size_limit(len(text))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = list(reader.fieldnames or [])
    except csv.Error as exc:
        raise LoaderError(f"malformed CSV header: {exc}") from None
    if not columns:
        raise LoaderError("no header row")
    settings = config.csv
    missing = [f for f in settings.text_fields if f not in columns]
    if missing:
        raise LoaderError(
            f"text column {', '.join(map(repr, missing))} not in the header; columns present: "
            f"{', '.join(map(repr, columns))}. Set loader.csv.text_fields to the column(s) holding the text"
        )

    documents: list[Document] = []
    failures: list[LoadFailure] = []
    seen_ids: dict[str, int] = {}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            failures.append(row_failure(path, reader.line_num, f"malformed CSV: {exc}; stopped reading here"))
            break
        # line_num is the record's last physical line; step back over newlines inside quoted cells.
        line = reader.line_num - sum(_newlines(v) for v in row.values())
        try:
            if None in row:
                raise RowError(
                    f"row has {len(columns) + len(row[None])} fields but the header has {len(columns)} "
                    "(an unquoted delimiter in a value?)"
                )
            cells = {k: v for k, v in row.items() if v is not None}  # short rows: absent cells
            # Absent text cells are empty text, not a missing column (the header has it).
            cells.update({f: cells.get(f, "") for f in settings.text_fields})
            document = row_document(path, line, cells, settings, FILE_TYPE, seen_ids)
            if encoding != "utf-8":
                # Say so when the file was not UTF-8 (e.g. a cp1252 export from a spreadsheet).
                metadata = {**document.metadata, "encoding": encoding}
                document = document.model_copy(update={"metadata": metadata})
            documents.append(document)
        except RowError as exc:
            failures.append(row_failure(path, line, exc.reason))
    return documents, failures


def load(path: Path, config: LoaderConfig) -> list[Document]:
    """All rows, or LoaderError if any row is bad (use `load_partial` to keep the good ones)."""
    return strict(*load_partial(path, config))


@register("loader", "csv", CsvLoaderConfig, extensions=(".csv",))
class CsvLoader:
    """CSV: one document per row (loader.csv sets the fields)."""

    def __init__(self, config: CsvLoaderConfig) -> None:
        self.config = config

    def load(self, path: Path, settings: LoaderConfig) -> tuple[list[Document], list[LoadFailure]]:
        return load_partial(path, settings)
