"""Upgrading an index written before segments (format 1) to the segmented format, in place.

A format-1 generation is one directory holding the whole index (store, vectors, dense index,
precomputed BM25 weights, sentences). It becomes the first segment of a format-2 index: the
store is copied (and given the lookup indexes segments need), vectors, the dense index and the
sentences are hard-linked (copied across file systems), and BM25 postings are rebuilt from the
stored chunk texts (the old files hold weights, which segments cannot use). Nothing is
embedded. The old generation stays on disk until the next commit's clean-up, and a crash
leaves it published: the upgrade is redone by the next writer.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ragkit.components import build
from ragkit.config import load_pipeline
from ragkit.indexes.layout import (
    CURRENT_FILE,
    MANIFEST_FILE,
    PIPELINE_FILE,
    SEGMENTS_DIR,
    SPARSE_DIR,
    IndexDamaged,
    Manifest,
    generation_dir_name,
    next_segment_number,
    publish,
    remove_stale_generations,
    segment_dir_name,
)
from ragkit.indexes.store import STORE_FILE, ChunkStore
from ragkit.protocols import SparseBackend

log = logging.getLogger(__name__)


def upgrade_index(index_dir: Path) -> Manifest:
    """Publish the format-1 current generation as a one-segment format-2 generation (the caller
    holds the writer lock). Returns the new manifest."""
    from ragkit.indexes.writer import finish_segment

    index_dir = Path(index_dir)
    old = json.loads((index_dir / CURRENT_FILE).read_text(encoding="utf-8"))
    old_dir = index_dir / old["directory"]
    if not (old_dir / STORE_FILE).exists():
        raise IndexDamaged(f"index {index_dir}: {old_dir / STORE_FILE} is missing; re-ingest into a new --index directory")
    log.warning("upgrading index %s to the segmented format (once; nothing is re-embedded)", index_dir)
    segment = index_dir / SEGMENTS_DIR / segment_dir_name(next_segment_number(index_dir))
    segment.mkdir(parents=True)
    generation = int(old["generation"]) + 1
    new_dir = index_dir / generation_dir_name(generation)
    try:
        for path in old_dir.iterdir():
            if path.name in (MANIFEST_FILE, PIPELINE_FILE, SPARSE_DIR, STORE_FILE) or not path.is_file():
                continue
            try:
                os.link(path, segment / path.name)
            except OSError:
                shutil.copyfile(path, segment / path.name)
        shutil.copyfile(old_dir / STORE_FILE, segment / STORE_FILE)
        store = ChunkStore.open(segment / STORE_FILE, readonly=False)
        try:
            store.ensure_indexes()
            store.number_documents()
            chunks, documents = store.row_count(), store.count_documents()
            if store.count_chunks() != chunks:
                raise IndexDamaged(f"index {index_dir}: {old_dir / STORE_FILE} has gaps in its chunk rows; re-ingest")
            pipeline = load_pipeline(old_dir / PIPELINE_FILE)
            sparse_backend: SparseBackend = build("sparse_index", pipeline.sparse)
            sparse = sparse_backend.writer(None)
            sparse.write_segment(store.iter_chunk_texts(), segment)
        finally:
            store.close()
        entry = finish_segment(segment, chunks, documents)
        if new_dir.exists():
            shutil.rmtree(new_dir)
        new_dir.mkdir(parents=True)
        shutil.copyfile(old_dir / PIPELINE_FILE, new_dir / PIPELINE_FILE)
        sparse.finish(new_dir)
        manifest = Manifest(
            generation=generation,
            directory=new_dir.name,
            documents=documents,
            chunks=chunks,
            embedding_model=old.get("embedding_model") or pipeline.dense.embedder.model,
            dim=int(old.get("dim") or 0),
            segments=[entry],
        )
        manifest = publish(index_dir, manifest)
    except BaseException:
        shutil.rmtree(segment, ignore_errors=True)
        shutil.rmtree(new_dir, ignore_errors=True)
        raise
    remove_stale_generations(index_dir, manifest)
    return manifest
