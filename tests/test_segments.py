"""Segments (ragkit/indexes/layout.py, writer.py, merge.py): every commit adds one immutable
segment and per-generation deletion bitmaps; merges never change results.

Oracles: rank_bm25.BM25Okapi over the LIVE chunks for every BM25 score, exact inner products
over the live vectors for dense search, and a one-shot ingest of the same documents for
optimize/upgrade. A deterministic hash embedder stands in for the model (only the plumbing is
tested here; the bundled model is used by the end-to-end and conformance tests).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hash_embedder import HashEmbedder, vector
from paragraph_chunks import paragraphs
from rank_bm25 import BM25Okapi

from ragkit.config import SegmentsConfig, parse_pipeline
from ragkit.indexes import merge as merge_module
from ragkit.indexes.layout import SegmentEntry, read_current, require_current, writer_lock
from ragkit.indexes.maintenance import verify_index
from ragkit.indexes.merge import optimize_index, plan_merges, run_policy
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.indexes.writer import write_generation
from ragkit.schema import Document

ROOT = Path(__file__).resolve().parents[1]
CONFIG = parse_pipeline({"dense": {"embedder": {"batch_size": 8}}})
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()


def write(index_dir: Path, documents: list[Document], embedder: HashEmbedder, delete: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    with writer_lock(index_dir):
        return write_generation(index_dir, CONFIG, documents, paragraphs, embedder, delete_ids=delete)


def random_document(rng: random.Random, doc_id: str) -> Document:
    paragraphs_ = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) for _ in range(rng.randint(1, 4))]
    return Document(id=doc_id, source=doc_id, text="\n\n".join(paragraphs_))


def live_corpus(snap: IndexSnapshot) -> tuple[np.ndarray, list[str]]:
    """Global rows of the live chunks and their texts."""
    rows = np.flatnonzero(snap.view.live())
    texts = [c.text for c in snap.store.chunks_by_rows(rows.tolist())]
    return rows, texts


def check_against_oracles(index_dir: Path, expected: dict[str, Document]) -> None:
    """Store, BM25 and dense search of the published generation equal a fresh computation over
    exactly the documents in `expected`."""
    snap = IndexSnapshot.open(index_dir)
    try:
        rows, texts = live_corpus(snap)
        want_texts = sorted(c.text for d in expected.values() for c in paragraphs(d))
        assert sorted(texts) == want_texts
        assert snap.store.count_documents() == len(expected) == snap.manifest.documents
        assert snap.manifest.chunks == len(texts)
        analyze = snap.sparse_backend.analyzer
        tokens = [analyze(t) for t in texts]
        oracle = BM25Okapi(tokens)
        for query in (["alpha"], ["beta", "gamma"], ["rho", "rho", "mu"], ["unknownword"]):
            scores = snap.sparse.get_scores(query)
            assert scores.shape == (snap.view.rows,)
            np.testing.assert_allclose(scores[rows], oracle.get_scores(query), rtol=1e-9, atol=1e-12)
            hit_rows, _ = snap.sparse.search(query, 1000)
            assert set(hit_rows.tolist()) <= set(rows.tolist())  # deleted rows never come back
        vectors = np.stack([vector(t) for t in texts])
        for question in ("alpha beta", "sigma"):
            q = vector(question)
            exact = vectors @ q
            got_rows, got_scores = snap.dense.search(q[None, :], 5)[0]
            k = min(5, len(texts))
            np.testing.assert_allclose(np.sort(got_scores)[::-1], np.sort(exact)[::-1][:k], rtol=1e-5, atol=1e-6)
            assert set(got_rows.tolist()) <= set(rows.tolist())
    finally:
        snap.close()


def test_random_commits_match_the_oracles_and_optimize_changes_nothing(tmp_path: Path) -> None:
    rng = random.Random(11)
    index_dir = tmp_path / "index"
    embedder = HashEmbedder()
    expected: dict[str, Document] = {}
    for commit in range(8):
        batch = []
        for _ in range(rng.randint(1, 5)):  # adds and updates
            doc_id = f"doc{rng.randint(0, 12)}.md"
            batch.append(random_document(rng, doc_id))
        deletes = tuple(rng.sample(sorted(set(expected) - {d.id for d in batch}), k=min(2, len(set(expected) - {d.id for d in batch}))) if commit % 2 else ())
        stats = write(index_dir, batch, embedder, deletes)
        for d in batch:
            expected[d.id] = d
        for doc_id in deletes:
            expected.pop(doc_id, None)
        if stats.published:
            check_against_oracles(index_dir, expected)
    manifest = require_current(index_dir)
    assert len(manifest.segments) > 2
    assert any(e.deleted_chunks for e in manifest.segments)
    assert verify_index(index_dir).ok

    before = search_results(index_dir)
    optimize_index(index_dir)
    manifest = require_current(index_dir)
    assert len(manifest.segments) == 1
    assert manifest.segments[0].deleted_chunks == 0
    check_against_oracles(index_dir, expected)
    assert search_results(index_dir) == before
    assert verify_index(index_dir).ok


def search_results(index_dir: Path) -> list[list[tuple[str, float]]]:
    """(chunk text, rounded score) of dense and sparse top-5 for a few queries: row numbers
    change with a merge, results must not."""
    snap = IndexSnapshot.open(index_dir)
    try:
        out = []
        for question in ("alpha beta", "sigma rho", "mu"):
            rows, scores = snap.dense.search(vector(question)[None, :], 5)[0]
            texts = [c.text for c in snap.store.chunks_by_rows(rows.tolist())]
            out.append(sorted(zip(texts, np.round(scores, 5).tolist())))
            rows, scores = snap.sparse.search(snap.sparse_backend.analyzer(question), 5)
            texts = [c.text for c in snap.store.chunks_by_rows(rows.tolist())]
            out.append(sorted(zip(texts, np.round(scores, 9).tolist())))
        return out
    finally:
        snap.close()


def test_reingest_is_a_noop_and_nothing_is_embedded_twice(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    embedder = HashEmbedder()
    documents = [Document(id=f"d{i}.md", source=f"d{i}.md", text=f"Doc {i} own.\n\nShared text.") for i in range(5)]
    first = write(index_dir, documents, embedder)
    assert first.published and first.segments == 1
    assert sorted(embedder.embedded) == sorted({f"Doc {i} own." for i in range(5)} | {"Shared text."})
    embedder.calls.clear()

    again = write(index_dir, documents, embedder)
    assert not again.published and again.documents_unchanged == 5 and embedder.embedded == []
    assert len(require_current(index_dir).segments) == 1

    # An update whose paragraphs exist elsewhere in the index embeds nothing new.
    changed = Document(id="d0.md", source="d0.md", text="Doc 1 own.\n\nShared text.")
    stats = write(index_dir, [changed], embedder)
    assert stats.published and stats.documents_updated == 1 and embedder.embedded == []
    assert stats.embedding_cache_hits == 2 and stats.segments == 2


def test_deleting_every_document_of_a_segment_drops_it(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    embedder = HashEmbedder()
    write(index_dir, [Document(id="a.md", source="a.md", text="alpha one")], embedder)
    write(index_dir, [Document(id="b.md", source="b.md", text="beta two")], embedder)
    assert len(require_current(index_dir).segments) == 2
    write(index_dir, [], embedder, delete=("a.md",))
    manifest = require_current(index_dir)
    assert len(manifest.segments) == 1 and manifest.documents == 1
    check_against_oracles(index_dir, {"b.md": Document(id="b.md", source="b.md", text="beta two")})


def terms_file(index_dir: Path) -> bytes:
    manifest = require_current(index_dir)
    return (index_dir / manifest.directory / "terms.txt").read_bytes()


def test_the_vocabulary_is_appended_to_and_a_delete_copies_it_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit copies its predecessor's terms.txt and appends the new terms (term ids of old
    segments stay valid); a commit that analyzes no text never parses the vocabulary."""
    import ragkit.indexes.bm25 as bm25_module

    index_dir = tmp_path / "index"
    embedder = HashEmbedder()
    write(index_dir, [Document(id="a.md", source="a.md", text="alpha beta gamma")], embedder)
    first = terms_file(index_dir)
    write(index_dir, [Document(id="b.md", source="b.md", text="beta delta epsilon")], embedder)
    second = terms_file(index_dir)
    assert second.startswith(first) and second[len(first):].decode().split() == ["delta", "epsilon"]

    loads: list[object] = []
    real_load = bm25_module.Vocabulary.load.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(bm25_module.Vocabulary, "load", classmethod(lambda cls, d: loads.append(d) or real_load(cls, d)))
    write(index_dir, [], embedder, delete=("a.md",))
    assert loads == [] and terms_file(index_dir) == second
    monkeypatch.undo()
    write(index_dir, [Document(id="c.md", source="c.md", text="gamma zeta")], embedder)
    third = terms_file(index_dir)
    assert third == second + b"zeta\n" and len(require_current(index_dir).segments) == 2
    monkeypatch.setattr(bm25_module.Vocabulary, "load", classmethod(lambda cls, d: loads.append(d) or real_load(cls, d)))
    optimize_index(index_dir)  # a merge re-analyzes nothing
    assert loads == [] and terms_file(index_dir) == third and len(require_current(index_dir).segments) == 1
    monkeypatch.undo()
    # Term ids kept their meaning: scores still equal rank-bm25 over the live corpus.
    check_against_oracles(
        index_dir,
        {d: Document(id=d, source=d, text=t) for d, t in (("b.md", "beta delta epsilon"), ("c.md", "gamma zeta"))},
    )


