"""`ragkit status --verify` for pgvector: the table holds exactly a generation's chunks."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.indexes.pgvector import PgvectorConfig, location, qualified_table
from ragkit.indexes.pgvector.client import connect, pg_errors, statements, table_exists, table_structure

if TYPE_CHECKING:
    from ragkit.indexes.generation import GenerationView


def verify_table(config: PgvectorConfig, generation: GenerationView, sample: int = 16) -> tuple[list[str], str]:
    """(problems, summary): the rows visible at the generation are exactly its chunk ids, one
    version each; the vector column and the HNSW index are there; sampled rows carry the stored
    vector (exactly, or its float16 rounding for halfvec) and the chunk's filterable metadata."""
    conn = connect(config, "verify")
    try:
        with pg_errors(config):
            return _verify(conn, config, generation, sample)
    finally:
        conn.close()


def _verify(conn: Any, config: PgvectorConfig, generation: GenerationView, sample: int) -> tuple[list[str], str]:
    where = f"{qualified_table(config)} ({location(config)})"
    if not table_exists(conn, config):
        return [f"table {where} is missing (the next ingest refills it from the stored vectors)"], ""
    structure = table_structure(conn, config)
    sql = statements(config.model_copy(update={"vector_type": structure.get("vector_type", config.vector_type)}))
    g = generation.generation
    problems = []
    dim = int(generation.segments[0].vectors.shape[1]) if generation.segments else None
    if dim is not None and structure.get("dim") != dim:
        problems.append(f"the vector column has dimension {structure.get('dim')}, the embeddings {dim}")
    if "m" not in structure:
        problems.append("the HNSW index is missing (the next ingest creates it)")
    counts = conn.execute(sql.q("SELECT chunk_id, count(*) FROM {t} WHERE {visible} GROUP BY chunk_id"), {"g": g}).fetchall()
    have = {i for i, _ in counts}
    twice = [i for i, n in counts if n > 1]
    want = generation.store.chunk_ids()
    missing, extra = sorted(want - have), sorted(have - want)
    if missing:
        problems.append(f"{len(missing)} chunk id(s) of generation {g} missing from the table, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} id(s) visible at generation {g} that it does not hold, e.g. {extra[:3]}")
    if twice:
        problems.append(f"{len(twice)} chunk id(s) with several visible versions, e.g. {twice[:3]}")
    pending = conn.execute(
        sql.q("SELECT count(*) FROM {t} WHERE added_gen > %(g)s OR removed_gen > %(g)s"), {"g": g}
    ).fetchone()[0]
    n = len(want)
    live = np.flatnonzero(generation.live())
    rows = sorted({int(live[int(round(x))]) for x in np.linspace(0, len(live) - 1, min(sample, len(live)))}) if len(live) else []
    records = {
        chunk_id: (row, meta)
        for row, chunk_id, meta in generation.store.chunk_records(generation.store.chunk_ids_at_rows(rows))
    }
    for chunk_id, embedding, meta in conn.execute(
        sql.q("SELECT chunk_id, embedding::real[], metadata::text FROM {t} WHERE {visible} AND chunk_id = ANY(%(ids)s)"),
        {"g": g, "ids": list(records)},
    ):
        row, want_meta = records[chunk_id]
        stored = generation.vectors_at([row])[0]
        if sql.vector_type == "halfvec":
            stored = stored.astype(np.float16).astype(np.float32)
        if not np.array_equal(np.asarray(embedding, dtype=np.float32), stored):
            problems.append(f"row {row}: the table's vector for {chunk_id} differs from the stored embeddings")
        if json.loads(meta) != want_meta:
            problems.append(f"row {row}: the table's metadata for {chunk_id} differs from the store")
    note = f"; {pending} row(s) of an unpublished or newer generation (ignored by readers)" if pending else ""
    summary = (
        f"pgvector table {where} holds exactly the {n} chunk ids of generation {g} ({sql.vector_type}, HNSW); "
        f"{len(records)} sampled vectors equal the stored embeddings, metadata exact{note}"
    )
    return problems, summary
