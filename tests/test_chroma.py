"""The chroma dense backend, against real chroma: embedded (PersistentClient) and a real
`chroma run` server (HttpClient), with the bundled MiniLM embedder, the real writer and snapshot.

Only the token check uses something besides chroma: `chroma run` (chroma 1.x's Rust server) has
no token authentication, so a small local proxy in front of the real server checks the token
the way an authenticating reverse proxy does (see `TokenProxy`).
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from paragraph_chunks import paragraphs

import ragkit.indexes.writer as writer_module
from ragkit.config import FaissConfig, PipelineConfig, parse_pipeline
from ragkit.indexes.chroma import JOURNAL_FILE, ChromaBackendError, default_collection_name
from ragkit.indexes.chroma.client import all_ids as _all_ids
from ragkit.indexes.chroma.client import open_collection
from ragkit.indexes.chroma.reader import ChromaSearcher
from ragkit.indexes.embedder import SentenceTransformerEmbedder
from ragkit.indexes.faiss_dense import FaissDenseIndex
from ragkit.indexes.filters import MetadataFilter
from ragkit.indexes.layout import read_current, writer_lock
from ragkit.indexes.maintenance import verify_index
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.indexes.store import text_hash
from ragkit.indexes.writer import write_generation
from ragkit.protocols import Embedder
from ragkit.schema import Chunk, Document

BOOLQ = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "boolq-dev"


class CountingEmbedder(SentenceTransformerEmbedder):
    def __init__(self) -> None:
        super().__init__(PipelineConfig().dense.embedder)
        self.encoded: list[str] = []

    def embed_with_tokens(self, texts, on_tokens, on_batch=None):  # type: ignore[no-untyped-def, override]
        self.encoded.extend(texts)  # what the index writer calls (ragkit/indexes/sentences.py)
        return super().embed_with_tokens(texts, on_tokens, on_batch)

    def embed(self, texts, on_batch=None):  # type: ignore[no-untyped-def, override]
        self.encoded.extend(texts)
        return super().embed(texts, on_batch)


@pytest.fixture(scope="module")
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


@pytest.fixture(autouse=True)
def chroma_never_embeds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """chroma's default embedding function downloads an ONNX model: calling it is a bug."""
    from chromadb.utils.embedding_functions import DefaultEmbeddingFunction

    def refuse(self, input):  # type: ignore[no-untyped-def]
        raise AssertionError("chroma's default embedding function was called")

    monkeypatch.setattr(DefaultEmbeddingFunction, "__call__", refuse)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # where a model download would land
    monkeypatch.delenv("CHROMA_AUTH_TOKEN", raising=False)
    yield
    assert not (tmp_path / "home" / ".cache" / "chroma").exists(), "chroma downloaded a model"


def config_with(backend: dict) -> PipelineConfig:
    # exact_threshold 0: these tests exercise chroma's own (HNSW) search, which small indexes
    # would otherwise skip (tests/test_vector_stores.py covers the exact path)
    backend = {"exact_threshold": 0, **backend} if backend.get("name") == "chroma" else backend
    return parse_pipeline({"dense": {"backend": backend}, "retrieval": {"rerank": {"name": "none"}}})


def writer(index_dir: Path, embedder: CountingEmbedder):
    def run(documents, config: PipelineConfig, delete_ids=()):  # type: ignore[no-untyped-def]
        embedder.encoded.clear()
        with writer_lock(index_dir):
            return write_generation(
                index_dir, config, documents, paragraphs, embedder, delete_ids=delete_ids
            )

    return run


def collection_ids(index_dir: Path) -> set[str]:
    """The ids chroma holds for the index's published pipeline."""
    snapshot = IndexSnapshot.open(index_dir)
    try:
        return _all_ids(open_collection(snapshot.pipeline.dense.backend, index_dir, create=False))
    finally:
        snapshot.close()


def store_ids(index_dir: Path) -> set[str]:
    snapshot = IndexSnapshot.open(index_dir)
    try:
        return snapshot.store.chunk_ids()
    finally:
        snapshot.close()


