"""Opening one published index generation for reading."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ragkit.config import PipelineConfig, load_pipeline
from ragkit.indexes.bm25 import BM25Index
from ragkit.indexes.dense import DenseIndex
from ragkit.indexes.faiss_dense import FaissDenseIndex
from ragkit.indexes.layout import (
    PIPELINE_FILE,
    SPARSE_DIR,
    IndexStoreError,
    Manifest,
    require_current,
)
from ragkit.indexes.sentences import SentenceIndex
from ragkit.indexes.store import STORE_FILE, ChunkStore


@dataclass
class IndexSnapshot:
    """A consistent view of one generation: store, dense and sparse indexes share row numbers."""

    index_dir: Path
    manifest: Manifest
    pipeline: PipelineConfig
    store: ChunkStore
    dense: DenseIndex  # FaissDenseIndex, or ChromaDenseIndex for `dense.backend: chroma`
    sparse: BM25Index
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
        index_dir = Path(index_dir)
        manifest = require_current(index_dir)
        path = index_dir / manifest.directory
        try:
            pipeline = load_pipeline(path / PIPELINE_FILE)
            store = ChunkStore.open(path / STORE_FILE)
            dense = _load_dense(index_dir, path, pipeline, store)
            sparse = BM25Index.load(path / SPARSE_DIR)
        except IndexStoreError:
            raise  # already says what to do (e.g. chroma server not reachable)
        except (OSError, RuntimeError, ValueError) as exc:
            raise IndexStoreError(
                f"index generation {path} is damaged or incomplete ({exc}); re-run the ingest"
            ) from exc
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
        if self._sentences is not None:
            self._sentences.close()


def _load_dense(index_dir: Path, path: Path, pipeline: PipelineConfig, store: ChunkStore) -> DenseIndex:
    backend = pipeline.dense.backend
    if backend.name == "chroma":
        from ragkit.indexes.chroma_dense import ChromaDenseIndex  # chromadb is imported only when used

        return ChromaDenseIndex.load(index_dir, path, backend, store)
    return FaissDenseIndex.load(path)
