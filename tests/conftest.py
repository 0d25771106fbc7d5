"""Shared pytest fixtures (visible to every module in tests/, active only where a test names them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_openai import FakeOpenAIServer, clean_openai_env


@pytest.fixture(autouse=True)
def _forget_registered_secrets() -> Iterator[None]:
    """Secrets registered by one test's configs are masked process-wide: forget them afterwards."""
    yield
    from ragkit.redaction import forget_secrets

    forget_secrets()


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A running `FakeOpenAIServer` (nothing scripted yet), shut down after the test."""
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def hermetic_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ambient OpenAI settings, and no proxy between the SDK and 127.0.0.1."""
    clean_openai_env(monkeypatch)


# Session fixtures for the real llama.cpp tests (test_llama_server.py, test_local_generator.py).
from llama_support import data_index, llama_server  # noqa: E402, F401

# Session fixture for the server tests (test_server_*.py): one read-only `ragkit serve` on data/.
from server_support import served  # noqa: E402, F401

# Session fixture for the pgvector tests: a real PostgreSQL 16 + pgvector on 127.0.0.1.
from postgres_support import postgres  # noqa: E402, F401
