"""Every error the server returns is JSON: `{"code": ..., "message": ..., "field": ...}`.

`code` is stable and machine-readable, `message` says what went wrong and what to do, `field`
(when one is to blame) names it the way the request spelled it: `top_k`, `filter`,
`messages.0.content`, `paths[1]`. The OpenAI-compatible routes also carry OpenAI's `error` object,
so OpenAI clients show the message. Unexpected failures are logged with their traceback and
answered with a generic 500 that reveals nothing of the server's internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragkit.errors import UserError
from ragkit.generation.errors import GenerationError
from ragkit.indexes.filters import FilterError
from ragkit.indexes.layout import IndexLocked, IndexNotFound, IndexStoreError
from ragkit.models import ModelUnavailable

log = logging.getLogger("ragkit.server")

OPENAI_PATHS = ("/v1/chat/", "/v1/models")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


class BodyTooLarge(Exception):
    """Raised while reading a request body that passed its size limit (see security.py)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


def error_body(status: int, code: str, message: str, field: str | None = None, path: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    if path.startswith(OPENAI_PATHS):
        kind = "invalid_request_error" if status < 500 else "server_error"
        body["error"] = {"message": message, "type": kind, "param": field, "code": code}
    return body


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    path: str = "",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(status, code, message, field, path), status_code=status, headers=headers)


def api_error_for(exc: BaseException) -> ApiError | None:
    """The HTTP meaning of a ragkit exception raised while serving a request (None: a bug)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, FilterError):
        return ApiError(400, "invalid_filter", f"filter: {exc}", field="filter")
    if isinstance(exc, IndexLocked):
        return ApiError(409, "index_locked", str(exc))
    if isinstance(exc, IndexNotFound):
        return ApiError(404, "index_not_found", str(exc))
    if isinstance(exc, IndexStoreError):
        return ApiError(409, "index_error", str(exc))
    if isinstance(exc, ModelUnavailable):
        return ApiError(503, "model_unavailable", str(exc))
    if isinstance(exc, GenerationError):  # names the endpoint and model, never the key
        return ApiError(502, "generation_failed", str(exc))
    if isinstance(exc, BodyTooLarge):
        return ApiError(413, "body_too_large", f"{exc}: send less (the server's limit is set by --max-body-mb / --max-upload-mb)")
    if isinstance(exc, UserError):  # ragkit's own user errors, e.g. "question is empty"
        return ApiError(400, "bad_request", str(exc))
    return None


def describe_exception(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, message) for an error event inside an already-started stream."""
    error = api_error_for(exc)
    if error is None:
        log.error("unexpected error while streaming", exc_info=exc)
        return 500, "internal_error", "internal server error (the server log has the details)"
    return error.status, error.code, error.message


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path")]
    return ".".join(parts) if parts else "body"


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        error = api_error_for(exc)
        if error is None:
            log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
            return error_response(
                500, "internal_error", "internal server error (the server log has the details)", path=request.url.path
            )
        return error_response(error.status, error.code, error.message, error.field, request.url.path, error.headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = exc.errors()
        messages = [f"{_field(tuple(p.get('loc', ())))}: {p.get('msg', 'invalid')}" for p in problems]
        field = _field(tuple(problems[0].get("loc", ()))) if problems else None
        return error_response(422, "invalid_request", "; ".join(messages) or "invalid request", field, request.url.path)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path} (see /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, message, path=request.url.path, headers=getattr(exc, "headers", None))

    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    for kind in (ApiError, BodyTooLarge, FilterError, IndexStoreError, ModelUnavailable, GenerationError, ValueError):
        app.add_exception_handler(kind, on_api_error)
    app.add_exception_handler(Exception, on_api_error)
