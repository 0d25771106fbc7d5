"""Distributed ingest on a real local Ray cluster (Ray Data; bound to 127.0.0.1, offline):
the index a Ray ingest writes has the same content as a local ingest of the same files
(documents, chunks, metadata, vectors, BM25 and the sentence index), nothing is embedded twice,
and unchanged documents cost nothing on the next Ray ingest.

Outside CI a machine without the `ray` extra skips these tests; under CI=true they fail."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragkit import RAG
from ragkit.config import parse_pipeline
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.indexes.verify import verify_index

ROOT = Path(__file__).resolve().parents[1]
BOOLQ = ROOT.parent / "shared" / "datasets" / "boolq-dev" / "corpus.jsonl"
# A slice keeps CI short; RAGKIT_RAY_TEST_ROWS=all compares the whole of boolq-dev (2,938 passages).
ROWS = None if os.environ.get("RAGKIT_RAY_TEST_ROWS") == "all" else int(os.environ.get("RAGKIT_RAY_TEST_ROWS", "120"))

if importlib.util.find_spec("ray") is None:  # not imported here: the executor configures it first
    if os.environ.get("CI", "").lower() == "true":
        raise ImportError("ray is not installed (CI=true: `make test` installs ragkit[ray])")
    pytest.skip("ray is not installed: pip install 'ragkit[ray]'", allow_module_level=True)

from ragkit.executors.ray_data import RayExecutor  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not BOOLQ.is_file(), reason=f"{BOOLQ} not present (shared datasets)")]


def make_corpus(directory: Path) -> Path:
    """A boolq-dev slice, rows repeating some of its passages under other ids (same chunk
    texts: embedded once), and a Markdown page of data/."""
    directory.mkdir()
    with BOOLQ.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in itertools.islice(lines, ROWS)]
    with open(directory / "boolq.jsonl", "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps({"id": row["_id"], "title": row["title"], "text": row["text"]}) + "\n")
    with open(directory / "repeats.jsonl", "w", encoding="utf-8") as out:
        for row in rows[:6]:
            out.write(json.dumps({"id": "again-" + row["_id"], "title": row["title"], "text": row["text"]}) + "\n")
    page = next((ROOT / "data" / "planets").glob("*.md"))
    shutil.copy(page, directory / page.name)
    return directory


def content(index: Path) -> dict[str, Any]:
    """Everything an index holds for readers, independent of segment numbering."""
    snapshot = IndexSnapshot.open(index)
    try:
        store = snapshot.store
        live = np.flatnonzero(snapshot.view.live())
        chunks = store.chunks_by_rows(live.tolist())
        records = {cid: meta for _, cid, meta in store.chunk_records()}
        vectors = snapshot.view.vectors_at(live)
        by_id = {c.id: (c.doc_id, c.start, c.end, c.text, records[c.id], vectors[i]) for i, c in enumerate(chunks)}
        documents = {d.id: (d.source, d.text, json.dumps(d.metadata, sort_keys=True)) for d in store.documents()}
        sentences: dict[str, tuple[bytes, bytes | None]] = {}
        for segment in snapshot.view.segments:
            with sqlite3.connect(segment.directory / "sentences.sqlite") as db:
                for text_hash, spans, vectors_blob in db.execute("SELECT text_hash, spans, vectors FROM chunk_sentences"):
                    sentences[text_hash] = (spans, vectors_blob)
        query = snapshot.view.vectors_at(live[:1])
        [(rows, _)] = snapshot.sparse.search_batch([["lake", "river", "season"]], 10)
        bm25 = [c.id for c in store.chunks_by_rows(rows.tolist())]
        [(dense_rows, _)] = snapshot.dense.search(query, 10)
        dense = [c.id for c in store.chunks_by_rows(dense_rows.tolist())]
        return {"chunks": by_id, "documents": documents, "sentences": sentences, "bm25": bm25, "dense": dense}
    finally:
        snapshot.close()


def assert_same_content(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["documents"] == b["documents"]
    assert a["chunks"].keys() == b["chunks"].keys()
    for chunk_id, (*fields_a, vector_a) in a["chunks"].items():
        *fields_b, vector_b = b["chunks"][chunk_id]
        assert fields_a == fields_b, chunk_id
        # Other batch shapes (padding) may move the last float bits, never more.
        assert np.allclose(vector_a, vector_b, atol=2e-6), chunk_id
    assert a["sentences"].keys() == b["sentences"].keys()
    spans_differ = [h for h in a["sentences"] if a["sentences"][h][0] != b["sentences"][h][0]]
    assert not spans_differ
    vectors_differ = sum(a["sentences"][h][1] != b["sentences"][h][1] for h in a["sentences"])
    assert vectors_differ <= len(a["sentences"]) // 20  # int8 sentence vectors: a rounding flip at most
    assert a["bm25"] == b["bm25"] and a["dense"] == b["dense"]


@pytest.fixture(scope="module")
def executor() -> Any:
    runner = RayExecutor(num_cpus=2)
    with runner.cluster():  # one local cluster for the module (ingests reuse a running one)
        yield runner


def test_local_cluster_listens_on_loopback_only(executor: RayExecutor) -> None:
    import psutil  # a dependency of ray

    driver = psutil.Process()
    session = {driver.pid, *(p.pid for p in driver.children(recursive=True))}
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in session]
    assert len(listening) >= 3  # GCS, raylet, workers...
    exposed = [(c.laddr, psutil.Process(c.pid).name()) for c in listening if c.laddr.ip not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert not exposed


def test_ray_ingest_writes_the_same_index_as_a_local_ingest(tmp_path: Path, executor: RayExecutor) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    config = parse_pipeline({})
    local = RAG(config, tmp_path / "local")
    local_report = local.ingest([corpus])
    local.close()

    distributed = RAG(config, tmp_path / "ray")
    seen: list[Any] = []
    original = executor.prepare

    def recording(*args: Any, **kwargs: Any) -> Any:
        prepared = original(*args, **kwargs)
        seen.append(prepared)
        return prepared

    executor.prepare = recording  # type: ignore[method-assign]
    try:
        ray_report = distributed.ingest([corpus], executor=executor)
    finally:
        del executor.prepare
    distributed.close()
    assert ray_report.ok and local_report.ok
    assert ray_report.index.documents_total == local_report.index.documents_total
    assert ray_report.index.chunks_total == local_report.index.chunks_total
    # Each distinct chunk text embedded once, all on the cluster: none locally.
    assert executor.stats["texts_embedded"] == local_report.index.texts_embedded < local_report.index.chunks_added
    assert seen[0].embedder.fallback_texts == 0
    assert_same_content(content(tmp_path / "local"), content(tmp_path / "ray"))
    assert verify_index(tmp_path / "ray", None, sample=0).ok

    # The next Ray ingest embeds only the changed document's new text.
    rows = (corpus / "boolq.jsonl").read_text(encoding="utf-8").splitlines()
    edited = json.loads(rows[3])
    edited["text"] += " An added closing sentence about lighthouses."
    rows[3] = json.dumps(edited)
    (corpus / "boolq.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    again = RAG(config, tmp_path / "ray").ingest([corpus], executor=executor)
    assert again.index.documents_updated == 1 and again.index.documents_unchanged == local_report.index.documents_total - 1
    assert executor.stats["documents_chunked"] == 1 and executor.stats["texts_embedded"] >= 1
    assert executor.stats["texts_embedded"] <= 2


def test_cli_executor_ray_binds_to_loopback(tmp_path: Path) -> None:
    """`ragkit ingest --executor ray` starts its own local cluster (127.0.0.1, no dashboard)."""
    import subprocess
    import sys

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(next((ROOT / "data" / "moons").glob("*.md")), corpus)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ragkit"), "ingest", str(corpus), "--index", str(tmp_path / "index"), "--executor", "ray", "--json"],
        capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["documents_added"] == 1 and report["chunks_total"] > 0
