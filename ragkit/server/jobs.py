"""Background ingest jobs: what `POST /v1/ingest` starts and `GET /v1/jobs/{id}` reports.

One writer at a time: the server runs ingest jobs on a single writer thread and refuses a second
one while the first runs (409), and `RAG.ingest` still takes the index's writer lock, so a CLI
ingest running beside the server is refused the same way. Finished jobs are remembered (the last
`max_kept`) so clients can read their reports.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, Field

from ragkit.progress import Progress

JobState = Literal["queued", "running", "succeeded", "failed"]


class JobProgress(Progress):
    """An ingest job's progress: the counters the writer updates (ragkit.progress), read by request
    handlers. `snapshot()` adds what the web UI draws: the current phase as `task`, the main
    counter's `done`/`total` and a `fraction` (chunks embedded once embedding has started, else
    files loaded)."""

    def __init__(self) -> None:
        super().__init__("ingest")

    def snapshot(self) -> dict[str, Any]:
        data = super().snapshot()
        counters = {c["name"]: c for c in data["counters"]}
        main = counters.get("chunks embedded") if counters.get("chunks embedded", {}).get("total") else None
        main = main or counters.get("files loaded")
        fraction = None
        if main is not None and main["total"]:
            fraction = min(1.0, main["done"] / main["total"])
        return {
            **data,
            "task": data["phase"] or None,
            "done": main["done"] if main else 0,
            "total": main["total"] if main else None,
            "fraction": fraction,
        }


class Job(BaseModel):
    id: str
    kind: Literal["upload", "paths"]
    state: JobState = "queued"
    inputs: list[str] = Field(default_factory=list, description="uploaded file names, or the server-side paths")
    prune: bool = False
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    report: dict[str, Any] | None = Field(None, description="the `ragkit ingest --json` report, once succeeded")
    error: dict[str, str] | None = Field(None, description="{code, message}, once failed")


class JobRunner:
    """Runs ingest jobs one at a time on a writer thread and keeps their state."""

    def __init__(self, max_kept: int, on_finish: Callable[[Job], None] | None = None) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._progress: dict[str, JobProgress] = {}
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragkit-ingest")
        self._running: str | None = None
        self._max_kept = max_kept
        self._on_finish = on_finish

    @property
    def running(self) -> str | None:
        return self._running

    def submit(
        self,
        kind: Literal["upload", "paths"],
        inputs: list[str],
        prune: bool,
        work: Callable[[JobProgress], dict[str, Any]],
        describe_error: Callable[[BaseException], tuple[str, str]],
    ) -> Job | None:
        """Start `work(progress)` as a job; None if another job is still writing."""
        with self._lock:
            if self._running is not None:
                return None
            job = Job(id=secrets.token_hex(8), kind=kind, inputs=inputs, prune=prune)
            self._running = job.id
            self._jobs[job.id] = job
            self._progress[job.id] = JobProgress()
            self._forget_old()
        self._writer.submit(self._run, job, work, describe_error)
        return job

    def _run(
        self,
        job: Job,
        work: Callable[[JobProgress], dict[str, Any]],
        describe_error: Callable[[BaseException], tuple[str, str]],
    ) -> None:
        job.state, job.started_at = "running", time.time()
        try:
            job.report = work(self._progress[job.id])
            job.state = "succeeded"
        except BaseException as exc:  # every failure is the job's result, reported by GET /v1/jobs
            code, message = describe_error(exc)
            job.error = {"code": code, "message": message}
            job.state = "failed"
        finally:
            job.finished_at = time.time()
            with self._lock:
                self._running = None
            if self._on_finish is not None:
                self._on_finish(job)

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            progress = self._progress.get(job_id)
        if job is None:
            return None
        payload = job.model_dump()
        payload["progress"] = progress.snapshot() if progress else None
        return payload

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in ("succeeded", "failed")]
        for job in finished[: max(0, len(self._jobs) - self._max_kept)]:
            self._jobs.pop(job.id, None)
            self._progress.pop(job.id, None)

    def shutdown(self) -> None:
        self._writer.shutdown(wait=True, cancel_futures=True)
