"""Ingest throughput plumbing: documents are consumed as a stream and encoded in blocks while
the producer is still loading; results equal a non-streamed write; the embedder sorts by
length over all its input (not per block) and returns vectors in input order.

A deterministic hash embedder stands in for the model where only the plumbing is tested; the
ordering test of `SentenceTransformerEmbedder.embed` uses the real bundled model.
"""

import numpy as np
import pytest
from hash_embedder import DIM, HashEmbedder, vector
from paragraph_chunks import paragraphs

from ragkit.config import PipelineConfig, parse_pipeline
from ragkit.indexes.bm25 import BM25Index
from ragkit.indexes.embedder import SentenceTransformerEmbedder
from ragkit.indexes.layout import writer_lock
from ragkit.indexes.maintenance import verify_index
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.indexes.tokenize import make_analyzer
from ragkit.indexes.writer import write_generation
from ragkit.schema import Document

# batch_size 1 -> the writer encodes in blocks of 32 texts
CONFIG = parse_pipeline({"dense": {"embedder": {"batch_size": 1}}})
def docs(n: int, tag: str = "") -> list[Document]:
    return [
        Document(id=f"d{i}.md", source=f"d{i}.md", text=f"Doc {i} first {tag}.\n\nDoc {i} second.\n\nShared text.")
        for i in range(n)
    ]


def write(index_dir, documents, embedder, config=CONFIG, **kw):
    with writer_lock(index_dir):
        return write_generation(index_dir, config, documents, paragraphs, embedder, **kw)


def contents(index_dir):
    snap = IndexSnapshot.open(index_dir)
    try:
        rows = np.flatnonzero(snap.view.live()).tolist()
        texts = [c.text for c in snap.store.chunks_by_rows(rows)]
        vectors = snap.view.vectors_at(rows)
        return texts, vectors
    finally:
        snap.close()


def test_encoding_starts_while_documents_are_still_being_produced(tmp_path):
    embedder = HashEmbedder()
    produced = []

    def stream():
        for document in docs(100):
            produced.append(document.id)
            yield document

    seen_at_call: list[int] = []
    embedder.on_call = lambda: seen_at_call.append(len(produced))
    stats = write(tmp_path, stream(), embedder)
    assert stats.chunks_added == 300 and stats.texts_embedded == 201  # "Shared text." once
    assert seen_at_call[0] < 100  # the first block was encoded before the stream ended
    assert len(seen_at_call) >= 6
    assert all(len(call) == 32 for call in embedder.calls[:-1])  # full blocks, then the tail
    assert sum(map(len, embedder.calls)) == 201


def test_streamed_write_equals_a_list_write(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, iter(docs(50)), HashEmbedder())
    write(b, docs(50), HashEmbedder())
    texts_a, vectors_a = contents(a)
    texts_b, vectors_b = contents(b)
    assert texts_a == texts_b and np.array_equal(vectors_a, vectors_b)
    assert np.allclose(vectors_a, np.stack([vector(t) for t in texts_a]))
    assert verify_index(a, None).ok


def test_delete_ids_callable_runs_after_the_stream_is_exhausted(tmp_path):
    write(tmp_path, docs(3), HashEmbedder())
    produced = []

    def stream():
        for document in docs(2, tag="v2"):
            produced.append(document.id)
            yield document

    def to_remove():
        assert produced == ["d0.md", "d1.md"]  # every document was consumed first
        return ["d2.md"]

    stats = write(tmp_path, stream(), HashEmbedder(), delete_ids=to_remove)
    assert (stats.documents_updated, stats.documents_deleted, stats.documents_total) == (2, 1, 2)


def test_later_duplicate_in_the_stream_replaces_the_earlier_one(tmp_path):
    first, second = docs(1, tag="old")[0], docs(1, tag="new")[0]
    stats = write(tmp_path, iter([first, second]), HashEmbedder())
    texts, vectors = contents(tmp_path)
    assert stats.documents_added == 1 and stats.chunks_added == 3
    assert texts == ["Doc 0 first new.", "Doc 0 second.", "Shared text."]
    assert np.allclose(vectors, np.stack([vector(t) for t in texts]))


def test_embedding_cache_across_generations_and_blocks(tmp_path):
    embedder = HashEmbedder()
    write(tmp_path, docs(40), embedder)
    embedder.calls.clear()
    stats = write(tmp_path, docs(41, tag="v2"), embedder)  # every first paragraph changes, one new doc
    encoded = [t for call in embedder.calls for t in call]
    assert sorted(encoded) == sorted([f"Doc {i} first v2." for i in range(41)] + ["Doc 40 second."])
    assert stats.embedding_cache_hits == 2 * 41 - 1
    texts, vectors = contents(tmp_path)
    assert np.allclose(vectors, np.stack([vector(t) for t in texts]))


def test_sparse_index_equals_one_built_from_token_lists(tmp_path):
    write(tmp_path, docs(30), HashEmbedder())
    texts, _ = contents(tmp_path)
    snap = IndexSnapshot.open(tmp_path)
    try:
        expected = BM25Index.build([make_analyzer()(t) for t in texts])
        query = ["doc", "second", "shared", "7"]
        assert np.array_equal(snap.sparse.get_scores(query), expected.get_scores(query))
    finally:
        snap.close()


class RecordingModel:
    """Stands in for the SentenceTransformer: records each encode call's texts."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts, **kwargs):
        self.calls.append(list(texts))
        return np.stack([vector(t) for t in texts])


def test_embed_sorts_by_length_over_all_input_and_keeps_input_order():
    embedder = SentenceTransformerEmbedder(PipelineConfig().dense.embedder.model_copy(update={"batch_size": 2}))
    model = RecordingModel()
    embedder.__dict__["_model"] = model  # the cached_property slot: no real model needed here
    rng = np.random.default_rng(0)
    texts = ["x" * int(n) + str(i) for i, n in enumerate(rng.integers(1, 200, 50))]
    blocks = []
    out = embedder.embed(texts, on_batch=blocks.append)
    assert blocks == [2] * 25  # one batch per encode call: progress moves every batch
    flat = [t for call in model.calls for t in call]
    assert [len(t) for t in flat] == sorted((len(t) for t in texts), reverse=True)
    assert np.array_equal(out, np.stack([vector(t) for t in texts]))


@pytest.mark.slow
def test_real_embedder_output_matches_sentence_transformers_encode():
    embedder = SentenceTransformerEmbedder(PipelineConfig().dense.embedder.model_copy(update={"batch_size": 4}))
    texts = ["Saturn.", "Titan is the largest moon of Saturn and has a thick atmosphere.", "Mars", "a " * 80]
    texts = texts * 10
    out = embedder.embed(texts)
    expected = embedder._model.encode(texts, batch_size=4, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_changing_only_the_faiss_backend_rebuilds_the_index_without_embedding(tmp_path):
    write(tmp_path, docs(20), HashEmbedder())
    _, before = contents(tmp_path)
    embedder = HashEmbedder()
    hnsw = parse_pipeline({"dense": {"embedder": {"batch_size": 1}, "backend": {"index": "hnsw", "storage": "float32"}}})
    assert hnsw.index_signature() == CONFIG.index_signature()  # same chunks and vectors: compatible
    stats = write(tmp_path, docs(20), embedder, config=hnsw)
    assert stats.published and stats.generation == 2 and stats.texts_embedded == 0 and embedder.calls == []
    assert stats.documents_unchanged == 20 and stats.chunks_total == 60
    snap = IndexSnapshot.open(tmp_path)
    try:
        assert snap.dense.describe()["type"] == "hnsw" and snap.pipeline.dense.backend.index == "hnsw"
        assert np.array_equal(contents(tmp_path)[1], before)
    finally:
        snap.close()
    # the same backend again: nothing to do
    assert not write(tmp_path, docs(20), HashEmbedder(), config=hnsw).published


def test_embed_query_runs_on_one_torch_thread_and_restores_the_count():
    import torch

    class ThreadsModel(RecordingModel):
        def encode(self, texts, **kwargs):
            self.threads = torch.get_num_threads()
            return super().encode(texts, **kwargs)

    embedder = SentenceTransformerEmbedder(PipelineConfig().dense.embedder)
    model = ThreadsModel()
    embedder.__dict__["_model"] = model
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert np.array_equal(embedder.embed_query("saturn"), vector("saturn"))
        assert model.threads == 1 and torch.get_num_threads() == 2
        embedder.embed(["a", "b"])  # batches keep every thread
        assert model.threads == 2
    finally:
        torch.set_num_threads(before)
