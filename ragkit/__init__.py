"""ragkit: offline-first retrieval-augmented generation with cited answers and honest evaluation.

The package reads in the order data flows:
  loaders -> chunkers -> indexes (embedder, faiss, BM25, store) -> retrieval (fusion, rerank)
  -> generation -> eval; then `cli` and the public API (`api.RAG`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragkit.api import RAG, IngestReport
    from ragkit.config import PipelineConfig, load_pipeline
    from ragkit.schema import Answer, Chunk, Citation, Document, Hit, Trace

# Public names resolve lazily so `import ragkit.config` (or the CLI's --help) does not pay for
# faiss/numpy/torch imports it does not need.
_EXPORTS = {
    "RAG": "ragkit.api",
    "IngestReport": "ragkit.api",
    "PipelineConfig": "ragkit.config",
    "load_pipeline": "ragkit.config",
    "Answer": "ragkit.schema",
    "Chunk": "ragkit.schema",
    "Citation": "ragkit.schema",
    "Document": "ragkit.schema",
    "Hit": "ragkit.schema",
    "Trace": "ragkit.schema",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ragkit' has no attribute {name!r}")
