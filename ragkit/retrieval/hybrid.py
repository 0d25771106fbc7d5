"""The hybrid retriever: dense + sparse candidates, fused, reranked, cut to top-k."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ragkit.config import RetrievalConfig
from ragkit.indexes.embedder import Embedder
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.retrieval.fusion import Fused, fuse
from ragkit.retrieval.rerank import NoReranker, Reranker
from ragkit.retrieval.transforms import QueryTransform, transformed_fusion
from ragkit.schema import Hit, RetrieverScore, Trace


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

    def candidates(
        self, questions: Sequence[str], dense_k: int | None = None, sparse_k: int | None = None
    ) -> list[dict[str, list[tuple[int, float]]]]:
        """Dense and sparse (row, score) candidates for each question, batched."""
        dense_k = dense_k or self.config.dense_k
        sparse_k = sparse_k or self.config.sparse_k
        vectors = self.embedder.embed(list(questions))
        dense_rows, dense_scores = self.snapshot.dense.search_batch(vectors, dense_k)
        sparse = self.snapshot.sparse.search_batch([self.analyzer(q) for q in questions], sparse_k)
        return [
            {
                "dense": [(int(r), float(s)) for r, s in zip(rows, scores)],
                "sparse": [(int(r), float(s)) for r, s in zip(*sparse_hits)],
            }
            for rows, scores, sparse_hits in zip(dense_rows, dense_scores, sparse)
        ]

    def retrieve(self, question: str, trace: Trace, top_k: int | None = None) -> list[Hit]:
        top_k = top_k or self.config.top_k
        with trace.stage("dense"):
            rows, scores = self.snapshot.dense.search(self.embedder.embed_query(question), self.config.dense_k)
            dense = [(int(r), float(s)) for r, s in zip(rows, scores)]
        with trace.stage("sparse"):
            rows, scores = self.snapshot.sparse.search(self.analyzer(question), self.config.sparse_k)
            sparse = [(int(r), float(s)) for r, s in zip(rows, scores)]
        if not sparse:
            trace.warn("sparse retrieval matched no chunk (no query term occurs in the index)")
        with trace.stage("fusion"):
            fused = fuse({"dense": dense, "sparse": sparse}, self.config.fusion)
        if self.query_transform is not None:  # adds the transform's searches to the question's own
            fused = transformed_fusion(self, self.query_transform, question, fused, trace)
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