def search_ids(index_dir: Path, embedder: CountingEmbedder, question: str, k: int = 3, where=None) -> list[str]:
    snapshot = IndexSnapshot.open(index_dir)
    try:
        flt = None if where is None else MetadataFilter.parse(where)
        [(rows, _)] = snapshot.dense.search(embedder.embed_query(question).reshape(1, -1), k, flt)
        return [c.id for c in snapshot.store.chunks_by_rows(rows.tolist())]
    finally:
        snapshot.close()


class _Whole:
    """One chunk per passage."""

    def chunk(self, document: Document) -> list[Chunk]:
        return [Chunk.from_span(document, 0, len(document.text))]


SOLAR = [
    Document(id="saturn.md", source="saturn.md", text="Saturn has rings of ice.\n\nTitan is its largest moon.",
             metadata={"topic": "saturn"}),
    Document(id="mars.md", source="mars.md", text="Mars has Olympus Mons.\n\nPhobos and Deimos orbit Mars.",
             metadata={"topic": "mars"}),
    Document(id="venus.md", source="venus.md", text="Venus is hot under thick clouds.", metadata={"topic": "venus"}),
]


def chunk_of(index_dir: Path, chunk_id: str) -> str:
    snapshot = IndexSnapshot.open(index_dir)
    try:
        (text,) = [c.text for c in snapshot.store.chunks_by_rows(range(len(snapshot.dense))) if c.id == chunk_id]
        return text
    finally:
        snapshot.close()


def check_ingest_query_delete(index_dir: Path, config: PipelineConfig, embedder: CountingEmbedder) -> None:
    """The flow both modes must pass: ingest, query, incremental change + delete, no-op re-ingest."""
    write = writer(index_dir, embedder)
    first = write(SOLAR, config)
    assert first.published and first.chunks_total == 5 and first.vectors_upserted == 5
    assert collection_ids(index_dir) == store_ids(index_dir)
    snapshot = IndexSnapshot.open(index_dir)
    assert isinstance(snapshot.dense, ChromaSearcher) and snapshot.dense.describe()["type"] == "chroma"
    assert not (snapshot.path / "dense.faiss").exists()  # chroma holds the vectors; no faiss built
    snapshot.close()
    top = search_ids(index_dir, embedder, "Which moon is the largest moon of Saturn?", k=1)
    assert chunk_of(index_dir, top[0]) == "Titan is its largest moon."
    # chroma's where-filter on the chunk metadata (filterable_metadata) and the row mask
    mars = search_ids(index_dir, embedder, "largest moon", k=5, where={"topic": "mars"})
    assert {chunk_of(index_dir, i) for i in mars} == {"Phobos and Deimos orbit Mars.", "Mars has Olympus Mons."}

    # Incremental: saturn.md changed (one paragraph new, one kept), venus.md deleted.
    changed = SOLAR[0].model_copy(update={"text": "Saturn has rings of ice.\n\nEnceladus sprays water."})
    second = write([changed, SOLAR[1]], config, delete_ids=["venus.md"])
    assert second.published and second.documents_updated == 1 and second.documents_deleted == 1
    assert embedder.encoded == ["Enceladus sprays water."]  # only the new text is embedded
    assert second.vectors_upserted == 1 and second.vectors_deleted == 2  # Titan's chunk and venus'
    assert collection_ids(index_dir) == store_ids(index_dir) and len(store_ids(index_dir)) == 4
    assert chunk_of(index_dir, search_ids(index_dir, embedder, "water geysers on a moon", k=1)[0]) == (
        "Enceladus sprays water."
    )
    # Metadata alone changed: same chunk ids, chroma's metadata (what `where` sees) follows.
    retagged = SOLAR[1].model_copy(update={"metadata": {"topic": "red planet"}})
    third = write([changed, retagged], config)
    assert third.published and third.vectors_upserted == 2 and embedder.encoded == []
    assert len(search_ids(index_dir, embedder, "volcano", k=5, where={"topic": "red planet"})) == 2
    assert search_ids(index_dir, embedder, "volcano", k=5, where={"topic": "mars"}) == []

    # Unchanged re-ingest writes nothing: no generation, no chroma writes, nothing embedded.
    generation = read_current(index_dir).generation
    again = write([changed, retagged], config)
    assert not again.published and read_current(index_dir).generation == generation
    assert (again.vectors_upserted, again.vectors_deleted, embedder.encoded) == (0, 0, [])

    report = verify_index(index_dir, embedder)
    assert report.ok, report.problems
    assert "holds exactly the 4 chunk ids" in {c.name: c.detail for c in report.checks}["dense"]


