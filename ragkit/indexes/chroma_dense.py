"""Dense index in a chroma collection: embedded (`PersistentClient`) or a server (`HttpClient`).

One collection per index holds one record per chunk: id = the chunk id (a content hash, stable
across generations), the chunk's vector from `embeddings.npy` (never embedded by chroma: every
call passes `embeddings=`, collections are opened with `embedding_function=None`) and the
chunk's `filterable_metadata`. `embeddings.npy` stays the source of truth, so switching backend
never re-embeds.

Generations and crashes. A generation is published by swapping CURRENT (layout.py); the
collection is shared by all generations, so it is kept in step around that swap:

* before publish: upsert the chunks whose ids the published generation does not have;
* after publish: refresh the metadata of re-ingested chunks whose ids were already there (a
  document's metadata changed, its text did not) and delete the ids the new generation dropped;
* readers map chroma ids to rows through their own generation's store and ignore ids it does
  not hold (over-fetching as needed), so records of an unpublished generation are never seen;
* a journal file (`chroma-sync.json` in the index dir) is written before the collection is
  touched and removed when it is in step again. The next writer that finds it (a crash
  between the two points) reconciles: deletes ids the published store lacks, upserts the ones
  missing and re-sends the journal's documents' metadata.

A crash can therefore leave the collection larger than the published generation, never
smaller, and only for the journal's documents can chroma's metadata (what `where` filters see)
lag the published store, until the next ingest.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.config import CHROMA_AUTH_TOKEN_ENV, ChromaConfig
from ragkit.indexes.filters import filterable_metadata
from ragkit.indexes.layout import EMBEDDINGS_FILE, IndexStoreError
from ragkit.indexes.store import STORE_FILE, ChunkStore

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

DEFAULT_DIR = "chroma"
JOURNAL_FILE = "chroma-sync.json"
# Pages of ids when listing a whole collection, and of ids per SQLite IN (...) lookup.
_PAGE = 5000
_SQL_PAGE = 500


class ChromaBackendError(IndexStoreError):
    """chroma cannot be used as configured; the message says what to do."""


# --- configuration ---------------------------------------------------------------------------


def default_collection_name(index_dir: Path) -> str:
    """`ragkit-<12 hex>` from the index directory's real path: two indexes on one server never
    share a collection. Chosen once, at the first ingest, and saved in the index's pipeline."""
    digest = hashlib.sha256(str(Path(index_dir).resolve()).encode("utf-8")).hexdigest()[:12]
    return f"ragkit-{digest}"


def chroma_path(config: ChromaConfig, index_dir: Path) -> Path:
    """The embedded database directory: `chroma/` in the index dir, or `path` relative to it."""
    path = Path(config.path) if config.path else Path(DEFAULT_DIR)
    return path if path.is_absolute() else Path(index_dir) / path


def location(config: ChromaConfig, index_dir: Path) -> str:
    """Where the collection lives, for messages and `status`."""
    if config.resolved_mode == "server":
        scheme = "https" if config.ssl else "http"
        return f"{scheme}://{config.host or 'localhost'}:{config.port}"
    return str(chroma_path(config, index_dir))


def _identity(config: ChromaConfig, index_dir: Path) -> tuple[Any, ...]:
    """Two configs with one identity address the same collection."""
    if config.resolved_mode == "server":
        return ("server", config.host or "localhost", config.port, config.collection)
    return ("embedded", str(chroma_path(config, index_dir).resolve()), config.collection)


def resolve_config(config: ChromaConfig, index_dir: Path, stored: Any | None) -> ChromaConfig:
    """`config` with its collection name decided: the configured one, else the one the index
    already uses at the same place, else the default for this index directory."""
    if config.collection is not None:
        return config
    if isinstance(stored, ChromaConfig) and stored.collection is not None:
        candidate = config.model_copy(update={"collection": stored.collection})
        if _identity(candidate, index_dir) == _identity(stored, index_dir):
            return candidate
    return config.model_copy(update={"collection": default_collection_name(index_dir)})


