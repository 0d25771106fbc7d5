"""Connecting to PostgreSQL: connections, clear errors, the table's structure."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ragkit.indexes.pgvector import (
    PASSWORD_ENV,
    PgvectorBackendError,
    PgvectorConfig,
    location,
    qualified_table,
    resolved_password,
)
from ragkit.indexes.pgvector.sql import STATE_TABLE, Statements
from ragkit.redaction import redact

if TYPE_CHECKING:
    import psycopg

PSYCOPG_MISSING = "dense.backend 'pgvector' needs psycopg and pgvector: pip install 'ragkit[postgres]'"


def connection_kwargs(config: PgvectorConfig, role: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "connect_timeout": config.connect_timeout,
        "application_name": f"ragkit {role} pid {os.getpid()}",
        "autocommit": True,  # every multi-statement step runs in an explicit transaction
    }
    password = resolved_password(config)
    if password is not None:
        kwargs["password"] = password
    return kwargs


def configure(conn: psycopg.Connection[Any]) -> None:
    """pgvector's adapters on a new connection (binary COPY of vectors)."""
    from pgvector.psycopg import register_vector

    register_vector(conn)


def connect(config: PgvectorConfig, role: str, register: bool = True) -> psycopg.Connection[Any]:
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg
    except ImportError:
        raise PgvectorBackendError(PSYCOPG_MISSING) from None
    with pg_errors(config):
        conn = psycopg.connect(config.dsn or "", **connection_kwargs(config, role))
        if register:
            try:
                configure(conn)
            except psycopg.ProgrammingError:  # the extension is not installed yet
                pass
        return conn


def _unreachable(config: PgvectorConfig, detail: str) -> str:
    password = "" if config.password is not None or os.environ.get(PASSWORD_ENV) else f" (no password given: set ${PASSWORD_ENV} or dense.backend.password)"
    return (
        f"PostgreSQL at {location(config)} cannot be used: {detail}{password}; "
        "check dense.backend.dsn (libpq keywords, e.g. 'host=127.0.0.1 port=5432 dbname=ragkit user=ragkit') "
        "and that the server is running"
    )


@contextmanager
def pg_errors(config: PgvectorConfig) -> Iterator[None]:
    """psycopg's exceptions as `PgvectorBackendError`s that say what to do (redacted)."""
    import psycopg
    from psycopg import errors

    try:
        yield
    except PgvectorBackendError:
        raise
    except psycopg.OperationalError as exc:
        raise PgvectorBackendError(_unreachable(config, redact(" ".join(str(exc).split())))) from None
    except errors.InsufficientPrivilege as exc:
        raise PgvectorBackendError(
            f"PostgreSQL at {location(config)} refused {qualified_table(config)}: {redact(str(exc).strip())}; "
            "the user needs CREATE on the schema (and the vector extension installed: CREATE EXTENSION vector)"
        ) from None
    except psycopg.Error as exc:
        raise PgvectorBackendError(
            f"PostgreSQL error on {qualified_table(config)} at {location(config)}: "
            f"{type(exc).__name__}: {redact(str(exc).strip())}"
        ) from exc


def ensure_extension(conn: psycopg.Connection[Any], config: PgvectorConfig) -> None:
    """pgvector >= 0.8 (iterative index scans) in the database, created if missing and allowed."""
    from psycopg import errors

    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except (errors.InsufficientPrivilege, errors.FeatureNotSupported, errors.UndefinedFile) as exc:
            raise PgvectorBackendError(
                f"the pgvector extension is not installed in {location(config)} and cannot be created "
                f"({type(exc).__name__}); a superuser must run CREATE EXTENSION vector there"
            ) from None
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    version = tuple(int(x) for x in str(row[0]).split(".")[:2]) if row else (0, 0)
    if version < (0, 8):
        raise PgvectorBackendError(
            f"pgvector {row[0] if row else '?'} in {location(config)} is too old: ragkit needs 0.8 or newer "
            "(iterative index scans for filtered search); ALTER EXTENSION vector UPDATE"
        )
    configure(conn)


def table_exists(conn: psycopg.Connection[Any], config: PgvectorConfig) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (f'"{config.schema_name}"."{config.table}"',)).fetchone()
    return row is not None and row[0] is not None


def table_structure(conn: psycopg.Connection[Any], config: PgvectorConfig) -> dict[str, Any]:
    """The vector column's type and dimension, and the HNSW index's m / ef_construction."""
    row = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod), t.typname, a.atttypmod FROM pg_attribute a "
        "JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding'",
        (f'"{config.schema_name}"."{config.table}"',),
    ).fetchone()
    found: dict[str, Any] = {}
    if row is not None:
        found["vector_type"], found["dim"] = row[1], int(row[2])
    index = conn.execute(
        "SELECT c.reloptions FROM pg_class c WHERE c.oid = to_regclass(%s)",
        (f'"{config.schema_name}"."{config.table}_hnsw"',),
    ).fetchone()
    if index is not None:
        options = dict(o.split("=", 1) for o in (index[0] or []))
        found["m"] = int(options.get("m", 16))
        found["ef_construction"] = int(options.get("ef_construction", 64))
    return found


def check_structure(conn: psycopg.Connection[Any], config: PgvectorConfig, dim: int | None) -> None:
    """The existing table must be what the config asks for: these cannot change in place."""
    found = table_structure(conn, config)
    wanted: dict[str, Any] = {"vector_type": config.vector_type, "m": config.hnsw.m,
                              "ef_construction": config.hnsw.ef_construction}  # fmt: skip
    if dim is not None:
        wanted["dim"] = dim
    differ = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) is not None and found.get(k) != v}
    if differ:
        shown = ", ".join(f"{k} {have!r} (configured {want!r})" for k, (have, want) in differ.items())
        raise PgvectorBackendError(
            f"table {qualified_table(config)} at {location(config)} has {shown}; these cannot change on an "
            "existing table: set dense.backend.table to a new name (the next ingest fills it from the stored "
            "vectors, without re-embedding; the old table is left as it is)"
        )


def statements(config: PgvectorConfig) -> Statements:
    assert config.table is not None, "resolve_config decides the table first"
    return Statements(config.schema_name, config.table, config.vector_type)


__all__ = ["STATE_TABLE", "connect", "pg_errors", "ensure_extension", "table_exists", "check_structure", "statements"]
