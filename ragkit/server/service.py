"""The RAG behind the server: one `RAG` per process (models loaded once), a bounded pool of query
workers, one writer at a time, and the conversions every front end (REST, OpenAI, MCP) shares.

Everything goes through the public `RAG` API. Queries run on worker threads (`workers`, default one
per core) and wait in a bounded queue (`max_queue`; beyond it: 503 busy). A query reads exactly one
published generation (`RAG.retrieve` takes one snapshot per query), so an ingest that publishes
while queries run never mixes generations inside an answer; `Trace.generation` says which one
answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import anyio

from ragkit.api import RAG
from ragkit.indexes.embedder import single_torch_thread
from ragkit.indexes.filters import MetadataFilter
from ragkit.indexes.layout import IndexNotFound
from ragkit.schema import Answer, Chunk, Document, Hit, Trace
from ragkit.server.errors import ApiError, describe_exception
from ragkit.server.jobs import Job, JobProgress, JobRunner
from ragkit.server.metrics import Metrics
from ragkit.server.security import allowed_path, store_upload, upload_name
from ragkit.server.settings import ServerSettings

log = logging.getLogger("ragkit.server")
T = TypeVar("T")

DOCUMENT_WINDOW = 50_000  # characters of a document sent around a cited passage (whole if shorter)
CONDENSE_PROMPT = (
    "Rewrite the user's last question as one standalone question that can be understood without "
    "the conversation (resolve pronouns and references from the earlier turns). Reply with the "
    "question only."
)


def parse_filter(raw: dict[str, Any] | None) -> MetadataFilter | None:
    """A request's `filter` (FilterError -> 400 naming the part that is wrong)."""
    return None if raw is None else MetadataFilter.parse(raw)


def hit_json(hit: Hit) -> dict[str, Any]:
    """A hit as in `query --json`, plus where it is (doc_id, offsets, metadata) for `/v1/retrieve`."""
    chunk = hit.chunk
    return {
        "chunk_id": chunk.id,
        "source": chunk.source,
        "score": float(hit.score),
        "text": chunk.text,
        "doc_id": chunk.doc_id,
        "start": chunk.start,
        "end": chunk.end,
        "metadata": chunk.metadata,
    }


def citation_page(chunk: Chunk) -> str:
    pages = chunk.metadata.get("pages") or []
    page = chunk.metadata.get("page")
    return f", pages {pages[0]}-{pages[-1]}" if len(pages) > 1 else (f", page {page}" if page else "")


def sources_markdown(answer: Answer) -> str:
    """The Sources list an OpenAI-compatible answer ends with (empty when nothing is cited)."""
    if not answer.citations:
        return ""
    chunks = {h.chunk.id: h.chunk for h in answer.hits}
    lines = ["", "", "**Sources**", ""]
    for c in answer.citations:
        chunk = chunks.get(c.chunk_id)
        page = citation_page(chunk) if chunk is not None else ""
        lines.append(f"- [{c.n}] {c.source}{page} (chars {c.start}-{c.end})")
    return "\n".join(lines)


