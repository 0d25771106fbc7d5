"""Opening one published index generation for reading."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ragkit.components import build
from ragkit.config import PipelineConfig
from ragkit.indexes.generation import GenerationView, generation_pipeline
from ragkit.indexes.layout import (
    SPARSE_DIR,
    IndexDamaged,
    IndexStoreError,
    Manifest,
    check_files,
    damage_message,
    require_current,
)
from ragkit.indexes.sentences import SentenceIndex
from ragkit.indexes.store import STORE_FILE, ChunkStore
from ragkit.protocols import SparseBackend, SparseIndex, VectorSearcher, VectorStore

T = TypeVar("T")


@dataclass
class IndexSnapshot:
    """A consistent view of one generation: store, dense and sparse indexes share row numbers."""

    index_dir: Path
    manifest: Manifest
    pipeline: PipelineConfig
    store: ChunkStore
    dense: VectorSearcher
    sparse: SparseIndex
    sparse_backend: SparseBackend
    _sentences: SentenceIndex | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return self.index_dir / self.manifest.directory

    @property
    def sentences(self) -> SentenceIndex:
        """The generation's stored sentences (ragkit/indexes/sentences.py), opened on first use."""
        if self._sentences is None:
            self._sentences = SentenceIndex.open(self.path)
        return self._sentences

    @classmethod
    def open(cls, index_dir: str | Path) -> IndexSnapshot:
        """Open the published generation; its files are checked against the manifest's checksums
        first, so damage is reported (IndexDamaged, naming the file) instead of served."""
        index_dir = Path(index_dir)
        manifest = require_current(index_dir)
        path = index_dir / manifest.directory
        check_files(index_dir, manifest)

        def opened(name: str, load: Callable[[], T]) -> T:
            try:
                return load()
            except IndexStoreError:
                raise  # already says what to do (e.g. chroma server not reachable)
            except (OSError, RuntimeError, ValueError, sqlite3.Error) as exc:
                # An index from before checksums, or damage the checks cannot see (chroma).
                problem = f"{name}: {type(exc).__name__}: {exc}"
                raise IndexDamaged(damage_message(index_dir, manifest, [problem])) from exc

        pipeline = generation_pipeline(index_dir, manifest)
        store = opened(STORE_FILE, lambda: ChunkStore.open(path / STORE_FILE))
        opened(STORE_FILE, store.count_chunks)  # reads the schema: damage shows here, not mid-query
        view = GenerationView(index_dir, path, manifest.generation, store)
        vector_store: VectorStore = build("vector_store", pipeline.dense.backend, index_dir=index_dir, stored=pipeline.dense.backend)
        dense = opened("dense index", lambda: vector_store.open(view))
        sparse_backend: SparseBackend = build("sparse_index", pipeline.sparse)
        sparse = opened(SPARSE_DIR, lambda: sparse_backend.open(path / SPARSE_DIR))
        snapshot = cls(index_dir, manifest, pipeline, store, dense, sparse, sparse_backend)
        snapshot.check_consistency()
        return snapshot

    def check_consistency(self) -> None:
        """Dense, sparse and store must hold the same rows; anything else is a corrupt index."""
        counts = {
            "manifest": self.manifest.chunks,
            "store": self.store.count_chunks(),
            "dense": len(self.dense),
            "sparse": len(self.sparse),
        }
        if len(set(counts.values())) != 1:
            raise IndexStoreError(f"index {self.path} is inconsistent: chunk counts {counts}")

    def close(self) -> None:
        self.dense.close()
        self.store.close()
        if self._sentences is not None:
            self._sentences.close()
