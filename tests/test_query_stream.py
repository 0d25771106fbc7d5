"""`RAG.query_stream` and `ragkit query --stream`, with every generator kind, no LLM needed.

The OpenAI-compatible server here is tests/fake_openai.py (real HTTP and SSE, scripted replies),
so the exact deltas are known; tests/test_llama_server.py runs the same paths against the real
llama.cpp server. The index is real (bundled MiniLM, faiss, BM25) over three tiny documents.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_openai import FakeOpenAIServer, Reply
from llama_support import data_pipeline
from typer.testing import CliRunner

from ragkit.api import RAG
from ragkit.cli import app
from ragkit.generation.citations import NO_CITATION_WARNING
from ragkit.generation.prompt import NO_ANSWER

pytestmark = pytest.mark.usefixtures("hermetic_openai_env")

DOCS = {
    "paris.md": "# Paris\n\nParis is the capital of France. The Louvre opened in 1793.\n",
    "bananas.txt": "Bananas are yellow when ripe and grow in tropical climates.\n",
    "mars.md": "# Mars\n\nMars has two small moons, Phobos and Deimos.\n",
}
QUESTION = "When did the Louvre open?"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stream")
    corpus = root / "docs"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    with RAG(data_pipeline(), root / "index") as rag:
        assert rag.ingest([corpus]).ok
    return root / "index"


def openai_rag(server: FakeOpenAIServer, index: Path) -> RAG:
    return RAG(data_pipeline(generator={"name": "openai", "model": "m", "base_url": server.base_url}), index)


def openai_pipeline_file(server: FakeOpenAIServer, tmp_path: Path) -> Path:
    path = tmp_path / "openai.yaml"
    path.write_text(
        data_pipeline(generator={"name": "openai", "model": "m", "base_url": server.base_url}).to_yaml(),
        encoding="utf-8",
    )
    return path


def test_query_stream_yields_deltas_then_the_cited_answer(server: FakeOpenAIServer, index: Path) -> None:
    pieces = ["The Louvre ", "opened in ", "1793 ", "[1]", "."]
    server.script(Reply(deltas=pieces))
    with openai_rag(server, index) as rag:
        stream = rag.query_stream(QUESTION, top_k=2)
        deltas = list(stream)
        assert "".join(deltas) == "".join(pieces) and len(deltas) >= 3
        answer = stream.answer()
    assert answer.text == "The Louvre opened in 1793 [1]."
    assert [c.source for c in answer.citations] == [answer.hits[0].chunk.source]
    assert answer.hits[0].chunk.source.endswith("paris.md")
    assert "generate" in answer.trace.stages and "dense" in answer.trace.stages
    assert NO_CITATION_WARNING not in answer.trace.warnings


def test_extractive_query_stream_gives_its_answer_at_once(index: Path) -> None:
    with RAG(data_pipeline(), index) as rag:
        stream = rag.query_stream(QUESTION, top_k=2)
        deltas = list(stream)
        answer = stream.answer()
        plain = rag.query(QUESTION, top_k=2)
    assert deltas == [answer.text] and answer.text == plain.text
    assert answer.citations == plain.citations and answer.citations


def test_uncited_answer_is_flagged_and_not_listed_as_sources(server: FakeOpenAIServer, index: Path, tmp_path: Path) -> None:
    server.script(Reply(deltas=["It opened ", "in 1793."]))
    result = CliRunner().invoke(
        app, ["query", QUESTION, "--index", str(index), "--pipeline", str(openai_pipeline_file(server, tmp_path)),
              "--top-k", "2", "--stream"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("It opened in 1793.\n")
    assert "Sources" not in result.stdout
    assert "Context given to the model (none cited)" in result.stdout
    assert "paris.md" in result.stdout
    assert f"warning: {NO_CITATION_WARNING}" in result.stderr


def test_no_answer_needs_no_citation(server: FakeOpenAIServer, index: Path) -> None:
    server.script(Reply(deltas=[NO_ANSWER]))
    with openai_rag(server, index) as rag:
        answer = rag.query_stream("What colour is the sky on Neptune?", top_k=2).answer()
    assert answer.text == NO_ANSWER and NO_CITATION_WARNING not in answer.trace.warnings


def test_cli_stream_prints_text_then_sources(server: FakeOpenAIServer, index: Path, tmp_path: Path) -> None:
    server.script(Reply(deltas=["The Louvre ", "opened in 1793 ", "[1]", "."]))
    result = CliRunner().invoke(
        app, ["query", QUESTION, "--index", str(index), "--pipeline", str(openai_pipeline_file(server, tmp_path)),
              "--top-k", "2", "--stream"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    answer, _, sources = result.stdout.partition("\nSources\n")
    assert answer == "The Louvre opened in 1793 [1].\n"
    [line] = sources.strip().splitlines()
    assert line.startswith("[1] ") and "paris.md" in line


def test_cli_stream_json_lines(server: FakeOpenAIServer, index: Path, tmp_path: Path) -> None:
    pieces = ["The Louvre ", "opened in 1793 ", "[1]", " [9]", "."]
    server.script(Reply(deltas=pieces))
    result = CliRunner().invoke(
        app, ["query", QUESTION, "--index", str(index), "--pipeline", str(openai_pipeline_file(server, tmp_path)),
              "--top-k", "2", "--stream", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(e["event"] == "delta" for e in events[:-1]) and len(events) >= 4
    # deltas arrive as the model writes them, [n] already numbered as in the final answer
    assert "".join(e["text"] for e in events[:-1]) == "The Louvre opened in 1793 [1]."
    final = events[-1]
    assert final["event"] == "answer" and set(final) == {"event", "answer", "citations", "related", "hits", "trace"}
    assert final["answer"] == "The Louvre opened in 1793 [1]."  # the [9] no block backs is dropped
    assert any("dropped citation [9]" in w for w in final["trace"]["warnings"])


def test_cli_stream_error_before_any_text(server: FakeOpenAIServer, index: Path, tmp_path: Path) -> None:
    server.script(Reply(status=404, body={"error": {"message": "model 'm' not found", "type": "invalid_request_error"}}))
    result = CliRunner().invoke(
        app, ["query", QUESTION, "--index", str(index), "--pipeline", str(openai_pipeline_file(server, tmp_path)),
              "--stream"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "HTTP 404" in result.stderr and "check generator.model" in result.stderr
