"""End-to-end QA evaluation (`ragkit eval qa DATASET_DIR`): retrieval, answer and abstention in one run.

The dataset is a BEIR directory (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`) whose query
rows carry `answers` (a list of acceptable reference answers), e.g. the HaluEval QA set written by
`scripts/make_halueval_beir.py`. Every question with answers and relevance judgments is asked with
`RAG.query` (the pipeline's retrieval and generator, as a user would), and scored:

- `answer_in_context@k` (k = the pipeline's `top_k`: the hits handed to the generator): a
  reference answer occurs in the text of those hits (SQuAD-normalised token run). The ceiling of
  any generator that quotes or paraphrases its context.
- `containment`, `token_f1`, `exact_match` (ragkit.eval.answers) of the generated answer, over the
  answerable questions (an "I don't know" scores 0). `answered_containment`: containment over the
  answerable questions that were answered (how often an answer, when given, holds the reference).
- `citation_precision`: over answered answerable questions with citations, the share of the cited
  chunks (distinct) whose text contains a reference answer.
- `abstention_rate`: share of all questions answered "I don't know".
- With `unanswerable` > 0 (`--unanswerable FRACTION`): that share of the questions (a seeded
  sample) becomes unanswerable by removing its gold passages (qrels) from the indexed corpus; a
  question whose gold passages all went with them is unanswerable too. Then
  `abstention_precision` = unanswerable among the abstentions, `abstention_recall` = abstentions
  among the unanswerable, `false_abstention_rate` = abstentions among the answerable.
- Per-stage times from each answer's trace (`stage_ms`: p50 and mean per stage; the first query
  also loads the models, reported as `load_models`).

`gate(evaluation, minimums, maximums)` checks named metrics against bounds (the CLI's `--min` /
`--max`, a regression gate: exit 1 when one fails).
"""

from __future__ import annotations

import hashlib
import random
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from ragkit.config import PipelineConfig
from ragkit.errors import UserError
from ragkit.eval.answers import containment, exact_match, is_abstention, strip_citations, token_f1
from ragkit.eval.datasets import load_beir
from ragkit.eval.metrics import DatasetError
from ragkit.schema import Document

if TYPE_CHECKING:
    from ragkit.api import RAG

__all__ = ["QA_METRICS", "GateCheck", "QAEvaluation", "evaluate_qa", "gate", "is_qa_metric", "markdown_report"]

QA_METRICS: dict[str, str] = {
    "answer_in_context@k": "a reference answer occurs in the top-k hits handed to the generator (the ceiling)",
    "containment": "a reference answer occurs in the generated answer (answerable questions)",
    "answered_containment": "containment over the answerable questions that were answered",
    "token_f1": "token F1 of the answer against the best reference (answerable questions)",
    "exact_match": "normalised answer equals a reference (answerable questions)",
    "citation_precision": "cited chunks whose text contains a reference answer",
    "abstention_rate": "questions answered 'I don't know'",
    "abstention_precision": "abstentions that were on unanswerable questions",
    "abstention_recall": "unanswerable questions answered 'I don't know'",
    "false_abstention_rate": "answerable questions answered 'I don't know'",
}
_SAMPLES_IN_REPORT = 8


def is_qa_metric(name: str) -> bool:
    """QA metric names; `answer_in_context@5` etc. for any cutoff."""
    if name.startswith("answer_in_context@"):
        return name.removeprefix("answer_in_context@").isdigit()
    return name in QA_METRICS


class GateCheck(BaseModel):
    metric: str
    bound: str  # "min" | "max"
    limit: float
    value: float | None
    passed: bool

    def describe(self) -> str:
        shown = "not measured" if self.value is None else f"{self.value:.4f}"
        return f"{self.metric} {'>=' if self.bound == 'min' else '<='} {self.limit:g}: {shown}"


class QAEvaluation(BaseModel):
    dataset: str
    pipeline: str
    questions: int
    unanswerable: int
    unanswerable_fraction: float
    passages_indexed: int
    passages_removed: int
    k: int
    metrics: dict[str, float | None]
    stage_ms: dict[str, dict[str, float]]
    timings: dict[str, float]
    warnings: list[str] = Field(default_factory=list)
    samples: list[dict[str, Any]] = Field(default_factory=list)
    gate: list[GateCheck] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.gate)

    def summary_dict(self) -> dict[str, Any]:
        """Everything but the per-question samples (`--json`)."""
        data = self.model_dump(exclude={"samples"})
        data["passed"] = self.passed
        return data