def backend_identity(backend: Any) -> dict[str, Any]:
    """What makes a dense backend *different* for the writer (a change publishes a generation).

    For chroma: where the collection is and how it is indexed; not the token, the header or the
    upsert batch size, which change nothing stored."""
    if isinstance(backend, ChromaConfig):
        data = backend.model_dump(mode="json", exclude={"auth_token", "auth_header", "batch_size"})
        data["mode"] = backend.resolved_mode
        return data
    return backend.model_dump(mode="json")


# --- connecting --------------------------------------------------------------------------------


def _auth_token(config: ChromaConfig) -> str | None:
    if config.auth_token is not None:
        return config.auth_token.get_secret_value()
    return os.environ.get(CHROMA_AUTH_TOKEN_ENV) or None


def _headers(config: ChromaConfig) -> dict[str, str]:
    token = _auth_token(config)
    if token is None:
        return {}
    if config.auth_header == "Authorization":
        return {"Authorization": f"Bearer {token}"}
    return {"X-Chroma-Token": token}


def _settings() -> Any:
    from chromadb.config import Settings

    # No telemetry: ragkit is offline-first (and chroma's posthog client would try the network).
    return Settings(anonymized_telemetry=False)


def _unreachable(config: ChromaConfig) -> str:
    host, port = config.host or "localhost", config.port
    return (
        f"chroma server {host}:{port} is not reachable; start one with "
        f"`chroma run --path CHROMA_DATA_DIR --host {host} --port {port}` "
        "or fix dense.backend.host/port"
    )


def _auth_failed(config: ChromaConfig, status: int) -> str:
    sent = "no token" if _auth_token(config) is None else f"the token in the {config.auth_header} header"
    return (
        f"chroma server {config.host or 'localhost'}:{config.port} refused {sent} (HTTP {status}); "
        f"set dense.backend.auth_token or ${CHROMA_AUTH_TOKEN_ENV} to a token the server accepts"
    )


def _probe_server(config: ChromaConfig) -> None:
    """One authenticated request before chroma's client is built: chroma's own client turns a
    refused connection or a 401 into a vague 'could not connect to tenant' error."""
    import httpx

    url = f"{location(config, Path('.'))}/api/v2/auth/identity"
    try:
        response = httpx.get(url, headers=_headers(config), timeout=10.0)
    except httpx.HTTPError as exc:
        raise ChromaBackendError(f"{_unreachable(config)} ({type(exc).__name__})") from None
    if response.status_code in (401, 403):
        raise ChromaBackendError(_auth_failed(config, response.status_code))
    if response.status_code >= 400:
        raise ChromaBackendError(
            f"chroma server {config.host or 'localhost'}:{config.port} answered HTTP {response.status_code} "
            f"to {url}: is it a chroma 1.x server?"
        )


def connect(config: ChromaConfig, index_dir: Path) -> ClientAPI:
    """A chroma client for `config` (server mode is probed first for a clear error)."""
    import chromadb

    with chroma_errors(config):
        if config.resolved_mode == "server":
            _probe_server(config)
            return chromadb.HttpClient(
                host=config.host or "localhost",
                port=config.port,
                ssl=config.ssl,
                headers=_headers(config),
                settings=_settings(),
            )
        path = chroma_path(config, index_dir)
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=_settings())


@contextmanager
def chroma_errors(config: ChromaConfig) -> Iterator[None]:
    """chroma's and httpx's exceptions as `ChromaBackendError`s that say what to do."""
    import httpx
    from chromadb.errors import AuthorizationError, ChromaAuthError, ChromaError

    try:
        yield
    except ChromaBackendError:
        raise
    except (ChromaAuthError, AuthorizationError) as exc:
        raise ChromaBackendError(_auth_failed(config, exc.code())) from None
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code in (401, 403):
            raise ChromaBackendError(_auth_failed(config, exc.response.status_code)) from None
        raise ChromaBackendError(f"chroma request failed: {exc}") from exc
    except (httpx.TransportError, ConnectionError) as exc:
        raise ChromaBackendError(f"{_unreachable(config)} ({type(exc).__name__})") from None
    except ValueError as exc:
        if "Could not connect" in str(exc):
            raise ChromaBackendError(_unreachable(config)) from None
        raise
    except ChromaError as exc:
        raise ChromaBackendError(f"chroma error: {type(exc).__name__}: {exc}") from exc


