"""Running a suite: every dataset x pipeline pair, its retrieval and answer metrics."""

from __future__ import annotations

import hashlib
import json
import platform
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ragkit.components import build, component
from ragkit.config import (
    PipelineConfig,
    PipelineError,
    load_pipeline,
    merge_overrides,
    parse_pipeline,
    read_yaml_mapping,
)
from ragkit.eval.answers import is_abstention, strip_citations
from ragkit.eval.datasets import load_beir
from ragkit.eval.metrics import Qrels, Run, evaluate, parse_metric
from ragkit.eval.suite.report import write_report
from ragkit.eval.suite.spec import (
    DatasetSpec,
    PairResult,
    PipelineSpec,
    SuiteError,
    SuiteResult,
    check_thresholds,
    is_retrieval_metric,
    load_questions,
    load_suite,
)
from ragkit.progress import Progress
from ragkit.protocols import AnswerMetric, AnswerSample
from ragkit.schema import Trace

if TYPE_CHECKING:
    from ragkit.api import RAG

_FULL_RUN_DEPTH = 100  # chunks retrieved for a retrieval metric without "@k"


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _pipeline_label(value: str | PipelineSpec) -> str:
    if isinstance(value, str):
        return value
    return f"{value.path} (as {value.name!r}, override {json.dumps(value.override, sort_keys=True)})"


def _load_suite_pipeline(base: Path, value: str | PipelineSpec) -> PipelineConfig:
    if isinstance(value, str):
        return load_pipeline(_resolve(base, value))
    path = _resolve(base, value.path)
    # The one YAML reader: its errors give the position, never the line (which may hold a key).
    raw = read_yaml_mapping(path, "pipeline", PipelineError)
    merged = merge_overrides(raw, value.override)
    if isinstance(merged, dict):
        merged["name"] = value.name
    return parse_pipeline(merged, origin=f"{path} with the suite's override for {value.name!r}")


_CITATION_RUN = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]\s*")


def _claims_text(answer: str) -> str:
    """The answer as the faithfulness scorer sees it: a citation marker ends what was taken from one
    context block, so it becomes a line break (a sentence boundary) rather than disappearing."""
    return _CITATION_RUN.sub("\n", answer).strip()


def _sample(items: list[Any], n: int | None, seed: int) -> list[Any]:
    if n is None or n >= len(items):
        return list(items)
    picked = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in picked]


def _share_models(rag: RAG, previous: list[RAG]) -> None:
    """Reuse an already loaded embedding model of an earlier pipeline with the same embedder."""
    for other in previous:
        if other.config.dense.embedder == rag.config.dense.embedder and "embedder" in other.__dict__:
            rag.__dict__["embedder"] = other.embedder
            return


class _Item(BaseModel):
    """A question to evaluate, whatever the dataset kind."""

    id: str
    question: str
    expected: list[str]  # expected sources (resolved paths) or BEIR passage ids; [] = unanswerable
    references: list[str]  # acceptable answers
    keywords: list[str]


def _retrieval_metrics_questions(
    rag: RAG, items: list[_Item], metrics: list[str], trace: Trace
) -> tuple[dict[str, float], int]:
    judged = [item for item in items if item.expected]
    if not metrics or not judged:
        return {}, len(judged)
    cutoffs = [parse_metric(m)[1] for m in metrics]
    if any(k is None for k in cutoffs):
        depth = _FULL_RUN_DEPTH
    else:
        depth = max([rag.config.retrieval.top_k, *(k for k in cutoffs if k is not None)])
    run: dict[str, dict[str, float]] = {}
    for item in judged:
        ranked: dict[str, float] = {}
        for hit in rag.retrieve(item.question, top_k=depth, trace=trace):
            source = str(Path(hit.chunk.source).resolve())
            ranked.setdefault(source, 1.0 / (len(ranked) + 1))  # a file ranks at its best chunk
        run[item.id] = ranked
    qrels = Qrels({item.id: {source: 1 for source in item.expected} for item in judged})
    return evaluate(qrels, Run(run), metrics), len(judged)


