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

The manifest records the size and xxh3-128 digest of every file of its generation, and readers
check them before serving (`check_files`): a truncated or bit-flipped file is reported, naming
the file, instead of giving silently different answers. xxh3 rather than SHA-256: measured here
4.2 GB/s against 0.29 GB/s, and this guards against disk damage, not against an attacker who can
rewrite the manifest too.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, Field

from ragkit.errors import UserError

FORMAT_VERSION = 1
CURRENT_FILE = "CURRENT"
LOCK_FILE = "LOCK"
PIPELINE_FILE = "pipeline.yaml"
MANIFEST_FILE = "manifest.json"
EMBEDDINGS_FILE = "embeddings.npy"
SPARSE_DIR = "bm25"


class IndexStoreError(UserError, RuntimeError):
    """An index problem users can act on; the message says what to do."""


class IndexNotFound(IndexStoreError):
    pass


class IndexLocked(IndexStoreError):
    pass


class IndexDamaged(IndexStoreError):
    """A file of a published generation is missing, truncated or altered."""


class FileDigest(BaseModel):
    size: int
    xxh3: str


class Manifest(BaseModel):
    format: int = FORMAT_VERSION
    generation: int
    directory: str
    created_at: float = Field(default_factory=time.time)
    documents: int
    chunks: int
    embedding_model: str
    dim: int
    # Every file of the generation (relative POSIX path) but manifest.json. None: written by a
    # ragkit before checksums existed; such a generation is opened unchecked.
    files: dict[str, FileDigest] | None = None


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
        holder = lock_holder(index_dir)
        if holder is not None:
            raise IndexNotFound(
                f"index {index_dir} has no published generation yet: an ingest (PID {holder}) is "
                "building it; try again when it has finished"
            )
        raise IndexNotFound(
            f"no ragkit index at {index_dir}: run `ragkit ingest PATH --index {index_dir}` first"
        )
    return manifest


def lock_holder(index_dir: Path) -> int | None:
    """The PID holding the index's writer lock right now, or None (also when it cannot be told).

    Asks the kernel (/proc/locks on Linux) rather than trusting the PID written in the LOCK file,
    which stays behind after its writer exits or is killed (a stale PID never blocks a writer:
    flock locks die with their process).
    """
    try:
        info = os.stat(Path(index_dir) / LOCK_FILE)
        text = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in text.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5506595 0 EOF" (blocked waiters have "->" first)
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            try:
                return int(fields[4])
            except ValueError:
                return None
    return None


# --- checksums -----------------------------------------------------------------------------

_READ_BLOCK = 8 * 1024 * 1024


def file_digest(path: Path) -> FileDigest:
    import xxhash

    digest = xxhash.xxh3_128()
    size = 0
    buffer = bytearray(_READ_BLOCK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
            size += n
    return FileDigest(size=size, xxh3=digest.hexdigest())


def digest_files(generation_path: Path) -> dict[str, FileDigest]:
    """Size and digest of every file under `generation_path` except its manifest.json."""
    found = {}
    for root, _dirs, files in os.walk(generation_path):
        for name in files:
            path = Path(root) / name
            relative = path.relative_to(generation_path).as_posix()
            if relative != MANIFEST_FILE:
                found[relative] = file_digest(path)
    return dict(sorted(found.items()))


def damaged_files(generation_path: Path, manifest: Manifest) -> list[str]:
    """What is wrong with the generation's files, one line per file (empty: all intact).
    Sizes are compared first (cheap: a truncated file costs no reading)."""
    if manifest.files is None:
        return []
    problems = []
    for relative, expected in manifest.files.items():
        path = generation_path / relative
        try:
            size = path.stat().st_size
        except OSError as exc:
            problems.append(f"{relative}: missing ({exc.strerror or exc})")
            continue
        if size != expected.size:
            problems.append(f"{relative}: {size} bytes, the manifest says {expected.size} (truncated or altered)")
    if problems:
        return problems
    for relative, expected in manifest.files.items():
        if file_digest(generation_path / relative).xxh3 != expected.xxh3:
            problems.append(f"{relative}: content differs from its checksum (damaged on disk)")
    return problems


def check_files(index_dir: Path, manifest: Manifest) -> None:
    """Raise `IndexDamaged` (naming the generation, the files and what can be done) unless every
    file of `manifest`'s generation is intact."""
    problems = damaged_files(index_dir / manifest.directory, manifest)
    if problems:
        raise IndexDamaged(damage_message(index_dir, manifest, problems))


def damage_message(index_dir: Path, manifest: Manifest, problems: list[str]) -> str:
    where = index_dir / manifest.directory
    shown = "; ".join(f"{where / p}" for p in problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
    previous = restorable_generation(index_dir, manifest)
    if previous is not None:
        hint = (
            f"the previous generation {previous.generation} ({previous.directory}) is intact: "
            f"`ragkit restore --index {index_dir}` makes it current again (changes since are lost; "
            "re-run the ingest afterwards)"
        )
    else:
        hint = "no intact earlier generation is kept: re-ingest into a new --index directory"
    return f"index generation {manifest.generation} is damaged: {shown}. {hint}"


def restorable_generation(index_dir: Path, current: Manifest) -> Manifest | None:
    """The newest generation older than `current` that is kept on disk and whose files are all
    intact (by size and checksum), or None."""
    for path in sorted(index_dir.glob("gen-*"), reverse=True):
        if not path.is_dir() or path.name >= current.directory:
            continue
        try:
            manifest = Manifest.model_validate_json((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if manifest.files is not None and not damaged_files(path, manifest):
            return manifest
    return None


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


def publish(index_dir: Path, manifest: Manifest) -> Manifest:
    """Make `manifest`'s generation the current one: record its files' digests, write, fsync,
    rename, fsync the directory. Returns the manifest as published (with `files`)."""
    generation_path = index_dir / manifest.directory
    if manifest.files is None:
        manifest = manifest.model_copy(update={"files": digest_files(generation_path)})
    (generation_path / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    fsync_tree(generation_path)
    tmp = index_dir / f"{CURRENT_FILE}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(manifest.model_dump_json(indent=2))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, index_dir / CURRENT_FILE)
    _fsync_path(index_dir)
    return manifest


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
