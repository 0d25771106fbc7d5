"""Every SQL statement of the pgvector store: the table, the generation predicates, and metadata
filters compiled to parameterised SQL with exactly `MetadataFilter.matches`' semantics.

Filter semantics in SQL (see ragkit/indexes/filters.py for the reference):

* Metadata is jsonb whose numbers are written as the *exact* decimal value of the Python number
  (`metadata_json`: a float 0.1 is stored as 0.1000000000000000055511151231257827...), and jsonb
  compares numbers as `numeric`, exactly. So ints and floats compare as Python compares them
  (3 == 3.0, 2**53 + 1 != float(2**53)) instead of through float rounding.
* jsonb equality and containment are kind-aware: true != 1 and "3" != 3, like the reference.
* $eq/$in are containment (`metadata @> '{"f": v}'`, GIN-indexed); $ne/$nin are their negation,
  so chunks without the field pass; $gt/$gte/$lt/$lte compare only numeric values (a CASE keeps
  the cast away from text and bools, whatever order Postgres evaluates conditions in).
* Field names and values are always bound parameters, never spliced into the SQL text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ragkit.indexes.filters import Condition, Logical, MetadataFilter, Scalar

if TYPE_CHECKING:
    from psycopg import sql as psql

STATE_TABLE = "ragkit_pgvector_state"
OPS = {"vector": "vector_ip_ops", "halfvec": "halfvec_ip_ops"}
_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


# --- values ------------------------------------------------------------------------------------


def number_json(value: int | float) -> str:
    """The exact decimal of a Python number as a JSON number (floats: their binary value)."""
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    text = str(Decimal(value))
    return text.replace("E", "e")


def scalar_json(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_json(value)
    return json.dumps(value, ensure_ascii=False)


def metadata_json(flat: Mapping[str, Scalar]) -> str:
    """`filterable_metadata` as jsonb text, numbers exact (see the module docstring)."""
    return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{scalar_json(v)}" for k, v in flat.items()) + "}"


def numeric(value: Scalar) -> Decimal:
    assert isinstance(value, int | float) and not isinstance(value, bool)
    return Decimal(value)


# --- filters -------------------------------------------------------------------------------------


class FilterSQL:
    """A filter compiled to one parameterised boolean SQL expression (named parameters f0, f1...)."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def _param(self, value: Any) -> psql.Composable:
        from psycopg import sql

        name = f"f{len(self.params)}"
        self.params[name] = value
        return sql.Placeholder(name)

    def compile(self, flt: MetadataFilter | None) -> psql.Composable:
        from psycopg import sql

        if flt is None or flt.root is None:
            return sql.SQL("TRUE")
        return self._node(flt.root)

    def _node(self, node: Condition | Logical) -> psql.Composable:
        from psycopg import sql

        if isinstance(node, Logical):
            joiner = sql.SQL(" AND " if node.op == "$and" else " OR ")
            return sql.SQL("({})").format(joiner.join(self._node(c) for c in node.clauses))
        if node.op in ("$ne", "$nin"):
            positive = Condition(node.field, "$eq" if node.op == "$ne" else "$in", node.value)
            return sql.SQL("(NOT {})").format(self._node(positive))
        if node.op == "$eq":
            return sql.SQL("(metadata @> {}::jsonb)").format(self._param(_contains(node.field, node.value)))  # type: ignore[arg-type]
        if node.op == "$in":
            values = [_contains(node.field, v) for v in node.value]  # type: ignore[union-attr]
            return sql.SQL("(metadata @> ANY({}::jsonb[]))").format(self._param(values))
        field = self._param(node.field)
        return sql.SQL(
            "COALESCE(CASE WHEN jsonb_typeof(metadata -> {f}) = 'number' "
            "THEN (metadata ->> {f})::numeric {op} {v} END, FALSE)"
        ).format(f=field, op=sql.SQL(_RANGE[node.op]), v=self._param(numeric(node.value)))  # type: ignore[arg-type]


def _contains(field: str, value: Scalar) -> str:
    return "{" + json.dumps(field, ensure_ascii=False) + ":" + scalar_json(value) + "}"


# --- statements ------------------------------------------------------------------------------------


