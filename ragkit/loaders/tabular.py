"""Rows -> Documents, shared by the JSONL and CSV loaders (same TabularConfig rules).

A bad row never sinks the file: it becomes a `LoadFailure` named `path:LINE` and the other
rows still load. Row ids must be unique within a file; a duplicate is an error, never an
overwrite.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragkit.components import ComponentConfig
from ragkit.loaders.base import LoaderError, make_document, normalize_newlines, source_of
from ragkit.schema import Document, LoadFailure


class TabularConfig(ComponentConfig):
    """How rows of .jsonl/.csv files become documents."""

    name: str = Field("tabular", exclude=True)
    text_fields: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
    id_field: str | None = "id"
    metadata_fields: list[str] | None = None  # None: every other field
    title_field: str | None = "title"


class JsonlLoaderConfig(TabularConfig):
    name: Literal["jsonl"] = Field("jsonl", exclude=True)


class CsvLoaderConfig(TabularConfig):
    name: Literal["csv"] = Field("csv", exclude=True)


class RowError(Exception):
    """One row that cannot become a document; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _names(fields: list[str]) -> str:
    return ", ".join(repr(f) for f in fields)


def _text_value(field: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):  # numbers (and bools) read fine as text
        return str(value)
    raise RowError(f"text field {field!r} is a JSON {type(value).__name__}, expected a string")


def _row_id(field: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise RowError(f"id field {field!r} must be a string or a number, got {type(value).__name__}")


def row_document(
    path: Path,
    line: int,
    row: Mapping[str, Any],
    config: TabularConfig,
    file_type: str,
    seen_ids: dict[str, int],
) -> Document:
    """The Document for one row, or RowError. `seen_ids` maps row ids to their first line."""
    missing = [f for f in config.text_fields if f not in row]
    if missing:
        present = _names(list(row)) or "none"
        raise RowError(f"missing text field {_names(missing)} (fields present: {present})")
    parts = [normalize_newlines(_text_value(f, row[f])) for f in config.text_fields]
    # With several text fields, an empty one is skipped; the row fails only if all are empty.
    parts = [p for p in parts if p.strip()]
    if not parts:
        raise RowError(f"empty text field {_names(config.text_fields)}")

    id_value = row.get(config.id_field) if config.id_field else None
    row_id = _row_id(config.id_field or "", id_value) if id_value not in (None, "") else str(line)
    if row_id in seen_ids:
        raise RowError(
            f"duplicate id {row_id!r} (first used on line {seen_ids[row_id]}); "
            "row ids must be unique within a file"
        )

    excluded = set(config.text_fields) | {config.id_field}
    if config.metadata_fields is None:
        metadata = {k: v for k, v in row.items() if k not in excluded}
    else:
        metadata = {k: row[k] for k in config.metadata_fields if k in row}
    title = row.get(config.title_field) if config.title_field else None
    if isinstance(title, str | int | float) and str(title).strip():
        metadata["title"] = str(title).strip()
    metadata["row_id"] = row_id
    metadata["line"] = line

    seen_ids[row_id] = line
    return make_document(path, "\n\n".join(parts), file_type, metadata, row_id=row_id)


def row_failure(path: Path, line: int, reason: str) -> LoadFailure:
    return LoadFailure(path=f"{source_of(path)}:{line}", reason=reason)


def strict(documents: list[Document], failures: list[LoadFailure]) -> list[Document]:
    """The all-or-nothing view used by a format module's `load()`: any bad row is an error."""
    if failures:
        first = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise LoaderError(f"{len(failures)} bad row(s); first at {first.path}: {first.reason}{more}")
    return documents
