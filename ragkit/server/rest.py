"""The REST API: /v1/query (JSON or Server-Sent Events), /v1/retrieve, /v1/ingest + /v1/jobs/{id},
/v1/delete, /v1/status, /v1/chunks/{id}, and the probes /healthz, /readyz, /metrics."""

from __future__ import annotations

import json
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from ragkit.server.errors import ApiError, describe_exception
from ragkit.server.service import RagService, hit_json, parse_filter

FILTER_HELP = (
    'Mongo-like metadata filter, e.g. {"source": "data/planets/mars.md"} or {"page": {"$gte": 3}} '
    "($eq $ne $in $nin $gt $gte $lt $lte $and $or; see the README)."
)
GENERATION_HEADER = "X-Ragkit-Generation"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueryRequest(Strict):
    question: str = Field(min_length=1, max_length=10_000, description="The question to answer.")
    top_k: int | None = Field(None, ge=1, le=100, description="Hits handed to the generator (default: the pipeline's).")
    filter: dict[str, Any] | None = Field(None, description=FILTER_HELP)
    stream: bool = Field(
        False,
        description='Server-Sent Events: `delta` events ({"text": ...}) as the answer is generated, then one '
        "`answer` event with every field of the JSON answer (or an `error` event {code, message}).",
    )


class RetrieveRequest(Strict):
    question: str = Field(min_length=1, max_length=10_000)
    top_k: int | None = Field(None, ge=1, le=100)
    filter: dict[str, Any] | None = Field(None, description=FILTER_HELP)


class IngestPathsRequest(Strict):
    paths: list[str] = Field(min_length=1, description="Server-side files or directories under an --allow-root.")
    prune: bool = Field(False, description="Also remove documents whose file under these paths is gone.")


class DeleteRequest(Strict):
    sources: list[str] = Field(min_length=1, description="Source paths, document ids (`rows.jsonl#7`) or directories.")


class Citation(BaseModel):
    n: int
    chunk_id: str
    source: str
    start: int
    end: int


class QueryHit(BaseModel):
    chunk_id: str
    source: str
    score: float
    text: str


class QueryResponse(BaseModel):
    """Exactly `ragkit query --json` (the index generation that answered is in the X-Ragkit-Generation header)."""

    answer: str
    citations: list[Citation]
    hits: list[QueryHit]
    trace: dict[str, Any]


class JobResponse(BaseModel):
    id: str
    kind: Literal["upload", "paths"]
    state: Literal["queued", "running", "succeeded", "failed"]
    inputs: list[str]
    prune: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    report: dict[str, Any] | None = Field(None, description="`ragkit ingest --json`'s report, once succeeded")
    error: dict[str, str] | None = Field(None, description="{code, message}, once failed")
    progress: dict[str, Any] | None = Field(
        None, description='{"task", "done", "total", "fraction", "phase", "counters": [{"name", "done", "total", "failed", "rate_per_s", "eta_s"}]}'
    )


INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["files"],
                }
            },
            "application/json": {"schema": IngestPathsRequest.model_json_schema()},
        },
    }
}

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "bad input (the `field` names it)"},
    409: {"description": "index locked by another writer, or incompatible"},
    422: {"description": "invalid request (the `field` names it)"},
    503: {"description": "busy (retry), or models unavailable"},
}


