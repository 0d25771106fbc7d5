"""The conformance suite every vector store passes (like Haystack's DocumentStoreBaseTests).

A store's test module subclasses `VectorStoreConformance` and provides the `backend` fixture (the
`dense.backend` section of a pipeline, a mapping); everything else runs through the real writer,
snapshot and verification with the bundled embedding model:

- add, update and delete documents over several generations: searches see exactly the
  published chunks, `status --verify` passes after each commit;
- metadata filters: the hand-written battery of tests/test_filters.py and generated filters
  select exactly the chunks `MetadataFilter.matches` selects, on an index of several segments
  with deleted rows;
- scores: equal to exact inner-product search over the live stored vectors (top-k, ties by
  row), across segments with deletions, and unchanged by merging them (`optimize`);
- a crash between the store's pre-publish writes and the publish leaves the published
  generation fully and only searchable, and the next commit repairs the store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from paragraph_chunks import paragraphs
from test_filters import BATTERY, FIELD_VALUES, _filters

import ragkit.indexes.writer as writer_module
from ragkit.config import PipelineConfig, parse_pipeline
from ragkit.indexes.embedder import make_embedder
from ragkit.indexes.filters import MetadataFilter
from ragkit.indexes.layout import read_current, writer_lock
from ragkit.indexes.merge import optimize_index
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.indexes.verify import verify_index
from ragkit.indexes.writer import WriteStats, write_generation
from ragkit.schema import Document

_MODEL: Any = None


def embedder() -> Any:
    """The bundled model, loaded once for every store's suite."""
    global _MODEL
    if _MODEL is None:
        _MODEL = make_embedder(PipelineConfig().dense.embedder)
        _MODEL.load()
    return _MODEL


WORDS = "comet nebula quasar pulsar orbit eclipse crater aurora meteor galaxy".split()