def _answer_metrics(
    rag: RAG, items: list[_Item], wanted: list[str], kind: str, root: Path | None, trace: Trace,
    on_progress: Callable[[str], None], progress: Progress,
) -> tuple[dict[str, float | None], dict[str, int], list[dict[str, Any]], dict[str, float]]:
    """Answer `items` with the pipeline, then score the answers with every wanted answer metric
    (registered components of stage "answer_metric")."""
    started = time.perf_counter()
    answers = []
    on_progress(f"answering {len(items)} questions")
    progress.counter("questions answered", "questions", total=len(items))
    for item in items:
        answer = rag.query(item.question)
        trace.warnings.extend(answer.trace.warnings)
        answers.append(answer)
        progress.advance("questions answered")
    progress.finish("questions answered")
    generate_s = time.perf_counter() - started

    def shown(source: str) -> str:
        if root is None:
            return source
        try:
            return Path(source).resolve().relative_to(root).as_posix()
        except ValueError:
            return source

    samples: list[AnswerSample] = []
    for item, answer in zip(items, answers):
        text = strip_citations(answer.text)
        samples.append(
            AnswerSample(
                question=item.question,
                answer=text,
                abstained=is_abstention(text),
                hits=answer.hits,
                retrieved_sources=[
                    str(Path(h.chunk.source).resolve()) if kind == "questions" else h.chunk.doc_id for h in answer.hits
                ],
                expected_sources=list(item.expected),
                references=list(item.references),
                keywords=list(item.keywords),
                claims_text=_claims_text(answer.text),
            )
        )
    started = time.perf_counter()
    metrics: dict[str, float | None] = {}
    per_sample: dict[str, list[float | None]] = {}
    for name in [m for m in wanted if not is_retrieval_metric(m)]:
        on_progress(f"scoring {name} of {len(samples)} answers")
        metric_component = component("answer_metric", name)
        metric: AnswerMetric = build("answer_metric", metric_component.default_config(), embedder=rag.embedder)
        values = metric.score(samples)
        per_sample[name] = values
        metrics[name] = metric.aggregate(samples, values)
    metrics_s = time.perf_counter() - started

    records: list[dict[str, Any]] = []
    for i, (item, answer, sample) in enumerate(zip(items, answers, samples)):
        record: dict[str, Any] = {
            "id": item.id,
            "question": item.question,
            "answer": answer.text,
            "abstained": sample.abstained,
            "expected_sources": [shown(s) for s in item.expected],
            "retrieved_sources": [shown(s) for s in sample.retrieved_sources],
        }
        if item.references:
            record["references"] = item.references
        if item.keywords:
            record["keywords"] = item.keywords
        for name, values in per_sample.items():
            if values[i] is not None:
                record[name] = values[i]
        result = sample.details.get("faithfulness")
        if result is not None:
            record["unsupported_claims"] = [
                {"text": c.text, "score": round(c.score, 4), "evidence": c.evidence} for c in result.claims if not c.supported
            ]
        records.append(record)
    counts = {
        "sampled": len(items),
        "answered": sum(not s.abstained for s in samples),
        "unanswerable": sum(not item.expected for item in items),
        "with_reference": sum(bool(item.references or item.keywords) for item in items),
        "faithfulness_scored": sum(s.details.get("faithfulness") is not None for s in samples),
        "claims": sum(len(s.details["faithfulness"].claims) for s in samples if s.details.get("faithfulness") is not None),
    }
    timings = {
        "generate_s": generate_s,
        "answer_ms_mean": generate_s * 1000 / len(items) if items else 0.0,
        "faithfulness_s": metrics_s,
    }
    return metrics, counts, records, timings


def _warning_lines(trace: Trace) -> list[str]:
    counted = Counter(trace.warnings)
    return [f"{w} (x{n})" if n > 1 else w for w, n in sorted(counted.items())]


