"""The reader's side of chroma: search one generation's chunks in the collection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.indexes.chroma import ChromaBackendError, ChromaConfig, location
from ragkit.indexes.chroma.client import chroma_errors, open_collection

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from ragkit.indexes.filters import MetadataFilter
    from ragkit.indexes.generation import GenerationView


class ChromaSearcher:
    """Search a generation's chunks in the chroma collection.

    chroma's HNSW finds the candidates; their scores are then recomputed exactly from the
    generation's `embeddings.npy` (inner product, as faiss scores) and ties are broken by row,
    so ranking among found candidates is exact and deterministic. Ids that this generation's
    store does not hold (a newer or crashed writer's records) are skipped, fetching more when
    that leaves fewer than k.
    """

    def __init__(self, collection: Collection, config: ChromaConfig, generation: GenerationView) -> None:
        self.collection = collection
        self.config = config
        self.index_dir = generation.index_dir
        self.store = generation.store
        self.generation = generation
        self.n = generation.rows  # global rows (deleted ones are never found: chroma drops them)
        self._dim = next((int(s.vectors.shape[1]) for s in generation.segments if s.chunks), 0)

    @classmethod
    def open(cls, config: ChromaConfig, generation: GenerationView) -> ChromaSearcher:
        collection = open_collection(config, generation.index_dir, create=False)
        index = cls(collection, config, generation)
        with chroma_errors(config):
            count = collection.count()
        if count < generation.store.count_chunks():
            raise ChromaBackendError(
                f"chroma collection {config.collection!r} at {location(config, generation.index_dir)} holds "
                f"{count} vectors but the index has {generation.store.count_chunks()} chunks; re-ingest to restore the missing ones "
                "(no re-embedding)"
            )
        return index

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return self.n

    @property
    def dim(self) -> int:
        return self._dim

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
        self, queries: np.ndarray, k: int, flt: MetadataFilter | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top-k (rows, inner-product scores) per query; `flt` is sent to chroma as `where`."""
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if queries.ndim != 2:
            raise ValueError(f"expected a 2-d array of query vectors, got shape {queries.shape}")
        where = None if flt is None else flt.to_chroma_where()
        k = min(k, self.n)
        if k <= 0 or len(queries) == 0:
            return [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)) for _ in range(len(queries))]
        if queries.shape[1] != self.dim:
            raise ValueError(
                f"query vectors have {queries.shape[1]} dimensions but the index has {self.dim}: "
                "was the index built with a different embedding model?"
            )
        # Few candidate rows (a small index, or a selective filter): exact search over their
        # stored vectors. Chroma's HNSW is approximate, more so with a `where` filter and after
        # deletions (measured: the conformance suite's filtered queries missed true top-10 rows
        # after two commits with deletes).
        allowed = self.generation.live() if flt is None else self.store.filter_mask(flt)
        candidates = np.flatnonzero(allowed)
        if candidates.size <= self.config.exact_threshold:
            return [self._rank(q, candidates, k) for q in queries]
        results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(queries)
        pending = list(range(len(queries)))
        fetch = k + max(8, k // 4)  # a little extra for records of other generations
        while pending:
            found = self._query(queries[pending], fetch, where)
            retry = []
            for qi, ids in zip(pending, found):
                rows = self.store.rows_of_chunk_ids(ids)
                if len(rows) < k and len(ids) >= fetch and fetch < self._total():
                    retry.append(qi)  # too many skipped: ask chroma for more
                    continue
                results[qi] = self._rank(queries[qi], rows, k)
            pending = retry
            fetch *= 4
        return [r for r in results if r is not None]

    def _total(self) -> int:
        with chroma_errors(self.config):
            return int(self.collection.count())

    def _query(self, queries: np.ndarray, fetch: int, where: dict[str, Any] | None) -> list[list[str]]:
        with chroma_errors(self.config):
            answer = self.collection.query(
                query_embeddings=queries, n_results=fetch, where=where or None, include=["distances"]
            )
        return answer["ids"]

    def _rank(self, query: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not rows.size:
            return rows, np.zeros(0, dtype=np.float32)
        rows = np.sort(rows)
        scores = np.asarray(self.generation.vectors_at(rows), dtype=np.float32) @ query
        order = np.lexsort((rows, -scores))[:k]  # by score, then row: deterministic ties
        return rows[order], scores[order].astype(np.float32)


