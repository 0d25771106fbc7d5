"""Writing the next index generation from the current one plus new or changed documents.

A document is keyed by its id (the source path, or path#row) and a hash of its content.
Unchanged documents cost nothing; a changed document replaces exactly its own chunks; chunk
text already embedded (anywhere in the previous generation) is never embedded again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel

from ragkit.config import PipelineConfig, load_pipeline
from ragkit.indexes.bm25 import BM25Index
from ragkit.indexes.embedder import Embedder
from ragkit.indexes.faiss_dense import FaissDenseIndex
from ragkit.indexes.layout import (
    EMBEDDINGS_FILE,
    PIPELINE_FILE,
    SPARSE_DIR,
    IndexStoreError,
    Manifest,
    generation_dir_name,
    publish,
    read_current,
    remove_stale_generations,
)
from ragkit.indexes.store import STORE_FILE, ChunkStore, document_hash, text_hash
from ragkit.schema import Chunk, Document


class Progress(Protocol):
    """Progress reporting hooks (the CLI draws a rich progress bar; the API passes none)."""

    def start(self, task: str, total: int | None) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class _Silent:
    def start(self, task: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


class WriteStats(BaseModel):
    generation: int
    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    documents_deleted: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    texts_embedded: int = 0
    embedding_cache_hits: int = 0
    documents_total: int = 0
    chunks_total: int = 0
    published: bool = False


def check_pipeline_compatible(index_dir: Path, manifest: Manifest, config: PipelineConfig) -> None:
    """Chunks and vectors of one index must come from one chunker/embedder/analyzer setup."""
    stored = load_pipeline(index_dir / manifest.directory / PIPELINE_FILE).index_signature()
    wanted = config.index_signature()
    if stored != wanted:
        differing = sorted(k for k in wanted if stored.get(k) != wanted.get(k))
        raise IndexStoreError(
            f"index {index_dir} was built with different {', '.join(differing)} settings than "
            "this pipeline; use a new --index directory (or the index's own pipeline)"
        )


def write_generation(
    index_dir: Path,
    config: PipelineConfig,
    documents: Iterable[Document],
    chunk: Callable[[Document], list[Chunk]],
    embedder: Embedder,
    analyzer: Callable[[str], list[str]],
    progress: Progress | None = None,
    delete_ids: Iterable[str] = (),
) -> WriteStats:
    """Build and publish the next generation: upsert `documents`, remove `delete_ids`.

    The caller holds the writer lock. Nothing is published when nothing changes.
    """
    progress = progress or _Silent()
    current = read_current(index_dir)
    if current is not None:
        check_pipeline_compatible(index_dir, current, config)
    generation = current.generation + 1 if current else 1
    stats = WriteStats(generation=generation)

    incoming: dict[str, Document] = {}
    for document in documents:  # a later duplicate id replaces an earlier one, never both kept
        incoming[document.id] = document

    new_dir = index_dir / generation_dir_name(generation)
    if new_dir.exists():  # an unpublished leftover of a crashed writer
        shutil.rmtree(new_dir)
    new_dir.mkdir(parents=True)
    try:
        if current is None:
            store, old_hashes, old_vectors = ChunkStore.create(new_dir / STORE_FILE), {}, None
        else:
            old_dir = index_dir / current.directory
            shutil.copyfile(old_dir / STORE_FILE, new_dir / STORE_FILE)
            store = ChunkStore.open(new_dir / STORE_FILE, readonly=False)
            old_hashes = store.document_hashes()
            old_vectors = np.load(old_dir / EMBEDDINGS_FILE, mmap_mode="r")

        changed = [d for d in incoming.values() if old_hashes.get(d.id) != document_hash(d)]
        deleted = sorted({i for i in delete_ids if i in old_hashes and i not in incoming})
        stats.documents_unchanged = len(incoming) - len(changed)
        stats.documents_updated = sum(d.id in old_hashes for d in changed)
        stats.documents_added = len(changed) - stats.documents_updated
        stats.documents_deleted = len(deleted)
        if not changed and not deleted:
            store.close()
            shutil.rmtree(new_dir)
            totals = current.documents if current else 0, current.chunks if current else 0
            stats.documents_total, stats.chunks_total = totals
            stats.generation = current.generation if current else 0
            return stats

        # Embedding cache: every chunk text of the previous generation, before replacing any.
        cached_rows: dict[str, int] = dict(store.db.execute("SELECT text_hash, row FROM chunks"))
        replaced = [(d.id,) for d in changed if d.id in old_hashes] + [(i,) for i in deleted]
        stats.chunks_removed = sum(
            store.db.execute("SELECT count(*) FROM chunks WHERE doc_id = ?", r).fetchone()[0]
            for r in replaced
        )
        store.db.executemany("DELETE FROM chunks WHERE doc_id = ?", replaced)
        store.db.executemany("DELETE FROM documents WHERE id = ?", replaced)
        kept_rows = [row for (row,) in store.db.execute("SELECT row FROM chunks ORDER BY row")]
        # Renumber kept chunks to 0..K-1. Ascending order never collides: new row <= old row.
        store.db.executemany(
            "UPDATE chunks SET row = ? WHERE row = ?",
            [(new, old) for new, old in enumerate(kept_rows) if new != old],
        )

        progress.start("chunking", len(changed))
        new_chunks: list[Chunk] = []
        for document in changed:
            new_chunks.extend(chunk(document))
            progress.advance()
        stats.chunks_added = len(new_chunks)

        vectors = _embed_with_cache(new_chunks, cached_rows, old_vectors, embedder, progress, stats)
        kept_vectors = (
            np.asarray(old_vectors[kept_rows], dtype=np.float32)
            if old_vectors is not None and kept_rows
            else np.zeros((0, vectors.shape[1]), dtype=np.float32)
        )
        all_vectors = np.vstack([kept_vectors, vectors])
        np.save(new_dir / EMBEDDINGS_FILE, all_vectors)

        store.add_documents(changed)
        store.add_chunks(enumerate(new_chunks, start=len(kept_rows)))
        store.commit()

        progress.start("indexing", None)
        FaissDenseIndex.build(all_vectors, config.dense.backend).save(new_dir)
        sparse = config.sparse
        BM25Index.build(
            [analyzer(text) for text in store.iter_chunk_texts()], k1=sparse.k1, b=sparse.b, epsilon=sparse.epsilon
        ).save(new_dir / SPARSE_DIR)
        (new_dir / PIPELINE_FILE).write_text(config.to_yaml(), encoding="utf-8")

        stats.documents_total = store.count_documents()
        stats.chunks_total = store.count_chunks()
        store.close()
        manifest = Manifest(
            generation=generation,
            directory=new_dir.name,
            documents=stats.documents_total,
            chunks=stats.chunks_total,
            embedding_model=config.dense.embedder.model,
            dim=int(all_vectors.shape[1]),
        )
        publish(index_dir, manifest)
        stats.published = True
        remove_stale_generations(index_dir, manifest)
        return stats
    except BaseException:
        # Nothing was published: the current generation is untouched. Drop the partial one.
        shutil.rmtree(new_dir, ignore_errors=True)
        raise


def _embed_with_cache(
    chunks: list[Chunk],
    cached_rows: dict[str, int],
    old_vectors: np.ndarray | None,
    embedder: Embedder,
    progress: Progress,
    stats: WriteStats,
) -> np.ndarray:
    """Vectors for `chunks`: cached rows reused, each distinct new text encoded once."""
    hashes = [text_hash(c.text) for c in chunks]
    todo: dict[str, str] = {}  # text hash -> text, first occurrence order
    for h, c in zip(hashes, chunks):
        if h not in cached_rows and h not in todo:
            todo[h] = c.text
    stats.texts_embedded = len(todo)
    stats.embedding_cache_hits = len(chunks) - sum(1 for h in hashes if h in todo)
    progress.start("embedding", len(todo))
    fresh = embedder.embed(list(todo.values()), on_batch=progress.advance)
    dim = fresh.shape[1] if len(todo) else (old_vectors.shape[1] if old_vectors is not None else embedder.dim)
    fresh_rows = {h: i for i, h in enumerate(todo)}
    out = np.empty((len(chunks), dim), dtype=np.float32)
    for i, h in enumerate(hashes):
        out[i] = fresh[fresh_rows[h]] if h in fresh_rows else old_vectors[cached_rows[h]]  # type: ignore[index]
    return out
