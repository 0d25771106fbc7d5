"""The `ragkit` command line: ingest, query, delete, status, serve, mcp (and eval).

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
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ragkit.api import DEFAULT_INDEX_DIR, RAG, IngestReport
from ragkit.config import PipelineConfig, load_pipeline
from ragkit.errors import UserError
from ragkit.generation.citations import NO_CITATION_WARNING
from ragkit.generation.errors import GenerationError
from ragkit.indexes.filters import FilterError, MetadataFilter
from ragkit.indexes.layout import IndexDamaged, read_current
from ragkit.progress import Progress, describe, format_seconds
from ragkit.protocols import Embedder
from ragkit.redaction import redact, redact_value
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

# UserError: bad input, configuration, a missing/locked/damaged index, a model not installed.
# GenerationError: the LLM endpoint failed (the message names it, never the key). Anything else
# is a bug and keeps its traceback.
USER_ERRORS = (UserError, GenerationError, FileNotFoundError)
PROGRESS_LINE_EVERY_S = 5.0  # how often a plain progress line is printed when stderr is not a terminal


def fail(message: str, code: int = 2, as_json: bool = False, **context: object) -> NoReturn:
    """Report an error on stderr (and, with --json, as a JSON object on stdout) and exit `code`."""
    message = redact(message)
    if as_json:
        print_json({"error": message, "exit_code": code, **context})
    err.print(f"error: {message}", style="bold red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def command_errors(as_json: bool = False, index: Path | None = None) -> Iterator[None]:
    """Every way a command can end badly, reported the same way (and as JSON with --json):
    user errors exit 2, Ctrl-C exits 130 saying what state the index is in, and anything
    else (a bug) prints its JSON error before the traceback."""
    context = {"index": str(index)} if index is not None else {}
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        fail(f"interrupted; {_index_state(index)}", 130, as_json, interrupted=True, **context)
    except USER_ERRORS as exc:
        fail(str(exc), 2, as_json, **context)
    except Exception as exc:
        if as_json:
            print_json({"error": f"internal error: {type(exc).__name__}: {exc}", "exit_code": 1, **context})
        raise


def _index_state(index: Path | None) -> str:
    if index is None:
        return "nothing was changed"
    try:
        current = read_current(index)
    except UserError:
        return f"index {index} unchanged"
    if current is None:
        return f"nothing was published to {index}"
    return f"index unchanged at generation {current.generation}"


def print_json(payload: object) -> None:
    """The one way JSON reaches stdout: secrets are masked in every string of it."""
    print(json.dumps(redact_value(payload), indent=2, ensure_ascii=False))


@contextmanager
def show_progress(progress: Progress, as_json: bool = False) -> Iterator[None]:
    """Show `progress` on stderr while the block runs: a live display on a terminal; otherwise a
    plain line (with --json: a JSON line `{"event": "progress", ...}`) every few seconds and at
    the end, so logs and CI show that a long command is moving."""
    if err.is_terminal and not as_json:
        with Live(console=err, transient=True, refresh_per_second=4, get_renderable=lambda: _render(progress)):
            yield
        return
    stop = threading.Event()

    def emit() -> None:
        snapshot = progress.snapshot()
        if as_json:
            sys.stderr.write(json.dumps({"event": "progress", **snapshot}) + "\n")
        else:
            sys.stderr.write(f"[{progress.operation}] {describe(snapshot)}\n")
        sys.stderr.flush()

    def tick() -> None:
        while not stop.wait(PROGRESS_LINE_EVERY_S):
            emit()

    thread = threading.Thread(target=tick, name="ragkit-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if progress.snapshot()["elapsed_s"] >= PROGRESS_LINE_EVERY_S:
            emit()  # the final counts, for anything that ran long enough to print a line


def _render(progress: Progress) -> Table:
    snapshot = progress.snapshot()
    table = Table.grid(padding=(0, 1))
    table.add_row(Text(snapshot["phase"] or progress.operation, style="bold"), Text(""), Text(format_seconds(snapshot["elapsed_s"])))
    for c in snapshot["counters"]:
        bar = ProgressBar(total=c["total"] or None, completed=c["done"], width=30)
        amount = f"{c['done']:,}" + (f"/{c['total']:,}" if c["total"] is not None else "")
        if c["failed"]:
            amount += f" ({c['failed']:,} failed)"
        if c["rate_per_s"] is not None and not c["finished"]:
            amount += f"  {c['rate_per_s']:.1f}/s"
            if c["eta_s"] is not None:
                amount += f"  ETA {format_seconds(c['eta_s'])}"
        table.add_row(Text(c["name"]), bar, Text(amount))
    return table


def _pipeline_for(index_dir: Path, pipeline: Path | None) -> PipelineConfig:
    if pipeline is not None:
        return load_pipeline(pipeline)
    if read_current(index_dir) is not None:
        return RAG.open(index_dir).config
    return PipelineConfig()


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files or directories to ingest.")],
    index: IndexOption = Path(DEFAULT_INDEX_DIR),
    pipeline: PipelineOption = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Also remove documents whose file under PATHS no longer exists.")
    ] = False,
    as_json: JsonOption = False,
    executor: Annotated[
        str, typer.Option("--executor", help="local, or ray: load, chunk and embed on Ray Data (needs the ray extra).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="A Ray cluster (e.g. ray://host:10001, auto); none: a local one on 127.0.0.1.")
    ] = None,
) -> None:
    """Load, chunk, embed and index PATHS. Unchanged files are skipped; failures are reported.

    Exit code: 0 ok; 1 some files or documents failed (the rest was indexed); 2 nothing done
    (bad pipeline or path, nothing to ingest, missing/locked/damaged index, disk full);
    130 interrupted (the index is unchanged)."""
    progress = Progress("ingest")
    with command_errors(as_json, index):
        if executor not in ("local", "ray"):
            raise UserError(f"--executor must be local or ray, not {executor!r}")
        if ray_address and executor != "ray":
            raise UserError("--ray-address applies to --executor ray")
        runner = None
        if executor == "ray":
            from ragkit.executors.ray_data import RayExecutor

            runner = RayExecutor(address=ray_address)
        rag = RAG(_pipeline_for(index, pipeline), index)
        with show_progress(progress, as_json):
            report = rag.ingest(paths, progress=progress, prune=prune, executor=runner)
    if as_json:
        print_json(_ingest_json(report, index))
    else:
        _print_ingest_summary(report, index)
    _wait_for_merges(rag, as_json)
    raise typer.Exit(0 if report.ok else 1)


def _wait_for_merges(rag: RAG, as_json: bool) -> None:
    """Let the background merge a commit started finish (the commit itself is published)."""
    if not rag.merges.running:
        return
    try:
        with show_progress(rag.merges.progress, as_json):
            rag.wait_for_merges()
    except KeyboardInterrupt:
        err.print(
            "merge interrupted: the index is complete as published; segments are merged after a later commit "
            "or by `ragkit optimize`",
            style="yellow",
        )


def _ingest_json(report: IngestReport, index: Path) -> dict:
    return {"index": str(index), **report.to_json_dict()}


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
            fail(f"--filter: {exc}", as_json=as_json)
    with command_errors(as_json and not stream, index):
        rag = RAG(load_pipeline(pipeline), index) if pipeline else RAG.open(index)
        if stream:
            answer = _stream_answer(rag, question, top_k, as_json, metadata_filter)
        else:
            answer = rag.query(question, top_k=top_k, filter=metadata_filter)
    if as_json:
        if stream:
            _print_json_line({"event": "answer", **answer.to_json_dict()})
        else:
            print_json(answer.to_json_dict())
        return
    if not stream:
        out.print(answer.text, markup=False, highlight=False, soft_wrap=True)
    _print_sources(answer)
    for warning in answer.trace.warnings:
        err.print(f"warning: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)


def _print_json_line(event: dict) -> None:
    sys.stdout.write(json.dumps(redact_value(event), ensure_ascii=False) + "\n")
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
            chunk = hit.chunk
            out.print(f"  {n}. {chunk.source}{_pages(hit)} (chars {chunk.start}-{chunk.end})", markup=False, highlight=False)


def _pages(hit: Hit) -> str:
    pages = hit.chunk.metadata.get("pages") or []
    page = hit.chunk.metadata.get("page")
    return f", pages {pages[0]}-{pages[-1]}" if len(pages) > 1 else (f", page {page}" if page else "")


@app.command()
def delete(
    sources: Annotated[
        list[str] | None,
        typer.Argument(help="Source paths, document ids, or directories written with a trailing '/'."),
    ] = None,
    index: IndexOption = Path(DEFAULT_INDEX_DIR),
    all_documents: Annotated[bool, typer.Option("--all", help="Remove every document of the index.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove documents from the index (by source, document id or directory/) in a new generation.

    Refused (exit 2, nothing deleted): an empty SOURCE, a directory without its trailing '/',
    and './' or '/' (use --all)."""
    from ragkit.indexes.maintenance import delete_documents

    with command_errors(as_json, index):
        rag = RAG.open(index)
        report = rag.delete(sources or [], all_documents)
    if as_json:
        print_json({"index": str(index), **report.model_dump()})
    else:
        out.print(f"[bold]Delete from {index}[/] (generation {report.generation})", highlight=False)
        out.print(f"  documents removed: {len(report.deleted)} ({report.chunks_removed} chunks)")
        for doc_id in report.deleted:
            out.print(f"    - {doc_id}", markup=False, highlight=False, soft_wrap=True)
        out.print(f"  in index:          {report.documents_total} documents, {report.chunks_total} chunks")
    for target in report.unmatched:
        err.print(f"warning: {target}: no such document in the index", style="yellow", markup=False, highlight=False)
    _wait_for_merges(rag, as_json)
    raise typer.Exit(0 if not report.unmatched else 1 if report.deleted else 2)


