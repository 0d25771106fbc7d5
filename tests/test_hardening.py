"""Regression tests for defects found by hostile and first-time use (each failed on fc3afc0):
nothing destroyed that was not asked for, no bad row sinks an ingest, no damage served silently,
no secret leaves the process, no unbounded filter, progress that moves, honest first runs.

Real components throughout: the `ragkit` CLI in subprocesses, the bundled model, faiss, BM25,
SQLite; disk-full runs on a real (tiny) tmpfs mounted by the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reliability import CONFIG, embedder, make_rag, ragkit  # noqa: F401  (embedder: a fixture)

from ragkit import RAG
from ragkit.config import PipelineConfig, parse_pipeline
from ragkit.errors import TargetError
from ragkit.indexes.filters import FilterError, MetadataFilter
from ragkit.indexes.layout import SEGMENTS_DIR, IndexDamaged, read_current
from ragkit.indexes.maintenance import match_documents, prune_candidates, verify_index
from ragkit.protocols import Embedder
from ragkit.redaction import redact
from ragkit.schema import Document

ROOT = Path(__file__).resolve().parents[1]


def write_corpus(root: Path) -> Path:
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# Alpha\n\nAlpha centauri is the nearest star system to the Sun.\n")
    (docs / "sub" / "b.md").write_text("# Beta\n\nBeta Pictoris hosts a young planetary system.\n")
    (docs / "rows.jsonl").write_text('{"id": "r1", "text": "Gamma rays come from pulsars."}\n')
    return docs


# --- 1. delete and prune never remove more than they name ---------------------------------


def test_delete_refuses_empty_root_and_bare_directory_targets() -> None:
    sources = {"d/a.md": "d/a.md", "d/r.jsonl#1": "d/r.jsonl", "/abs/x.md": "/abs/x.md"}
    for target in ["", "   ", ".", "./", "/", "//"]:
        with pytest.raises(TargetError):
            match_documents(sources, [target])
    with pytest.raises(TargetError, match="trailing '/'"):
        match_documents(sources, ["d"])  # a directory named without its trailing slash
    assert match_documents(sources, ["d/"]) == (["d/a.md", "d/r.jsonl#1"], [])
    assert match_documents(sources, ["d/r.jsonl"]) == (["d/r.jsonl#1"], [])  # a file names all its rows
    assert match_documents(sources, [], all_documents=True) == (sorted(sources), [])
    with pytest.raises(TargetError):
        prune_candidates(sources, [""])


@pytest.mark.slow
def test_cli_delete_of_an_empty_target_deletes_nothing(tmp_path: Path) -> None:
    write_corpus(tmp_path)
    ragkit("ingest", "docs", "--index", "idx", cwd=tmp_path)  # relative sources: docs/a.md ...
    before = read_current(tmp_path / "idx")
    for args in ([""], ["."], ["docs"], ["/"]):
        result = ragkit("delete", *args, "--index", "idx", cwd=tmp_path, check=False)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "error:" in result.stderr
    after = read_current(tmp_path / "idx")
    assert (after.generation, after.documents) == (before.generation, before.documents) == (before.generation, 3)
    # an empty ingest path is refused too (with --prune it would have meant "prune everything")
    assert ragkit("ingest", "", "--prune", "--index", "idx", cwd=tmp_path, check=False).returncode == 2
    deleted = json.loads(ragkit("delete", "docs/", "--index", "idx", "--json", cwd=tmp_path).stdout)
    assert len(deleted["deleted"]) == 3 and deleted["documents_total"] == 0
    ragkit("ingest", "docs", "--index", "idx", cwd=tmp_path)
    everything = json.loads(ragkit("delete", "--all", "--index", "idx", "--json", cwd=tmp_path).stdout)
    assert everything["documents_total"] == 0


def test_api_delete_refuses_empty_target(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    docs = write_corpus(tmp_path)
    rag = make_rag(tmp_path / "idx", embedder)
    rag.ingest([docs])
    with pytest.raises(TargetError):
        rag.delete([""])
    with pytest.raises(TargetError):
        rag.ingest([""], prune=True)
    assert rag.status().documents == 3


# --- 2. one bad document never sinks the ingest ------------------------------------------


@pytest.mark.slow
def test_lone_surrogate_row_is_cleaned_and_the_rest_indexed(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path)
    (docs / "bad.jsonl").write_text('{"id": "a", "text": "fine row"}\n{"id": "b", "text": "x \\ud800 y \\u0000 z"}\n')
    result = ragkit("ingest", str(docs), "--index", "idx", "--json", cwd=tmp_path)
    report = json.loads(result.stdout)
    assert report["documents_added"] == 5 and not report["files_failed"]
    rag = RAG.open(tmp_path / "idx")
    texts = {d.id: d.text for d in rag.snapshot().store.documents()}
    assert texts[f"{docs.as_posix()}/bad.jsonl#b"] == "x \ufffd y \ufffd z"
    assert Document(id="i", source="s", text="a \ud83d\ude00 b").text == "a \U0001f600 b"  # a split pair is joined


class _RefusingEmbedder(Embedder):
    """The real model, refusing one text: stands in for an embedder bug no input check foresees."""

    def __init__(self, inner, poison: str) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.poison = inner, poison

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def loaded(self) -> bool:
        return self.inner.loaded

    def load(self) -> None:
        self.inner.load()

    def embed_query(self, text):  # type: ignore[no-untyped-def]
        return self.inner.embed_query(text)

    def embed(self, texts, on_batch=None):  # type: ignore[no-untyped-def]
        if any(self.poison in t for t in texts):
            raise RuntimeError("tokenizer exploded")
        return self.inner.embed(texts, on_batch=on_batch)


def test_a_document_the_embedder_refuses_fails_alone(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    docs = write_corpus(tmp_path)
    (docs / "poison.md").write_text("# P\n\nThis text contains POISON and cannot be embedded.\n")
    rag = make_rag(tmp_path / "idx", _RefusingEmbedder(embedder, "POISON"))
    report = rag.ingest([docs])
    assert [f.path for f in report.failures] == [f"{docs.as_posix()}/poison.md"]
    assert "cannot be embedded" in report.failures[0].reason and "tokenizer exploded" in report.failures[0].reason
    assert report.index.documents_added == 3 and rag.status().documents == 3
    assert verify_index(tmp_path / "idx").ok


def test_an_embedder_that_fails_on_everything_fails_the_run(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    docs = write_corpus(tmp_path)
    make_rag(tmp_path / "idx", embedder).ingest([docs])
    for i in range(12):
        (docs / f"new{i}.md").write_text(f"# N{i}\n\nFresh text number {i} about distant quasars.\n")
    rag = make_rag(tmp_path / "idx", _RefusingEmbedder(embedder, ""))  # "" is in every text
    with pytest.raises(RuntimeError, match="embedder failed on all"):
        rag.ingest([docs])
    assert rag.status().documents == 3 and read_current(tmp_path / "idx").generation == 1


# --- 3, 4. damaged generations are reported, never served --------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index with two generations (the second adds a document), built once; tests copy it."""
    root = tmp_path_factory.mktemp("built")
    docs = write_corpus(root)
    ragkit("ingest", str(docs), "--index", "idx", cwd=root)
    (docs / "c.md").write_text("# Gamma\n\nGamma Cephei is a binary star.\n")
    ragkit("ingest", str(docs), "--index", "idx", cwd=root)
    return root


