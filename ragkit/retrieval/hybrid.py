"""The hybrid retriever: dense + sparse candidates, fused, reranked, cut to top-k."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ragkit.config import RetrievalConfig
from ragkit.indexes.embedder import Embedder
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.retrieval.fusion import Fused, fuse
from ragkit.retrieval.rerank import NoReranker, Reranker
from ragkit.schema import Hit, RetrieverScore, Trace


class HybridRetriever:
    def __init__(
        self,
        snapshot: IndexSnapshot,
        embedder: Embedder,
        analyzer: Callable[[str], list[str]],
        config: RetrievalConfig,
        reranker: Reranker | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.embedder = embedder
        self.analyzer = analyzer
        self.config = config
        self.reranker = reranker or NoReranker()

    def dense(self, question: str, k: int) -> list[tuple[int, float]]:
        rows, scores = self.snapshot.dense.search(self.embedder.embed_query(question), k)
        return [(int(r), float(s)) for r, s in zip(rows, scores)]

    def sparse(self, question: str, k: int) -> list[tuple[int, float]]:
        rows, scores = self.snapshot.sparse.search(self.analyzer(question), k)
        return [(int(r), float(s)) for r, s in zip(np.asarray(rows), np.asarray(scores))]

    def retrieve(self, question: str, trace: Trace, top_k: int | None = None) -> list[Hit]:
        top_k = top_k or self.config.top_k
        with trace.stage("dense"):
            dense = self.dense(question, self.config.dense_k)
        with trace.stage("sparse"):
            sparse = self.sparse(question, self.config.sparse_k)
        if not sparse:
            trace.warn("sparse retrieval matched no chunk (no query term occurs in the index)")
        with trace.stage("fusion"):
            fused = fuse({"dense": dense, "sparse": sparse}, self.config.fusion)
        rerank_depth = getattr(self.config.rerank, "top_n", top_k)
        candidates = self._hits(fused[: max(top_k, rerank_depth)])
        with trace.stage("rerank"):
            candidates = self.reranker.rerank(question, candidates, trace)
        return candidates[:top_k]

    def _hits(self, fused: list[Fused]) -> list[Hit]:
        chunks = self.snapshot.store.chunks_by_rows([f.row for f in fused])
        hits = []
        for rank, (entry, chunk) in enumerate(zip(fused, chunks), start=1):
            retrievers = dict(entry.retrievers)
            retrievers["fusion"] = RetrieverScore(rank=rank, score=entry.score)
            hits.append(Hit(chunk=chunk, score=entry.score, retrievers=retrievers))
        return hits
