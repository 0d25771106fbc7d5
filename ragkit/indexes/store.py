"""The chunk/document store: SQLite, one file per segment, and `SegmentedStore` over a generation.

Documents keep their full text; a chunk keeps only offsets (its text is `document.text[start:end]`,
sliced by SQLite's character-based `substr`), so text is stored once. In a segment's store
`chunks.row` is the chunk's local row in the segment's dense and sparse indexes (0..n-1) and a
document's position is its rowid - 1 (insertion order): the deletion bitmaps of a generation
address both. `SegmentedStore` answers the same questions over a whole generation, in global
rows (segments concatenated in manifest order), never showing deleted chunks or documents.

`chunk_fields` holds every chunk's flat filterable metadata (`filterable_metadata`) as one
(field, value, row) entry per field, written with the chunks, so a metadata filter becomes a few
indexed range scans in SQLite (`filter_mask`) instead of parsing every chunk's JSON per query.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.indexes.filters import Condition, Logical, MetadataFilter, Scalar, filterable_metadata, value_kind
from ragkit.schema import Chunk, Document, content_hash

log = logging.getLogger(__name__)

STORE_FILE = "store.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    row INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL REFERENCES documents(id),
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text_hash TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE INDEX IF NOT EXISTS chunks_text ON chunks(text_hash);
"""

# `value` has no declared type, so SQLite keeps integers, reals and text exactly as given and never
# converts between them: 3 = 3.0 (numeric comparison), '3' != 3, and every number sorts before
# every text. Bools are stored as 0/1 with is_bool = 1, so they never meet numbers. The primary
# key is the lookup order of `filter_mask` (a WITHOUT ROWID table is its own covering index).
_FIELDS_TABLE = """
CREATE TABLE {name} (
    field TEXT NOT NULL,
    is_bool INTEGER NOT NULL,
    value NOT NULL,
    row INTEGER NOT NULL,
    PRIMARY KEY (field, is_bool, value, row)
) WITHOUT ROWID
"""
_MASK_CACHE = 32  # masks kept per store (1 byte per chunk each)
_IN_BATCH = 500  # values per `IN (...)`: under SQLite's bound-parameter limit

_CHUNK_COLUMNS = (
    'c.row, c.id, c.doc_id, d.source, substr(d.text, c.start + 1, c."end" - c.start), '
    'c.start, c."end", c.metadata'
)


def document_hash(document: Document) -> str:
    """What decides whether a re-ingested document changed (text and metadata)."""
    return content_hash(document.text, json.dumps(document.metadata, sort_keys=True, default=str))


def text_hash(text: str) -> str:
    """Embedding-cache key: identical text is embedded once, wherever it occurs."""
    return content_hash(text, length=32)


