"""Retrieval evaluation on a BEIR dataset: index the corpus, run the queries, score the run.

Documents are the dataset's passages (id = the dataset's `_id`, text = title + text); chunk
hits are mapped to their document (a document ranks at its best chunk). Every variant comes
from the same index and the same candidate lists, so differences are due to the stage alone:

    sparse         BM25 only
    dense          embeddings only
    fused          the pipeline's fusion of both
    fused+rerank   the pipeline's reranker over the fused top `rerank.top_n` (the rest keeps
                   its fused order below them); equals `fused` when no reranker can be loaded

Metrics come from `ragkit.eval.metrics` (identical to ranx's definitions).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from ragkit.config import PipelineConfig
from ragkit.eval.datasets import BeirDataset, load_beir
from ragkit.eval.metrics import DatasetError, Qrels, Run, evaluate
from ragkit.retrieval.fusion import Fused, fuse
from ragkit.schema import Document, Trace

if TYPE_CHECKING:
    from ragkit.api import RAG
    from ragkit.indexes.writer import Progress
    from ragkit.retrieval.hybrid import HybridRetriever

DEFAULT_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")
VARIANTS = ("sparse", "dense", "fused", "fused+rerank")
RUN_DEPTH = 100  # documents per query in the run (enough for every @100 metric)


class RetrievalEvaluation(BaseModel):
    dataset: str
    pipeline: str
    queries: int
    metrics: dict[str, float]
    timings: dict[str, float]
    variants: dict[str, dict[str, float]] | None = None
    warnings: list[str] = Field(default_factory=list)

    def to_json_dict(self) -> dict:
        data = self.model_dump(exclude_none=True)
        if self.variants is not None:
            data.pop("metrics")  # with --compare the variants are the result
        return data


def beir_documents(dataset: BeirDataset, corpus_path: Path) -> list[Document]:
    """One Document per passage, keyed by the dataset's own id (so runs use `_id`s)."""
    documents = []
    for doc_id, passage in dataset.corpus.items():
        title, text = passage.get("title", ""), passage.get("text", "")
        body = f"{title}\n\n{text}" if title else text
        if body.strip():
            documents.append(
                Document(id=doc_id, source=str(corpus_path), text=body, metadata={"title": title})
            )
    return documents


def cache_dir_for(dataset_dir: Path, config: PipelineConfig, root: Path = Path(".ragkit/eval")) -> Path:
    """Where the index for (dataset, index-shaping pipeline settings) is cached."""
    corpus = dataset_dir / "corpus.jsonl"
    if not corpus.is_file():
        raise DatasetError(
            f"{dataset_dir}: no corpus.jsonl; expected a BEIR directory "
            "(corpus.jsonl, queries.jsonl, qrels/<split>.tsv)"
        )
    digest = hashlib.sha256()
    digest.update(str(corpus.resolve()).encode())
    stat = corpus.stat()
    digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    digest.update(repr(sorted(config.index_signature().items())).encode())
    return root / f"{dataset_dir.resolve().name}-{digest.hexdigest()[:12]}"


def select_queries(dataset: BeirDataset, max_queries: int | None) -> list[str]:
    """Queries that have relevance judgements, in file order, at most `max_queries`."""
    judged = [q for q in dataset.queries if q in dataset.qrels]
    return judged[:max_queries] if max_queries else judged


def _doc_run(fused_rows: Sequence[tuple[int, float]], doc_of_row: Sequence[str]) -> dict[str, float]:
    """Chunk ranking -> document ranking: a document takes the score of its best chunk."""
    run: dict[str, float] = {}
    for row, score in fused_rows:
        doc_id = doc_of_row[row]
        if doc_id not in run:
            run[doc_id] = score
            if len(run) == RUN_DEPTH:
                break
    return run