def corpus(n_docs: int = 40, seed: int = 7) -> list[Document]:
    """Documents with mixed-kind metadata (as in test_filters) and 1-3 distinct paragraphs each."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n_docs):
        meta = {f: vals[rng.integers(len(vals))] for f, vals in FIELD_VALUES.items() if rng.random() < 0.8}
        paras = [
            " ".join(WORDS[int(w)] for w in rng.integers(0, len(WORDS), 6)) + f" item {i}-{j}."
            for j in range(int(rng.integers(1, 4)))
        ]
        docs.append(Document(id=f"doc{i}", source=f"dir/f{i % 7}.md", text="\n\n".join(paras), metadata=meta))
    return docs


class VectorStoreConformance:
    """Subclass and define the `backend` fixture: the `dense.backend` mapping to test."""

    @pytest.fixture
    def backend(self) -> dict[str, Any]:
        raise NotImplementedError("a store's test class provides the `backend` fixture")

    # --- helpers -------------------------------------------------------------------------------

    def pipeline(self, backend: dict[str, Any]) -> PipelineConfig:
        return parse_pipeline({"dense": {"backend": backend}})

    def write(self, index_dir: Path, backend: dict[str, Any], documents: list[Document], delete: tuple[str, ...] = ()) -> WriteStats:
        with writer_lock(index_dir):
            return write_generation(
                index_dir, self.pipeline(backend), documents, paragraphs, embedder(), delete_ids=delete
            )

    def search(self, index_dir: Path, question: str, k: int, flt: Any = None) -> tuple[list[str], np.ndarray]:
        snapshot = IndexSnapshot.open(index_dir)
        try:
            query = embedder().embed_query(question).reshape(1, -1)
            parsed = None if flt is None else MetadataFilter.parse(flt)
            [(rows, scores)] = snapshot.dense.search(query, k, parsed)
            return [c.id for c in snapshot.store.chunks_by_rows(rows.tolist())], scores
        finally:
            snapshot.close()

    def published_ids(self, index_dir: Path) -> set[str]:
        snapshot = IndexSnapshot.open(index_dir)
        try:
            return snapshot.store.chunk_ids()
        finally:
            snapshot.close()

    # --- the suite -------------------------------------------------------------------------------

    def test_add_update_delete_across_generations(self, tmp_path: Path, backend: dict[str, Any]) -> None:
        index = tmp_path / "index"
        docs = corpus(12)
        self.write(index, backend, docs)
        assert verify_index(index, embedder()).ok
        everything = self.published_ids(index)
        found, _ = self.search(index, "comet orbit", len(everything))
        assert set(found) == everything

        changed = Document(id="doc3", source=docs[3].source, text="A brand new paragraph about a supernova.", metadata={})
        stats = self.write(index, backend, [changed, *docs[4:]], delete=("doc0", "doc1"))
        assert stats.documents_updated == 1 and stats.documents_deleted == 2
        published = self.published_ids(index)
        found, _ = self.search(index, "supernova", len(published) + 5)
        assert set(found) == published  # exactly the published chunks, nothing stale, nothing missing
        top, _ = self.search(index, "a brand new paragraph about a supernova", 1)
        assert top == [next(i for i in published if i not in everything)]
        report = verify_index(index, embedder())
        assert report.ok, report.problems
        unchanged = self.write(index, backend, [changed, *docs[4:]])
        assert not unchanged.published and unchanged.texts_embedded == 0

    def exact_top(self, index_dir: Path, question: str, k: int) -> tuple[list[str], list[float], list[str], np.ndarray]:
        """(exact top-k chunk ids and scores over the live vectors, the store's found ids and scores)."""
        snapshot = IndexSnapshot.open(index_dir)
        try:
            live = np.flatnonzero(snapshot.view.live())
            vectors = snapshot.view.vectors_at(live)
            query = embedder().embed_query(question)
            exact = vectors @ query
            order = np.lexsort((live, -exact))[:k]
            want = [c.id for c in snapshot.store.chunks_by_rows(live[order].tolist())]
            [(rows, scores)] = snapshot.dense.search(query.reshape(1, -1), k)
            got = [c.id for c in snapshot.store.chunks_by_rows(rows.tolist())]
            return want, exact[order].tolist(), got, scores
        finally:
            snapshot.close()

    def test_scores_equal_exact_search(self, tmp_path: Path, backend: dict[str, Any]) -> None:
        index = tmp_path / "index"
        docs = corpus(30, seed=3)
        self.write(index, backend, docs[:12])  # three segments, with deletions in the first two
        self.write(index, backend, docs[12:24], delete=("doc2", "doc5"))
        changed = [Document(id=d.id, source=d.source, text=d.text + "\n\nA new paragraph on auroras.", metadata=d.metadata) for d in docs[14:18]]
        self.write(index, backend, [*changed, *docs[24:]])
        assert len(read_current(index).segments) == 3  # type: ignore[union-attr]
        for optimized in (False, True):
            for question in ("nebula and galaxy", "a crater on the moon", "pulsar eclipse", "auroras"):
                want, want_scores, got, scores = self.exact_top(index, question, 10)
                assert got == want, (question, optimized)
                assert np.allclose(scores, want_scores, atol=1e-5)
            if not optimized:
                optimize_index(index)
                manifest = read_current(index)
                assert manifest is not None and len(manifest.segments) == 1 and manifest.segments[0].deleted_chunks == 0
                report = verify_index(index, embedder())
                assert report.ok, report.problems

    @pytest.fixture
    def filtered_index(self, tmp_path: Path, backend: dict[str, Any]) -> tuple[Path, dict[str, dict[str, Any]]]:
        index = tmp_path / "index"
        docs = corpus(40)
        self.write(index, backend, docs[:25])  # two segments, deleted rows in the first
        self.write(index, backend, docs[25:], delete=("doc3", "doc11", "doc19"))
        snapshot = IndexSnapshot.open(index)
        try:
            flat = {cid: meta for _, cid, meta in snapshot.store.chunk_records()}
        finally:
            snapshot.close()
        return index, flat

    def _check_filter(self, index: Path, flat: dict[str, dict[str, Any]], spec: Any) -> None:
        flt = MetadataFilter.parse(spec)
        expected = {cid for cid, meta in flat.items() if flt.matches(meta)}
        found, _ = self.search(index, "comet", len(flat), spec)
        assert set(found) == expected, spec

    @pytest.mark.parametrize("spec", BATTERY, ids=[json.dumps(s) for s in BATTERY])
    def test_filters_select_exactly_the_matching_chunks(self, filtered_index: Any, spec: Any) -> None:
        self._check_filter(*filtered_index, spec)

    # differing_executors: each store's subclass runs this inherited test, on its own index.
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
    )
    @given(spec=_filters)
    def test_generated_filters_select_exactly_the_matching_chunks(self, filtered_index: Any, spec: Any) -> None:
        self._check_filter(*filtered_index, spec)

    def test_crash_between_store_writes_and_publish(
        self, tmp_path: Path, backend: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        index = tmp_path / "index"
        docs = corpus(8)
        self.write(index, backend, docs[:5])
        published = self.published_ids(index)
        generation = read_current(index).generation  # type: ignore[union-attr]

        def crash(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("killed before publishing")

        monkeypatch.setattr(writer_module, "publish", crash)
        with pytest.raises(RuntimeError, match="killed before publishing"):
            self.write(index, backend, docs)  # the store was written for docs[5:], never published
        monkeypatch.undo()
        assert read_current(index).generation == generation  # type: ignore[union-attr]
        found, _ = self.search(index, "meteor galaxy", 100)
        assert set(found) == published  # the store's extra records are never returned
        self.write(index, backend, docs)  # the next commit repairs whatever the crash left
        report = verify_index(index, embedder())
        assert report.ok, report.problems
        found, _ = self.search(index, "meteor galaxy", 100)
        assert set(found) == self.published_ids(index)
