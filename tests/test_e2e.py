"""End to end: the real `ragkit` CLI on the sample corpus in data/, then the Python API.

Every component is real (bundled MiniLM, faiss, BM25, SQLite); the default pipeline has no
reranker (none ships offline), so an answer carries no warning.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ragkit import RAG
from ragkit.config import PipelineConfig
from ragkit.generation.prompt import NO_ANSWER
from ragkit.loaders import load_file

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [json.loads(line) for line in (ROOT / "data" / "questions.jsonl").read_text().splitlines() if line.strip()]
ANSWERABLE = [q for q in QUESTIONS if q["source"]]
UNANSWERABLE = [q for q in QUESTIONS if not q["source"]]


def ragkit(*args, cwd=ROOT, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ragkit {args} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("e2e") / "index"
    result = ragkit("ingest", "data", "--index", str(index_dir))
    assert "files ok:      20" in result.stdout
    assert "files failed:  0" in result.stdout
    return index_dir


def test_query_json_has_the_documented_schema_and_cites_the_source(index):
    question = next(q for q in ANSWERABLE if q["id"] == "q14")  # Pluto's discovery
    payload = json.loads(ragkit("query", question["question"], "--index", str(index), "--json").stdout)
    assert set(payload) == {"answer", "citations", "related", "hits", "trace"}
    assert isinstance(payload["answer"], str) and payload["answer"]
    assert payload["citations"], "the answer must cite at least one context block"
    for citation in payload["citations"]:
        assert set(citation) == {"n", "block", "chunk_id", "source", "start", "end"}
        assert isinstance(citation["n"], int) and isinstance(citation["start"], int)
        assert citation["source"].startswith("data/") and (ROOT / citation["source"]).is_file()
        assert f"[{citation['n']}]" in payload["answer"]
    for hit in payload["hits"]:
        assert set(hit) == {"chunk_id", "source", "score", "text"}
        assert isinstance(hit["score"], float)
    assert set(payload["trace"]) == {"stages", "warnings"}
    assert {"dense", "sparse", "fusion", "rerank", "generate"} <= set(payload["trace"]["stages"])
    assert all(set(v) == {"ms"} for v in payload["trace"]["stages"].values())
    assert payload["trace"]["warnings"] == []  # nothing configured was skipped
    assert [c["n"] for c in payload["citations"]] == list(range(1, len(payload["citations"]) + 1))

    assert question["source"] in [c["source"] for c in payload["citations"]]
    assert all(k.lower() in payload["answer"].lower() for k in question["keywords"])
    # offsets point back into the document exactly
    citation = next(c for c in payload["citations"] if c["source"] == question["source"])
    document = load_file(Path(citation["source"]), PipelineConfig().loader).documents[0]
    hit_text = next(h["text"] for h in payload["hits"] if h["chunk_id"] == citation["chunk_id"])
    assert document.text[citation["start"]:citation["end"]] == hit_text


def test_a_second_query_process_reuses_the_index(index):
    generation_files = {p: p.stat().st_mtime_ns for p in index.rglob("*") if p.is_file() and p.name != "LOCK"}
    result = ragkit("query", "When did Voyager 1 launch?", "--index", str(index))
    assert "5 September 1977" in result.stdout
    assert "[1] data/missions/voyager_program.pdf, page 1" in result.stdout
    # nothing in the index was rewritten or re-embedded by querying
    assert {p: p.stat().st_mtime_ns for p in generation_files} == generation_files
    # and re-ingesting the unchanged corpus embeds nothing
    again = ragkit("ingest", "data", "--index", str(index), "--json")
    stats = json.loads(again.stdout)
    assert (stats["documents_unchanged"], stats["texts_embedded"], stats["published"]) == (20, 0, False)


def test_sample_questions_are_answered_from_their_source(index):
    rag = RAG.open(index)
    retrieved = cited = 0
    for question in ANSWERABLE:
        answer = rag.query(question["question"])
        retrieved += question["source"] in [h.chunk.source for h in answer.hits]
        cited += question["source"] in [c.source for c in answer.citations]
    # measured: 28/28 retrieved in the top 5 and 27/28 cited; a margin for model/platform drift
    assert retrieved == len(ANSWERABLE)
    assert cited >= len(ANSWERABLE) - 3
    for question in UNANSWERABLE:
        answer = rag.query(question["question"])
        assert answer.text == NO_ANSWER and answer.citations == []


def test_python_api_ingest_and_query(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "data" / "planets", corpus)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    rag = RAG.from_pipeline(ROOT / "pipelines" / "default.yaml", index_dir=tmp_path / "idx")
    report = rag.ingest([corpus])
    assert report.files_ok == 8 and not report.ok
    assert [f.path for f in report.failures] == [str(corpus / "broken.pdf")]
    answer = rag.query("How high is Olympus Mons above the Martian datum?")
    assert answer.citations and answer.citations[0].source.endswith("mars.html")
    assert "22 km" in answer.text
    assert [h.chunk.source for h in rag.retrieve("Great Red Spot", top_k=1)] == [str(corpus / "jupiter.md")]


def test_cli_reports_failures_and_exit_codes(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "ok.md").write_text("# Ceres\n\nCeres was discovered by Giuseppe Piazzi in 1801.\n")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02binary\x00")
    result = ragkit("ingest", str(corpus), str(tmp_path / "missing"), "--index", str(tmp_path / "i"), check=False)
    assert result.returncode == 1  # partial failure: the good file is indexed
    assert "binary.txt" in result.stdout and "NUL bytes" in result.stdout
    assert "missing" in result.stdout and "no such file or directory" in result.stdout
    answer = json.loads(ragkit("query", "Who discovered Ceres?", "--index", str(tmp_path / "i"), "--json").stdout)
    assert "Giuseppe Piazzi" in answer["answer"]

    missing = ragkit("query", "anything", "--index", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 2 and "run `ragkit ingest" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("generator: {name: gpt}\n")
    invalid = ragkit("ingest", str(corpus), "--index", str(tmp_path / "j"), "--pipeline", str(bad), check=False)
    assert invalid.returncode == 2 and "generator" in invalid.stderr and "'extractive', 'local', 'openai'" in invalid.stderr
