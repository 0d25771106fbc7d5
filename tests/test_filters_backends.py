"""One filter, the same results on every backend: faiss + BM25 vs chroma + BM25.

The same sample corpus (data/) is indexed twice with the real MiniLM embedder: once with faiss,
then the index is copied and re-ingested with `dense.backend: chroma` (embedded chroma, real; the
vectors come from the stored embeddings, nothing is re-embedded). Every filter below must give
the same hits, in the same order, with the same scores, and only chunks that pass the filter.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragkit.api import RAG
from ragkit.config import parse_pipeline
from ragkit.indexes.filters import MetadataFilter

DATA = Path(__file__).resolve().parent.parent / "data"
NO_RERANK = {"retrieval": {"rerank": {"name": "none"}}}
QUESTIONS = [
    "When was Voyager 1 launched?",
    "What is the largest moon in the Solar System?",
    "Which spacecraft flew past Pluto?",
    "How hot is the surface of Venus?",
]


@pytest.fixture(scope="module")
def twins(tmp_path_factory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("twins")
    faiss_rag = RAG(parse_pipeline(NO_RERANK), base / "faiss")
    report = faiss_rag.ingest([DATA])
    assert report.ok and report.index.chunks_total > 100
    faiss_rag.close()
    shutil.copytree(base / "faiss", base / "chroma")
    chroma_rag = RAG(parse_pipeline({**NO_RERANK, "dense": {"backend": {"name": "chroma"}}}), base / "chroma")
    chroma_rag.embedder = faiss_rag.embedder  # type: ignore[misc]  # one model load for both
    switched = chroma_rag.ingest([DATA])
    assert switched.index.published and switched.index.texts_embedded == 0  # backend switch: no re-embedding
    faiss_rag = RAG.open(base / "faiss")
    faiss_rag.embedder = chroma_rag.embedder  # type: ignore[misc]
    assert chroma_rag.status().dense_backend.startswith("chroma")
    yield faiss_rag, chroma_rag
    faiss_rag.close()
    chroma_rag.close()


def _filters(rag: RAG) -> list[dict]:
    """Filters built from the values actually stored (no hard-coded titles or paths)."""
    store = rag.snapshot().store
    metadata = [fields for _, fields in store.iter_filterable_metadata()]
    pdfs = sorted({m["source"] for m in metadata if str(m["source"]).endswith(".pdf")})
    titles = sorted({m["title"] for m in metadata if "title" in m})
    sources = sorted({m["source"] for m in metadata})
    assert len(pdfs) >= 2 and len(titles) >= 3 and any("page" in m for m in metadata)
    return [
        {"source": pdfs[0]},
        {"page": {"$gte": 2}},
        {"source": {"$in": sources[:5]}},
        {"title": {"$ne": titles[0]}},
        {"$or": [{"source": {"$in": pdfs}}, {"title": titles[1]}]},
        {"$and": [{"page": {"$lt": 3}}, {"source": {"$nin": pdfs[:1]}}]},
        {"source": sources[0], "title": {"$in": titles}},
        {"page": {"$gt": 1000}},  # matches nothing
    ]


def test_filters_give_identical_hits_on_faiss_and_chroma(twins) -> None:  # type: ignore[no-untyped-def]
    faiss_rag, chroma_rag = twins
    metadata = dict(faiss_rag.snapshot().store.iter_filterable_metadata())
    row_of_chunk = {c.id: row for row, c in enumerate(faiss_rag.snapshot().store.chunks_by_rows(list(metadata)))}
    compared = 0
    for spec in _filters(faiss_rag):
        flt = MetadataFilter.parse(spec)
        allowed = sum(flt.matches(m) for m in metadata.values())
        for question in QUESTIONS:
            via_faiss = faiss_rag.retrieve(question, top_k=10, filter=spec)
            via_chroma = chroma_rag.retrieve(question, top_k=10, filter=spec)
            assert [h.chunk.id for h in via_faiss] == [h.chunk.id for h in via_chroma], (spec, question)
            assert [h.score for h in via_faiss] == pytest.approx([h.score for h in via_chroma], abs=1e-5)
            assert len(via_faiss) == min(10, allowed), (spec, question, allowed)
            for hit in via_faiss:
                assert flt.matches(metadata[row_of_chunk[hit.chunk.id]]), (spec, hit.chunk.source)
            compared += 1
    assert compared == 8 * len(QUESTIONS)


def test_unfiltered_results_also_agree(twins) -> None:  # type: ignore[no-untyped-def]
    faiss_rag, chroma_rag = twins
    for question in QUESTIONS:
        assert [h.chunk.id for h in faiss_rag.retrieve(question, top_k=10)] == [
            h.chunk.id for h in chroma_rag.retrieve(question, top_k=10)
        ]
