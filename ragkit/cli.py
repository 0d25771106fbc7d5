"""The `ragkit` command line: ingest, query (and eval, added by the evaluation module).

Exit codes: 0 success; 1 partial failure (some files could not be loaded; the rest were indexed);
2 nothing was done (bad pipeline or arguments, missing or locked index, model unavailable).
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
from ragkit.indexes.layout import IndexStoreError, read_current
from ragkit.models import ModelUnavailable

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

USER_ERRORS = (PipelineError, IndexStoreError, ModelUnavailable, FileNotFoundError, ValueError)


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"error: {message}", style="bold red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


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
    as_json: JsonOption = False,
) -> None:
    """Load, chunk, embed and index PATHS. Unchanged files are skipped; failures are reported."""
    try:
        rag = RAG(_pipeline_for(index, pipeline), index)
        with Progress(
            TextColumn("{task.description:>10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=as_json,
        ) as bar:
            report = rag.ingest(paths, progress=RichProgress(bar))
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
    out.print(
        f"  documents:     {stats.documents_added} added, {stats.documents_updated} updated, "
        f"{stats.documents_unchanged} unchanged ({stats.documents_total} in index)"
    )
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
    as_json: JsonOption = False,
) -> None:
    """Answer QUESTION from the index, citing the chunks the answer comes from."""
    try:
        rag = RAG(load_pipeline(pipeline), index) if pipeline else RAG.open(index)
        answer = rag.query(question, top_k=top_k)
    except USER_ERRORS as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(answer.to_json_dict(), indent=2, ensure_ascii=False))
        return
    out.print(answer.text, markup=False, highlight=False, soft_wrap=True)
    if answer.citations:
        out.print("\n[bold]Sources[/]")
        for c in answer.citations:
            hit = next(h for h in answer.hits if h.chunk.id == c.chunk_id)
            page = hit.chunk.metadata.get("page")
            where = f", page {page}" if page else ""
            out.print(f"  [{c.n}] {c.source}{where} (chars {c.start}-{c.end})", markup=False, highlight=False)
    for warning in answer.trace.warnings:
        err.print(f"warning: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
