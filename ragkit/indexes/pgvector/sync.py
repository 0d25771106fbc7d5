"""The writer's side of pgvector: keep the table in step with the index's generations (the order
of operations and the crash guarantees are in the package docstring)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.indexes.layout import CURRENT_FILE
from ragkit.indexes.pgvector import PgvectorBackendError, PgvectorConfig, location, qualified_table
from ragkit.indexes.pgvector.client import (
    check_structure,
    connect,
    ensure_extension,
    pg_errors,
    statements,
    table_exists,
)
from ragkit.indexes.pgvector.sql import metadata_json

if TYPE_CHECKING:
    import psycopg

    from ragkit.indexes.generation import GenerationView, SegmentView

log = logging.getLogger(__name__)


def generation_dim(generation: GenerationView) -> int | None:
    """The embeddings' dimension (None for a generation without segments)."""
    return int(generation.segments[0].vectors.shape[1]) if generation.segments else None


def lock_key(config: PgvectorConfig) -> int:
    """The advisory lock of a table: a signed 64-bit number from its qualified name."""
    digest = hashlib.sha256(f"ragkit:{qualified_table(config)}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _ids_at_rows(segment: SegmentView, rows: list[int]) -> list[str]:
    ids: list[str] = []
    for begin in range(0, len(rows), 500):  # SQLite's bound-parameter limit
        part = rows[begin : begin + 500]
        marks = ",".join("?" * len(part))
        ids += [i for (i,) in segment.store.db.execute(f"SELECT id FROM chunks WHERE row IN ({marks})", part)]
    return ids


def segment_changes(current: GenerationView, new: GenerationView) -> tuple[set[str], dict[str, tuple[int, dict[str, Any]]]]:
    """(ids of chunks live in `current` but not at their place in `new`: rows newly deleted,
    segments dropped or merged away; id -> (global row in `new`, metadata) of the live rows of
    segments `current` does not have: a commit's new segment, a merge's output)."""
    before = {s.name: s for s in current.segments}
    after = {s.name: s for s in new.segments}
    gone: set[str] = set()
    for name, segment in before.items():
        if name not in after:
            gone.update(i for row, i in segment.store.db.execute("SELECT row, id FROM chunks")
                        if segment.deleted is None or not segment.deleted[row])  # fmt: skip
            continue
        deleted_after = after[name].deleted
        if deleted_after is None:
            continue
        deleted_before = segment.deleted if segment.deleted is not None else np.zeros(segment.chunks, dtype=bool)
        gone.update(_ids_at_rows(segment, np.flatnonzero(deleted_after & ~deleted_before).tolist()))
    fresh: dict[str, tuple[int, dict[str, Any]]] = {}
    for segment in new.segments:
        if segment.name in before:
            continue
        for row, chunk_id, meta in segment.store.chunk_records(None):
            if segment.deleted is None or not segment.deleted[row]:
                fresh[chunk_id] = (segment.base + row, meta)
    return gone, fresh


class PgvectorSync:
    """One writer's connection: the advisory lock is held from `prepare` to `after_publish`
    (or until the process ends: the server releases a dead session's locks)."""

    def __init__(self, index_dir: Path, config: PgvectorConfig, same: bool) -> None:
        self.index_dir = index_dir
        self.owner = str(Path(index_dir).resolve())
        self.config = config
        self.same = same  # the published generation uses this very table
        self.sql = statements(config)
        self.conn: psycopg.Connection[Any] | None = None
        self.uploaded = 0  # vectors sent to the server
        self.copied = 0  # vectors reused inside the server (re-added chunks, new metadata versions)
        self.removed = 0  # chunks marked removed
        self.repaired = 0  # rows deleted, restored or added by reconciliation

    # --- connection and lock -------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        if self.conn is None:
            conn = connect(self.config, "writer", register=False)
            with pg_errors(self.config):
                ensure_extension(conn, self.config)
                self._lock(conn)
                conn.execute(self.sql.create_state())
            self.conn = conn
        return self.conn

    def _lock(self, conn: psycopg.Connection[Any]) -> None:
        key = lock_key(self.config)
        (locked,) = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()  # type: ignore[misc]
        if locked:
            return
        high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
        holder = conn.execute(
            "SELECT a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = %s AND l.objid::bigint = %s",
            (high, low),
        ).fetchone()
        who = f"{holder[0] or 'another session'} from {holder[1] or 'a local socket'}" if holder else "another writer"
        conn.close()
        raise PgvectorBackendError(
            f"table {qualified_table(self.config)} at {location(self.config)} is locked by {who}: "
            "one writer at a time; try again when it has finished"
        )

    def __del__(self) -> None:
        # The protocol has no "abandoned" step: a commit that publishes nothing (no change, or
        # an error after `prepare`) just drops the store. Ending the session releases the lock.
        if self.conn is not None and not self.conn.closed:
            self.conn.close()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(self.config),))
            except Exception:  # closing releases it anyway
                pass
            self.conn.close()
            self.conn = None

    # --- the steps -----------------------------------------------------------------------------

    def prepare(self, current: GenerationView | None) -> None:
        """Connect, lock, and bring the table back to exactly the published generation."""
        conn = self._connect()
        if current is None or not self.same:
            return  # nothing published in this table: before_publish fills it in one transaction
        g = current.generation
        with pg_errors(self.config), conn.transaction():
            if not table_exists(conn, self.config):
                log.warning("table %s is missing: refilling it from the stored vectors", qualified_table(self.config))
                self._create_and_fill(current, g)
                self.repaired += current.store.count_chunks()
            else:
                check_structure(conn, self.config, generation_dim(current))
                self._repair(current)
            self._create_indexes()
            self._record(written=g, published=g, dim=generation_dim(current))

    def before_publish(self, current: GenerationView | None, new: GenerationView) -> None:
        """One transaction: the new generation's rows, invisible to readers of the published one.
        (A merge calls this without `prepare`: the lock is taken here then.)"""
        conn = self._connect()
        G = new.generation
        with pg_errors(self.config), conn.transaction():
            if not self.same or current is None or not table_exists(conn, self.config):
                self._check_owner()
                conn.execute(self.sql.q("DROP TABLE IF EXISTS {t}"))
                self._create_and_fill(new, G)
            else:
                check_structure(conn, self.config, generation_dim(new))
                self._sync(current, new)
            self._create_indexes()
            self._record(written=G, published=None, dim=generation_dim(new))

    def after_publish(self, new: GenerationView) -> None:
        """One transaction: mark `new` published; drop rows no readable generation can see."""
        conn = self._connect()
        try:
            with pg_errors(self.config), conn.transaction():
                # Readers may still hold the previous generation (its files are kept): rows it
                # sees (removed_gen = new) stay.
                conn.execute(
                    self.sql.q("DELETE FROM {t} WHERE removed_gen IS NOT NULL AND removed_gen < %(g)s"),
                    {"g": new.generation},
                )
                self._record(written=new.generation, published=new.generation, dim=generation_dim(new))
        finally:
            self.close()

    # --- helpers ---------------------------------------------------------------------------------

    def _record(self, written: int, published: int | None, dim: int | None) -> None:
        assert self.conn is not None
        self.conn.execute(
            self.sql.q(
                "INSERT INTO {state} (table_name, owner, dim, written_generation, published_generation) "
                "VALUES (%(table)s, %(owner)s, %(dim)s, %(written)s, %(published)s) "
                "ON CONFLICT (table_name) DO UPDATE SET owner = EXCLUDED.owner, dim = EXCLUDED.dim, "
                "written_generation = EXCLUDED.written_generation, "
                "published_generation = COALESCE(EXCLUDED.published_generation, {state}.published_generation), "
                "updated_at = now()"
            ),
            {"table": self.config.table, "owner": self.owner, "dim": dim or 0, "written": written, "published": published},
        )

    def _check_owner(self) -> None:
        """Refuse to replace a table that another live index publishes from."""
        assert self.conn is not None
        row = self.conn.execute(
            self.sql.q("SELECT owner FROM {state} WHERE table_name = %(table)s"), {"table": self.config.table}
        ).fetchone()
        if row is None or row[0] == self.owner:
            return
        other = Path(row[0])
        if (other / CURRENT_FILE).exists() and table_exists(self.conn, self.config):
            raise PgvectorBackendError(
                f"table {qualified_table(self.config)} at {location(self.config)} holds the vectors of the index "
                f"at {other}; set dense.backend.table to another name for this index"
            )

    def _create_and_fill(self, generation: GenerationView, tag: int) -> None:
        """A new table holding `generation`'s chunks (tagged `tag`); indexes built after the load
        (much faster than inserting into a built HNSW graph)."""
        assert self.conn is not None
        dim = generation_dim(generation)
        if dim is None:  # nothing was ever written: no dimension to create the column with
            raise PgvectorBackendError(f"generation {generation.generation} has no segments: nothing to store in {qualified_table(self.config)}")
        self.conn.execute(self.sql.create_table(dim))
        self._copy(generation, generation.store.chunk_records(), tag)

    def _create_indexes(self) -> None:
        assert self.conn is not None
        self.conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (self.config.maintenance_work_mem,))
        for statement in self.sql.create_indexes(self.config.hnsw.m, self.config.hnsw.ef_construction):
            self.conn.execute(statement)

    def _copy(self, generation: GenerationView, records: Iterable[tuple[int, str, dict[str, Any]]], tag: int) -> None:
        """COPY (binary) rows for `records` (row, chunk id, metadata), vectors from the generation's
        stored embeddings, in batches read from the memory map."""
        from pgvector import HalfVector, Vector
        from psycopg.types.json import Jsonb

        assert self.conn is not None
        make = HalfVector if self.config.vector_type == "halfvec" else Vector
        batch: list[tuple[int, str, dict[str, Any]]] = []

        def flush(copy: Any) -> None:
            vectors = generation.vectors_at([r for r, _, _ in batch])
            for (_, chunk_id, meta), vector in zip(batch, vectors):
                copy.write_row((chunk_id, tag, make(vector), Jsonb(meta, dumps=metadata_json)))
            self.uploaded += len(batch)
            batch.clear()

        with self.conn.cursor().copy(self.sql.copy_rows()) as copy:
            copy.set_types(["text", "int8", self.config.vector_type, "jsonb"])
            for record in records:
                batch.append(record)
                if len(batch) >= self.config.batch_size:
                    flush(copy)
            if batch:
                flush(copy)

    def _visible_ids(self, g: int) -> set[str]:
        assert self.conn is not None
        cursor = self.conn.execute(self.sql.q("SELECT chunk_id FROM {t} WHERE {visible}"), {"g": g})
        return {i for (i,) in cursor}

    def _repair(self, current: GenerationView) -> None:
        """Undo an unpublished writer's rows, then make the visible ids exactly the store's."""
        assert self.conn is not None
        g = current.generation
        undone = self.conn.execute(self.sql.q("DELETE FROM {t} WHERE added_gen > %(g)s"), {"g": g}).rowcount
        restored = self.conn.execute(
            self.sql.q("UPDATE {t} SET removed_gen = NULL WHERE removed_gen > %(g)s"), {"g": g}
        ).rowcount
        self.repaired += max(undone, 0) + max(restored, 0)
        (visible,) = self.conn.execute(self.sql.q("SELECT count(*) FROM {t} WHERE {visible}"), {"g": g}).fetchone()  # type: ignore[misc]
        want = current.store.count_chunks()
        if undone or restored:
            log.warning("pgvector: undid an interrupted writer's changes to %s (%d rows)", qualified_table(self.config), undone + restored)
        if visible == want:
            return
        have, wanted = self._visible_ids(g), current.store.chunk_ids()
        extra, missing = sorted(have - wanted), wanted - have
        log.warning("pgvector: %s held %d chunks, the index %d: repairing", qualified_table(self.config), visible, want)
        for begin in range(0, len(extra), self.config.batch_size):
            self.conn.execute(
                self.sql.q("DELETE FROM {t} WHERE chunk_id = ANY(%(ids)s) AND {visible}"),
                {"ids": extra[begin : begin + self.config.batch_size], "g": g},
            )
        self._copy(current, current.store.chunk_records(missing), g)
        self.repaired += len(extra) + len(missing)

    def _sync(self, current: GenerationView, new: GenerationView) -> None:
        """Rows for `new` (generation G) next to the published generation's. Rows are keyed by
        chunk id, not by segment: a merge (same live chunks, renumbered) changes nothing here.
        Work is proportional to what changed (new segments, segments dropped, rows newly
        deleted), never to the index: no full list of chunk ids is built."""
        assert self.conn is not None
        G = new.generation
        gone, fresh = segment_changes(current, new)
        # A chunk both gone and fresh kept its id: a merge moved it, or a re-ingested document
        # kept its text. Only a changed metadata gives its row a new version.
        kept = sorted(gone & fresh.keys())
        restamped = [(i, fresh[i][1]) for _, i, m in current.store.chunk_records(kept) if fresh[i][1] != m] if kept else []
        dropped = sorted(gone - fresh.keys())
        retire = dropped + [i for i, _ in restamped]
        for begin in range(0, len(retire), self.config.batch_size):
            self.removed += self.conn.execute(
                self.sql.q("UPDATE {t} SET removed_gen = %(G)s WHERE removed_gen IS NULL AND chunk_id = ANY(%(ids)s)"),
                {"G": G, "ids": retire[begin : begin + self.config.batch_size]},
            ).rowcount
        self.removed -= len(restamped)  # a new version is not a removal
        self._copy_inside(restamped, G, "t.removed_gen = %(G)s AND t.added_gen < %(G)s")
        added = sorted(fresh.keys() - gone)
        records = {i: fresh[i] for i in added}
        # A chunk removed earlier and now back (same id: same document, offsets and text, so the
        # same vector): copy its old row's vector inside the server instead of uploading it.
        reused = self._copy_inside([(i, records[i][1]) for i in added], G, "t.removed_gen IS NOT NULL")
        upload = [(records[i][0], i, records[i][1]) for i in added if i not in reused]
        upload.sort()
        self._copy(new, upload, G)

    def _copy_inside(self, items: list[tuple[str, dict[str, Any]]], G: int, source_rows: str) -> set[str]:
        """New rows (tagged G, with the given metadata) whose vectors are copied from existing
        rows of the same chunk id matching `source_rows`. Returns the ids copied."""
        from psycopg import sql

        assert self.conn is not None
        copied: set[str] = set()
        for begin in range(0, len(items), self.config.batch_size):
            part = items[begin : begin + self.config.batch_size]
            cursor = self.conn.execute(
                self.sql.q(
                    "INSERT INTO {t} (chunk_id, added_gen, embedding, metadata) "
                    "SELECT DISTINCT ON (t.chunk_id) t.chunk_id, %(G)s, t.embedding, u.meta FROM {t} t "
                    "JOIN unnest(%(ids)s::text[], %(metas)s::jsonb[]) AS u(id, meta) ON t.chunk_id = u.id "
                    "WHERE {source} ORDER BY t.chunk_id, t.added_gen DESC RETURNING chunk_id",
                    source=sql.SQL(source_rows),
                ),
                {"G": G, "ids": [i for i, _ in part], "metas": [metadata_json(m) for _, m in part]},
            )
            copied.update(i for (i,) in cursor.fetchall())
        self.copied += len(copied)
        return copied
