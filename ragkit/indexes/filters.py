"""Metadata filters: what a chunk can be filtered on.

`filterable_metadata` is the one flat view of a chunk's metadata that every backend filters on
(faiss and BM25 through the chunk store, chroma through its own metadata), so a filter means the
same thing everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

Scalar = str | int | float | bool

# Always present; they win over loader fields of the same name (a CSV column called `source`
# must not make a chunk look like it came from another file).
BUILTIN_FIELDS = ("source", "doc_id")
_INT64 = 2**63


def _scalar(value: Any) -> bool:
    if isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -_INT64 <= value < _INT64  # chroma and SQLite store 64-bit integers
    if isinstance(value, float):
        return math.isfinite(value)
    return False


def filterable_metadata(
    source: str, doc_id: str, document_metadata: Mapping[str, Any], chunk_metadata: Mapping[str, Any]
) -> dict[str, Scalar]:
    """Document fields, then chunk fields (a chunk's `page` beats its document's), then builtins.

    Only scalar values (str, int, float, bool) are filterable: lists and mappings (`pages`,
    `headings`) and nulls are left out, because chroma metadata cannot hold them either.
    """
    flat: dict[str, Scalar] = {}
    for metadata in (document_metadata, chunk_metadata):
        flat.update({str(k): v for k, v in metadata.items() if _scalar(v)})
    flat["source"] = source
    flat["doc_id"] = doc_id
    return flat
