"""Reliable ingestion: incremental updates, delete/prune, status/verify, the writer lock, readers
during commits. Real components throughout: the `ragkit` CLI in subprocesses, the bundled model,
faiss, BM25 and SQLite. (Kill -9 at random moments: tests/test_crash.py; bad input: test_hostile.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ragkit import RAG
from ragkit.chunkers import make_chunker
from ragkit.config import PipelineConfig
from ragkit.indexes.bm25 import BM25Postings
from ragkit.indexes.embedder import make_embedder
from ragkit.indexes.faiss_dense import FaissDenseIndex
from ragkit.indexes.layout import LOCK_FILE, SEGMENTS_DIR, read_current
from ragkit.indexes.maintenance import (
    ids_to_remove,
    index_status,
    lock_holder,
    match_documents,
    prune_candidates,
    verify_index,
)
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.indexes.store import STORE_FILE
from ragkit.indexes.tokenize import make_analyzer
from ragkit.loaders import discover, load_file
from ragkit.schema import LoadFailure, Trace

ROOT = Path(__file__).resolve().parents[1]
CONFIG = PipelineConfig.model_validate({"retrieval": {"rerank": {"name": "none"}}})


def ragkit(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"ragkit {args} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def embedder():
    model = make_embedder(CONFIG.dense.embedder)
    model.load()
    return model


def make_rag(index: Path, embedder, config: PipelineConfig = CONFIG) -> RAG:  # type: ignore[no-untyped-def]
    rag = RAG(config, index)
    rag.embedder = embedder  # type: ignore[misc]  # share the loaded model between tests
    return rag


def store_rows(index: Path) -> tuple[dict[str, tuple[str, str]], list[tuple[int, str, str, int, int]]]:
    """(documents: id -> (source, text), chunks: (row, id, doc_id, start, end)) of the published generation."""
    snapshot = IndexSnapshot.open(index)  # live rows of every segment (global rows)
    try:
        docs = {d.id: (d.source, d.text) for d in snapshot.store.documents()}
        rows = np.flatnonzero(snapshot.view.live()).tolist()
        chunks = [(row, c.id, c.doc_id, c.start, c.end) for row, c in zip(rows, snapshot.store.chunks_by_rows(rows))]
    finally:
        snapshot.close()
    return docs, chunks


def expected_chunks(paths: list[Path], cwd: Path) -> set[tuple[str, str, int, int]]:
    """What a complete ingest of `paths` must hold: (chunk id, doc id, start, end), from the loaders + chunker."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        chunker = make_chunker(CONFIG.chunker)
        out = set()
        for path in discover(paths, CONFIG.loader).files:
            for document in load_file(path, CONFIG.loader).documents:
                out.update((c.id, c.doc_id, c.start, c.end) for c in chunker.chunk(document))
        return out
    finally:
        os.chdir(old)


# --- incremental ingest, prune, delete, status through the CLI ---------------------------------


