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
from ragkit.indexes.store import STORE_FILE, SegmentedStore
from ragkit.protocols import SparseBackend, SparseIndex, VectorSearcher, VectorStore

T = TypeVar("T")


@dataclass
class IndexSnapshot:
    """A consistent view of one generation: store, dense and sparse indexes share global rows."""

    index_dir: Path
    manifest: Manifest
    pipeline: PipelineConfig
    view: GenerationView
    dense: VectorSearcher
    sparse: SparseIndex
    sparse_backend: SparseBackend
    _sentences: SentenceIndex | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return self.index_dir / self.manifest.directory

    @property
    def store(self) -> SegmentedStore:
        return self.view.store

    @property
    def sentences(self) -> SentenceIndex:
        """The segments' stored sentences (ragkit/indexes/sentences.py), opened on first use."""
        if self._sentences is None:
            self._sentences = SentenceIndex.open(s.directory for s in self.view.segments)
        return self._sentences

    @classmethod
    def open(cls, index_dir: str | Path) -> IndexSnapshot:
        """Open the published generation; its files are checked against the manifest's checksums
        first, so damage is reported (IndexDamaged, naming the file) instead of served."""
        index_dir = Path(index_dir)
        manifest = require_current(index_dir)
        check_files(index_dir, manifest)

        def opened(name: str, load: Callable[[], T]) -> T:
            try:
                return load()
            except IndexStoreError:
                raise  # already says what to do (e.g. chroma server not reachable)
            except (OSError, RuntimeError, ValueError, LookupError, sqlite3.Error) as exc:
                # Damage the size checks cannot see (a large index's digests are read by --verify).
                problem = f"{name}: {type(exc).__name__}: {exc}"
                raise IndexDamaged(damage_message(index_dir, manifest, [problem])) from exc

        pipeline = generation_pipeline(index_dir, manifest)
        view = opened(STORE_FILE, lambda: GenerationView.open(index_dir, manifest))
        try:
            opened(STORE_FILE, view.store.count_documents)  # reads the schemas: damage shows here, not mid-query
            vector_store: VectorStore = build("vector_store", pipeline.dense.backend, index_dir=index_dir, stored=pipeline.dense.backend)
            dense = opened("dense index", lambda: vector_store.open(view))
            sparse_backend: SparseBackend = build("sparse_index", pipeline.sparse)
            sparse = opened(SPARSE_DIR, lambda: sparse_backend.open(view))
        except BaseException:
            view.close()
            raise
        snapshot = cls(index_dir, manifest, pipeline, view, dense, sparse, sparse_backend)
        snapshot.check_consistency()
        return snapshot

    def check_consistency(self) -> None:
        """Dense, sparse and store must hold the same rows; anything else is a corrupt index."""
        rows = {"store": self.view.rows, "dense": len(self.dense), "sparse": len(self.sparse)}
        live = {"manifest": self.manifest.chunks, "store": self.store.count_chunks()}
        if len(set(rows.values())) != 1 or len(set(live.values())) != 1:
            raise IndexStoreError(f"index {self.path} is inconsistent: rows {rows}, live chunks {live}")

    def close(self) -> None:
        self.dense.close()
        self.view.close()
        if self._sentences is not None:
            self._sentences.close()
