"""The LLM that query transforms and the LLM reranker talk to, as retrieval sees it.

Retrieval must not import generation, so it names only what it needs: `ChatModel.complete`, the
signature of `OpenAIGenerator.complete` (and of any generator that can chat). `ragkit.api` hands
the pipeline's generator in. `CachedChatModel` memoises replies on disk (SQLite) keyed by the
model's identity and the exact messages, so evaluation re-runs do not ask the LLM again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class ChatModel(Protocol):
    def complete(self, messages: list[dict[str, str]]) -> tuple[str, str | None]:
        """One chat completion -> (text, finish_reason); raises on transport or HTTP errors."""
        ...


def describe_error(exc: BaseException) -> str:
    """One line for a trace warning: the error type and the first line of its message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


class CachedChatModel:
    """`complete` answered from an SQLite file when the same model got the same messages before.

    `identity` must change whenever the reply could (model, endpoint, temperature, max_tokens...);
    the caller builds it. Only successful replies are stored: an error is retried next time.
    """

    def __init__(self, model: ChatModel, path: str | Path, identity: str) -> None:
        self.model = model
        self.identity = identity
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

    def _key(self, messages: list[dict[str, str]]) -> str:
        payload = json.dumps([self.identity, messages], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def complete(self, messages: list[dict[str, str]]) -> tuple[str, str | None]:
        key = self._key(messages)
        with self._lock:
            row = self._db.execute(
                "SELECT text, finish_reason FROM completions WHERE key = ?", (key,)
            ).fetchone()
        if row is not None:
            self.hits += 1
            return row[0], row[1]
        self.misses += 1
        text, finish_reason = self.model.complete(messages)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO completions VALUES (?, ?, ?)", (key, text, finish_reason)
            )
            self._db.commit()
        return text, finish_reason

    def close(self) -> None:
        self._db.close()