class ChunkStore:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.db = connection
        self._masks: OrderedDict[str, np.ndarray] = OrderedDict()
        self._fields_lock = threading.Lock()
        self._fields_ready = False

    @classmethod
    def create(cls, path: Path) -> ChunkStore:
        db = sqlite3.connect(path)
        db.executescript(_SCHEMA)
        db.execute(_FIELDS_TABLE.format(name="chunk_fields"))
        return cls(db)

    @classmethod
    def merged(cls, path: Path, parts: Sequence[tuple[Path, np.ndarray, np.ndarray]]) -> ChunkStore:
        """A new store at `path` holding the live documents and chunks of `parts` ((store file,
        live-chunk mask, live-document mask), in order): chunks renumbered consecutively in
        order, documents in order (so their positions follow too). All in SQLite, no Python rows."""
        store = cls.create(path)
        db = store.db
        offset = 0
        for source, live, live_docs in parts:
            db.commit()
            db.execute("ATTACH DATABASE ? AS src", (str(source),))
            try:
                db.execute("CREATE TEMP TABLE keep_docs (pos INTEGER PRIMARY KEY)")
                db.executemany("INSERT INTO keep_docs VALUES (?)", ((p,) for p in (np.flatnonzero(live_docs) + 1).tolist()))
                db.execute(
                    "INSERT INTO documents (id, source, content_hash, text, metadata) "
                    "SELECT d.id, d.source, d.content_hash, d.text, d.metadata FROM src.documents d "
                    "JOIN keep_docs k ON k.pos = d.rowid ORDER BY d.rowid"
                )
                rows = np.flatnonzero(live)
                db.execute("CREATE TEMP TABLE row_map (old INTEGER PRIMARY KEY, new INTEGER NOT NULL)")
                db.executemany("INSERT INTO row_map VALUES (?, ?)", zip(rows.tolist(), range(offset, offset + len(rows))))
                db.execute(
                    'INSERT INTO chunks (row, id, doc_id, start, "end", text_hash, metadata) '
                    'SELECT m.new, c.id, c.doc_id, c.start, c."end", c.text_hash, c.metadata '
                    "FROM src.chunks c JOIN row_map m ON m.old = c.row ORDER BY m.new"
                )
                db.execute(
                    "INSERT INTO chunk_fields (field, is_bool, value, row) "
                    "SELECT f.field, f.is_bool, f.value, m.new FROM src.chunk_fields f JOIN row_map m ON m.old = f.row"
                )
                db.execute("DROP TABLE temp.keep_docs")
                db.execute("DROP TABLE temp.row_map")
                db.commit()
            finally:
                db.execute("DETACH DATABASE src")
            offset += len(rows)
        return store

    @classmethod
    def open(cls, path: Path, readonly: bool = True) -> ChunkStore:
        if not path.exists():
            raise FileNotFoundError(f"no chunk store at {path}")
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        # check_same_thread=False: read-only snapshots are shared by query threads (API users).
        return cls(sqlite3.connect(uri, uri=True, check_same_thread=False))

    def close(self) -> None:
        self.db.close()

    # --- writing (one transaction per generation, driven by the index writer) ---

    def add_documents(self, documents: Iterable[Document]) -> None:
        self.db.executemany(
            "INSERT INTO documents (id, source, content_hash, text, metadata) VALUES (?, ?, ?, ?, ?)",
            (
                (d.id, d.source, document_hash(d), d.text, json.dumps(d.metadata, default=str))
                for d in documents
            ),
        )

    def add_chunks(self, chunks: Iterable[tuple[int, Chunk]]) -> None:
        self.db.executemany(
            'INSERT INTO chunks (row, id, doc_id, start, "end", text_hash, metadata) '
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (row, c.id, c.doc_id, c.start, c.end, text_hash(c.text), json.dumps(c.metadata, default=str))
                for row, c in chunks
            ),
        )

    def commit(self) -> None:
        self.db.commit()

    def ensure_indexes(self) -> None:
        """Lookup indexes a store written before segments lacks (the writer's upgrade)."""
        self.db.executescript(_SCHEMA)
        if not self.has_chunk_fields():
            self.db.execute(_FIELDS_TABLE.format(name="chunk_fields"))
            self.add_chunk_fields(0)
        self.db.commit()

    def number_documents(self) -> None:
        """Give documents the positions 1..n (rowid) in their current order: a store written
        before segments may have gaps where documents were deleted (the writer's upgrade)."""
        (gaps,) = self.db.execute("SELECT count(*) != coalesce(max(rowid), 0) FROM documents").fetchone()
        if gaps:
            self.db.execute("CREATE TABLE documents_numbered AS SELECT * FROM documents WHERE 0")
            self.db.execute("INSERT INTO documents_numbered SELECT * FROM documents ORDER BY rowid")
            self.db.execute("DROP TABLE documents")
            self.db.executescript(_SCHEMA)
            self.db.execute("INSERT INTO documents SELECT * FROM documents_numbered")
            self.db.execute("DROP TABLE documents_numbered")
            self.db.commit()

    # --- segment lookups (indexed; what a small commit needs from a large index) ---

    def document_positions(self, doc_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        """id -> (position = rowid - 1, content hash) of the given documents this store holds."""
        found: dict[str, tuple[int, str]] = {}
        for begin in range(0, len(doc_ids), _IN_BATCH):
            part = list(doc_ids[begin : begin + _IN_BATCH])
            marks = ",".join("?" * len(part))
            for doc_id, rowid, digest in self.db.execute(
                f"SELECT id, rowid, content_hash FROM documents WHERE id IN ({marks})", part
            ):
                found[doc_id] = (int(rowid) - 1, digest)
        return found

    def rows_of_documents(self, doc_ids: Sequence[str]) -> np.ndarray:
        """Local rows of every chunk of the given documents, ascending."""
        rows: list[int] = []
        for begin in range(0, len(doc_ids), _IN_BATCH):
            part = list(doc_ids[begin : begin + _IN_BATCH])
            marks = ",".join("?" * len(part))
            rows.extend(r for (r,) in self.db.execute(f"SELECT row FROM chunks WHERE doc_id IN ({marks})", part))
        return np.asarray(sorted(rows), dtype=np.int64)

    def rows_of_text_hashes(self, hashes: Sequence[str]) -> dict[str, int]:
        """Chunk-text hash -> a local row holding that text, for the given hashes it holds."""
        found: dict[str, int] = {}
        for begin in range(0, len(hashes), _IN_BATCH):
            part = list(hashes[begin : begin + _IN_BATCH])
            marks = ",".join("?" * len(part))
            found.update(self.db.execute(f"SELECT text_hash, row FROM chunks WHERE text_hash IN ({marks})", part))
        return found

    def document_ids_at(self, positions: Sequence[int]) -> list[str]:
        """Ids of the documents at the given positions (rowid - 1)."""
        out: list[str] = []
        wanted = [int(p) + 1 for p in positions]
        for begin in range(0, len(wanted), _IN_BATCH):
            part = wanted[begin : begin + _IN_BATCH]
            marks = ",".join("?" * len(part))
            out.extend(i for (i,) in self.db.execute(f"SELECT id FROM documents WHERE rowid IN ({marks})", part))
        return out

    def document_count_raw(self) -> int:
        """Documents ever added to this store (positions are 0..n-1)."""
        (last,) = self.db.execute("SELECT max(rowid) FROM documents").fetchone()
        return 0 if last is None else int(last)

    def remove_documents(self, doc_ids: Sequence[str]) -> tuple[int, np.ndarray]:
        """Writer: delete `doc_ids` and their chunks, then renumber the kept chunks to 0..K-1 in
        their old order. Returns (chunks removed, the kept chunks' old rows: new row i was
        `kept[i]`)."""
        replaced = [(i,) for i in doc_ids]
        removed = sum(
            self.db.execute("SELECT count(*) FROM chunks WHERE doc_id = ?", r).fetchone()[0] for r in replaced
        )
        self.db.executemany("DELETE FROM chunks WHERE doc_id = ?", replaced)
        self.db.executemany("DELETE FROM documents WHERE id = ?", replaced)
        kept = np.fromiter((row for (row,) in self.db.execute("SELECT row FROM chunks ORDER BY row")), dtype=np.int64)
        # Ascending order never collides: new row <= old row.
        self.db.executemany(
            "UPDATE chunks SET row = ? WHERE row = ?",
            [(new, old) for new, old in enumerate(kept.tolist()) if new != old],
        )
        self.renumber_chunk_fields(kept)
        return int(removed), kept

    # --- reading ---

    def count_documents(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM documents").fetchone()[0])

    def count_sources(self) -> int:
        """Distinct source files (a JSONL/CSV file holds many documents)."""
        return int(self.db.execute("SELECT count(DISTINCT source) FROM documents").fetchone()[0])

    def document_records(self) -> Iterator[tuple[str, str, str, str, str]]:
        """(id, source, content hash, text, metadata JSON) of every document (for verification)."""
        yield from self.db.execute("SELECT id, source, content_hash, text, metadata FROM documents")

    def chunk_rows(self) -> list[tuple[int, str, str, int, int, str]]:
        """(row, id, doc_id, start, end, text hash) of every chunk, by row (for verification)."""
        return list(self.db.execute('SELECT row, id, doc_id, start, "end", text_hash FROM chunks ORDER BY row'))

    def count_chunks(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def row_count(self) -> int:
        """Rows are 0..N-1, so N is the largest row + 1: an index lookup, not a count."""
        (last,) = self.db.execute("SELECT max(row) FROM chunks").fetchone()
        return 0 if last is None else int(last) + 1

    def text_rows(self) -> dict[str, int]:
        """Chunk-text hash -> a row holding that text (the writer's embedding cache)."""
        return dict(self.db.execute("SELECT text_hash, row FROM chunks"))

    def live_text_hashes(self) -> set[str]:
        """The distinct chunk-text hashes the store holds."""
        return {h for (h,) in self.db.execute("SELECT DISTINCT text_hash FROM chunks")}

    def document_hashes(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT id, content_hash FROM documents"))

    def document_sources(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT id, source FROM documents"))

    def documents(self, ids: Sequence[str] | None = None) -> Iterator[Document]:
        query = "SELECT id, source, text, metadata FROM documents"
        rows = (
            self.db.execute(query + " ORDER BY id")
            if ids is None
            else (r for i in ids for r in self.db.execute(query + " WHERE id = ?", (i,)))
        )
        for doc_id, source, text, metadata in rows:
            yield Document(id=doc_id, source=source, text=text, metadata=json.loads(metadata))

    def chunks_of(self, doc_ids: Iterable[str]) -> Iterator[tuple[int, Chunk, str]]:
        """(row, chunk, text_hash) for every chunk of the given documents, in row order."""
        for doc_id in doc_ids:
            for record in self.db.execute(
                f"SELECT {_CHUNK_COLUMNS}, c.text_hash FROM chunks c JOIN documents d ON d.id = c.doc_id "
                "WHERE c.doc_id = ? ORDER BY c.row",
                (doc_id,),
            ):
                yield record[0], _chunk(record[1:8]), record[8]

    def chunks_by_rows(self, rows: Sequence[int]) -> list[Chunk]:
        """Chunks at the given index rows, in the order asked."""
        if not rows:
            return []
        wanted = [int(r) for r in rows]
        found: dict[int, Chunk] = {}
        texts: dict[str, str] = {}  # each document's text fetched once (see iter_chunk_texts)
        for start in range(0, len(wanted), 500):  # stay under SQLite's bound-parameter limit
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            for row, chunk_id, doc_id, source, begin, end, metadata in self.db.execute(
                'SELECT c.row, c.id, c.doc_id, d.source, c.start, c."end", c.metadata '
                f"FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.row IN ({marks})",
                part,
            ):
                if doc_id not in texts:
                    (texts[doc_id],) = self.db.execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
                found[row] = _chunk((chunk_id, doc_id, source, texts[doc_id][begin:end], begin, end, metadata))
        missing = [r for r in wanted if r not in found]
        if missing:
            raise LookupError(f"index rows {missing[:5]} have no chunk in the store: index is inconsistent")
        return [found[r] for r in wanted]

    def chunk_by_id(self, chunk_id: str) -> Chunk | None:
        """The chunk with this id (as cited: `Citation.chunk_id`), or None if this generation lacks it."""
        record = self.db.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id = ?",
            (chunk_id,),
        ).fetchone()
        return None if record is None else _chunk(record[1:])

    def text_hashes(self, rows: Sequence[int]) -> dict[int, str]:
        """The chunk-text hash of each given row (rows with identical text share a hash)."""
        found: dict[int, str] = {}
        wanted = sorted({int(r) for r in rows})
        for start in range(0, len(wanted), 500):  # stay under SQLite's bound-parameter limit
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            found.update(self.db.execute(f"SELECT row, text_hash FROM chunks WHERE row IN ({marks})", part))
        return found

    def doc_ids_by_row(self) -> list[str]:
        """The document id of every chunk row, in row order (maps chunk hits to documents)."""
        return [doc_id for (doc_id,) in self.db.execute("SELECT doc_id FROM chunks ORDER BY row")]

    def iter_chunk_texts(self) -> Iterator[str]:
        """Every chunk's text in row order (for rebuilding the sparse index).

        Sliced in Python from each document fetched once: SQL `substr` per chunk copies and scans
        the whole document for every chunk, quadratic in a large file (50 MB: half an hour).
        """
        doc_id, text = None, ""
        for chunk_doc, start, end in self.db.execute('SELECT doc_id, start, "end" FROM chunks ORDER BY row'):
            if chunk_doc != doc_id:  # a document's chunks are consecutive rows
                doc_id = chunk_doc
                (text,) = self.db.execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
            yield text[start:end]


    # --- chunk ids (what external vector stores key records by) ---

    def chunk_ids(self) -> set[str]:
        return {i for (i,) in self.db.execute("SELECT id FROM chunks")}

    def chunk_ids_of_documents(self, doc_ids: Sequence[str]) -> list[str]:
        ids: list[str] = []
        for begin in range(0, len(doc_ids), _IN_BATCH):
            part = list(doc_ids[begin : begin + _IN_BATCH])
            marks = ",".join("?" * len(part))
            ids.extend(i for (i,) in self.db.execute(f"SELECT id FROM chunks WHERE doc_id IN ({marks})", part))
        return ids

    def chunk_ids_at_rows(self, rows: Sequence[int]) -> list[str]:
        """The chunk ids at `rows`, in row order."""
        found: list[tuple[int, str]] = []
        wanted = sorted({int(r) for r in rows})
        for begin in range(0, len(wanted), _IN_BATCH):
            part = wanted[begin : begin + _IN_BATCH]
            marks = ",".join("?" * len(part))
            found.extend(self.db.execute(f"SELECT row, id FROM chunks WHERE row IN ({marks})", part))
        return [i for _, i in sorted(found)]

    def rows_of_chunk_ids(self, ids: Sequence[str]) -> np.ndarray:
        """Rows of the chunk ids this generation holds (ids it does not hold are skipped)."""
        rows: list[int] = []
        for begin in range(0, len(ids), _IN_BATCH):
            part = list(ids[begin : begin + _IN_BATCH])
            marks = ",".join("?" * len(part))
            rows.extend(r for (r,) in self.db.execute(f"SELECT row FROM chunks WHERE id IN ({marks})", part))
        return np.asarray(rows, dtype=np.int64)

    def chunk_records(self, ids: Iterable[str] | None = None) -> Iterator[tuple[int, str, dict[str, Scalar]]]:
        """(row, chunk id, `filterable_metadata`) of the chunks `ids` (all when None), by row."""
        query = (
            "SELECT c.row, c.id, c.doc_id, d.source, d.metadata, c.metadata "
            "FROM chunks c JOIN documents d ON d.id = c.doc_id"
        )
        if ids is None:
            records = list(self.db.execute(query + " ORDER BY c.row"))
        else:
            wanted = list(ids)
            records = []
            for begin in range(0, len(wanted), _IN_BATCH):
                part = wanted[begin : begin + _IN_BATCH]
                records.extend(self.db.execute(query + f" WHERE c.id IN ({','.join('?' * len(part))})", part))
            records.sort()
        for row, chunk_id, doc_id, source, doc_meta, chunk_meta in records:
            yield row, chunk_id, filterable_metadata(source, doc_id, json.loads(doc_meta), json.loads(chunk_meta))

    # --- filterable metadata ---

    def iter_filterable_metadata(self, start_row: int = 0) -> Iterator[tuple[int, dict[str, Scalar]]]:
        """(row, `filterable_metadata`) of every chunk from `start_row` on, in row order: the flat
        view computed from the stored (JSON) metadata, which is what every backend filters on."""
        doc_id, source, doc_metadata = None, "", {}
        for row, chunk_doc, metadata in self.db.execute(
            "SELECT row, doc_id, metadata FROM chunks WHERE row >= ? ORDER BY row", (start_row,)
        ):
            if chunk_doc != doc_id:  # a document's chunks are consecutive rows: fetch it once
                doc_id = chunk_doc
                source, raw = self.db.execute("SELECT source, metadata FROM documents WHERE id = ?", (doc_id,)).fetchone()
                doc_metadata = json.loads(raw)
            yield row, filterable_metadata(source, chunk_doc, doc_metadata, json.loads(metadata))

    def has_chunk_fields(self) -> bool:
        return self._has_table("chunk_fields", "main")

    def add_chunk_fields(self, start_row: int = 0, table: str = "chunk_fields") -> None:
        """Write the filterable fields of chunks `start_row`.. (their chunks and documents must be
        in the store already)."""
        self.db.executemany(
            f"INSERT INTO {table} (field, is_bool, value, row) VALUES (?, ?, ?, ?)",
            (
                (field, isinstance(value, bool), int(value) if isinstance(value, bool) else value, row)
                for row, fields in self.iter_filterable_metadata(start_row)
                for field, value in fields.items()
            ),
        )

    def renumber_chunk_fields(self, kept_rows: np.ndarray) -> None:
        """Writer: the kept chunks were renumbered (old row `kept_rows[i]` is now row i) and the
        others deleted; make `chunk_fields` follow. A store from before `chunk_fields` existed
        gets the table built from its chunks instead."""
        if not self.has_chunk_fields():
            self.db.execute(_FIELDS_TABLE.format(name="chunk_fields"))
            self.add_chunk_fields(0)
            return
        kept = np.asarray(kept_rows, dtype=np.int64)
        if np.array_equal(kept, np.arange(len(kept))):  # only appended, or removed at the end
            self.db.execute("DELETE FROM chunk_fields WHERE row >= ?", (len(kept),))
            return
        # One join in SQLite (entries come out in key order, so the new table is appended to in
        # order) instead of an UPDATE per entry.
        self.db.execute("CREATE TEMP TABLE row_map (old INTEGER PRIMARY KEY, new INTEGER NOT NULL)")
        self.db.executemany("INSERT INTO row_map VALUES (?, ?)", zip(kept.tolist(), range(len(kept))))
        self.db.execute("DROP TABLE IF EXISTS chunk_fields_next")
        self.db.execute(_FIELDS_TABLE.format(name="chunk_fields_next"))
        self.db.execute(
            "INSERT INTO chunk_fields_next SELECT f.field, f.is_bool, f.value, m.new "
            "FROM chunk_fields f JOIN row_map m ON m.old = f.row"
        )
        self.db.execute("DROP TABLE chunk_fields")
        self.db.execute("ALTER TABLE chunk_fields_next RENAME TO chunk_fields")
        self.db.execute("DROP TABLE temp.row_map")

    def field_counts(self) -> dict[str, dict[str, int]]:
        """Filterable field -> {value kind ('text', 'number', 'bool'): chunks}: what can be filtered."""
        self._require_fields()
        counts: dict[str, dict[str, int]] = {}
        for field, is_bool, kind, n in self.db.execute(
            "SELECT field, is_bool, typeof(value), count(*) FROM chunk_fields GROUP BY field, is_bool, typeof(value)"
        ):
            label = "bool" if is_bool else "text" if kind == "text" else "number"
            counts.setdefault(field, {}).setdefault(label, 0)
            counts[field][label] += n
        return counts

    def filter_mask(self, flt: MetadataFilter | Any) -> np.ndarray:
        """A boolean mask over chunk rows 0..N-1: True where the chunk passes `flt`.

        Each condition is an indexed scan of `chunk_fields`; conditions are combined in numpy.
        Masks are cached per filter (a store is one immutable generation) and read-only.
        """
        flt = MetadataFilter.parse(flt)
        key = flt.key()
        with self._fields_lock:
            cached = self._masks.get(key)
            if cached is not None:
                self._masks.move_to_end(key)
                return cached
        n = self.row_count()
        if flt.root is None:
            mask = np.ones(n, dtype=bool)
        else:
            self._require_fields()
            mask = self._mask(flt.root, n)
        mask.setflags(write=False)
        with self._fields_lock:
            self._masks[key] = mask
            while len(self._masks) > _MASK_CACHE:
                self._masks.popitem(last=False)
        return mask

    def _mask(self, node: Condition | Logical, n: int) -> np.ndarray:
        if isinstance(node, Logical):
            clauses: list[Condition | Logical] = list(node.clauses)
            masks = []
            if node.op == "$and":  # `a <= x < b` as one index range, not two half-open scans
                ranges: dict[str, list[Condition]] = {}
                for c in clauses:
                    if isinstance(c, Condition) and c.op in _RANGE_SQL:
                        ranges.setdefault(c.field, []).append(c)
                for field, bounds in ranges.items():
                    if len(bounds) > 1:
                        clauses = [c for c in clauses if c not in bounds]
                        masks.append(self._rows_mask(_range_sql(field, bounds), n))
            masks += [self._mask(c, n) for c in clauses]
            combine = np.logical_and if node.op == "$and" else np.logical_or
            return combine.reduce(masks) if len(masks) > 1 else masks[0]
        if node.op in ("$ne", "$nin"):  # exactly "not $eq / not $in": missing fields pass
            return ~self._mask(Condition(node.field, "$eq" if node.op == "$ne" else "$in", node.value), n)
        return self._rows_mask(_condition_sql(node), n)

    def _rows_mask(self, statements: Iterable[tuple[str, tuple[Any, ...]]], n: int) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        for sql, params in statements:
            rows = np.fromiter((r for (r,) in self.db.execute(sql, params)), dtype=np.int64)
            mask[rows] = True
        return mask

    def _require_fields(self) -> None:
        """Stores written before `chunk_fields` existed: build it in a temporary table (this
        connection only; the file stays read-only). Re-ingesting persists it."""
        if self._fields_ready:
            return
        with self._fields_lock:
            if self._fields_ready:
                return
            if not self.has_chunk_fields() and not self._has_table("chunk_fields", "temp"):
                log.warning(
                    "this index predates stored filter fields: computing them for %d chunks in memory "
                    "(re-run `ragkit ingest` to store them)",
                    self.count_chunks(),
                )
                self.db.execute(_FIELDS_TABLE.format(name="temp.chunk_fields"))
                self.add_chunk_fields(0, table="temp.chunk_fields")
            self._fields_ready = True

    def _has_table(self, name: str, schema: str) -> bool:
        master = "sqlite_temp_master" if schema == "temp" else "sqlite_master"
        return self.db.execute(f"SELECT 1 FROM {master} WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


_RANGE_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_SELECT_ROWS = "SELECT row FROM chunk_fields WHERE field = ? AND is_bool = ? AND "


def _range_sql(field: str, bounds: list[Condition]) -> list[tuple[str, tuple[Any, ...]]]:
    """Numeric values of `field` within all `bounds`. `value < ''` keeps numbers only (every text
    sorts after every number in SQLite) and keeps the scan an index range."""
    where = " AND ".join(f"value {_RANGE_SQL[b.op]} ?" for b in bounds)
    return [(_SELECT_ROWS + where + " AND value < ''", (field, 0, *(b.value for b in bounds)))]


def _condition_sql(node: Condition) -> list[tuple[str, tuple[Any, ...]]]:
    """SQL statements whose rows together are the chunks matching a positive condition."""
    if node.op in _RANGE_SQL:
        return _range_sql(node.field, [node])
    base = _SELECT_ROWS
    statements = []
    values = node.value if isinstance(node.value, tuple) else (node.value,)
    for is_bool in (0, 1):
        group = [int(v) if is_bool else v for v in values if (value_kind(v) == "bool") == bool(is_bool)]
        for start in range(0, len(group), _IN_BATCH):
            part = group[start : start + _IN_BATCH]
            statements.append((base + f"value IN ({','.join('?' * len(part))})", (node.field, is_bool, *part)))
    return statements


def _chunk(record: Sequence[Any]) -> Chunk:
    chunk_id, doc_id, source, text, start, end, metadata = record
    return Chunk(
        id=chunk_id,
        doc_id=doc_id,
        source=source,
        text=text,
        start=start,
        end=end,
        metadata=json.loads(metadata),
    )


class SegmentedStore:
    """The chunk stores of a generation's segments as one store over global rows.

    `parts` are (store, base row, rows, deleted-chunk mask or None, deleted-document mask or
    None) in manifest order. Deleted chunks and documents are never returned or counted; global
    rows keep counting them (row numbers stay those of the dense and sparse indexes).
    """

    def __init__(self, parts: Sequence[tuple[ChunkStore, int, int, np.ndarray | None, np.ndarray | None]]) -> None:
        self.parts = list(parts)
        self._bases = np.array([base for _, base, _, _, _ in self.parts], dtype=np.int64)
        self._rows = sum(n for _, _, n, _, _ in self.parts)
        self._masks: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        live = np.ones(self._rows, dtype=bool)
        for _, base, n, deleted, _ in self.parts:
            if deleted is not None:
                live[base : base + n] = ~deleted
        live.setflags(write=False)
        self.live = live

    def close(self) -> None:
        for store, *_ in self.parts:
            store.close()

    # --- rows ---

    def row_count(self) -> int:
        """Global rows, deleted ones included (the length of every row mask)."""
        return self._rows

    def _split(self, rows: Sequence[int]) -> dict[int, list[tuple[int, int]]]:
        """part index -> [(position in `rows`, local row)]."""
        out: dict[int, list[tuple[int, int]]] = {}
        array = np.asarray(rows, dtype=np.int64)
        if array.size and (array.min() < 0 or array.max() >= self._rows):
            raise LookupError(f"index rows out of range 0..{self._rows - 1}: index is inconsistent")
        which = np.searchsorted(self._bases, array, side="right") - 1
        for position, (part, row) in enumerate(zip(which.tolist(), array.tolist())):
            out.setdefault(part, []).append((position, row - self.parts[part][1]))
        return out

    def _live_docs(self, part: int) -> Iterator[tuple[int, str]]:
        """(position, id) of the part's live documents."""
        store, _, _, _, deleted_docs = self.parts[part]
        for rowid, doc_id in store.db.execute("SELECT rowid, id FROM documents ORDER BY rowid"):
            if deleted_docs is None or not deleted_docs[rowid - 1]:
                yield rowid - 1, doc_id

    def _doc_live(self, part: int, positions: dict[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
        deleted_docs = self.parts[part][4]
        if deleted_docs is None:
            return positions
        return {i: v for i, v in positions.items() if not deleted_docs[v[0]]}

    # --- counts ---

    def count_chunks(self) -> int:
        return int(np.count_nonzero(self.live))

    def count_documents(self) -> int:
        total = 0
        for store, _, _, _, deleted_docs in self.parts:
            total += store.document_count_raw() - (int(np.count_nonzero(deleted_docs)) if deleted_docs is not None else 0)
        return total

    def count_sources(self) -> int:
        return len(set(self.document_sources().values()))

    # --- documents ---

    def document_hashes(self) -> dict[str, str]:
        """id -> content hash of every live document."""
        out: dict[str, str] = {}
        for i, (store, _, _, _, deleted_docs) in enumerate(self.parts):
            for rowid, doc_id, digest in store.db.execute("SELECT rowid, id, content_hash FROM documents"):
                if deleted_docs is None or not deleted_docs[rowid - 1]:
                    out[doc_id] = digest
        return out

    def document_sources(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for store, _, _, _, deleted_docs in self.parts:
            for rowid, doc_id, source in store.db.execute("SELECT rowid, id, source FROM documents"):
                if deleted_docs is None or not deleted_docs[rowid - 1]:
                    out[doc_id] = source
        return out

    def locate_documents(self, doc_ids: Sequence[str]) -> dict[str, tuple[int, int, str]]:
        """id -> (part, position, content hash) of the given ids among the live documents."""
        out: dict[str, tuple[int, int, str]] = {}
        for part, (store, *_rest) in enumerate(self.parts):
            for doc_id, (position, digest) in self._doc_live(part, store.document_positions(doc_ids)).items():
                out[doc_id] = (part, position, digest)
        return out

    def document_records(self) -> Iterator[tuple[str, str, str, str, str]]:
        """(id, source, content hash, text, metadata JSON) of every live document."""
        for store, _, _, _, deleted_docs in self.parts:
            for rowid, *record in store.db.execute(
                "SELECT rowid, id, source, content_hash, text, metadata FROM documents ORDER BY rowid"
            ):
                if deleted_docs is None or not deleted_docs[rowid - 1]:
                    yield tuple(record)

    def documents(self, ids: Sequence[str] | None = None) -> Iterator[Document]:
        if ids is None:
            found = sorted(
                (doc_id, part) for part in range(len(self.parts)) for _, doc_id in self._live_docs(part)
            )
            for doc_id, part in found:
                yield from self.parts[part][0].documents([doc_id])
            return
        located = self.locate_documents(list(ids))
        for doc_id in ids:
            if doc_id in located:
                yield from self.parts[located[doc_id][0]][0].documents([doc_id])

    # --- chunks ---

    def chunks_of(self, doc_ids: Iterable[str]) -> Iterator[tuple[int, Chunk, str]]:
        """(global row, chunk, text hash) of every live chunk of the given documents, by row."""
        wanted = list(doc_ids)
        located = self.locate_documents(wanted)
        for doc_id in wanted:
            if doc_id not in located:
                continue
            part = located[doc_id][0]
            store, base, *_ = self.parts[part]
            for row, chunk, digest in store.chunks_of([doc_id]):
                if self.live[base + row]:
                    yield base + row, chunk, digest

    def chunks_by_rows(self, rows: Sequence[int]) -> list[Chunk]:
        """Chunks at the given global rows, in the order asked."""
        out: list[Chunk | None] = [None] * len(rows)
        for part, items in self._split(rows).items():
            chunks = self.parts[part][0].chunks_by_rows([local for _, local in items])
            for (position, _), chunk in zip(items, chunks):
                out[position] = chunk
        return out  # type: ignore[return-value]

    def chunk_by_id(self, chunk_id: str) -> Chunk | None:
        rows = self.rows_of_chunk_ids([chunk_id])
        return self.chunks_by_rows(rows.tolist())[0] if rows.size else None

    def text_hashes(self, rows: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for part, items in self._split(rows).items():
            base = self.parts[part][1]
            for local, digest in self.parts[part][0].text_hashes([local for _, local in items]).items():
                out[base + local] = digest
        return out

    def doc_ids_by_row(self) -> list[str]:
        """The document id of every global row (deleted rows too: they never appear in hits)."""
        out: list[str] = []
        for store, *_ in self.parts:
            out.extend(store.doc_ids_by_row())
        return out

    def chunk_rows(self) -> list[tuple[int, str, str, int, int, str]]:
        """(global row, id, doc_id, start, end, text hash) of every live chunk, by row."""
        out = []
        for store, base, _, _, _ in self.parts:
            for row, *rest in store.chunk_rows():
                if self.live[base + row]:
                    out.append((base + row, *rest))
        return out  # type: ignore[return-value]

    def iter_chunk_texts(self) -> Iterator[str]:
        """Every chunk's text in global row order, deleted rows included (as the indexes hold them)."""
        for store, *_ in self.parts:
            yield from store.iter_chunk_texts()

    # --- chunk ids (what external vector stores key records by) ---

    def chunk_ids(self) -> set[str]:
        out: set[str] = set()
        for store, base, _, deleted, _ in self.parts:
            if deleted is None:
                out.update(store.chunk_ids())
            else:
                out.update(i for row, i in store.db.execute("SELECT row, id FROM chunks") if not deleted[row])
        return out

    def chunk_ids_of_documents(self, doc_ids: Sequence[str]) -> list[str]:
        return [chunk.id for _, chunk, _ in self.chunks_of(doc_ids)]

    def chunk_ids_at_rows(self, rows: Sequence[int]) -> list[str]:
        wanted = sorted({int(r) for r in rows})
        return [c.id for c in self.chunks_by_rows(wanted)]

    def iter_filterable_metadata(self) -> Iterator[tuple[int, dict[str, Scalar]]]:
        """(global row, filterable fields) of every live chunk, by row."""
        for store, base, _, deleted, _ in self.parts:
            for row, fields in store.iter_filterable_metadata():
                if deleted is None or not deleted[row]:
                    yield base + row, fields

    def rows_of_chunk_ids(self, ids: Sequence[str]) -> np.ndarray:
        """Global rows of the live chunks with these ids (ids it does not hold are skipped)."""
        rows: list[int] = []
        for store, base, _, deleted, _ in self.parts:
            for local in store.rows_of_chunk_ids(ids).tolist():
                if deleted is None or not deleted[local]:
                    rows.append(base + local)
        return np.asarray(sorted(rows), dtype=np.int64)

    def rows_of_text_hashes(self, hashes: Sequence[str]) -> dict[str, int]:
        """Chunk-text hash -> a live global row holding that text (the writer's embedding cache:
        indexed lookups, so a small commit costs little on a large index)."""
        found: dict[str, int] = {}
        remaining = list(dict.fromkeys(hashes))
        for store, base, _, deleted, _ in self.parts:
            if not remaining:
                break
            if deleted is None:
                hits = store.rows_of_text_hashes(remaining)
            else:  # a deleted row may hold the text while a live one does too: ask for all rows
                hits = {}
                for begin in range(0, len(remaining), _IN_BATCH):
                    part = remaining[begin : begin + _IN_BATCH]
                    marks = ",".join("?" * len(part))
                    for digest, row in store.db.execute(
                        f"SELECT text_hash, row FROM chunks WHERE text_hash IN ({marks})", part
                    ):
                        if not deleted[row]:
                            hits.setdefault(digest, row)
            for digest, local in hits.items():
                found[digest] = base + local
            remaining = [h for h in remaining if h not in found]
        return found

    def live_text_hashes(self) -> set[str]:
        out: set[str] = set()
        for store, _, _, deleted, _ in self.parts:
            if deleted is None:
                out.update(store.live_text_hashes())
            else:
                out.update(h for row, h in store.db.execute("SELECT row, text_hash FROM chunks") if not deleted[row])
        return out

    def chunk_records(self, ids: Iterable[str] | None = None) -> Iterator[tuple[int, str, dict[str, Scalar]]]:
        """(global row, chunk id, `filterable_metadata`) of the live chunks `ids` (all when None), by row."""
        wanted = None if ids is None else list(ids)
        for store, base, _, deleted, _ in self.parts:
            for row, chunk_id, fields in store.chunk_records(wanted):
                if deleted is None or not deleted[row]:
                    yield base + row, chunk_id, fields

    # --- filterable metadata ---

    def has_chunk_fields(self) -> bool:
        return all(store.has_chunk_fields() for store, *_ in self.parts)

    def field_counts(self) -> dict[str, dict[str, int]]:
        """Like `ChunkStore.field_counts`, over every segment (deleted rows included: an upper bound
        until a merge purges them)."""
        counts: dict[str, dict[str, int]] = {}
        for store, *_ in self.parts:
            for field, kinds in store.field_counts().items():
                for kind, n in kinds.items():
                    counts.setdefault(field, {}).setdefault(kind, 0)
                    counts[field][kind] += n
        return counts

    def filter_mask(self, flt: MetadataFilter | Any) -> np.ndarray:
        """A boolean mask over global rows: True where a live chunk passes `flt`; cached per filter."""
        flt = MetadataFilter.parse(flt)
        key = flt.key()
        with self._lock:
            cached = self._masks.get(key)
            if cached is not None:
                self._masks.move_to_end(key)
                return cached
        if flt.root is None:
            mask = self.live.copy()
        else:
            mask = np.concatenate([store.filter_mask(flt) for store, *_ in self.parts]) if self.parts else np.zeros(0, bool)
            mask &= self.live
        mask.setflags(write=False)
        with self._lock:
            self._masks[key] = mask
            while len(self._masks) > _MASK_CACHE:
                self._masks.popitem(last=False)
        return mask