@app.command()
def optimize(
    index: IndexOption = Path(DEFAULT_INDEX_DIR),
    max_segments: Annotated[int, typer.Option("--max-segments", min=1, help="Merge down to at most this many segments.")] = 1,
    as_json: JsonOption = False,
) -> None:
    """Merge the index's segments (down to --max-segments), purging deleted rows; upgrades an
    index written before segments. Readers keep being served; nothing is re-embedded."""
    from ragkit.indexes.maintenance import index_status, optimize_index

    progress = Progress("optimize")
    with command_errors(as_json, index):
        with show_progress(progress, as_json):
            results = optimize_index(index, max_segments, progress)
        info = index_status(index)
    if as_json:
        print_json({"index": str(index), "merges": [r.model_dump() for r in results], "segments": len(info.segments), "generation": info.generation})
        return
    done = [r for r in results if r.generation is not None]
    out.print(
        f"[bold]Optimized {index}[/]: {len(done)} merge(s); {len(info.segments)} segment(s), "
        f"{info.chunks} chunks, generation {info.generation}",
        highlight=False,
    )
    for r in results:
        if r.dropped:
            err.print(f"warning: merge of {', '.join(r.merged)} dropped: {r.dropped}", style="yellow", markup=False)


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
    """Documents, chunks, generation and on-disk size of the index (and a running writer's PID).

    Exit code: 0 ok; 1 --verify found a problem (a damaged index is reported, not raised);
    2 no index, or a damaged one without --verify."""
    import time

    from ragkit.indexes.maintenance import index_status, verify_index

    info = report = None
    with command_errors(as_json, index):
        try:
            info = index_status(index)
        except IndexDamaged:
            if not verify:
                raise
        if verify:
            report = verify_index(index, _verify_embedder(index), sample=16)
    if as_json:
        payload = info.model_dump() if info is not None else {"index_dir": str(index), "damaged": True}
        if report is not None:
            payload["verify"] = report.to_json_dict()
        print_json(payload)
    elif info is None:
        out.print(f"[bold]Index {index}[/]: damaged (details below)", highlight=False)
    else:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created_at))
        out.print(f"[bold]Index {index}[/]", highlight=False)
        out.print(f"  generation:  {info.generation} ({info.directory}, published {created})", highlight=False)
        out.print(f"  documents:   {info.documents} from {info.sources} source files")
        deleted = f", {info.deleted_chunks} deleted rows not yet merged away" if info.deleted_chunks else ""
        out.print(f"  chunks:      {info.chunks} (dense, sparse and store{deleted})")
        sizes = ", ".join(f"{s.live_chunks}" for s in info.segments[:12]) + (" ..." if len(info.segments) > 12 else "")
        merging = f"; merging now: {', '.join(info.merging)}" if info.merging else ""
        out.print(f"  segments:    {len(info.segments)} (live chunks: {sizes}){merging}")
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
    if report is not None and not as_json:
        out.print(f"[bold]Verify[/]: {'ok' if report.ok else 'FAILED'}", highlight=False)
        for check in report.checks:
            mark = "ok  " if check.ok else "FAIL"
            out.print(f"  {mark} {check.name}: {check.detail}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1 if report is not None and not report.ok else 0)


def _verify_embedder(index: Path) -> Embedder | None:
    """The embedder of the index's own pipeline, to re-embed samples; None if it cannot be read."""
    try:
        rag = RAG.open(index)
    except UserError:
        return None  # a damaged pipeline.yaml: the checksum and manifest checks report it
    return rag.embedder


@app.command()
def restore(
    index: IndexOption = Path(DEFAULT_INDEX_DIR),
    force: Annotated[bool, typer.Option("--force", help="Roll back even when the current generation is intact.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make the previous intact generation current again (after damage to the current one).

    Documents ingested since that generation are gone from the index until the next ingest."""
    from ragkit.indexes.maintenance import restore_previous

    with command_errors(as_json, index):
        result = restore_previous(index, force=force)
    if as_json:
        print_json({"index": str(index), **result.model_dump()})
        return
    out.print(
        f"[bold]Restored {index}[/]: generation {result.restored_generation} is current again "
        f"(generation {result.replaced_generation} was removed)",
        highlight=False,
    )
    for problem in result.problems:
        out.print(f"  - {problem}", markup=False, highlight=False, soft_wrap=True)


@app.command("components")
def list_components(
    stage: Annotated[str | None, typer.Option("--stage", help="Only this stage (e.g. vector_store).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every registered component (built-in and from installed plugins) with its config schema."""
    from ragkit.components import STAGES, components

    if stage is not None and stage not in STAGES:
        fail(f"--stage: unknown stage {stage!r}; stages are {', '.join(STAGES)}", as_json=as_json)
    found = [c for c in components() if stage is None or c.stage == stage]
    if as_json:
        print_json([c.describe() for c in found])
        return
    for name in STAGES:
        group = [c for c in found if c.stage == name]
        if not group:
            continue
        out.print(f"[bold]{name}[/]", highlight=False)
        for c in group:
            fields = [f for f in c.config.model_fields if f != "name"]
            shown = f" ({', '.join(fields)})" if fields else ""
            exts = f" [{' '.join(c.extensions)}]" if c.extensions else ""
            out.print(f"  {c.name}{exts}: {c.summary}{shown}  — {c.module}", markup=False, highlight=False, soft_wrap=True)
# --- serve / mcp (ragkit/server, the `serve` extra: imported only when these commands run) -------


def _server_settings(**options: object):
    try:
        from ragkit.server import ServerConfigError, ServerSettings
    except ImportError as exc:
        fail(f"the server needs the `serve` extra: pip install 'ragkit[serve]' ({exc})")
    try:
        settings = ServerSettings(**options)
        settings.check()
    except (ServerConfigError, ValueError) as exc:
        fail(str(exc))
    return settings


@app.command()
def serve(
    index: IndexOption = Path(DEFAULT_INDEX_DIR),
    host: Annotated[str, typer.Option("--host", help="Address to bind; anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    pipeline: PipelineOption = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="RAGKIT_API_KEY", show_envvar=True,
            help="Require `Authorization: Bearer KEY` on every API request (prefer the env var: "
            "command lines are visible to other users).",
        ),
    ] = None,
    allow_root: Annotated[
        list[Path] | None,
        typer.Option("--allow-root", help="A server-side directory POST /v1/ingest may name (repeatable)."),
    ] = None,
    upload_dir: Annotated[
        Path | None, typer.Option("--upload-dir", help="Where uploaded files are kept (default INDEX/uploads).")
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="Allow this browser origin (CORS; repeatable). Off by default.")
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Queries answered at once (default: cores).")] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", min=0, help="Queries waiting before 503 busy.")] = 64,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", min=0.01, help="Largest JSON request body.")] = 1.0,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.01, help="Largest upload request.")] = 100.0,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve INDEX over HTTP: REST API, OpenAI-compatible chat, MCP tools at /mcp and a web UI at /."""
    options: dict[str, object] = {
        "index_dir": index, "pipeline": pipeline, "host": host, "port": port, "api_key": api_key or None,
        "allow_roots": allow_root or [], "upload_dir": upload_dir, "cors_origins": cors_origin or [],
        "max_queue": max_queue, "max_body_bytes": int(max_body_mb * 1024 * 1024),
        "max_upload_bytes": int(max_upload_mb * 1024 * 1024),
    }
    if workers is not None:
        options["workers"] = workers
    settings = _server_settings(**options)
    from ragkit.server import serve as run_server

    try:
        run_server(settings, log_level=log_level.lower())
    except USER_ERRORS as exc:
        fail(str(exc))


@app.command("mcp")
def mcp_stdio(index: IndexOption = Path(DEFAULT_INDEX_DIR), pipeline: PipelineOption = None) -> None:
    """Serve INDEX's MCP tools (search, ask, status) over stdio, for desktop MCP clients."""
    settings = _server_settings(index_dir=index, pipeline=pipeline)
    from ragkit.server import run_mcp_stdio

    try:
        run_mcp_stdio(settings)
    except USER_ERRORS as exc:
        fail(str(exc))


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
    from ragkit.eval.retrieval import cache_dir_for, describe_weights, evaluate_retrieval

    progress = Progress("eval retrieval")
    with command_errors(as_json, index):
        config = load_pipeline(pipeline) if pipeline else PipelineConfig()
        rag = RAG(config, index or cache_dir_for(dataset, config))
        with show_progress(progress, as_json):
            result = evaluate_retrieval(
                dataset, rag, max_queries=max_queries, compare=compare, run_out=run_out, split=split,
                progress=progress, llm_cache=Path(".ragkit/eval/llm-cache.sqlite"),
            )
    if as_json:
        print_json(result.to_json_dict())
        return
    from rich.table import Table

    table = Table(title=f"{result.dataset} · pipeline {result.pipeline} · {result.queries} queries")
    fusion = ", ".join(f"{k} {v}" for k, v in result.fusion.items())
    rows = result.variants or {result.main_variant: result.metrics}
    names = list(next(iter(rows.values())))
    table.add_column("variant")
    for name in names:
        table.add_column(name, justify="right")
    for variant, values in rows.items():
        table.add_row(variant, *(f"{values[m]:.4f}" for m in names))
    out.print(table)
    out.print(f"fusion: {fusion}", markup=False, highlight=False)
    if result.fusion_weights:
        out.print(f"fusion weights: {describe_weights(result.fusion_weights)}", markup=False, highlight=False)
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
    from ragkit.eval.faithfulness_eval import evaluate_faithfulness

    progress = Progress("eval faithfulness")
    with command_errors(as_json):
        with show_progress(progress, as_json):
            result = evaluate_faithfulness(file, scorer, pipeline, max_rows, progress)
    summary, errors, timings = result.summary, result.errors, result.summary["timings"]
    if out_file is not None:
        result.write_records(out_file)
    if as_json:
        print_json(summary)
    else:
        out.print(f"[bold]Faithfulness[/] of {file} with the {scorer} scorer", highlight=False)
        out.print(f"  rows:        {summary['rows']} ({len(errors)} could not be scored)")
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

    progress = Progress("eval suite")
    with command_errors(as_json):
        with show_progress(progress, as_json):
            result = run_suite(suite_file, report, progress=progress)
    if as_json:
        print_json((
            {
                "suite": result.suite,
                "passed": result.passed,
                "report_dir": result.report_dir,
                "duration_s": result.duration_s,
                "results": [
                    {k: v for k, v in pair.model_dump().items() if k != "samples"} for pair in result.results
                ],
                "thresholds": [c.model_dump() for c in result.thresholds],
            }
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

    progress = Progress("eval qa")

    def on_progress(stage: str, done: int, total: int) -> None:
        counter = progress.counter(stage, "questions", total)
        progress.advance(stage, done - counter.done)

    with command_errors(as_json):
        minimums, maximums = parse_bounds(minimum or [], "--min"), parse_bounds(maximum or [], "--max")
        config = load_pipeline(pipeline) if pipeline else PipelineConfig()
        with show_progress(progress, as_json):
            result = evaluate_qa(
                dataset, config, max_queries=max_queries, unanswerable=unanswerable, seed=seed, split=split,
                on_progress=on_progress,
            )
    gate(result, minimums, maximums)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(markdown_report(result), encoding="utf-8")
        report.with_suffix(".json").write_text(json.dumps(result.model_dump(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if as_json:
        print_json(result.summary_dict())
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
