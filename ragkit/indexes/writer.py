"""Writing the next index generation: one new segment plus deletion bitmaps, never a rebuild.

A document is keyed by its id (the source path, or path#row) and a hash of its content.
Unchanged documents cost nothing; a changed document's old chunks are marked deleted in the
segment that holds them and its new chunks go into the commit's new segment; chunk text
already embedded (anywhere in the live index) is never embedded again, its vector is copied.
Documents are consumed as a stream: new chunk texts are encoded in large blocks while the
producer (the loader thread of `RAG.ingest`) parses the next files.

What a commit costs grows with the change, not with the index: it looks documents and chunk
texts up by indexed SQL queries, writes one segment sized for the change (store, vectors, dense
and sparse indexes, sentences), one small deletion file per touched segment, the BM25
vocabulary and a manifest (ragkit/indexes/layout.py). Merging small segments is left to
`ragkit.indexes.merge` (in the background or by `ragkit optimize`).
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

import numpy as np
from pydantic import BaseModel, Field

from ragkit.components import build
from ragkit.config import PipelineConfig
from ragkit.indexes.generation import GenerationView, SegmentView, deletes_file_name, generation_pipeline, write_deletes
from ragkit.indexes.layout import (
    EMBEDDINGS_FILE,
    PIPELINE_FILE,
    SEGMENT_FILE,
    SEGMENTS_DIR,
    IndexNeedsUpgrade,
    IndexStoreError,
    Manifest,
    SegmentEntry,
    digest_files,
    fsync_tree,
    generation_dir_name,
    next_segment_number,
    publish,
    read_current,
    remove_stale_generations,
    segment_dir_name,
)
from ragkit.indexes.sentences import SentenceIndex, SentenceWriter, encode_with_sentences
from ragkit.indexes.store import STORE_FILE, ChunkStore, document_hash, text_hash
from ragkit.progress import Progress
from ragkit.protocols import Chunker, Embedder, SparseBackend, SparseWriter, VectorStore
from ragkit.schema import Chunk, Document, LoadFailure

log = logging.getLogger(__name__)

# Incoming documents are looked up in the index (by id) in batches that grow from the first to
# the last size: the first documents reach the embedder at once (encoding overlaps loading), later
# lookups are few and large.
LOOKUP_BATCH_FIRST = 8
LOOKUP_BATCH = 512


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
    segments: int = Field(0, description="segments of the published generation")
    published: bool = False
    vectors_upserted: int = Field(0, description="records written to an external dense store (chroma)")
    vectors_deleted: int = Field(0, description="records deleted from an external dense store (chroma)")
    failures: list[LoadFailure] = Field(
        default_factory=list,
        description="documents that failed while being chunked or embedded (their last indexed version, if any, is kept)",
    )
    timings: dict[str, float] = Field(
        default_factory=dict, description="seconds per writer phase (stream, embed_tail, segment, publish, ...)"
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
    """Commit the next generation: upsert `documents`, remove `delete_ids`.

    `documents` is consumed lazily: each new or changed document is chunked as it arrives and
    its chunk texts are encoded in large blocks while the iterator (e.g. a loader thread) keeps
    producing the next ones, so parsing overlaps encoding. `delete_ids` may be a callable; it is
    called once `documents` is exhausted, so it can depend on what was loaded.

    The caller holds the writer lock. Nothing is published when nothing changes. An index
    written before segments is upgraded first (`ragkit.indexes.upgrade`).
    """
    try:
        read_current(index_dir)
    except IndexNeedsUpgrade:
        from ragkit.indexes.upgrade import upgrade_index

        upgrade_index(index_dir)
    return _Commit(index_dir, config, embedder, progress or Progress("ingest")).run(documents, chunker, delete_ids)


class _Commit:
    """One commit, phase by phase (each timed in `WriteStats.timings`)."""

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
        # A different dense backend (faiss type/parameters, chroma) alone is a change: the commit
        # merges every segment into one written by the new backend, without embedding anything.
        self.backend_changed = stored_backend is not None and (
            build("vector_store", stored_backend, index_dir=index_dir, stored=stored_backend).identity()
            != self.vector_store.identity()
        )
        self.sparse: SparseBackend = build("sparse_index", config.sparse)
        self.generation = self.current.generation + 1 if self.current else 1
        self.stats = WriteStats(generation=self.generation)
        self.new_dir = index_dir / generation_dir_name(self.generation)
        self.segment_dirs: list[Path] = []  # segments this commit creates (removed if it fails)
        self.writing = self.new_dir  # what is being written now: named if the disk fills up
        self.sentences: SentenceWriter | None = None

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
        current_view = GenerationView.open(self.index_dir, self.current) if self.current is not None else None
        try:
            with self._phase("prepare"):
                # Connect (and repair what a crashed writer left) before anything is embedded.
                self.vector_store.prepare(current_view)
                # Leftovers of a crashed writer (unpublished generations and segments) go first.
                if self.current is not None:
                    remove_stale_generations(self.index_dir, self.current)
            if self.new_dir.exists():
                shutil.rmtree(self.new_dir)
            self.new_dir.mkdir(parents=True)
            try:
                return self._write(current_view, documents, chunker, delete_ids)
            except BaseException as exc:
                # Nothing was published: the current generation is untouched. Drop the partial one.
                if self.sentences is not None:
                    self.sentences.close()
                shutil.rmtree(self.new_dir, ignore_errors=True)
                for directory in self.segment_dirs:
                    shutil.rmtree(directory, ignore_errors=True)
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

    def _write(
        self,
        current_view: GenerationView | None,
        documents: Iterable[Document],
        chunker: Chunker,
        delete_ids: Iterable[str] | Callable[[], Iterable[str]],
    ) -> WriteStats:
        stats = self.stats
        lookup = current_view.store.rows_of_text_hashes if current_view is not None else None
        encoder = _StreamingEncoder(self.embedder, lookup, self.config.dense.embedder.batch_size, self.progress)
        # The new segment's sentences are written as its chunks are encoded.
        segment_dir = self._new_segment_dir()
        self.sentences = encoder.sentences = SentenceWriter(segment_dir)

        with self._phase("stream", "loading, chunking and embedding"):
            incoming, located, doc_chunks, failed = self._stream(current_view, documents, chunker, encoder)
            ids = list(delete_ids() if callable(delete_ids) else delete_ids)
        with self._phase("embed_tail", "embedding"):
            encoder.finish()
        for doc_id, chunks in list(doc_chunks.items()):  # documents with a text the embedder refused
            reasons = {encoder.failed[h] for h in (text_hash(c.text) for c in chunks) if h in encoder.failed}
            if reasons:
                del doc_chunks[doc_id]
                failed[doc_id] = f"cannot be embedded ({'; '.join(sorted(reasons))})"
        stats.failures = [LoadFailure(path=doc_id, reason=reason) for doc_id, reason in failed.items()]

        gone = [i for i in dict.fromkeys(ids) if i not in incoming]
        if current_view is not None and gone:
            located.update(current_view.store.locate_documents(gone))
        changed = [d for d in incoming.values() if d.id in doc_chunks]
        deleted = sorted(i for i in gone if i in located)
        stats.documents_unchanged = len(incoming) - len(changed) - len(failed)
        stats.documents_updated = sum(d.id in located for d in changed)
        stats.documents_added = len(changed) - stats.documents_updated
        stats.documents_deleted = len(deleted)
        stats.texts_embedded = encoder.encoded
        if not changed and not deleted and not self.backend_changed:
            self.sentences.close()
            shutil.rmtree(self.new_dir)
            shutil.rmtree(segment_dir)
            self.segment_dirs.remove(segment_dir)
            self.stats.documents_total = self.current.documents if self.current else 0
            self.stats.chunks_total = self.current.chunks if self.current else 0
            stats.segments = len(self.current.segments) if self.current else 0
            stats.generation = self.current.generation if self.current else 0
            self._store_stats()
            stats.timings = self.timings
            return stats

        sparse = self.sparse.writer(current_view)
        entries: list[SegmentEntry] = []
        with self._phase("deletes", "marking replaced chunks deleted"):
            if current_view is not None:
                replaced = [d.id for d in changed if d.id in located] + deleted
                entries, stats.chunks_removed = self._carry_segments(current_view, replaced, located)
        new_chunks = [c for d in changed for c in doc_chunks[d.id]]
        del doc_chunks
        stats.chunks_added = len(new_chunks)
        if new_chunks or changed:
            with self._phase("segment", "writing the new segment"):
                entries.append(
                    self._write_segment(segment_dir, changed, new_chunks, encoder, current_view, sparse)
                )
        else:
            self.sentences.close()
            shutil.rmtree(segment_dir)
            self.segment_dirs.remove(segment_dir)
        del encoder, new_chunks, changed, incoming
        if self.backend_changed and entries:
            from ragkit.indexes.merge import write_merged_segment

            with self._phase("rebuild", "rewriting every segment for the new dense backend"):
                views = _open_entries(self.index_dir, self.new_dir, entries)
                try:
                    target = self._new_segment_dir()
                    entries = [write_merged_segment(views, target, self.vector_store, sparse)]
                finally:
                    for view in views:
                        view.store.close()
        return self._publish(current_view, entries, sparse)

    def _new_segment_dir(self) -> Path:
        directory = self.index_dir / SEGMENTS_DIR / segment_dir_name(next_segment_number(self.index_dir))
        directory.mkdir(parents=True)
        self.segment_dirs.append(directory)
        return directory

    def _stream(
        self,
        current: GenerationView | None,
        documents: Iterable[Document],
        chunker: Chunker,
        encoder: _StreamingEncoder,
    ) -> tuple[dict[str, Document], dict[str, tuple[int, int, str]], dict[str, list[Chunk]], dict[str, str]]:
        """Chunk each new or changed document as it arrives and queue its texts for encoding.
        Documents are looked up in the index in batches (indexed queries, not a full scan). A
        later duplicate id replaces an earlier one (keeping the first one's place)."""
        incoming: dict[str, Document] = {}
        located: dict[str, tuple[int, int, str]] = {}  # id -> (segment, position, content hash) in the index
        doc_chunks: dict[str, list[Chunk]] = {}  # chunks of the new or changed documents
        failed: dict[str, str] = {}  # document id -> why it failed (it keeps its indexed version)
        batch: list[Document] = []

        def flush() -> None:
            if current is not None:
                located.update(current.store.locate_documents([d.id for d in batch if d.id not in located]))
            for document in batch:
                incoming[document.id] = document
                failed.pop(document.id, None)
                try:
                    found = located.get(document.id)
                    if found is not None and found[2] == document_hash(document):
                        doc_chunks.pop(document.id, None)
                        continue
                    chunks = chunker.chunk(document)
                except Exception as exc:  # one bad document fails alone, never the run
                    doc_chunks.pop(document.id, None)
                    failed[document.id] = f"cannot be chunked ({type(exc).__name__}: {exc})"
                    continue
                doc_chunks[document.id] = chunks
                encoder.add(chunks)
            batch.clear()

        size = LOOKUP_BATCH_FIRST
        for document in documents:
            batch.append(document)
            if len(batch) >= size:
                flush()
                size = min(LOOKUP_BATCH, size * 2)
        flush()
        return incoming, located, doc_chunks, failed

    def _carry_segments(
        self, current: GenerationView, replaced: list[str], located: dict[str, tuple[int, int, str]]
    ) -> tuple[list[SegmentEntry], int]:
        """The current segments for the new generation: deletion files carried over, extended
        with the rows of `replaced` documents. A segment left with no live row is dropped."""
        by_segment: dict[int, list[str]] = {}
        for doc_id in replaced:
            by_segment.setdefault(located[doc_id][0], []).append(doc_id)
        assert self.current is not None
        entries = []
        removed = 0
        for part, (segment, entry) in enumerate(zip(current.segments, self.current.segments)):
            ids = by_segment.get(part)
            if not ids:
                if entry.deletes:  # unchanged: the same bitmap, now part of this generation too
                    self.writing = self.new_dir / entry.deletes
                    self.writing.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(current.directory / entry.deletes, self.writing)
                entries.append(entry)
                continue
            deleted = segment.deleted.copy() if segment.deleted is not None else np.zeros(segment.chunks, dtype=bool)
            deleted_docs = (
                segment.deleted_documents.copy() if segment.deleted_documents is not None else np.zeros(segment.documents, dtype=bool)
            )
            rows = segment.store.rows_of_documents(ids)
            removed += int(np.count_nonzero(~deleted[rows]))
            deleted[rows] = True
            deleted_docs[[located[i][1] for i in ids]] = True
            if deleted.all() and deleted_docs.all():
                continue  # nothing live is left: the segment leaves the index
            name = deletes_file_name(entry.name)
            self.writing = self.new_dir / name
            write_deletes(self.writing, deleted, deleted_docs)
            entries.append(
                entry.model_copy(
                    update={
                        "deletes": name,
                        "deleted_chunks": int(np.count_nonzero(deleted)),
                        "deleted_documents": int(np.count_nonzero(deleted_docs)),
                    }
                )
            )
        return entries, removed

    def _write_segment(
        self,
        directory: Path,
        documents: list[Document],
        chunks: list[Chunk],
        encoder: _StreamingEncoder,
        current: GenerationView | None,
        sparse: SparseWriter,
    ) -> SegmentEntry:
        """The commit's new segment: store, vectors, dense index, BM25 postings, sentences."""
        self.writing = directory / STORE_FILE
        store = ChunkStore.create(directory / STORE_FILE)
        try:
            store.add_documents(documents)
            store.add_chunks(enumerate(chunks))
            store.add_chunk_fields(0)  # from the stored rows: what filters see
            store.commit()
            vectors, self.stats.embedding_cache_hits = encoder.assemble(chunks, current)
            self.writing = directory / EMBEDDINGS_FILE
            np.save(self.writing, vectors)
            cached = encoder.cached_hashes()
            if cached and current is not None:  # sentences of reused texts come along
                source = SentenceIndex.open(s.directory for s in current.segments)
                try:
                    assert self.sentences is not None
                    self.sentences.copy(source, cached)
                finally:
                    source.close()
            assert self.sentences is not None
            self.writing = directory
            self.sentences.finish()
            view = SegmentView(directory.name, directory, 0, len(chunks), len(documents), None, None, store)
            self.vector_store.write_segment(view, vectors)
            sparse.write_segment((c.text for c in chunks), directory)
        finally:
            store.close()
        return finish_segment(directory, len(chunks), len(documents))

    def _publish(self, current: GenerationView | None, entries: list[SegmentEntry], sparse: SparseWriter) -> WriteStats:
        stats = self.stats
        with self._phase("publish", "publishing"):
            self.writing = self.new_dir / PIPELINE_FILE
            self.writing.write_text(self.config.to_yaml(), encoding="utf-8")
            self.writing = self.new_dir
            sparse.finish(self.new_dir)
            manifest = Manifest(
                generation=self.generation,
                directory=self.new_dir.name,
                documents=sum(e.live_documents for e in entries),
                chunks=sum(e.live_chunks for e in entries),
                embedding_model=self.config.dense.embedder.model,
                dim=self.embedder.dim,
                segments=entries,
            )
            new_view = GenerationView.open(self.index_dir, manifest)
            try:
                self.vector_store.before_publish(current, new_view)
                self.writing = self.index_dir / "CURRENT"
                manifest = publish(self.index_dir, manifest)
                stats.published = True
                try:
                    self.vector_store.after_publish(new_view)
                except Exception as exc:  # published already: never fall into the rollback
                    log.warning(
                        "vector store cleanup after publishing %s failed (%s); the next ingest reconciles", self.new_dir.name, exc
                    )
            finally:
                new_view.close()
        stats.documents_total, stats.chunks_total = manifest.documents, manifest.chunks
        stats.segments = len(manifest.segments)
        self._store_stats()
        stats.timings = self.timings
        remove_stale_generations(self.index_dir, manifest)
        return stats


def finish_segment(directory: Path, chunks: int, documents: int) -> SegmentEntry:
    """Record a fully written segment's file digests (segment.json) and flush it to disk."""
    files = digest_files(directory, skip=(SEGMENT_FILE,))
    entry = SegmentEntry(name=directory.name, chunks=chunks, documents=documents, files=files)
    (directory / SEGMENT_FILE).write_text(entry.model_dump_json(indent=2), encoding="utf-8")
    fsync_tree(directory)
    return entry


def _open_entries(index_dir: Path, generation_dir: Path, entries: list[SegmentEntry]) -> list[SegmentView]:
    from ragkit.indexes.generation import open_segments

    return open_segments(index_dir, generation_dir, entries)


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

    A text the live index already holds (by content hash, looked up when its block is due) is
    never encoded: its vector is copied. Blocks are `batch_size * BLOCK_BATCHES` texts: big
    enough that the embedder's length sorting within a block leaves almost no padding, small
    enough that encoding starts while loading goes on.
    """

    BLOCK_BATCHES = 32

    def __init__(
        self,
        embedder: Embedder,
        lookup: Callable[[Sequence[str]], dict[str, int]] | None,
        batch_size: int,
        progress: Progress,
    ) -> None:
        self.embedder = embedder
        self.progress = progress
        self.lookup = lookup  # text hashes -> live global rows of the current generation holding them
        self.sentences: SentenceWriter | None = None
        progress.counter(EMBEDDED, "chunks", total=0)
        self.block = max(1, batch_size * self.BLOCK_BATCHES)
        self.seen: set[str] = set()  # text hashes queued, cached or encoded
        self.cached_rows: dict[str, int] = {}  # text hash -> global row of the current generation
        self.fresh_rows: dict[str, int] = {}  # text hash -> row in the concatenated blocks
        self.pending: list[str] = []  # new texts not yet looked up in the embedding cache
        self.queued: list[str] = []  # looked up, not cached: to encode (in full blocks until the end)
        self.blocks: list[np.ndarray] = []
        self.encoded = 0
        self.failed: dict[str, str] = {}  # text hash -> why the embedder refused that text

    def add(self, chunks: list[Chunk]) -> None:
        """Queue the chunks' new texts; encode full blocks now."""
        for c in chunks:
            h = text_hash(c.text)
            if h not in self.seen:
                self.seen.add(h)
                self.pending.append(c.text)
        if len(self.pending) + len(self.queued) >= self.block:
            self._flush()

    def finish(self) -> None:
        """Encode what is left."""
        self._flush(final=True)
        self.progress.finish(EMBEDDED)

    def _flush(self, final: bool = False) -> None:
        texts = self.pending
        self.pending = []
        if texts and self.lookup is not None:  # the embedding cache: one batch of indexed lookups
            hashes = [text_hash(t) for t in texts]
            found = self.lookup(hashes)
            self.cached_rows.update(found)
            texts = [t for t, h in zip(texts, hashes) if h not in found]
        self.progress.add_total(EMBEDDED, len(texts))
        self.queued.extend(texts)
        while self.queued and (len(self.queued) >= self.block or final):
            block = self.queued[: self.block]
            del self.queued[: self.block]
            self._encode(block)

    def _encode(self, texts: list[str]) -> None:
        for t in texts:
            self.fresh_rows[text_hash(t)] = len(self.fresh_rows)
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

    def cached_hashes(self) -> list[str]:
        return list(self.cached_rows)

    def assemble(self, chunks: list[Chunk], current: GenerationView | None) -> tuple[np.ndarray, int]:
        """(`chunks`' vectors in order, how many came from the current generation's vectors)."""
        dim = self.blocks[0].shape[1] if self.blocks else self.embedder.dim
        out = np.empty((len(chunks), dim), dtype=np.float32)
        hashes = [text_hash(c.text) for c in chunks]
        fresh = np.array([self.fresh_rows.get(h, -1) for h in hashes], dtype=np.int64)
        cached = np.flatnonzero(fresh < 0)
        if cached.size:
            assert current is not None
            rows = np.array([self.cached_rows[hashes[i]] for i in cached.tolist()], dtype=np.int64)
            out[cached] = current.vectors_at(rows)
        offset = 0
        for block in self.blocks:
            inside = np.flatnonzero((fresh >= offset) & (fresh < offset + len(block)))
            out[inside] = block[fresh[inside] - offset]
            offset += len(block)
        self.blocks = []
        return out, int(cached.size)