def _run_questions(
    spec: DatasetSpec, base: Path, rag_for: Callable[[Path], RAG], wanted: list[str],
    cache_root: Path, config: PipelineConfig, on_progress: Callable[[str], None], progress: Progress,
) -> tuple[dict[str, float | None], dict[str, int], list[dict[str, Any]], dict[str, float], list[str]]:
    questions = load_questions(_resolve(base, spec.path))
    root = _resolve(base, spec.sources_root) if spec.sources_root else base.resolve()
    corpus = [_resolve(base, p) for p in spec.corpus or []]
    for path in corpus:
        if not path.exists():
            raise SuiteError(f"dataset {spec.name!r}: corpus path not found: {path}")
    digest = hashlib.sha256(repr([str(p) for p in corpus]).encode())
    digest.update(repr(sorted(config.index_signature().items())).encode())
    digest.update(config.loader.model_dump_json().encode())  # which files get in is part of the index too
    rag = rag_for(cache_root / f"{spec.name}-{digest.hexdigest()[:12]}")
    trace = Trace()
    timings: dict[str, float] = {}
    warnings: list[str] = []

    on_progress(f"ingesting {', '.join(str(p) for p in corpus)}")
    started = time.perf_counter()
    report = rag.ingest(corpus, prune=True, progress=progress)
    timings["ingest_s"] = time.perf_counter() - started
    timings["texts_embedded"] = float(report.index.texts_embedded)
    warnings += [f"corpus file failed to load: {f.path}: {f.reason}" for f in report.failures]

    used = questions[: spec.max_queries] if spec.max_queries else questions
    items = [
        _Item(
            id=q.id,
            question=q.question,
            expected=[str((root / s).resolve()) for s in q.expected_sources()],
            references=[q.answer] if q.answer else [],
            keywords=list(q.keywords),
        )
        for q in used
    ]
    retrieval = [m for m in wanted if is_retrieval_metric(m)]
    on_progress(f"retrieval metrics over {sum(bool(i.expected) for i in items)} questions")
    started = time.perf_counter()
    scored, judged = _retrieval_metrics_questions(rag, items, retrieval, trace)
    timings["retrieval_s"] = time.perf_counter() - started

    sample = _sample(items, spec.sample_questions, spec.seed)
    answer_metrics, counts, samples, answer_timings = _answer_metrics(
        rag, sample, wanted, "questions", root, trace, on_progress, progress
    )
    timings.update(answer_timings)
    metrics: dict[str, float | None] = {m: scored.get(m) for m in retrieval}
    metrics.update({m: answer_metrics.get(m) for m in wanted if not is_retrieval_metric(m)})
    counts = {"questions": len(items), "retrieval_queries": judged, **counts}
    rag.close()
    return metrics, counts, samples, timings, warnings + _warning_lines(trace)


def _run_beir(
    spec: DatasetSpec, base: Path, rag_for: Callable[[Path], RAG], wanted: list[str],
    cache_root: Path, config: PipelineConfig, on_progress: Callable[[str], None], progress: Progress,
) -> tuple[dict[str, float | None], dict[str, int], list[dict[str, Any]], dict[str, float], list[str]]:
    from ragkit.eval.retrieval import DEFAULT_METRICS, cache_dir_for, evaluate_retrieval, select_queries

    dataset_dir = _resolve(base, spec.path)
    rag = rag_for(cache_dir_for(dataset_dir, config, root=cache_root))
    retrieval = [m for m in wanted if is_retrieval_metric(m)]
    on_progress(f"retrieval on {dataset_dir} (indexing its corpus first unless cached)")
    evaluation = evaluate_retrieval(
        dataset_dir, rag, max_queries=spec.max_queries, split=spec.split,
        metrics=retrieval or list(DEFAULT_METRICS), progress=progress,
    )
    timings = dict(evaluation.timings)
    dataset = load_beir(dataset_dir, split=spec.split)
    query_ids = select_queries(dataset, spec.max_queries)
    items = [
        _Item(
            id=q,
            question=dataset.queries[q],
            expected=[d for d, grade in dataset.qrels[q].items() if grade >= 1],
            references=list(dataset.answers.get(q, [])),
            keywords=[],
        )
        for q in query_ids
    ]
    trace = Trace(warnings=list(evaluation.warnings))
    sample = _sample(items, spec.sample_questions, spec.seed)
    answer_metrics, counts, samples, answer_timings = _answer_metrics(
        rag, sample, wanted, "beir", None, trace, on_progress, progress
    )
    timings.update(answer_timings)
    metrics: dict[str, float | None] = {m: evaluation.metrics.get(m) for m in retrieval}
    metrics.update({m: answer_metrics.get(m) for m in wanted if not is_retrieval_metric(m)})
    counts = {"questions": len(items), "retrieval_queries": evaluation.queries, **counts}
    rag.close()
    return metrics, counts, samples, timings, _warning_lines(trace)


