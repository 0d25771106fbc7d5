"""Word (.docx) via python-docx: paragraphs (and table rows, in document order) as paragraphs."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.loaders.base import LoaderError, make_document, normalize_newlines, read_bytes
from ragkit.schema import Document, LoadFailure

if TYPE_CHECKING:
    from ragkit.config import LoaderConfig

FILE_TYPE = "docx"
_HEADING_STYLE = re.compile(r"^Heading ([1-9])$")


def _open(data: bytes) -> Any:
    # Imported lazily so the other formats work even where python-docx is broken or missing.
    import docx

    try:
        return docx.Document(io.BytesIO(data))
    except Exception as exc:  # BadZipFile, PackageNotFoundError, KeyError, lxml errors...
        raise LoaderError(f"corrupt or unreadable .docx: {str(exc) or type(exc).__name__}") from None


def _blocks(document: Any) -> list[tuple[str, str | None]]:
    """(text, style name) for each body paragraph and table row, in document order."""
    from docx.table import Table

    blocks: list[tuple[str, str | None]] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                # Merged cells repeat the same cell object; show each once.
                cells: list[str] = []
                for cell in row.cells:
                    text = cell.text.strip()
                    if text and (not cells or cells[-1] != text):
                        cells.append(text)
                if cells:
                    blocks.append((" | ".join(cells), None))
        else:
            style = item.style.name if item.style is not None else None
            blocks.append((item.text, style))
    return blocks


def load(path: Path, config: LoaderConfig) -> list[Document]:
    document = _open(read_bytes(path))
    try:
        blocks = _blocks(document)
        core_title = document.core_properties.title
    except Exception as exc:
        raise LoaderError(f"corrupt or unreadable .docx: {str(exc) or type(exc).__name__}") from None
    paragraphs: list[str] = []
    headings: list[dict[str, Any]] = []
    first_title: str | None = None
    length = 0
    for raw, style in blocks:
        text = normalize_newlines(raw).strip()
        if not text:
            continue
        if paragraphs:
            length += 2  # the "\n\n" separator
        heading = _HEADING_STYLE.match(style or "")
        if heading:
            headings.append({"level": int(heading.group(1)), "text": text, "start": length})
        if style == "Title" and first_title is None:
            first_title = text
        paragraphs.append(text)
        length += len(text)
    if not paragraphs:
        raise LoaderError("empty document (no text in paragraphs or tables)")
    metadata: dict[str, Any] = {"headings": headings}
    title = (core_title or "").strip() or first_title
    if title:
        metadata["title"] = title
    return [make_document(path, "\n\n".join(paragraphs), FILE_TYPE, metadata)]


class DocxLoaderConfig(ComponentConfig):
    name: Literal["docx"] = Field("docx", exclude=True)


@register("loader", "docx", DocxLoaderConfig, extensions=(".docx",))
class DocxLoader:
    """Word documents (.docx): paragraphs and headings (python-docx)."""

    def __init__(self, config: DocxLoaderConfig) -> None:
        self.config = config

    def load(self, path: Path, settings: LoaderConfig) -> tuple[list[Document], list[LoadFailure]]:
        return (load(path, settings), [])