def build_router(service: RagService) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/query", response_model=QueryResponse, responses=ERRORS, tags=["query"])
    async def query(body: QueryRequest) -> Response:
        """Answer a question with citations (`ragkit query --json`), or stream it as SSE."""
        flt = parse_filter(body.filter)
        if body.stream:
            events = await service.stream(body.question, body.top_k, flt)
            return EventSourceResponse(_sse(events), ping=15)
        answer = await service.query(body.question, body.top_k, flt)
        headers = {GENERATION_HEADER: str(answer.trace.generation)} if answer.trace.generation is not None else None
        return JSONResponse(answer.to_json_dict(), headers=headers)

    @router.post("/v1/retrieve", responses=ERRORS, tags=["query"])
    async def retrieve(body: RetrieveRequest) -> JSONResponse:
        """Retrieval only: fused (and reranked) hits with their offsets and metadata."""
        hits, trace = await service.retrieve(body.question, body.top_k, parse_filter(body.filter))
        payload = {
            "hits": [hit_json(h) for h in hits],
            "trace": {"stages": {k: {"ms": v.ms} for k, v in trace.stages.items()}, "warnings": trace.warnings},
        }
        headers = {GENERATION_HEADER: str(trace.generation)} if trace.generation is not None else None
        return JSONResponse(payload, headers=headers)

    @router.post(
        "/v1/ingest", status_code=202, response_model=JobResponse, responses=ERRORS, tags=["index"],
        openapi_extra=INGEST_BODY,
    )
    async def ingest(request: Request) -> JSONResponse:
        """Ingest uploaded files (multipart `files`) or server-side `paths` (JSON) in a background
        job; poll `GET /v1/jobs/{id}` for progress and the ingest report. One writer at a time (409)."""
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            settings = service.settings
            form = await request.form(max_files=settings.max_upload_files, max_fields=16)
            try:
                uploads = [item for item in form.getlist("files") if hasattr(item, "file")]
                if not uploads:
                    raise ApiError(422, "invalid_request", "files: no files in the upload (multipart field `files`)", "files")
                files = [(u.filename, u.file) for u in uploads]  # type: ignore[union-attr]
                job = await anyio.to_thread.run_sync(service.ingest_uploads, files)  # copies files: off the loop
            finally:
                await form.close()
        elif content_type.startswith("application/json"):
            try:
                raw = json.loads(await request.body())
            except ValueError:
                raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
            body = _validate(IngestPathsRequest, raw)
            job = await anyio.to_thread.run_sync(service.ingest_paths, body.paths, body.prune)
        else:
            raise ApiError(
                415, "unsupported_media_type",
                "send multipart/form-data with `files`, or application/json with `paths`",
            )
        return JSONResponse(service.jobs.get(job.id), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    @router.get("/v1/jobs/{job_id}", response_model=JobResponse, tags=["index"])
    async def job(job_id: str) -> JSONResponse:
        """An ingest job's state, progress and (when done) report or error."""
        payload = service.jobs.get(job_id)
        if payload is None:
            raise ApiError(404, "job_not_found", f"no ingest job {job_id} (finished jobs are kept for a while)", "job_id")
        return JSONResponse(payload)

    @router.post("/v1/delete", responses=ERRORS, tags=["index"])
    async def delete(body: DeleteRequest) -> JSONResponse:
        """Remove documents by source, document id or directory (`ragkit delete --json`)."""
        return JSONResponse(await service.delete(body.sources))

    @router.get("/v1/status", tags=["index"])
    async def status(verify: bool = False) -> JSONResponse:
        """What `ragkit status --json` says (with `?verify=true`, also `status --verify`)."""
        return JSONResponse(await service.status(verify))

    @router.get("/v1/chunks/{chunk_id}", tags=["query"])
    async def chunk(chunk_id: str) -> JSONResponse:
        """A cited chunk inside its document (for a citation viewer): source, page, offsets, text."""
        return JSONResponse(await service.chunk_context(chunk_id))

    @router.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @router.get("/readyz", tags=["probes"])
    async def readyz() -> JSONResponse:
        """Models loaded and an index to answer from (503 until then)."""
        ready, detail = await anyio.to_thread.run_sync(service.readiness)
        return JSONResponse({"ready": ready, "detail": detail}, status_code=200 if ready else 503)

    @router.get("/metrics", tags=["probes"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format."""
        if service.metrics is None:
            raise ApiError(404, "not_found", "metrics are off")
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    return router


def _validate(model: type[Strict], raw: Any) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        messages = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, "invalid_request", messages, field) from None


async def _sse(events: Any) -> Any:
    async for kind, value in events:
        if kind == "delta":
            yield ServerSentEvent(data=json.dumps({"text": value}, ensure_ascii=False), event="delta")
        elif kind == "answer":
            yield ServerSentEvent(data=json.dumps(value.to_json_dict(), ensure_ascii=False), event="answer")
        elif kind == "error":
            status, code, message = describe_exception(value)
            yield ServerSentEvent(data=json.dumps({"code": code, "message": message, "status": status}), event="error")
