"""The writer's side of chroma: keep the collection in step with the published generation
(the order of operations is in the package docstring)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.indexes.chroma import JOURNAL_FILE, ChromaConfig
from ragkit.indexes.chroma.client import all_ids, chroma_errors, connect, open_collection

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from ragkit.indexes.generation import GenerationView


class ChromaSync:
    """The writer's side: see the module docstring for the order of operations."""

    def __init__(self, index_dir: Path, config: ChromaConfig, collection: Collection, same: bool) -> None:
        self.index_dir = index_dir
        self.config = config
        self.collection = collection
        self.same = same  # the published generation uses this very collection
        self.batch = config.batch_size or 0
        self.old_ids: set[str] = set()
        self.new_ids: set[str] = set()
        self.stale_meta: list[str] = []  # kept chunk ids whose metadata the new generation changes
        self.upserted = 0
        self.deleted = 0

    @classmethod
    def open(cls, index_dir: Path, config: ChromaConfig, same: bool) -> ChromaSync:
        """Connect (fails fast, before anything is embedded) and create the collection if needed."""
        client = connect(config, index_dir)
        collection = open_collection(config, index_dir, create=True, client=client)
        sync = cls(index_dir, config, collection, same)
        with chroma_errors(config):
            if not sync.batch:
                sync.batch = int(client.get_max_batch_size())
        return sync

    @property
    def journal(self) -> Path:
        return self.index_dir / JOURNAL_FILE

    def _write_journal(self, refresh_docs: list[str]) -> None:
        tmp = self.journal.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"collection": self.config.collection, "refresh_docs": refresh_docs}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.journal)

    def _read_journal(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.journal.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:  # torn by a crash: reconcile everything it could have named
            return {"collection": self.config.collection, "refresh_docs": None}

    def _upsert(self, generation: GenerationView, records: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        ids: list[str] = []
        rows: list[int] = []
        metadatas: list[dict[str, Any]] = []

        def flush() -> None:
            if ids:
                vectors = np.ascontiguousarray(generation.vectors_at(rows), dtype=np.float32)
                with chroma_errors(self.config):
                    self.collection.upsert(ids=list(ids), embeddings=vectors, metadatas=list(metadatas))
                self.upserted += len(ids)
                ids.clear()
                rows.clear()
                metadatas.clear()

        for row, chunk_id, metadata in records:
            ids.append(chunk_id)
            rows.append(row)
            metadatas.append(metadata)
            if len(ids) >= self.batch:
                flush()
        flush()

    def _delete(self, ids: Iterable[str]) -> None:
        doomed = sorted(ids)
        for begin in range(0, len(doomed), self.batch):
            with chroma_errors(self.config):
                self.collection.delete(ids=doomed[begin : begin + self.batch])
        self.deleted += len(doomed)

    def reconcile(self, current: GenerationView | None) -> None:
        """Repair what a crashed writer left: needed when its journal is there or the counts differ."""
        journal = self._read_journal()
        if current is None or not self.same:
            return  # nothing published in this collection: before_publish/after_publish sync fully
        current_ids = current.store.chunk_ids()
        with chroma_errors(self.config):
            count = self.collection.count()
        if journal is None and count == len(current_ids):
            return
        with chroma_errors(self.config):
            have = all_ids(self.collection)
        self._delete(have - current_ids)
        refresh: set[str] = current_ids - have
        docs = journal.get("refresh_docs", []) if journal else []
        if docs is None:  # unreadable journal: every record may be stale
            refresh = current_ids
        elif docs:
            refresh |= set(current.store.chunk_ids_of_documents(docs))
        self._upsert(current, current.store.chunk_records(refresh))
        self.journal.unlink(missing_ok=True)

    def before_publish(self, current: GenerationView | None, new: GenerationView) -> None:
        """Upsert the new generation's chunks that the collection lacks for the published one, and
        note which chunks it holds already need new metadata after publishing (a re-ingested
        document whose chunk kept its id, text and place but not its metadata)."""
        self.old_ids = set()
        if self.same and current is not None:
            self.old_ids = current.store.chunk_ids()
        self.new_ids = new.store.chunk_ids()
        # Rows of segments the current generation lacks (a commit's, or a merge's) that chroma
        # already holds under the same id: their metadata may differ.
        known = {s.name for s in current.segments} if current is not None else set()
        fresh_ids = {
            chunk_id
            for segment in new.segments
            if segment.name not in known
            for row, chunk_id in segment.store.db.execute("SELECT row, id FROM chunks")
            if segment.deleted is None or not segment.deleted[row]
        }
        kept = sorted(fresh_ids & self.old_ids)
        old_meta = {i: m for _, i, m in current.store.chunk_records(kept)} if current is not None and kept else {}
        self.stale_meta = [i for _, i, m in new.store.chunk_records(kept) if i in old_meta and old_meta[i] != m]
        refresh_docs = sorted({c.doc_id for c in new.store.chunks_by_rows(new.store.rows_of_chunk_ids(self.stale_meta).tolist())})
        self._write_journal(refresh_docs)
        self._upsert(new, new.store.chunk_records(self.new_ids - self.old_ids))

    def after_publish(self, new: GenerationView) -> None:
        """Refresh kept chunks' changed metadata and delete what the new generation dropped."""
        if self.stale_meta:
            self._upsert(new, new.store.chunk_records(self.stale_meta))
        if self.same:
            self._delete(self.old_ids - self.new_ids)
        else:  # the collection may hold anything (an earlier index at this path, a crashed first ingest)
            with chroma_errors(self.config):
                have = all_ids(self.collection)
            self._delete(have - self.new_ids)
        self.journal.unlink(missing_ok=True)
