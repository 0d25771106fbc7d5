"""Real `ragkit serve` processes for the server tests, and the checks for what they need.

Nothing here is mocked: `start_server` runs `python -m ragkit.cli serve` on a free 127.0.0.1 port
(a subprocess, exactly as a user starts it), waits until `/readyz` answers 200, and `stop()` ends
it. Its combined stdout/stderr goes to a log file the tests can read (e.g. to prove the API key is
never logged).

Outside CI a machine without the `serve` extra, or without Debian's chromium + chromium-driver,
SKIPS the tests that need them, with the reason; under `CI=true` they FAIL instead, so CI cannot
pass without running them (`make test` installs both: `install-dev` and `install-browser`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from llama_support import free_port, missing

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TEST_KEY = "test-key-0123456789abcdef-not-a-real-secret"


def require_serve_extra() -> None:
    for module in ("fastapi", "uvicorn", "mcp", "sse_starlette", "prometheus_client", "multipart"):
        if importlib.util.find_spec(module) is None:
            missing(f"{module} is not installed: pip install 'ragkit[serve]'")


def require_chromium() -> None:
    require_serve_extra()
    if importlib.util.find_spec("selenium") is None:
        missing("selenium is not installed: pip install 'ragkit[dev]'")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            missing(f"{path} is missing: apt-get install chromium chromium-driver (`make install-browser`)")


def hermetic_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without proxies (everything talks to 127.0.0.1) or an ambient key."""
    env = {
        k: v for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy") and k != "RAGKIT_API_KEY"
    }
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    index_dir: Path
    api_key: str | None = None
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None,
        timeout: float = 120.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body) of one plain HTTP request (urllib: no client magic)."""
        data = raw if raw is not None else (json.dumps(body).encode("utf-8") if body is not None else None)
        all_headers = {**self.headers(), **(headers or {})}
        if body is not None and raw is None:
            all_headers.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()

    def json(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        status, _, payload = self.request(method, path, body, **kwargs)
        return status, json.loads(payload) if payload else None

    def wait_for_job(self, job_id: str, timeout_s: float = 300.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status, job = self.json("GET", f"/v1/jobs/{job_id}")
            assert status == 200, job
            if job["state"] in ("succeeded", "failed"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"ingest job {job_id} did not finish within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(index_dir: Path, log_dir: Path, *args: str, api_key: str | None = None) -> ServerProcess:
    """`ragkit serve --index INDEX_DIR` on a free 127.0.0.1 port, ready (or RuntimeError with its log)."""
    require_serve_extra()
    port = free_port()
    log_path = log_dir / f"ragkit-serve-{port}.log"
    command = [sys.executable, "-m", "ragkit.cli", "serve", "--index", str(index_dir), "--port", str(port), *args]
    env = hermetic_env({"RAGKIT_API_KEY": api_key} if api_key else None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    server = ServerProcess(process, port, log_path, index_dir, api_key, command)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ragkit serve exited with {process.returncode}\n{server.log()[-4000:]}")
        try:
            status, _, _ = server.request("GET", "/readyz", timeout=5)
            if status == 200:
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"ragkit serve was not ready within {START_TIMEOUT_S:.0f} s\n{server.log()[-4000:]}")


def copy_index(source: Path, target_parent: Path) -> Path:
    """A private copy of an ingested index, for a test that writes to it (nothing is re-embedded)."""
    target = target_parent / "index"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("LOCK"))
    return target


def sse_events(payload: bytes) -> list[tuple[str, Any]]:
    """(event, data) pairs of a Server-Sent Events body (data parsed as JSON)."""
    events = []
    for block in payload.decode("utf-8").replace("\r\n", "\n").split("\n\n"):
        kind, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            events.append((kind, json.loads("\n".join(data))))
    return events


@pytest.fixture(scope="session")
def served(data_index: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real `ragkit serve` on the sample corpus (read-only: tests that write start their own)."""
    require_serve_extra()
    server = start_server(data_index, tmp_path_factory.mktemp("served"))
    try:
        yield server
    finally:
        server.stop()
