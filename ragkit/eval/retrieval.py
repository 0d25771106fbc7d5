"""Retrieval evaluation on a BEIR dataset: index the corpus, run the queries, score the run.

Documents are the dataset's passages (id = the dataset's `_id`, text = title + text); chunk
hits are mapped to their document (a document ranks at its best chunk). Every variant comes
from one run of the retrieval path (ragkit.retrieval.search), which records each stage's
ranking, so differences are due to the stage alone:

    sparse         BM25 only
    dense          embeddings only
    fused          the pipeline's fusion of both
    fused+rerank   the pipeline's reranker over the fused top `rerank.top_n` (the rest keeps
                   its fused order below them); only with a reranker
    fused+T        with the pipeline's query transform T (`multi-query`, `hyde`; only when one
                   is configured): the question's fused list plus the transform's searches
    fused+T+rerank the reranker over `fused+T` (when both are configured)

LLM replies (transforms, LLM rerank) are cached in `llm_cache` (SQLite, keyed by the generator
settings and the exact prompt), so a re-run with the same model and prompts asks the LLM nothing.

Metrics come from `ragkit.eval.metrics` (identical to ranx's definitions).
"""

from __future__ import annotations

import hashlib
import re
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from ragkit.config import PipelineConfig
from ragkit.eval.datasets import BeirDataset, load_beir
from ragkit.eval.metrics import DatasetError, Qrels, Run, evaluate
from ragkit.progress import Progress
from ragkit.retrieval.chat import CachedChatModel
from ragkit.schema import Document, Trace

if TYPE_CHECKING:
    from ragkit.api import RAG

DEFAULT_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")
VARIANTS = ("sparse", "dense", "fused", "fused+rerank")
RUN_DEPTH = 100  # documents per query in the run (enough for every @100 metric)
QUERIES = "queries"  # the progress counter


