"""Vectors in PostgreSQL with pgvector: one table per index, shared by all its generations.

Rows. One row per chunk *version*: the chunk id (a content hash, stable across generations), the
generation that added it (`added_gen`) and the one that removed it (`removed_gen`, NULL while
live), its vector (`vector` or `halfvec`, with an HNSW index) and its `filterable_metadata` as
jsonb (GIN-indexed), so the shared `MetadataFilter` compiles to parameterised SQL (`sql.py`).
A reader of generation g sees exactly the rows with `added_gen <= g AND (removed_gen IS NULL OR
removed_gen > g)`: it is pinned to its generation whatever a writer does meanwhile.

Rows are keyed by chunk id, not by segment (ragkit/indexes/layout.py): a merge renumbers the
same live chunks into a new segment and changes nothing in the table, and a segment's deletion
bitmap in generation G becomes `removed_gen = G` on its rows. Readers map the chunk ids found
to their own generation's global rows through its chunk store.

Sync by chunk id (never re-uploading a vector the table holds), one transaction per step:

* `prepare` (before anything is embedded): connect, take the table's advisory lock (the writer
  lock: a second writer fails at once, naming the holder; the server drops it when the holder
  dies), and reconcile what a crashed writer left: rows it added for an unpublished generation
  are deleted, rows it marked removed are live again, and a table that does not hold exactly the
  published generation's chunk ids is repaired from the stored `embeddings.npy`.
* `write_segment`: nothing (a merge writes its segment without the writer lock);
* `before_publish` (the lock is taken here when `prepare` was not called: merges; its work is
  proportional to the segments added or dropped and the rows newly deleted): one transaction inserts the new generation's chunks the table lacks (COPY
  of the stored vectors; a chunk re-added after a removal copies its old row's vector inside the
  server), marks the dropped ones `removed_gen = new`, and gives chunks whose metadata changed a
  new version (their vector copied inside the server). Readers of the published generation see
  none of it.
* publish (the CURRENT swap, the index's commit point), then `after_publish`: one transaction
  records the generation as published and deletes rows no generation still readable can see
  (removed at or before the previous generation, which readers may still hold).

A crash anywhere leaves the published generation fully and only searchable; the next writer's
`prepare` repairs the rest. The DSN's password is a secret (never saved, redacted everywhere);
the rest of the DSN is saved with the index so queries find the database.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, SecretStr, model_validator

from ragkit.components import ComponentConfig, Strict, register
from ragkit.indexes.layout import IndexStoreError

if TYPE_CHECKING:
    from ragkit.indexes.generation import GenerationView, SegmentView
    from ragkit.indexes.pgvector.reader import PgvectorSearcher
    from ragkit.indexes.pgvector.sync import PgvectorSync

PASSWORD_ENV = "PGPASSWORD"  # libpq's own; its name marks it secret for ragkit.redaction too
_IDENTIFIER = r"^[a-z_][a-z0-9_]{0,47}$"


class PgvectorHNSWConfig(Strict):
    """The HNSW index (pgvector). `m`/`ef_construction` are fixed when the table is created;
    `ef_search` and the iterative scan apply per query."""

    m: int = Field(16, ge=2, le=100, description="neighbours per node; fixed when the table is created")
    ef_construction: int = Field(64, ge=4, le=1000, description="build breadth; fixed when the table is created")
    ef_search: int = Field(100, ge=1, le=1000, description="query breadth (raised to the candidates fetched)")
    iterative_scan: Literal["relaxed_order", "strict_order", "off"] = Field(
        "relaxed_order",
        description="keep walking the graph until enough rows pass the filter (candidates are rescored exactly anyway)",
    )
    max_scan_tuples: int = Field(20_000, gt=0, description="iterative scan budget per query")


class PgvectorPlannerConfig(Strict):
    """How a query is run. A filter's selectivity is measured first (a count bounded at the
    exact limit); few allowed rows are searched exactly (a bitmap/seq scan of just those rows,
    ordered by distance), more with HNSW and an iterative scan; a HNSW search that comes back
    short is redone exactly. Candidates are always rescored exactly from the stored float32
    vectors (ties by row), as faiss and chroma results are."""

    exact_max_rows: int = Field(
        20_000, ge=0, description="allowed rows at or below this: exact search (also: a whole index this small)"
    )
    exact_max_fraction: float = Field(
        0.05, ge=0, le=1, description="allowed rows below this fraction of the generation: exact search"
    )
    overfetch: int = Field(16, ge=0, description="extra candidates per query, rescored exactly")


class PgvectorConfig(ComponentConfig):
    """Vectors in PostgreSQL + pgvector (HNSW; exact search for selective filters).

    ragkit embeds; the database stores and searches. `dsn` (libpq keyword or URL form) is saved
    with the index without its password; `password` (default $PGPASSWORD or ~/.pgpass, as libpq
    does) never is."""

    name: Literal["pgvector"] = "pgvector"
    dsn: str | None = Field(
        None, description="libpq connection string; null: libpq's PG* environment variables. A password in it is moved to `password`"
    )
    password: SecretStr | None = Field(None, description=f"default ${PASSWORD_ENV} / ~/.pgpass (never saved)")
    schema_name: str = Field("public", pattern=_IDENTIFIER, description="the schema of the table")
    table: str | None = Field(
        None, pattern=_IDENTIFIER, description="null: ragkit_<hash of the index dir>, chosen at the first ingest and saved"
    )
    vector_type: Literal["halfvec", "vector"] = Field(
        "halfvec", description="stored precision: halfvec (fp16, half the memory) or vector (fp32); fixed per table"
    )
    hnsw: PgvectorHNSWConfig = Field(default_factory=PgvectorHNSWConfig)
    planner: PgvectorPlannerConfig = Field(default_factory=PgvectorPlannerConfig)
    batch_size: int = Field(5000, gt=0, description="rows per COPY batch / per statement")
    pool_size: int = Field(4, ge=1, description="connections per reader (one per concurrent query)")
    connect_timeout: int = Field(10, gt=0, description="seconds")
    maintenance_work_mem: str = Field(
        "512MB", pattern=r"^\d+\s*(kB|MB|GB)$", description="memory for building the HNSW index"
    )

    @model_validator(mode="before")
    @classmethod
    def _password_out_of_dsn(cls, data: Any) -> Any:
        """Keep the password out of `dsn` (which is saved): move it to `password` (a secret)."""
        if isinstance(data, dict) and isinstance(data.get("dsn"), str):
            dsn, password = split_password(data["dsn"])
            data = {**data, "dsn": dsn}
            if password is not None and data.get("password") is None:
                data["password"] = password
        return data


class PgvectorBackendError(IndexStoreError):
    """PostgreSQL/pgvector cannot be used as configured; the message says what to do."""


# --- connection strings ------------------------------------------------------------------------

_KEYWORD = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']*)")


def _quote(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _unquote(value: str) -> str:
    if value.startswith("'") and value.endswith("'") and len(value) >= 2:
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def split_password(dsn: str) -> tuple[str, str | None]:
    """(`dsn` in libpq keyword form without its password, the password or None). URLs
    (`postgresql://user:pw@host:port/db?sslmode=require`) become keywords, so the saved form
    keeps the user, host and database (a URL's user would be masked on saving)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    dsn = dsn.strip()
    pairs: list[tuple[str, str]] = []
    if re.match(r"^postgres(ql)?://", dsn):
        url = urlsplit(dsn)
        if url.username:
            pairs.append(("user", unquote(url.username)))
        if url.password is not None:
            pairs.append(("password", unquote(url.password)))
        if url.hostname:
            pairs.append(("host", unquote(url.hostname)))
        if url.port:
            pairs.append(("port", str(url.port)))
        if url.path.strip("/"):
            pairs.append(("dbname", unquote(url.path.strip("/"))))
        pairs += parse_qsl(url.query)
    else:
        position = 0
        while position < len(dsn):
            match = _KEYWORD.match(dsn, position)
            if match is None:
                if dsn[position:].strip():
                    raise ValueError(f"cannot parse the connection string near {dsn[position:position + 20]!r}")
                break
            pairs.append((match.group(1), _unquote(match.group(2))))
            position = match.end()
    password = next((v for k, v in pairs if k == "password"), None)
    kept = " ".join(f"{k}={_quote(v)}" for k, v in pairs if k != "password")
    return kept, password


def resolved_password(config: PgvectorConfig) -> str | None:
    return config.password.get_secret_value() if config.password is not None else None


def location(config: PgvectorConfig) -> str:
    """Where the table lives (no password), for messages and `status`."""
    parts = dict(_KEYWORD.findall(config.dsn or ""))
    host = _unquote(parts.get("host", os.environ.get("PGHOST", "localhost")))
    port = _unquote(parts.get("port", os.environ.get("PGPORT", "5432")))
    dbname = _unquote(parts.get("dbname", os.environ.get("PGDATABASE", "")))
    return f"{host}:{port}/{dbname}" if dbname else f"{host}:{port}"


def qualified_table(config: PgvectorConfig) -> str:
    return f"{config.schema_name}.{config.table}"


# --- configuration -----------------------------------------------------------------------------


def default_table_name(index_dir: Path) -> str:
    """`ragkit_<12 hex>` from the index directory's real path (two indexes never share a table);
    chosen once, at the first ingest, and saved with the index."""
    digest = hashlib.sha256(str(Path(index_dir).resolve()).encode("utf-8")).hexdigest()[:12]
    return f"ragkit_{digest}"


def resolve_config(config: PgvectorConfig, index_dir: Path, stored: Any | None) -> PgvectorConfig:
    """`config` with its table decided: the configured one, else the one the index already uses
    in the same schema, else the default for this index directory."""
    if config.table is not None:
        return config
    if isinstance(stored, PgvectorConfig) and stored.table is not None and stored.schema_name == config.schema_name:
        return config.model_copy(update={"table": stored.table})
    return config.model_copy(update={"table": default_table_name(index_dir)})


def _identity(config: PgvectorConfig) -> dict[str, Any]:
    """Which stored vectors a config addresses: the table. The database is not part of it: a
    table that lacks the published chunks (another database, a dropped table) is refilled from
    the stored vectors by the next writer's `prepare`."""
    return {"schema": config.schema_name, "table": config.table}


# --- the vector store component ----------------------------------------------------------------


@register("vector_store", "pgvector", PgvectorConfig)
class PgvectorVectorStore:
    """Vectors in a PostgreSQL table (pgvector) shared by the index's generations; rows are
    tagged with the generations that added and removed them (see the package docstring).
    psycopg is imported only when used."""

    def __init__(self, config: PgvectorConfig, index_dir: Path, stored: ComponentConfig | None = None) -> None:
        self.index_dir = Path(index_dir)
        self.config = resolve_config(config, self.index_dir, stored)
        self.same_table = isinstance(stored, PgvectorConfig) and _identity(
            resolve_config(stored, self.index_dir, None)
        ) == _identity(self.config)
        self._sync: PgvectorSync | None = None

    def identity(self) -> Any:
        return _identity(self.config)

    def describe(self) -> str:
        h = self.config.hnsw
        return (
            f"pgvector {location(self.config)}, table {qualified_table(self.config)} "
            f"({self.config.vector_type}, hnsw m={h.m} ef_construction={h.ef_construction})"
        )

    def _writer(self) -> PgvectorSync:
        if self._sync is None:
            from ragkit.indexes.pgvector.sync import PgvectorSync

            self._sync = PgvectorSync(self.index_dir, self.config, self.same_table)
        return self._sync

    def stats(self) -> dict[str, int]:
        if self._sync is None:
            return {}
        return {"vectors_upserted": self._sync.uploaded, "vectors_deleted": self._sync.removed}

    def prepare(self, current: GenerationView | None) -> None:
        """Connect, take the writer lock and repair a crashed writer's leftovers (before anything is embedded)."""
        self._writer().prepare(current)

    def write_segment(self, segment: SegmentView, vectors: np.ndarray) -> None:
        # Nothing yet: a merge builds its segment without the writer lock (another writer may be
        # reconciling the table meanwhile), so every row of a generation is written in
        # before_publish, in one transaction, from the segments' stored vectors.
        pass

    def before_publish(self, current: GenerationView | None, new: GenerationView) -> None:
        self._writer().before_publish(current, new)

    def after_publish(self, new: GenerationView) -> None:
        self._writer().after_publish(new)

    def open(self, generation: GenerationView) -> PgvectorSearcher:
        from ragkit.indexes.pgvector.reader import PgvectorSearcher

        return PgvectorSearcher.open(self.config, generation)

    def verify(self, generation: GenerationView, sample: int) -> tuple[list[str], str]:
        from ragkit.indexes.pgvector.verify import verify_table

        return verify_table(self.config, generation, max(sample, 16))
