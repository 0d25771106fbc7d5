"""The server's guards: API key, Host check, body limits, upload names, server-side paths, log redaction.

- **API key**: with a key set, every request must send `Authorization: Bearer KEY` (what OpenAI
  clients send) or `X-API-Key: KEY`, except the static files of the web UI and of `/docs`, which
  hold no data (the UI asks for the key and sends it with each API call). Compared in constant time.
- **Host check** on a loopback bind: a request whose Host header is not localhost / 127.0.0.1 /
  [::1] is refused (421), so a web page cannot reach the server through a DNS name rebound to
  127.0.0.1 (DNS rebinding). A non-loopback bind needs the key instead (`ServerSettings.check`).
- **Body limits**: a declared Content-Length over the limit is refused before reading; a body that
  grows past it while streaming in (chunked uploads) is cut off with `BodyTooLarge` (413).
- **Upload names** must be plain file names: no directory part, no NUL, not hidden; the file is
  written to a temporary name and renamed into the upload directory, so even a symlink planted
  there is replaced, never followed.
- **Server-side paths** must resolve (symlinks followed) inside an `--allow-root` directory.
"""

from __future__ import annotations

import hmac
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, BinaryIO

from ragkit.server.errors import ApiError, BodyTooLarge, error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Static, data-free files: the UI page and its assets, the OpenAPI page and schema.
PUBLIC_PATHS = frozenset({"/", "/favicon.ico", "/docs", "/openapi.json", "/docs/oauth2-redirect"})
PUBLIC_PREFIXES = ("/static/",)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
UPLOAD_PATH = "/v1/ingest"


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    import json

    payload = json.dumps(body).encode("utf-8")
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


class GuardMiddleware:
    """Host check, API key and body size limit, in front of everything (REST, MCP, UI)."""

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        check_host: bool,
        max_body_bytes: int,
        max_upload_bytes: int,
    ) -> None:
        self.app = app
        self.api_key = api_key.encode("utf-8") if api_key else None
        self.check_host = check_host
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.check_host and _host_name(headers.get("host", "")) not in LOOPBACK_HOSTS:
            await _send_json(
                send, 421, error_body(421, "bad_host", "this server answers only requests addressed to localhost", path=path)
            )
            return
        if self.api_key is not None and not self._public(path) and not self._authorized(headers):
            await _send_json(
                send,
                401,
                error_body(
                    401, "unauthorized", "missing or wrong API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
                    path=path,
                ),
                {"WWW-Authenticate": "Bearer"},
            )
            return
        limit = self.max_upload_bytes if path == UPLOAD_PATH else self.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_json(send, 413, error_body(413, "body_too_large", _too_large(limit, path), path=path))
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _send_json(send, 413, error_body(413, "body_too_large", _too_large(limit, path), path=path))

    @staticmethod
    def _public(path: str) -> bool:
        return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)

    def _authorized(self, headers: dict[str, str]) -> bool:
        assert self.api_key is not None
        supplied = headers.get("x-api-key")
        authorization = headers.get("authorization", "")
        if supplied is None and authorization[:7].lower() == "bearer ":
            supplied = authorization[7:].strip()
        return supplied is not None and hmac.compare_digest(supplied.encode("utf-8"), self.api_key)


def _too_large(limit: int, path: str) -> str:
    option = "--max-upload-mb" if path == UPLOAD_PATH else "--max-body-mb"
    return f"request body larger than {limit} bytes (the server's {option} limit)"


# --- uploads -------------------------------------------------------------------------------------


def upload_name(raw: str | None, index: int) -> str:
    """The file name an upload is stored under, or ApiError(400) naming `files[index]`."""
    name = raw or ""
    field = f"files[{index}]"
    if not name:
        raise ApiError(400, "invalid_upload_name", f"{field}: the upload has no file name", field)
    problem = None
    if "/" in name or "\\" in name:
        problem = "must be a plain file name, without directories"
    elif "\x00" in name or any(ord(c) < 32 for c in name):
        problem = "contains control characters"
    elif name.startswith("."):
        problem = "must not start with '.' (hidden files and '..' are refused)"
    elif len(name.encode("utf-8")) > 255:
        problem = "is longer than 255 bytes"
    if problem:
        raise ApiError(400, "invalid_upload_name", f"{field}: file name {name!r} {problem}", field)
    return name


def store_upload(source: BinaryIO, directory: Path, name: str) -> Path:
    """Copy `source` to `directory/name` (a plain name from `upload_name`), atomically: written
    under a temporary name, then renamed over whatever `name` was (a planted symlink is replaced)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    # Defence in depth (upload_name forbids this); the last component is not resolved: a symlink
    # there is replaced below, never followed.
    if target.parent.resolve() != directory.resolve() or name in (".", ".."):
        raise ApiError(400, "invalid_upload_name", f"file name {name!r} leaves the upload directory")
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=".upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            while block := source.read(1024 * 1024):
                out.write(block)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# --- server-side paths ---------------------------------------------------------------------------


def allowed_path(raw: str, roots: list[Path], index: int) -> Path:
    """`raw` as given (relative paths: to the server's working directory) if it resolves inside
    one of `roots`; ApiError naming `paths[index]` otherwise."""
    field = f"paths[{index}]"
    if not roots:
        raise ApiError(
            403, "paths_not_allowed",
            "server-side paths are disabled: upload the files, or start the server with --allow-root DIR",
            field,
        )
    if not raw or "\x00" in raw:
        raise ApiError(400, "invalid_path", f"{field}: empty or invalid path", field)
    path = Path(raw)
    real = path.resolve()
    if not any(real == root.resolve() or real.is_relative_to(root.resolve()) for root in roots):
        raise ApiError(403, "path_not_allowed", f"{field}: {raw} is outside the allowed roots (--allow-root)", field)
    if not path.exists():
        raise ApiError(400, "path_not_found", f"{field}: {raw} does not exist", field)
    return path


# --- logs ----------------------------------------------------------------------------------------


class RedactSecrets(logging.Filter):
    """Replaces the server's API key in any log record (message and arguments) with '***'."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def _redact(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, "***")
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        # Redact message and arguments in place (formatters such as uvicorn's access log unpack
        # `args` themselves), and the traceback text.
        record.msg = self._redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._redact(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self._redact(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True


def install_log_redaction(secrets: list[str]) -> None:
    """On every handler of the root logger and uvicorn's loggers (filters on handlers see records
    from every child logger that propagates to them)."""
    redact = RedactSecrets(secrets)
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "ragkit", "mcp"):
        logger = logging.getLogger(name)
        logger.addFilter(redact)
        for handler in logger.handlers:
            handler.addFilter(redact)
