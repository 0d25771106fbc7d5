"""Opening one published index generation for reading."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ragkit.config import PipelineConfig
from ragkit.indexes.bm25 import BM25Index
from ragkit.indexes.dense import DenseIndex
from ragkit.indexes.faiss_dense import FaissDenseIndex
from ragkit.indexes.layout import (
    SPARSE_DIR,
    IndexDamaged,
    IndexStoreError,
    Manifest,
    check_files,
    damage_message,
    generation_pipeline,
    require_current,
)
from ragkit.indexes.store import STORE_FILE, ChunkStore

T = TypeVar("T")


@dataclass
class IndexSnapshot:
    """A consistent view of one generation: store, dense and sparse indexes share row numbers."""

    index_dir: Path
    manifest: Manifest
    pipeline: PipelineConfig
    store: ChunkStore
    dense: DenseIndex  # FaissDenseIndex, or ChromaDenseIndex for `dense.backend: chroma`
    sparse: BM25Index

    @property
    def path(self) -> Path:
        return self.index_dir / self.manifest.directory

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
        dense = opened("dense index", lambda: _load_dense(index_dir, path, pipeline, store))
        sparse = opened(SPARSE_DIR, lambda: BM25Index.load(path / SPARSE_DIR))
        snapshot = cls(index_dir, manifest, pipeline, store, dense, sparse)
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
        self.store.close()


def _load_dense(index_dir: Path, path: Path, pipeline: PipelineConfig, store: ChunkStore) -> DenseIndex:
    backend = pipeline.dense.backend
    if backend.name == "chroma":
        from ragkit.indexes.chroma_dense import ChromaDenseIndex  # chromadb is imported only when used

        return ChromaDenseIndex.load(index_dir, path, backend, store)
    return FaissDenseIndex.load(path)
