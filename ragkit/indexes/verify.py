"""`ragkit status --verify`: prove that store, dense and sparse index agree chunk for chunk."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from ragkit.components import build
from ragkit.config import PipelineConfig, load_pipeline, secret_fields
from ragkit.indexes.generation import GenerationView
from ragkit.indexes.layout import (
    CURRENT_FILE,
    MANIFEST_FILE,
    PIPELINE_FILE,
    SEGMENTS_DIR,
    IndexStoreError,
    Manifest,
    damage_message,
    damaged_files,
    require_current,
)
from ragkit.indexes.store import document_hash, text_hash
from ragkit.protocols import Embedder, SparseBackend, VectorStore
from ragkit.schema import Document, content_hash

# Re-embedding a sample of chunks must reproduce the stored vectors (same model, same text); a
# row that moved out of step with its chunk gives an unrelated vector (cosine far below this).
_EMBEDDING_MIN_COSINE = 0.99


class Check(BaseModel):
    name: str
    ok: bool
    detail: str


class VerifyReport(BaseModel):
    """One line per invariant of the published generation; `ok` when every one holds."""

    index_dir: str
    generation: int | None = None
    checks: list[Check] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def to_json_dict(self) -> dict:
        return {"ok": self.ok, **self.model_dump()}


class _Checker:
    def __init__(self, report: VerifyReport) -> None:
        self.report = report

    def add(self, name: str, problems: list[str], ok_detail: str) -> bool:
        if problems:
            shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
            self.report.checks.append(Check(name=name, ok=False, detail=shown))
        else:
            self.report.checks.append(Check(name=name, ok=True, detail=ok_detail))
        return not problems

    def run(self, name: str, check: Callable[[], tuple[list[str], str]]) -> bool:
        """Run one check; an exception (missing or unreadable file...) is that check failing."""
        try:
            problems, detail = check()
        except Exception as exc:  # a damaged file must be reported, not crash the verification
            problems, detail = [f"{type(exc).__name__}: {exc}"], ""
        return self.add(name, problems, detail)


def verify_index(index_dir: str | Path, embedder: Embedder | None = None, sample: int = 16) -> VerifyReport:
    """Check every invariant of the published generation; never raises for a damaged index.

    Store rows are 0..N-1 with unique chunk ids and no chunk twice; every chunk's text is its
    document's text[start:end] (its id and text hash, computed from the chunker's text at ingest,
    match that slice); the stored vectors have one row per chunk; the vector store holds exactly
    those vectors (its own `verify`); the sparse index matches every chunk's analyzed text (its own
    `verify`). With an `embedder`, `sample` chunks spread over the index are re-embedded and must
    match their stored vectors, which proves that dense rows line up with store rows.
    """
    index_dir = Path(index_dir)
    report = VerifyReport(index_dir=str(index_dir))
    checker = _Checker(report)
    try:
        manifest = require_current(index_dir)
    except IndexStoreError as exc:
        checker.add("manifest", [str(exc)], "")
        return report
    report.generation = manifest.generation
    path = index_dir / manifest.directory
    state: dict[str, object] = {}

    def check_checksums() -> tuple[list[str], str]:
        if manifest.files is None:
            return [], "no checksums recorded"
        problems = damaged_files(index_dir, manifest, digests=True)
        if problems:
            return [damage_message(index_dir, manifest, problems)], ""
        n = len(manifest.files) + sum(len(s.files) for s in manifest.segments)
        return [], f"{n} files of the generation and its {len(manifest.segments)} segments match their sizes and checksums"

    checker.run("checksums", check_checksums)

    def check_manifest() -> tuple[list[str], str]:
        problems = []
        if not path.is_dir():
            return [f"CURRENT names {manifest.directory}, which does not exist"], ""
        own = Manifest.model_validate_json((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        if own != manifest:
            problems.append(f"{manifest.directory}/{MANIFEST_FILE} differs from {CURRENT_FILE}")
        names = [s.name for s in manifest.segments]
        if len(set(names)) != len(names):
            problems.append("a segment is listed twice")
        for segment in manifest.segments:
            if not (index_dir / SEGMENTS_DIR / segment.name).is_dir():
                problems.append(f"segment {segment.name} is missing")
        pipeline = load_pipeline(path / PIPELINE_FILE)
        state["pipeline"] = pipeline
        if pipeline.dense.embedder.model != manifest.embedding_model:
            problems.append(
                f"pipeline model {pipeline.dense.embedder.model!r} != manifest {manifest.embedding_model!r}"
            )
        for field in secret_fields(pipeline):
            problems.append(f"{PIPELINE_FILE} contains a secret in {field} (secrets must never be saved)")
        return problems, f"generation {manifest.generation} ({manifest.directory}), {len(manifest.segments)} segments"

    if not checker.run("manifest", check_manifest):
        return report

    pipeline: PipelineConfig = state["pipeline"]  # type: ignore[assignment]
    try:
        view = GenerationView.open(index_dir, manifest)
    except Exception as exc:
        checker.add("store", [f"{type(exc).__name__}: {exc}"], "")
        return report

    try:
        _verify_generation(checker, view, manifest, pipeline, embedder, sample)
    finally:
        view.close()
    return report


def _verify_generation(
    checker: _Checker,
    view: GenerationView,
    manifest: Manifest,
    pipeline: PipelineConfig,
    embedder: Embedder | None,
    sample: int,
) -> None:
    index_dir = view.index_dir

    def check_store() -> tuple[list[str], str]:
        problems = []
        live_docs = 0
        live_chunks = 0
        ids: set[str] = set()
        for segment in view.segments:
            where = f"{segment.name}"
            docs: dict[str, tuple[str, str, bool]] = {}
            position = 0
            for rowid, doc_id, source, stored_hash, text, metadata in segment.store.db.execute(
                "SELECT rowid, id, source, content_hash, text, metadata FROM documents ORDER BY rowid"
            ):
                if rowid != position + 1:
                    problems.append(f"{where}: document positions are not 1..n (at {doc_id!r})")
                position += 1
                document = Document(id=doc_id, source=source, text=text, metadata=json.loads(metadata))
                if document_hash(document) != stored_hash:
                    problems.append(f"{where}: document {doc_id!r}: content hash does not match its text")
                live = segment.deleted_documents is None or not segment.deleted_documents[rowid - 1]
                docs[doc_id] = (source, text, live)
                live_docs += live
            if position != segment.documents:
                problems.append(f"{where}: {position} documents, the manifest says {segment.documents}")
            rows = segment.store.chunk_rows()
            n = len(rows)
            if [r[0] for r in rows] != list(range(n)) or n != segment.chunks:
                problems.append(f"{where}: chunk rows are not exactly 0..{segment.chunks - 1}")
            spans = [(r[2], r[3], r[4]) for r in rows]
            if len(set(spans)) != n:
                problems.append(f"{where}: {n - len(set(spans))} chunk(s) stored twice (same document and span)")
            for row, chunk_id, doc_id, start, end, stored_text_hash in rows:
                live = segment.deleted is None or not segment.deleted[row]
                if doc_id not in docs:
                    problems.append(f"{where} row {row}: document {doc_id!r} is missing")
                    continue
                source, doc_text, doc_live = docs[doc_id]
                if live and not doc_live:
                    problems.append(f"{where} row {row}: live chunk of deleted document {doc_id!r}")
                if not 0 <= start < end <= len(doc_text):
                    problems.append(f"{where} row {row}: span [{start}, {end}) outside {source!r} (length {len(doc_text)})")
                    continue
                text = doc_text[start:end]
                if content_hash(doc_id, str(start), text) != chunk_id or text_hash(text) != stored_text_hash:
                    problems.append(f"{where} row {row}: chunk {chunk_id} is not {source!r}[{start}:{end}]")
                if live:
                    live_chunks += 1
                    if chunk_id in ids:
                        problems.append(f"{where} row {row}: chunk id {chunk_id} is live twice")
                    ids.add(chunk_id)
        counts = {"manifest": manifest.chunks, "store": live_chunks}
        doc_counts = {"manifest": manifest.documents, "store": live_docs}
        if len(set(counts.values())) != 1:
            problems.append(f"live chunk counts differ: {counts}")
        if len(set(doc_counts.values())) != 1:
            problems.append(f"live document counts differ: {doc_counts}")
        return problems, (
            f"{live_docs} documents, {live_chunks} live chunks in {len(view.segments)} segments "
            f"({view.rows - live_chunks} deleted; ids unique, spans exact)"
        )

    store_ok = checker.run("store", check_store)

    def check_dense() -> tuple[list[str], str]:
        problems = []
        for segment in view.segments:
            vectors = segment.vectors
            if vectors.ndim != 2 or vectors.shape[0] != segment.chunks or (segment.chunks and vectors.shape[1] != manifest.dim):
                problems.append(
                    f"{segment.name}: the stored embeddings have shape {vectors.shape}; expected {segment.chunks} x {manifest.dim}"
                )
        vector_store: VectorStore = build(
            "vector_store", pipeline.dense.backend, index_dir=index_dir, stored=pipeline.dense.backend
        )
        store_problems, detail = vector_store.verify(view, sample)
        return problems + store_problems, detail

    dense_ok = checker.run("dense", check_dense)

    def check_sparse() -> tuple[list[str], str]:
        backend: SparseBackend = build("sparse_index", pipeline.sparse)
        return backend.verify(view)

    checker.run("sparse", check_sparse)

    live = np.flatnonzero(view.live())
    if embedder is not None and sample > 0 and store_ok and dense_ok and live.size:

        def check_embeddings() -> tuple[list[str], str]:
            picks = sorted({int(live[int(round(x))]) for x in np.linspace(0, len(live) - 1, min(sample, len(live)))})
            texts = [c.text for c in view.store.chunks_by_rows(picks)]
            fresh = np.asarray(embedder.embed(texts), dtype=np.float32)
            stored = view.vectors_at(picks)
            norms = np.linalg.norm(fresh, axis=1) * np.linalg.norm(stored, axis=1)
            cosine = (fresh * stored).sum(axis=1) / np.where(norms == 0, 1, norms)
            bad = [(r, float(c)) for r, c in zip(picks, cosine) if not c >= _EMBEDDING_MIN_COSINE]
            problems = [f"row {r}: stored vector is not its chunk's embedding (cosine {c:.3f})" for r, c in bad]
            worst = float(cosine.min()) if len(cosine) else math.nan
            return problems, f"{len(picks)} sampled chunks re-embedded, min cosine {worst:.4f}"

        checker.run("embeddings", check_embeddings)