def open_collection(
    config: ChromaConfig, index_dir: Path, create: bool, client: ClientAPI | None = None
) -> Collection:
    """The index's collection. `create`: make it (inner-product HNSW with the configured
    parameters) if missing, and bring a changed `ef_search` to an existing one."""
    from chromadb.errors import NotFoundError

    client = client or connect(config, index_dir)
    name = config.collection or default_collection_name(index_dir)
    with chroma_errors(config):
        try:
            collection = client.get_collection(name, embedding_function=None)
        except (NotFoundError, ValueError) as exc:
            if not isinstance(exc, NotFoundError) and "does not exist" not in str(exc):
                raise
            if not create:
                raise ChromaBackendError(
                    f"chroma collection {name!r} is missing at {location(config, index_dir)}; "
                    "re-ingest to rebuild it from the stored vectors (no re-embedding)"
                ) from None
            h = config.hnsw
            return client.create_collection(
                name,
                configuration={
                    "hnsw": {
                        "space": h.space,
                        "max_neighbors": h.max_neighbors,
                        "ef_construction": h.ef_construction,
                        "ef_search": h.ef_search,
                    }
                },
                metadata={"created_by": "ragkit"},
                embedding_function=None,
            )
        if create:
            _check_hnsw(collection, config, index_dir)
    return collection


def _check_hnsw(collection: Collection, config: ChromaConfig, index_dir: Path) -> None:
    hnsw = (collection.configuration_json or {}).get("hnsw") or {}
    fixed = {"space": config.hnsw.space, "max_neighbors": config.hnsw.max_neighbors,
             "ef_construction": config.hnsw.ef_construction}
    differ = {k: (hnsw.get(k), v) for k, v in fixed.items() if hnsw.get(k) is not None and hnsw.get(k) != v}
    if differ:
        shown = ", ".join(f"{k} {have!r} (configured {want!r})" for k, (have, want) in differ.items())
        raise ChromaBackendError(
            f"chroma collection {collection.name!r} at {location(config, index_dir)} was created with {shown}; "
            "these cannot change on an existing collection: set dense.backend.collection to a new name "
            "(the next ingest fills it from the stored vectors)"
        )
    if hnsw.get("ef_search") != config.hnsw.ef_search:
        with warnings.catch_warnings():
            # chroma calls a collection without an embedding function "legacy"; that is the point.
            warnings.filterwarnings("ignore", "legacy embedding function config", DeprecationWarning)
            collection.modify(configuration={"hnsw": {"ef_search": config.hnsw.ef_search}})


# --- records from a generation ------------------------------------------------------------------


def _records(store: ChunkStore, ids: Iterable[str] | None) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(row, chunk id, chroma metadata) of the chunks `ids` (all when None), by ascending row."""
    query = (
        "SELECT c.row, c.id, c.doc_id, d.source, d.metadata, c.metadata "
        "FROM chunks c JOIN documents d ON d.id = c.doc_id"
    )

    def convert(record: tuple[Any, ...]) -> tuple[int, str, dict[str, Any]]:
        row, chunk_id, doc_id, source, doc_meta, chunk_meta = record
        return row, chunk_id, filterable_metadata(source, doc_id, json.loads(doc_meta), json.loads(chunk_meta))

    if ids is None:
        for record in store.db.execute(query + " ORDER BY c.row"):
            yield convert(record)
        return
    wanted = list(ids)
    found = []
    for begin in range(0, len(wanted), _SQL_PAGE):
        part = wanted[begin : begin + _SQL_PAGE]
        found.extend(store.db.execute(query + f" WHERE c.id IN ({','.join('?' * len(part))})", part))
    for record in sorted(found):
        yield convert(record)


def _all_ids(collection: Collection) -> set[str]:
    ids: set[str] = set()
    offset = 0
    while True:
        page = collection.get(include=[], limit=_PAGE, offset=offset)["ids"]
        ids.update(page)
        if len(page) < _PAGE:
            return ids
        offset += len(page)


def _store_ids(store: ChunkStore) -> set[str]:
    return {i for (i,) in store.db.execute("SELECT id FROM chunks")}


class _Generation:
    """A generation directory's store and vectors, opened for reading."""

    def __init__(self, directory: Path) -> None:
        self.store = ChunkStore.open(directory / STORE_FILE)
        self.vectors = np.load(directory / EMBEDDINGS_FILE, mmap_mode="r")

    def close(self) -> None:
        self.store.close()