def _contains_reference(text: str, references: Sequence[str]) -> bool:
    return containment(text, list(references)) == 1.0


def _documents(corpus: Mapping[str, Mapping[str, str]], source: str, removed: set[str]) -> list[Document]:
    documents = []
    for doc_id, passage in corpus.items():
        if doc_id in removed:
            continue
        title, text = passage.get("title", ""), passage.get("text", "")
        body = f"{title}\n\n{text}" if title else text
        if body.strip():
            documents.append(Document(id=doc_id, source=source, text=body, metadata={"title": title}))
    return documents


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class QASetup(BaseModel):
    """A QA dataset indexed for one pipeline, with the questions to ask."""

    model_config = {"arbitrary_types_allowed": True}

    dataset_dir: Path
    questions: dict[str, str]  # id -> question, in file order
    answers: dict[str, list[str]]
    gold: dict[str, set[str]]
    unanswerable: set[str]  # ids whose gold passages are not in the index
    removed: set[str]  # passage ids left out of the index
    passages_indexed: int
    rag: Any  # RAG
    timings: dict[str, float]


def prepare_qa(
    dataset_dir: str | Path,
    config: PipelineConfig,
    index_root: Path = Path(".ragkit/eval"),
    rag_for: Callable[[Path], RAG] | None = None,
    max_queries: int | None = None,
    unanswerable: float = 0.0,
    seed: int = 0,
    split: str = "test",
) -> QASetup:
    """Select the questions, choose the unanswerable ones, and index the corpus without their gold
    passages (cached under `index_root`, one index per dataset, index settings and removal)."""
    from ragkit.api import RAG
    from ragkit.eval.retrieval import cache_dir_for

    if not 0.0 <= unanswerable < 1.0:
        raise ValueError(f"--unanswerable must be in [0, 1), got {unanswerable}")
    dataset_dir = Path(dataset_dir)
    dataset = load_beir(dataset_dir, split=split)
    selected = [q for q in dataset.queries if q in dataset.qrels and dataset.answers.get(q)]
    if not selected:
        raise DatasetError(
            f"{dataset_dir / 'queries.jsonl'}: no judged query has 'answers'; QA evaluation needs "
            "queries rows with an \"answers\" list (see scripts/make_halueval_beir.py)"
        )
    if max_queries:
        selected = selected[:max_queries]
    gold = {q: {d for d, grade in dataset.qrels[q].items() if grade >= 1} for q in selected}
    chosen = sorted(random.Random(seed).sample(range(len(selected)), round(unanswerable * len(selected))))
    removed = set().union(*(gold[selected[i]] for i in chosen)) if chosen else set()
    # A question whose gold passages all went with the removed ones cannot be answered either.
    no_answer = {q for q in selected if gold[q] and gold[q] <= removed}

    base = cache_dir_for(dataset_dir, config, root=index_root)
    if removed:
        digest = hashlib.sha256("\n".join(sorted(removed)).encode()).hexdigest()[:10]
        index_dir = base.with_name(f"{base.name}-minus-{len(removed)}-{digest}")
    else:
        index_dir = base
    rag = rag_for(index_dir) if rag_for is not None else RAG(config, index_dir)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    documents = _documents(dataset.corpus, str(dataset_dir / "corpus.jsonl"), removed)
    stats = rag.ingest_documents(documents)
    timings["ingest_s"] = time.perf_counter() - started
    timings["texts_embedded"] = float(stats.texts_embedded)
    return QASetup(
        dataset_dir=dataset_dir, questions={q: dataset.queries[q] for q in selected},
        answers={q: dataset.answers[q] for q in selected}, gold=gold, unanswerable=no_answer, removed=removed,
        passages_indexed=len(documents), rag=rag, timings=timings,
    )


