"""Eval suites: datasets x pipelines x metrics, checked against thresholds (`ragkit eval suite`).

A suite is YAML (see `eval/*.yaml`), validated strictly (an unknown or misspelled key is an
error naming the field):

    name: sample                        # also the default report directory: reports/<name>
    datasets:
      - name: solar-system
        kind: questions                 # or: beir, qa (a BEIR directory with answers: `ragkit eval qa`)
        path: ../data/questions.jsonl   # beir: the dataset directory
        corpus: [../data]               # questions only: files/directories to ingest
        sources_root: ..                # questions only: what `source` fields are relative to
        max_queries: null               # use the first N questions (null: all)
        sample_questions: 30            # of those, how many get generated answers (null: all)
        seed: 0                         # which sample (a seeded random sample, kept in file order)
    pipelines:
      - ../pipelines/default.yaml
      - path: ../pipelines/default.yaml  # a variant: the file, with some settings overridden
        name: bm25-only
        override: {retrieval: {fusion: {weights: {dense: 0.0}}, rerank: {name: none}}}
    metrics: [hit_rate@5, mrr@10, faithfulness, token_f1, abstention_accuracy]
    thresholds:
      - {metric: hit_rate@5, min: 0.8}                       # every dataset x pipeline
      - {metric: faithfulness, min: 0.6, pipeline: default, dataset: solar-system}

**Paths** (`path`, `corpus`, `sources_root`, `pipelines`) that are relative resolve against the
directory of the suite file, so a suite runs the same from any working directory
(`eval/boolq-dev.yaml` reads `../../shared/datasets/boolq-dev` = `../shared/datasets/boolq-dev`
from the repository root). `sources_root` defaults to the suite file's directory.

**Pipelines** are pipeline files, or variants of one: `{path, name, override}` deep-merges
`override` into the file's YAML (mappings merge key by key, except that a mapping naming another
component, e.g. `rerank: {name: none}`, replaces the old one; anything else replaces) and renames
it, so a comparison stays in step with the pipeline it varies. Pipeline names must be distinct.

**Questions files** (`kind: questions`) are JSONL rows `{"id", "question", "answer"?,
"source"?, "sources"?, "keywords"?}`: `source`/`sources` are the expected source file(s)
(relative to `sources_root`); a question with neither is unanswerable and should get the
"I don't know" sentence (`ragkit.generation.prompt.NO_ANSWER`); `answer` (may be null) and
`keywords` are the references for answer quality.

**Indexes** are cached under `<cache_root>/` (default `.ragkit/eval/` in the working directory):
for BEIR datasets at `ragkit.eval.retrieval.cache_dir_for`, for questions datasets at
`<name>-<hash of the corpus paths and the pipeline's loader and index settings>`; ingest is
incremental (with pruning), so reruns only embed what changed. Pipelines with the same
loader/chunker/dense/sparse settings share an index.

**Metrics** (`metrics`; every metric named by a threshold is computed too). Each is a mean in
[0, 1] over the questions it applies to; `null` ("n/a") when no question qualifies.

- Retrieval, over the first `max_queries` questions that have expected sources / qrels: any
  ranx-style name of `ragkit.eval.metrics` (`hit_rate@5`, `mrr@10`, `ndcg@10`, `recall@100`, ...).
  BEIR: the documents are the passages, via `evaluate_retrieval`. Questions: the documents are the
  source files (a file ranks at its best chunk), relevant = the expected source(s).
- On the sampled questions, each answered with `rag.query` (the generator sees the top_k hits):
  - `context_precision` / `context_recall` (`ragkit.eval.answers`): the hits' sources (BEIR:
    passage ids) against the expected ones; questions with expected sources.
  - `faithfulness`: the offline scorer's answer score (`OfflineFaithfulnessScorer`) of the answer
    (each citation marker replaced by a line break: it ends a passage from one block) against the context it was given (the hits' texts joined), over
    answers that are not "I don't know". `claims_supported`: the share of all those answers'
    claims marked supported.
  - `exact_match`, `token_f1`, `containment`: against the acceptable references (the `answer`
    and each keyword; BEIR: the query's `answers`); containment also accepts "all keywords
    present". `keyword_recall`: share of the keywords present. Questions with references.
  - `abstention_accuracy`: share of unanswerable questions answered with exactly the
    "I don't know" sentence. `false_abstention_rate`: share of answerable questions answered so.

**Thresholds** (`{metric, min?, max?, pipeline?, dataset?}`) apply to every dataset x pipeline
matching the filters (`pipeline` is a pipeline's `name`). A threshold fails when the value is
below `min` / above `max`, or when the metric could not be measured there. `run_suite` writes
`results.json`, `report.md` and `pipelines.png` to the report directory; the CLI exits 1 when any
threshold fails.
"""

