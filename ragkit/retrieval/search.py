"""The one retrieval path: questions -> ranked hits, every stage's ranking recorded on the way.

    embed -> dense + sparse search -> merge duplicates -> fuse -> query transform -> rerank

`Retriever.search` runs it for a batch of questions (each stage batched: one embedding call,
one dense and one sparse search for all questions, and one more of each for all the transform
variants). `RAG.retrieve`, `RAG.query` and `ragkit eval retrieval --compare` all call it; the
evaluation reads the rankings it records (`Retrieved.rankings`) instead of re-running stages.

A metadata filter (`MetadataFilter`) applies inside dense and sparse search, before fusion:
the vector store translates it itself (faiss: the store's row mask; chroma: `where`), BM25 gets
the store's row mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragkit.config import RetrievalConfig
from ragkit.indexes.filters import MetadataFilter
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.protocols import Embedder, Fused, Fusion, QueryTransform, QueryVariant, Ranking, Reranker
from ragkit.retrieval.fusion import merge_duplicates
from ragkit.retrieval.transforms import fuse_variants
from ragkit.schema import Hit, RetrieverScore, Trace

# A filter as accepted everywhere: a parsed MetadataFilter, a Mongo-like mapping or its JSON text.
FilterSpec = MetadataFilter | Mapping[str, Any] | str


@dataclass
class Retrieved:
    """One question's result: the final `hits` and each stage's ranking of rows, best first.

    `rankings` keys: "dense", "sparse", "fused", then "fused+<transform>" when a query transform
    added searches, then "...+rerank" when a reranker reordered the head. `final` names the
    ranking the hits come from."""

    question: str
    hits: list[Hit] = field(default_factory=list)
    rankings: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    final: str = "fused"


class Retriever:
    """Runs the retrieval stages of a pipeline over one index snapshot."""

    def __init__(
        self,
        snapshot: IndexSnapshot,
        embedder: Embedder,
        config: RetrievalConfig,
        fusion: Fusion,
        transform: QueryTransform,
        reranker: Reranker,
    ) -> None:
        self.snapshot = snapshot
        self.embedder = embedder
        self.config = config
        self.fusion = fusion
        self.transform = transform
        self.reranker = reranker
        self.analyzer = snapshot.sparse_backend.analyzer

    @property
    def transformed(self) -> str | None:
        """The name of the "fused+transform" ranking, or None without a query transform."""
        return None if self.transform.name == "none" else f"fused+{self.transform.name}"

    def variant_names(self) -> list[str]:
        """Every ranking `search` records, in stage order."""
        names = ["sparse", "dense", "fused"]
        if self.transformed:
            names.append(self.transformed)
        if self.reranker.depth:
            names += ["fused+rerank"] + ([f"{self.transformed}+rerank"] if self.transformed else [])
        return names

    def search(
        self,
        questions: Sequence[str],
        trace: Trace,
        top_k: int | None = None,
        filter: FilterSpec | None = None,
        depth: int | None = None,
        compare: bool = False,
    ) -> list[Retrieved]:
        """Hits for each question (`top_k`, default the pipeline's). `depth`: candidates taken
        from each retriever and kept in every ranking (default: the pipeline's dense_k/sparse_k).
        `compare`: also rerank the plain fused list when a transform is configured (for
        `eval retrieval --compare`; otherwise only the final ranking is reranked)."""
        top_k = top_k or self.config.top_k
        results = [Retrieved(q) for q in questions]
        if not questions:
            return results
        flt, allowed = self._filter(filter, trace)
        if allowed is not None and not allowed.any():
            trace.warn(f"the metadata filter matched 0 of {len(allowed)} chunks: nothing to retrieve")
            return results
        dense_k = depth or self.config.dense_k
        sparse_k = depth or self.config.sparse_k
        plain = [QueryVariant.plain(q) for q in questions]
        fused_lists: dict[str, list[Fused]] = {}  # keeps each retriever's rank and score for the hits
        for result, (dense, sparse, fused) in zip(results, self._search_variants(plain, dense_k, sparse_k, flt, allowed, trace)):
            result.rankings.update(dense=dense, sparse=sparse, fused=[(f.row, f.score) for f in fused])
            fused_lists[result.question] = fused
            if not sparse and len(questions) == 1:
                trace.warn("sparse retrieval matched no chunk (no query term occurs in the index)")
        final = {r.question: "fused" for r in results}
        if self.transformed:
            for result, transformed in zip(results, self._transform(questions, fused_lists, dense_k, sparse_k, flt, allowed, trace)):
                result.rankings[self.transformed] = [(f.row, f.score) for f in transformed]
                fused_lists[result.question] = transformed
                final[result.question] = self.transformed
        depth_of_rerank = self.reranker.depth
        for result in results:
            ranking = fused_lists[result.question]
            candidates = self.hits(ranking[: max(top_k, depth_of_rerank)])
            with trace.stage("rerank"):
                head = self.reranker.rerank(result.question, candidates, trace)
            if depth_of_rerank:
                name = f"{final[result.question]}+rerank"
                result.rankings[name] = _reranked(candidates, head, ranking, depth_of_rerank)
                final[result.question] = name
                if compare and self.transformed:  # the plain fused list reranked too
                    fused_only = _as_fused(result.rankings)
                    fused_candidates = self.hits(fused_only[:depth_of_rerank])
                    with trace.stage("rerank"):
                        fused_head = self.reranker.rerank(result.question, fused_candidates, trace)
                    result.rankings["fused+rerank"] = _reranked(fused_candidates, fused_head, fused_only, depth_of_rerank)
            result.final = final[result.question]
            result.hits = head[:top_k]
        return results

    # --- stages ----------------------------------------------------------------------------------

    def _filter(self, filter: FilterSpec | None, trace: Trace) -> tuple[MetadataFilter | None, np.ndarray | None]:
        if filter is None:
            return None, None
        with trace.stage("filter"):
            flt = MetadataFilter.parse(filter)
            if flt.matches_all:
                return None, None
            return flt, self.snapshot.store.filter_mask(flt)

    def _search_variants(
        self,
        variants: Sequence[QueryVariant],
        dense_k: int,
        sparse_k: int,
        flt: MetadataFilter | None,
        allowed: np.ndarray | None,
        trace: Trace,
    ) -> list[tuple[list[tuple[int, float]], list[tuple[int, float]], list[Fused]]]:
        """(dense, sparse, fused) per variant: one embedding call, one dense and one sparse
        search for them all, then duplicates merged and each pair fused."""
        with trace.stage("dense"):
            vectors = self._query_vectors(variants)
            dense = self.snapshot.dense.search(vectors, dense_k, flt)
        with trace.stage("sparse"):
            sparse = self.snapshot.sparse.search_batch([self.analyzer(v.sparse_text) for v in variants], sparse_k, allowed)
        out = []
        with trace.stage("fusion"):
            for (d_rows, d_scores), (s_rows, s_scores) in zip(dense, sparse):
                rankings: dict[str, Ranking] = {
                    "dense": [(int(r), float(s)) for r, s in zip(d_rows, d_scores)],
                    "sparse": [(int(r), float(s)) for r, s in zip(s_rows, s_scores)],
                }
                merged = self.merged(rankings)
                out.append((list(merged["dense"]), list(merged["sparse"]), self.fusion.fuse(merged)))
        return out

    def _query_vectors(self, variants: Sequence[QueryVariant]) -> np.ndarray:
        """One query vector per variant: the mean of its texts' embeddings (re-normalised when the
        embedder normalises, so inner products stay cosines). A single text is embedded alone on
        the calling thread (`embed_query`)."""
        texts = [text for variant in variants for text in variant.dense_texts]
        if len(texts) == 1:
            return np.asarray(self.embedder.embed_query(texts[0]), dtype=np.float32).reshape(1, -1)
        embedded = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        vectors, start = [], 0
        for variant in variants:
            part = embedded[start : start + len(variant.dense_texts)]
            start += len(variant.dense_texts)
            mean = part.mean(axis=0)
            if len(part) > 1 and np.allclose(np.linalg.norm(part, axis=1), 1.0, atol=1e-3):
                mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
            vectors.append(mean)
        return np.stack(vectors).astype(np.float32)

    def _transform(
        self,
        questions: Sequence[str],
        fused_lists: Mapping[str, list[Fused]],
        dense_k: int,
        sparse_k: int,
        flt: MetadataFilter | None,
        allowed: np.ndarray | None,
        trace: Trace,
    ) -> list[list[Fused]]:
        """Each question's fused ranking under the query transform: its variants (LLM calls, one
        question at a time) searched in one batch, the lists fused again by RRF."""
        per_question = [self.transform.variants(q, trace) for q in questions]
        extra = [v for q, vs in zip(questions, per_question) for v in vs if v != QueryVariant.plain(q)]
        searched: list[list[Fused]] = []
        if extra:
            with trace.stage("transform_retrieval"):
                searched = [fused for _, _, fused in self._search_variants(extra, dense_k, sparse_k, flt, allowed, trace)]
        found = iter(searched)
        out = []
        for question, variants in zip(questions, per_question):
            lists = [fused_lists[question] if v == QueryVariant.plain(question) else next(found) for v in variants]
            out.append(fuse_variants(variants, lists, self.transform.rrf_k))
        return out

    def merged(self, rankings: dict[str, Ranking]) -> dict[str, Ranking]:
        """`rankings` with identical chunk texts merged (when configured; see `merge_duplicates`)."""
        if not self.config.merge_duplicates:
            return rankings
        rows = [row for ranking in rankings.values() for row, _ in ranking]
        return merge_duplicates(rankings, self.snapshot.store.text_hashes(rows))

    def hits(self, fused: list[Fused]) -> list[Hit]:
        chunks = self.snapshot.store.chunks_by_rows([f.row for f in fused])
        hits = []
        for rank, (entry, chunk) in enumerate(zip(fused, chunks), start=1):
            retrievers = dict(entry.retrievers)
            retrievers["fusion"] = RetrieverScore(rank=rank, score=entry.score)
            hits.append(Hit(chunk=chunk, score=entry.score, retrievers=retrievers))
        return hits


def _as_fused(rankings: Mapping[str, list[tuple[int, float]]]) -> list[Fused]:
    return [Fused(row, score) for row, score in rankings["fused"]]



def _reranked(candidates: list[Hit], reranked: list[Hit], ranking: list[Fused], depth: int) -> list[tuple[int, float]]:
    """`ranking` with its first `depth` rows in the reranker's order. Scores by position: the
    reranker's order is the ranking (an LLM reranker leaves unscored hits in place among scored
    ones, so hit scores need not decrease down the list); the rest keeps its fused order below."""
    row_of = {hit.chunk.id: f.row for hit, f in zip(candidates, ranking)}  # candidates are in ranking order
    rows = [row_of[hit.chunk.id] for hit in reranked[:depth]]
    rest = [f.row for f in ranking[depth:]]
    return [(row, float(-i)) for i, row in enumerate(rows + rest)]