def evaluate_qa(
    dataset_dir: str | Path,
    config: PipelineConfig,
    index_root: Path = Path(".ragkit/eval"),
    rag_for: Callable[[Path], RAG] | None = None,
    max_queries: int | None = None,
    unanswerable: float = 0.0,
    seed: int = 0,
    split: str = "test",
    on_progress: Callable[[str, int, int], None] | None = None,
) -> QAEvaluation:
    """Index the corpus (minus the removed gold passages), answer every selected question with
    `config`'s pipeline, and score (see `prepare_qa` for the index). `rag_for` builds the `RAG` for
    an index directory (default `RAG(config, index_dir)`; the suite passes one sharing models)."""
    setup = prepare_qa(dataset_dir, config, index_root, rag_for, max_queries, unanswerable, seed, split)
    dataset_dir, rag, timings = setup.dataset_dir, setup.rag, setup.timings
    selected, gold, no_answer = list(setup.questions), setup.gold, setup.unanswerable
    k = rag.config.retrieval.top_k
    stage_values: dict[str, list[float]] = {}
    samples: list[dict[str, Any]] = []
    warnings: dict[str, int] = {}
    started = time.perf_counter()
    for n, query_id in enumerate(selected, 1):
        question = setup.questions[query_id]
        references = setup.answers[query_id]
        answer = rag.query(question)
        for stage, trace in answer.trace.stages.items():
            stage_values.setdefault(stage, []).append(trace.ms)
        for warning in answer.trace.warnings:
            key = re.sub(r"'[^']*'(?:, '[^']*')*|\d+(?:\.\d+)?|\(.*\)", "…", warning)  # one line per kind
            warnings[key] = warnings.get(key, 0) + 1
        text = strip_citations(answer.text)
        abstained = is_abstention(text)
        context = "\n\n".join(hit.chunk.text for hit in answer.hits)
        cited = {c.chunk_id: c for c in answer.citations}
        chunk_text = {hit.chunk.id: hit.chunk.text for hit in answer.hits}
        sample: dict[str, Any] = {
            "id": query_id,
            "question": question,
            "references": references,
            "answerable": query_id not in no_answer,
            "answer": answer.text,
            "abstained": abstained,
            "answer_in_context": _contains_reference(context, references),
            "gold_retrieved": bool(gold[query_id] & {hit.chunk.doc_id for hit in answer.hits}),
            "containment": containment(text, references) if not abstained else 0.0,
            "token_f1": token_f1(text, references) if not abstained else 0.0,
            "exact_match": exact_match(text, references) if not abstained else 0.0,
            "generate_ms": answer.trace.stages["generate"].ms if "generate" in answer.trace.stages else None,
        }
        if cited and not abstained:
            good = sum(_contains_reference(chunk_text[c], references) for c in cited if c in chunk_text)
            sample["citation_precision"] = good / len(cited)
        if answer.related:  # "related, not answering" sources of an abstention
            sample["related"] = [r.source for r in answer.related]
        samples.append(sample)
        if on_progress is not None:
            on_progress("questions", n, len(selected))
    timings["query_s"] = time.perf_counter() - started

    answerable = [s for s in samples if s["answerable"]]
    unanswerable_samples = [s for s in samples if not s["answerable"]]
    answered = [s for s in answerable if not s["abstained"]]
    abstentions = [s for s in samples if s["abstained"]]

    def mean(values: Sequence[float]) -> float | None:
        return float(statistics.fmean(values)) if values else None

    metrics: dict[str, float | None] = {
        f"answer_in_context@{k}": mean([float(s["answer_in_context"]) for s in answerable]),
        "containment": mean([s["containment"] for s in answerable]),
        "answered_containment": mean([s["containment"] for s in answered]),
        "token_f1": mean([s["token_f1"] for s in answerable]),
        "exact_match": mean([s["exact_match"] for s in answerable]),
        "citation_precision": mean([s["citation_precision"] for s in answered if "citation_precision" in s]),
        "abstention_rate": mean([float(s["abstained"]) for s in samples]),
        "false_abstention_rate": mean([float(s["abstained"]) for s in answerable]),
        "abstention_precision": None,
        "abstention_recall": None,
    }
    if unanswerable_samples:
        true_abstentions = sum(s["abstained"] for s in unanswerable_samples)
        metrics["abstention_precision"] = true_abstentions / len(abstentions) if abstentions else None
        metrics["abstention_recall"] = true_abstentions / len(unanswerable_samples)
    stage_ms = {
        stage: {
            "p50": statistics.median(values),
            "p90": _percentile(values, 0.9),
            "mean": statistics.fmean(values),
            "n": float(len(values)),
        }
        for stage, values in stage_values.items()
    }
    warm = [s["generate_ms"] for s in samples[1:] if s["generate_ms"] is not None]
    if warm:
        timings["generate_warm_p50_ms"] = statistics.median(warm)
    retrieval = [
        sum(stage_values.get(stage, [0.0] * len(samples))[i] for stage in ("dense", "sparse", "fusion", "rerank"))
        for i in range(1, len(samples))
    ]
    if retrieval:
        timings["retrieval_warm_p50_ms"] = statistics.median(retrieval)
    return QAEvaluation(
        dataset=dataset_dir.name,
        pipeline=rag.config.name,
        questions=len(samples),
        unanswerable=len(unanswerable_samples),
        unanswerable_fraction=unanswerable,
        passages_indexed=setup.passages_indexed,
        passages_removed=len(setup.removed),
        k=k,
        metrics=metrics,
        stage_ms=stage_ms,
        timings=timings,
        warnings=[f"{w} (x{n})" if n > 1 else w for w, n in sorted(warnings.items())],
        samples=samples,
    )


