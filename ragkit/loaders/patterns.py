"""Glob patterns for include/exclude and `.ragkitignore` files.

Patterns match POSIX paths relative to a directory: `*` and `?` never cross `/`, `**` as
a whole segment matches any number of directories including zero (`**/*.md` matches `a.md`
and `x/y/a.md`), `[abc]`/`[!abc]` are character classes, a trailing `/` means "everything
inside this directory".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IGNORE_FILE = ".ragkitignore"


def _normalize(pattern: str) -> str:
    pattern = pattern.strip()
    while pattern.startswith("./"):
        pattern = pattern[2:]
    pattern = pattern.lstrip("/")
    if pattern.endswith("/"):
        pattern = pattern.rstrip("/") + "/**"
    return pattern


def _segment(seg: str) -> str:
    """Regex for one path segment (no `/` inside)."""
    out: list[str] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            j = i
            while j < len(seg) and seg[j] == "*":
                j += 1
            out.append(".*" if j - i >= 2 else "[^/]*")  # `a**b` crosses directories
            i = j
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "[" and (end := seg.find("]", i + 2)) != -1:
            body = seg[i + 1 : end].replace("\\", "\\\\")
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body  # a literal caret, as in fnmatch
            out.append(f"[{body}]")
            i = end + 1
            continue
        elif c == "\\" and i + 1 < len(seg):
            out.append(re.escape(seg[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """A regex that fullmatches the relative POSIX paths `pattern` selects."""
    parts = _normalize(pattern).split("/")
    out: list[str] = []
    for i, seg in enumerate(parts):
        last = i == len(parts) - 1
        if seg == "**":
            out.append(".*" if last else "(?:.*/)?")
        else:
            out.append(_segment(seg) + ("" if last else "/"))
    return re.compile("".join(out), re.DOTALL)


def glob_match(pattern: str, path: str) -> bool:
    return compile_glob(pattern).fullmatch(path) is not None


def match_any(patterns: Iterable[str], path: str) -> bool:
    return any(glob_match(p, path) for p in patterns)


def excludes_whole_dir(patterns: Sequence[str], rel_dir: str) -> bool:
    """True when every path below `rel_dir` is excluded, so the walk need not enter it.

    Only patterns ending in `/**` can say that (their prefix matching `rel_dir` means any
    `rel_dir/...` matches); this keeps pruning exactly equivalent to per-file matching.
    """
    for pattern in patterns:
        normalized = _normalize(pattern)
        if normalized == "**":
            return True
        if normalized.endswith("/**") and glob_match(normalized[:-3], rel_dir):
            return True
    return False


@dataclass(frozen=True)
class IgnoreRule:
    """One `.ragkitignore` line, relative to `base` (the ignore file's directory, "" = root)."""

    base: str
    pattern: str
    negate: bool
    dir_only: bool

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.base:
            if not rel.startswith(self.base + "/"):
                return False
            rel = rel[len(self.base) + 1 :]
        return glob_match(self.pattern, rel)


def parse_ignore(text: str, base: str) -> list[IgnoreRule]:
    """gitignore-like rules: `#` comments, blank lines, `!` re-includes, trailing `/` = dirs only;
    a pattern without `/` matches at any depth below the ignore file's directory."""
    rules: list[IgnoreRule] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        if line.startswith("\\"):  # `\#name`, `\!name`: a literal first character
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        rules.append(IgnoreRule(base, line if anchored else f"**/{line}", negate, dir_only))
    return rules


def is_ignored(rules: Sequence[IgnoreRule], rel: str, is_dir: bool) -> bool:
    """Last matching rule wins (so a deeper ignore file, or a later `!`, overrides)."""
    ignored = False
    for rule in rules:
        if rule.matches(rel, is_dir):
            ignored = not rule.negate
    return ignored
