"""Progress of long operations (ingest, evaluation): counters that the work updates and any
number of viewers read.

The work never draws anything: it advances `Counter`s of a `Progress` (files loaded, chunks
embedded, queries run) and names its current phase. Viewers poll `Progress.snapshot()` when they
like: the CLI redraws a bar on a terminal or prints a plain line every few seconds to a log, the
server returns it from `GET /v1/jobs/{id}`. Counters are plain integers updated under a lock, so
a viewer thread always reads a consistent snapshot and the work never waits for a slow viewer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counter:
    """`done` of `total` units (total None: not known yet), `failed` of them failed."""

    name: str
    unit: str = ""
    total: int | None = None
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    first_done: float | None = None  # when the first unit finished: rates exclude start-up (model load)
    finished: float | None = None

    def rate(self, now: float | None = None) -> float | None:
        """Units per second since the first one finished (None until two measurements exist)."""
        if self.first_done is None or self.done < 2:
            return None
        end = self.finished or (now if now is not None else time.monotonic())
        elapsed = end - self.first_done
        return (self.done - 1) / elapsed if elapsed > 0 else None

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left at the current rate, when the total is known."""
        rate = self.rate(now)
        if self.total is None or rate is None or rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def as_dict(self, now: float) -> dict[str, Any]:
        rate, eta = self.rate(now), self.eta_s(now)
        return {
            "name": self.name,
            "unit": self.unit,
            "done": self.done,
            "total": self.total,
            "failed": self.failed,
            "rate_per_s": None if rate is None else round(rate, 3),
            "eta_s": None if eta is None else round(eta, 1),
            "elapsed_s": round((self.finished or now) - self.started, 3),
            "finished": self.finished is not None,
        }


class Progress:
    """A named set of counters plus the current phase; thread-safe."""

    def __init__(self, operation: str = "") -> None:
        self.operation = operation
        self.phase = ""
        self.started = time.monotonic()
        self._counters: dict[str, Counter] = {}
        self._lock = threading.Lock()

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self.phase = phase

    def counter(self, name: str, unit: str = "", total: int | None = None) -> Counter:
        """The counter called `name` (created on first use)."""
        with self._lock:
            counter = self._counters.get(name)
            if counter is None:
                counter = self._counters[name] = Counter(name, unit, total)
            elif total is not None:
                counter.total = total
            return counter

    def set_total(self, name: str, total: int | None) -> None:
        self.counter(name).total = total

    def add_total(self, name: str, n: int) -> None:
        counter = self.counter(name)
        with self._lock:
            counter.total = (counter.total or 0) + n

    def advance(self, name: str, n: int = 1, failed: int = 0) -> None:
        counter = self.counter(name)
        with self._lock:
            if n and counter.first_done is None:
                counter.first_done = time.monotonic()
            counter.done += n
            counter.failed += failed

    def finish(self, name: str) -> None:
        counter = self.counter(name)
        with self._lock:
            counter.finished = counter.finished or time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        """Everything a viewer shows, as JSON-ready values."""
        now = time.monotonic()
        with self._lock:
            return {
                "operation": self.operation,
                "phase": self.phase,
                "elapsed_s": round(now - self.started, 3),
                "counters": [c.as_dict(now) for c in self._counters.values()],
            }


def describe(snapshot: dict[str, Any]) -> str:
    """One line for logs: `phase · files 120/354 (2 failed) · chunks embedded 4,096/10,240 at 35.2/s, ETA 2m55s`."""
    parts = [snapshot["phase"]] if snapshot.get("phase") else []
    for c in snapshot["counters"]:
        amount = f"{c['done']:,}" + (f"/{c['total']:,}" if c["total"] is not None else "")
        text = f"{c['name']} {amount}"
        if c["failed"]:
            text += f" ({c['failed']:,} failed)"
        if c["rate_per_s"] is not None and not c["finished"]:
            text += f" at {c['rate_per_s']:.1f}/s"
            if c["eta_s"] is not None:
                text += f", ETA {format_seconds(c['eta_s'])}"
        parts.append(text)
    parts.append(f"{format_seconds(snapshot['elapsed_s'])} elapsed")
    return " · ".join(parts)


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
