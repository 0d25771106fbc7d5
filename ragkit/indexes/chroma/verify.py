"""`ragkit status --verify` for chroma: the collection holds exactly a generation's chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.indexes.chroma import ChromaConfig, location
from ragkit.indexes.chroma.client import all_ids, chroma_errors, open_collection

if TYPE_CHECKING:
    from ragkit.indexes.generation import GenerationView


def verify_collection(config: ChromaConfig, generation: GenerationView, sample: int = 16) -> tuple[list[str], str]:
    """(problems, summary): the collection holds exactly the generation's chunk ids, and sampled
    records carry exactly the stored vectors and the chunks' filterable metadata."""
    index_dir = generation.index_dir
    collection = open_collection(config, index_dir, create=False)
    want = generation.store.chunk_ids()
    with chroma_errors(config):
        have = all_ids(collection)
    problems = []
    missing, extra = sorted(want - have), sorted(have - want)
    if missing:
        problems.append(f"{len(missing)} chunk id(s) missing from the collection, e.g. {missing[:3]}")
    if extra:
        problems.append(
            f"{len(extra)} id(s) in the collection that the generation does not hold, e.g. {extra[:3]} "
            "(left by an interrupted ingest; the next ingest removes them)"
        )
    n = len(want)
    live = np.flatnonzero(generation.live())
    rows = sorted({int(live[int(round(x))]) for x in np.linspace(0, n - 1, min(sample, n))}) if n else []
    records = {
        chunk_id: (row, meta)
        for row, chunk_id, meta in generation.store.chunk_records(generation.store.chunk_ids_at_rows(rows))
    }
    if records:
        with chroma_errors(config):
            got = collection.get(ids=list(records), include=["embeddings", "metadatas"])
        embeddings: list[Any] = list(got["embeddings"] if got["embeddings"] is not None else [])
        metadatas: list[Any] = list(got["metadatas"] or [])
        for chunk_id, vector, meta in zip(got["ids"], embeddings, metadatas):
            row, want_meta = records[chunk_id]
            if not np.array_equal(np.asarray(vector, dtype=np.float32), generation.vectors_at([row])[0]):
                problems.append(f"row {row}: chroma's vector for {chunk_id} differs from the stored embeddings")
            if dict(meta or {}) != want_meta:
                problems.append(f"row {row}: chroma's metadata for {chunk_id} differs from the store")
    summary = (
        f"chroma collection {config.collection!r} ({location(config, index_dir)}) holds exactly the "
        f"{n} chunk ids; {len(records)} sampled vectors identical to the stored embeddings, metadata exact"
    )
    return problems, summary
