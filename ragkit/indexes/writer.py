"""Writing the next index generation from the current one plus new or changed documents.

A document is keyed by its id (the source path, or path#row) and a hash of its content.
Unchanged documents cost nothing; a changed document replaces exactly its own chunks; chunk
text already embedded (anywhere in the previous generation) is never embedded again. Documents
are consumed as a stream: new chunk texts are encoded in large blocks while the producer (the
loader thread of `RAG.ingest`) parses the next files.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

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
from ragkit.indexes.sentences import SentenceWriter, encode_with_sentences
from ragkit.indexes.store import STORE_FILE, ChunkStore, document_hash, text_hash
from ragkit.schema import Chunk, Document

log = logging.getLogger(__name__)


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
    vectors_upserted: int = Field(0, description="records written to an external dense store (chroma)")
    vectors_deleted: int = Field(0, description="records deleted from an external dense store (chroma)")
    timings: dict[str, float] = Field(
        default_factory=dict, description="seconds per writer phase (stream, embed_tail, store, indexes)"
    )


def check_pipeline_compatible(index_dir: Path, manifest: Manifest, config: PipelineConfig) -> PipelineConfig:
    """Chunks and vectors of one index must come from one chunker/embedder/analyzer setup.
    Returns the pipeline the current generation was built with."""
    pipeline = load_pipeline(index_dir / manifest.directory / PIPELINE_FILE)
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
    chunk: Callable[[Document], list[Chunk]],
    embedder: Embedder,
    analyzer: Callable[[str], list[str]],
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
    progress = progress or _Silent()
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    current = read_current(index_dir)
    stored = check_pipeline_compatible(index_dir, current, config) if current is not None else None
    chroma = None
    if config.dense.backend.name == "chroma":
        # Connect (and reconcile what a crashed writer left) before anything is embedded.
        from ragkit.indexes.chroma_dense import ChromaSync

        chroma = ChromaSync.open(index_dir, config.dense.backend, stored.dense.backend if stored else None)
        config = config.model_copy(update={"dense": config.dense.model_copy(update={"backend": chroma.config})})
        chroma.reconcile(index_dir / current.directory if current else None)
    # A different dense backend (faiss type/parameters, chroma) alone is a change: the next
    # generation rebuilds the dense index from the stored vectors, without embedding anything.
    backend_changed = stored is not None and _backend_identity(stored.dense.backend) != _backend_identity(
        config.dense.backend
    )
    generation = current.generation + 1 if current else 1
    stats = WriteStats(generation=generation)

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
        # Embedding cache: every chunk text of the previous generation, before replacing any.
        cached_rows: dict[str, int] = dict(store.db.execute("SELECT text_hash, row FROM chunks"))
        # The extractive generator's sentences, by chunk text hash (ragkit/indexes/sentences.py).
        sentences = SentenceWriter(new_dir, index_dir / current.directory if current else None)
        encoder = _StreamingEncoder(embedder, cached_rows, config.dense.embedder.batch_size, sentences)

        # Stream: a later duplicate id replaces an earlier one (keeping the first one's place).
        progress.start("loading, chunking, embedding", None)
        incoming: dict[str, Document] = {}
        doc_chunks: dict[str, list[Chunk]] = {}  # chunks of the new or changed documents
        for document in documents:
            incoming[document.id] = document
            if old_hashes.get(document.id) == document_hash(document):
                doc_chunks.pop(document.id, None)
                continue
            chunks = chunk(document)
            doc_chunks[document.id] = chunks
            progress.advance(encoder.add(chunks))
        ids = delete_ids() if callable(delete_ids) else delete_ids
        timings["stream"] = time.perf_counter() - clock

        changed = [d for d in incoming.values() if d.id in doc_chunks]
        deleted = sorted({i for i in ids if i in old_hashes and i not in incoming})
        stats.documents_unchanged = len(incoming) - len(changed)
        stats.documents_updated = sum(d.id in old_hashes for d in changed)
        stats.documents_added = len(changed) - stats.documents_updated
        stats.documents_deleted = len(deleted)
        if not changed and not deleted and not backend_changed:
            store.close()
            sentences.close()
            shutil.rmtree(new_dir)
            totals = current.documents if current else 0, current.chunks if current else 0
            stats.documents_total, stats.chunks_total = totals
            stats.generation = current.generation if current else 0
            stats.texts_embedded = encoder.encoded
            if chroma is not None:
                stats.vectors_upserted, stats.vectors_deleted = chroma.upserted, chroma.deleted
            return stats

        replaced = [(d.id,) for d in changed if d.id in old_hashes] + [(i,) for i in deleted]
        refreshed = [d.id for d in changed if d.id in old_hashes]  # chroma: metadata may have changed
        stats.chunks_removed = sum(
            store.db.execute("SELECT count(*) FROM chunks WHERE doc_id = ?", r).fetchone()[0]
            for r in replaced
        )
        store.db.executemany("DELETE FROM chunks WHERE doc_id = ?", replaced)
        store.db.executemany("DELETE FROM documents WHERE id = ?", replaced)
        kept_rows = np.fromiter(
            (row for (row,) in store.db.execute("SELECT row FROM chunks ORDER BY row")), dtype=np.int64
        )
        # Renumber kept chunks to 0..K-1. Ascending order never collides: new row <= old row.
        store.db.executemany(
            "UPDATE chunks SET row = ? WHERE row = ?",
            [(new, old) for new, old in enumerate(kept_rows.tolist()) if new != old],
        )
        store.renumber_chunk_fields(kept_rows)

        new_chunks = [c for d in changed for c in doc_chunks[d.id]]
        del doc_chunks
        stats.chunks_added = len(new_chunks)
        clock = time.perf_counter()
        encoder.finish(progress)
        timings["embed_tail"] = time.perf_counter() - clock
        stats.texts_embedded = encoder.encoded
        all_vectors, stats.embedding_cache_hits = encoder.assemble(new_chunks, kept_rows, old_vectors)
        del encoder
        np.save(new_dir / EMBEDDINGS_FILE, all_vectors)

        clock = time.perf_counter()
        store.add_documents(changed)
        store.add_chunks(enumerate(new_chunks, start=len(kept_rows)))
        store.add_chunk_fields(start_row=len(kept_rows))  # from the stored rows: what filters see
        store.commit()
        del new_chunks, changed, incoming
        timings["store"] = time.perf_counter() - clock
        clock = time.perf_counter()
        sentences.finish({h for (h,) in store.db.execute("SELECT DISTINCT text_hash FROM chunks")})
        timings["sentences"] = time.perf_counter() - clock

        progress.start("indexing", None)
        clock = time.perf_counter()
        if chroma is None:
            FaissDenseIndex.build(all_vectors, config.dense.backend).save(new_dir)  # type: ignore[arg-type]
        timings["dense_index"] = time.perf_counter() - clock
        dim = int(all_vectors.shape[1])
        del all_vectors
        clock = time.perf_counter()
        sparse = config.sparse
        BM25Index.build(
            _TokenizedTexts(store, analyzer), k1=sparse.k1, b=sparse.b, epsilon=sparse.epsilon
        ).save(new_dir / SPARSE_DIR)
        timings["sparse_index"] = time.perf_counter() - clock
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
            dim=dim,
        )
        if chroma is not None:
            clock = time.perf_counter()
            chroma.before_publish(index_dir / current.directory if current else None, new_dir, refreshed)
            timings["chroma_upsert"] = time.perf_counter() - clock
        clock = time.perf_counter()
        publish(index_dir, manifest)
        timings["publish"] = time.perf_counter() - clock
        stats.published = True
        if chroma is not None:
            clock = time.perf_counter()
            try:
                chroma.after_publish(new_dir)
            except Exception as exc:  # published already: never fall into the rollback below
                log.warning("chroma cleanup after publishing %s failed (%s); the next ingest reconciles", new_dir.name, exc)
            timings["chroma_cleanup"] = time.perf_counter() - clock
            stats.vectors_upserted, stats.vectors_deleted = chroma.upserted, chroma.deleted
        stats.timings = {k: round(v, 4) for k, v in timings.items()}
        remove_stale_generations(index_dir, manifest)
        return stats
    except BaseException:
        # Nothing was published: the current generation is untouched. Drop the partial one.
        shutil.rmtree(new_dir, ignore_errors=True)
        raise


def _backend_identity(backend: object) -> object:
    if getattr(backend, "name", None) == "chroma":
        from ragkit.indexes.chroma_dense import backend_identity

        return backend_identity(backend)
    return backend


class _StreamingEncoder:
    """Encodes new chunk texts in large blocks as they arrive; each distinct text once.

    A text already in the previous generation (by content hash) is never encoded. Blocks are
    `batch_size * BLOCK_BATCHES` texts: big enough that the embedder's length sorting within a
    block leaves almost no padding, small enough that encoding starts while loading goes on.
    """

    BLOCK_BATCHES = 32

    def __init__(
        self, embedder: Embedder, cached_rows: dict[str, int], batch_size: int, sentences: SentenceWriter | None = None
    ) -> None:
        self.embedder = embedder
        self.sentences = sentences
        self.cached_rows = cached_rows
        self.block = max(1, batch_size * self.BLOCK_BATCHES)
        self.fresh_rows: dict[str, int] = {}  # text hash -> row in the concatenated blocks
        self.pending: list[str] = []  # texts whose hashes are in fresh_rows but not yet encoded
        self.blocks: list[np.ndarray] = []
        self.encoded = 0

    def add(self, chunks: list[Chunk]) -> int:
        """Queue the chunks' new texts; encode full blocks now. Returns texts encoded."""
        for c in chunks:
            h = text_hash(c.text)
            if h not in self.cached_rows and h not in self.fresh_rows:
                self.fresh_rows[h] = len(self.fresh_rows)
                self.pending.append(c.text)
        done = 0
        while len(self.pending) >= self.block:
            done += self._encode(self.pending[: self.block])
            del self.pending[: self.block]
        return done

    def finish(self, progress: Progress) -> None:
        """Encode what is left, reporting progress per embedder batch group."""
        progress.start("embedding", len(self.pending))
        if self.pending:
            self._encode(self.pending, progress.advance)
            self.pending = []

    def _encode(self, texts: list[str], on_batch: Callable[[int], None] | None = None) -> int:
        vectors, found = encode_with_sentences(self.embedder, texts, on_batch=on_batch)
        if self.sentences is not None:  # written now: a block's sentence vectors are not kept
            self.sentences.add({text_hash(text): data for text, data in found.items()})
        self.blocks.append(np.asarray(vectors, dtype=np.float32))
        self.encoded += len(texts)
        return len(texts)

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


class _TokenizedTexts(Sequence[list[str]]):
    """The store's chunk texts, tokenized on the fly each time they are iterated.

    BM25Index.build makes two passes; re-tokenizing costs far less than holding every token
    of a large index as Python strings at once (~60 bytes each)."""

    def __init__(self, store: ChunkStore, analyzer: Callable[[str], list[str]]) -> None:
        self.store = store
        self.analyzer = analyzer
        self.n = store.count_chunks()

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[list[str]]:
        analyzer = self.analyzer
        for text in self.store.iter_chunk_texts():
            yield analyzer(text)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        raise TypeError("tokenized texts are iterated, not indexed")
