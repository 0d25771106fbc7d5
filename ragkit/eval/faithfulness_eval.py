"""`ragkit eval faithfulness`: score a JSONL file of (context, answer[, question, label]) rows with
the offline scorer or the LLM judge; with labels, AUROC and the best-threshold accuracy.

A row that cannot be scored is reported as `{"id", "error"}` and counted, never a NaN or a guess.
Every record is redacted before it leaves (a judge may echo a key into a claim or an error).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ragkit.config import load_pipeline
from ragkit.errors import UserError
from ragkit.eval.datasets import load_qa_jsonl
from ragkit.eval.metrics import DatasetError
from ragkit.progress import Progress
from ragkit.redaction import redact_value

Scorer = Literal["offline", "llm-judge"]
SCORERS: tuple[str, ...] = ("offline", "llm-judge")
SCORE_CHUNK = 32  # rows per score_batch call (progress granularity)
ROWS = "rows scored"  # the progress counter


class FaithfulnessEvaluation(BaseModel):
    summary: dict[str, Any]
    records: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [r for r in self.records if "error" in r]

    def write_records(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            for record in self.records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _engine(scorer: str, pipeline: Path | None) -> Any:
    if scorer not in SCORERS:
        raise UserError(f"--scorer: unknown scorer {scorer!r}; expected one of {', '.join(SCORERS)}")
    if scorer == "llm-judge":
        from ragkit.eval.judge import LLMJudgeScorer
        from ragkit.generation.openai_chat import OpenAIGeneratorConfig

        generator = load_pipeline(pipeline).generator if pipeline else OpenAIGeneratorConfig()
        if not isinstance(generator, OpenAIGeneratorConfig):
            raise UserError(f"--pipeline {pipeline}: the llm-judge needs an 'openai' generator section, not {generator.name!r}")
        return LLMJudgeScorer(generator)
    if pipeline is not None:
        raise UserError("--pipeline is only used by --scorer llm-judge")
    from ragkit.eval.faithfulness import OfflineFaithfulnessScorer

    return OfflineFaithfulnessScorer()


def evaluate_faithfulness(
    file: Path,
    scorer: str = "offline",
    pipeline: Path | None = None,
    max_rows: int | None = None,
    progress: Progress | None = None,
) -> FaithfulnessEvaluation:
    """Score every row of `file` (the first `max_rows`); raises UserError for bad input."""
    progress = progress or Progress("eval faithfulness")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    rows = load_qa_jsonl(file)[:max_rows]
    for row in rows:
        if row.context is None or not row.context.strip():
            raise DatasetError(f"row {row.id!r}: missing or empty field 'context'", file)
        if row.label is not None and row.label not in (0, 1):
            raise DatasetError(f"row {row.id!r}: 'label' must be 0 or 1, got {row.label}", file)
    if not rows:
        raise DatasetError("no rows", file)
    engine = _engine(scorer, pipeline)
    timings["load_s"] = time.perf_counter() - started

    started = time.perf_counter()
    results: list[Any] = []
    progress.set_phase(f"scoring {len(rows)} rows with the {scorer} scorer")
    progress.counter(ROWS, "rows", total=len(rows))
    for begin in range(0, len(rows), SCORE_CHUNK):
        chunk = rows[begin : begin + SCORE_CHUNK]
        scored_chunk = engine.score_batch(chunk)
        results.extend(scored_chunk)
        progress.advance(ROWS, len(chunk), failed=sum(_failed(r) for r in scored_chunk))
    progress.finish(ROWS)
    timings["score_s"] = time.perf_counter() - started
    timings["rows_per_s"] = len(rows) / timings["score_s"] if timings["score_s"] else 0.0

    records: list[dict[str, Any]] = []
    scored: list[tuple[Any, float]] = []
    for row, result in zip(rows, results):
        record: dict[str, Any] = {"id": row.id}
        if _failed(result):
            record["error"] = result.error
        else:
            record["score"] = result.score
            record["claims"] = [
                {"text": c.text, "supported": c.supported, "score": c.score, "evidence": c.evidence}
                for c in result.claims
            ]
            scored.append((row, result.score))
        if row.label is not None:
            record["label"] = row.label
        records.append(record)
    summary: dict[str, Any] = {
        "file": str(file),
        "scorer": scorer,
        "rows": len(rows),
        "errors": sum("error" in r for r in records),
        "mean_score": (sum(s for _, s in scored) / len(scored)) if scored else None,
    }
    labelled = [(row.label, s) for row, s in scored if row.label is not None]
    if labelled and len({label for label, _ in labelled}) == 2:
        from ragkit.eval.faithfulness import auroc, best_threshold_accuracy

        labels, values = [label for label, _ in labelled], [s for _, s in labelled]
        summary["labelled_rows"] = len(labelled)
        summary["auroc"] = auroc(labels, values)
        summary["best_threshold"], summary["accuracy"] = best_threshold_accuracy(labels, values)
    elif labelled:
        summary["labelled_rows"] = len(labelled)
        summary["note"] = "AUROC needs both labels 0 and 1 among the scored rows"
    summary["timings"] = timings
    return FaithfulnessEvaluation(summary=redact_value(summary), records=redact_value(records))


def _failed(result: Any) -> bool:
    from ragkit.eval.judge import ScoreError

    return isinstance(result, ScoreError)
