"""Finding files (`discover`), loading one (`load_file`) and both (`load_paths`).

Nothing here raises for bad input on disk: missing paths, unreadable directories, symlink
loops, broken or escaping symlinks and bad file contents all become `LoadFailure`s, so one
bad file never stops an ingest.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from ragkit.loaders.base import LoaderError, source_of
from ragkit.loaders.patterns import (
    IGNORE_FILE,
    IgnoreRule,
    excludes_whole_dir,
    is_ignored,
    match_any,
    parse_ignore,
)
from ragkit.loaders.registry import loader_for, unsupported_reason
from ragkit.protocols import Loader
from ragkit.schema import Document, LoadFailure

if TYPE_CHECKING:
    from ragkit.config import LoaderConfig


class Discovery(BaseModel):
    """Files to load (sorted, de-duplicated), paths that failed, and files skipped by type."""

    files: list[Path] = Field(default_factory=list)
    failures: list[LoadFailure] = Field(default_factory=list)
    skipped: list[LoadFailure] = Field(default_factory=list)


class LoadedFile(BaseModel):
    """What one file produced: its documents, and failures (whole file, or `path:LINE` rows)."""

    path: str
    documents: list[Document] = Field(default_factory=list)
    failures: list[LoadFailure] = Field(default_factory=list)


class LoadReport(BaseModel):
    """Everything an ingest loaded; `files_ok` counts files that produced at least one document."""

    documents: list[Document] = Field(default_factory=list)
    failures: list[LoadFailure] = Field(default_factory=list)
    skipped: list[LoadFailure] = Field(default_factory=list)
    files_ok: int = 0


# --- discovery -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dir:
    """A directory waiting to be walked."""

    display: Path  # as the user would refer to it (root as given + relative parts)
    rel: str  # POSIX path relative to the root ("" for the root itself)
    real: str  # resolved path
    chain: frozenset[str]  # resolved paths of it and its ancestors in this walk (loop check)
    rules: tuple[IgnoreRule, ...]
    via_symlink: bool = False  # reached through a symlinked directory


@dataclass(frozen=True)
class _Candidate:
    display: Path
    real: str
    via_symlink: bool


class _Walker:
    def __init__(self, config: LoaderConfig) -> None:
        self.config = config
        self.candidates: list[_Candidate] = []
        self.failures: list[LoadFailure] = []
        self.skipped: list[LoadFailure] = []
        self.walked: set[str] = set()  # resolved directories already walked (any root)

    def fail(self, path: Path, reason: str) -> None:
        self.failures.append(LoadFailure(path=source_of(path), reason=reason))

    # A path named by the user: a file is taken as is (no include/exclude), a dir is walked.
    def add_path(self, display: Path) -> None:
        try:
            info = os.stat(display)
        except OSError as exc:
            self.fail(display, _stat_error(display, exc))
            return
        if stat.S_ISDIR(info.st_mode):
            self.walk(display)
        elif not stat.S_ISREG(info.st_mode):
            self.fail(display, "not a regular file (a device, socket or pipe)")
        elif loader_for(display) is None:
            self.fail(display, unsupported_reason(display, hint=True))
        elif not os.access(display, os.R_OK):
            self.fail(display, "permission denied (cannot read the file)")
        else:
            real = os.path.realpath(display)
            self.candidates.append(_Candidate(display, real, via_symlink=False))

    def walk(self, root: Path) -> None:
        root_real = os.path.realpath(root)
        # An explicit stack, not recursion: directory depth must not hit the recursion limit.
        stack = [_Dir(root, "", root_real, frozenset({root_real}), ())]
        while stack:
            directory = stack.pop()
            self.walked.add(directory.real)
            children = self._walk_one(directory, root, root_real)
            stack.extend(reversed(children))  # reversed: pop in sorted order

    def _walk_one(self, directory: _Dir, root: Path, root_real: str) -> list[_Dir]:
        try:
            with os.scandir(directory.display) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            self.fail(directory.display, "permission denied (cannot list the directory)")
            return []
        except OSError as exc:
            self.fail(directory.display, f"cannot list the directory: {exc.strerror or exc}")
            return []

        rules = directory.rules
        if any(e.name == IGNORE_FILE for e in entries):
            ignore_path = directory.display / IGNORE_FILE
            try:
                text = ignore_path.read_text(encoding="utf-8", errors="replace")
                rules = rules + tuple(parse_ignore(text, directory.rel))
            except OSError as exc:
                self.fail(ignore_path, f"cannot read the ignore file: {exc.strerror or exc}")

        children: list[_Dir] = []
        for entry in entries:
            if entry.name == IGNORE_FILE:
                continue  # ignore files are configuration, never content
            display = directory.display / entry.name
            rel = f"{directory.rel}/{entry.name}" if directory.rel else entry.name
            child = self._entry(entry, display, rel, directory, rules, root, root_real)
            if child is not None:
                children.append(child)
        return children

    def _entry(
        self,
        entry: os.DirEntry[str],
        display: Path,
        rel: str,
        parent: _Dir,
        rules: tuple[IgnoreRule, ...],
        root: Path,
        root_real: str,
    ) -> _Dir | None:
        """Handle one directory entry; returns a subdirectory to walk, if any."""
        config = self.config
        try:
            info = os.stat(entry.path)  # follows symlinks: the target's type
        except OSError as exc:
            # Broken link, link loop, vanished entry: only report it if it was wanted.
            if not is_ignored(rules, rel, is_dir=False) and _wanted_file(config, rel):
                self.fail(display, _stat_error(display, exc))
            return None
        is_dir = stat.S_ISDIR(info.st_mode)
        is_link = os.path.islink(entry.path)

        if is_ignored(rules, rel, is_dir):
            return None  # .ragkitignore: silently left out
        if is_dir:
            if excludes_whole_dir(config.exclude, rel):
                return None
        elif not _wanted_file(config, rel):
            return None

        real = os.path.realpath(entry.path) if is_link else os.path.join(parent.real, entry.name)
        if is_link and not config.follow_symlinks and not _inside(real, root_real):
            self.fail(
                display,
                f"symlink to '{real}' leads outside '{source_of(root)}'; not followed "
                "(set loader.follow_symlinks: true to follow it)",
            )
            return None

        if is_dir:
            if _is_ragkit_index(entry.path):
                # `ragkit ingest . --index idx` must not index its own index (segment.json, the
                # pipeline...): a directory holding CURRENT and LOCK is one (ragkit/indexes/layout.py).
                self.skipped.append(LoadFailure(path=source_of(display), reason="a ragkit index directory, not content"))
                return None
            if real in parent.chain:
                reason = f"symlink loop: it leads back to '{real}', which contains it; not followed"
                self.fail(display, reason)
                return None
            if is_link and real in self.walked:
                return None  # the same directory was already walked under another name
            return _Dir(display, rel, real, parent.chain | {real}, rules, is_link or parent.via_symlink)

        if not stat.S_ISREG(info.st_mode):
            reason = "not a regular file (a device, socket or pipe)"
            self.skipped.append(LoadFailure(path=source_of(display), reason=reason))
        elif loader_for(display) is None:
            self.skipped.append(LoadFailure(path=source_of(display), reason=unsupported_reason(display)))
        elif not os.access(entry.path, os.R_OK):
            self.fail(display, "permission denied (cannot read the file)")
        else:
            self.candidates.append(_Candidate(display, real, via_symlink=is_link or parent.via_symlink))
        return None

    def discovery(self) -> Discovery:
        # One entry per real file: prefer a real path over a symlinked one, then the smallest.
        best: dict[str, _Candidate] = {}
        for cand in self.candidates:
            current = best.get(cand.real)
            if current is None or _rank(cand) < _rank(current):
                best[cand.real] = cand
        files = sorted({c.display for c in best.values()}, key=lambda p: p.as_posix())
        return Discovery(
            files=files,
            failures=_unique(self.failures),
            skipped=sorted(_unique(self.skipped), key=lambda f: f.path),
        )


def _rank(candidate: _Candidate) -> tuple[bool, str]:
    return (candidate.via_symlink, candidate.display.as_posix())


def _wanted_file(config: LoaderConfig, rel: str) -> bool:
    # exclude wins over include
    return match_any(config.include, rel) and not match_any(config.exclude, rel)


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def _stat_error(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop (the link never resolves to a real file); not followed"
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return f"broken symlink: target '{os.readlink(path)}' does not exist"
        return "no such file or directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


def _unique(failures: list[LoadFailure]) -> list[LoadFailure]:
    seen: set[tuple[str, str]] = set()
    out: list[LoadFailure] = []
    for failure in failures:
        key = (failure.path, failure.reason)
        if key not in seen:
            seen.add(key)
            out.append(failure)
    return out


def _is_ragkit_index(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "CURRENT")) and os.path.isfile(os.path.join(path, "LOCK"))


def discover(paths: Sequence[str | Path], config: LoaderConfig) -> Discovery:
    """The files under `paths` that `config` selects, plus failures and type-skipped files.

    Files keep the form the user gave (`data` -> `data/sub/a.md`). include/exclude globs
    and `.ragkitignore` files apply inside directory walks; a file named explicitly is
    always taken (and is a failure if its type is unsupported).
    """
    walker = _Walker(config)
    seen: set[str] = set()
    for raw in paths:
        display = Path(raw)
        if display.as_posix() in seen:
            continue
        seen.add(display.as_posix())
        walker.add_path(display)
    return walker.discovery()


# --- loading -------------------------------------------------------------------------------


def load_file(path: Path, config: LoaderConfig) -> LoadedFile:
    """Load one file by its extension. Never raises for bad content: problems are failures."""
    path = Path(path)
    source = source_of(path)

    def failed(reason: str) -> LoadedFile:
        return LoadedFile(path=source, failures=[LoadFailure(path=source, reason=reason)])

    component = loader_for(path)
    if component is None:
        return failed(unsupported_reason(path, hint=True))
    try:
        info = os.stat(path)
    except OSError as exc:
        return failed(_stat_error(path, exc))
    if not stat.S_ISREG(info.st_mode):
        # Never open pipes or devices: reading one can block forever.
        return failed("not a regular file (a directory, device, socket or pipe)")
    limit = config.max_file_mb * 1024 * 1024
    if info.st_size > limit:
        return failed(
            f"file is {info.st_size / 1024 / 1024:.1f} MB, over the limit loader.max_file_mb = "
            f"{config.max_file_mb:g}; raise that setting to load it"
        )
    loader: Loader = component.factory(config.section(component.name) or component.default_config())
    try:
        documents, failures = loader.load(path, config)
    except LoaderError as exc:
        return failed(exc.reason)
    except Exception as exc:  # a parser bug or exotic file must not stop the whole ingest
        return failed(f"unexpected error while reading the file ({type(exc).__name__}: {exc})")
    return LoadedFile(path=source, documents=documents, failures=failures)


def load_paths(paths: Sequence[str | Path], config: LoaderConfig) -> LoadReport:
    """discover + load_file for each file: every document, failure and skipped file."""
    found = discover(paths, config)
    report = LoadReport(failures=list(found.failures), skipped=list(found.skipped))
    for file in found.files:
        loaded = load_file(file, config)
        report.documents.extend(loaded.documents)
        report.failures.extend(loaded.failures)
        if loaded.documents:
            report.files_ok += 1
    return report