# --- keeping the collection in step with the published generation -------------------------------


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
    def open(cls, index_dir: Path, config: ChromaConfig, stored_backend: Any | None) -> ChromaSync:
        """Connect (fails fast, before anything is embedded) and create the collection if needed."""
        config = resolve_config(config, index_dir, stored_backend)
        client = connect(config, index_dir)
        collection = open_collection(config, index_dir, create=True, client=client)
        same = isinstance(stored_backend, ChromaConfig) and _identity(
            resolve_config(stored_backend, index_dir, None), index_dir
        ) == _identity(config, index_dir)
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

    def _upsert(self, generation: _Generation, records: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        ids: list[str] = []
        rows: list[int] = []
        metadatas: list[dict[str, Any]] = []

        def flush() -> None:
            if ids:
                vectors = np.ascontiguousarray(generation.vectors[rows], dtype=np.float32)
                with chroma_errors(self.config):
                    self.collection.upsert(ids=list(ids), embeddings=vectors, metadatas=list(metadatas))
                self.upserted += len(ids)
                ids.clear(), rows.clear(), metadatas.clear()

        for row, chunk_id, metadata in records:
            ids.append(chunk_id), rows.append(row), metadatas.append(metadata)
            if len(ids) >= self.batch:
                flush()
        flush()

    def _delete(self, ids: Iterable[str]) -> None:
        doomed = sorted(ids)
        for begin in range(0, len(doomed), self.batch):
            with chroma_errors(self.config):
                self.collection.delete(ids=doomed[begin : begin + self.batch])
        self.deleted += len(doomed)

    def reconcile(self, current_dir: Path | None) -> None:
        """Repair what a crashed writer left: needed when its journal is there or the counts differ."""
        journal = self._read_journal()
        if current_dir is None or not self.same:
            return  # nothing published in this collection: before_publish/after_publish sync fully
        generation = _Generation(current_dir)
        try:
            current_ids = _store_ids(generation.store)
            with chroma_errors(self.config):
                count = self.collection.count()
            if journal is None and count == len(current_ids):
                return
            with chroma_errors(self.config):
                have = _all_ids(self.collection)
            self._delete(have - current_ids)
            refresh: set[str] = current_ids - have
            docs = journal.get("refresh_docs", []) if journal else []
            if docs is None:  # unreadable journal: every record may be stale
                refresh = current_ids
            elif docs:
                refresh |= set(_ids_of_docs(generation.store, docs))
            self._upsert(generation, _records(generation.store, refresh))
        finally:
            generation.close()
        self.journal.unlink(missing_ok=True)

    def before_publish(self, current_dir: Path | None, new_dir: Path, refresh_docs: list[str]) -> None:
        """Upsert the new generation's chunks that the collection lacks for the published one, and
        note which kept chunks of re-ingested documents need new metadata after publishing."""
        self.old_ids = set()
        old_meta: dict[str, dict[str, Any]] = {}
        if self.same and current_dir is not None:
            old = ChunkStore.open(current_dir / STORE_FILE)
            try:
                self.old_ids = _store_ids(old)
                old_meta = {i: m for _, i, m in _records(old, _ids_of_docs(old, refresh_docs))}
            finally:
                old.close()
        self._write_journal(refresh_docs)
        generation = _Generation(new_dir)
        try:
            self.new_ids = _store_ids(generation.store)
            self.stale_meta = [
                i for _, i, m in _records(generation.store, _ids_of_docs(generation.store, refresh_docs))
                if i in old_meta and old_meta[i] != m
            ]
            self._upsert(generation, _records(generation.store, self.new_ids - self.old_ids))
        finally:
            generation.close()

    def after_publish(self, new_dir: Path) -> None:
        """Refresh kept chunks' changed metadata and delete what the new generation dropped."""
        if self.stale_meta:
            generation = _Generation(new_dir)
            try:
                self._upsert(generation, _records(generation.store, self.stale_meta))
            finally:
                generation.close()
        if self.same:
            self._delete(self.old_ids - self.new_ids)
        else:  # the collection may hold anything (an earlier index at this path, a crashed first ingest)
            with chroma_errors(self.config):
                have = _all_ids(self.collection)
            self._delete(have - self.new_ids)
        self.journal.unlink(missing_ok=True)


def _ids_of_docs(store: ChunkStore, doc_ids: list[str]) -> list[str]:
    ids = []
    for begin in range(0, len(doc_ids), _SQL_PAGE):
        part = doc_ids[begin : begin + _SQL_PAGE]
        ids.extend(i for (i,) in store.db.execute(
            f"SELECT id FROM chunks WHERE doc_id IN ({','.join('?' * len(part))})", part
        ))
    return ids


# --- reading -----------------------------------------------------------------------------------


class ChromaDenseIndex:
    """Search a generation's chunks in the chroma collection.

    chroma's HNSW finds the candidates; their scores are then recomputed exactly from the
    generation's `embeddings.npy` (inner product, as faiss scores) and ties are broken by row,
    so ranking among found candidates is exact and deterministic. Ids that this generation's
    store does not hold (a newer or crashed writer's records) are skipped, fetching more when
    that leaves fewer than k.
    """

    def __init__(
        self, collection: Collection, config: ChromaConfig, index_dir: Path, store: ChunkStore, vectors: np.ndarray
    ) -> None:
        self.collection = collection
        self.config = config
        self.index_dir = index_dir
        self.store = store
        self.vectors = vectors
        self.n = store.count_chunks()

    @classmethod
    def load(cls, index_dir: Path, generation_dir: Path, config: ChromaConfig, store: ChunkStore) -> ChromaDenseIndex:
        vectors = np.load(generation_dir / EMBEDDINGS_FILE, mmap_mode="r")
        collection = open_collection(config, index_dir, create=False)
        index = cls(collection, config, index_dir, store, vectors)
        with chroma_errors(config):
            count = collection.count()
        if count < index.n:
            raise ChromaBackendError(
                f"chroma collection {config.collection!r} at {location(config, index_dir)} holds {count} vectors "
                f"but the index has {index.n} chunks; re-ingest to restore the missing ones (no re-embedding)"
            )
        return index

    def __len__(self) -> int:
        return self.n

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def describe(self) -> dict[str, Any]:
        hnsw = self.config.hnsw
        return {
            "type": "chroma",
            "mode": self.config.resolved_mode,
            "location": location(self.config, self.index_dir),
            "collection": self.config.collection,
            "space": hnsw.space,
            "ef_search": hnsw.ef_search,
            "M": hnsw.max_neighbors,
            "ef_construction": hnsw.ef_construction,
            "vectors": len(self),
            "dim": self.dim,
        }

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None, where: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        rows, scores = self.search_batch(np.asarray(query).reshape(1, -1), k, allowed, where)
        return rows[0], scores[0]

    def search_batch(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        where: dict[str, Any] | None = None,
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Top-k (rows, inner-product scores) per query. `where` is a chroma where-dict passed to
        chroma; `allowed` (a boolean mask over rows) drops rows it does not allow."""
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if queries.ndim != 2:
            raise ValueError(f"expected a 2-d array of query vectors, got shape {queries.shape}")
        k = min(k, self.n)
        if k <= 0 or len(queries) == 0:
            return (
                [np.zeros(0, dtype=np.int64) for _ in range(len(queries))],
                [np.zeros(0, dtype=np.float32) for _ in range(len(queries))],
            )
        if queries.shape[1] != self.dim:
            raise ValueError(
                f"query vectors have {queries.shape[1]} dimensions but the index has {self.dim}: "
                "was the index built with a different embedding model?"
            )
        accept = None if allowed is None else np.asarray(allowed, dtype=bool)
        results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(queries)
        pending = list(range(len(queries)))
        fetch = k + max(8, k // 4)  # a little extra for records of other generations
        while pending:
            found = self._query(queries[pending], fetch, where)
            retry = []
            for qi, ids in zip(pending, found):
                rows = self._rows(ids, accept)
                if len(rows) < k and len(ids) >= fetch and fetch < self._total():
                    retry.append(qi)  # too many skipped: ask chroma for more
                    continue
                results[qi] = self._rank(queries[qi], rows, k)
            pending = retry
            fetch *= 4
        return [r[0] for r in results], [r[1] for r in results]  # type: ignore[index]

    def _total(self) -> int:
        with chroma_errors(self.config):
            return int(self.collection.count())

    def _query(self, queries: np.ndarray, fetch: int, where: dict[str, Any] | None) -> list[list[str]]:
        with chroma_errors(self.config):
            answer = self.collection.query(
                query_embeddings=queries, n_results=fetch, where=where or None, include=["distances"]
            )
        return answer["ids"]

    def _rows(self, ids: list[str], accept: np.ndarray | None) -> np.ndarray:
        """Rows of the chunk ids this generation holds (others dropped), allowed by `accept`."""
        if not ids:
            return np.zeros(0, dtype=np.int64)
        marks = ",".join("?" * len(ids))
        rows = np.fromiter(
            (r for (r,) in self.store.db.execute(f"SELECT row FROM chunks WHERE id IN ({marks})", ids)),
            dtype=np.int64,
        )
        if accept is not None and rows.size:
            rows = rows[accept[rows]]
        return rows

    def _rank(self, query: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not rows.size:
            return rows, np.zeros(0, dtype=np.float32)
        rows = np.sort(rows)
        scores = np.asarray(self.vectors[rows], dtype=np.float32) @ query
        order = np.lexsort((rows, -scores))[:k]  # by score, then row: deterministic ties
        return rows[order], scores[order].astype(np.float32)


# --- verification -------------------------------------------------------------------------------


def verify_collection(
    index_dir: Path, generation_dir: Path, config: ChromaConfig, sample: int = 16
) -> tuple[list[str], str]:
    """(problems, summary): the collection holds exactly the generation's chunk ids, and sampled
    records carry exactly the stored vectors and the chunks' filterable metadata."""
    collection = open_collection(config, index_dir, create=False)
    generation = _Generation(generation_dir)
    try:
        want = _store_ids(generation.store)
        with chroma_errors(config):
            have = _all_ids(collection)
        problems = []
        missing, extra = sorted(want - have), sorted(have - want)
        if missing:
            problems.append(f"{len(missing)} chunk id(s) missing from the collection, e.g. {missing[:3]}")
        if extra:
            problems.append(
                f"{len(extra)} id(s) in the collection that the generation does not hold, e.g. {extra[:3]} "
                "(left by an interrupted ingest; the next ingest removes them)"
            )
        n = len(want)
        rows = sorted({int(round(x)) for x in np.linspace(0, n - 1, min(sample, n))}) if n else []
        records = {
            chunk_id: (row, meta)
            for row, chunk_id, meta in _records(
                generation.store,
                [i for (i,) in generation.store.db.execute(
                    f"SELECT id FROM chunks WHERE row IN ({','.join('?' * len(rows))})", rows
                )] if rows else [],
            )
        }
        if records:
            with chroma_errors(config):
                got = collection.get(ids=list(records), include=["embeddings", "metadatas"])
            for chunk_id, vector, meta in zip(got["ids"], got["embeddings"], got["metadatas"]):
                row, want_meta = records[chunk_id]
                if not np.array_equal(np.asarray(vector, dtype=np.float32), np.asarray(generation.vectors[row])):
                    problems.append(f"row {row}: chroma's vector for {chunk_id} differs from {EMBEDDINGS_FILE}")
                if dict(meta or {}) != want_meta:
                    problems.append(f"row {row}: chroma's metadata for {chunk_id} differs from the store")
        summary = (
            f"chroma collection {config.collection!r} ({location(config, index_dir)}) holds exactly the "
            f"{n} chunk ids; {len(records)} sampled vectors identical to {EMBEDDINGS_FILE}, metadata exact"
        )
        return problems, summary
    finally:
        generation.close()


def describe_config(config: ChromaConfig, index_dir: Path) -> str:
    """One line for `ragkit status` (no connection needed)."""
    where = location(config, index_dir)
    return f"chroma {config.resolved_mode} {where}, collection {config.collection or default_collection_name(index_dir)}"

