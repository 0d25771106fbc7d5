"""The chunk/document store: SQLite, one file per index generation.

Documents keep their full text; a chunk keeps only offsets (its text is `document.text[start:end]`,
sliced by SQLite's character-based `substr`), so text is stored once. `chunks.row` is the
position of the chunk in the dense and sparse indexes: rows are always 0..N-1.

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