def evaluate_retrieval(
    dataset_dir: str | Path,
    rag: RAG,
    max_queries: int | None = None,
    compare: bool = False,
    run_out: str | Path | None = None,
    split: str = "test",
    batch_size: int = 64,
    metrics: Sequence[str] = DEFAULT_METRICS,
    on_progress: Callable[[str, int, int], None] | None = None,
    ingest_progress: Progress | None = None,
) -> RetrievalEvaluation:
    """Index `dataset_dir`'s corpus into `rag`'s index (incremental: a no-op when cached),
    run its queries and score them. `on_progress(stage, done, total)` reports query progress,
    `ingest_progress` the indexing."""
    dataset_dir = Path(dataset_dir)
    dataset = load_beir(dataset_dir, split=split)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    stats = rag.ingest_documents(beir_documents(dataset, dataset_dir / "corpus.jsonl"), ingest_progress)
    timings["ingest_s"] = time.perf_counter() - started
    timings["texts_embedded"] = float(stats.texts_embedded)

    query_ids = select_queries(dataset, max_queries)
    if not query_ids:
        raise ValueError(f"{dataset_dir}: no query has relevance judgements in split {split!r}")
    retriever = rag.retriever()
    doc_of_row = retriever.snapshot.store.doc_ids_by_row()
    depth = max(RUN_DEPTH * 3, retriever.config.dense_k, retriever.config.sparse_k)  # chunks -> 100 docs
    wanted = list(VARIANTS) if compare else ["fused+rerank" if retriever.rerank_depth else "fused"]
    runs: dict[str, dict[str, dict[str, float]]] = {name: {} for name in wanted}
    trace = Trace()
    per_query_ms: list[float] = []

    started = time.perf_counter()
    for begin in range(0, len(query_ids), batch_size):
        batch = query_ids[begin : begin + batch_size]
        questions = [dataset.queries[q] for q in batch]
        batch_started = time.perf_counter()
        candidates = retriever.candidates(questions, dense_k=depth, sparse_k=depth)
        for query_id, question, found in zip(batch, questions, candidates):
            fused = fuse(found, retriever.config.fusion)
            if "sparse" in runs:
                runs["sparse"][query_id] = _doc_run(found["sparse"], doc_of_row)
            if "dense" in runs:
                runs["dense"][query_id] = _doc_run(found["dense"], doc_of_row)
            if "fused" in runs:
                runs["fused"][query_id] = _doc_run([(f.row, f.score) for f in fused], doc_of_row)
            if "fused+rerank" in runs:
                runs["fused+rerank"][query_id] = _doc_run(_reranked(retriever, question, fused, trace), doc_of_row)
        per_query_ms.append((time.perf_counter() - batch_started) * 1000 / len(batch))
        if on_progress:
            on_progress("queries", begin + len(batch), len(query_ids))
    timings["query_s"] = time.perf_counter() - started
    timings["query_ms_mean"] = timings["query_s"] * 1000 / len(query_ids)
    timings["query_ms_median_batch"] = statistics.median(per_query_ms)
    timings["queries_per_s"] = len(query_ids) / timings["query_s"] if timings["query_s"] else 0.0

    qrels = Qrels({q: dataset.qrels[q] for q in query_ids})
    scored = {name: evaluate(qrels, Run(run), list(metrics)) for name, run in runs.items()}
    main_variant = "fused+rerank" if retriever.rerank_depth else "fused"
    if run_out is not None:
        Run(runs[main_variant]).to_trec(run_out, tag=f"ragkit-{rag.config.name}")
    return RetrievalEvaluation(
        dataset=dataset_dir.name,
        pipeline=rag.config.name,
        queries=len(query_ids),
        metrics=scored[main_variant],
        timings=timings,
        variants=scored if compare else None,
        warnings=sorted(set(trace.warnings)),
    )


def _reranked(retriever: HybridRetriever, question: str, fused: list[Fused], trace: Trace) -> list[tuple[int, float]]:
    """The fused ranking with its top `rerank_depth` reordered by the reranker."""
    depth = retriever.rerank_depth
    head = retriever.hits(fused[:depth])
    reranked = retriever.reranker.rerank(question, head, trace)
    if reranked is head:  # reranker unavailable (warning in trace): the fused order stands
        return [(f.row, f.score) for f in fused]
    row_of_chunk = {hit.chunk.id: f.row for hit, f in zip(head, fused)}
    ranked = [(row_of_chunk[hit.chunk.id], float(hit.score)) for hit in reranked]
    # Rows below the reranked head keep their fused order, scored below every head row.
    floor = min((score for _, score in ranked), default=0.0)
    ranked += [(f.row, floor - 1.0 - i) for i, f in enumerate(fused[depth:])]
    return ranked