def entry(name: str, chunks: int, deleted: int = 0) -> SegmentEntry:
    return SegmentEntry(name=name, chunks=chunks, documents=max(1, chunks // 10), deleted_chunks=deleted)


def test_plan_merges_is_tiered_and_rewrites_segments_full_of_deletions() -> None:
    policy = SegmentsConfig(per_tier=3, floor_rows=100, max_merged_rows=10_000, max_deleted_share=0.5)
    assert plan_merges([entry("s1", 50), entry("s2", 60)], policy) == []
    # Three small segments share tier 0 and merge; the big one stays.
    plans = plan_merges([entry("s1", 50), entry("big", 5000), entry("s2", 60), entry("s3", 10)], policy)
    assert plans == [["s3", "s1", "s2"]]
    # Tier 1 (100 < rows <= 300) is separate from tier 0.
    plans = plan_merges([entry("a", 150), entry("b", 200), entry("c", 250), entry("d", 20)], policy)
    assert plans == [["a", "b", "c"]]
    # A merge never exceeds max_merged_rows.
    small_cap = policy.model_copy(update={"max_merged_rows": 100})
    assert plan_merges([entry("s1", 50), entry("s2", 60), entry("s3", 70)], small_cap) == []
    # Mostly deleted: rewritten alone (above the lowest tier; small ones wait for their tier).
    assert plan_merges([entry("x", 1000, deleted=600), entry("y", 1000, deleted=100)], policy) == [["x"]]
    assert plan_merges([entry("x", 90, deleted=80)], policy) == []


def test_a_merge_keeps_deletions_committed_while_it_was_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index_dir = tmp_path / "index"
    embedder = HashEmbedder()
    documents = {f"d{i}.md": Document(id=f"d{i}.md", source=f"d{i}.md", text=f"word{i} alpha\n\nbeta {i}") for i in range(6)}
    for i in range(3):
        write(index_dir, [documents[f"d{2 * i}.md"], documents[f"d{2 * i + 1}.md"]], embedder)
    real = merge_module.write_merged_segment
    committed: list[int] = []

    def merge_then_commit_concurrently(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        # The merge holds no lock while it builds: a writer deletes from a merged segment and
        # updates another document meanwhile.
        stats = write(index_dir, [Document(id="d5.md", source="d5.md", text="new five")], embedder, delete=("d0.md",))
        committed.append(stats.generation)
        return result

    monkeypatch.setattr(merge_module, "write_merged_segment", merge_then_commit_concurrently)
    results = optimize_index(index_dir)
    assert committed and results[0].generation is not None and results[0].generation > committed[0]
    documents.pop("d0.md")
    documents["d5.md"] = Document(id="d5.md", source="d5.md", text="new five")
    check_against_oracles(index_dir, documents)
    assert verify_index(index_dir).ok


def test_background_policy_bounds_the_segment_count(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    embedder = HashEmbedder()
    policy = SegmentsConfig(per_tier=3, floor_rows=4)
    expected = {}
    for i in range(20):
        doc = Document(id=f"d{i}.md", source=f"d{i}.md", text=f"alpha {i}\n\nbeta {i % 3}")
        expected[doc.id] = doc
        write(index_dir, [doc], embedder)
        run_policy(index_dir, policy)
        # at most per_tier - 1 segments per tier once the policy has run
        tiers: dict[int, int] = {}
        for e in require_current(index_dir).segments:
            level = merge_module.tier(e.live_chunks, policy)
            tiers[level] = tiers.get(level, 0) + 1
        assert all(n < policy.per_tier for n in tiers.values()), tiers
    assert len(require_current(index_dir).segments) < 8
    check_against_oracles(index_dir, expected)


def test_merge_scheduler_runs_after_commits_and_close_waits(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    embedder = HashEmbedder()
    policy = SegmentsConfig(per_tier=2, floor_rows=1000)
    scheduler = merge_module.MergeScheduler(index_dir, lambda: policy)
    try:
        for i in range(6):
            write(index_dir, [Document(id=f"d{i}.md", source=f"d{i}.md", text=f"gamma {i}")], embedder)
            scheduler.request()
        assert scheduler.wait(timeout=60)
    finally:
        scheduler.stop()
    assert len(require_current(index_dir).segments) == 1
    assert require_current(index_dir).documents == 6


def test_stale_segments_are_removed_once_no_kept_generation_uses_them(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    embedder = HashEmbedder()
    for i in range(4):
        write(index_dir, [Document(id=f"d{i}.md", source=f"d{i}.md", text=f"delta {i}")], embedder)
    optimize_index(index_dir)
    for i in range(4, 8):  # later commits push the pre-optimize generations out of the kept ones
        write(index_dir, [Document(id=f"d{i}.md", source=f"d{i}.md", text=f"delta {i}")], embedder)
    kept = {e.name for e in require_current(index_dir).segments}
    on_disk = {p.name for p in (index_dir / "segments").iterdir()}
    assert len(on_disk) < 8  # the four merged-away segments are gone
    assert kept <= on_disk


# --- format 1 (before segments) ---------------------------------------------------------------

FIXTURE_V1 = ROOT / "tests" / "fixtures" / "index-format1"


def ragkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragkit.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )


@pytest.mark.slow
def test_an_index_written_before_segments_upgrades_in_place_and_answers_the_same(tmp_path: Path) -> None:
    """tests/fixtures/index-format1 was written by ragkit at fc3afc0 (`ragkit ingest data`;
    see its README). Reading it says how to upgrade; `ragkit optimize` upgrades it without
    embedding anything, and its answers then equal those of a fresh ingest of data/."""
    if not FIXTURE_V1.is_dir():
        pytest.fail(f"missing fixture {FIXTURE_V1}")
    old = tmp_path / "old"
    shutil.copytree(FIXTURE_V1 / "index", old)
    shutil.copytree(ROOT / "data", tmp_path / "data")
    question = "Which planet has the Great Red Spot?"
    refused = ragkit("query", question, "--index", str(old), "--json", cwd=tmp_path)
    assert refused.returncode == 2 and "ragkit optimize" in refused.stderr, refused.stderr

    upgraded = ragkit("optimize", "--index", str(old), cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    manifest = read_current(old)
    assert manifest is not None and manifest.format == 2 and len(manifest.segments) == 1
    assert ragkit("status", "--index", str(old), "--verify", cwd=tmp_path).returncode == 0

    fresh = tmp_path / "fresh"
    built = ragkit("ingest", "data", "--index", str(fresh), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    answers = []
    for index in (old, fresh):
        out = ragkit("query", question, "--index", str(index), "--json", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        answer = json.loads(out.stdout)
        answers.append((answer["answer"].split(". ")[0], [c["source"] for c in answer["citations"]], answer["hits"][0]["chunk_id"]))
    # The same best passage and the same cited answer. (The old index keeps its own pipeline, whose
    # BM25 analyzer predates stemming, so lower ranks may differ from a fresh index with today's
    # defaults; and it stores no sentence vectors: sentences are embedded at query time.)
    assert answers[0] == answers[1]
    # A commit on the upgraded index adds a segment next to the upgraded one.
    (tmp_path / "data" / "extra.md").write_text("# Extra\n\nA new note about comets.\n", encoding="utf-8")
    again = ragkit("ingest", "data", "--index", str(old), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(require_current(old).segments) >= 1 and require_current(old).documents == require_current(fresh).documents + 1


def test_concurrent_readers_keep_their_generation_while_merges_publish(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    embedder = HashEmbedder()
    for i in range(4):
        write(index_dir, [Document(id=f"d{i}.md", source=f"d{i}.md", text=f"omega {i}\n\nalpha")], embedder)
    snap = IndexSnapshot.open(index_dir)
    try:
        before = snap.sparse.search(["alpha"], 10)
        errors: list[BaseException] = []

        def optimize() -> None:
            try:
                optimize_index(index_dir)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread = threading.Thread(target=optimize)
        thread.start()
        thread.join(60)
        assert not errors
        after = snap.sparse.search(["alpha"], 10)  # the open snapshot still reads its segments
        assert before[0].tolist() == after[0].tolist()
        assert [c.text for c in snap.store.chunks_by_rows(after[0].tolist())]
    finally:
        snap.close()
    assert len(require_current(index_dir).segments) == 1
