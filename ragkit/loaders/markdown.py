"""Markdown (.md, .markdown): kept raw, since the markdown chunker parses headings itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.loaders.base import make_document
from ragkit.loaders.text import read_text
from ragkit.schema import Document, LoadFailure

if TYPE_CHECKING:
    from ragkit.config import LoaderConfig

FILE_TYPE = "markdown"

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def first_heading(text: str) -> str | None:
    """Text of the first non-empty ATX heading (`# Title`), ignoring fenced code blocks."""
    fence: str | None = None
    for line in text.split("\n"):
        opener = _FENCE.match(line)
        if fence is not None:
            # A fence closes only with the same character, at least as long.
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                fence = None
            continue
        if opener:
            fence = opener.group(1)
            continue
        match = _ATX.match(line)
        if match and match.group(2) and match.group(2).strip("# \t"):
            return match.group(2).strip()
    return None


def load(path: Path, config: LoaderConfig) -> list[Document]:
    text, encoding = read_text(path)
    metadata: dict[str, Any] = {"encoding": encoding}
    title = first_heading(text)
    if title:
        metadata["title"] = title
    return [make_document(path, text, FILE_TYPE, metadata)]


class MarkdownLoaderConfig(ComponentConfig):
    name: Literal["markdown"] = Field("markdown", exclude=True)


@register("loader", "markdown", MarkdownLoaderConfig, extensions=(".md", ".markdown"))
class MarkdownLoader:
    """Markdown (.md): the text as written, its first heading as the title."""

    def __init__(self, config: MarkdownLoaderConfig) -> None:
        self.config = config

    def load(self, path: Path, settings: LoaderConfig) -> tuple[list[Document], list[LoadFailure]]:
        return (load(path, settings), [])
