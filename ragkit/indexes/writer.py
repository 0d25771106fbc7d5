"""Writing the next index generation from the current one plus new or changed documents.

A document is keyed by its id (the source path, or path#row) and a hash of its content.
Unchanged documents cost nothing; a changed document replaces exactly its own chunks; chunk
text already embedded (anywhere in the previous generation) is never embedded again. Documents
are consumed as a stream: new chunk texts are encoded in large blocks while the producer (the
loader thread of `RAG.ingest`) parses the next files.
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from ragkit.components import build
from ragkit.config import PipelineConfig
from ragkit.indexes.generation import GenerationView, generation_pipeline
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
from ragkit.indexes.sentences import SENTENCES_FILE, SentenceWriter, encode_with_sentences
from ragkit.indexes.store import STORE_FILE, ChunkStore, document_hash, text_hash
from ragkit.progress import Progress
from ragkit.protocols import Chunker, Embedder, SparseBackend, VectorStore
from ragkit.schema import Chunk, Document, LoadFailure

log = logging.getLogger(__name__)


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
    vectors_upserted: int = Field(0, description="records written to an external dense store (chroma)")
    vectors_deleted: int = Field(0, description="records deleted from an external dense store (chroma)")
    failures: list[LoadFailure] = Field(
        default_factory=list,
        description="documents that failed while being chunked or embedded (their last indexed version, if any, is kept)",
    )
    timings: dict[str, float] = Field(
        default_factory=dict, description="seconds per writer phase (stream, embed_tail, store, indexes)"
    )


def check_pipeline_compatible(index_dir: Path, manifest: Manifest, config: PipelineConfig) -> PipelineConfig:
    """Chunks and vectors of one index must come from one chunker/embedder/analyzer setup.
    Returns the pipeline the current generation was built with."""
    pipeline = generation_pipeline(index_dir, manifest)
    stored = pipeline.index_signature()
    wanted = config.index_signature()
    if stored != wanted:
        differing = sorted(k for k in wanted if stored.get(k) != wanted.get(k))
        raise IndexStoreError(
            f"index {index_dir} was built with different {', '.join(differing)} settings than "
            "this pipeline; use a new --index directory (or the index's own pipeline)"
        )
    return pipeline


def write_generation(
    index_dir: Path,
    config: PipelineConfig,
    documents: Iterable[Document],
    chunker: Chunker,
    embedder: Embedder,
    progress: Progress | None = None,
    delete_ids: Iterable[str] | Callable[[], Iterable[str]] = (),
) -> WriteStats:
    """Build and publish the next generation: upsert `documents`, remove `delete_ids`.

    `documents` is consumed lazily: each new or changed document is chunked as it arrives and
    its chunk texts are encoded in large blocks while the iterator (e.g. a loader thread) keeps
    producing the next ones, so parsing overlaps encoding. `delete_ids` may be a callable; it is
    called once `documents` is exhausted, so it can depend on what was loaded.

    The caller holds the writer lock. Nothing is published when nothing changes.
    """
    return _Commit(index_dir, config, embedder, progress or Progress("ingest")).run(documents, chunker, delete_ids)


class _Commit:
    """One write of the next generation, phase by phase (each timed in `WriteStats.timings`)."""

    def __init__(self, index_dir: Path, config: PipelineConfig, embedder: Embedder, progress: Progress) -> None:
        self.index_dir = index_dir
        self.progress = progress
        self.embedder = embedder
        self.timings: dict[str, float] = {}
        self.current = read_current(index_dir)
        stored = check_pipeline_compatible(index_dir, self.current, config) if self.current is not None else None
        stored_backend = stored.dense.backend if stored is not None else None
        self.vector_store: VectorStore = build("vector_store", config.dense.backend, index_dir=index_dir, stored=stored_backend)
        # The store may settle parts of its config (chroma: the collection name); those are saved.
        self.config = config.model_copy(
            update={"dense": config.dense.model_copy(update={"backend": self.vector_store.config})}
        )
        # A different dense backend (faiss type/parameters, chroma) alone is a change: the next
        # generation rebuilds the dense index from the stored vectors, without embedding anything.
        self.backend_changed = stored_backend is not None and (
            build("vector_store", stored_backend, index_dir=index_dir, stored=stored_backend).identity()
            != self.vector_store.identity()
        )
        self.sparse: SparseBackend = build("sparse_index", config.sparse)
        self.generation = self.current.generation + 1 if self.current else 1
        self.stats = WriteStats(generation=self.generation)
        self.new_dir = index_dir / generation_dir_name(self.generation)
        self.writing = self.new_dir / STORE_FILE  # what is being written now: named if the disk fills up
        self.sentences: SentenceWriter | None = None  # opened once the new generation's directory exists

    @contextmanager
    def _phase(self, name: str, shown: str | None = None) -> Iterator[None]:
        if shown:
            self.progress.set_phase(shown)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - started, 4)

    def run(
        self,
        documents: Iterable[Document],
        chunker: Chunker,
        delete_ids: Iterable[str] | Callable[[], Iterable[str]],
    ) -> WriteStats:
        current_view = self._view(self.current)
        try:
            with self._phase("prepare"):
                # Connect (and repair what a crashed writer left) before anything is embedded.
                self.vector_store.prepare(current_view)
            if self.new_dir.exists():  # an unpublished leftover of a crashed writer
                shutil.rmtree(self.new_dir)
            self.new_dir.mkdir(parents=True)
            try:
                return self._write(current_view, documents, chunker, delete_ids)
            except BaseException as exc:
                # Nothing was published: the current generation is untouched. Drop the partial one.
                if self.sentences is not None:
                    self.sentences.close()
                shutil.rmtree(self.new_dir, ignore_errors=True)
                if _disk_full(exc):
                    serving = (
                        f"generation {self.current.generation}" if self.current else "nothing yet (no generation was published)"
                    )
                    raise DiskFull(
                        f"no space left on device while writing {self.writing}; the index still serves {serving}. "
                        "Free some space and run the command again"
                    ) from exc
                raise
        finally:
            if current_view is not None:
                current_view.close()

    def _store_stats(self) -> None:
        counts = self.vector_store.stats()
        self.stats.vectors_upserted = counts.get("vectors_upserted", 0)
        self.stats.vectors_deleted = counts.get("vectors_deleted", 0)

    def _view(self, manifest: Manifest | None) -> GenerationView | None:
        if manifest is None:
            return None
        return GenerationView.open(self.index_dir, self.index_dir / manifest.directory, manifest.generation)

    def _write(
        self,
        current_view: GenerationView | None,
        documents: Iterable[Document],
        chunker: Chunker,
        delete_ids: Iterable[str] | Callable[[], Iterable[str]],
    ) -> WriteStats:
        stats, new_dir = self.stats, self.new_dir
        if current_view is None:
            store, old_hashes, old_vectors = ChunkStore.create(new_dir / STORE_FILE), {}, None
        else:
            shutil.copyfile(current_view.directory / STORE_FILE, new_dir / STORE_FILE)
            store = ChunkStore.open(new_dir / STORE_FILE, readonly=False)
            old_hashes = store.document_hashes()
            old_vectors = current_view.vectors
        # Embedding cache: every chunk text of the previous generation, before replacing any.
        # The extractive generator's sentences, by chunk text hash (ragkit/indexes/sentences.py).
        self.sentences = sentences = SentenceWriter(new_dir, current_view.directory if current_view else None)
        encoder = _StreamingEncoder(
            self.embedder, store.text_rows(), self.config.dense.embedder.batch_size, self.progress, sentences
        )

        with self._phase("stream", "loading, chunking and embedding"):
            incoming, doc_chunks, failed = self._stream(documents, chunker, old_hashes, encoder)
            ids = delete_ids() if callable(delete_ids) else delete_ids
        with self._phase("embed_tail", "embedding"):
            encoder.finish()
        for doc_id, chunks in list(doc_chunks.items()):  # documents with a text the embedder refused
            reasons = {encoder.failed[h] for h in (text_hash(c.text) for c in chunks) if h in encoder.failed}
            if reasons:
                del doc_chunks[doc_id]
                failed[doc_id] = f"cannot be embedded ({'; '.join(sorted(reasons))})"
        stats.failures = [LoadFailure(path=doc_id, reason=reason) for doc_id, reason in failed.items()]

        changed = [d for d in incoming.values() if d.id in doc_chunks]
        deleted = sorted({i for i in ids if i in old_hashes and i not in incoming})
        stats.documents_unchanged = len(incoming) - len(changed) - len(failed)
        stats.documents_updated = sum(d.id in old_hashes for d in changed)
        stats.documents_added = len(changed) - stats.documents_updated
        stats.documents_deleted = len(deleted)
        stats.texts_embedded = encoder.encoded
        if not changed and not deleted and not self.backend_changed:
            store.close()
            sentences.close()
            shutil.rmtree(new_dir)
            totals = (self.current.documents, self.current.chunks) if self.current else (0, 0)
            stats.documents_total, stats.chunks_total = totals
            stats.generation = self.current.generation if self.current else 0
            self._store_stats()
            stats.timings = self.timings
            return stats

        replaced = [d.id for d in changed if d.id in old_hashes] + deleted
        refreshed = [d.id for d in changed if d.id in old_hashes]  # their metadata may have changed
        with self._phase("store", "writing the store"):
            stats.chunks_removed, kept_rows = store.remove_documents(replaced)
            new_chunks = [c for d in changed for c in doc_chunks[d.id]]
            del doc_chunks
            stats.chunks_added = len(new_chunks)
            all_vectors, stats.embedding_cache_hits = encoder.assemble(new_chunks, kept_rows, old_vectors)
            del encoder
            self.writing = new_dir / EMBEDDINGS_FILE
            np.save(self.writing, all_vectors)
            self.writing = new_dir / STORE_FILE
            store.add_documents(changed)
            store.add_chunks(enumerate(new_chunks, start=len(kept_rows)))
            store.add_chunk_fields(start_row=len(kept_rows))  # from the stored rows: what filters see
            store.commit()
            del new_chunks, changed, incoming
        with self._phase("sentences", "storing sentences"):
            self.writing = new_dir / SENTENCES_FILE
            sentences.finish(store.live_text_hashes())
        new_view = GenerationView(self.index_dir, new_dir, self.generation, store)
        try:
            return self._index_and_publish(current_view, new_view, all_vectors, refreshed)
        finally:
            new_view.close()

    def _stream(
        self,
        documents: Iterable[Document],
        chunker: Chunker,
        old_hashes: dict[str, str],
        encoder: _StreamingEncoder,
    ) -> tuple[dict[str, Document], dict[str, list[Chunk]], dict[str, str]]:
        """Chunk each new or changed document as it arrives and queue its texts for encoding.
        A later duplicate id replaces an earlier one (keeping the first one's place)."""
        incoming: dict[str, Document] = {}
        doc_chunks: dict[str, list[Chunk]] = {}  # chunks of the new or changed documents
        failed: dict[str, str] = {}  # document id -> why it failed (it keeps its indexed version)
        for document in documents:
            incoming[document.id] = document
            failed.pop(document.id, None)
            try:
                if old_hashes.get(document.id) == document_hash(document):
                    doc_chunks.pop(document.id, None)
                    continue
                chunks = chunker.chunk(document)
            except Exception as exc:  # one bad document fails alone, never the run
                doc_chunks.pop(document.id, None)
                failed[document.id] = f"cannot be chunked ({type(exc).__name__}: {exc})"
                continue
            doc_chunks[document.id] = chunks
            encoder.add(chunks)
        return incoming, doc_chunks, failed

    def _index_and_publish(
        self, current_view: GenerationView | None, new_view: GenerationView, vectors: np.ndarray, refreshed: list[str]
    ) -> WriteStats:
        stats, new_dir = self.stats, self.new_dir
        with self._phase("dense_index", "building the dense index"):
            self.writing = new_dir
            self.vector_store.write(new_view, vectors)
        dim = int(vectors.shape[1])
        del vectors
        with self._phase("sparse_index", "building the sparse index"):
            self.writing = new_dir / SPARSE_DIR
            self.sparse.write(_ChunkTexts(new_view.store), new_dir / SPARSE_DIR)
        self.writing = new_dir / PIPELINE_FILE
        self.writing.write_text(self.config.to_yaml(), encoding="utf-8")
        stats.documents_total = new_view.store.count_documents()
        stats.chunks_total = new_view.store.count_chunks()
        manifest = Manifest(
            generation=self.generation,
            directory=new_dir.name,
            documents=stats.documents_total,
            chunks=stats.chunks_total,
            embedding_model=self.config.dense.embedder.model,
            dim=dim,
        )
        with self._phase("before_publish"):
            self.vector_store.before_publish(current_view, new_view, refreshed)
        with self._phase("publish", "publishing"):
            self.writing = self.index_dir / "CURRENT"
            manifest = publish(self.index_dir, manifest)
        stats.published = True
        with self._phase("after_publish"):
            try:
                self.vector_store.after_publish(new_view)
            except Exception as exc:  # published already: never fall into the rollback
                log.warning(
                    "vector store cleanup after publishing %s failed (%s); the next ingest reconciles", new_dir.name, exc
                )
        self._store_stats()
        stats.timings = self.timings
        remove_stale_generations(self.index_dir, manifest)
        return stats


class DiskFull(IndexStoreError):
    """The disk filled up while a generation was written (nothing was published)."""


def _disk_full(exc: BaseException) -> bool:
    """Whether `exc` means the disk is full. numpy's writer reports it without an errno
    ("59520 requested and 31712 written"), SQLite as "database or disk is full", faiss in text."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return bool(
        "No space left on device" in text
        or "database or disk is full" in text
        or re.search(r"\d+ requested and \d+ written", text)
    )


EMBEDDED = "chunks embedded"  # the progress counter of texts encoded
# A block of at least this many texts that all fail one by one means the embedder itself is broken
# (the run fails, nothing is published) rather than that many bad documents.
SYSTEMIC_FAILURES = 8


class _StreamingEncoder:
    """Encodes new chunk texts in large blocks as they arrive; each distinct text once.

    A text already in the previous generation (by content hash) is never encoded. Blocks are
    `batch_size * BLOCK_BATCHES` texts: big enough that the embedder's length sorting within a
    block leaves almost no padding, small enough that encoding starts while loading goes on.
    """

    BLOCK_BATCHES = 32

    def __init__(
        self,
        embedder: Embedder,
        cached_rows: dict[str, int],
        batch_size: int,
        progress: Progress,
        sentences: SentenceWriter | None = None,
    ) -> None:
        self.embedder = embedder
        self.progress = progress
        self.sentences = sentences
        progress.counter(EMBEDDED, "chunks", total=0)
        self.cached_rows = cached_rows
        self.block = max(1, batch_size * self.BLOCK_BATCHES)
        self.fresh_rows: dict[str, int] = {}  # text hash -> row in the concatenated blocks
        self.pending: list[str] = []  # texts whose hashes are in fresh_rows but not yet encoded
        self.blocks: list[np.ndarray] = []
        self.encoded = 0
        self.failed: dict[str, str] = {}  # text hash -> why the embedder refused that text

    def add(self, chunks: list[Chunk]) -> None:
        """Queue the chunks' new texts; encode full blocks now."""
        queued = len(self.pending)
        for c in chunks:
            h = text_hash(c.text)
            if h not in self.cached_rows and h not in self.fresh_rows:
                self.fresh_rows[h] = len(self.fresh_rows)
                self.pending.append(c.text)
        self.progress.add_total(EMBEDDED, len(self.pending) - queued)
        while len(self.pending) >= self.block:
            self._encode(self.pending[: self.block])
            del self.pending[: self.block]

    def finish(self) -> None:
        """Encode what is left."""
        if self.pending:
            self._encode(self.pending)
            self.pending = []
        self.progress.finish(EMBEDDED)

    def _encode(self, texts: list[str]) -> None:
        failed_before = len(self.failed)
        vectors = self._embed_isolating(texts, lambda n: self.progress.advance(EMBEDDED, n))
        if len(texts) >= SYSTEMIC_FAILURES and len(self.failed) - failed_before == len(texts):
            # Every text failed on its own too: the embedder is broken, not the documents.
            first = next(iter(self.failed.values()))
            raise RuntimeError(f"the embedder failed on all {len(texts)} texts of a block ({first})")
        self.blocks.append(vectors)
        self.encoded += len(texts)

    def _embed_isolating(self, texts: list[str], on_batch: Callable[[int], None] | None) -> np.ndarray:
        """Embed `texts`; when the embedder raises, halve the batch until the texts that fail are
        found: they get a zero vector and an entry in `failed` (their documents fail alone)."""
        reported = 0

        def counted(n: int) -> None:
            nonlocal reported
            reported += n
            if on_batch is not None:
                on_batch(n)

        try:
            vectors, found = encode_with_sentences(self.embedder, texts, on_batch=counted)
        except Exception as exc:
            if len(texts) == 1:
                self.failed[text_hash(texts[0])] = f"{type(exc).__name__}: {exc}"
                vectors = np.zeros((1, self.embedder.dim), dtype=np.float32)
            else:
                half = len(texts) // 2  # progress for the retried halves was already counted once
                vectors = np.concatenate(
                    [self._embed_isolating(texts[:half], None), self._embed_isolating(texts[half:], None)]
                )
        else:
            # Outside the `try`: a failure to store sentences (e.g. disk full) is the run's error,
            # not a text the embedder refused (retrying halves would re-embed everything).
            if self.sentences is not None:  # written now: a block's sentence vectors are not kept
                self.sentences.add({text_hash(text): data for text, data in found.items()})
            vectors = np.asarray(vectors, dtype=np.float32)
        if on_batch is not None and reported < len(texts):
            on_batch(len(texts) - reported)
        return vectors

    def assemble(
        self, chunks: list[Chunk], kept_rows: np.ndarray, old_vectors: np.ndarray | None
    ) -> tuple[np.ndarray, int]:
        """(kept old rows' vectors followed by `chunks`' vectors, how many came from the cache)."""
        if self.blocks:
            dim = self.blocks[0].shape[1]
        elif old_vectors is not None:
            dim = old_vectors.shape[1]
        else:
            dim = self.embedder.dim
        n_kept = len(kept_rows)
        out = np.empty((n_kept + len(chunks), dim), dtype=np.float32)
        for begin in range(0, n_kept, 65536):  # blockwise from the memory map: no full copy
            end = min(n_kept, begin + 65536)
            out[begin:end] = old_vectors[kept_rows[begin:end]]  # type: ignore[index]
        hashes = [text_hash(c.text) for c in chunks]
        fresh = np.array([self.fresh_rows.get(h, -1) for h in hashes], dtype=np.int64)
        cached = np.flatnonzero(fresh < 0)
        if cached.size:
            rows = np.array([self.cached_rows[hashes[i]] for i in cached.tolist()], dtype=np.int64)
            out[n_kept + cached] = old_vectors[rows]  # type: ignore[index]
        offset = 0
        for block in self.blocks:
            inside = np.flatnonzero((fresh >= offset) & (fresh < offset + len(block)))
            out[n_kept + inside] = block[fresh[inside] - offset]
            offset += len(block)
        self.blocks = []
        return out, int(cached.size)


class _ChunkTexts(Sequence[str]):
    """The store's chunk texts in row order, read anew each time they are iterated."""

    def __init__(self, store: ChunkStore) -> None:
        self.store = store
        self.n = store.count_chunks()

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[str]:
        return self.store.iter_chunk_texts()

    def __getitem__(self, i: Any) -> Any:
        raise TypeError("chunk texts are iterated, not indexed")