from __future__ import annotations

import hashlib
import json
import platform
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ragkit.config import (
    PipelineConfig,
    PipelineError,
    describe_validation_error,
    load_pipeline,
    read_yaml_mapping,
    parse_pipeline,
)
from ragkit.eval.answers import (
    containment,
    context_precision,
    context_recall,
    exact_match,
    is_abstention,
    keyword_recall,
    strip_citations,
    token_f1,
)
from ragkit.eval.datasets import _read_jsonl, load_beir
from ragkit.eval.metrics import DatasetError, Qrels, Run, evaluate, parse_metric
from ragkit.schema import Trace

if TYPE_CHECKING:
    from ragkit.api import RAG
    from ragkit.eval.faithfulness import OfflineFaithfulnessScorer

__all__ = [
    "ANSWER_METRICS",
    "DatasetSpec",
    "PairResult",
    "PipelineSpec",
    "Question",
    "Suite",
    "SuiteError",
    "SuiteResult",
    "ThresholdCheck",
    "ThresholdSpec",
    "check_thresholds",
    "load_questions",
    "load_suite",
    "run_suite",
    "write_report",
]

ANSWER_METRICS: dict[str, str] = {
    "context_precision": "share of the generator's hits that come from an expected source",
    "context_recall": "share of the expected sources among the generator's hits",
    "faithfulness": "offline faithfulness score of answers (not 'I don't know') against their context",
    "claims_supported": "share of answer claims the offline scorer marks supported",
    "exact_match": "normalised answer equals a reference",
    "token_f1": "token F1 against the best reference",
    "containment": "a reference (or all keywords) occurs in the answer",
    "keyword_recall": "share of keywords present in the answer",
    "abstention_accuracy": "unanswerable questions answered 'I don't know'",
    "false_abstention_rate": "answerable questions answered 'I don't know'",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_name(value: str) -> str:
    """Names become file and directory names in the report: keep them safe."""
    if not _NAME.match(value):
        raise ValueError(f"{value!r}: use letters, digits, '.', '_' and '-' only")
    return value
DEFAULT_SAMPLE = 20
_FULL_RUN_DEPTH = 100  # chunks retrieved for a retrieval metric without "@k"
_REPORT_EXAMPLES = 5


class SuiteError(ValueError):
    """A suite that cannot run (bad YAML, unknown field, missing file); names the file and field."""


def _check_metric(name: str) -> str:
    from ragkit.eval.qa import is_qa_metric

    if name in ANSWER_METRICS or is_qa_metric(name):
        return name
    try:
        parse_metric(name)
    except ValueError as exc:
        raise ValueError(f"{exc}; or one of the answer metrics {sorted(ANSWER_METRICS)}") from None
    return name


def is_retrieval_metric(name: str) -> bool:
    from ragkit.eval.qa import is_qa_metric

    return name not in ANSWER_METRICS and not is_qa_metric(name)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThresholdSpec(_Strict):
    metric: str
    min: float | None = None
    max: float | None = None
    pipeline: str | None = None
    dataset: str | None = None

    @field_validator("metric")
    @classmethod
    def _metric_known(cls, value: str) -> str:
        return _check_metric(value)

    @model_validator(mode="after")
    def _has_bound(self) -> ThresholdSpec:
        if self.min is None and self.max is None:
            raise ValueError(f"threshold for {self.metric!r} needs 'min' and/or 'max'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"threshold for {self.metric!r}: min {self.min} > max {self.max}")
        return self


class DatasetSpec(_Strict):
    name: str
    kind: Literal["beir", "questions", "qa"]
    path: str
    corpus: list[str] | None = Field(None, min_length=1)
    sources_root: str | None = None
    split: str = "test"
    max_queries: int | None = Field(None, gt=0)
    sample_questions: int | None = Field(DEFAULT_SAMPLE, ge=0)
    seed: int = 0
    unanswerable: float = Field(0.0, ge=0.0, lt=1.0, description="qa: share of questions whose gold passages are removed")

    _safe_name = field_validator("name")(classmethod(lambda cls, value: _check_name(value)))

    @model_validator(mode="after")
    def _kind_fields(self) -> DatasetSpec:
        if self.kind == "questions" and not self.corpus:
            raise ValueError("a 'questions' dataset needs 'corpus' (the paths to ingest)")
        if self.kind != "qa" and self.unanswerable:
            raise ValueError("'unanswerable' is for 'qa' datasets")
        if self.kind in ("beir", "qa") and (self.corpus is not None or self.sources_root is not None):
            raise ValueError("'corpus' and 'sources_root' are for 'questions' datasets; a BEIR dataset has its corpus")
        return self


class PipelineSpec(_Strict):
    """A pipeline file with `override` deep-merged into it, under a new `name`."""

    path: str
    name: str
    override: dict[str, Any] = Field(default_factory=dict)


class Suite(_Strict):
    name: str
    description: str | None = None
    datasets: list[DatasetSpec] = Field(min_length=1)
    pipelines: list[str | PipelineSpec] = Field(min_length=1)
    metrics: list[str] = Field(min_length=1)
    thresholds: list[ThresholdSpec] = Field(default_factory=list)

    _safe_name = field_validator("name")(classmethod(lambda cls, value: _check_name(value)))

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, names: list[str]) -> list[str]:
        return list(dict.fromkeys(_check_metric(n) for n in names))

    @model_validator(mode="after")
    def _references(self) -> Suite:
        names = [d.name for d in self.datasets]
        duplicates = sorted(n for n, c in Counter(names).items() if c > 1)
        if duplicates:
            raise ValueError(f"dataset names must be unique: {duplicates}")
        for i, threshold in enumerate(self.thresholds):
            if threshold.dataset is not None and threshold.dataset not in names:
                raise ValueError(f"thresholds.{i}.dataset: {threshold.dataset!r} is not one of the datasets {names}")
        return self

    def wanted_metrics(self) -> list[str]:
        """The metrics to compute: `metrics`, then any other metric a threshold names."""
        return list(dict.fromkeys([*self.metrics, *(t.metric for t in self.thresholds)]))


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; problems raise `SuiteError` naming the file and field."""
    path = Path(path)
    raw = read_yaml_mapping(path, "suite", SuiteError)
    try:
        return Suite.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(f"{path}: invalid suite:\n{describe_validation_error(exc)}") from None


# --- questions files -----------------------------------------------------------------------------


class Question(BaseModel):
    """One row of a questions file (extra fields, e.g. `page`, are kept)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    id: str
    question: str
    answer: str | None = None
    source: str | None = None
    sources: list[str] | None = None
    keywords: list[str] = Field(default_factory=list)

    @field_validator("id", mode="before")
    @classmethod
    def _int_id(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("question")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    def expected_sources(self) -> list[str]:
        return list(dict.fromkeys([*([self.source] if self.source else []), *(self.sources or [])]))


def load_questions(path: str | Path) -> list[Question]:
    """Read a questions JSONL file; errors are `DatasetError`s naming file and line."""
    path = Path(path)
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for lineno, obj in _read_jsonl(path):
        try:
            row = Question.model_validate(obj)
        except ValidationError as exc:
            detail = "; ".join(
                f"field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in exc.errors()
            )
            raise DatasetError(detail, path, lineno) from None
        if row.id in seen:
            raise DatasetError(f"duplicate id {row.id!r} (first on line {seen[row.id]})", path, lineno)
        seen[row.id] = lineno
        questions.append(row)
    if not questions:
        raise DatasetError("no questions", path)
    return questions


# --- results -------------------------------------------------------------------------------------


class PairResult(BaseModel):
    """One dataset evaluated with one pipeline."""

    dataset: str
    kind: str
    pipeline: str
    pipeline_file: str
    metrics: dict[str, float | None]
    counts: dict[str, int]
    timings: dict[str, float]
    warnings: list[str] = Field(default_factory=list)
    samples: list[dict[str, Any]] = Field(default_factory=list)


class ThresholdCheck(BaseModel):
    metric: str
    bound: Literal["min", "max"]
    limit: float
    dataset: str
    pipeline: str
    value: float | None
    passed: bool

    def describe(self) -> str:
        op = ">=" if self.bound == "min" else "<="
        shown = "not measured" if self.value is None else f"{self.value:.4f}"
        return f"{self.metric} {op} {self.limit:g} ({self.dataset} / {self.pipeline}): {shown}"


class SuiteResult(BaseModel):
    suite: str
    suite_file: str
    report_dir: str
    started_at: str
    duration_s: float
    passed: bool
    environment: dict[str, str]
    results: list[PairResult]
    thresholds: list[ThresholdCheck]

    @property
    def failures(self) -> list[ThresholdCheck]:
        return [t for t in self.thresholds if not t.passed]


def check_thresholds(thresholds: Sequence[ThresholdSpec], results: Sequence[PairResult]) -> list[ThresholdCheck]:
    """One check per (threshold bound, matching dataset x pipeline); unmeasured values fail."""
    checks: list[ThresholdCheck] = []
    for spec in thresholds:
        for pair in results:
            if spec.dataset is not None and spec.dataset != pair.dataset:
                continue
            if spec.pipeline is not None and spec.pipeline != pair.pipeline:
                continue
            value = pair.metrics.get(spec.metric)
            for bound, limit in (("min", spec.min), ("max", spec.max)):
                if limit is None:
                    continue
                ok = value is not None and (value >= limit if bound == "min" else value <= limit)
                checks.append(
                    ThresholdCheck(
                        metric=spec.metric, bound=bound, limit=limit, dataset=pair.dataset,
                        pipeline=pair.pipeline, value=value, passed=ok,
                    )
                )
    return checks


# --- running -------------------------------------------------------------------------------------


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _merge(base: Any, override: Any) -> Any:
    """Deep merge; a mapping that switches component (another `name`) replaces the old one."""
    if isinstance(base, dict) and isinstance(override, dict):
        if "name" in override and override["name"] != base.get("name", override["name"]):
            return override
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return override


def _pipeline_label(value: str | PipelineSpec) -> str:
    if isinstance(value, str):
        return value
    return f"{value.path} (as {value.name!r}, override {json.dumps(value.override, sort_keys=True)})"


def _load_suite_pipeline(base: Path, value: str | PipelineSpec) -> PipelineConfig:
    if isinstance(value, str):
        return load_pipeline(_resolve(base, value))
    path = _resolve(base, value.path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"pipeline file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: invalid YAML: {exc}") from None
    merged = _merge(raw if raw is not None else {}, value.override)
    if isinstance(merged, dict):
        merged["name"] = value.name
    return parse_pipeline(merged, origin=f"{path} with the suite's override for {value.name!r}")


_CITATION_RUN = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]\s*")


def _claims_text(answer: str) -> str:
    """The answer as the faithfulness scorer sees it: a citation marker ends what was taken from one
    context block, so it becomes a line break (a sentence boundary) rather than disappearing."""
    return _CITATION_RUN.sub("\n", answer).strip()


def _mean(values: Sequence[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


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


class _Scorer:
    """The offline faithfulness scorer, created on first use, sharing a loaded embedding model."""

    def __init__(self) -> None:
        self._scorer: OfflineFaithfulnessScorer | None = None

    def get(self, rag: RAG) -> OfflineFaithfulnessScorer:
        if self._scorer is None:
            from ragkit.eval.faithfulness import OfflineFaithfulnessScorer

            scorer = OfflineFaithfulnessScorer()
            if rag.embedder.model_id == scorer.model_name:  # share the pipeline's loaded model
                scorer = OfflineFaithfulnessScorer(embedder=rag.embedder)
            self._scorer = scorer
        return self._scorer


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
    rag: RAG, items: list[_Item], scorer: _Scorer, wanted: list[str], kind: str, root: Path | None, trace: Trace,
    on_progress: Callable[[str], None],
) -> tuple[dict[str, float | None], dict[str, int], list[dict[str, Any]], dict[str, float]]:
    started = time.perf_counter()
    answers = []
    for i, item in enumerate(items, 1):
        answer = rag.query(item.question)
        trace.warnings.extend(answer.trace.warnings)
        answers.append(answer)
        if i % 10 == 0 or i == len(items):
            on_progress(f"answered {i}/{len(items)} questions")
    generate_s = time.perf_counter() - started

    def shown(source: str) -> str:
        if root is None:
            return source
        try:
            return Path(source).resolve().relative_to(root).as_posix()
        except ValueError:
            return source

    samples: list[dict[str, Any]] = []
    values: dict[str, list[float]] = {name: [] for name in ANSWER_METRICS}
    to_score: list[tuple[int, tuple[str, str, str]]] = []
    for item, answer in zip(items, answers):
        text = strip_citations(answer.text)
        abstained = is_abstention(text)
        retrieved = [
            str(Path(h.chunk.source).resolve()) if kind == "questions" else h.chunk.doc_id for h in answer.hits
        ]
        sample: dict[str, Any] = {
            "id": item.id,
            "question": item.question,
            "answer": answer.text,
            "abstained": abstained,
            "expected_sources": [shown(s) for s in item.expected],
            "retrieved_sources": [shown(s) for s in retrieved],
        }
        if item.references:
            sample["references"] = item.references
        if item.keywords:
            sample["keywords"] = item.keywords
        if item.expected:
            sample["context_precision"] = context_precision(retrieved, item.expected)
            sample["context_recall"] = context_recall(retrieved, item.expected)
            values["context_precision"].append(sample["context_precision"])
            values["context_recall"].append(sample["context_recall"])
            values["false_abstention_rate"].append(float(abstained))
        else:
            values["abstention_accuracy"].append(float(abstained))
        if item.references or item.keywords:
            refs = item.references + item.keywords
            sample["exact_match"] = exact_match(text, refs)
            sample["token_f1"] = token_f1(text, refs)
            sample["containment"] = containment(text, [*item.references, *([item.keywords] if item.keywords else [])])
            for name in ("exact_match", "token_f1", "containment"):
                values[name].append(sample[name])
            if item.keywords:
                sample["keyword_recall"] = keyword_recall(text, item.keywords)
                values["keyword_recall"].append(sample["keyword_recall"])
        if not abstained and answer.hits and text:
            context = "\n\n".join(h.chunk.text for h in answer.hits)
            to_score.append((len(samples), (context, _claims_text(answer.text), item.question)))
        samples.append(sample)

    started = time.perf_counter()
    claims_total = claims_supported = 0
    if to_score and any(m in wanted for m in ("faithfulness", "claims_supported")):
        on_progress(f"scoring faithfulness of {len(to_score)} answers")
        results = scorer.get(rag).score_batch([row for _, row in to_score])
        for (index, _), result in zip(to_score, results):
            samples[index]["faithfulness"] = result.score
            samples[index]["unsupported_claims"] = [
                {"text": c.text, "score": round(c.score, 4), "evidence": c.evidence}
                for c in result.claims if not c.supported
            ]
            values["faithfulness"].append(result.score)
            claims_total += len(result.claims)
            claims_supported += sum(c.supported for c in result.claims)
    faithfulness_s = time.perf_counter() - started
    metrics: dict[str, float | None] = {name: _mean(v) for name, v in values.items()}
    metrics["claims_supported"] = claims_supported / claims_total if claims_total else None
    counts = {
        "sampled": len(items),
        "answered": sum(not s["abstained"] for s in samples),
        "unanswerable": sum(not item.expected for item in items),
        "with_reference": sum(bool(item.references or item.keywords) for item in items),
        "faithfulness_scored": len(values["faithfulness"]),
        "claims": claims_total,
    }
    timings = {
        "generate_s": generate_s,
        "answer_ms_mean": generate_s * 1000 / len(items) if items else 0.0,
        "faithfulness_s": faithfulness_s,
    }
    return metrics, counts, samples, timings


def _warning_lines(trace: Trace) -> list[str]:
    counted = Counter(trace.warnings)
    return [f"{w} (x{n})" if n > 1 else w for w, n in sorted(counted.items())]


def _run_questions(
    spec: DatasetSpec, base: Path, rag_for: Callable[[Path], RAG], wanted: list[str], scorer: _Scorer,
    cache_root: Path, config: PipelineConfig, on_progress: Callable[[str], None],
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
    report = rag.ingest(corpus, prune=True)
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
        rag, sample, scorer, wanted, "questions", root, trace, on_progress
    )
    timings.update(answer_timings)
    metrics: dict[str, float | None] = {m: scored.get(m) for m in retrieval}
    metrics.update({m: answer_metrics.get(m) for m in wanted if not is_retrieval_metric(m)})
    counts = {"questions": len(items), "retrieval_queries": judged, **counts}
    rag.close()
    return metrics, counts, samples, timings, warnings + _warning_lines(trace)


def _run_beir(
    spec: DatasetSpec, base: Path, rag_for: Callable[[Path], RAG], wanted: list[str], scorer: _Scorer,
    cache_root: Path, config: PipelineConfig, on_progress: Callable[[str], None],
) -> tuple[dict[str, float | None], dict[str, int], list[dict[str, Any]], dict[str, float], list[str]]:
    from ragkit.eval.retrieval import DEFAULT_METRICS, cache_dir_for, evaluate_retrieval, select_queries

    dataset_dir = _resolve(base, spec.path)
    rag = rag_for(cache_dir_for(dataset_dir, config, root=cache_root))
    retrieval = [m for m in wanted if is_retrieval_metric(m)]
    on_progress(f"retrieval on {dataset_dir} (indexing its corpus first unless cached)")

    def progress(stage: str, done: int, total: int) -> None:
        if done == total or done % 500 < 64:
            on_progress(f"retrieval {stage} {done}/{total}")

    evaluation = evaluate_retrieval(
        dataset_dir, rag, max_queries=spec.max_queries, split=spec.split,
        metrics=retrieval or list(DEFAULT_METRICS), on_progress=progress,
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
        rag, sample, scorer, wanted, "beir", None, trace, on_progress
    )
    timings.update(answer_timings)
    metrics: dict[str, float | None] = {m: evaluation.metrics.get(m) for m in retrieval}
    metrics.update({m: answer_metrics.get(m) for m in wanted if not is_retrieval_metric(m)})
    counts = {"questions": len(items), "retrieval_queries": evaluation.queries, **counts}
    rag.close()
    return metrics, counts, samples, timings, _warning_lines(trace)


def _run_qa(
    spec: DatasetSpec, base: Path, rag_for: Callable[[Path], RAG], wanted: list[str], scorer: _Scorer,
    cache_root: Path, config: PipelineConfig, on_progress: Callable[[str], None],
) -> tuple[dict[str, float | None], dict[str, int], list[dict[str, Any]], dict[str, float], list[str]]:
    """A BEIR directory with answers, asked end to end (`ragkit eval qa`; ragkit/eval/qa.py)."""
    from ragkit.eval.qa import evaluate_qa

    def progress(stage: str, done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            on_progress(f"{stage} {done}/{total}")

    evaluation = evaluate_qa(
        _resolve(base, spec.path), config, index_root=cache_root, rag_for=rag_for, max_queries=spec.max_queries,
        unanswerable=spec.unanswerable, seed=spec.seed, split=spec.split, on_progress=progress,
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
    on_progress: Callable[[str], None] | None = None,
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
    say = on_progress or (lambda message: None)

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
    scorer = _Scorer()
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

            def progress(message: str, prefix: str = prefix) -> None:
                say(f"{prefix} {message}")

            pair_started = time.perf_counter()
            run = {"questions": _run_questions, "beir": _run_beir, "qa": _run_qa}[spec.kind]
            metrics, counts, samples, timings, warnings = run(
                spec, base, rag_for, wanted, scorer, cache_root, config, progress
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


# --- the report ----------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _markdown(result: SuiteResult, suite: Suite) -> str:
    failures = result.failures
    status = "PASSED" if result.passed else f"FAILED ({len(failures)} of {len(result.thresholds)} checks)"
    lines = [
        f"# Eval suite `{result.suite}`: {status}",
        "",
        f"Suite file `{result.suite_file}`, run {result.started_at} in {result.duration_s:.0f} s "
        f"(ragkit {result.environment.get('ragkit', '?')}, Python {result.environment.get('python', '?')}).",
    ]
    if suite.description:
        lines += ["", suite.description.strip()]
    lines += ["", "## Thresholds", ""]
    if not result.thresholds:
        lines.append("No thresholds: nothing gates this suite.")
    for check in result.thresholds:
        lines.append(f"- {'PASS' if check.passed else '**FAIL**'} `{check.describe()}`")
    if failures:
        lines += ["", "## Failures", ""]
        for check in failures:
            why = "could not be measured (no question qualifies)" if check.value is None else (
                f"{check.value:.4f} is {'below' if check.bound == 'min' else 'above'} {check.limit:g}"
            )
            lines.append(f"- `{check.metric}` on {check.dataset} / {check.pipeline}: {why}")
    lines += ["", "![metrics by pipeline](pipelines.png)"]

    datasets = list(dict.fromkeys(r.dataset for r in result.results))
    for dataset in datasets:
        pairs = [r for r in result.results if r.dataset == dataset]
        kind = pairs[0].kind
        counts = pairs[0].counts
        lines += [
            "",
            f"## {dataset} ({kind})",
            "",
            f"{counts.get('questions', 0)} questions, {counts.get('retrieval_queries', 0)} with expected "
            f"sources for retrieval; {counts.get('sampled', 0)} sampled for generated answers "
            f"({counts.get('unanswerable', 0)} unanswerable, {counts.get('with_reference', 0)} with references).",
            "",
            "| metric | " + " | ".join(p.pipeline for p in pairs) + " |",
            "|---|" + "---:|" * len(pairs),
        ]
        for metric in pairs[0].metrics:
            failed = {
                c.pipeline for c in failures if c.dataset == dataset and c.metric == metric
            }
            cells = [
                (f"**{_fmt(p.metrics.get(metric))}** (fail)" if p.pipeline in failed else _fmt(p.metrics.get(metric)))
                for p in pairs
            ]
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        lines += ["", "| timing | " + " | ".join(p.pipeline for p in pairs) + " |", "|---|" + "---:|" * len(pairs)]
        for key in ("ingest_s", "retrieval_s", "query_s", "generate_s", "answer_ms_mean", "faithfulness_s", "total_s"):
            if any(key in p.timings for p in pairs):
                lines.append(
                    f"| {key} | " + " | ".join(f"{p.timings[key]:.1f}" if key in p.timings else "" for p in pairs) + " |"
                )
        for pair in pairs:
            notes = _sample_notes(pair)
            if pair.warnings or notes:
                lines += ["", f"### {dataset} / {pair.pipeline}: answers to look at", ""]
                lines += [f"- warning: {w}" for w in pair.warnings]
                lines += notes
    lines += [
        "",
        "## Metrics",
        "",
        "Retrieval metrics follow ranx (`ragkit/eval/metrics.py`); answer metrics are defined in "
        "`ragkit/eval/suite.py` and `ragkit/eval/answers.py`. Per-question answers and scores are in "
        "`results.json`.",
        "",
    ]
    return "\n".join(lines)


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sample_notes(pair: PairResult) -> list[str]:
    notes: list[str] = []
    for s in pair.samples:
        if "expected_sources" not in s:  # a qa dataset: its own report (`ragkit eval qa --report`)
            continue
        if not s["expected_sources"] and not s["abstained"]:
            notes.append(f"- {s['id']}: unanswerable, but answered: \"{_one_line(s['answer'])}\"")
        elif s["expected_sources"] and s["abstained"]:
            notes.append(f"- {s['id']}: answerable, but answered \"I don't know\" ({_one_line(s['question'])})")
        elif s.get("containment") == 0.0:
            notes.append(
                f"- {s['id']}: reference not in the answer: \"{_one_line(s['answer'])}\" "
                f"(expected: {_one_line('; '.join(s.get('references', []) + s.get('keywords', [])), 80)})"
            )
    scored = sorted((s for s in pair.samples if "faithfulness" in s), key=lambda s: s["faithfulness"])
    for s in scored[:_REPORT_EXAMPLES]:
        if s["faithfulness"] >= 0.5:
            break
        claims = "; ".join(_one_line(c["text"], 80) for c in s.get("unsupported_claims", [])[:2])
        notes.append(f"- {s['id']}: faithfulness {s['faithfulness']:.2f}; unsupported: {claims or '-'}")
    return notes


def _plot(result: SuiteResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r.dataset for r in result.results))
    fig, axes = plt.subplots(len(datasets), 1, figsize=(11, 4.2 * len(datasets)), squeeze=False)
    for ax, dataset in zip(axes[:, 0], datasets):
        pairs = [r for r in result.results if r.dataset == dataset]
        metrics = [
            m for m in pairs[0].metrics
            if not m.startswith("hits") and any(p.metrics.get(m) is not None for p in pairs)
        ]
        width = 0.8 / max(len(pairs), 1)
        for i, pair in enumerate(pairs):
            xs = [j + (i - (len(pairs) - 1) / 2) * width for j in range(len(metrics))]
            values = [pair.metrics.get(m) or 0.0 for m in metrics]
            bars = ax.bar(xs, values, width=width, label=pair.pipeline)
            for bar, metric in zip(bars, metrics):
                value = pair.metrics.get(metric)
                if value is None:
                    bar.set_hatch("//")
                ax.text(
                    bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                    "n/a" if value is None else f"{value:.2f}", ha="center", va="bottom", fontsize=6,
                )
        order = [p.pipeline for p in pairs]
        for check in result.thresholds:  # one check per pipeline: drawn over that pipeline's bar
            if check.dataset == dataset and check.metric in metrics and check.pipeline in order:
                x = metrics.index(check.metric) + (order.index(check.pipeline) - (len(pairs) - 1) / 2) * width
                color = "black" if check.passed else "red"
                ax.hlines(check.limit, x - width / 2, x + width / 2, colors=color, linestyles="dashed", linewidth=1.2)
        ax.set_xticks(range(len(metrics)))
        ax.set_xticklabels(metrics, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.1)
        ax.set_title(f"{dataset}: metrics by pipeline (dashed: thresholds, red = failed)", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(result: SuiteResult, suite: Suite, report_dir: str | Path) -> None:
    """`results.json` (everything, per-question samples included), `report.md`, `pipelines.png`."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    data = result.model_dump()
    data["failures"] = [c.model_dump() for c in result.failures]
    (report_dir / "results.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (report_dir / "report.md").write_text(_markdown(result, suite), encoding="utf-8")
    _plot(result, report_dir / "pipelines.png")
