"""The `ragkit` command line: ingest, query (and eval, added by the evaluation module).

Exit codes: 0 success; 1 partial failure (some files could not be loaded; the rest were indexed);
2 nothing was done (bad pipeline or arguments, missing or locked index, model unavailable).
`delete` exits 1 when some SOURCE matched no document, 2 when none did; `status --verify` exits 1
when the index fails verification. A locked index names the writer's PID; the lock is an flock
that dies with its process, so a killed ingest never leaves a lock that blocks the next one.
Human output goes to stdout, progress and warnings to stderr; `--json` prints only JSON on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ragkit.api import DEFAULT_INDEX_DIR, RAG, IngestReport
from ragkit.config import PipelineConfig, PipelineError, load_pipeline
from ragkit.generation.citations import NO_CITATION_WARNING
from ragkit.generation.errors import GenerationError
from ragkit.indexes.filters import FilterError, MetadataFilter
from ragkit.indexes.layout import IndexStoreError, read_current
from ragkit.models import ModelUnavailable
from ragkit.schema import Answer, Hit

app = typer.Typer(
    name="ragkit",
    help="Offline retrieval-augmented generation: ingest documents, ask questions, get cited answers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

IndexOption = Annotated[Path, typer.Option("--index", help="Index directory.")]
PipelineOption = Annotated[
    Path | None, typer.Option("--pipeline", help="Pipeline YAML (default: the index's own, else built-in default).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]

# DatasetError is a ValueError; GenerationError names the endpoint, never the key.
USER_ERRORS = (PipelineError, IndexStoreError, ModelUnavailable, GenerationError, FileNotFoundError, ValueError)


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"error: {message}", style="bold red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def progress_bar(disable: bool) -> Progress:
    """The one progress display of the CLI: on stderr, gone when done, off for --json."""
    return Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=disable,
    )


class RichProgress:
    """Adapts the ingest progress hooks to one rich progress bar per task, on stderr."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: int | None = None

    def start(self, task: str, total: int | None) -> None:
        if self.task is not None:
            self.progress.update(self.task, visible=self.progress.tasks[self.task].total is not None)
        self.task = self.progress.add_task(task, total=total)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)


