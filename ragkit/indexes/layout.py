"""The index directory on disk: immutable segments, generations published by an atomic manifest swap.

    INDEX_DIR/
      CURRENT                manifest of the published generation (JSON, replaced atomically)
      LOCK                   writer lock (flock; holds the writer's PID for the error message)
      segments/seg-000007/   one segment: the chunks one commit (or one merge) added, with their
        store.sqlite         vectors, dense index, BM25 postings and sentences; never changed after
        segment.json         it is written (its files' sizes and digests)
        ...
      gen-000012/            one generation: which segments, which of their rows are deleted
        manifest.json        (deletes/*.npz), the pipeline and the BM25 vocabulary (small files)
        pipeline.yaml
        deletes/seg-000007.npz

Lucene's model: a commit writes new segments and new deletion files only, then renames a new
CURRENT into place; readers read CURRENT once and see exactly one complete generation. Segments
are shared by the generations that list them and removed when no kept generation does. flock
locks die with their process, so a crashed writer leaves no stale lock; what it wrote but never
published is removed by the next writer.

Global rows: a generation numbers the rows of its segments consecutively in manifest order
(`SegmentEntry` order); deleted rows keep their numbers and are masked. Rows mean something only
within one generation (a merge renumbers).

Checksums: every file has its size and xxh3-128 digest recorded (a segment's in its entry, computed
once when it is written; the generation's own files at publish), and readers check them before
serving (`check_files`): sizes always, digests too up to `CHECK_DIGESTS_UP_TO` bytes of files
(above that, `ragkit status --verify` reads them all: hashing a 1M-chunk index takes seconds). xxh3
rather than SHA-256: measured here 4.2 GB/s against 0.29 GB/s, and this guards against disk damage,
not against an attacker who can rewrite the manifest too.
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

from ragkit.errors import UserError

FORMAT_VERSION = 2
CURRENT_FILE = "CURRENT"
LOCK_FILE = "LOCK"
PIPELINE_FILE = "pipeline.yaml"
MANIFEST_FILE = "manifest.json"
EMBEDDINGS_FILE = "embeddings.npy"
SPARSE_DIR = "bm25"
SEGMENTS_DIR = "segments"
SEGMENT_FILE = "segment.json"
DELETES_DIR = "deletes"
# Readers verify file digests (not only sizes) when the generation's files total at most this.
CHECK_DIGESTS_UP_TO = 512 * 1024 * 1024


class IndexStoreError(UserError, RuntimeError):
    """An index problem users can act on; the message says what to do."""


class IndexNotFound(IndexStoreError):
    pass


class IndexLocked(IndexStoreError):
    pass


class IndexDamaged(IndexStoreError):
    """A file of a published generation is missing, truncated or altered."""


class IndexNeedsUpgrade(IndexStoreError):
    """The index was written by a ragkit before segments (format 1): a writer upgrades it."""


class FileDigest(BaseModel):
    size: int
    xxh3: str


class SegmentEntry(BaseModel):
    """One segment as a generation lists it: its size, and its deletions in that generation."""

    name: str
    chunks: int = Field(description="rows in the segment, deleted ones included")
    documents: int
    deleted_chunks: int = 0
    deleted_documents: int = 0
    deletes: str | None = Field(None, description="its deletion file, relative to the generation directory")
    files: dict[str, FileDigest] = Field(default_factory=dict, description="relative to the segment directory")

    @property
    def live_chunks(self) -> int:
        return self.chunks - self.deleted_chunks

    @property
    def live_documents(self) -> int:
        return self.documents - self.deleted_documents


class Manifest(BaseModel):
    format: int = FORMAT_VERSION
    generation: int
    directory: str
    created_at: float = Field(default_factory=time.time)
    documents: int = Field(description="live documents")
    chunks: int = Field(description="live chunks")
    embedding_model: str
    dim: int
    segments: list[SegmentEntry] = Field(default_factory=list)
    # Every file of the generation directory (relative POSIX path) but manifest.json.
    files: dict[str, FileDigest] | None = None

    def segment_dirs(self, index_dir: Path) -> list[Path]:
        return [index_dir / SEGMENTS_DIR / s.name for s in self.segments]


def generation_dir_name(generation: int) -> str:
    return f"gen-{generation:06d}"


def segment_dir_name(number: int) -> str:
    return f"seg-{number:06d}"


def next_segment_number(index_dir: Path) -> int:
    """One more than any segment on disk (the caller holds the writer lock)."""
    numbers = [0]
    for path in (index_dir / SEGMENTS_DIR).glob("seg-*"):
        try:
            numbers.append(int(path.name[4:]))
        except ValueError:
            continue
    return max(numbers) + 1


def read_current(index_dir: Path) -> Manifest | None:
    path = index_dir / CURRENT_FILE
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        found = data.get("format") if isinstance(data, dict) else None
        if found == 1:
            raise IndexNeedsUpgrade(
                f"index {index_dir} was written by a ragkit before segments (index format 1); run "
                f"`ragkit optimize --index {index_dir}` once to upgrade it in place (nothing is "
                "re-embedded; any ingest or delete upgrades it too)"
            )
        if found != FORMAT_VERSION:
            raise IndexStoreError(
                f"{index_dir} uses index format {found}; this ragkit reads formats 1 and {FORMAT_VERSION}. "
                "Re-ingest into a new --index directory."
            )
        return Manifest.model_validate(data)
    except IndexStoreError:
        raise
    except ValueError as exc:
        raise IndexStoreError(f"{path} is not a valid ragkit manifest: {exc}") from None


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


def digest_files(directory: Path, skip: tuple[str, ...] = (MANIFEST_FILE,)) -> dict[str, FileDigest]:
    """Size and digest of every file under `directory` (relative POSIX paths) but `skip`."""
    found = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(root) / name
            relative = path.relative_to(directory).as_posix()
            if relative not in skip:
                found[relative] = file_digest(path)
    return dict(sorted(found.items()))


def _expected_files(index_dir: Path, manifest: Manifest) -> list[tuple[str, Path, FileDigest]]:
    """(name shown in messages, path, expected digest) of every file the generation uses."""
    out = [
        (f"{manifest.directory}/{relative}", index_dir / manifest.directory / relative, digest)
        for relative, digest in (manifest.files or {}).items()
    ]
    for segment in manifest.segments:
        base = index_dir / SEGMENTS_DIR / segment.name
        out += [(f"{SEGMENTS_DIR}/{segment.name}/{r}", base / r, d) for r, d in segment.files.items()]
    return out


def damaged_files(index_dir: Path, manifest: Manifest, digests: bool | None = True) -> list[str]:
    """What is wrong with the files of `manifest`'s generation and segments, one line per file
    (empty: all intact). Sizes are compared first (cheap: a truncated file costs no reading);
    then digests: always with `digests=True`, never with False, and with None when the files
    total at most `CHECK_DIGESTS_UP_TO` bytes."""
    expected = _expected_files(index_dir, manifest)
    problems = []
    for shown, path, digest in expected:
        try:
            size = path.stat().st_size
        except OSError as exc:
            problems.append(f"{shown}: missing ({exc.strerror or exc})")
            continue
        if size != digest.size:
            problems.append(f"{shown}: {size} bytes, the manifest says {digest.size} (truncated or altered)")
    if problems:
        return problems
    if digests is None:
        digests = sum(d.size for _, _, d in expected) <= CHECK_DIGESTS_UP_TO
    if digests:
        for shown, path, digest in expected:
            if file_digest(path).xxh3 != digest.xxh3:
                problems.append(f"{shown}: content differs from its checksum (damaged on disk)")
    return problems


def check_files(index_dir: Path, manifest: Manifest) -> None:
    """Raise `IndexDamaged` (naming the generation, the files and what can be done) unless every
    file of `manifest`'s generation is intact (digests checked up to `CHECK_DIGESTS_UP_TO`)."""
    problems = damaged_files(index_dir, manifest, digests=None)
    if problems:
        raise IndexDamaged(damage_message(index_dir, manifest, problems))


