"""A fake OpenAI-compatible server for tests: real HTTP, scripted model replies.

`FakeOpenAIServer` is a real HTTP server (stdlib `ThreadingHTTPServer` on 127.0.0.1, random port)
implementing `POST /v1/chat/completions`, and the real `openai` SDK talks to it over a socket: the
SDK's request building, retries, backoff, timeouts and SSE parsing all run for real. Only the
model's replies are scripted, per test:

- `server.script(Reply(...), ...)` queues replies, one per request, in order;
- `FakeOpenAIServer(respond=...)` answers, once the queue is empty, with `respond(request)` (a
  function of the recorded request), e.g. to reply by what the request asks;
- with neither, a request gets HTTP 500 ("no scripted reply left").

A `Reply` is a JSON body with any status and headers, or server-sent events when the request says
`stream: true` (and the status is 200). It can also inject faults: a delay before answering
(`delay_s`: the client may time out), a stream cut after some deltas (`cut_after`, with or without
chunked framing), a JSON body cut half-way (`fault="truncate"`), or a TCP reset before any response
(`fault="reset"`).

The server records every request (`path`, lower-cased `headers`, JSON `body`, and `received_at`,
a server-side `time.monotonic()` timestamp), so tests can check exactly what the SDK sent and when.

Use it as a context manager (`with FakeOpenAIServer() as server: ...`), which starts and stops it.
`clean_openai_env(monkeypatch)` removes ambient OpenAI settings and proxies, so the SDK reaches
127.0.0.1 directly. `tests/conftest.py` wraps both as fixtures: `server` and `hermetic_openai_env`.

This is a plain module, not a test: pytest's default "prepend" import mode puts `tests/` (it has no
`__init__.py`) on `sys.path`, so tests and conftest.py `from fake_openai import ...`.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest

MODEL = "scripted-model"  # the `model` field of scripted completions (the SDK does not check it)

# Environment variables that would point the SDK elsewhere, add credentials, headers or logging, or
# route 127.0.0.1 through a proxy.
OPENAI_ENV_VARS = (
    "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_ADMIN_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID",
    "OPENAI_CUSTOM_HEADERS", "OPENAI_LOG",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
)  # fmt: skip


def clean_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hermetic: no ambient OpenAI settings, and no proxy between the SDK and 127.0.0.1."""
    for name in OPENAI_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def completion(text: str, finish_reason: str = "stop") -> dict[str, Any]:
    """A `chat.completion` JSON body whose one choice says `text`."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    """One `chat.completion.chunk` (the payload of one SSE `data:` line)."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def error_body(message: str, type_: str) -> dict[str, Any]:
    """An OpenAI-style error JSON body."""
    return {"error": {"message": message, "type": type_}}


@dataclass
class Reply:
    """One scripted answer. `body` may be a function of the recorded request (e.g. to echo a header).

    A non-streaming request gets `status`, `headers` and the JSON `body`; a streaming one with
    status 200 gets SSE: a role chunk, one chunk per `deltas` item, a `finish_reason` chunk, [DONE].
    """

    status: int = 200
    body: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | None = None
    deltas: list[str] | None = None  # streamed content pieces (for `stream: true` requests)
    finish_reason: str = "stop"
    cut_after: int | None = None  # stream: drop the connection after this many content deltas
    chunked: bool = True  # stream framing; False = body delimited by closing the connection
    delay_s: float = 0.0  # wait before answering at all (a hang, when longer than the client's timeout)
    headers: dict[str, str] = field(default_factory=dict)
    # "reset": close the socket with RST before any response ("connection reset by peer");
    # "truncate": send the JSON reply's headers and half its body, then close the connection.
    fault: Literal["reset", "truncate"] | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # faults close sockets under the handler's feet on purpose


class FakeOpenAIServer:
    """Records requests; answers each with the next scripted `Reply` (see the module docstring)."""

    def __init__(self, respond: Callable[[dict[str, Any]], Reply] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []  # path, headers, body, received_at (monotonic)
        self.replies: list[Reply] = []
        self.respond = respond
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked transfer encoding for SSE

            def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                try:
                    self._answer()
                except OSError:  # BrokenPipeError, ConnectionResetError, ...
                    self.close_connection = True  # the client gave up first (a timeout): nothing to do

            def _answer(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = {
                    "path": self.path,
                    "headers": {name.lower(): value for name, value in self.headers.items()},
                    "body": json.loads(raw),
                    "received_at": time.monotonic(),
                }
                with owner._lock:
                    owner.requests.append(request)
                    reply = owner.replies.pop(0) if owner.replies else None
                if reply is None and owner.respond is not None:
                    reply = owner.respond(request)
                if self.path != "/v1/chat/completions":
                    self._json(404, error_body(f"no route {self.path}", "not_found"))
                elif reply is None:
                    self._json(500, error_body("no scripted reply left", "test_error"))
                else:
                    time.sleep(reply.delay_s)
                    if reply.fault == "reset":
                        self._reset()
                    elif request["body"].get("stream") and reply.status == 200:
                        self._sse(reply)
                    else:
                        body = reply.body(request) if callable(reply.body) else reply.body
                        truncate = reply.fault == "truncate"
                        self._json(reply.status, body or {}, reply.headers, truncate=truncate)

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()  # RST: "connection reset by peer" on the client
                self.close_connection = True

            def _json(
                self,
                status: int,
                body: dict[str, Any],
                headers: dict[str, str] | None = None,
                truncate: bool = False,
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if not truncate:
                    self.wfile.write(data)
                    return
                # Half the promised body, then the connection closes under it.
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

            def _sse(self, reply: Reply) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                if reply.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Connection", "close")
                self.end_headers()

                def send(payload: str) -> None:
                    data = f"data: {payload}\n\n".encode()
                    if reply.chunked:
                        data = f"{len(data):X}\r\n".encode() + data + b"\r\n"
                    self.wfile.write(data)
                    self.wfile.flush()

                send(json.dumps(chunk({"role": "assistant", "content": ""})))
                for i, delta in enumerate(reply.deltas or []):
                    if reply.cut_after is not None and i == reply.cut_after:
                        # Drop the connection mid-body: no finish chunk, no [DONE], and (chunked)
                        # no terminating zero-length chunk.
                        self.close_connection = True
                        return
                    send(json.dumps(chunk({"content": delta})))
                send(json.dumps(chunk({}, reply.finish_reason)))
                send("[DONE]")
                if reply.chunked:
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.close_connection = True

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *replies: Reply) -> None:
        """Queue replies: the next requests get them, one each, in order."""
        self.replies.extend(replies)

    def gaps(self) -> list[float]:
        """Seconds between consecutive requests, as the server saw them arrive."""
        times = [r["received_at"] for r in self.requests]
        return [b - a for a, b in zip(times, times[1:])]

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