class Statements:
    """The SQL of one table (`schema.table`) and its state row."""

    def __init__(self, schema: str, table: str, vector_type: str) -> None:
        from psycopg import sql

        self.schema, self.table, self.vector_type = schema, table, vector_type
        self.t = sql.Identifier(schema, table)
        self.state = sql.Identifier(schema, STATE_TABLE)
        self.hnsw_index = sql.Identifier(f"{table}_hnsw")
        self.vtype = sql.SQL(vector_type)
        # Readers of generation g see exactly its rows (named parameter `g`).
        self.visible = sql.SQL("added_gen <= %(g)s AND (removed_gen IS NULL OR removed_gen > %(g)s)")

    def q(self, template: str, **parts: Any) -> psql.Composed:
        """`template` with {t} (the table), {state}, {vtype} and `parts` filled in as SQL."""
        from psycopg import sql

        return sql.SQL(template).format(t=self.t, state=self.state, vtype=self.vtype, visible=self.visible, **parts)

    def create_state(self) -> psql.Composed:
        return self.q(
            "CREATE TABLE IF NOT EXISTS {state} ("
            " table_name text PRIMARY KEY, owner text NOT NULL, dim integer NOT NULL,"
            " written_generation bigint NOT NULL, published_generation bigint,"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        )

    def create_table(self, dim: int) -> psql.Composed:
        from psycopg import sql

        return self.q(
            "CREATE TABLE {t} ("
            " chunk_id text NOT NULL,"
            " added_gen bigint NOT NULL,"
            " removed_gen bigint,"
            " embedding {vtype}({dim}) NOT NULL,"
            " metadata jsonb NOT NULL,"
            " PRIMARY KEY (chunk_id, added_gen))",
            dim=sql.Literal(int(dim)),
        )

    def create_indexes(self, m: int, ef_construction: int) -> list[psql.Composed]:
        from psycopg import sql

        table = self.table
        return [
            # At most one live version of a chunk.
            self.q("CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {t} (chunk_id) WHERE removed_gen IS NULL",
                   name=sql.Identifier(f"{table}_live")),
            self.q("CREATE INDEX IF NOT EXISTS {name} ON {t} USING gin (metadata jsonb_path_ops)", name=sql.Identifier(f"{table}_meta")),
            self.q("CREATE INDEX IF NOT EXISTS {name} ON {t} (removed_gen) WHERE removed_gen IS NOT NULL",
                   name=sql.Identifier(f"{table}_removed")),
            self.q(
                "CREATE INDEX IF NOT EXISTS {name} ON {t} USING hnsw (embedding {ops}) WITH (m = {m}, ef_construction = {ef})",
                name=self.hnsw_index, ops=sql.SQL(OPS[self.vector_type]),
                m=sql.Literal(int(m)), ef=sql.Literal(int(ef_construction)),
            ),
        ]  # fmt: skip

    def copy_rows(self) -> psql.Composed:
        return self.q("COPY {t} (chunk_id, added_gen, embedding, metadata) FROM STDIN WITH (FORMAT BINARY)")

    def search(self, where: psql.Composable, exact: bool) -> psql.Composed:
        """Candidate chunk ids nearest to %(q)s by inner product. `exact`: every allowed row is
        scored (the subquery with OFFSET 0 is never flattened, so the HNSW index cannot serve
        the ORDER BY); else the HNSW index walks the graph, filtering as it goes."""
        if exact:
            return self.q(
                "SELECT chunk_id FROM (SELECT chunk_id, embedding FROM {t} WHERE {visible} AND {where} OFFSET 0) allowed "
                "ORDER BY embedding <#> %(q)s::{vtype} LIMIT %(fetch)s",
                where=where,
            )
        return self.q(
            "SELECT chunk_id FROM {t} WHERE {visible} AND {where} ORDER BY embedding <#> %(q)s::{vtype} LIMIT %(fetch)s",
            where=where,
        )

    def bounded_count(self, where: psql.Composable) -> psql.Composed:
        """How many visible rows pass `where`, counting at most %(cap)s."""
        return self.q("SELECT count(*) FROM (SELECT 1 FROM {t} WHERE {visible} AND {where} LIMIT %(cap)s) allowed", where=where)