class RetrievalEvaluation(BaseModel):
    dataset: str
    pipeline: str
    queries: int
    metrics: dict[str, float]
    timings: dict[str, float]
    variants: dict[str, dict[str, float]] | None = None
    main_variant: str = "fused"  # the variant the whole pipeline runs (`metrics`, the run file)
    fusion: dict[str, Any] = Field(default_factory=dict, description="the fusion method and its parameters, as used")
    fusion_weights: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="each retriever's fusion weight over the queries: mean, p10, median, p90"
    )
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
    progress: Progress | None = None,
    llm_cache: str | Path | None = None,
) -> RetrievalEvaluation:
    """Index `dataset_dir`'s corpus into `rag`'s index (incremental: a no-op when cached),
    run its queries and score them. `progress` gets the indexing and a "queries" counter."""
    dataset_dir = Path(dataset_dir)
    dataset = load_beir(dataset_dir, split=split)
    timings: dict[str, float] = {}
    progress = progress or Progress("eval retrieval")

    started = time.perf_counter()
    progress.set_phase(f"indexing {dataset_dir.name}'s corpus (cached after the first run)")
    stats = rag.ingest_documents(beir_documents(dataset, dataset_dir / "corpus.jsonl"), progress)
    timings["ingest_s"] = time.perf_counter() - started
    timings["texts_embedded"] = float(stats.texts_embedded)

    query_ids = select_queries(dataset, max_queries)
    if not query_ids:
        raise DatasetError(f"{dataset_dir}: no query has relevance judgements in split {split!r}")
    if llm_cache is not None and rag.llm_cache is None:
        rag.llm_cache = Path(llm_cache)
    retriever = rag.retriever()
    doc_of_row = retriever.snapshot.store.doc_ids_by_row()
    depth = max(RUN_DEPTH * 3, retriever.config.dense_k, retriever.config.sparse_k)  # chunks -> 100 docs
    available = retriever.variant_names()
    main_variant = available[-1]  # the whole pipeline: the last stage that ran
    wanted = available if compare else [main_variant]
    runs: dict[str, dict[str, dict[str, float]]] = {name: {} for name in wanted}
    trace = Trace()
    per_query_ms: list[float] = []
    weights: dict[str, list[float]] = {}
    progress.set_phase(f"running {len(query_ids)} queries ({', '.join(wanted)})")
    progress.counter(QUERIES, "queries", total=len(query_ids))

    started = time.perf_counter()
    # LLM stages (transforms, LLM rerank) make each query slow: smaller batches, so progress moves.
    step = 1 if retriever.transformed or rag.config.retrieval.rerank.uses_chat_model else batch_size
    for begin in range(0, len(query_ids), step):
        batch = query_ids[begin : begin + step]
        batch_started = time.perf_counter()
        results = retriever.search([dataset.queries[q] for q in batch], trace, top_k=1, depth=depth, compare=compare)
        for query_id, result in zip(batch, results):
            for name in wanted:
                runs[name][query_id] = _doc_run(result.rankings[name], doc_of_row)
            used = retriever.fusion.weights({r: result.rankings[r] for r in ("dense", "sparse")})
            for retriever_name, weight in used.items():
                weights.setdefault(retriever_name, []).append(weight)
        progress.advance(QUERIES, len(batch))
        per_query_ms.append((time.perf_counter() - batch_started) * 1000 / len(batch))
    progress.finish(QUERIES)
    timings["query_s"] = time.perf_counter() - started
    timings["query_ms_mean"] = timings["query_s"] * 1000 / len(query_ids)
    timings["query_ms_median_batch"] = statistics.median(per_query_ms)
    timings["queries_per_s"] = len(query_ids) / timings["query_s"] if timings["query_s"] else 0.0
    for stage in ("query_transform", "transform_retrieval", "llm_rerank"):  # LLM stages, per query
        if stage in trace.stages:
            timings[f"{stage}_ms_mean"] = trace.stages[stage].ms / len(query_ids)
    if isinstance(rag.chat_model, CachedChatModel):
        timings["llm_cache_hits"] = float(rag.chat_model.hits)
        timings["llm_requests"] = float(rag.chat_model.misses)

    qrels = Qrels({q: dataset.qrels[q] for q in query_ids})
    scored = {name: evaluate(qrels, Run(run), list(metrics)) for name, run in runs.items()}
    if run_out is not None:
        Run(runs[main_variant]).to_trec(run_out, tag=f"ragkit-{rag.config.name}")
    return RetrievalEvaluation(
        dataset=dataset_dir.name,
        pipeline=rag.config.name,
        queries=len(query_ids),
        metrics=scored[main_variant],
        main_variant=main_variant,
        timings=timings,
        variants=scored if compare else None,
        fusion=retriever.fusion.describe(),
        fusion_weights={name: summarise_weights(values) for name, values in weights.items()},
        warnings=summarise_warnings(trace.warnings),
    )


def summarise_weights(values: Sequence[float]) -> dict[str, float]:
    """Mean and 10th/50th/90th percentiles of one retriever's per-query fusion weights."""
    ordered = sorted(values)
    at = lambda p: ordered[min(len(ordered) - 1, int(p * len(ordered)))]
    return {"mean": statistics.fmean(ordered), "p10": at(0.1), "median": at(0.5), "p90": at(0.9)}


def describe_weights(summary: dict[str, dict[str, float]]) -> str:
    """"dense 0.75, sparse 0.25 (every query)" or "dense median 0.71 (10-90%: 0.55-0.80), ..."."""
    parts = []
    fixed = all(s["p10"] == s["p90"] for s in summary.values())
    for name, s in summary.items():
        if fixed:
            parts.append(f"{name} {s['median']:.2f}")
        else:
            parts.append(f"{name} median {s['median']:.2f} (10-90%: {s['p10']:.2f}-{s['p90']:.2f}, mean {s['mean']:.2f})")
    return ", ".join(parts) + (" (every query)" if fixed else " per query")


def summarise_warnings(warnings: Sequence[str]) -> list[str]:
    """One line per kind of warning: per-query warnings differ only in numbers and in the
    details they give in parentheses (the model's reply, the error), so those are grouped,
    showing the first one and how many more there were."""
    groups: dict[str, list[str]] = {}
    for warning in warnings:
        kind = re.sub(r"\d+", "N", re.sub(r"\(.*\)", "()", warning, flags=re.DOTALL))
        groups.setdefault(kind, []).append(warning)
    return sorted(
        f"{group[0]} (and {len(group) - 1} more like it)" if len(set(group)) > 1 else group[0]
        for group in groups.values()
    )
