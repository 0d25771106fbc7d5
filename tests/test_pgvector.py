"""The pgvector store against a real PostgreSQL 16 + pgvector server (tests/postgres_support.py):
the vector store conformance suite (exact plans, and every query forced through HNSW with an
iterative scan), filter parity on the store's SQL, generations and crash repair on the server,
the writer lock, `status --verify`, and secrets."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from vector_store_conformance import VectorStoreConformance

_tables = itertools.count()


def backend_for(postgres: Any, **extra: Any) -> dict[str, Any]:
    return {"name": "pgvector", "dsn": postgres.dsn, "table": f"t{next(_tables)}_{id(postgres) % 9973}", **extra}


class TestPgvector(VectorStoreConformance):
    @pytest.fixture
    def backend(self, postgres: Any) -> dict[str, Any]:
        return backend_for(postgres)


@pytest.mark.slow
class TestPgvectorHNSWPlans(VectorStoreConformance):
    """Every query through the HNSW index (iterative scan), float32 storage."""

    @pytest.fixture
    def backend(self, postgres: Any) -> dict[str, Any]:
        return backend_for(
            postgres, vector_type="vector", planner={"exact_max_rows": 0, "exact_max_fraction": 0.0}
        )