def gate(evaluation: QAEvaluation, minimums: Mapping[str, float], maximums: Mapping[str, float]) -> list[GateCheck]:
    """Check metrics against bounds; an unknown or unmeasured metric fails (it cannot pass silently)."""
    checks = []
    for bound, limits in (("min", minimums), ("max", maximums)):
        for metric, limit in limits.items():
            value = evaluation.metrics.get(metric)
            ok = value is not None and (value >= limit if bound == "min" else value <= limit)
            checks.append(GateCheck(metric=metric, bound=bound, limit=limit, value=value, passed=ok))
    evaluation.gate = checks
    return checks


class BoundError(UserError, ValueError):
    """A malformed --min/--max gate (CLI exit 2)."""


def parse_bounds(values: Sequence[str], option: str) -> dict[str, float]:
    """`["containment=0.5", ...]` -> {"containment": 0.5}; errors name the option and the metric."""
    bounds: dict[str, float] = {}
    for value in values:
        name, sep, number = value.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BoundError(f"{option} {value!r}: expected METRIC=VALUE, e.g. {option} containment=0.5")
        if not is_qa_metric(name):
            raise BoundError(f"{option} {value!r}: unknown metric {name!r}; one of {sorted(QA_METRICS)}")
        try:
            bounds[name] = float(number)
        except ValueError:
            raise BoundError(f"{option} {value!r}: {number!r} is not a number") from None
    return bounds


def markdown_report(evaluation: QAEvaluation) -> str:
    """A human-readable report: metrics, gate, stage times, and answers worth a look."""
    e = evaluation

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        f"# QA evaluation: {e.dataset} with pipeline `{e.pipeline}`",
        "",
        f"{e.questions} questions ({e.unanswerable} unanswerable: their gold passages removed, "
        f"{e.passages_removed} passages; {e.passages_indexed} indexed); the generator sees the top {e.k} hits.",
        "",
        "| metric | value | meaning |",
        "|---|---:|---|",
    ]
    for name, value in e.metrics.items():
        meaning = QA_METRICS.get(name, QA_METRICS["answer_in_context@k"] if name.startswith("answer_in_context@") else "")
        lines.append(f"| {name} | {fmt(value)} | {meaning} |")
    if e.gate:
        verdict = "PASSED" if e.passed else "FAILED"
        lines += ["", f"## Gate: {verdict}", ""]
        lines += [f"- {'PASS' if c.passed else '**FAIL**'} `{c.describe()}`" for c in e.gate]
    lines += ["", "## Time per question (ms)", "", "| stage | p50 | p90 | mean |", "|---|---:|---:|---:|"]
    for stage, values in e.stage_ms.items():
        lines.append(f"| {stage} | {values['p50']:.1f} | {values['p90']:.1f} | {values['mean']:.1f} |")
    lines.append("")
    lines.append(f"Ingest {e.timings.get('ingest_s', 0.0):.1f} s ({int(e.timings.get('texts_embedded', 0))} texts embedded).")
    if e.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in e.warnings]

    def one_line(text: str, limit: int = 160) -> str:
        text = " ".join(str(text).split()).replace("|", "/")
        return text if len(text) <= limit else text[: limit - 1] + "…"

    wrong = [s for s in e.samples if s["answerable"] and not s["abstained"] and not s["containment"] and s["answer_in_context"]]
    missed = [s for s in e.samples if not s["answerable"] and not s["abstained"]]
    false = [s for s in e.samples if s["answerable"] and s["abstained"] and s["answer_in_context"]]
    for title, group in (
        ("Answered without the reference, which was in the context", wrong),
        ("Unanswerable, but answered", missed),
        ("Answerable (reference in the context), but abstained", false),
    ):
        if group:
            lines += ["", f"## {title} ({len(group)})", ""]
            for s in group[:_SAMPLES_IN_REPORT]:
                lines.append(
                    f"- {s['id']}: {one_line(s['question'], 100)} -> \"{one_line(s['answer'])}\" "
                    f"(reference: {one_line('; '.join(s['references']), 60)})"
                )
    return "\n".join(lines) + "\n"
