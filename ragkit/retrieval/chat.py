"""What retrieval keeps about the pipeline's LLM: error descriptions and a reply cache.

The `ChatModel` protocol itself is in ragkit.protocols; `ragkit.api` hands retrieval the
generator's chat model, so retrieval never imports generation. `CachedChatModel` memoises replies
on disk (SQLite) keyed by the model's identity, the per-call overrides and the exact messages, so
evaluation re-runs do not ask the LLM again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

from ragkit.protocols import ChatModel, Messages

__all__ = ["CachedChatModel", "ChatModel", "describe_error"]


def describe_error(exc: BaseException) -> str:
    """One line for a trace warning: the error type and the first line of its message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


class CachedChatModel:
    """`complete` answered from an SQLite file when the same model got the same request before.

    The key is the model's `identity` (model, endpoint, settings), the call's overrides and the
    messages. Only successful replies are stored: an error is retried next time. `stream` is
    passed through (a stream is not a reply to replay)."""

    def __init__(self, model: ChatModel, path: str | Path) -> None:
        self.model = model
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, text TEXT, finish_reason TEXT)"
        )
        self._db.commit()
        self.hits = 0
        self.misses = 0

    @property
    def identity(self) -> str:
        return self.model.identity

    def _key(self, messages: Messages, overrides: dict[str, Any]) -> str:
        payload = json.dumps([self.identity, overrides, messages], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def complete(self, messages: Messages, **overrides: Any) -> tuple[str, str | None]:
        key = self._key(messages, overrides)
        with self._lock:
            row = self._db.execute("SELECT text, finish_reason FROM completions WHERE key = ?", (key,)).fetchone()
        if row is not None:
            self.hits += 1
            return row[0], row[1]
        self.misses += 1
        text, finish_reason = self.model.complete(messages, **overrides)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO completions VALUES (?, ?, ?)", (key, text, finish_reason))
            self._db.commit()
        return text, finish_reason

    def stream(self, messages: Messages, **overrides: Any) -> Generator[tuple[str, str | None], None, None]:
        return self.model.stream(messages, **overrides)

    def close(self) -> None:
        self._db.close()
