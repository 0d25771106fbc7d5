"""PDF (.pdf) via pypdf: page texts joined by blank lines, with exact per-page character ranges."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.loaders.base import LoaderError, make_document, normalize_newlines, read_bytes
from ragkit.schema import Document, LoadFailure

if TYPE_CHECKING:
    from ragkit.config import LoaderConfig

FILE_TYPE = "pdf"
PAGE_SEPARATOR = "\n\n"


class _Collect(logging.Handler):
    """Keeps pypdf's warnings: in its lenient mode the real cause of a failure is logged
    ("invalid pdf header") while the exception only says "Stream has ended unexpectedly"."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _open(data: bytes) -> Any:
    # Imported lazily so the other formats work even where pypdf is broken or missing.
    from pypdf import PasswordType, PdfReader

    logger = logging.getLogger("pypdf")
    collect = _Collect()
    logger.addHandler(collect)
    try:
        reader = PdfReader(io.BytesIO(data))
    except Exception as exc:  # pypdf raises many types (PdfReadError, ValueError, KeyError...)
        details = "".join(f"; {m}" for m in dict.fromkeys(collect.messages))
        raise LoaderError(f"corrupt or unreadable PDF: {str(exc) or type(exc).__name__}{details}") from None
    finally:
        logger.removeHandler(collect)
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except Exception as exc:
            raise LoaderError(f"encrypted PDF that cannot be opened: {exc}") from None
        if opened == PasswordType.NOT_DECRYPTED:
            raise LoaderError("encrypted PDF: it needs a password (decrypt it first, e.g. `qpdf --decrypt`)")
    return reader


def _title(reader: Any) -> str | None:
    try:
        info = reader.metadata
        title = info.title if info is not None else None
    except Exception:  # a broken info dictionary should not cost us the text
        return None
    text = str(title).strip() if title else ""
    return text or None


def load(path: Path, config: LoaderConfig) -> list[Document]:
    reader = _open(read_bytes(path))
    texts: list[str] = []
    pages: list[dict[str, int]] = []
    length = 0
    try:
        page_list = list(reader.pages)
    except Exception as exc:
        raise LoaderError(f"corrupt or unreadable PDF (page tree): {exc}") from None
    for number, page in enumerate(page_list, start=1):
        try:
            page_text = normalize_newlines(page.extract_text() or "").strip()
        except Exception as exc:
            raise LoaderError(f"page {number}: text extraction failed: {exc}") from None
        if not page_text:
            continue  # pages without text get no range (nothing in the document points to them)
        if texts:
            length += len(PAGE_SEPARATOR)
        pages.append({"page": number, "start": length, "end": length + len(page_text)})
        texts.append(page_text)
        length += len(page_text)
    if not texts:
        raise LoaderError("no extractable text (scanned PDF? OCR is not supported)")
    metadata: dict[str, Any] = {"pages": pages, "page_count": len(page_list)}
    title = _title(reader)
    if title:
        metadata["title"] = title
    return [make_document(path, PAGE_SEPARATOR.join(texts), FILE_TYPE, metadata)]


class PdfLoaderConfig(ComponentConfig):
    name: Literal["pdf"] = Field("pdf", exclude=True)


@register("loader", "pdf", PdfLoaderConfig, extensions=(".pdf",))
class PdfLoader:
    """PDF text per page (pypdf), with page ranges in the metadata."""

    def __init__(self, config: PdfLoaderConfig) -> None:
        self.config = config

    def load(self, path: Path, settings: LoaderConfig) -> tuple[list[Document], list[LoadFailure]]:
        return (load(path, settings), [])
