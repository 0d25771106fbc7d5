"""The reader's side of pgvector: search one generation's rows, choosing the plan per query."""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.indexes.pgvector import PgvectorBackendError, PgvectorConfig, location, qualified_table
from ragkit.indexes.pgvector.client import (
    PSYCOPG_MISSING,
    configure,
    connection_kwargs,
    pg_errors,
    statements,
    table_exists,
    table_structure,
)
from ragkit.indexes.pgvector.sql import FilterSQL

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from ragkit.indexes.filters import MetadataFilter
    from ragkit.indexes.generation import GenerationView

_COUNT_CACHE = 64  # filters whose allowed-row counts a reader remembers (its generation never changes)
# How far the server's distance may be from the exact float32 one: halfvec rounds each component
# to 11 significant bits (relative error 2**-11), so an inner product of unit vectors moves by at
# most ~5e-4; float32 arithmetic in another order by ~1e-6.
_SCORE_MARGIN = {"halfvec": 1e-3, "vector": 1e-5}


class PgvectorSearcher:
    """Search a generation's rows (pinned: rows of other generations are never seen).

    Per query: a metadata filter's allowed rows are counted (bounded, cached per filter); few
    of them (`planner.exact_max_rows`, or under `planner.exact_max_fraction` of the generation)
    are searched exactly, else HNSW with an iterative scan finds candidates, and a HNSW result
    short of k is redone exactly. Candidates (k + `overfetch`) are rescored exactly from the
    generation's float32 embeddings, ties by row. An exact plan fetches more candidates while
    the k-th exact score is within rounding of the last candidate's, so its top k is exact.
    """

    def __init__(self, pool: ConnectionPool, config: PgvectorConfig, generation: GenerationView, vector_type: str) -> None:
        self.pool = pool
        self.config = config
        self.view = generation
        self.generation = generation.generation
        self.index_dir = generation.index_dir
        self.store = generation.store
        self.rows = generation.rows  # global rows, deleted ones included (len())
        self.n = self.store.count_chunks()  # live chunks: what the table shows this generation
        self._dim = int(generation.segments[0].vectors.shape[1]) if generation.segments else 0
        self.vector_type = vector_type
        self.sql = statements(config.model_copy(update={"vector_type": vector_type}))
        self.plans: Counter[str] = Counter()  # exact / hnsw / hnsw_short (redone exactly) / refetch
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, config: PgvectorConfig, generation: GenerationView) -> PgvectorSearcher:
        try:
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise PgvectorBackendError(PSYCOPG_MISSING) from None
        with pg_errors(config):
            pool = ConnectionPool(
                config.dsn or "",
                kwargs=connection_kwargs(config, "reader"),
                min_size=1,
                max_size=config.pool_size,
                configure=configure,
                open=False,
                name=f"ragkit-{config.table}",
            )
            pool.open(wait=True, timeout=float(config.connect_timeout))
        try:
            with pg_errors(config), pool.connection() as conn:
                if not table_exists(conn, config) and generation.store.count_chunks():
                    raise PgvectorBackendError(
                        f"table {qualified_table(config)} is missing at {location(config)}; re-ingest to rebuild it "
                        "from the stored vectors (no re-embedding)"
                    )
                vector_type = table_structure(conn, config).get("vector_type", config.vector_type)
                index = cls(pool, config, generation, vector_type)
                count = 0
                if index.n:
                    (count,) = conn.execute(index.sql.q("SELECT count(*) FROM {t} WHERE {visible}"), {"g": index.generation}).fetchone()  # type: ignore[misc]
            if count != index.n:
                raise PgvectorBackendError(
                    f"table {qualified_table(config)} at {location(config)} holds {count} vectors of generation "
                    f"{index.generation} but the index has {index.n} chunks; re-ingest to repair it (no re-embedding)"
                )
        except BaseException:
            pool.close()
            raise
        return index

    def close(self) -> None:
        self.pool.close()

    def __len__(self) -> int:
        return self.rows

    @property
    def dim(self) -> int:
        return self._dim

    def describe(self) -> dict[str, Any]:
        h, p = self.config.hnsw, self.config.planner
        return {
            "type": "pgvector",
            "location": location(self.config),
            "table": qualified_table(self.config),
            "vector_type": self.vector_type,
            "M": h.m,
            "ef_construction": h.ef_construction,
            "ef_search": h.ef_search,
            "iterative_scan": h.iterative_scan,
            "exact_max_rows": p.exact_max_rows,
            "exact_max_fraction": p.exact_max_fraction,
            "generation": self.generation,
            "vectors": self.n,
            "dim": self.dim,
            "plans": dict(self.plans),
        }

    # --- search --------------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, flt: MetadataFilter | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if queries.ndim != 2:
            raise ValueError(f"expected a 2-d array of query vectors, got shape {queries.shape}")
        k = min(k, self.n)
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        if k <= 0 or len(queries) == 0:
            return [empty for _ in range(len(queries))]
        if queries.shape[1] != self.dim:
            raise ValueError(
                f"query vectors have {queries.shape[1]} dimensions but the index has {self.dim}: "
                "was the index built with a different embedding model?"
            )
        if flt is not None and flt.matches_all:
            flt = None
        compiled = FilterSQL()
        where = compiled.compile(flt)
        allowed = self._allowed(flt, where, compiled.params)
        if allowed == 0:
            return [empty for _ in range(len(queries))]
        return [self._search_one(q, k, where, compiled.params, allowed) for q in queries]

    def exact_plan(self, allowed: int | None) -> bool:
        """Whether `allowed` rows (None: more than the exact limits) are searched exactly."""
        p = self.config.planner
        if self.n <= p.exact_max_rows:
            return True
        return allowed is not None and (allowed <= p.exact_max_rows or allowed < p.exact_max_fraction * self.n)

    def _cap(self) -> int:
        p = self.config.planner
        return max(p.exact_max_rows, math.ceil(p.exact_max_fraction * self.n)) + 1

    def _allowed(self, flt: MetadataFilter | None, where: Any, params: dict[str, Any]) -> int | None:
        """Rows passing `flt` in this generation; None when more than the exact plan's limits."""
        if flt is None:
            return self.n
        key = flt.key()
        with self._lock:
            if key in self._counts:
                self._counts.move_to_end(key)
                count = self._counts[key]
                return None if count >= self._cap() else count
        with pg_errors(self.config), self.pool.connection() as conn:
            (count,) = conn.execute(self.sql.bounded_count(where), {**params, "g": self.generation, "cap": self._cap()}).fetchone()  # type: ignore[misc]
        with self._lock:
            self._counts[key] = int(count)
            while len(self._counts) > _COUNT_CACHE:
                self._counts.popitem(last=False)
        return None if count >= self._cap() else int(count)

    def _search_one(
        self, query: np.ndarray, k: int, where: Any, params: dict[str, Any], allowed: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        exact = self.exact_plan(allowed)
        expected = min(k, allowed) if allowed is not None else k
        fetch = k + self.config.planner.overfetch
        while True:
            ids = self._candidates(query, where, params, exact, fetch)
            rows = self.store.rows_of_chunk_ids(ids)
            if not exact and len(rows) < expected:
                self.plans["hnsw_short"] += 1  # the walk found too few allowed rows: exact instead
                exact = True
                continue
            self.plans["exact" if exact else "hnsw"] += 1
            ranked_rows, scores = self._rank(query, rows)
            if exact and len(ids) >= fetch and len(scores) >= k and fetch < (allowed or self.n):
                # The server ranked by its (halfvec) distance: an uncandidated row can beat the
                # k-th only if the k-th exact score is within rounding of the last candidate's.
                last_rows = self.store.rows_of_chunk_ids(ids[-1:])
                last = float((self.view.vectors_at(last_rows) @ query).max()) if last_rows.size else -np.inf
                if scores[k - 1] <= last + _SCORE_MARGIN.get(self.vector_type, 1e-3):
                    self.plans["refetch"] += 1
                    fetch *= 4
                    continue
            return ranked_rows[:k], scores[:k]

    def _candidates(self, query: np.ndarray, where: Any, params: dict[str, Any], exact: bool, fetch: int) -> list[str]:
        h = self.config.hnsw
        values = {**params, "g": self.generation, "q": _vector_text(query), "fetch": fetch}
        with pg_errors(self.config), self.pool.connection() as conn, conn.transaction():
            if not exact:
                settings = {
                    "hnsw.ef_search": str(min(1000, max(h.ef_search, fetch))),
                    "hnsw.iterative_scan": h.iterative_scan,
                    "hnsw.max_scan_tuples": str(max(h.max_scan_tuples, fetch)),
                }
                for name, value in settings.items():
                    conn.execute("SELECT set_config(%s, %s, true)", (name, value))
            return [i for (i,) in conn.execute(self.sql.search(where, exact), values)]

    def _rank(self, query: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not rows.size:
            return rows, np.zeros(0, dtype=np.float32)
        rows = np.sort(rows)
        scores = self.view.vectors_at(rows) @ query
        order = np.lexsort((rows, -scores))  # by score, then row: deterministic ties
        return rows[order], scores[order].astype(np.float32)


def _vector_text(vector: np.ndarray) -> str:
    """pgvector's text form; 9 significant digits round-trip a float32 exactly."""
    return "[" + ",".join(f"{x:.9g}" for x in vector.tolist()) + "]"