# --- embedded ----------------------------------------------------------------------------------


def test_embedded_ingest_query_incremental_delete(tmp_path: Path, embedder: CountingEmbedder) -> None:
    index_dir = tmp_path / "index"
    check_ingest_query_delete(index_dir, config_with({"name": "chroma"}), embedder)
    assert (index_dir / "chroma").is_dir()  # default: beside the generations, not inside one
    saved = IndexSnapshot.open(index_dir)
    assert saved.pipeline.dense.backend.collection == default_collection_name(index_dir)
    saved.close()


def test_switching_faiss_to_chroma_and_back_never_reembeds(tmp_path: Path, embedder: CountingEmbedder) -> None:
    index_dir = tmp_path / "index"
    write = writer(index_dir, embedder)
    write(SOLAR, config_with({"name": "faiss"}))
    faiss_top = search_ids(index_dir, embedder, "hot clouds", k=3)
    stats = write(SOLAR, config_with({"name": "chroma"}))
    assert stats.published and embedder.encoded == [] and stats.vectors_upserted == 5
    assert collection_ids(index_dir) == store_ids(index_dir)
    assert search_ids(index_dir, embedder, "hot clouds", k=3) == faiss_top
    stats = write(SOLAR, config_with({"name": "faiss"}))
    assert stats.published and embedder.encoded == []
    assert search_ids(index_dir, embedder, "hot clouds", k=3) == faiss_top


