"""The test PostgreSQL server itself (tests/postgres_support.py): PostgreSQL 16 with pgvector,
bound to 127.0.0.1 only, never running as root, password authentication."""

from __future__ import annotations

import os

import pytest


def test_server_is_postgres_16_with_pgvector_on_loopback_only(postgres) -> None:
    import psycopg

    with psycopg.connect(postgres.dsn) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        assert 160000 <= int(version) < 170000
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        (extversion,) = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert tuple(int(x) for x in extversion.split(".")[:2]) >= (0, 8)  # iterative index scans
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        (pid,) = conn.execute("SELECT pg_backend_pid()").fetchone()
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        uid = next(int(line.split()[1]) for line in status if line.startswith("Uid:"))
    assert uid != 0 and (os.geteuid() != 0 or uid != os.geteuid())
    with pytest.raises(psycopg.OperationalError):  # a wrong password is refused
        psycopg.connect(postgres.dsn.replace(postgres.password, "wrong"), connect_timeout=5)