def _pipeline_for(index_dir: Path, pipeline: Path | None) -> PipelineConfig:
    if pipeline is not None:
        return load_pipeline(pipeline)
    if read_current(index_dir) is not None:
        return RAG.open(index_dir).config
    return PipelineConfig()


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories to ingest.")],
    index: IndexOption = Path(DEFAULT_INDEX_DIR),
    pipeline: PipelineOption = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Also remove documents whose file under PATHS no longer exists.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Load, chunk, embed and index PATHS. Unchanged files are skipped; failures are reported."""
    try:
        rag = RAG(_pipeline_for(index, pipeline), index)
        with progress_bar(disable=as_json) as bar:
            report = rag.ingest(paths, progress=RichProgress(bar), prune=prune)
    except USER_ERRORS as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(_ingest_json(report, index), indent=2))
    else:
        _print_ingest_summary(report, index)
    raise typer.Exit(0 if report.ok else 1)


def _ingest_json(report: IngestReport, index: Path) -> dict:
    return {
        "index": str(index),
        "files_ok": report.files_ok,
        "files_failed": [f.model_dump() for f in report.failures],
        "files_skipped": [f.model_dump() for f in report.skipped],
        "documents_removed": report.removed,
        "duplicates": [d.model_dump() for d in report.duplicates],
        **report.index.model_dump(),
    }


def _print_ingest_summary(report: IngestReport, index: Path) -> None:
    stats = report.index
    out.print(f"[bold]Ingest into {index}[/] (generation {stats.generation})", highlight=False)
    out.print(f"  files ok:      {report.files_ok}")
    out.print(f"  files failed:  {len(report.failures)}")
    for failure in report.failures:
        out.print(f"    - {failure.path}: {failure.reason}", markup=False, highlight=False, soft_wrap=True)
    if report.skipped:
        out.print(f"  files skipped: {len(report.skipped)} (unsupported type)")
    if report.duplicates:
        out.print(f"  duplicates:    {len(report.duplicates)} not indexed (same content as another file)")
        for dup in report.duplicates:
            line = f"    - {dup.source}: duplicate of {dup.duplicate_of} ({dup.reason})"
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    out.print(
        f"  documents:     {stats.documents_added} added, {stats.documents_updated} updated, "
        f"{stats.documents_unchanged} unchanged, {stats.documents_deleted} removed "
        f"({stats.documents_total} in index)"
    )
    for doc_id in report.removed:
        out.print(f"    - removed {doc_id}", markup=False, highlight=False, soft_wrap=True)
    out.print(
        f"  chunks:        {stats.chunks_added} added, {stats.chunks_removed} removed "
        f"({stats.chunks_total} in index); {stats.texts_embedded} embedded, "
        f"{stats.embedding_cache_hits} from cache"
    )


@app.command()
def query(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    index: IndexOption = Path(DEFAULT_INDEX_DIR),
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="Hits handed to the generator.")] = None,
    pipeline: PipelineOption = None,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Print the answer as it is generated, then its sources. With --json: one JSON object "
            'per line, {"event": "delta", "text": ...} then {"event": "answer", ...the --json answer}.',
        ),
    ] = False,
    as_json: JsonOption = False,
    filter_json: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help='Only chunks whose metadata passes this JSON filter, e.g. \'{"source": "a.md"}\' or '
            '\'{"page": {"$gte": 3}}\' ($eq $ne $in $nin $gt $gte $lt $lte $and $or; see README).',
        ),
    ] = None,
) -> None:
    """Answer QUESTION from the index, citing the chunks the answer comes from."""
    metadata_filter = None
    if filter_json is not None:
        try:
            metadata_filter = MetadataFilter.parse(filter_json)
        except FilterError as exc:
            fail(f"--filter: {exc}")
    try:
        rag = RAG(load_pipeline(pipeline), index) if pipeline else RAG.open(index)
        if stream:
            answer = _stream_answer(rag, question, top_k, as_json, metadata_filter)
        else:
            answer = rag.query(question, top_k=top_k, filter=metadata_filter)
    except USER_ERRORS as exc:
        fail(str(exc))
    if as_json:
        if stream:
            _print_json_line({"event": "answer", **answer.to_json_dict()})
        else:
            print(json.dumps(answer.to_json_dict(), indent=2, ensure_ascii=False))
        return
    if not stream:
        out.print(answer.text, markup=False, highlight=False, soft_wrap=True)
    _print_sources(answer)
    for warning in answer.trace.warnings:
        err.print(f"warning: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)


def _print_json_line(event: dict) -> None:
    sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _stream_answer(
    rag: RAG, question: str, top_k: int | None, as_json: bool, metadata_filter: MetadataFilter | None = None
) -> Answer:
    """Write each text delta to stdout the moment it arrives (as a JSON line with --json)."""
    started = False
    try:
        with rag.query_stream(question, top_k=top_k, filter=metadata_filter) as deltas:
            for delta in deltas:
                if as_json:
                    _print_json_line({"event": "delta", "text": delta})
                else:
                    sys.stdout.write(delta)
                    sys.stdout.flush()
                    started = True
            return deltas.answer()
    finally:
        if started:  # end the answer's line even when the stream broke, before any error
            sys.stdout.write("\n")
            sys.stdout.flush()


def _print_sources(answer: Answer) -> None:
    if answer.related:  # an "I don't know": what came closest, clearly not as sources
        out.print("\n[bold]Related, not answering[/]")
        for c in answer.related:
            out.print(f"  - {c.source} (chars {c.start}-{c.end})", markup=False, highlight=False)
    if answer.citations:
        out.print("\n[bold]Sources[/]")
        for c in answer.citations:
            hit = next(h for h in answer.hits if h.chunk.id == c.chunk_id)
            out.print(f"  [{c.n}] {c.source}{_pages(hit)} (chars {c.start}-{c.end})", markup=False, highlight=False)
    elif NO_CITATION_WARNING in answer.trace.warnings:
        # Not "Sources": the model cited none of these, so nothing says the answer came from them.
        out.print("\n[bold]Context given to the model (none cited)[/]")
        for n, hit in enumerate(answer.hits, 1):
            c = hit.chunk
            out.print(f"  {n}. {c.source}{_pages(hit)} (chars {c.start}-{c.end})", markup=False, highlight=False)


def _pages(hit: Hit) -> str:
    pages = hit.chunk.metadata.get("pages") or []
    page = hit.chunk.metadata.get("page")
    return f", pages {pages[0]}-{pages[-1]}" if len(pages) > 1 else (f", page {page}" if page else "")


@app.command()
def delete(
    sources: Annotated[list[str], typer.Argument(help="Source paths, document ids or directories to remove.")],
    index: IndexOption = Path(DEFAULT_INDEX_DIR),
    as_json: JsonOption = False,
) -> None:
    """Remove documents from the index (by source, document id or directory) in a new generation."""
    from ragkit.indexes.maintenance import delete_documents

    try:
        report = delete_documents(index, sources)
    except USER_ERRORS as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps({"index": str(index), **report.model_dump()}, indent=2))
    else:
        out.print(f"[bold]Delete from {index}[/] (generation {report.generation})", highlight=False)
        out.print(f"  documents removed: {len(report.deleted)} ({report.chunks_removed} chunks)")
        for doc_id in report.deleted:
            out.print(f"    - {doc_id}", markup=False, highlight=False, soft_wrap=True)
        out.print(f"  in index:          {report.documents_total} documents, {report.chunks_total} chunks")
    for target in report.unmatched:
        err.print(f"warning: {target}: no such document in the index", style="yellow", markup=False, highlight=False)
    raise typer.Exit(0 if not report.unmatched else 1 if report.deleted else 2)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


@app.command()
def status(
    index: IndexOption = Path(DEFAULT_INDEX_DIR),
    verify: Annotated[
        bool, typer.Option("--verify", help="Also prove that store, dense and sparse index agree chunk for chunk.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Documents, chunks, generation and on-disk size of the index (and a running writer's PID)."""
    import time

    try:
        rag = RAG.open(index)
        info = rag.status()
        report = rag.verify() if verify else None
    except USER_ERRORS as exc:
        fail(str(exc))
    if as_json:
        payload = info.model_dump()
        if report is not None:
            payload["verify"] = report.to_json_dict()
        print(json.dumps(payload, indent=2))
    else:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created_at))
        out.print(f"[bold]Index {index}[/]", highlight=False)
        out.print(f"  generation:  {info.generation} ({info.directory}, published {created})", highlight=False)
        out.print(f"  documents:   {info.documents} from {info.sources} source files")
        out.print(f"  chunks:      {info.chunks} (dense, sparse and store)")
        out.print(f"  model:       {info.embedding_model} ({info.dim} dimensions)", markup=False, highlight=False)
        out.print(f"  dense:       {info.dense_backend}", markup=False, highlight=False)
        out.print(f"  on disk:     {_size(info.size_bytes)} ({_size(info.generation_size_bytes)} published generation)")
        if info.previous_generations:
            out.print(f"  previous:    {', '.join(info.previous_generations)} (kept for readers)")
        if info.unpublished_generations:
            out.print(
                f"  unpublished: {', '.join(info.unpublished_generations)} "
                "(left by an interrupted ingest; removed by the next one)"
            )
        out.print(f"  writer:      {'PID ' + str(info.writer_pid) + ' is ingesting' if info.writer_pid else 'none'}")
        if info.filter_fields:  # what `query --filter` can use
            fields = ", ".join(
                f"{name} ({'/'.join(sorted(kinds))}, {sum(kinds.values())} chunks)"
                for name, kinds in sorted(info.filter_fields.items())
            )
            out.print(f"  filterable:  {fields}", markup=False, highlight=False, soft_wrap=True)
        if report is not None:
            out.print(f"[bold]Verify[/]: {'ok' if report.ok else 'FAILED'}", highlight=False)
            for check in report.checks:
                mark = "ok  " if check.ok else "FAIL"
                out.print(f"  {mark} {check.name}: {check.detail}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1 if report is not None and not report.ok else 0)


eval_app = typer.Typer(help="Measure retrieval and answer quality.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[Path, typer.Argument(help="BEIR dataset directory (corpus.jsonl, queries.jsonl, qrels/).")],
    pipeline: PipelineOption = None,
    index: Annotated[
        Path | None, typer.Option("--index", help="Index directory (default: a cache per dataset + pipeline).")
    ] = None,
    max_queries: Annotated[int | None, typer.Option("--max-queries", min=1, help="Evaluate the first N judged queries.")] = None,
    run_out: Annotated[Path | None, typer.Option("--run-out", help="Write the run as a TREC run file.")] = None,
    compare: Annotated[
        bool,
        typer.Option("--compare", help="Sparse, dense, fused, +rerank, +query transform, side by side."),
    ] = False,
    split: Annotated[str, typer.Option("--split", help="qrels split (qrels/<split>.tsv).")] = "test",
    as_json: JsonOption = False,
) -> None:
    """Index DATASET's corpus (cached), run its queries and print retrieval metrics."""
    from ragkit.eval.retrieval import cache_dir_for, evaluate_retrieval

    try:
        config = load_pipeline(pipeline) if pipeline else PipelineConfig()
        rag = RAG(config, index or cache_dir_for(dataset, config))
        with progress_bar(disable=as_json) as bar:
            hooks = RichProgress(bar)
            tasks: dict[str, int] = {}

            def on_progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            result = evaluate_retrieval(
                dataset, rag, max_queries=max_queries, compare=compare, run_out=run_out, split=split,
                on_progress=on_progress, ingest_progress=hooks,
                llm_cache=Path(".ragkit/eval/llm-cache.sqlite"),
            )
    except USER_ERRORS as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(result.to_json_dict(), indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{result.dataset} · pipeline {result.pipeline} · {result.queries} queries")
    rows = result.variants or {result.main_variant: result.metrics}
    names = list(next(iter(rows.values())))
    table.add_column("variant")
    for name in names:
        table.add_column(name, justify="right")
    for variant, values in rows.items():
        table.add_row(variant, *(f"{values[m]:.4f}" for m in names))
    out.print(table)
    t = result.timings
    out.print(
        f"ingest {t['ingest_s']:.1f} s ({int(t['texts_embedded'])} texts embedded); "
        f"queries {t['query_s']:.1f} s, {t['queries_per_s']:.1f} queries/s"
    )
    stage_names = (("query transform LLM", "query_transform_ms_mean"), ("LLM rerank", "llm_rerank_ms_mean"))
    llm_stages = [(label, t[key]) for label, key in stage_names if key in t]
    if llm_stages:
        cache = ""
        if "llm_requests" in t:
            cache = f" (LLM cache: {int(t['llm_cache_hits'])} hits, {int(t['llm_requests'])} requests)"
        out.print("; ".join(f"{label} {ms:.0f} ms/query" for label, ms in llm_stages) + cache)
    if run_out:
        out.print(f"run written to {run_out}", highlight=False)
    for warning in result.warnings:
        err.print(f"warning: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)


# --- eval faithfulness / eval suite (see ragkit/eval/judge.py and ragkit/eval/suite.py) ----------

FAITHFULNESS_SCORERS = ("offline", "llm-judge")
_SCORE_CHUNK = 32  # rows per score_batch call (progress granularity)


@eval_app.command("faithfulness")
def eval_faithfulness(
    file: Annotated[Path, typer.Argument(help="JSONL rows {id, context, question?, answer, label?}.")],
    scorer: Annotated[
        str, typer.Option("--scorer", help="offline (bundled embeddings, no LLM) or llm-judge (OpenAI-compatible).")
    ] = "offline",
    pipeline: Annotated[
        Path | None, typer.Option("--pipeline", help="llm-judge: endpoint and model from this pipeline's generator.")
    ] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write per-row scores and claims as JSONL.")] = None,
    max_rows: Annotated[int | None, typer.Option("--max-rows", min=1, help="Score the first N rows.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Score how faithful each answer is to its context; with labels, report AUROC and accuracy.

    Exit code: 0 every row scored; 1 some rows could not be scored (listed as {"id", "error"});
    2 bad input or scorer unavailable.
    """
    import time
    from typing import Any

    from ragkit.eval.datasets import load_qa_jsonl
    from ragkit.eval.metrics import DatasetError
    from ragkit.generation.errors import GenerationError

    if scorer not in FAITHFULNESS_SCORERS:
        fail(f"--scorer: unknown scorer {scorer!r}; expected one of {', '.join(FAITHFULNESS_SCORERS)}")
    timings: dict[str, float] = {}
    try:
        started = time.perf_counter()
        rows = load_qa_jsonl(file)[:max_rows]
        for row in rows:
            if row.context is None or not row.context.strip():
                raise DatasetError(f"row {row.id!r}: missing or empty field 'context'", file)
            if row.label is not None and row.label not in (0, 1):
                raise DatasetError(f"row {row.id!r}: 'label' must be 0 or 1, got {row.label}", file)
        if not rows:
            raise DatasetError("no rows", file)
        if scorer == "llm-judge":
            from ragkit.config import OpenAIGeneratorConfig
            from ragkit.eval.judge import LLMJudgeScorer

            generator = load_pipeline(pipeline).generator if pipeline else OpenAIGeneratorConfig()
            if not isinstance(generator, OpenAIGeneratorConfig):
                fail(f"--pipeline {pipeline}: the llm-judge needs an 'openai' generator section, not {generator.name!r}")
            engine: Any = LLMJudgeScorer(generator)
        else:
            if pipeline is not None:
                fail("--pipeline is only used by --scorer llm-judge")
            from ragkit.eval.faithfulness import OfflineFaithfulnessScorer

            engine = OfflineFaithfulnessScorer()
        timings["load_s"] = time.perf_counter() - started

        started = time.perf_counter()
        results: list[Any] = []
        with progress_bar(disable=as_json) as bar:
            task = bar.add_task("scoring", total=len(rows))
            for begin in range(0, len(rows), _SCORE_CHUNK):
                chunk = rows[begin : begin + _SCORE_CHUNK]
                results.extend(engine.score_batch(chunk))
                bar.advance(task, len(chunk))
        timings["score_s"] = time.perf_counter() - started
        timings["rows_per_s"] = len(rows) / timings["score_s"] if timings["score_s"] else 0.0
    except (*USER_ERRORS, GenerationError) as exc:
        fail(str(exc))

    records: list[dict[str, Any]] = []
    scored: list[tuple[Any, float]] = []
    for row, result in zip(rows, results):
        record: dict[str, Any] = {"id": row.id}
        if hasattr(result, "error"):
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
    errors = [r for r in records if "error" in r]

    summary: dict[str, Any] = {
        "file": str(file),
        "scorer": scorer,
        "rows": len(rows),
        "errors": len(errors),
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
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        with out_file.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        out.print(f"[bold]Faithfulness[/] of {file} with the {scorer} scorer", highlight=False)
        out.print(f"  rows:        {len(rows)} ({len(errors)} could not be scored)")
        if summary["mean_score"] is not None:
            out.print(f"  mean score:  {summary['mean_score']:.4f}")
        if "auroc" in summary:
            out.print(f"  AUROC:       {summary['auroc']:.4f} over {summary['labelled_rows']} labelled rows")
            out.print(f"  accuracy:    {summary['accuracy']:.4f} at threshold {summary['best_threshold']:.4f}")
        elif "note" in summary:
            out.print(f"  {summary['note']}")
        out.print(f"  time:        {timings['score_s']:.1f} s ({timings['rows_per_s']:.1f} rows/s)")
        if out_file is not None:
            out.print(f"  scores written to {out_file}", highlight=False)
        for record in errors[:10]:
            err.print(f"error: row {record['id']}: {record['error']}", style="yellow", markup=False, highlight=False, soft_wrap=True)
        if len(errors) > 10:
            err.print(f"error: ... and {len(errors) - 10} more rows (see --out / --json)", style="yellow")
    raise typer.Exit(1 if errors else 0)


@eval_app.command("suite")
def eval_suite(
    suite_file: Annotated[Path, typer.Argument(help="Suite YAML (see eval/*.yaml).")],
    report: Annotated[
        Path | None, typer.Option("--report", help="Report directory (default: reports/<suite name>).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run a suite (datasets x pipelines), write results.json, report.md and pipelines.png.

    Exit code: 0 every threshold passes; 1 some threshold fails; 2 bad suite, dataset or pipeline.
    """
    from ragkit.eval.suite import run_suite
    from ragkit.generation.errors import GenerationError

    def progress(message: str) -> None:
        if not as_json:
            err.print(message, markup=False, highlight=False, soft_wrap=True)

    try:
        result = run_suite(suite_file, report, on_progress=progress)
    except (*USER_ERRORS, GenerationError) as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(
            {
                "suite": result.suite,
                "passed": result.passed,
                "report_dir": result.report_dir,
                "duration_s": result.duration_s,
                "results": [
                    {k: v for k, v in pair.model_dump().items() if k != "samples"} for pair in result.results
                ],
                "thresholds": [c.model_dump() for c in result.thresholds],
            },
            indent=2,
        ))
    else:
        from rich.table import Table

        for dataset in dict.fromkeys(r.dataset for r in result.results):
            pairs = [r for r in result.results if r.dataset == dataset]
            table = Table(title=f"{dataset} ({pairs[0].counts.get('questions', 0)} questions)")
            table.add_column("metric")
            for pair in pairs:
                table.add_column(pair.pipeline, justify="right")
            for metric in pairs[0].metrics:
                table.add_row(metric, *("n/a" if p.metrics.get(metric) is None else f"{p.metrics[metric]:.3f}" for p in pairs))
            out.print(table)
        for check in result.thresholds:
            mark = "PASS" if check.passed else "FAIL"
            out.print(f"  {mark} {check.describe()}", markup=False, highlight=False, style=None if check.passed else "bold red")
        verdict = "PASSED" if result.passed else f"FAILED ({len(result.failures)} threshold checks)"
        out.print(f"suite {result.suite}: {verdict} in {result.duration_s:.0f} s; report in {result.report_dir}/", highlight=False)
    raise typer.Exit(0 if result.passed else 1)


@eval_app.command("qa")
def eval_qa(
    dataset: Annotated[Path, typer.Argument(help="BEIR directory whose queries.jsonl rows carry \"answers\".")],
    pipeline: PipelineOption = None,
    max_queries: Annotated[int | None, typer.Option("--max-queries", min=1, help="The first N questions with answers.")] = None,
    unanswerable: Annotated[
        float,
        typer.Option("--unanswerable", min=0.0, max=0.99, help="Remove the gold passages of this share of the questions; score abstention on them."),
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Which questions become unanswerable.")] = 0,
    report: Annotated[Path | None, typer.Option("--report", help="Write a Markdown report (and FILE.json with every answer).")] = None,
    minimum: Annotated[list[str] | None, typer.Option("--min", help="Gate: METRIC=VALUE must hold (repeatable); exit 1 if not.")] = None,
    maximum: Annotated[list[str] | None, typer.Option("--max", help="Gate: METRIC=VALUE at most (repeatable).")] = None,
    split: Annotated[str, typer.Option("--split", help="qrels split (qrels/<split>.tsv).")] = "test",
    as_json: JsonOption = False,
) -> None:
    """Answer DATASET's questions end to end; report answer_in_context@k, containment, token F1,
    citation precision, abstention and per-stage times (see ragkit/eval/qa.py).

    Exit code: 0 ok (every --min/--max holds); 1 a gate failed; 2 bad input.
    """
    from ragkit.eval.qa import evaluate_qa, gate, markdown_report, parse_bounds

    try:
        minimums, maximums = parse_bounds(minimum or [], "--min"), parse_bounds(maximum or [], "--max")
        config = load_pipeline(pipeline) if pipeline else PipelineConfig()
        with progress_bar(disable=as_json) as bar:
            tasks: dict[str, int] = {}

            def on_progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            result = evaluate_qa(
                dataset, config, max_queries=max_queries, unanswerable=unanswerable, seed=seed, split=split,
                on_progress=on_progress,
            )
    except USER_ERRORS as exc:
        fail(str(exc))
    gate(result, minimums, maximums)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(markdown_report(result), encoding="utf-8")
        report.with_suffix(".json").write_text(json.dumps(result.model_dump(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if as_json:
        print(json.dumps(result.summary_dict(), indent=2))
    else:
        out.print(
            f"[bold]QA[/] {result.dataset} · pipeline {result.pipeline} · {result.questions} questions "
            f"({result.unanswerable} unanswerable) · top {result.k}",
            highlight=False,
        )
        for name, value in result.metrics.items():
            out.print(f"  {name:<24} {'n/a' if value is None else f'{value:.4f}'}", highlight=False)
        stages = ", ".join(f"{stage} {v['p50']:.1f}" for stage, v in result.stage_ms.items())
        out.print(f"  p50 ms per stage: {stages}", highlight=False)
        for check in result.gate:
            out.print(f"  {'PASS' if check.passed else 'FAIL'} {check.describe()}", markup=False, highlight=False)
        if report is not None:
            out.print(f"  report: {report}", highlight=False)
    raise typer.Exit(0 if result.passed else 1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