def test_crash_between_upsert_and_publish_is_invisible_then_reconciled(
    tmp_path: Path, embedder: CountingEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_dir = tmp_path / "index"
    config = config_with({"name": "chroma"})
    write = writer(index_dir, embedder)
    write(SOLAR[:2], config)
    published = store_ids(index_dir)

    def crash(*args, **kwargs):  # the process "dies" right after chroma received the upserts
        raise KeyboardInterrupt("simulated crash before publish")

    monkeypatch.setattr(writer_module, "publish", crash)
    pluto = Document(id="pluto.md", source="pluto.md", text="Pluto has a heart-shaped glacier of nitrogen ice.")
    with pytest.raises(KeyboardInterrupt):
        write([*SOLAR[:2], pluto], config)
    monkeypatch.undo()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    # chroma holds the unpublished chunk, but no query can return it; the journal marks the work.
    snapshot = IndexSnapshot.open(index_dir)
    leftover = _all_ids(open_collection(snapshot.pipeline.dense.backend, index_dir, create=False))
    assert leftover > published and len(leftover - published) == 1
    assert (index_dir / JOURNAL_FILE).exists()
    vectors = snapshot.view.vectors_at(np.arange(snapshot.view.rows))  # one segment, nothing deleted
    for question in ["heart-shaped glacier", "nitrogen ice on Pluto", "rings"]:
        for k in (1, 2, 4):
            [(rows, _)] = snapshot.dense.search(embedder.embed_query(question).reshape(1, -1), k)
            assert set(c.id for c in snapshot.store.chunks_by_rows(rows.tolist())) <= published
            assert len(rows) == min(k, len(published))
            exact_rows, _ = FaissDenseIndex.build(vectors, FaissConfig(index="flat")).search(
                embedder.embed_query(question), k
            )
            assert rows.tolist() == exact_rows.tolist()
    snapshot.close()

    # The next ingest (here: nothing changed) reconciles the collection with the published store.
    stats = write(SOLAR[:2], config)
    assert not stats.published and stats.vectors_deleted == 1
    assert collection_ids(index_dir) == published and not (index_dir / JOURNAL_FILE).exists()
    assert verify_index(index_dir).ok


def test_missing_collection_says_reingest(tmp_path: Path, embedder: CountingEmbedder) -> None:
    index_dir = tmp_path / "index"
    config = config_with({"name": "chroma"})
    writer(index_dir, embedder)(SOLAR, config)
    import chromadb

    from ragkit.indexes.chroma.client import _settings

    chromadb.PersistentClient(path=str(index_dir / "chroma"), settings=_settings()).delete_collection(
        default_collection_name(index_dir)
    )
    with pytest.raises(ChromaBackendError, match="missing .* re-ingest"):
        IndexSnapshot.open(index_dir)
    stats = writer(index_dir, embedder)(SOLAR, config)  # re-ingest restores it without embedding
    assert embedder.encoded == [] and stats.vectors_upserted == 5 and not stats.published
    assert collection_ids(index_dir) == store_ids(index_dir)


def test_auth_token_is_never_saved(tmp_path: Path) -> None:
    config = config_with({"name": "chroma", "host": "127.0.0.1", "auth_token": "s3cret-token"})
    assert config.dense.backend.resolved_mode == "server"
    assert "s3cret-token" not in config.to_yaml()
    assert parse_pipeline(__import__("yaml").safe_load(config.to_yaml())).dense.backend.auth_token is None


# --- parity with exact faiss on boolq-dev ---------------------------------------------------------

PARITY_PASSAGES = 2000
PARITY_QUERIES = 100
PARITY_K = 10


def _ties_equal(a_ids: list[int], a_scores: np.ndarray, b_ids: list[int], b_scores: np.ndarray) -> bool:
    """Same ids in the same order, except that ids with equal scores (within float32 rounding of
    two different summation orders) may swap; a tie at the k-th place may pick either id."""
    if len(a_ids) != len(b_ids):
        return False
    if a_ids == b_ids:
        return True
    eps = 1e-5
    for i, (x, y) in enumerate(zip(a_ids, b_ids)):
        if x == y:
            continue
        if abs(float(a_scores[i]) - float(b_scores[i])) > eps:
            return False
        group_a = {a for a, s in zip(a_ids, a_scores) if abs(float(s) - float(a_scores[i])) <= eps}
        group_b = {b for b, s in zip(b_ids, b_scores) if abs(float(s) - float(b_scores[i])) <= eps}
        if x not in group_b and y not in group_a and not (i == len(a_ids) - 1):
            return False
    return True


class CachedEmbedder(Embedder):
    """The real bundled MiniLM, with its vectors kept in pytest's cache directory (keyed by text
    hash): embedding 2,000 passages costs about a minute on two cores, so it is done once."""

    def __init__(self, real: SentenceTransformerEmbedder, cache_dir: Path) -> None:
        self.real = real
        self.path = cache_dir / "vectors.npz"
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path) as saved:
                self.vectors = dict(zip(saved["keys"].tolist(), saved["vectors"]))

    @property
    def model_id(self) -> str:
        return self.real.model_id

    @property
    def dim(self) -> int:
        return self.real.dim

    @property
    def loaded(self) -> bool:
        return True

    def load(self) -> None:
        pass

    def embed(self, texts, on_batch=None):  # type: ignore[no-untyped-def]
        keys = [text_hash(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self.vectors}.items())
        if missing:
            fresh = self.real.embed([t for _, t in missing])
            self.vectors.update(zip([k for k, _ in missing], np.asarray(fresh, dtype=np.float32)))
            np.savez(self.path, keys=np.array(list(self.vectors)), vectors=np.stack(list(self.vectors.values())))
        return np.stack([self.vectors[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)


@pytest.mark.slow
@pytest.mark.skipif(not BOOLQ.is_dir(), reason=f"{BOOLQ} not present (shared datasets)")
def test_parity_with_exact_faiss_on_boolq(
    tmp_path: Path, embedder: CountingEmbedder, request: pytest.FixtureRequest
) -> None:
    corpus = []
    with open(BOOLQ / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            corpus.append(Document(id=row["_id"], source="boolq", text=row["text"], metadata={"title": row["title"]}))
            if len(corpus) == PARITY_PASSAGES:
                break
    with open(BOOLQ / "queries.jsonl", encoding="utf-8") as handle:
        questions = [json.loads(line)["text"] for _, line in zip(range(PARITY_QUERIES), handle)]

    embedder = CachedEmbedder(embedder, request.config.cache.mkdir("chroma-parity-minilm"))  # type: ignore[assignment]
    index_dir = tmp_path / "index"
    with writer_lock(index_dir):
        stats = write_generation(
            index_dir, config_with({"name": "chroma"}), corpus, _Whole(), embedder
        )
    assert stats.chunks_total == PARITY_PASSAGES
    snapshot = IndexSnapshot.open(index_dir)
    vectors = snapshot.view.vectors_at(np.arange(snapshot.view.rows))
    exact = FaissDenseIndex.build(vectors, FaissConfig(index="flat"))
    queries = embedder.embed(questions)
    exact_rows, exact_scores = exact.search_batch(queries, PARITY_K)
    chroma_rows, chroma_scores = (list(x) for x in zip(*snapshot.dense.search(queries, PARITY_K)))
    identical = sum(a.tolist() == b.tolist() for a, b in zip(exact_rows, chroma_rows))
    matched = sum(
        _ties_equal(a.tolist(), sa, b.tolist(), sb)
        for a, sa, b, sb in zip(exact_rows, exact_scores, chroma_rows, chroma_scores)
    )
    # scores are inner products like faiss' (recomputed from embeddings.npy)
    assert np.allclose(np.concatenate(exact_scores), np.concatenate(chroma_scores), atol=1e-5)
    snapshot.close()
    print(f"\nchroma vs exact faiss on boolq-dev: {PARITY_PASSAGES} passages, {PARITY_QUERIES} queries, "
          f"top-{PARITY_K}: {identical} identical, {matched} equal up to ties")
    assert matched == PARITY_QUERIES, f"only {matched}/{PARITY_QUERIES} queries matched exact faiss"


# --- server -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _chroma_binary() -> str:
    found = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if found is None:
        pytest.fail("the `chroma` CLI (installed with chromadb) is not on PATH")
    return found


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real `chroma run --path TMP --host 127.0.0.1 --port P`, stopped after the module."""
    root = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [_chroma_binary(), "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(root / "home"), "NO_COLOR": "1"},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chroma run did not come up on port {port}:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_server_ingest_query_incremental_delete(
    tmp_path: Path, embedder: CountingEmbedder, chroma_server: tuple[str, int]
) -> None:
    host, port = chroma_server
    index_dir = tmp_path / "index"
    check_ingest_query_delete(index_dir, config_with({"name": "chroma", "host": host, "port": port}), embedder)
    assert not (index_dir / "chroma").exists()  # the server keeps the vectors


@pytest.mark.slow
def test_two_indexes_on_one_server_do_not_collide(
    tmp_path: Path, embedder: CountingEmbedder, chroma_server: tuple[str, int]
) -> None:
    host, port = chroma_server
    config = config_with({"name": "chroma", "host": host, "port": port})
    writer(tmp_path / "one", embedder)(SOLAR[:1], config)
    writer(tmp_path / "two", embedder)(SOLAR[1:], config)
    assert collection_ids(tmp_path / "one") == store_ids(tmp_path / "one")
    assert collection_ids(tmp_path / "two") == store_ids(tmp_path / "two")
    assert not collection_ids(tmp_path / "one") & collection_ids(tmp_path / "two")


def test_unreachable_server_names_host_port_and_chroma_run(tmp_path: Path, embedder: CountingEmbedder) -> None:
    port = _free_port()  # nothing listens there
    config = config_with({"name": "chroma", "host": "127.0.0.1", "port": port})
    with pytest.raises(ChromaBackendError, match=rf"127\.0\.0\.1:{port} is not reachable.*chroma run --path"):
        writer(tmp_path / "index", embedder)(SOLAR, config)
    assert embedder.encoded == []  # failed before embedding anything
    assert read_current(tmp_path / "index") is None


class TokenProxy:
    """Forwards HTTP to the real chroma server when the request carries `Authorization: Bearer
    TOKEN`, else answers 401, like an authenticating reverse proxy in front of `chroma run`."""

    def __init__(self, upstream: tuple[str, int], token: str) -> None:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # type: ignore[no-untyped-def]
                pass

            def _forward(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {token}":
                    self.send_response(401)
                    self.send_header("Content-Length", "12")
                    self.end_headers()
                    self.wfile.write(b"unauthorized")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream_conn = http.client.HTTPConnection(*upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream_conn.request(self.command, self.path, body=body or None, headers=headers)
                answer = upstream_conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream_conn.close()
                proxy.forwarded += 1

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.forwarded = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TokenProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_auth_token_is_sent_and_a_wrong_one_is_a_clear_error(
    tmp_path: Path, embedder: CountingEmbedder, chroma_server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    with TokenProxy(chroma_server, "right-token") as proxy:
        backend = {"name": "chroma", "host": "127.0.0.1", "port": proxy.port}
        with pytest.raises(ChromaBackendError, match="refused the token in the Authorization header.*CHROMA_AUTH_TOKEN"):
            writer(tmp_path / "index", embedder)(SOLAR, config_with({**backend, "auth_token": "wrong"}))
        with pytest.raises(ChromaBackendError, match="refused no token"):
            writer(tmp_path / "index", embedder)(SOLAR, config_with(backend))
        monkeypatch.setenv("CHROMA_AUTH_TOKEN", "right-token")  # the default source of the token
        stats = writer(tmp_path / "index", embedder)(SOLAR, config_with(backend))
        assert stats.published and proxy.forwarded > 0
        assert "right-token" not in (tmp_path / "index" / read_current(tmp_path / "index").directory
                                     / "pipeline.yaml").read_text()
        assert len(search_ids(tmp_path / "index", embedder, "Titan", k=2)) == 2
        monkeypatch.setenv("CHROMA_AUTH_TOKEN", "stale-token")
        with pytest.raises(ChromaBackendError, match="HTTP 401"):
            IndexSnapshot.open(tmp_path / "index")


def test_hnsw_settings_ef_search_changes_in_place_others_need_a_new_collection(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    index_dir = tmp_path / "index"
    write = writer(index_dir, embedder)
    write(SOLAR, config_with({"name": "chroma"}))
    stats = write(SOLAR, config_with({"name": "chroma", "hnsw": {"ef_search": 300}}))
    assert stats.published and embedder.encoded == [] and stats.vectors_upserted == 0  # same collection
    snapshot = IndexSnapshot.open(index_dir)
    collection = open_collection(snapshot.pipeline.dense.backend, index_dir, create=False)
    assert collection.configuration_json["hnsw"]["ef_search"] == 300
    snapshot.close()
    with pytest.raises(ChromaBackendError, match="max_neighbors 32 .configured 16.*new name"):
        write(SOLAR, config_with({"name": "chroma", "hnsw": {"ef_search": 300, "max_neighbors": 16}}))
    stats = write(SOLAR, config_with({"name": "chroma", "collection": "solar-m16", "hnsw": {"max_neighbors": 16}}))
    assert stats.published and embedder.encoded == [] and stats.vectors_upserted == 5
    assert collection_ids(index_dir) == store_ids(index_dir)
