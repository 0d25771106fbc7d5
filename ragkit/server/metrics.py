"""Prometheus metrics at `GET /metrics` (prometheus_client's text format), one registry per app.

- `ragkit_http_requests_total{method,route,status}` and `ragkit_http_request_duration_seconds`
  (by route template, e.g. `/v1/jobs/{job_id}`, so ids never become label values; a streamed
  response is timed until its last byte);
- `ragkit_stage_duration_seconds{stage}`: every stage of every answered query, from its trace
  (load_models, dense, sparse, fusion, rerank, generate, ...);
- `ragkit_queries_in_flight`, `ragkit_queries_waiting`: the worker pool's load;
- `ragkit_ingest_jobs_total{state}`, `ragkit_index_generation`.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ragkit.schema import Trace
from ragkit.server.security import ASGIApp, Message, Receive, Scope, Send

# Seconds: from a cached BM25 lookup (~1 ms) to an LLM answer on a slow CPU (tens of seconds).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ragkit_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ragkit_http_request_duration_seconds", "HTTP request latency (streams: until the last byte)",
            ["method", "route"], buckets=BUCKETS, registry=self.registry,
        )
        self.stages = Histogram(
            "ragkit_stage_duration_seconds", "time per query stage, from each answer's trace", ["stage"],
            buckets=BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge("ragkit_queries_in_flight", "queries running on a worker", registry=self.registry)
        self.waiting = Gauge("ragkit_queries_waiting", "queries waiting for a worker", registry=self.registry)
        self.jobs = Counter("ragkit_ingest_jobs", "finished ingest jobs", ["state"], registry=self.registry)
        self.generation = Gauge(
            "ragkit_index_generation", "index generation that answered the latest query", registry=self.registry
        )

    def observe_trace(self, trace: Trace) -> None:
        for stage, timing in trace.stages.items():
            self.stages.labels(stage).observe(timing.ms / 1000.0)
        if trace.generation is not None:
            self.generation.set(trace.generation)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template is None:
                path = scope.get("path", "")
                template = "/mcp" if path.startswith("/mcp") else "/static" if path.startswith("/static/") else "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
