"""Index maintenance: status, verification, and which documents to remove (delete, prune).

- `index_status(index_dir)` is what `ragkit status` prints: the published generation, its
  counts, the on-disk size, leftover generation directories and the PID of a running writer.
- `verify_index(index_dir)` proves that the store, the dense and the sparse index of the
  published generation agree on exactly the same chunks (`ragkit status --verify`).
- `delete_documents(index_dir, targets)` publishes a generation without the named documents
  (`ragkit delete`); `ids_to_remove(...)` decides, during an ingest, which documents of the index
  are gone: rows that vanished from a re-loaded file, and with `prune` documents whose file no
  longer exists. A file that still exists but failed to load is never removed: nothing is lost.

The writer lock is an flock(2) lock, which the kernel releases when its process dies, however it
dies: a writer killed with SIGKILL cannot leave a lock that blocks the next ingest. The PID in the
LOCK file only names the last writer; `lock_holder` asks the kernel who holds the lock now.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from pydantic import BaseModel, Field

from ragkit.config import PipelineConfig, load_pipeline
from ragkit.errors import TargetError
from ragkit.indexes.layout import (
    CURRENT_FILE,
    EMBEDDINGS_FILE,
    MANIFEST_FILE,
    PIPELINE_FILE,
    SPARSE_DIR,
    IndexDamaged,
    IndexStoreError,
    Manifest,
    damage_message,
    damaged_files,
    generation_pipeline,
    lock_holder,
    publish,
    remove_stale_generations,
    require_current,
    restorable_generation,
    writer_lock,
)
from ragkit.indexes.store import STORE_FILE, ChunkStore, document_hash, text_hash
from ragkit.schema import Document, LoadFailure, content_hash

__all__ = [
    "Check",
    "DeleteReport",
    "IndexStatus",
    "VerifyReport",
    "delete_documents",
    "ids_to_remove",
    "index_status",
    "lock_holder",
    "match_documents",
    "prune_candidates",
    "verify_index",
]

# Re-embedding a sample of chunks must reproduce the stored vectors (same model, same text); a
# row that moved out of step with its chunk gives an unrelated vector (cosine far below this).
_EMBEDDING_MIN_COSINE = 0.99


# --- status --------------------------------------------------------------------------------


class IndexStatus(BaseModel):
    """The published generation of an index and what else is on disk."""

    index_dir: str
    generation: int
    directory: str
    created_at: float
    documents: int
    chunks: int
    sources: int = Field(description="distinct source files (a JSONL/CSV file holds many documents)")
    embedding_model: str
    dim: int
    size_bytes: int = Field(description="everything under the index directory")
    generation_size_bytes: int = Field(description="the published generation alone")
    previous_generations: list[str] = Field(
        default_factory=list, description="older generations still on disk (kept for readers)"
    )
    unpublished_generations: list[str] = Field(
        default_factory=list, description="newer, never published: left by a crashed writer"
    )
    writer_pid: int | None = Field(None, description="PID holding the writer lock now, if any")
    filter_fields: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="metadata fields a query can filter on: field -> {value kind: chunks} "
        "(empty for an index written before filters existed)",
    )
    dense_backend: str = Field("faiss", description="where the vectors are searched (faiss, or chroma and where)")


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed while walking (a concurrent cleanup)
    return total


def index_status(index_dir: str | Path) -> IndexStatus:
    """Counts and sizes of the published generation; raises IndexNotFound if there is none."""
    index_dir = Path(index_dir)
    manifest = require_current(index_dir)
    current = index_dir / manifest.directory
    sources = 0
    filter_fields: dict[str, dict[str, int]] = {}
    try:
        store = ChunkStore.open(current / STORE_FILE)
        try:
            sources = int(store.db.execute("SELECT count(DISTINCT source) FROM documents").fetchone()[0])
            filter_fields = store.field_counts() if store.has_chunk_fields() else {}
        finally:
            store.close()
    except (OSError, RuntimeError, ValueError, sqlite3.Error) as exc:
        raise IndexDamaged(
            f"index generation {manifest.generation} is damaged ({current / STORE_FILE}: {type(exc).__name__}: {exc}); "
            f"run `ragkit status --verify --index {index_dir}`"
        ) from exc
    generations = sorted(p.name for p in index_dir.glob("gen-*") if p.is_dir())
    try:
        backend = generation_pipeline(index_dir, manifest).dense.backend
    except ValueError as exc:
        raise IndexDamaged(
            f"index generation {manifest.generation} is damaged ({exc}); run `ragkit status --verify --index {index_dir}`"
        ) from exc
    if backend.name == "chroma":
        from ragkit.indexes.chroma_dense import describe_config

        dense_backend = describe_config(backend, index_dir)
    else:
        dense_backend = f"faiss {backend.index}"
    return IndexStatus(
        dense_backend=dense_backend,
        index_dir=str(index_dir),
        generation=manifest.generation,
        directory=manifest.directory,
        created_at=manifest.created_at,
        documents=manifest.documents,
        chunks=manifest.chunks,
        sources=sources,
        embedding_model=manifest.embedding_model,
        dim=manifest.dim,
        size_bytes=_tree_size(index_dir),
        generation_size_bytes=_tree_size(current),
        previous_generations=[g for g in generations if g < manifest.directory],
        unpublished_generations=[g for g in generations if g > manifest.directory],
        writer_pid=lock_holder(index_dir),
        filter_fields=filter_fields,
    )


# --- verification --------------------------------------------------------------------------


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


def verify_index(
    index_dir: str | Path,
    embedder: object | None = None,
    analyzer: Callable[[str], list[str]] | None = None,
    sample: int = 16,
) -> VerifyReport:
    """Check every invariant of the published generation; never raises for a damaged index.

    Store rows are 0..N-1 with unique chunk ids and no chunk twice; every chunk's text is its
    document's text[start:end] (its id and text hash, computed from the chunker's text at ingest,
    match that slice); faiss ntotal == embeddings.npy rows == store chunks == BM25 documents ==
    the manifest's count; the faiss vectors are exactly embeddings.npy; each BM25 document has
    the length and the terms of its chunk's analyzed text. With an `embedder` (anything with
    `embed(texts)`), `sample` chunks spread over the index are re-embedded and must match their
    stored vectors, which proves that dense rows line up with store rows.
    """
    from ragkit.indexes.bm25 import BM25Index
    from ragkit.indexes.faiss_dense import FaissDenseIndex
    from ragkit.indexes.tokenize import make_analyzer

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
        if getattr(pipeline.generator, "api_key", None) is not None:
            problems.append(f"{PIPELINE_FILE} contains an API key (it must never be saved)")
        if getattr(pipeline.dense.backend, "auth_token", None) is not None:
            problems.append(f"{PIPELINE_FILE} contains a chroma auth token (it must never be saved)")
        return problems, f"generation {manifest.generation} ({manifest.directory})"

    if not checker.run("manifest", check_manifest):
        return report

    pipeline: PipelineConfig = state["pipeline"]  # type: ignore[assignment]
    analyzer = analyzer or make_analyzer(pipeline.sparse.tokenizer)

    def check_store() -> tuple[list[str], str]:
        store = ChunkStore.open(path / STORE_FILE)
        try:
            docs: dict[str, tuple[str, str, str, str]] = {}
            problems = []
            for doc_id, source, stored_hash, text, metadata in store.db.execute(
                "SELECT id, source, content_hash, text, metadata FROM documents"
            ):
                docs[doc_id] = (source, stored_hash, text, metadata)
                document = Document(id=doc_id, source=source, text=text, metadata=json.loads(metadata))
                if document_hash(document) != stored_hash:
                    problems.append(f"document {doc_id!r}: content hash does not match its text")
            rows = list(
                store.db.execute('SELECT row, id, doc_id, start, "end", text_hash FROM chunks ORDER BY row')
            )
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

    def check_chroma() -> tuple[list[str], str]:
        from ragkit.indexes.chroma_dense import verify_collection

        vectors = np.load(path / EMBEDDINGS_FILE, mmap_mode="r")
        state["vectors"] = vectors
        problems = []
        if vectors.ndim != 2 or vectors.shape[0] != manifest.chunks or vectors.shape[1] != manifest.dim:
            problems.append(f"{EMBEDDINGS_FILE} has shape {vectors.shape}; the manifest says "
                            f"{manifest.chunks} x {manifest.dim}")
        if store_ok and len(vectors) != len(texts):
            problems.append(f"{EMBEDDINGS_FILE} holds {len(vectors)} vectors, the store {len(texts)} chunks")
        chroma_problems, detail = verify_collection(index_dir, path, pipeline.dense.backend, max(sample, 16))  # type: ignore[arg-type]
        return problems + chroma_problems, detail

    def check_dense() -> tuple[list[str], str]:
        if pipeline.dense.backend.name == "chroma":
            return check_chroma()
        vectors = np.load(path / EMBEDDINGS_FILE, mmap_mode="r")
        dense = FaissDenseIndex.load(path)
        problems = []
        n = len(dense)
        if vectors.ndim != 2 or vectors.shape[0] != n:
            problems.append(f"faiss holds {n} vectors but {EMBEDDINGS_FILE} has shape {vectors.shape}")
        if dense.dim != manifest.dim or (vectors.ndim == 2 and vectors.shape[1] != manifest.dim):
            problems.append(f"dimensions differ: faiss {dense.dim}, manifest {manifest.dim}")
        if store_ok and n != len(texts):
            problems.append(f"faiss holds {n} vectors, the store {len(texts)} chunks")
        if not problems and n:
            # Exactly equal, after the index's own codec (float16/int8/PQ storage rounds vectors).
            differ = dense.mismatched_rows(vectors)
            if differ.size:
                problems.append(f"faiss rows {differ[:5].tolist()} differ from {EMBEDDINGS_FILE}")
        state["vectors"] = vectors
        return problems, (
            f"{n} vectors of dimension {dense.dim} ({dense.kind}, {dense.storage}), "
            f"identical to {EMBEDDINGS_FILE}"
        )

    dense_ok = checker.run("dense", check_dense)

    def check_sparse() -> tuple[list[str], str]:
        sparse = BM25Index.load(path / SPARSE_DIR)
        problems = []
        n = sparse.n_docs
        if n != manifest.chunks:
            problems.append(f"BM25 holds {n} documents, the manifest {manifest.chunks} chunks")
        if not store_ok or problems:
            return problems, ""
        import scipy.sparse as sp

        structure = sp.csc_matrix(
            (np.ones(len(sparse._indices), dtype=np.int8), sparse._indices, sparse._indptr),
            shape=(sparse.n_docs, sparse.n_terms),
        ).tocsr()
        lengths = np.asarray(sparse.doc_lengths)
        seen_terms = np.zeros(sparse.n_terms, dtype=bool)
        vocab = sparse.vocab
        for row, text in enumerate(texts):
            tokens = analyzer(text)
            if len(tokens) != int(lengths[row]):
                problems.append(f"row {row}: BM25 length {int(lengths[row])} != {len(tokens)} analyzed tokens")
                continue
            try:
                wanted = sorted({vocab[t] for t in tokens})
            except KeyError as exc:
                problems.append(f"row {row}: term {exc.args[0]!r} is not in the BM25 vocabulary")
                continue
            have = sorted(structure.indices[structure.indptr[row] : structure.indptr[row + 1]].tolist())
            if have != wanted:
                problems.append(f"row {row}: BM25 terms differ from the chunk's text")
            seen_terms[wanted] = True
        if not problems and not seen_terms.all():
            problems.append(f"{int((~seen_terms).sum())} BM25 terms occur in no chunk")
        return problems, f"{n} documents; lengths and terms match every chunk's analyzed text"

    checker.run("sparse", check_sparse)

    if embedder is not None and sample > 0 and store_ok and dense_ok and texts:

        def check_embeddings() -> tuple[list[str], str]:
            vectors = state["vectors"]
            rows = sorted({int(round(x)) for x in np.linspace(0, len(texts) - 1, min(sample, len(texts)))})
            fresh = np.asarray(embedder.embed([texts[r] for r in rows]), dtype=np.float32)  # type: ignore[attr-defined]
            stored = np.asarray(vectors[rows], dtype=np.float32)  # type: ignore[index]
            norms = np.linalg.norm(fresh, axis=1) * np.linalg.norm(stored, axis=1)
            cosine = (fresh * stored).sum(axis=1) / np.where(norms == 0, 1, norms)
            bad = [(r, float(c)) for r, c in zip(rows, cosine) if not c >= _EMBEDDING_MIN_COSINE]
            problems = [f"row {r}: stored vector is not its chunk's embedding (cosine {c:.3f})" for r, c in bad]
            worst = float(cosine.min()) if len(cosine) else math.nan
            return problems, f"{len(rows)} sampled chunks re-embedded, min cosine {worst:.4f}"

        checker.run("embeddings", check_embeddings)
    return report


# --- which documents to remove -------------------------------------------------------------


def _posix(path: str | Path) -> PurePosixPath:
    return PurePosixPath(Path(path).as_posix())


def _under(source: PurePosixPath, root: PurePosixPath) -> bool:
    """`source` is `root` or inside it, comparing path components (`data` does not hold `data2/x`)."""
    if source.is_absolute() != root.is_absolute():
        return False
    n = len(root.parts)
    return source.parts[:n] == root.parts


def _is_gone(source: str) -> bool:
    """True only when nothing exists at `source` any more. Any other error (permission denied,
    I/O error) means "cannot tell", and a document is never removed on a guess."""
    try:
        os.lstat(source)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def _protected(source: str, failure_paths: Iterable[str]) -> bool:
    """A source that failed to load this time (whole file, one of its rows, or a directory or
    symlink above it that could not be read) keeps its documents."""
    for failed in failure_paths:
        if source == failed or failed.startswith(source + ":") or _under(_posix(source), _posix(failed)):
            return True
    return False


def prune_candidates(
    sources: Mapping[str, str],
    roots: Sequence[str | Path],
    failure_paths: Iterable[str] = (),
    loaded_ids: Iterable[str] = (),
) -> list[str]:
    """Ids of indexed documents (`sources`: id -> source) whose file is gone from under `roots`.

    Only roots that exist now are considered (a missing root is reported by the ingest, and its
    documents are kept: a moved working directory or an unmounted disk must not empty an index).
    A document is a candidate when its source lies under such a root and nothing exists at that
    path; a file that exists but failed to load, or lies under a path that failed, is kept.
    """
    failure_paths = list(failure_paths)
    loaded = set(loaded_ids)
    live_roots = []
    for root in roots:
        check_target(root, "prune root")  # "" would mean ".", the root of every relative source
        try:
            os.stat(root)
        except OSError:
            continue
        live_roots.append(_posix(root))
    gone: dict[str, bool] = {}
    out = []
    for doc_id, source in sorted(sources.items()):
        if doc_id in loaded or not any(_under(_posix(source), r) for r in live_roots):
            continue
        if source not in gone:
            gone[source] = _is_gone(source) and not _protected(source, failure_paths)
        if gone[source]:
            out.append(doc_id)
    return out


def stale_rows(
    sources: Mapping[str, str], documents: Iterable[Document], failure_paths: Iterable[str] = ()
) -> list[str]:
    """Ids of indexed documents that a re-loaded file no longer contains (e.g. a JSONL row that
    was removed, or renumbered because it has no id). Files with any failure keep all rows."""
    failure_paths = list(failure_paths)
    loaded: dict[str, set[str]] = {}
    for document in documents:
        loaded.setdefault(document.source, set()).add(document.id)
    clean = {s for s in loaded if not any(f == s or f.startswith(s + ":") for f in failure_paths)}
    return sorted(i for i, s in sources.items() if s in clean and i not in loaded[s])


def _current_sources(index_dir: Path) -> dict[str, str]:
    from ragkit.indexes.layout import read_current

    manifest = read_current(index_dir)
    if manifest is None:
        return {}
    store = ChunkStore.open(index_dir / manifest.directory / STORE_FILE)
    try:
        return store.document_sources()
    finally:
        store.close()


def ids_to_remove(
    index_dir: str | Path,
    documents: Sequence[Document],
    failures: Iterable[LoadFailure] = (),
    roots: Sequence[str | Path] = (),
    prune: bool = False,
) -> list[str]:
    """Documents an ingest of `roots` must remove besides upserting `documents` (call it under
    the writer lock): vanished rows of re-loaded files, and with `prune` documents whose file is
    gone (see `prune_candidates`)."""
    sources = _current_sources(Path(index_dir))
    if not sources:
        return []
    failure_paths = [f.path for f in failures]
    remove = set(stale_rows(sources, documents, failure_paths))
    if prune:
        remove.update(prune_candidates(sources, roots, failure_paths, (d.id for d in documents)))
    return sorted(remove)


# --- delete --------------------------------------------------------------------------------


def check_target(target: str | Path, what: str = "target") -> str:
    """`target` as a string; an empty or whitespace-only one is refused (TargetError).

    An unset shell variable turns `ragkit delete "$FILE"` into `ragkit delete ""`, and the empty
    path means `.`, which holds every relative source: it must never reach a matcher."""
    raw = str(target)
    if not raw.strip():
        raise TargetError(
            f"empty {what} {raw!r} (an unset shell variable?): name a source file, a document id "
            "or a directory with a trailing '/'"
        )
    return raw


def _is_root(path: PurePosixPath) -> bool:
    """`.`, `/` (and `./`, `//`...): a directory that holds every source of its kind."""
    return not path.parts or (len(path.parts) == 1 and not path.parts[0].strip("/"))


def match_documents(
    sources: Mapping[str, str], targets: Sequence[str | Path], all_documents: bool = False
) -> tuple[list[str], list[str]]:
    """(ids of documents named by `targets`, targets that matched nothing).

    A target matches a document id exactly (`rows.jsonl#7`), a source (every document of that
    file), or, written with a trailing `/`, a directory (every source under it). A target never
    removes more than it names literally: an empty one, a directory without its trailing `/`,
    and `./` or `/` (every document) raise `TargetError`; `all_documents` names every document.
    """
    if all_documents:
        return sorted(sources), []
    ids: set[str] = set()
    unmatched = []
    for target in targets:
        raw = check_target(target, "delete target")
        root = _posix(raw)
        is_dir_form = raw.rstrip().endswith("/")
        if _is_root(root):
            raise TargetError(
                f"delete target {raw!r} names every document of the index; use --all "
                "(RAG.delete(all_documents=True)) to remove them all"
            )
        named = {i for i, s in sources.items() if i == raw or i == root.as_posix() or _posix(s) == root}
        inside = {i for i, s in sources.items() if i not in named and _under(_posix(s), root)}
        if inside and not is_dir_form:
            raise TargetError(
                f"delete target {raw!r} is a directory holding {len(inside)} document(s); write it "
                f"with a trailing '/' ({raw.rstrip('/')}/) to remove everything under it"
            )
        hit = named | inside
        if hit:
            ids.update(hit)
        else:
            unmatched.append(raw)
    return sorted(ids), unmatched


class DeleteReport(BaseModel):
    deleted: list[str] = Field(default_factory=list, description="ids of the documents removed")
    unmatched: list[str] = Field(default_factory=list, description="targets that named no document")
    chunks_removed: int = 0
    generation: int
    published: bool = False
    documents_total: int = 0
    chunks_total: int = 0


class _NoEmbedding:
    """The embedder a delete passes to the writer: it knows the dimension and never encodes."""

    def __init__(self, model_id: str, dim: int) -> None:
        self.model_id = model_id
        self.dim = dim
        self.loaded = True

    def load(self) -> None:
        pass

    def embed(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        if len(texts):
            raise RuntimeError("a delete must not embed anything")
        return np.zeros((0, self.dim), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        raise RuntimeError("a delete must not embed anything")


def _no_chunks(document: Document) -> list:
    raise RuntimeError("a delete must not chunk anything")


def delete_documents(
    index_dir: str | Path, targets: Sequence[str | Path], all_documents: bool = False
) -> DeleteReport:
    """Publish a generation without the documents `targets` name (see `match_documents`; raises
    `TargetError` for a target that is empty or names more than it says, before taking the lock).

    Takes the writer lock (IndexLocked if another writer runs). The index keeps its own pipeline,
    and no model is loaded: deleting never embeds.
    """
    from ragkit.indexes.tokenize import make_analyzer
    from ragkit.indexes.writer import write_generation

    index_dir = Path(index_dir)
    if not targets and not all_documents:
        raise TargetError("nothing to delete: name sources, document ids or directories (or use --all)")
    for target in targets:
        check_target(target, "delete target")
    require_current(index_dir)
    with writer_lock(index_dir):
        manifest = require_current(index_dir)  # re-read: a writer may have published meanwhile
        ids, unmatched = match_documents(_current_sources(index_dir), targets, all_documents)
        report = DeleteReport(unmatched=unmatched, generation=manifest.generation)
        report.documents_total, report.chunks_total = manifest.documents, manifest.chunks
        if not ids:
            return report
        pipeline = generation_pipeline(index_dir, manifest)
        stats = write_generation(
            index_dir,
            pipeline,
            [],
            _no_chunks,
            _NoEmbedding(manifest.embedding_model, manifest.dim),  # type: ignore[arg-type]
            make_analyzer(pipeline.sparse.tokenizer),
            delete_ids=ids,
        )
    report.deleted = ids
    report.chunks_removed = stats.chunks_removed
    report.generation = stats.generation
    report.published = stats.published
    report.documents_total, report.chunks_total = stats.documents_total, stats.chunks_total
    return report



# --- restore -------------------------------------------------------------------------------


class RestoreReport(BaseModel):
    restored_generation: int = Field(description="the generation that is current now")
    replaced_generation: int = Field(description="the generation that was current before (removed)")
    problems: list[str] = Field(default_factory=list, description="why the replaced generation was damaged")


def restore_previous(index_dir: str | Path, force: bool = False) -> RestoreReport:
    """Make the newest intact older generation current again (under the writer lock).

    Meant for a damaged current generation (its checksums fail); with `force` an intact one is
    rolled back too. The replaced generation is removed; documents ingested since the restored
    generation are gone from the index, and the next ingest adds them again.
    """
    index_dir = Path(index_dir)
    with writer_lock(index_dir):
        current = require_current(index_dir)
        problems = damaged_files(index_dir / current.directory, current)
        if not problems and not force:
            raise IndexStoreError(
                f"generation {current.generation} of {index_dir} is intact (its checksums match): "
                "nothing to restore; use --force to roll back to the previous generation anyway"
            )
        previous = restorable_generation(index_dir, current)
        if previous is None:
            raise IndexStoreError(
                f"no intact generation older than {current.generation} is kept in {index_dir}: "
                "re-ingest into a new --index directory"
            )
        publish(index_dir, previous)
        remove_stale_generations(index_dir, previous)
    return RestoreReport(
        restored_generation=previous.generation, replaced_generation=current.generation, problems=problems
    )
