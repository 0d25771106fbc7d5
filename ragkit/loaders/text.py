"""Plain text (.txt): robust decoding, newlines normalised, one document per file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.loaders.base import LoaderError, decode_text, make_document, read_bytes
from ragkit.schema import Document, LoadFailure

if TYPE_CHECKING:
    from ragkit.config import LoaderConfig

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


class TextLoaderConfig(ComponentConfig):
    name: Literal["text"] = Field("text", exclude=True)


@register("loader", "text", TextLoaderConfig, extensions=(".txt",))
class TextLoader:
    """Plain text (.txt), decoded robustly (BOM, declared, UTF-8, cp1252, latin-1)."""

    def __init__(self, config: TextLoaderConfig) -> None:
        self.config = config

    def load(self, path: Path, settings: LoaderConfig) -> tuple[list[Document], list[LoadFailure]]:
        return (load(path, settings), [])
