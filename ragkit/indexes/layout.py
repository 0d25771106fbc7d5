"""The index directory on disk: immutable generations published by an atomic manifest swap.

    INDEX_DIR/
      CURRENT              manifest of the published generation (JSON, replaced atomically)
      LOCK                 writer lock (flock; holds the writer's PID for the error message)
      gen-000003/          one complete generation: store, vectors, dense and sparse indexes,
        manifest.json      the pipeline it was built with, and its own manifest
        pipeline.yaml
        ...

Readers read CURRENT once and open only that generation, so they never see a half-written
index. A writer builds the next generation in a fresh directory, fsyncs it, then renames a new
CURRENT into place. flock locks die with their process, so a crashed writer leaves no stale lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, Field

FORMAT_VERSION = 1
CURRENT_FILE = "CURRENT"
LOCK_FILE = "LOCK"
PIPELINE_FILE = "pipeline.yaml"
MANIFEST_FILE = "manifest.json"
EMBEDDINGS_FILE = "embeddings.npy"
SPARSE_DIR = "bm25"


class IndexStoreError(RuntimeError):
    """An index problem users can act on; the message says what to do."""


class IndexNotFound(IndexStoreError):
    pass


class IndexLocked(IndexStoreError):
    pass


class Manifest(BaseModel):
    format: int = FORMAT_VERSION
    generation: int
    directory: str
    created_at: float = Field(default_factory=time.time)
    documents: int
    chunks: int
    embedding_model: str
    dim: int


def generation_dir_name(generation: int) -> str:
    return f"gen-{generation:06d}"


def read_current(index_dir: Path) -> Manifest | None:
    path = index_dir / CURRENT_FILE
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValueError as exc:
        raise IndexStoreError(f"{path} is not a valid ragkit manifest: {exc}") from None
    if manifest.format != FORMAT_VERSION:
        raise IndexStoreError(
            f"{index_dir} uses index format {manifest.format}; this ragkit reads format "
            f"{FORMAT_VERSION}. Re-ingest into a new --index directory."
        )
    return manifest


def require_current(index_dir: Path) -> Manifest:
    manifest = read_current(index_dir)
    if manifest is None:
        raise IndexNotFound(
            f"no ragkit index at {index_dir}: run `ragkit ingest PATH --index {index_dir}` first"
        )
    return manifest


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """Flush every file, then every directory entry, so a crash cannot publish missing data."""
    for root, _dirs, files in os.walk(directory):
        for name in files:
            _fsync_path(Path(root) / name)
        _fsync_path(Path(root))


def publish(index_dir: Path, manifest: Manifest) -> None:
    """Make `manifest`'s generation the current one: write, fsync, rename, fsync the directory."""
    generation_path = index_dir / manifest.directory
    (generation_path / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    fsync_tree(generation_path)
    tmp = index_dir / f"{CURRENT_FILE}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(manifest.model_dump_json(indent=2))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, index_dir / CURRENT_FILE)
    _fsync_path(index_dir)


def remove_stale_generations(index_dir: Path, current: Manifest, keep_previous: int = 1) -> None:
    """Delete generations older than the current one, keeping `keep_previous` for readers that
    read the old CURRENT just before the swap (open files survive unlinking on POSIX)."""
    generations = sorted(p for p in index_dir.glob("gen-*") if p.is_dir())
    current_path = index_dir / current.directory
    older = [p for p in generations if p.name < current_path.name]
    for path in older[: max(0, len(older) - keep_previous)]:
        shutil.rmtree(path, ignore_errors=True)
    for path in generations:  # unpublished leftovers of a crashed writer
        if path.name > current_path.name:
            shutil.rmtree(path, ignore_errors=True)
    for tmp in index_dir.glob(f"{CURRENT_FILE}.tmp-*"):
        tmp.unlink(missing_ok=True)


@contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """One writer per index. A second writer fails at once with the holder's PID."""
    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_dir / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise IndexLocked(
                f"index {index_dir} is locked by PID {holder} (another ingest is running); "
                "wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock
