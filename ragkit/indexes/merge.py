"""Merging segments: a tiered policy, merges built outside the writer lock, `optimize`.

Each commit adds a segment, so an index that takes many small commits collects many small
segments, and every query searches each of them. Merges bound that, Lucene-style:

- **Policy** (`plan_merges`, `SegmentsConfig`): segments are grouped into size tiers (live rows;
  up to `floor_rows` is tier 0, then each tier `per_tier` times larger). A tier holding
  `per_tier` segments is merged into one, as long as the result stays under `max_merged_rows`,
  so an index has at most about `per_tier` segments per tier: O(per_tier * log(N)). A segment
  above tier 0 whose deleted share exceeds `max_deleted_share` is rewritten alone, purging its
  deleted rows (small segments carry theirs until their tier merges).
- **Building** (`write_merged_segment`): the live rows of the sources are copied into a new
  segment (SQLite copies the store rows, vectors are copied blockwise, BM25 postings are
  concatenated without re-analysis, sentences copied), and its dense index is built; nothing is
  embedded. The new directory is reserved under the writer lock (`reserve_segment`), then built
  without it: commits and readers go on meanwhile.
- **Committing** (`_commit_merge`): under the writer lock, the newest generation must still list
  every source (else the merge is dropped); rows deleted in the sources since the merge started
  are carried over as deletions of the merged segment; one new generation replaces the sources
  by the merged segment, published like any commit. A crash at any point leaves the old
  generation (a reserved directory of a dead process is removed by the next writer).

`MergeScheduler` runs merges in a background thread after commits (`RAG` starts it);
`optimize_index` (`ragkit optimize`) merges down to a given number of segments, waiting.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from ragkit.components import build
from ragkit.config import SegmentsConfig
from ragkit.indexes.generation import GenerationView, SegmentView, deletes_file_name, generation_pipeline, write_deletes
from ragkit.indexes.layout import (
    DELETES_DIR,
    EMBEDDINGS_FILE,
    MANIFEST_FILE,
    IndexLocked,
    MERGE_HOLDER,
    IndexNeedsUpgrade,
    Manifest,
    SegmentEntry,
    generation_dir_name,
    publish,
    read_current,
    release_segment,
    remove_stale_generations,
    require_current,
    reserve_segment,
    writer_lock,
)
from ragkit.indexes.sentences import SentenceIndex, SentenceWriter
from ragkit.indexes.store import STORE_FILE, ChunkStore
from ragkit.progress import Progress
from ragkit.protocols import SparseBackend, SparseWriter, VectorStore

log = logging.getLogger(__name__)

# How long a finished merge waits for the writer lock (a commit in progress) before giving up.
COMMIT_WAIT_S = 120.0
_COPY_BLOCK = 65536


class MergeResult(BaseModel):
    merged: list[str] = Field(default_factory=list, description="source segments")
    into: str | None = None
    rows: int = 0
    generation: int | None = None
    dropped: str | None = Field(None, description="why the merge was not published, if it was not")


def tier(rows: int, policy: SegmentsConfig) -> int:
    if rows <= policy.floor_rows:
        return 0
    return 1 + int(math.log(rows / policy.floor_rows, policy.per_tier))


def plan_merges(entries: Sequence[SegmentEntry], policy: SegmentsConfig) -> list[list[str]]:
    """Merges the policy asks for now (each a list of segment names), disjoint."""
    plans: list[list[str]] = []
    used: set[str] = set()
    by_tier: dict[int, list[SegmentEntry]] = {}
    for entry in entries:
        by_tier.setdefault(tier(entry.live_chunks, policy), []).append(entry)
    for level in sorted(by_tier):
        group = sorted(by_tier[level], key=lambda e: e.live_chunks)
        while len(group) >= policy.per_tier:
            chosen: list[SegmentEntry] = []
            total = 0
            for entry in group:
                if len(chosen) == policy.per_tier:
                    break
                if chosen and total + entry.live_chunks > policy.max_merged_rows:
                    break
                chosen.append(entry)
                total += entry.live_chunks
            if len(chosen) < 2:
                break
            plans.append([e.name for e in chosen])
            used.update(e.name for e in chosen)
            group = [e for e in group if e.name not in used]
    for entry in entries:
        # Small segments (the lowest tier) carry their deletions until their tier merges: rewriting
        # one for a deletion would publish a generation per commit on a small index.
        if (
            entry.name not in used
            and entry.chunks > policy.floor_rows
            and entry.deleted_chunks / entry.chunks > policy.max_deleted_share
        ):
            plans.append([entry.name])
            used.add(entry.name)
    return plans


def write_merged_segment(
    parts: Sequence[SegmentView], directory: Path, vector_store: VectorStore, sparse: SparseWriter
) -> SegmentEntry:
    """Write the live rows of `parts`, in order, as a new segment in `directory`."""
    from ragkit.indexes.writer import finish_segment

    live_docs = [np.ones(p.documents, dtype=bool) if p.deleted_documents is None else ~p.deleted_documents for p in parts]
    store = ChunkStore.merged(directory / STORE_FILE, [(p.directory / STORE_FILE, p.live, d) for p, d in zip(parts, live_docs)])
    try:
        rows = sum(p.live_chunks for p in parts)
        documents = sum(int(np.count_nonzero(d)) for d in live_docs)
        dim = next((p.vectors.shape[1] for p in parts if p.chunks), 0)
        vectors = np.lib.format.open_memmap(directory / EMBEDDINGS_FILE, mode="w+", dtype=np.float32, shape=(rows, dim))
        at = 0
        for part in parts:
            live = np.flatnonzero(part.live)
            for begin in range(0, len(live), _COPY_BLOCK):
                block = live[begin : begin + _COPY_BLOCK]
                vectors[at : at + len(block)] = part.vectors[block]
                at += len(block)
        vectors.flush()
        sentences = SentenceWriter(directory)
        source = SentenceIndex.open(p.directory for p in parts)
        try:
            sentences.copy(source, store.live_text_hashes())
        finally:
            source.close()
            sentences.finish()
        view = SegmentView(directory.name, directory, 0, rows, documents, None, None, store)
        vector_store.write_segment(view, vectors)
        sparse.merge_segments(parts, directory)
        del vectors
    finally:
        store.close()
    return finish_segment(directory, rows, documents)


def merge_segments(index_dir: Path, names: Sequence[str], progress: Progress | None = None) -> MergeResult:
    """Merge the named segments of the current generation into one and publish the result.

    Takes the writer lock twice, briefly: to reserve the new segment's directory, and to publish.
    Building happens in between, without it. Returns what was done (`dropped` says why not)."""
    progress = progress or Progress("merge")
    index_dir = Path(index_dir)
    with writer_lock(index_dir, wait_s=COMMIT_WAIT_S, purpose=MERGE_HOLDER):
        manifest = require_current(index_dir)
        directory = reserve_segment(index_dir)
    result = MergeResult(merged=list(names), into=directory.name)
    try:
        pipeline = generation_pipeline(index_dir, manifest)
        vector_store: VectorStore = build("vector_store", pipeline.dense.backend, index_dir=index_dir, stored=pipeline.dense.backend)
        sparse_backend: SparseBackend = build("sparse_index", pipeline.sparse)
        started = GenerationView.open(index_dir, manifest)
        try:
            parts = [s for s in started.segments if s.name in set(names)]
            if len(parts) != len(set(names)):
                result.dropped = "a segment to merge is not in the current generation"
                return result
            progress.set_phase(f"merging {len(parts)} segments ({sum(p.live_chunks for p in parts)} rows)")
            entry = write_merged_segment(parts, directory, vector_store, sparse_backend.writer(started))
            result.rows = entry.chunks
            with writer_lock(index_dir, wait_s=COMMIT_WAIT_S, purpose=MERGE_HOLDER):
                published = _commit_merge(index_dir, manifest, parts, entry, vector_store)
        finally:
            started.close()
        if published is None:
            result.dropped = "another writer changed these segments meanwhile"
        else:
            result.generation = published.generation
        return result
    except IndexLocked as exc:
        result.dropped = str(exc)
        return result
    finally:
        if result.generation is None:
            shutil.rmtree(directory, ignore_errors=True)
        release_segment(directory)


def _commit_merge(
    index_dir: Path, started: Manifest, parts: list[SegmentView], entry: SegmentEntry, vector_store: VectorStore
) -> Manifest | None:
    """Publish a generation where `parts` are replaced by the merged `entry` (writer lock held).
    None when the newest generation no longer lists every source."""
    current = require_current(index_dir)
    positions = {e.name: i for i, e in enumerate(current.segments)}
    if any(p.name not in positions for p in parts):
        return None
    current_view = GenerationView.open(index_dir, current)
    try:
        by_name = {s.name: s for s in current_view.segments}
        # Rows deleted in the sources since the merge read them: deletions of the merged segment.
        deleted = np.zeros(entry.chunks, dtype=bool)
        deleted_docs = np.zeros(entry.documents, dtype=bool)
        row_at = doc_at = 0
        for part in parts:
            now = by_name[part.name]
            live_then = part.live
            if now.deleted is not None:
                newly = now.deleted[live_then]  # over the rows that were copied, in order
                deleted[row_at : row_at + len(newly)] |= newly
            live_docs_then = np.ones(part.documents, dtype=bool) if part.deleted_documents is None else ~part.deleted_documents
            if now.deleted_documents is not None:
                newly_docs = now.deleted_documents[live_docs_then]
                deleted_docs[doc_at : doc_at + len(newly_docs)] |= newly_docs
            row_at += int(np.count_nonzero(live_then))
            doc_at += int(np.count_nonzero(live_docs_then))
        generation = current.generation + 1
        new_dir = index_dir / generation_dir_name(generation)
        if new_dir.exists():
            shutil.rmtree(new_dir)
        new_dir.mkdir(parents=True)
        try:
            for path in (index_dir / current.directory).iterdir():  # the generation's own files
                if path.is_file() and path.name != MANIFEST_FILE:
                    shutil.copyfile(path, new_dir / path.name)
            merged = entry
            if deleted.any() or deleted_docs.any():
                name = deletes_file_name(entry.name)
                write_deletes(new_dir / name, deleted, deleted_docs)
                merged = entry.model_copy(
                    update={
                        "deletes": name,
                        "deleted_chunks": int(np.count_nonzero(deleted)),
                        "deleted_documents": int(np.count_nonzero(deleted_docs)),
                    }
                )
            sources = {p.name for p in parts}
            entries: list[SegmentEntry] = []
            for e in current.segments:
                if e.name in sources:
                    if not any(x.name == merged.name for x in entries):
                        entries.append(merged)  # where the first source was
                    continue
                if e.deletes:
                    (new_dir / DELETES_DIR).mkdir(exist_ok=True)
                    shutil.copyfile(index_dir / current.directory / e.deletes, new_dir / e.deletes)
                entries.append(e)
            manifest = current.model_copy(
                update={"generation": generation, "directory": new_dir.name, "segments": entries, "files": None}
            )
            new_view = GenerationView.open(index_dir, manifest)
            try:
                vector_store.before_publish(current_view, new_view)
                release_segment(index_dir / "segments" / entry.name)
                manifest = publish(index_dir, manifest)
                try:
                    vector_store.after_publish(new_view)
                except Exception as exc:
                    log.warning("vector store cleanup after a merge failed (%s); the next ingest reconciles", exc)
            finally:
                new_view.close()
        except BaseException:
            shutil.rmtree(new_dir, ignore_errors=True)
            raise
    finally:
        current_view.close()
    remove_stale_generations(index_dir, manifest)
    return manifest


def run_policy(index_dir: Path, policy: SegmentsConfig, progress: Progress | None = None, stop: threading.Event | None = None) -> list[MergeResult]:
    """Merge until the policy asks for nothing more (or `stop` is set)."""
    results: list[MergeResult] = []
    while stop is None or not stop.is_set():
        try:
            manifest = read_current(Path(index_dir))
        except IndexNeedsUpgrade:
            return results
        if manifest is None:
            return results
        plans = plan_merges(manifest.segments, policy)
        if not plans:
            return results
        result = merge_segments(index_dir, plans[0], progress)
        results.append(result)
        if result.generation is None:
            return results  # dropped (a concurrent writer): try again after the next commit
    return results


def optimize_index(
    index_dir: Path, max_segments: int = 1, progress: Progress | None = None
) -> list[MergeResult]:
    """Merge the current generation down to at most `max_segments` segments (smallest first),
    purging every deleted row of the segments merged. An index written before segments is
    upgraded first."""
    from ragkit.indexes.upgrade import upgrade_index

    index_dir = Path(index_dir)
    try:
        read_current(index_dir)
    except IndexNeedsUpgrade:
        with writer_lock(index_dir):
            upgrade_index(index_dir)
    results: list[MergeResult] = []
    for _ in range(3):  # a concurrent commit may add a segment meanwhile: try again a little
        manifest = require_current(index_dir)
        entries = manifest.segments
        dirty = [e for e in entries if e.deleted_chunks]
        if len(entries) <= max_segments and not (max_segments == 1 and dirty):
            break
        if len(entries) <= max_segments:
            names = [e.name for e in dirty]
        else:
            ordered = sorted(entries, key=lambda e: e.live_chunks)
            names = [e.name for e in ordered[: len(entries) - max_segments + 1]]
        result = merge_segments(index_dir, names, progress)
        results.append(result)
        if result.generation is None and result.dropped and "locked" in result.dropped:
            raise IndexLocked(result.dropped)
    return results


class MergeScheduler:
    """Runs the merge policy in one background thread per index, after commits. `wait()` blocks
    until it is idle (RAG.close and the CLI call it); errors are logged, never raised: a failed
    merge leaves the index as it was."""

    def __init__(self, index_dir: Path, policy: Callable[[], SegmentsConfig]) -> None:
        self.index_dir = Path(index_dir)
        self.policy = policy
        self._thread: threading.Thread | None = None
        self._again = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.results: list[MergeResult] = []
        self.progress = Progress("merge")

    def request(self) -> None:
        """Merge now if the policy asks for it (in the background)."""
        policy = self.policy()
        if not policy.background:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._again = True
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ragkit-merge", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.results += run_policy(self.index_dir, self.policy(), self.progress, self._stop)
            except Exception as exc:  # never surfaces in a query or an ingest
                log.warning("background merge of %s failed: %s", self.index_dir, exc)
            with self._lock:
                if not self._again or self._stop.is_set():
                    self._thread = None
                    return
                self._again = False

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no merge runs; False if `timeout` passed first."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def stop(self) -> None:
        """No new merge starts; one in progress finishes (or is dropped)."""
        self._stop.set()
