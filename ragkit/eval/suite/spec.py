"""Suite specs: the YAML (datasets x pipelines x metrics x thresholds), questions files, and the
result records thresholds are checked against."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ragkit.components import components
from ragkit.config import describe_validation_error, read_yaml_mapping
from ragkit.errors import UserError
from ragkit.eval.datasets import _read_jsonl
from ragkit.eval.metrics import DatasetError, parse_metric


def answer_metrics() -> dict[str, str]:
    """Registered answer metrics: name -> what it measures (stage "answer_metric")."""
    found: dict[str, str] = {}
    for component in components("answer_metric"):
        found[component.name] = (component.config.__doc__ or "").strip()
    return found


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_name(value: str) -> str:
    """Names become file and directory names in the report: keep them safe."""
    if not _NAME.match(value):
        raise ValueError(f"{value!r}: use letters, digits, '.', '_' and '-' only")
    return value
DEFAULT_SAMPLE = 20
_FULL_RUN_DEPTH = 100  # chunks retrieved for a retrieval metric without "@k"
_REPORT_EXAMPLES = 5


class SuiteError(UserError, ValueError):
    """A suite that cannot run (bad YAML, unknown field, missing file); names the file and field."""


def _check_metric(name: str) -> str:
    from ragkit.eval.qa import is_qa_metric

    if name in answer_metrics() or is_qa_metric(name):
        return name
    try:
        parse_metric(name)
    except ValueError as exc:
        raise ValueError(f"{exc}; or one of the answer metrics {sorted(answer_metrics())}") from None
    return name


def is_retrieval_metric(name: str) -> bool:
    from ragkit.eval.qa import is_qa_metric

    return name not in answer_metrics() and not is_qa_metric(name)


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
