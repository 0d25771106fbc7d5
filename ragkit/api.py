"""The public Python API: `RAG`, a façade over the stages (load, chunk, index, retrieve, generate).

    from ragkit import RAG
    rag = RAG.from_pipeline("pipelines/default.yaml", index_dir=".ragkit")
    report = rag.ingest(["data/"])
    answer = rag.query("When did Voyager 1 launch?")
    print(answer.text, [c.source for c in answer.citations])
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, Field

from ragkit.chunkers import make_chunker
from ragkit.components import build
from ragkit.config import LoaderConfig, PipelineConfig, load_pipeline
from ragkit.errors import UserError
from ragkit.generation import Generator, make_generator
from ragkit.generation.citations import warn_if_uncited
from ragkit.indexes.embedder import make_embedder
from ragkit.indexes.filters import MetadataFilter
from ragkit.indexes.generation import generation_pipeline
from ragkit.indexes.layout import IndexStoreError, require_current, writer_lock
from ragkit.indexes.maintenance import (
    DeleteReport,
    IndexStatus,
    VerifyReport,
    check_target,
    delete_documents,
    ids_to_remove,
    index_status,
    verify_index,
)
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.indexes.merge import MergeResult, MergeScheduler, optimize_index
from ragkit.indexes.writer import WriteStats, write_generation
from ragkit.loaders import LoadedFile, discover, load_file, supported_extensions
from ragkit.loaders.duplicates import Duplicate, DuplicateFilter
from ragkit.progress import Progress
from ragkit.protocols import ChatModel, Embedder, Fusion, Generated, IngestExecutor, QueryTransform, Reranker, SparseBackend
from ragkit.retrieval.chat import CachedChatModel
from ragkit.retrieval.fusion import make_fusion
from ragkit.retrieval.rerank import make_reranker
from ragkit.retrieval.search import FilterSpec, Retriever
from ragkit.retrieval.transforms import make_query_transform
from ragkit.schema import Answer, Chunk, Document, Hit, LoadFailure, Trace

DEFAULT_INDEX_DIR = ".ragkit"
FILES = "files loaded"  # the ingest progress counter of files
LOADER_THREADS = 2


def _load_ahead(files: Sequence[Path], config: LoaderConfig) -> Iterator[LoadedFile]:
    """`load_file` of each file, yielded in order, parsed by background threads ahead of the
    consumer. Everything may be loaded ahead: the writer keeps every document until it publishes."""
    if not files:
        return
    pool = ThreadPoolExecutor(max_workers=LOADER_THREADS, thread_name_prefix="ragkit-load")
    try:
        futures = [pool.submit(load_file, path, config) for path in files]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class IngestReport(BaseModel):
    """What an ingest did: files loaded or failed (with reasons), and what changed in the index."""

    files_ok: int = 0
    failures: list[LoadFailure] = Field(default_factory=list)
    skipped: list[LoadFailure] = Field(default_factory=list)
    index: WriteStats
    removed: list[str] = Field(
        default_factory=list, description="ids removed: rows gone from re-loaded files, and pruned documents"
    )
    duplicates: list[Duplicate] = Field(
        default_factory=list, description="files not indexed: same content as another file (ragkit/loaders/duplicates.py)"
    )

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json_dict(self) -> dict:
        """The `ragkit ingest --json` fields (without "index"), also what the server's ingest jobs report."""
        return {
            "files_ok": self.files_ok,
            "files_failed": [f.model_dump() for f in self.failures],
            "files_skipped": [f.model_dump() for f in self.skipped],
            "documents_removed": self.removed,
            "duplicates": [d.model_dump() for d in self.duplicates],
            **self.index.model_dump(),
        }