def damage_message(index_dir: Path, manifest: Manifest, problems: list[str]) -> str:
    shown = "; ".join(f"{index_dir / p}" for p in problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
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


def kept_manifests(index_dir: Path) -> list[Manifest]:
    """Manifests of the generations on disk that can be read, newest first."""
    out = []
    for path in sorted(index_dir.glob("gen-*"), reverse=True):
        try:
            manifest = Manifest.model_validate_json((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if manifest.format == FORMAT_VERSION:
            out.append(manifest)
    return out


def restorable_generation(index_dir: Path, current: Manifest) -> Manifest | None:
    """The newest generation older than `current` that is kept on disk and whose files (its
    own and its segments') are all intact, by size and checksum, or None."""
    for manifest in kept_manifests(index_dir):
        if manifest.directory >= current.directory:
            continue
        if manifest.files is not None and not damaged_files(index_dir, manifest):
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
    """Make `manifest`'s generation the current one: record its own files' digests (its segments
    carry theirs), write, fsync, rename, fsync the directory. Returns the manifest as published."""
    generation_path = index_dir / manifest.directory
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


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_generations(index_dir: Path, current: Manifest, keep_previous: int = 1) -> None:
    """Delete generations older than the current one, keeping `keep_previous` for readers that
    read the old CURRENT just before the swap (open files survive unlinking on POSIX), then the
    segments no kept generation lists, and what crashed writers and merges left behind.
    The caller holds the writer lock."""
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
    used = {s.name for s in current.segments}
    for manifest in kept_manifests(index_dir):
        used.update(s.name for s in manifest.segments)
    used |= building_segments(index_dir)
    segments = index_dir / SEGMENTS_DIR
    for path in segments.glob("seg-*"):
        if path.is_dir() and path.name not in used:
            shutil.rmtree(path, ignore_errors=True)
    for marker in segments.glob(f"*{BUILDING_SUFFIX}"):
        if marker.name[: -len(BUILDING_SUFFIX)] not in used:
            marker.unlink(missing_ok=True)


BUILDING_SUFFIX = ".building"


def reserve_segment(index_dir: Path) -> Path:
    """A new segment directory for a merge that runs outside the writer lock (the caller holds it
    now): `seg-N.building` next to it names this process, so no writer removes the directory
    while that process lives. `release_segment` drops the marker once the segment is published."""
    segments = index_dir / SEGMENTS_DIR
    directory = segments / segment_dir_name(next_segment_number(index_dir))
    directory.mkdir(parents=True)
    (segments / f"{directory.name}{BUILDING_SUFFIX}").write_text(str(os.getpid()), encoding="utf-8")
    return directory


def release_segment(directory: Path) -> None:
    (directory.parent / f"{directory.name}{BUILDING_SUFFIX}").unlink(missing_ok=True)


def building_segments(index_dir: Path) -> set[str]:
    """Segments being built outside the writer lock by a live process (a background merge):
    external vector stores must not reconcile their records away (see `VectorStore.prepare`)."""
    out = set()
    for marker in (index_dir / SEGMENTS_DIR).glob(f"*{BUILDING_SUFFIX}"):
        try:
            pid = int(marker.read_text(encoding="utf-8").strip() or 0)
        except (OSError, ValueError):
            continue
        if _pid_alive(pid):
            out.add(marker.name[: -len(BUILDING_SUFFIX)])
    return out


# A writer that finds the lock held by a merge's short publish step waits this long for it
# (instead of failing as it does when another ingest holds the lock).
MERGE_STEP_WAIT_S = 120.0
MERGE_HOLDER = "merge"


@contextmanager
def writer_lock(index_dir: Path, wait_s: float = 0.0, purpose: str = "") -> Iterator[None]:
    """One writer per index. A second writer fails with the holder's PID, at once or after
    waiting up to `wait_s` seconds; a holder that is a merge (`purpose="merge"`: its reserve and
    publish steps are short) is always waited for, up to MERGE_STEP_WAIT_S. The lock file holds
    the holder's PID (and ` merge` for a merge)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_dir / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")
    try:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip()
                merging = holder.endswith(f" {MERGE_HOLDER}")
                waited = time.monotonic() - started
                if waited < wait_s or (merging and waited < MERGE_STEP_WAIT_S) or not holder:
                    # (an empty file: the holder is between taking the lock and writing its PID)
                    if waited < max(wait_s, MERGE_STEP_WAIT_S):
                        time.sleep(0.05)
                        continue
                what = "a merge of its segments is publishing" if merging else "another ingest is running"
                raise IndexLocked(
                    f"index {index_dir} is locked by PID {holder.split()[0] if holder else 'unknown'} ({what}); "
                    "wait for it to finish"
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {purpose}" if purpose else str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock
