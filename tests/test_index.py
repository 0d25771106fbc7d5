"""Index generations: incremental writes, no duplicates, embedding cache, lock, failed writes.

Real components throughout: the bundled MiniLM embedder, faiss, the BM25 index and SQLite.
"""

import numpy as np
import pytest
from paragraph_chunks import paragraphs

from ragkit.config import PipelineConfig, parse_pipeline
from ragkit.indexes.bm25 import BM25Writer
from ragkit.indexes.embedder import SentenceTransformerEmbedder
from ragkit.indexes.layout import IndexLocked, IndexStoreError, read_current, writer_lock
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.indexes.tokenize import make_analyzer
from ragkit.indexes.writer import write_generation
from ragkit.schema import Document

CONFIG = PipelineConfig()


class CountingEmbedder(SentenceTransformerEmbedder):
    def __init__(self):
        super().__init__(CONFIG.dense.embedder)
        self.encoded: list[str] = []

    def embed_with_tokens(self, texts, on_tokens, on_batch=None):  # what the writer calls (sentences.py)
        self.encoded.extend(texts)
        return super().embed_with_tokens(texts, on_tokens, on_batch)

    def embed(self, texts, on_batch=None):
        self.encoded.extend(texts)
        return super().embed(texts, on_batch)


@pytest.fixture(scope="module")
def embedder():
    return CountingEmbedder()


@pytest.fixture
def write(tmp_path, embedder):
    def run(documents, config=CONFIG):
        embedder.encoded.clear()
        with writer_lock(tmp_path):
            return write_generation(tmp_path, config, documents, paragraphs, embedder)

    return run


DOCS = [
    Document(id="a.md", source="a.md", text="Saturn has rings of ice.\n\nTitan is its largest moon."),
    Document(id="b.md", source="b.md", text="Mars has Olympus Mons.\n\nPhobos and Deimos orbit Mars."),
]


def live_rows(snapshot):
    return np.flatnonzero(snapshot.view.live()).tolist()


def chunk_texts(snapshot):
    return sorted(c.text for c in snapshot.store.chunks_by_rows(live_rows(snapshot)))


def test_build_then_reopen_without_embedding(write, tmp_path, embedder):
    stats = write(DOCS)
    assert stats.published and stats.generation == 1
    assert (stats.documents_added, stats.chunks_added, stats.texts_embedded) == (2, 4, 4)
    snapshot = IndexSnapshot.open(tmp_path)
    assert len(snapshot.dense) == len(snapshot.sparse) == snapshot.store.count_chunks() == 4
    rows, scores = snapshot.sparse.search(make_analyzer(CONFIG.sparse.tokenizer)("Olympus Mons"), 2)
    assert snapshot.store.chunks_by_rows(rows.tolist())[0].text == "Mars has Olympus Mons."
    [(rows, _)] = snapshot.dense.search(embedder.embed_query("the biggest moon of Saturn").reshape(1, -1), 1)
    assert snapshot.store.chunks_by_rows(rows.tolist())[0].text == "Titan is its largest moon."


def test_reingesting_unchanged_documents_does_nothing(write, tmp_path):
    write(DOCS)
    stats = write(DOCS)
    assert not stats.published and stats.documents_unchanged == 2 and stats.texts_embedded == 0
    assert read_current(tmp_path).generation == 1
    assert sorted(p.name for p in tmp_path.glob("gen-*")) == ["gen-000001"]


def test_changed_document_replaces_exactly_its_own_chunks(write, tmp_path, embedder):
    write(DOCS)
    before = IndexSnapshot.open(tmp_path)
    rows = live_rows(before)
    old_vectors = {c.text: v for c, v in zip(before.store.chunks_by_rows(rows), before.view.vectors_at(rows))}
    changed = Document(id="a.md", source="a.md", text="Saturn has rings of ice.\n\nEnceladus has geysers.")
    stats = write([changed, DOCS[1]])
    assert (stats.documents_updated, stats.documents_unchanged, stats.documents_added) == (1, 1, 0)
    assert (stats.chunks_removed, stats.chunks_added) == (2, 2)
    # only the new paragraph was encoded; the unchanged one came from the embedding cache
    assert embedder.encoded == ["Enceladus has geysers."]
    assert stats.embedding_cache_hits == 1
    after = IndexSnapshot.open(tmp_path)
    assert after.manifest.generation == 2
    texts = chunk_texts(after)
    assert texts == sorted(["Saturn has rings of ice.", "Enceladus has geysers.",
                            "Mars has Olympus Mons.", "Phobos and Deimos orbit Mars."])
    assert len(set(texts)) == len(texts)  # nothing duplicated
    rows = live_rows(after)
    vectors = after.view.vectors_at(rows)
    for row, chunk, vector in zip(rows, after.store.chunks_by_rows(rows), vectors):
        if chunk.text in old_vectors:  # kept rows keep their vectors (they stay in their segment)
            np.testing.assert_array_equal(vector, old_vectors[chunk.text])
        [(found, scores)] = after.dense.search(vector[None, :], 1)  # the dense index holds the same vector
        assert found.tolist() == [row] and scores[0] == pytest.approx(1.0, abs=1e-5)
    # one new segment holds the new paragraph; the old chunks of a.md are deleted, not rewritten
    assert [e.chunks for e in after.manifest.segments] == [4, 2] and after.manifest.segments[0].deleted_chunks == 2
    # the previous generation is kept for readers that opened it just before the swap
    assert sorted(p.name for p in tmp_path.glob("gen-*")) == ["gen-000001", "gen-000002"]


def test_failed_write_leaves_the_published_generation_intact(write, tmp_path, embedder, monkeypatch):
    write(DOCS)

    def broken(*args, **kwargs):
        raise RuntimeError("index build crashed")

    monkeypatch.setattr(BM25Writer, "write_segment", broken)
    with pytest.raises(RuntimeError, match="index build crashed"):
        write([Document(id="c.md", source="c.md", text="Jupiter has a Great Red Spot.")])
    assert read_current(tmp_path).generation == 1
    assert sorted(p.name for p in tmp_path.glob("gen-*")) == ["gen-000001"]
    # the half-written segment is gone too
    assert [p.name for p in (tmp_path / "segments").iterdir()] == [e.name for e in read_current(tmp_path).segments]
    assert chunk_texts(IndexSnapshot.open(tmp_path))[0] == "Mars has Olympus Mons."


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    import os

    with writer_lock(tmp_path):
        with pytest.raises(IndexLocked, match=f"locked by PID {os.getpid()}"):
            with writer_lock(tmp_path):
                pass
    with writer_lock(tmp_path):  # released on exit
        pass


def test_incompatible_pipeline_is_refused(write):
    write(DOCS)
    other = parse_pipeline({"chunker": {"chunk_size": 50, "chunk_overlap": 5}})
    with pytest.raises(IndexStoreError, match="different chunker settings"):
        write(DOCS, config=other)


def test_missing_index_says_how_to_create_it(tmp_path):
    with pytest.raises(IndexStoreError, match="run `ragkit ingest"):
        IndexSnapshot.open(tmp_path / "nothing")


def test_deleting_documents_removes_exactly_their_chunks(write, tmp_path, embedder):
    write(DOCS)
    analyzer = make_analyzer(CONFIG.sparse.tokenizer)
    with writer_lock(tmp_path):
        stats = write_generation(tmp_path, CONFIG, [], paragraphs, embedder, delete_ids=["a.md", "nope.md"])
    assert (stats.documents_deleted, stats.chunks_removed, stats.chunks_total) == (1, 2, 2)
    snapshot = IndexSnapshot.open(tmp_path)
    assert chunk_texts(snapshot) == ["Mars has Olympus Mons.", "Phobos and Deimos orbit Mars."]
    assert snapshot.sparse.search(analyzer("Titan"), 5)[0].size == 0
    with writer_lock(tmp_path):  # deleting everything leaves a valid, empty index
        write_generation(tmp_path, CONFIG, [], paragraphs, embedder, delete_ids=["b.md"])
    empty = IndexSnapshot.open(tmp_path)
    assert (len(empty.dense), len(empty.sparse), empty.store.count_documents()) == (0, 0, 0)
