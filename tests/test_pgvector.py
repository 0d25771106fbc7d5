"""The pgvector store against a real PostgreSQL 16 + pgvector server (tests/postgres_support.py):
the vector store conformance suite (exact plans, and every query forced through HNSW with an
iterative scan), generations and crash repair on the server, the writer lock, `status --verify`,
and secrets."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from vector_store_conformance import VectorStoreConformance

_tables = itertools.count()


def keyword_dsn(postgres: Any) -> str:
    """The test server's DSN without its password (given as $PGPASSWORD, as libpq reads it)."""
    return f"host=127.0.0.1 port={postgres.port} dbname=ragkit user=ragkit"


def backend_for(postgres: Any, **extra: Any) -> dict[str, Any]:
    return {"name": "pgvector", "dsn": keyword_dsn(postgres), "table": f"t{next(_tables)}_{id(postgres) % 9973}", **extra}


@pytest.fixture
def pg_env(postgres: Any) -> Iterator[Any]:
    """The password where every reader and writer finds it (it is never saved with the index).
    Its own MonkeyPatch: tests that undo theirs keep this one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", postgres.password)
        yield postgres


class TestPgvector(VectorStoreConformance):
    @pytest.fixture
    def backend(self, pg_env: Any) -> dict[str, Any]:
        return backend_for(pg_env)


@pytest.mark.slow
class TestPgvectorHNSWPlans(VectorStoreConformance):
    """Every query through the HNSW index (iterative scan), float32 storage."""

    @pytest.fixture
    def backend(self, pg_env: Any) -> dict[str, Any]:
        return backend_for(pg_env, vector_type="vector", planner={"exact_max_rows": 0, "exact_max_fraction": 0.0})
