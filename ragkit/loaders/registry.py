"""File extension -> format module.

A format module exposes `FILE_TYPE` and `load(path, config) -> list[Document]` (raising
`LoaderError` for an unusable file). Row formats also expose
`load_partial(path, config) -> (documents, row_failures)` so one bad row does not sink the file.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from ragkit.loaders import csv as csv_loader
from ragkit.loaders import docx as docx_loader
from ragkit.loaders import html, jsonl, markdown, pdf, text

LOADERS: dict[str, ModuleType] = {
    ".txt": text,
    ".md": markdown,
    ".markdown": markdown,
    ".html": html,
    ".htm": html,
    ".pdf": pdf,
    ".jsonl": jsonl,
    ".csv": csv_loader,
    ".docx": docx_loader,
}


def supported_extensions() -> list[str]:
    return sorted(LOADERS)


def loader_for(path: Path) -> ModuleType | None:
    """The format module for `path` by its (case-insensitive) extension, or None."""
    return LOADERS.get(path.suffix.lower())


def unsupported_reason(path: Path, hint: bool = False) -> str:
    """Why `path` is not loaded; with `hint`, also list what is supported."""
    kind = f"'{path.suffix}'" if path.suffix else "(no extension)"
    reason = f"unsupported file type {kind}"
    return f"{reason} (supported: {', '.join(supported_extensions())})" if hint else reason