def _run_qa(
    spec: DatasetSpec, base: Path, rag_for: Callable[[Path], RAG], wanted: list[str],
    cache_root: Path, config: PipelineConfig, on_progress: Callable[[str], None], progress: Progress,
) -> tuple[dict[str, float | None], dict[str, int], list[dict[str, Any]], dict[str, float], list[str]]:
    """A BEIR directory with answers, asked end to end (`ragkit eval qa`; ragkit/eval/qa.py)."""
    from ragkit.eval.qa import evaluate_qa

    def report_progress(stage: str, done: int, total: int) -> None:
        counter = progress.counter(stage, "questions", total)
        progress.advance(stage, done - counter.done)

    on_progress(f"answering the questions of {spec.path} (indexing its corpus first unless cached)")
    evaluation = evaluate_qa(
        _resolve(base, spec.path), config, index_root=cache_root, rag_for=rag_for, max_queries=spec.max_queries,
        unanswerable=spec.unanswerable, seed=spec.seed, split=spec.split, on_progress=report_progress,
    )
    metrics: dict[str, float | None] = dict(evaluation.metrics)
    for name in wanted:
        metrics.setdefault(name, None)  # a metric this kind cannot measure shows (and fails) as n/a
    counts = {"questions": evaluation.questions, "unanswerable": evaluation.unanswerable, "sampled": evaluation.questions}
    timings = dict(evaluation.timings)
    timings.update({f"{stage}_ms_p50": values["p50"] for stage, values in evaluation.stage_ms.items()})
    return metrics, counts, evaluation.samples, timings, evaluation.warnings


def run_suite(
    suite_path: str | Path,
    report_dir: str | Path | None = None,
    cache_root: str | Path = Path(".ragkit/eval"),
    progress: Progress | None = None,
) -> SuiteResult:
    """Run every dataset x pipeline of the suite, check thresholds and write the report.

    `report_dir` defaults to `reports/<suite name>`. Raises `SuiteError` / `DatasetError` /
    `PipelineError` on bad input before any model is loaded where possible.
    """
    from ragkit.api import RAG

    suite_path = Path(suite_path)
    suite = load_suite(suite_path)
    base = suite_path.resolve().parent
    report = Path(report_dir) if report_dir is not None else Path("reports") / suite.name
    cache_root = Path(cache_root)
    progress = progress or Progress("eval suite")

    # Check every input before the first (slow) model load.
    pipelines = [(_pipeline_label(value), _load_suite_pipeline(base, value)) for value in suite.pipelines]
    names = [config.name for _, config in pipelines]
    duplicates = sorted(n for n, c in Counter(names).items() if c > 1)
    if duplicates:
        raise SuiteError(f"{suite_path}: pipelines must have distinct names, {duplicates} appear twice")
    for i, threshold in enumerate(suite.thresholds):
        if threshold.pipeline is not None and threshold.pipeline not in names:
            raise SuiteError(
                f"{suite_path}: thresholds.{i}.pipeline: {threshold.pipeline!r} is not the name of a "
                f"suite pipeline {names}"
            )
    for spec in suite.datasets:
        path = _resolve(base, spec.path)
        if not path.exists():
            raise SuiteError(f"{suite_path}: dataset {spec.name!r}: path not found: {path}")
        if spec.kind == "questions":
            load_questions(path)

    wanted = suite.wanted_metrics()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    results: list[PairResult] = []
    opened: list[RAG] = []
    for spec in suite.datasets:
        for pipeline_file, config in pipelines:
            prefix = f"[{spec.name} x {config.name}]"

            def rag_for(index_dir: Path, config: PipelineConfig = config) -> RAG:
                rag = RAG(config, index_dir)
                _share_models(rag, opened)
                opened.append(rag)
                return rag

            def say(message: str, prefix: str = prefix) -> None:
                progress.set_phase(f"{prefix} {message}")

            pair_started = time.perf_counter()
            run = {"questions": _run_questions, "beir": _run_beir, "qa": _run_qa}[spec.kind]
            metrics, counts, samples, timings, warnings = run(
                spec, base, rag_for, wanted, cache_root, config, say, progress
            )
            timings["total_s"] = time.perf_counter() - pair_started
            results.append(
                PairResult(
                    dataset=spec.name, kind=spec.kind, pipeline=config.name, pipeline_file=pipeline_file,
                    metrics=metrics, counts=counts, timings=timings, warnings=warnings, samples=samples,
                )
            )
    checks = check_thresholds(suite.thresholds, results)
    from ragkit import __version__ as ragkit_version

    result = SuiteResult(
        suite=suite.name,
        suite_file=str(suite_path),
        report_dir=str(report),
        started_at=started_at,
        duration_s=time.perf_counter() - started,
        passed=all(c.passed for c in checks),
        environment={"ragkit": ragkit_version, "python": platform.python_version(), "machine": platform.machine()},
        results=results,
        thresholds=checks,
    )
    write_report(result, suite, report)
    return result