class CoreSharing:
    """A query running alone uses every core (torch's intra-op threads, e.g. the extractive
    generator embedding many sentences); a query that starts while another runs switches torch
    to one thread (process-wide, ref-counted: `single_torch_thread`) until it ends, so concurrent
    queries do not fight over the cores.

    Measured with bench/serve.py (separate runs, same machine), POST /v1/query, 2 cores, 2 workers:
    torch's default threads everywhere gave 3.02 req/s alone (p50 316 ms) but 2.45 req/s with 8 clients (oversubscribed);
    one thread everywhere (OMP_NUM_THREADS=1) gave 3.34 req/s with 8 clients but 1.81 req/s alone
    (p50 508 ms); switching by load gave 3.22 req/s alone (p50 300 ms) and 3.35 with 8 clients.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0

    @contextlib.contextmanager
    def query(self) -> Iterator[None]:
        with self._lock:
            self._running += 1
            shared = self._running > 1
        try:
            if shared:
                with single_torch_thread():
                    yield
            else:
                yield
        finally:
            with self._lock:
                self._running -= 1


class RagService:
    def __init__(self, rag: RAG, settings: ServerSettings, metrics: Metrics | None = None) -> None:
        self.rag = rag
        self.settings = settings
        self.metrics = metrics
        self.jobs = JobRunner(settings.max_jobs_kept, on_finish=self._job_finished)
        self._limiter: anyio.CapacityLimiter | None = None
        self._admitted = 0
        self._admit_lock = threading.Lock()
        self.models_loaded = threading.Event()
        self.warmup_error: str | None = None
        self.cores = CoreSharing()

    # --- lifecycle ---

    def warm_up(self) -> None:
        """Load every model the pipeline uses and open the index, once (readiness waits for it)."""
        try:
            self.rag.embedder.load()
            _ = self.rag.reranker, self.rag.generator, self.rag.query_transform
            try:
                self.rag.snapshot()
            except IndexNotFound:
                pass  # an empty server: the first ingest creates the index
            self.models_loaded.set()
        except Exception as exc:  # reported by /readyz and the log
            self.warmup_error = describe_exception(exc)[2]
            log.error("loading the pipeline's models failed: %s", self.warmup_error)

    def readiness(self) -> tuple[bool, str]:
        if self.warmup_error is not None:
            return False, self.warmup_error
        if not self.models_loaded.is_set():
            return False, "loading models"
        try:
            generation = self.rag.snapshot().manifest.generation
        except IndexNotFound:
            return False, f"no index at {self.rag.index_dir} yet: POST /v1/ingest to create it"
        return True, f"generation {generation}"

    def close(self) -> None:
        self.jobs.shutdown()
        self.rag.close()

    # --- the worker pool ---

    def _limiter_now(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # created inside the event loop that uses it
            self._limiter = anyio.CapacityLimiter(self.settings.workers)
        return self._limiter

    def _admit(self) -> None:
        with self._admit_lock:
            if self._admitted >= self.settings.workers + self.settings.max_queue:
                raise ApiError(
                    503, "busy",
                    f"{self._admitted} queries are running or waiting (--workers {self.settings.workers}, "
                    f"--max-queue {self.settings.max_queue}): retry shortly",
                    headers={"Retry-After": "1"},
                )
            self._admitted += 1
            self._gauge()

    def _release(self) -> None:
        with self._admit_lock:
            self._admitted -= 1
            self._gauge()

    def _gauge(self) -> None:
        if self.metrics is not None:
            limiter = self._limiter
            busy = limiter.borrowed_tokens if limiter is not None else 0
            self.metrics.in_flight.set(busy)
            self.metrics.waiting.set(max(0, self._admitted - busy))

    async def run(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`work(*args, **kwargs)` on a query worker thread (503 when the queue is full)."""
        self._admit()
        try:
            return await anyio.to_thread.run_sync(
                functools.partial(self._observed, work, *args, **kwargs), limiter=self._limiter_now()
            )
        finally:
            self._release()

    def _observed(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self._gauge()
        with self.cores.query():
            return work(*args, **kwargs)

    # --- queries ---

    def _record(self, trace: Trace) -> None:
        if self.metrics is not None:
            self.metrics.observe_trace(trace)

    async def query(self, question: str, top_k: int | None, flt: MetadataFilter | None) -> Answer:
        answer = await self.run(self.rag.query, question, top_k=top_k, filter=flt)
        self._record(answer.trace)
        return answer

    async def retrieve(self, question: str, top_k: int | None, flt: MetadataFilter | None) -> tuple[list[Hit], Trace]:
        if not question.strip():
            raise ApiError(422, "invalid_request", "question: must not be empty", "question")

        def work() -> tuple[list[Hit], Trace]:
            trace = Trace()
            return self.rag.retrieve(question, top_k, trace, filter=flt), trace

        hits, trace = await self.run(work)
        self._record(trace)
        return hits, trace

    async def stream(
        self, question: str, top_k: int | None, flt: MetadataFilter | None
    ) -> AsyncIterator[tuple[str, Any]]:
        """Events ("delta", text) ... then ("answer", Answer), or ("error", exception) mid-stream.

        Waits for the first event before returning, so a failure before any text (bad index,
        generator endpoint down, busy) raises here and becomes a plain HTTP error. The answer
        is generated on a worker thread; a client that goes away stops the generation.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def produce() -> None:
            try:
                with self.cores.query(), self.rag.query_stream(question, top_k=top_k, filter=flt) as deltas:
                    for delta in deltas:
                        if stop.is_set():
                            return
                        put("delta", delta)
                    answer = deltas.answer()
                self._record(answer.trace)
                put("answer", answer)
            except BaseException as exc:  # handed to the event loop: an error event or HTTP error
                put("error", exc)
            finally:
                put("end", None)

        self._admit()
        worker = asyncio.ensure_future(anyio.to_thread.run_sync(produce, limiter=self._limiter_now()))
        worker.add_done_callback(lambda _: self._release())
        first = await queue.get()
        if first[0] == "error":
            raise first[1]

        async def events() -> AsyncIterator[tuple[str, Any]]:
            item = first
            try:
                while item[0] != "end":
                    yield item
                    item = await queue.get()
            finally:
                stop.set()

        return events()

    async def chunk_context(self, chunk_id: str) -> dict[str, Any]:
        found = await self.run(self.rag.chunk_context, chunk_id)
        if found is None:
            raise ApiError(
                404, "chunk_not_found",
                f"chunk {chunk_id} is not in the current index generation (re-ingested or deleted since): ask again",
                "chunk_id",
            )
        chunk, document = found
        return passage_json(chunk, document)

    # --- the OpenAI-compatible chat: earlier turns may condense the question ---

    def standalone_question(self, turns: Sequence[tuple[str, str]]) -> tuple[str, str | None]:
        """(question, note): the last user turn, rewritten as a standalone question by the
        pipeline's LLM when there are earlier turns and the generator can chat. With the
        extractive generator, or when the LLM fails, the last user turn as it is (and a note)."""
        question = next(text for role, text in reversed(turns) if role == "user")
        history = turns[:-1] if turns and turns[-1][0] == "user" else turns
        if not any(text.strip() for _, text in history):
            return question, None
        chat = self._condense_model()
        if chat is None:
            return question, None
        conversation = "\n".join(f"{role}: {text}" for role, text in turns)
        try:
            text, _ = chat.complete(
                [{"role": "system", "content": CONDENSE_PROMPT}, {"role": "user", "content": conversation}],
                max_tokens=96,
            )
        except Exception as exc:  # any LLM failure: the plain last question still works
            return question, f"the question was not condensed ({describe_exception(exc)[2]}): asked as written"
        rewritten = text.strip().strip('"').strip()
        if not rewritten:
            return question, "the question was not condensed (empty reply): asked as written"
        return rewritten, f"asked as the standalone question: {rewritten}"

    def _condense_model(self) -> Any:
        """The pipeline's LLM (None for the extractive generator); condensing asks it for 96 tokens."""
        return self.rag.chat_model

    # --- index: status, delete, ingest jobs ---

    async def status(self, verify: bool = False) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            payload = self.rag.status().model_dump()
            if verify:
                payload["verify"] = self.rag.verify().to_json_dict()
            return payload

        return await anyio.to_thread.run_sync(work)  # not a query: never waits behind them

    async def delete(self, sources: list[str]) -> dict[str, Any]:
        self._refuse_if_writing()
        report = await anyio.to_thread.run_sync(self.rag.delete, sources)
        return {"index": str(self.rag.index_dir), **report.model_dump()}

    def _refuse_if_writing(self) -> None:
        running = self.jobs.running
        if running is not None:
            raise ApiError(
                409, "index_locked",
                f"index {self.rag.index_dir} is being written by ingest job {running}: wait for it "
                f"(GET /v1/jobs/{running})",
            )

    def ingest_paths(self, raw_paths: list[str], prune: bool) -> Job:
        paths = [allowed_path(raw, self.settings.allow_roots, i) for i, raw in enumerate(raw_paths)]
        return self._start_job("paths", [str(p) for p in paths], prune, paths)

    def ingest_uploads(self, uploads: Sequence[tuple[str | None, BinaryIO]]) -> Job:
        """Store the uploaded files in the upload directory, then ingest exactly those files."""
        names = [upload_name(name, i) for i, (name, _) in enumerate(uploads)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ApiError(400, "duplicate_upload_name", f"files: {', '.join(duplicates)} uploaded twice", "files")
        self._refuse_if_writing()
        stored = [store_upload(handle, self.settings.uploads, name) for name, (_, handle) in zip(names, uploads)]
        return self._start_job("upload", names, False, stored)

    def _start_job(self, kind: Any, inputs: list[str], prune: bool, paths: list[Path]) -> Job:
        def work(progress: JobProgress) -> dict[str, Any]:
            report = self.rag.ingest(paths, progress=progress, prune=prune)
            return {"index": str(self.rag.index_dir), **report.to_json_dict()}

        def describe(exc: BaseException) -> tuple[str, str]:
            _, code, message = describe_exception(exc)
            return code, message

        self._refuse_if_writing()
        writer = self._external_writer()
        if writer is not None:
            raise ApiError(
                409, "index_locked",
                f"index {self.rag.index_dir} is locked by PID {writer} (another ingest is running); wait for it to finish",
            )
        job = self.jobs.submit(kind, inputs, prune, work, describe)
        if job is None:
            self._refuse_if_writing()
            raise ApiError(409, "index_locked", "another ingest job is writing the index: wait for it")
        return job

    def _external_writer(self) -> int | None:
        try:
            return self.rag.status().writer_pid
        except IndexNotFound:
            return None

    def _job_finished(self, job: Job) -> None:
        if self.metrics is not None:
            self.metrics.jobs.labels(job.state).inc()
        if job.state == "failed" and job.error is not None:
            log.warning("ingest job %s failed: %s", job.id, job.error["message"])


def passage_json(chunk: Chunk, document: Document) -> dict[str, Any]:
    """A cited chunk inside its document: what the web UI's citation viewer shows.

    `document.text` is the whole text, or for a long document a window of it around the passage
    starting at character `document.offset`, so `text[start - offset:end - offset]` is the passage.
    """
    text = document.text
    offset = 0
    if len(text) > DOCUMENT_WINDOW:
        half = max(0, (DOCUMENT_WINDOW - (chunk.end - chunk.start)) // 2)
        offset = max(0, min(chunk.start - half, len(text) - DOCUMENT_WINDOW))
        text = text[offset : offset + DOCUMENT_WINDOW]
    return {
        "chunk_id": chunk.id,
        "doc_id": chunk.doc_id,
        "source": chunk.source,
        "start": chunk.start,
        "end": chunk.end,
        "page": chunk.metadata.get("page"),
        "pages": chunk.metadata.get("pages"),
        "headings": chunk.metadata.get("headings"),
        "text": chunk.text,
        "document": {"text": text, "offset": offset, "length": len(document.text), "title": document.metadata.get("title")},
    }
