"""The hybrid retriever: dense + sparse candidates, fused, reranked, cut to top-k."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ragkit.config import RetrievalConfig
from ragkit.indexes.embedder import Embedder
from ragkit.indexes.filters import MetadataFilter
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.retrieval.fusion import Fused, Ranking, fuse, merge_duplicates
from ragkit.retrieval.rerank import NoReranker, Reranker
from ragkit.retrieval.transforms import QueryTransform, transformed_fusion
from ragkit.schema import Hit, RetrieverScore, Trace

# A filter as accepted everywhere: a parsed MetadataFilter, a Mongo-like mapping or its JSON text.
FilterSpec = MetadataFilter | Mapping[str, Any] | str


class HybridRetriever:
    def __init__(
        self,
        snapshot: IndexSnapshot,
        embedder: Embedder,
        analyzer: Callable[[str], list[str]],
        config: RetrievalConfig,
        reranker: Reranker | None = None,
        query_transform: QueryTransform | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.embedder = embedder
        self.analyzer = analyzer
        self.config = config
        self.reranker = reranker or NoReranker()
        self.query_transform = query_transform  # None: the question is searched as it is

    def filter_mask(self, filter: FilterSpec | None) -> tuple[np.ndarray | None, dict[str, Any] | None]:
        """(allowed-rows mask, chroma `where`) for `filter`; (None, None) when it filters nothing."""
        if filter is None:
            return None, None
        flt = MetadataFilter.parse(filter)
        if flt.matches_all:
            return None, None
        return self.snapshot.store.filter_mask(flt), flt.to_chroma_where()

    def candidates(
        self,
        questions: Sequence[str],
        dense_k: int | None = None,
        sparse_k: int | None = None,
        filter: FilterSpec | None = None,
    ) -> list[dict[str, list[tuple[int, float]]]]:
        """Dense and sparse (row, score) candidates for each question, batched; with `filter`,
        only chunks whose metadata passes it."""
        dense_k = dense_k or self.config.dense_k
        sparse_k = sparse_k or self.config.sparse_k
        allowed, where = self.filter_mask(filter)
        vectors = self.embedder.embed(list(questions))
        dense_rows, dense_scores = self.snapshot.dense.search_batch(vectors, dense_k, allowed=allowed, where=where)
        sparse = self.snapshot.sparse.search_batch([self.analyzer(q) for q in questions], sparse_k, allowed=allowed)
        return [
            self.merged(
                {
                    "dense": [(int(r), float(s)) for r, s in zip(rows, scores)],
                    "sparse": [(int(r), float(s)) for r, s in zip(*sparse_hits)],
                }
            )
            for rows, scores, sparse_hits in zip(dense_rows, dense_scores, sparse)
        ]

    def merged(self, rankings: dict[str, Ranking]) -> dict[str, Ranking]:
        """`rankings` with identical chunk texts merged (when configured; see `merge_duplicates`)."""
        if not self.config.merge_duplicates:
            return rankings
        rows = [row for ranking in rankings.values() for row, _ in ranking]
        return merge_duplicates(rankings, self.snapshot.store.text_hashes(rows))

    def retrieve(
        self, question: str, trace: Trace, top_k: int | None = None, filter: FilterSpec | None = None
    ) -> list[Hit]:
        """Top-k hits for `question`; with `filter` (see `MetadataFilter`), only chunks whose
        metadata passes it: the filter is applied inside dense and sparse search, before fusion."""
        top_k = top_k or self.config.top_k
        allowed, where = None, None
        if filter is not None:
            with trace.stage("filter"):
                allowed, where = self.filter_mask(filter)
            if allowed is not None:
                n = int(np.count_nonzero(allowed))
                if n == 0:
                    trace.warn(f"the metadata filter matched 0 of {len(allowed)} chunks: nothing to retrieve")
                    return []
        with trace.stage("dense"):
            rows, scores = self.snapshot.dense.search(
                self.embedder.embed_query(question), self.config.dense_k, allowed=allowed, where=where
            )
            dense = [(int(r), float(s)) for r, s in zip(rows, scores)]
        with trace.stage("sparse"):
            rows, scores = self.snapshot.sparse.search(self.analyzer(question), self.config.sparse_k, allowed=allowed)
            sparse = [(int(r), float(s)) for r, s in zip(rows, scores)]
        if not sparse:
            trace.warn("sparse retrieval matched no chunk (no query term occurs in the index)")
        with trace.stage("fusion"):
            fused = fuse(self.merged({"dense": dense, "sparse": sparse}), self.config.fusion)
        if self.query_transform is not None:  # adds the transform's searches to the question's own
            fused = transformed_fusion(
                self, self.query_transform, question, fused, trace, allowed=allowed, where=where
            )
        candidates = self.hits(fused[: max(top_k, self.rerank_depth)])
        with trace.stage("rerank"):
            candidates = self.reranker.rerank(question, candidates, trace)
        return candidates[:top_k]

    @property
    def rerank_depth(self) -> int:
        """How many fused candidates the reranker rescores (0 without a reranker)."""
        return int(getattr(self.config.rerank, "top_n", 0))

    def hits(self, fused: list[Fused]) -> list[Hit]:
        chunks = self.snapshot.store.chunks_by_rows([f.row for f in fused])
        hits = []
        for rank, (entry, chunk) in enumerate(zip(fused, chunks), start=1):
            retrievers = dict(entry.retrievers)
            retrievers["fusion"] = RetrieverScore(rank=rank, score=entry.score)
            hits.append(Hit(chunk=chunk, score=entry.score, retrievers=retrievers))
        return hits
