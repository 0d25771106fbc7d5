"""What every format loader shares: the error type, reading, text decoding, Document building."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

from ragkit.schema import Document


class LoaderError(Exception):
    """A file that cannot be used; `reason` says what is wrong (and, if useful, what to do)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Longest BOMs first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: list[tuple[bytes, str]] = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]


def source_of(path: Path) -> str:
    """The path as citations show it: as given (relative stays relative), POSIX separators."""
    return path.as_posix()


def read_bytes(path: Path) -> bytes:
    """The file's bytes; OS errors become a LoaderError with the OS's reason."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise LoaderError("no such file or directory") from None
    except PermissionError:
        raise LoaderError("permission denied (cannot read the file)") from None
    except IsADirectoryError:
        raise LoaderError("is a directory, not a file") from None
    except OSError as exc:
        raise LoaderError(f"cannot read the file: {exc.strerror or exc}") from None


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode text bytes robustly; returns (text with '\\n' newlines, encoding used).

    Order: BOM (UTF-8/16/32) > NUL bytes mean binary > `declared` charset (e.g. an HTML
    <meta charset>) > UTF-8 > cp1252 > latin-1 (which never fails, so text always decodes).
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                reason = f"invalid {encoding} text after the byte-order mark: {exc.reason}"
                raise LoaderError(reason) from None
            return normalize_newlines(text), encoding.removesuffix("-le").removesuffix("-be")
    if b"\x00" in data:
        raise LoaderError("looks like a binary file (NUL bytes), not text")
    candidates = ["utf-8", "cp1252", "latin-1"]
    if declared:
        try:
            candidates.insert(0, codecs.lookup(declared).name)
        except LookupError:
            pass  # an unknown declared charset is just ignored, as browsers do
    for encoding in candidates:
        try:
            return normalize_newlines(data.decode(encoding)), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("unreachable: latin-1 decodes any bytes")


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def make_document(
    path: Path,
    text: str,
    file_type: str,
    metadata: dict[str, Any] | None = None,
    row_id: str | None = None,
) -> Document:
    """A Document with the common metadata (`file_type`, `path`) every loader must set.

    Single-document files get `id == source`; rows get `f"{source}#{row_id}"`.
    Loader facts are applied last so a row field named e.g. `path` cannot fake them.
    """
    source = source_of(path)
    meta = dict(metadata or {})
    meta["file_type"] = file_type
    meta["path"] = source
    doc_id = source if row_id is None else f"{source}#{row_id}"
    return Document(id=doc_id, source=source, text=text, metadata=meta)
