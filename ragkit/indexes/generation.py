"""One index generation as the stores see it: its segments, their deletions, stores and vectors.

Writers build a view of the generation they are writing, readers of the published one; vector
stores and the sparse backend (`ragkit.protocols.VectorStore`, `SparseBackend`) get views, never
paths to guess from, so where a generation keeps its files is decided here and in `layout`.

Global rows: the segments' local rows concatenated in manifest order (`SegmentView.base`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragkit.config import PipelineConfig, PipelineError, load_pipeline
from ragkit.indexes.layout import (
    DELETES_DIR,
    EMBEDDINGS_FILE,
    PIPELINE_FILE,
    SEGMENTS_DIR,
    IndexDamaged,
    Manifest,
    SegmentEntry,
    damage_message,
    file_digest,
)
from ragkit.indexes.store import STORE_FILE, ChunkStore, SegmentedStore


@dataclass
class SegmentView:
    """One segment as a generation sees it: local rows 0..chunks-1 at global rows base.."""

    name: str
    directory: Path
    base: int
    chunks: int
    documents: int
    deleted: np.ndarray | None  # bool [chunks], True = deleted in this generation (None: none are)
    deleted_documents: np.ndarray | None  # bool [documents], by position (rowid - 1)
    store: ChunkStore
    _vectors: np.ndarray | None = field(default=None, repr=False)

    @property
    def vectors(self) -> np.ndarray:
        """The segment's float32 embeddings, local row i (memory-mapped)."""
        if self._vectors is None:
            self._vectors = np.load(self.directory / EMBEDDINGS_FILE, mmap_mode="r")
        return self._vectors

    @property
    def live(self) -> np.ndarray:
        """bool [chunks]: True where the row is not deleted."""
        return np.ones(self.chunks, dtype=bool) if self.deleted is None else ~self.deleted

    @property
    def live_chunks(self) -> int:
        return self.chunks - (int(np.count_nonzero(self.deleted)) if self.deleted is not None else 0)


def read_deletes(path: Path, chunks: int, documents: int) -> tuple[np.ndarray, np.ndarray]:
    """The deletion masks of a segment (chunks, documents) from its deletion file."""
    with np.load(path, allow_pickle=False) as data:
        deleted = np.unpackbits(data["chunks"], count=chunks, bitorder="little").astype(bool)
        deleted_docs = np.unpackbits(data["documents"], count=documents, bitorder="little").astype(bool)
    return deleted, deleted_docs


def write_deletes(path: Path, deleted: np.ndarray, deleted_docs: np.ndarray) -> None:
    """Deletion bitmaps, 1 bit per row: 125 KB for a 1M-row segment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez(
            handle,
            chunks=np.packbits(deleted.astype(bool), bitorder="little"),
            documents=np.packbits(deleted_docs.astype(bool), bitorder="little"),
        )


def deletes_file_name(segment: str) -> str:
    return f"{DELETES_DIR}/{segment}.npz"


@dataclass
class GenerationView:
    index_dir: Path
    directory: Path
    generation: int
    segments: list[SegmentView]
    store: SegmentedStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = SegmentedStore(
            [(s.store, s.base, s.chunks, s.deleted, s.deleted_documents) for s in self.segments]
        )

    @classmethod
    def open(cls, index_dir: Path, manifest: Manifest) -> GenerationView:
        """A read-only view of a published (or fully written) generation."""
        directory = index_dir / manifest.directory
        return cls(index_dir, directory, manifest.generation, open_segments(index_dir, directory, manifest.segments))

    @property
    def rows(self) -> int:
        """Global rows, deleted ones included."""
        return sum(s.chunks for s in self.segments)

    def live(self) -> np.ndarray:
        """bool over global rows: True where the row is not deleted."""
        return self.store.live

    def vectors_at(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """float32 vectors of the given global rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        bases = np.array([s.base for s in self.segments], dtype=np.int64)
        which = np.searchsorted(bases, rows, side="right") - 1
        dim = self.segments[0].vectors.shape[1] if self.segments else 0
        out = np.empty((len(rows), dim), dtype=np.float32)
        for part in np.unique(which).tolist():
            at = np.flatnonzero(which == part)
            segment = self.segments[part]
            out[at] = segment.vectors[rows[at] - segment.base]
        return out

    def close(self) -> None:
        self.store.close()


def open_segments(index_dir: Path, generation_dir: Path, entries: list[SegmentEntry]) -> list[SegmentView]:
    """Views of the listed segments with their deletions in the generation at `generation_dir`."""
    views = []
    base = 0
    try:
        for entry in entries:
            directory = index_dir / SEGMENTS_DIR / entry.name
            deleted = deleted_docs = None
            if entry.deletes:
                deleted, deleted_docs = read_deletes(generation_dir / entry.deletes, entry.chunks, entry.documents)
            store = ChunkStore.open(directory / STORE_FILE)
            views.append(SegmentView(entry.name, directory, base, entry.chunks, entry.documents, deleted, deleted_docs, store))
            base += entry.chunks
    except BaseException:
        for view in views:
            view.store.close()
        raise
    return views


def generation_pipeline(index_dir: Path, manifest: Manifest) -> PipelineConfig:
    """The pipeline a generation was built with; its file is checked against the manifest first,
    so a damaged pipeline.yaml is reported as damage (IndexDamaged), not as a bad pipeline."""
    relative = PIPELINE_FILE
    expected = (manifest.files or {}).get(relative)
    path = index_dir / manifest.directory / relative
    if expected is not None:
        try:
            actual = file_digest(path)
        except OSError as exc:
            raise IndexDamaged(damage_message(index_dir, manifest, [f"{manifest.directory}/{relative}: missing ({exc.strerror or exc})"])) from None
        if actual != expected:
            raise IndexDamaged(damage_message(index_dir, manifest, [f"{manifest.directory}/{relative}: content differs from its checksum"]))
    try:
        return load_pipeline(path)
    except PipelineError as exc:
        raise IndexDamaged(damage_message(index_dir, manifest, [f"{manifest.directory}/{relative}: {exc}"])) from None
