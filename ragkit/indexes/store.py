"""The chunk/document store: SQLite, one file per index generation.

Documents keep their full text; a chunk keeps only offsets (its text is `document.text[start:end]`,
sliced by SQLite's character-based `substr`), so text is stored once. `chunks.row` is the
position of the chunk in the dense and sparse indexes: rows are always 0..N-1.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ragkit.schema import Chunk, Document, content_hash

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

    @classmethod
    def create(cls, path: Path) -> ChunkStore:
        db = sqlite3.connect(path)
        db.executescript(_SCHEMA)
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

    # --- reading ---

    def count_documents(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM documents").fetchone()[0])

    def count_chunks(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])

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
