"""Plain text (.txt): robust decoding, newlines normalised, one document per file."""

from __future__ import annotations

from pathlib import Path

from ragkit.config import LoaderConfig
from ragkit.loaders.base import LoaderError, decode_text, make_document, read_bytes
from ragkit.schema import Document

FILE_TYPE = "text"


def read_text(path: Path) -> tuple[str, str]:
    """(text, encoding) of a text file; empty or whitespace-only files are unusable."""
    text, encoding = decode_text(read_bytes(path))
    if not text.strip():
        raise LoaderError("empty file")
    return text, encoding


def load(path: Path, config: LoaderConfig) -> list[Document]:
    text, encoding = read_text(path)
    return [make_document(path, text, FILE_TYPE, {"encoding": encoding})]
