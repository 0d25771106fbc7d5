"""`ragkit status`: the published generation, its counts, on-disk size, leftovers and writer."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from pydantic import BaseModel, Field

from ragkit.components import build
from ragkit.indexes.generation import GenerationView, generation_pipeline
from ragkit.indexes.layout import SEGMENTS_DIR, IndexDamaged, building_segments, lock_holder, require_current


class SegmentStatus(BaseModel):
    name: str
    chunks: int = Field(description="rows, deleted ones included")
    live_chunks: int
    deleted_chunks: int
    documents: int = Field(description="live documents")
    size_bytes: int


class IndexStatus(BaseModel):
    """The published generation of an index and what else is on disk."""

    index_dir: str
    generation: int
    directory: str
    created_at: float
    documents: int
    chunks: int
    sources: int = Field(description="distinct source files (a JSONL/CSV file holds many documents)")
    embedding_model: str
    dim: int
    size_bytes: int = Field(description="everything under the index directory")
    generation_size_bytes: int = Field(description="the published generation alone: its files and its segments")
    previous_generations: list[str] = Field(
        default_factory=list, description="older generations still on disk (kept for readers)"
    )
    unpublished_generations: list[str] = Field(
        default_factory=list, description="newer, never published: left by a crashed writer"
    )
    writer_pid: int | None = Field(None, description="PID holding the writer lock now, if any")
    filter_fields: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="metadata fields a query can filter on: field -> {value kind: chunks} "
        "(empty for an index written before filters existed)",
    )
    dense_backend: str = Field("faiss", description="where the vectors are stored and searched (the vector store's own line)")
    segments: list[SegmentStatus] = Field(default_factory=list, description="the generation's segments, in row order")
    deleted_chunks: int = Field(0, description="rows marked deleted, not yet purged by a merge")
    merging: list[str] = Field(default_factory=list, description="segments a merge is building now")


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed while walking (a concurrent cleanup)
    return total


def index_status(index_dir: str | Path) -> IndexStatus:
    """Counts and sizes of the published generation; raises IndexNotFound if there is none."""
    index_dir = Path(index_dir)
    manifest = require_current(index_dir)
    current = index_dir / manifest.directory
    sources = 0
    filter_fields: dict[str, dict[str, int]] = {}
    try:
        view = GenerationView.open(index_dir, manifest)
        try:
            sources = view.store.count_sources()
            filter_fields = view.store.field_counts() if view.store.has_chunk_fields() else {}
        finally:
            view.close()
    except (OSError, RuntimeError, ValueError, sqlite3.Error) as exc:
        raise IndexDamaged(
            f"index generation {manifest.generation} is damaged ({type(exc).__name__}: {exc}); "
            f"run `ragkit status --verify --index {index_dir}`"
        ) from exc
    segments = [
        SegmentStatus(
            name=s.name,
            chunks=s.chunks,
            live_chunks=s.live_chunks,
            deleted_chunks=s.deleted_chunks,
            documents=s.live_documents,
            size_bytes=_tree_size(index_dir / SEGMENTS_DIR / s.name),
        )
        for s in manifest.segments
    ]
    generations = sorted(p.name for p in index_dir.glob("gen-*") if p.is_dir())
    try:
        backend = generation_pipeline(index_dir, manifest).dense.backend
    except ValueError as exc:
        raise IndexDamaged(
            f"index generation {manifest.generation} is damaged ({exc}); run `ragkit status --verify --index {index_dir}`"
        ) from exc
    dense_backend = build("vector_store", backend, index_dir=index_dir, stored=backend).describe()
    return IndexStatus(
        dense_backend=dense_backend,
        index_dir=str(index_dir),
        generation=manifest.generation,
        directory=manifest.directory,
        created_at=manifest.created_at,
        documents=manifest.documents,
        chunks=manifest.chunks,
        sources=sources,
        embedding_model=manifest.embedding_model,
        dim=manifest.dim,
        size_bytes=_tree_size(index_dir),
        generation_size_bytes=_tree_size(current) + sum(s.size_bytes for s in segments),
        previous_generations=[g for g in generations if g < manifest.directory],
        unpublished_generations=[g for g in generations if g > manifest.directory],
        writer_pid=lock_holder(index_dir),
        filter_fields=filter_fields,
        segments=segments,
        deleted_chunks=sum(s.deleted_chunks for s in segments),
        merging=sorted(building_segments(index_dir)),
    )