def copy_index(built: Path, tmp_path: Path) -> Path:
    subprocess.run(["cp", "-a", str(built / "idx"), str(tmp_path / "idx")], check=True)
    return tmp_path / "idx"


def flip_bit(path: Path, offset_fraction: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * offset_fraction)] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate store.sqlite", "flip store.sqlite", "flip dense.faiss",
                                    "flip embeddings.npy", "flip bm25/tf.npy", "flip pipeline.yaml"])
def test_damage_is_detected_before_serving(damage: str, built: Path, tmp_path: Path) -> None:
    index = copy_index(built, tmp_path)
    current = read_current(index)
    action, name = damage.split()
    # the generation's own files, or those of the segment it added (generation 1 does not use it)
    where = index / current.directory if name == "pipeline.yaml" else index / SEGMENTS_DIR / current.segments[-1].name
    target = where / name
    if action == "truncate":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        flip_bit(target, 0.9 if name == "pipeline.yaml" else 0.5)
    result = ragkit("query", "Which star is nearest to the Sun?", "--index", str(index), cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"generation {current.generation} is damaged" in result.stderr and name in result.stderr
    assert "ragkit restore" in result.stderr  # the previous generation is intact and can be restored
    assert "Traceback" not in result.stderr
    verify = ragkit("status", "--verify", "--index", str(index), cwd=tmp_path, check=False)
    assert verify.returncode == 1 and name in verify.stdout and "Traceback" not in verify.stderr
    with pytest.raises(IndexDamaged):
        RAG.open(index).snapshot()
    restored = json.loads(ragkit("restore", "--index", str(index), "--json", cwd=tmp_path).stdout)
    assert restored["restored_generation"] == current.generation - 1
    answer = ragkit("query", "Which star is nearest to the Sun?", "--index", str(index), cwd=tmp_path)
    assert "Alpha" in answer.stdout
    assert ragkit("status", "--verify", "--index", str(index), cwd=tmp_path).returncode == 0


# --- 5. disk full ------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 3 MB tmpfs: real ENOSPC from the kernel (mounting needs root, which CI has)."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the disk-full test: {result.stderr.decode()}")
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_disk_full_names_the_file_and_keeps_the_served_generation(tmp_path: Path, small_disk: Path) -> None:
    docs = write_corpus(tmp_path)
    index = small_disk / "idx"
    ragkit("ingest", str(docs), "--index", str(index), cwd=tmp_path)
    first = read_current(index)
    big = tmp_path / "big"
    big.mkdir()
    for i in range(40):  # ~4 MB of distinct text: the next generation cannot fit in 3 MB
        (big / f"f{i}.md").write_text("\n\n".join(f"Paragraph {i}-{j} about star {j * i} and comet {j}." for j in range(900)))
    result = ragkit("ingest", str(docs), str(big), "--index", str(index), "--json", cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no space left on device while writing" in result.stderr
    assert f"still serves generation {first.generation}" in result.stderr
    assert json.loads(result.stdout)["exit_code"] == 2  # --json reports on this exit path too
    assert "Traceback" not in result.stderr
    assert read_current(index) == first and sorted(p.name for p in index.glob("gen-*")) == [first.directory]
    assert ragkit("status", "--verify", "--index", str(index), cwd=tmp_path).returncode == 0


# --- 6. secrets ----------------------------------------------------------------------------


def test_redaction_masks_fragments_and_url_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-live-0123456789abcdefWXYZ"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    echoed = f"bad key {key[:8]}****{key[-4:]}; tail {key[-8:]}; whole {key}; url http://bob:hunter22@proxy:8080/v1"
    shown = redact(echoed)
    for fragment in (key, key[:8], key[-8:], "hunter22", "bob:"):
        assert fragment not in shown, fragment
    assert "http://***@proxy:8080/v1" in shown and "bad key" in shown
    assert redact("nothing secret here") == "nothing secret here"


def test_saved_pipeline_has_no_credentials() -> None:
    config = parse_pipeline(
        {"generator": {"name": "openai", "api_key": "sk-abcdef0123456789", "base_url": "http://user:s3cretpw@h:1/v1"}}
    )
    saved = config.to_yaml()
    assert "s3cretpw" not in saved and "sk-abcdef0123456789" not in saved and "user:" not in saved
    assert "http://***@h:1/v1" in saved


def test_suite_pipeline_yaml_errors_do_not_echo_the_line(tmp_path: Path) -> None:
    from ragkit.eval.suite import SuiteError, run_suite

    (tmp_path / "p.yaml").write_text("generator:\n  name: openai\n  api_key: sk-zzzz9999yyyy8888 : bad: [\n")
    (tmp_path / "q.jsonl").write_text('{"id": 1, "question": "q?"}\n')
    (tmp_path / "corpus").mkdir()
    (tmp_path / "suite.yaml").write_text(
        "name: s\nmetrics: [containment]\ndatasets:\n  - {name: d, kind: questions, path: q.jsonl, corpus: [corpus]}\n"
        "pipelines:\n  - {path: p.yaml, name: v, override: {}}\n"
    )
    with pytest.raises((SuiteError, ValueError)) as caught:
        run_suite(tmp_path / "suite.yaml", tmp_path / "report")
    assert "sk-zzzz9999yyyy8888" not in str(caught.value) and "invalid YAML" in str(caught.value)


# --- 7. filters are bounded ---------------------------------------------------------------


def test_deep_or_huge_filters_are_refused_with_the_limit() -> None:
    deep = '{"a": 1}'
    for _ in range(950):
        deep = '{"$or": [' + deep + "]}"
    with pytest.raises(FilterError, match="nested too deeply"):
        MetadataFilter.parse(deep)
    nested: dict = {"a": 1}
    for _ in range(5000):
        nested = {"$and": [nested]}
    with pytest.raises(FilterError, match="limit"):
        MetadataFilter.parse(nested)
    with pytest.raises(FilterError, match="limit"):
        MetadataFilter.parse({"a": {"$in": list(range(20_000))}})


@pytest.mark.slow
def test_cli_deep_filter_exits_2(built: Path, tmp_path: Path) -> None:
    deep = '{"a": 1}'
    for _ in range(950):
        deep = '{"$or": [' + deep + "]}"
    result = ragkit("query", "star", "--index", str(built / "idx"), "--filter", deep, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "nested too deeply" in result.stderr and "Traceback" not in result.stderr


# --- 8. progress moves; Ctrl-C says what happened -----------------------------------------


@pytest.mark.slow
def test_ingest_progress_lines_and_interrupt(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(300):  # ~18,000 chunks: still embedding when interrupted, even with a fast embedder
        (docs / f"f{i}.md").write_text("\n\n".join(f"Note {i}.{j}: the orbit of body {j} is eccentric." for j in range(60)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ragkit.cli", "ingest", str(docs), "--index", "idx"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # a shell's background job starts with SIGINT ignored, and children would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    lines: list[str] = []
    assert process.stderr is not None
    started = time.monotonic()
    while time.monotonic() - started < 300:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "chunks embedded" in line and "ETA" in line:
            break  # stderr is not a terminal: plain progress lines, with counts, rate and ETA
    assert any("files loaded" in line and "chunks embedded" in line for line in lines), lines
    process.send_signal(signal.SIGINT)
    _out, rest = process.communicate(timeout=120)
    assert process.returncode == 130, rest
    assert "interrupted; nothing was published" in rest
    assert read_current(tmp_path / "idx") is None and not list((tmp_path / "idx").glob("gen-*"))


# --- 9. first runs ------------------------------------------------------------------------


@pytest.mark.slow
def test_ingesting_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = ragkit("ingest", "empty", "--index", "idx", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "nothing to ingest" in result.stderr


def test_status_during_the_first_ingest_names_the_writer(tmp_path: Path) -> None:
    from ragkit.indexes.layout import writer_lock

    with writer_lock(tmp_path / "idx"):
        result = ragkit("status", "--index", "idx", cwd=tmp_path, check=False)
    assert result.returncode == 2 and f"an ingest (PID {os.getpid()}) is building it" in result.stderr


def test_default_pipeline_promises_no_missing_reranker() -> None:
    assert PipelineConfig().retrieval.rerank.name == "none"
    from ragkit.config import load_pipeline

    assert load_pipeline(ROOT / "pipelines" / "default.yaml").retrieval.rerank.name == "none"


def test_citations_are_numbered_in_order_of_appearance() -> None:
    from ragkit.generation.citations import CitationNumbering, StreamRenumberer, resolve_citations
    from ragkit.schema import Chunk, Hit, Trace

    document = Document(id="d", source="d.md", text="x" * 100)
    hits = [Hit(chunk=Chunk.from_span(document, 10 * i, 10 * i + 5), score=1.0) for i in range(4)]
    raw = "First [3]. Then [1, 3]. Also [4] and [9]."
    generated = resolve_citations(raw, hits, Trace())
    assert generated.text == "First [1]. Then [1, 2]. Also [3] and."
    assert [(c.n, c.block) for c in generated.citations] == [(1, 3), (2, 1), (3, 4)]
    renumber = StreamRenumberer(len(hits), CitationNumbering())
    pieces = ["First [", "3", "]. Then [1,", " 3]. Also [4", "] and [9]."]
    streamed = "".join(renumber.feed(p) for p in pieces) + renumber.flush()
    assert streamed.replace(" .", ".") == generated.text


@pytest.mark.slow
def test_make_demo_prints_no_license_deprecation(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "project.license" not in result.stdout + result.stderr


# Spellings that PurePosixPath normalizes: repeated, leading and trailing slashes, `.` and `..`
# components, backslashes (a plain character on POSIX), blanks.
_path_text = st.lists(st.sampled_from(["a", "b", "/", "//", ".", "..", "./", "\\", " ", "data", "data2"]), max_size=7).map("".join)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=_path_text, root=_path_text)
def test_target_matching_on_strings_follows_path_components(source: str, root: str) -> None:
    """The string fast path of delete/prune matching agrees with PurePosixPath components."""
    from ragkit.indexes.removal import _normal, _normal_under, _posix, _under

    assert _normal(source) == _posix(source).as_posix()
    assert _normal_under(_normal(source), _posix(root).as_posix()) == _under(_posix(source), _posix(root))