class QueryStream:
    """A streamed answer: iterate for text deltas as they arrive; `answer()` gives the `Answer`.

    Time spent producing deltas counts as the trace's "generate" stage (time the caller spends
    between deltas does not). `close()` (or leaving a `with` block) stops generation early.
    """

    def __init__(
        self,
        deltas: Iterator[str],
        finish: Callable[[], Generated],
        hits: list[Hit],
        trace: Trace,
        close: Callable[[], None] | None = None,
    ) -> None:
        self._deltas = deltas
        self._finish = finish
        self._close = close
        self.hits = hits
        self.trace = trace
        self._answer: Answer | None = None

    def __iter__(self) -> QueryStream:
        return self

    def __next__(self) -> str:
        with self.trace.stage("generate"):
            return next(self._deltas)

    def answer(self) -> Answer:
        """The final answer (reads whatever is left of the stream first)."""
        if self._answer is None:
            for _ in self:
                pass
            generated = self._finish()
            warn_if_uncited(generated, self.hits, self.trace)
            self._answer = Answer(
                text=generated.text, citations=generated.citations, hits=self.hits, trace=self.trace,
                related=generated.related,
            )
        return self._answer

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def __enter__(self) -> QueryStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RAG:
    """A pipeline bound to an index directory. Thread-safe for concurrent `query` calls."""

    def __init__(self, config: PipelineConfig, index_dir: str | Path = DEFAULT_INDEX_DIR) -> None:
        self.config = config
        self.index_dir = Path(index_dir)
        self._snapshot: IndexSnapshot | None = None
        self._snapshot_lock = threading.Lock()
        # Where retrieval's LLM replies (query transforms, LLM rerank) are cached; None: not cached.
        # Set before the first query (`ragkit eval retrieval` does, so re-runs skip the LLM).
        self.llm_cache: Path | None = None

    @classmethod
    def from_pipeline(cls, path: str | Path, index_dir: str | Path = DEFAULT_INDEX_DIR) -> RAG:
        """A pipeline from YAML (see `pipelines/`), bound to `index_dir`."""
        return cls(load_pipeline(path), index_dir)

    @classmethod
    def open(cls, index_dir: str | Path = DEFAULT_INDEX_DIR) -> RAG:
        """An existing index with the pipeline it was built with."""
        index_dir = Path(index_dir)
        manifest = require_current(index_dir)
        return cls(generation_pipeline(index_dir, manifest), index_dir)

    # --- components, built once and shared by ingest and query ---

    @cached_property
    def embedder(self) -> Embedder:
        return make_embedder(self.config.dense.embedder)

    @cached_property
    def sparse_backend(self) -> SparseBackend:
        backend: SparseBackend = build("sparse_index", self.config.sparse)
        return backend

    @property
    def analyzer(self) -> Callable[[str], list[str]]:
        """The sparse index's analyzer (what BM25 and the extractive generator tokenize with)."""
        return self.sparse_backend.analyzer

    @cached_property
    def generator(self) -> Generator:
        # The extractive generator reuses the sentences (and their vectors) stored at ingest.
        return make_generator(
            self.config.generator, self.embedder, self.analyzer, sentences=lambda: self.snapshot().sentences
        )

    @cached_property
    def chat_model(self) -> ChatModel | None:
        """The generator's LLM, shared by query transforms and the LLM reranker (per-call
        overrides: their own reply budgets); replies are cached when `llm_cache` is set."""
        chat = self.generator.chat_model
        if chat is not None and self.llm_cache is not None:
            return CachedChatModel(chat, self.llm_cache)
        return chat

    @cached_property
    def fusion(self) -> Fusion:
        return make_fusion(self.config.retrieval.fusion)

    @cached_property
    def reranker(self) -> Reranker:
        rerank = self.config.retrieval.rerank
        return make_reranker(rerank, self.chat_model if rerank.uses_chat_model else None)

    @cached_property
    def query_transform(self) -> QueryTransform:
        transform = self.config.retrieval.query_transform
        return make_query_transform(transform, self.chat_model if transform.uses_chat_model else None)

    # --- ingest ---

    def ingest(
        self,
        paths: Sequence[str | Path],
        progress: Progress | None = None,
        prune: bool = False,
        executor: IngestExecutor | None = None,
    ) -> IngestReport:
        """Load, chunk, embed and index `paths` (files or directories) into a new generation.

        Files that fail are reported in the result with their reason; the others are indexed.
        `executor` (e.g. `ragkit.executors.ray_data.RayExecutor`) loads, chunks and embeds
        elsewhere first; the commit is the same local single writer either way.
        Unchanged documents are skipped; changed ones replace their own chunks (rows that vanished
        from a re-loaded JSONL/CSV file are removed). With `prune`, documents whose file under one
        of `paths` no longer exists are removed too; a file that exists but failed is kept.
        """
        for path in paths:  # "" would mean "." (and, with prune, every relative source)
            check_target(path, "ingest path")
        progress = progress or Progress("ingest")
        progress.set_phase("finding files")
        found = discover(paths, self.config.loader)
        if not found.files and not found.failures and not prune:
            skipped = f"; {len(found.skipped)} file(s) of unsupported types skipped" if found.skipped else ""
            raise UserError(
                f"nothing to ingest: no supported files under {', '.join(str(p) for p in paths)}"
                f"{skipped} (supported: {', '.join(supported_extensions())}; see loader.include/exclude)"
            )
        progress.counter(FILES, "files", total=len(found.files))
        failures = list(found.failures)
        documents: list[Document] = []
        files_ok = 0
        removed: list[str] = []
        duplicates = DuplicateFilter(found.files)  # same content from two paths: indexed once
        chunker, embedder = make_chunker(self.config.chunker), self.embedder
        loads: Iterable[LoadedFile] | None = None
        if executor is not None:
            progress.set_phase("loading, chunking and embedding on the executor")
            prepared = executor.prepare(found.files, self.index_dir, self.config, chunker, embedder)
            loads, chunker, embedder = prepared.loaded, prepared.chunker, prepared.embedder

        def loaded_documents() -> Iterator[Document]:
            # Files are parsed by background threads, in order, while the writer chunks and
            # encodes the documents already loaded (parsing overlaps encoding).
            nonlocal files_ok
            for loaded in loads if loads is not None else _load_ahead(found.files, self.config.loader):
                documents.extend(loaded.documents)
                failures.extend(loaded.failures)
                files_ok += bool(loaded.documents)
                progress.advance(FILES, 1, failed=int(not loaded.documents and bool(loaded.failures)))
                yield from duplicates.filter(loaded.documents)
            progress.finish(FILES)
            yield from duplicates.finish()

        def to_remove() -> list[str]:  # called by the writer once every file is loaded
            removed.extend(ids_to_remove(self.index_dir, documents, failures, paths, prune))
            return removed + [d.source for d in duplicates.duplicates]  # indexed by an earlier ingest

        with writer_lock(self.index_dir):
            stats = write_generation(
                self.index_dir, self.config, loaded_documents(), chunker, embedder, progress, delete_ids=to_remove
            )
        if stats.published:
            self.merges.request()
        return IngestReport(
            files_ok=files_ok,
            failures=failures + stats.failures,
            skipped=list(found.skipped),
            index=stats,
            removed=removed,
            duplicates=duplicates.duplicates,
        )

    def ingest_documents(
        self, documents: Iterable[Document], progress: Progress | None = None
    ) -> WriteStats:
        """Index already-loaded documents (e.g. rows of an eval corpus) by their ids.

        Same incremental rules as `ingest`: unchanged documents cost nothing.
        """
        chunker = make_chunker(self.config.chunker)
        with writer_lock(self.index_dir):
            stats = write_generation(self.index_dir, self.config, documents, chunker, self.embedder, progress)
        if stats.published:
            self.merges.request()
        return stats

    # --- maintenance ---

    def delete(self, sources: Sequence[str | Path] = (), all_documents: bool = False) -> DeleteReport:
        """Remove documents by source path, document id (`rows.jsonl#7`) or directory (written
        with a trailing `/`: `data/archive/`); `all_documents=True` removes every document.

        Publishes a new generation (no model is loaded: deleting never embeds); targets that name
        no document are listed in `DeleteReport.unmatched`. An empty target, a directory without
        its trailing `/` and `./` or `/` raise `TargetError` (nothing is deleted).
        """
        report = delete_documents(self.index_dir, sources, all_documents)
        if report.published:
            self.merges.request()
        return report

    @cached_property
    def merges(self) -> MergeScheduler:
        """Merges segments in the background after this RAG's commits (`segments` settings)."""
        return MergeScheduler(self.index_dir, lambda: self.config.segments)

    def wait_for_merges(self, timeout: float | None = None) -> bool:
        """Block until background merges are done; False if `timeout` seconds passed first."""
        return self.merges.wait(timeout)

    def optimize(self, max_segments: int = 1, progress: Progress | None = None) -> list[MergeResult]:
        """Merge the index down to `max_segments` segments, purging deleted rows (`ragkit
        optimize`); readers keep being served meanwhile. Upgrades an index written before
        segments. Returns the merges done."""
        self.merges.wait()
        return optimize_index(self.index_dir, max_segments, progress)

    def status(self) -> IndexStatus:
        """Counts, generation and on-disk size of the published index."""
        return index_status(self.index_dir)

    def verify(self, sample: int = 16) -> VerifyReport:
        """Check that store, dense and sparse index agree chunk for chunk (see `verify_index`);
        `sample` chunks are re-embedded with this pipeline's model (0: skip that check)."""
        return verify_index(self.index_dir, self.embedder if sample else None, sample)

    # --- query ---

    def snapshot(self) -> IndexSnapshot:
        """The current generation, reopened when a writer has published a newer one."""
        with self._snapshot_lock:
            current = require_current(self.index_dir)  # says so when a first ingest is still running
            if self._snapshot is None or self._snapshot.manifest.generation != current.generation:
                snapshot = IndexSnapshot.open(self.index_dir)
                if snapshot.pipeline.index_signature() != self.config.index_signature():
                    snapshot.close()
                    raise IndexStoreError(
                        f"index {self.index_dir} was built with different chunker/dense/sparse settings "
                        "than this pipeline; query it with its own pipeline (RAG.open) or re-ingest"
                    )
                self._snapshot = snapshot
            return self._snapshot

    def retriever(self) -> Retriever:
        """The retrieval stages over the current generation (see ragkit.retrieval.search)."""
        return Retriever(
            self.snapshot(), self.embedder, self.config.retrieval, self.fusion, self.query_transform, self.reranker
        )

    def retrieve(
        self,
        question: str,
        top_k: int | None = None,
        trace: Trace | None = None,
        filter: FilterSpec | None = None,
    ) -> list[Hit]:
        """Hits for `question`; `filter` keeps only chunks whose metadata passes it, e.g.
        `{"source": "a.md"}` or `{"page": {"$gte": 3}}` (see `MetadataFilter`)."""
        retriever = self.retriever()  # one snapshot: every stage of this query reads one generation
        trace = trace or Trace()
        trace.generation = retriever.snapshot.manifest.generation
        (result,) = retriever.search([question], trace, top_k, filter=filter)
        return result.hits

    def chunk_context(self, chunk_id: str) -> tuple[Chunk, Document] | None:
        """The chunk a citation names (`Citation.chunk_id`) and its whole document, from the current
        generation (None if it no longer holds that chunk). `document.text[chunk.start:chunk.end]`
        is the cited passage: what a citation viewer highlights."""
        store = self.snapshot().store
        chunk = store.chunk_by_id(chunk_id)
        if chunk is None:
            return None
        document = next(store.documents([chunk.doc_id]), None)
        return None if document is None else (chunk, document)

    def query(self, question: str, top_k: int | None = None, filter: FilterSpec | None = None) -> Answer:
        """Retrieve, rerank and answer `question` with citations; the trace says what happened.
        `filter`: as in `retrieve` (a filter matching nothing gives the no-answer reply)."""
        trace, hits = self._retrieve_for_answer(question, top_k, filter)
        with trace.stage("generate"):
            generated = self.generator.generate(question, hits, trace)
        warn_if_uncited(generated, hits, trace)
        return Answer(
            text=generated.text, citations=generated.citations, hits=hits, trace=trace, related=generated.related
        )

    def query_stream(
        self, question: str, top_k: int | None = None, filter: FilterSpec | None = None
    ) -> QueryStream:
        """Like `query`, but the answer text arrives as it is generated.

        Iterate the result for text deltas, then call `.answer()` for the final `Answer` (citations
        resolved on the whole text, warnings in its trace). Generators that cannot stream (the
        extractive one) yield their whole answer as one delta. Retrieval runs here, and a streaming
        generator sends its request here, so their errors raise before anything is yielded.
        """
        trace, hits = self._retrieve_for_answer(question, top_k, filter)
        with trace.stage("generate"):
            stream = self.generator.generate_stream(question, hits, trace)
        return QueryStream(stream, stream.result, hits, trace, close=stream.close)

    def _retrieve_for_answer(
        self, question: str, top_k: int | None, filter: FilterSpec | None = None
    ) -> tuple[Trace, list[Hit]]:
        if not question.strip():
            raise UserError("question is empty")
        if filter is not None:
            filter = MetadataFilter.parse(filter)  # a bad filter fails before any model is loaded
        trace = Trace()
        if not self.embedder.loaded:  # first query: keep model loading out of the "dense" time
            with trace.stage("load_models"):
                self.embedder.load()
        return trace, self.retrieve(question, top_k, trace, filter=filter)

    def close(self) -> None:
        """Wait for background merges, then release the open generation."""
        if "merges" in self.__dict__:
            self.merges.wait()
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None

    def __enter__(self) -> RAG:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