@pytest.mark.slow
def test_cli_incremental_ingest_prune_delete_and_status(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.md").write_text("# Alpha\n\nSaturn has rings of ice and rock.\n\nTitan has lakes of methane.\n")
    (corpus / "b.txt").write_text("Mars has two small moons, Phobos and Deimos.\n")
    rows = ["Venus rotates backwards.", "Mercury has no moons.", "Neptune has supersonic winds."]
    (corpus / "rows.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in rows))  # no ids: line numbers
    (corpus / "sub" / "c.md").write_text("# Comets\n\nHalley's comet returns every 76 years.\n")

    def ingest(*extra: str) -> dict:
        return json.loads(ragkit("ingest", "corpus", "--index", "idx", "--json", *extra, cwd=tmp_path).stdout)

    first = ingest()
    assert (first["generation"], first["documents_added"], first["published"]) == (1, 6, True)
    _, chunks_1 = store_rows(tmp_path / "idx")
    assert {c[1:] for c in chunks_1} == expected_chunks([Path("corpus")], tmp_path)

    # Unchanged: no work, no new generation.
    again = ingest()
    assert (again["published"], again["documents_unchanged"], again["texts_embedded"]) == (False, 6, 0)
    assert again["generation"] == 1 and [p.name for p in (tmp_path / "idx").glob("gen-*")] == ["gen-000001"]

    # A file gone from disk stays without --prune.
    (corpus / "sub" / "c.md").unlink()
    kept = ingest()
    assert kept["published"] is False and kept["documents_total"] == 6

    # One changed paragraph, a JSONL row removed from the top (the rest renumber), and --prune.
    (corpus / "a.md").write_text("# Alpha\n\nSaturn has rings of ice and rock.\n\nEnceladus has geysers.\n")
    (corpus / "rows.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in rows[1:]))
    docs_before, chunks_before = store_rows(tmp_path / "idx")
    changed = ingest("--prune")
    assert changed["documents_removed"] == ["corpus/rows.jsonl#3", "corpus/sub/c.md"]
    assert (changed["documents_updated"], changed["documents_deleted"], changed["documents_total"]) == (3, 2, 4)
    docs, chunks = store_rows(tmp_path / "idx")
    assert {c[1:] for c in chunks} == expected_chunks([Path("corpus")], tmp_path)  # nothing lost or extra
    assert len({c[1] for c in chunks}) == len(chunks)
    assert sorted(t for _, t in docs.values() if "Venus" in t) == []  # the removed row is gone, once
    assert sum("Mercury has no moons." in t for _, t in docs.values()) == 1  # the renumbered one, once
    # b.txt was not touched: exactly the same chunks
    assert [c[1:] for c in chunks if c[2] == "corpus/b.txt"] == [c[1:] for c in chunks_before if c[2] == "corpus/b.txt"]
    assert changed["texts_embedded"] == 1 + 0  # "Enceladus has geysers." paragraph chunk only...
    # ...(the renumbered rows' texts were embedded before: the embedding cache served them)

    # delete: by source, unknown names -> exit 1 (some) / 2 (none)
    deleted = ragkit("delete", "corpus/b.txt", "--index", "idx", "--json", cwd=tmp_path)
    assert json.loads(deleted.stdout)["deleted"] == ["corpus/b.txt"]
    none = ragkit("delete", "corpus/nope.md", "--index", "idx", cwd=tmp_path, check=False)
    assert none.returncode == 2 and "corpus/nope.md: no such document" in none.stderr
    some = ragkit("delete", "corpus/rows.jsonl", "corpus/nope.md", "--index", "idx", "--json", cwd=tmp_path, check=False)
    assert some.returncode == 1
    assert json.loads(some.stdout)["deleted"] == ["corpus/rows.jsonl#1", "corpus/rows.jsonl#2"]

    # status: counts, generation, size; --verify proves the indexes agree.
    status = json.loads(ragkit("status", "--index", "idx", "--json", cwd=tmp_path).stdout)
    docs, chunks = store_rows(tmp_path / "idx")
    assert (status["documents"], status["chunks"]) == (len(docs), len(chunks)) == (1, len(chunks))
    assert status["generation"] == read_current(tmp_path / "idx").generation == 4
    on_disk = sum(p.stat().st_size for p in (tmp_path / "idx").rglob("*") if p.is_file())
    assert status["size_bytes"] == on_disk and status["writer_pid"] is None
    assert status["previous_generations"] == ["gen-000003"]  # kept for readers; older ones cleaned up
    human = ragkit("status", "--index", "idx", "--verify", cwd=tmp_path)
    assert "generation:  4" in human.stdout and "documents:   1" in human.stdout
    assert "Verify: ok" in human.stdout and "FAIL" not in human.stdout
    assert "embeddings: " in human.stdout  # sampled chunks were re-embedded
    missing = ragkit("status", "--index", "nowhere", cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "no ragkit index" in missing.stderr


# --- prune safety --------------------------------------------------------------------------------


def test_prune_never_removes_what_still_exists(tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    corpus = Path("corpus")
    corpus.mkdir()
    (corpus / "keep.txt").write_text("The keep file mentions the aurora borealis.\n")
    (corpus / "gone.txt").write_text("The gone file mentions the zodiacal light.\n")
    lines = [{"id": "r1", "text": "Row one is about quasars."}, {"id": "r2", "text": "Row two is about pulsars."},
             {"id": "r3", "text": "Row three is about magnetars."}]  # fmt: skip
    (corpus / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    rag = make_rag(tmp_path / "idx", embedder)
    rag.ingest([corpus])
    before, _ = store_rows(tmp_path / "idx")

    (corpus / "keep.txt").write_bytes(b"\x00\x01 now binary garbage \x00")  # exists, fails to load
    (corpus / "gone.txt").unlink()  # really gone
    (corpus / "rows.jsonl").write_text(json.dumps(lines[0]) + "\n" + '{"id": "r2", "text": "broken\n')  # r2 bad, r3 removed
    report = rag.ingest([corpus], prune=True)
    assert {f.path for f in report.failures} == {"corpus/keep.txt", "corpus/rows.jsonl:2"}
    assert report.removed == ["corpus/gone.txt"]
    after, _ = store_rows(tmp_path / "idx")
    assert set(after) == set(before) - {"corpus/gone.txt"}
    assert after["corpus/keep.txt"] == before["corpus/keep.txt"]  # the last good version is kept
    assert after["corpus/rows.jsonl#r3"] == before["corpus/rows.jsonl#r3"]  # a file with a bad row keeps its rows

    # A root that does not exist (e.g. another working directory) prunes nothing.
    report = rag.ingest([Path("elsewhere/corpus")], prune=True)
    assert report.removed == [] and [f.reason for f in report.failures] == ["no such file or directory"]
    assert set(store_rows(tmp_path / "idx")[0]) == set(after)
    assert verify_index(tmp_path / "idx").ok


def test_prune_candidates_only_for_files_surely_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "here.md").write_text("x")
    sources = {
        "data/here.md": "data/here.md",  # exists
        "data/gone.md": "data/gone.md",  # gone
        "data/sub/gone.md": "data/sub/gone.md",  # gone, but its directory failed to list
        "data/rows.jsonl#1": "data/rows.jsonl",  # gone: every row goes
        "data/rows.jsonl#2": "data/rows.jsonl",
        "data2/gone.md": "data2/gone.md",  # not under the root "data"
        "/abs/data/gone.md": "/abs/data/gone.md",  # absolute: not under a relative root
    }
    failures = ["data/sub"]
    assert prune_candidates(sources, ["data"], failures) == ["data/gone.md", "data/rows.jsonl#1", "data/rows.jsonl#2"]
    assert prune_candidates(sources, ["missing-root"], failures) == []
    # "cannot tell" (permission denied, I/O error) is never "gone"
    real_lstat = os.lstat

    def denied(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).endswith("gone.md"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", denied)
    assert prune_candidates(sources, ["data"], failures) == ["data/rows.jsonl#1", "data/rows.jsonl#2"]


def test_delete_targets_match_ids_sources_and_directories() -> None:
    sources = {"d/a.md": "d/a.md", "d/r.jsonl#1": "d/r.jsonl", "d/r.jsonl#2": "d/r.jsonl", "d2/b.md": "d2/b.md"}
    assert match_documents(sources, ["d/r.jsonl#2"]) == (["d/r.jsonl#2"], [])
    assert match_documents(sources, ["d/r.jsonl"]) == (["d/r.jsonl#1", "d/r.jsonl#2"], [])
    assert match_documents(sources, ["d/", "nope"]) == (["d/a.md", "d/r.jsonl#1", "d/r.jsonl#2"], ["nope"])
    assert match_documents(sources, ["./d2/b.md"]) == (["d2/b.md"], [])


def test_delete_never_loads_the_model(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.md").write_text("# A\n\nAlpha.\n")
    (tmp_path / "b.md").write_text("# B\n\nBeta.\n")
    make_rag(tmp_path / "idx", embedder).ingest([tmp_path / "a.md", tmp_path / "b.md"])
    rag = RAG.open(tmp_path / "idx")
    report = rag.delete([str(tmp_path / "a.md"), "nothing"])
    assert report.deleted == [str(tmp_path / "a.md")] and report.unmatched == ["nothing"] and report.published
    assert "embedder" not in rag.__dict__  # the model was never even built
    assert rag.status().documents == 1 and verify_index(tmp_path / "idx").ok


def test_vanished_jsonl_rows_are_removed_only_from_clean_files(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps({"text": f"Row number {i} is here."}) + "\n" for i in range(4)))
    rag = make_rag(tmp_path / "idx", embedder)
    rag.ingest([tmp_path])
    discovered = discover([tmp_path], CONFIG.loader)
    assert [s.path for s in discovered.skipped] == [str(tmp_path / "idx")]  # its own index is not content
    documents = [d for p in discovered.files for d in load_file(p, CONFIG.loader).documents]
    source = str(tmp_path / "r.jsonl")
    assert ids_to_remove(tmp_path / "idx", documents[:2]) == [f"{source}#3", f"{source}#4"]
    failure = LoadFailure(path=f"{source}:3", reason="invalid JSON")
    assert ids_to_remove(tmp_path / "idx", documents[:2], [failure]) == []


# --- the writer lock -------------------------------------------------------------------------------


HOLD_LOCK = """
import sys, time
from pathlib import Path
from ragkit.indexes.layout import writer_lock
with writer_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_second_writer_gets_the_pid_and_a_killed_writer_does_not_block(
    tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.md").write_text("# A\n\nThe first document is about Ceres.\n")
    Path("b.md").write_text("# B\n\nThe second document is about Vesta.\n")
    make_rag(Path("idx"), embedder).ingest([Path("a.md"), Path("b.md")])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "idx")], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        for command in (("ingest", "a.md"), ("delete", "a.md")):
            refused = ragkit(*command, "--index", "idx", cwd=tmp_path, check=False)
            assert refused.returncode == 2, refused
            assert f"index idx is locked by PID {holder.pid}" in refused.stderr
        status = json.loads(ragkit("status", "--index", "idx", "--json", cwd=tmp_path).stdout)
        assert status["writer_pid"] == holder.pid == lock_holder(tmp_path / "idx")
        assert f"PID {holder.pid} is ingesting" in ragkit("status", "--index", "idx", cwd=tmp_path).stdout
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # The dead writer's PID is still in LOCK, but the kernel dropped its flock: nothing blocks.
    assert (tmp_path / "idx" / LOCK_FILE).read_text().strip() == str(holder.pid)
    assert lock_holder(tmp_path / "idx") is None
    assert json.loads(ragkit("status", "--index", "idx", "--json", cwd=tmp_path).stdout)["writer_pid"] is None
    deleted = ragkit("delete", "a.md", "--index", "idx", "--json", cwd=tmp_path)
    assert json.loads(deleted.stdout)["deleted"] == ["a.md"]
    assert (tmp_path / "idx" / LOCK_FILE).read_text().strip() != str(holder.pid)


# --- verify catches damage -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def healthy_index(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("healthy")
    corpus = base / "corpus"
    corpus.mkdir()
    topics = ["volcanoes of Io", "rings of Saturn", "storms of Jupiter", "ice of Europa", "dunes of Titan"]
    for i, topic in enumerate(topics):
        (corpus / f"{i}.md").write_text(f"# Note {i}\n\nThis note is about the {topic}. " * 3 + "\n")
    make_rag(base / "idx", embedder).ingest([corpus])
    assert verify_index(base / "idx", embedder).ok
    return base / "idx"


def _damaged(healthy: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the healthy index and the directory of its (one) segment."""
    index = tmp_path / "idx"
    shutil.copytree(healthy, index)
    manifest = read_current(index)
    assert manifest is not None and len(manifest.segments) == 1
    return index, index / SEGMENTS_DIR / manifest.segments[0].name


def _swap_rows(array: np.ndarray, i: int, j: int) -> np.ndarray:
    out = np.array(array)
    out[[i, j]] = out[[j, i]]
    return out


@pytest.mark.parametrize(
    "damage",
    ["embeddings-file", "dense-and-embeddings-swapped", "chunk-offset", "duplicate-chunk",
     "bm25-rows-swapped", "manifest-count", "faiss-missing"],
)  # fmt: skip
def test_verify_detects_damage(damage: str, healthy_index: Path, tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    index, gen = _damaged(healthy_index, tmp_path)
    vectors = np.load(gen / "embeddings.npy")
    last = len(vectors) - 1
    expected_check = {
        "embeddings-file": "dense", "dense-and-embeddings-swapped": "embeddings", "chunk-offset": "store",
        "duplicate-chunk": "store", "bm25-rows-swapped": "sparse", "manifest-count": "store",
        "faiss-missing": "dense",
    }[damage]  # fmt: skip
    if damage == "embeddings-file":
        np.save(gen / "embeddings.npy", _swap_rows(vectors, 0, last))
    elif damage == "dense-and-embeddings-swapped":  # internally consistent files, rows out of step with the store
        swapped = _swap_rows(vectors, 0, last)
        np.save(gen / "embeddings.npy", swapped)
        FaissDenseIndex.build(swapped).save(gen)
    elif damage in ("chunk-offset", "duplicate-chunk"):
        db = sqlite3.connect(gen / STORE_FILE)
        if damage == "chunk-offset":
            db.execute("UPDATE chunks SET start = start + 1 WHERE row = 0")
        else:
            db.execute('INSERT INTO chunks SELECT row + 1000, id || "x", doc_id, start, "end", text_hash, metadata '
                       "FROM chunks WHERE row = 0")  # fmt: skip
        db.commit()
        db.close()
    elif damage == "bm25-rows-swapped":  # well-formed postings, rows 0 and `last` exchanged
        postings = BM25Postings.load(gen / "bm25", mmap=False)
        rows = np.asarray(postings.rows).copy()
        first, final = rows == 0, rows == last
        rows[first], rows[final] = last, 0
        lengths = _swap_rows(np.asarray(postings.lengths), 0, last)
        np.save(gen / "bm25" / "rows.npy", rows)
        np.save(gen / "bm25" / "lengths.npy", lengths)
    elif damage == "manifest-count":
        generation = index / read_current(index).directory  # type: ignore[union-attr]
        for path in (index / "CURRENT", generation / "manifest.json"):
            manifest = json.loads(path.read_text())
            manifest["chunks"] += 1
            path.write_text(json.dumps(manifest))
    elif damage == "faiss-missing":
        (gen / "dense.faiss").unlink()
    report = verify_index(index, embedder)
    assert not report.ok
    failed = [c.name for c in report.checks if not c.ok]
    assert expected_check in failed, report.checks
    if damage == "manifest-count":
        assert any("chunk counts differ" in p for p in report.problems)


@pytest.mark.slow
def test_status_verify_exit_code_on_a_damaged_index(healthy_index: Path, tmp_path: Path) -> None:
    index, gen = _damaged(healthy_index, tmp_path)
    db = sqlite3.connect(gen / STORE_FILE)
    db.execute("DELETE FROM chunks WHERE row = 0")
    db.commit()
    db.close()
    result = ragkit("status", "--index", str(index), "--verify", cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "Verify: FAILED" in result.stdout and "FAIL store: seg-000001: chunk rows are not exactly" in result.stdout
    payload = json.loads(ragkit("status", "--index", str(index), "--verify", "--json", cwd=tmp_path, check=False).stdout)
    assert payload["verify"]["ok"] is False


# --- readers while a writer commits ------------------------------------------------------------------


def test_readers_answer_from_one_consistent_generation_during_commits(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"stable{i}.md").write_text(f"# Stable {i}\n\nThe beacon archive entry {i} describes harbour lights.\n")

    def write_version(v: int) -> None:
        (corpus / "beacon.md").write_text(f"# Beacon\n\nIn version {v} the beacon colour is shade{v}.\n")
        (corpus / f"extra{v}.md").write_text(f"# Extra {v}\n\nThe beacon log {v} records fog.\n")
        if v >= 2:
            (corpus / f"extra{v - 2}.md").unlink()

    write_version(0)
    writer = make_rag(tmp_path / "idx", embedder)
    writer.ingest([corpus], prune=True)
    generations: dict[int, set[str]] = {}

    def record(written: int | None = None) -> None:
        """The live chunk ids after a commit (under the commit's generation, and under the current
        one if a background merge has published since: a merge changes no content)."""
        docs, chunks = store_rows(tmp_path / "idx")
        ids = {c[1] for c in chunks}
        generations[read_current(tmp_path / "idx").generation] = ids
        if written is not None:
            generations[written] = ids

    def content_of(generation: int) -> set[str]:
        # a generation published by a merge holds what the last commit before it held
        return generations[max(g for g in generations if g <= generation)]

    record()
    reader = make_rag(tmp_path / "idx", embedder)
    analyzer = make_analyzer(CONFIG.sparse.tokenizer)
    observations: list[tuple[int, set[str]]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read_loop() -> None:
        question = "What is the beacon colour?"
        terms = set(analyzer(question))
        while not done.is_set():
            try:
                retriever = reader.retriever()  # one snapshot per query
                (result,) = retriever.search([question], Trace())
                hits = result.hits
                generation = retriever.snapshot.manifest.generation
                for hit in hits:
                    # A BM25 hit must contain a query term: rows of the sparse index line up with the store.
                    if "sparse" in hit.retrievers:
                        assert terms & set(analyzer(hit.chunk.text)), hit.chunk.text
                observations.append((generation, {h.chunk.id for h in hits}))
                answer = reader.query(question)
                assert answer.hits and answer.text
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=read_loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for v in range(1, 6):
            write_version(v)
            report = writer.ingest([corpus], prune=True)
            assert report.index.published
            writer.wait_for_merges()  # the next commit's content must not be recorded under a merge's number
            record(report.index.generation)
            time.sleep(0.05)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=120)
    assert not errors, errors
    assert len(observations) >= 5
    for generation, chunk_ids in observations:
        # every hit of one query comes from the generation its snapshot opened
        assert chunk_ids <= content_of(generation), generation
    seen = {g for g, _ in observations}
    assert len(seen) >= 2, seen  # the readers did run across commits
    assert all(r.is_alive() is False for r in threads)
    final = reader.retrieve("What is the beacon colour?")
    assert any("shade5" in h.chunk.text for h in final)  # and they move on to the newest generation
    writer.close()
    reader.close()
    assert index_status(tmp_path / "idx").generation == max(generations)
