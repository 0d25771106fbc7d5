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
    SPARSE_DIR,
    IndexStoreError,
    Manifest,
    damage_message,
    damaged_files,
    require_current,
)
from ragkit.indexes.store import STORE_FILE, ChunkStore, document_hash, text_hash
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
            return [], "no checksums recorded (generation written by an older ragkit; the next commit adds them)"
        problems = damaged_files(path, manifest)
        if problems:
            return [damage_message(index_dir, manifest, problems)], ""
        return [], f"{len(manifest.files)} files match their sizes and checksums"

    checker.run("checksums", check_checksums)

    def check_manifest() -> tuple[list[str], str]:
        problems = []
        if not path.is_dir():
            return [f"CURRENT names {manifest.directory}, which does not exist"], ""
        own = Manifest.model_validate_json((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        if own != manifest:
            problems.append(f"{manifest.directory}/{MANIFEST_FILE} differs from {CURRENT_FILE}")
        pipeline = load_pipeline(path / PIPELINE_FILE)
        state["pipeline"] = pipeline
        if pipeline.dense.embedder.model != manifest.embedding_model:
            problems.append(
                f"pipeline model {pipeline.dense.embedder.model!r} != manifest {manifest.embedding_model!r}"
            )
        for field in secret_fields(pipeline):
            problems.append(f"{PIPELINE_FILE} contains a secret in {field} (secrets must never be saved)")
        return problems, f"generation {manifest.generation} ({manifest.directory})"

    if not checker.run("manifest", check_manifest):
        return report

    pipeline: PipelineConfig = state["pipeline"]  # type: ignore[assignment]

    def check_store() -> tuple[list[str], str]:
        store = ChunkStore.open(path / STORE_FILE)
        try:
            docs: dict[str, tuple[str, str, str, str]] = {}
            problems = []
            for doc_id, source, stored_hash, text, metadata in store.document_records():
                docs[doc_id] = (source, stored_hash, text, metadata)
                document = Document(id=doc_id, source=source, text=text, metadata=json.loads(metadata))
                if document_hash(document) != stored_hash:
                    problems.append(f"document {doc_id!r}: content hash does not match its text")
            rows = store.chunk_rows()
        finally:
            store.close()
        n = len(rows)
        if [r[0] for r in rows] != list(range(n)):
            problems.append(f"chunk rows are not exactly 0..{n - 1}")
        if len({r[1] for r in rows}) != n:
            problems.append("duplicate chunk ids")
        spans = [(r[2], r[3], r[4]) for r in rows]
        if len(set(spans)) != n:
            problems.append(f"{n - len(set(spans))} chunk(s) stored twice (same document and span)")
        texts: list[str] = []
        for row, chunk_id, doc_id, start, end, stored_text_hash in rows:
            if doc_id not in docs:
                problems.append(f"row {row}: document {doc_id!r} is missing")
                texts.append("")
                continue
            source, _, doc_text, _ = docs[doc_id]
            if not 0 <= start < end <= len(doc_text):
                problems.append(f"row {row}: span [{start}, {end}) outside {source!r} (length {len(doc_text)})")
                texts.append("")
                continue
            text = doc_text[start:end]
            texts.append(text)
            if content_hash(doc_id, str(start), text) != chunk_id or text_hash(text) != stored_text_hash:
                problems.append(f"row {row}: chunk {chunk_id} is not {source!r}[{start}:{end}]")
        state["texts"] = texts
        counts = {"manifest": manifest.chunks, "store": n}
        doc_counts = {"manifest": manifest.documents, "store": len(docs)}
        if len(set(counts.values())) != 1:
            problems.append(f"chunk counts differ: {counts}")
        if len(set(doc_counts.values())) != 1:
            problems.append(f"document counts differ: {doc_counts}")
        return problems, f"{len(docs)} documents, {n} chunks (rows 0..{n - 1}, ids unique, spans exact)"

    store_ok = checker.run("store", check_store)
    texts: list[str] = state.get("texts", [])  # type: ignore[assignment]

    def check_dense() -> tuple[list[str], str]:
        view = GenerationView.open(index_dir, path, manifest.generation)
        try:
            vectors = view.vectors
            state["vectors"] = vectors
            problems = []
            if vectors.ndim != 2 or vectors.shape[0] != manifest.chunks or vectors.shape[1] != manifest.dim:
                problems.append(
                    f"the stored embeddings have shape {vectors.shape}; the manifest says {manifest.chunks} x {manifest.dim}"
                )
            if store_ok and len(vectors) != len(texts):
                problems.append(f"the stored embeddings hold {len(vectors)} vectors, the store {len(texts)} chunks")
            vector_store: VectorStore = build(
                "vector_store", pipeline.dense.backend, index_dir=index_dir, stored=pipeline.dense.backend
            )
            store_problems, detail = vector_store.verify(view, vectors, sample)
            return problems + store_problems, detail
        finally:
            view.close()

    dense_ok = checker.run("dense", check_dense)

    def check_sparse() -> tuple[list[str], str]:
        backend: SparseBackend = build("sparse_index", pipeline.sparse)
        return backend.verify(path / SPARSE_DIR, texts if store_ok else None)

    checker.run("sparse", check_sparse)

    if embedder is not None and sample > 0 and store_ok and dense_ok and texts:

        def check_embeddings() -> tuple[list[str], str]:
            vectors = state["vectors"]
            rows = sorted({int(round(x)) for x in np.linspace(0, len(texts) - 1, min(sample, len(texts)))})
            fresh = np.asarray(embedder.embed([texts[r] for r in rows]), dtype=np.float32)
            stored = np.asarray(vectors[rows], dtype=np.float32)  # type: ignore[index]
            norms = np.linalg.norm(fresh, axis=1) * np.linalg.norm(stored, axis=1)
            cosine = (fresh * stored).sum(axis=1) / np.where(norms == 0, 1, norms)
            bad = [(r, float(c)) for r, c in zip(rows, cosine) if not c >= _EMBEDDING_MIN_COSINE]
            problems = [f"row {r}: stored vector is not its chunk's embedding (cosine {c:.3f})" for r, c in bad]
            worst = float(cosine.min()) if len(cosine) else math.nan
            return problems, f"{len(rows)} sampled chunks re-embedded, min cosine {worst:.4f}"

        checker.run("embeddings", check_embeddings)
    return report
