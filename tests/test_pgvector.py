"""The pgvector store against a real PostgreSQL 16 + pgvector server (tests/postgres_support.py):
the vector store conformance suite (exact plans, and every query forced through HNSW with an
iterative scan), generations and crash repair on the server, the writer lock, `status --verify`,
and secrets."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner
from vector_store_conformance import VectorStoreConformance, corpus, embedder

from ragkit.cli import app
from ragkit.components import build
from ragkit.config import parse_pipeline
from ragkit.indexes.filters import MetadataFilter
from ragkit.indexes.pgvector import PgvectorBackendError
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.indexes.verify import verify_index
from ragkit.schema import Document

ROOT = Path(__file__).resolve().parents[1]

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


# --- the store's own guarantees ----------------------------------------------------------------


def _write(index: Path, backend: dict[str, Any], docs: list[Document], delete: tuple[str, ...] = ()) -> Any:
    return VectorStoreConformance().write(index, backend, docs, delete)


def _search_ids(snapshot: IndexSnapshot, question: str, k: int, flt: Any = None) -> set[str]:
    query = embedder().embed_query(question).reshape(1, -1)
    [(rows, _)] = snapshot.dense.search(query, k, None if flt is None else MetadataFilter.parse(flt))
    return {c.id for c in snapshot.store.chunks_by_rows(rows.tolist())}


def test_readers_stay_pinned_to_their_generation(tmp_path: Path, pg_env: Any) -> None:
    """A reader of generation 1 keeps finding exactly its chunks while generation 2 (deletions,
    an updated document, new chunks) is written and published in the same table."""
    index, backend = tmp_path / "index", backend_for(pg_env)
    docs = corpus(10)
    _write(index, backend, docs)
    old = IndexSnapshot.open(index)
    try:
        before = old.store.chunk_ids()
        assert _search_ids(old, "comet", 500) == before
        changed = Document(id="doc5", source=docs[5].source, text="Entirely new words about a supernova.", metadata={})
        _write(index, backend, [changed, *docs[6:], *corpus(14)[10:]], delete=("doc0", "doc1"))
        assert _search_ids(old, "comet", 500) == before  # pinned: generation 2's rows are not seen
        new = IndexSnapshot.open(index)
        try:
            assert new.manifest.generation == 2
            assert _search_ids(new, "comet", 500) == new.store.chunk_ids() != before
        finally:
            new.close()
    finally:
        old.close()


def test_plan_follows_the_filter_selectivity(tmp_path: Path, pg_env: Any) -> None:
    """Few allowed rows: exact search (a HNSW walk with a selective filter comes back short);
    many: HNSW with an iterative scan. Both rescored exactly, so both equal exact search."""
    index = tmp_path / "index"
    backend = backend_for(pg_env, planner={"exact_max_rows": 4, "exact_max_fraction": 0.1})
    _write(index, backend, corpus(40))
    snapshot = IndexSnapshot.open(index)
    try:
        n = snapshot.store.count_chunks()
        assert n > 40
        query = embedder().embed_query("pulsar orbit").reshape(1, -1)
        selective = MetadataFilter.parse({"doc_id": "doc7"})
        [(rows, _)] = snapshot.dense.search(query, 10, selective)
        expected = snapshot.store.filter_mask(selective)
        assert set(rows.tolist()) == set(np.flatnonzero(expected).tolist())
        plans = snapshot.dense.describe()["plans"]
        assert plans.get("exact", 0) == 1 and not plans.get("hnsw")
        snapshot.dense.search(query, 10)
        broad = MetadataFilter.parse({"doc_id": {"$ne": "doc7"}})
        snapshot.dense.search(query, 10, broad)
        plans = snapshot.dense.describe()["plans"]
        assert plans.get("hnsw", 0) == 2, plans
    finally:
        snapshot.close()


def test_advisory_lock_admits_one_writer_per_table(tmp_path: Path, pg_env: Any) -> None:
    backend = backend_for(pg_env)
    config = parse_pipeline({"dense": {"backend": backend}}).dense.backend
    first = build("vector_store", config, index_dir=tmp_path / "a", stored=None)
    second = build("vector_store", config, index_dir=tmp_path / "b", stored=None)
    first.prepare(None)  # holds the table's advisory lock until after_publish (or its session ends)
    try:
        with pytest.raises(PgvectorBackendError, match=r"is locked by ragkit writer pid \d+.*one writer at a time"):
            second.prepare(None)
    finally:
        first._writer().close()
    second.prepare(None)  # released: the next writer gets it
    second._writer().close()


def test_status_verify_finds_damage_and_the_next_ingest_repairs_it(tmp_path: Path, pg_env: Any) -> None:
    import psycopg

    index, backend = tmp_path / "index", backend_for(pg_env)
    docs = corpus(12)
    _write(index, backend, docs)
    runner = CliRunner()
    ok = runner.invoke(app, ["status", "--verify", "--json", "--index", str(index)])
    assert ok.exit_code == 0, ok.output
    dense = next(c for c in json.loads(ok.output)["verify"]["checks"] if c["name"] == "dense")
    assert dense["ok"] and "pgvector table" in dense["detail"] and "exactly the" in dense["detail"]

    with psycopg.connect(pg_env.dsn, autocommit=True) as conn:  # another client damages the table
        conn.execute(f'DELETE FROM public."{backend["table"]}" WHERE chunk_id IN (SELECT chunk_id FROM public."{backend["table"]}" LIMIT 3)')
    damaged = runner.invoke(app, ["status", "--verify", "--json", "--index", str(index)])
    assert damaged.exit_code == 1
    dense = next(c for c in json.loads(damaged.output)["verify"]["checks"] if c["name"] == "dense")
    assert not dense["ok"] and "3 chunk id(s) of generation 1 missing" in dense["detail"]

    stats = _write(index, backend, docs)  # nothing changed in the corpus; prepare repairs the table
    assert not stats.published
    assert verify_index(index, embedder()).ok


def test_password_is_never_saved_and_never_shown(tmp_path: Path, pg_env: Any) -> None:
    index = tmp_path / "index"
    url = f"postgresql://ragkit:{pg_env.password}@127.0.0.1:{pg_env.port}/ragkit?connect_timeout=5"
    backend = {"name": "pgvector", "dsn": url, "table": f"t{next(_tables)}_secret"}
    _write(index, backend, corpus(4))
    saved = "\n".join(p.read_text(encoding="utf-8") for p in index.rglob("*.yaml"))
    assert pg_env.password not in saved and "user=ragkit" in saved and "host=127.0.0.1" in saved
    bad = {**backend, "dsn": url.replace(pg_env.password, "wrong-" + pg_env.password)}
    with pytest.raises(PgvectorBackendError) as failure:
        _write(tmp_path / "other", bad, corpus(2))
    assert pg_env.password not in str(failure.value) and "127.0.0.1" in str(failure.value)


@pytest.mark.slow
def test_kill_9_of_the_writer_on_postgres(tmp_path: Path, pg_env: Any) -> None:
    """scripts/crash_test.py with the vectors in PostgreSQL: SIGKILL at random moments of real
    `ragkit ingest` runs (and their merges); after every kill the index equals the old or the
    new state, verifies (the table holds exactly the published chunks), and a re-run repairs."""
    backend = backend_for(pg_env)
    kills = int(os.environ.get("RAGKIT_PG_CRASH_KILLS", "8"))
    args = [sys.executable, str(ROOT / "scripts" / "crash_test.py"), "--kills", str(kills), "--json",
            "--workdir", str(tmp_path / "work"), "--dense-backend", json.dumps(backend)]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=3600, cwd=ROOT)
    print(result.stderr)
    assert result.stdout.strip(), result.stderr[-5000:]
    summary = json.loads(result.stdout)
    assert summary["failures"] == [], json.dumps(summary["failures"], indent=2)
    assert result.returncode == 0, result.stderr[-5000:]
    assert summary["kills"] >= kills
    assert summary["outcomes"].get("old", 0) > 0 and summary["outcomes"].get("new", 0) > 0, summary["outcomes"]


@pytest.mark.slow
def test_demo_pipeline_against_a_local_server(tmp_path: Path, pg_env: Any) -> None:
    """pipelines/pgvector.yaml as shipped (dsn null: libpq's PG* variables), through the CLI:
    ingest data/, answer the demo question with a citation, `status --verify`."""
    index = tmp_path / "index"
    runner = CliRunner()
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(pg_env.port), "PGDATABASE": "ragkit", "PGUSER": "ragkit"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        ingest = runner.invoke(app, ["ingest", str(ROOT / "data"), "--index", str(index), "--pipeline", str(ROOT / "pipelines" / "pgvector.yaml")])
        assert ingest.exit_code == 0, ingest.output
        query = runner.invoke(app, ["query", "When was Voyager 1 launched?", "--index", str(index), "--json"])
        assert query.exit_code == 0, query.output
        answer = json.loads(query.output)
        assert "1977" in answer["answer"] and answer["citations"], answer
        status = runner.invoke(app, ["status", "--verify", "--index", str(index)])
        assert status.exit_code == 0, status.output
        assert "pgvector 127.0.0.1:" in status.output and "Verify: ok" in status.output
