"""Query transforms (multi-query, HyDE) and the LLM reranker, through the generator LLM.

The LLM is the real local scripted OpenAI-compatible HTTP server of `tests/fake_openai.py`, reached
by the real `openai` SDK through `OpenAIGenerator.complete`: only the model's replies are scripted.
Retrieval is real: a tiny corpus indexed with the bundled MiniLM in faiss and BM25, built so that
the plain question ranks a distractor first ("How fast is a jaguar?" -> the Jaguar car) and the
rewrites / hypothetical passage find the big cat.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAIServer, Reply, completion

from ragkit.api import RAG
from ragkit.config import LLMRerankConfig, PipelineError, parse_pipeline
from ragkit.errors import UserError
from ragkit.eval.retrieval import evaluate_retrieval
from ragkit.retrieval.chat import CachedChatModel
from ragkit.retrieval.hyde import clean_passage
from ragkit.retrieval.llm_rerank import parse_score, reorder
from ragkit.retrieval.multi_query import parse_rewrites
from ragkit.retrieval.rerank import make_reranker
from ragkit.retrieval.transforms import make_query_transform
from ragkit.schema import Chunk, Document, Hit, Trace

pytestmark = pytest.mark.usefixtures("hermetic_openai_env")

CORPUS = {
    "car": "The Jaguar F-Type is a fast sports car: how fast is it? Its top speed is 300 km/h.",
    "cat": "Panthera onca, the big cat of the Americas, can sprint at about 80 km/h when hunting deer.",
    "bread": "Sourdough bread is leavened by wild yeast and lactic acid bacteria.",
    "river": "The Amazon river carries more water than any other river on Earth.",
    "chess": "In chess, castling moves the king two squares towards a rook.",
}
QUESTION = "How fast is a jaguar?"
REWRITES = (
    "1. top speed of the big cat Panthera onca\n2. how fast can the American big cat sprint when hunting"
)
PASSAGE = "Panthera onca, the largest big cat of the Americas, sprints at about 80 km/h when hunting."


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("index")
    with RAG(parse_pipeline({"retrieval": {"rerank": {"name": "none"}}}), directory) as rag:
        rag.ingest_documents(Document(id=k, source=f"{k}.txt", text=v) for k, v in CORPUS.items())
    return directory


def pipeline(base_url: str, **retrieval: Any) -> dict[str, Any]:
    return {
        "retrieval": {"rerank": {"name": "none"}, "top_k": 5, **retrieval},
        "generator": {
            "name": "openai",
            "model": "scripted-model",
            "base_url": base_url,
            "max_retries": 0,
            "timeout_s": 5,
        },
    }


def retrieve(index_dir: Path, raw: dict[str, Any], question: str = QUESTION) -> tuple[list[str], Trace]:
    trace = Trace()
    with RAG(parse_pipeline(raw), index_dir) as rag:
        hits = rag.retrieve(question, trace=trace)
    return [h.chunk.doc_id for h in hits], trace


def user_text(request: dict[str, Any]) -> str:
    return request["body"]["messages"][-1]["content"]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there any more: connection refused


# --- parsing ---------------------------------------------------------------------------------------


def test_parse_rewrites_handles_numbering_bullets_blank_lines_and_junk() -> None:
    reply = (
        "Here are 3 search queries:\n\n"
        '1. "speed of the jaguar cat"\n'
        "\n"
        "2) Jaguar running speed km/h\n"
        "- How fast is a jaguar?\n"  # the question itself: dropped
        "* **jaguar sprint speed**\n"
        "Query 4: jaguar top speed\n"
        "```\n"
        "3. speed of the jaguar cat\n"  # a repeat: dropped
    )
    assert parse_rewrites(reply, QUESTION, 10) == [
        "speed of the jaguar cat",
        "Jaguar running speed km/h",
        "jaguar sprint speed",
        "jaguar top speed",
    ]
    assert parse_rewrites(reply, QUESTION, 2) == ["speed of the jaguar cat", "Jaguar running speed km/h"]
    assert parse_rewrites("", QUESTION, 3) == []
    assert parse_rewrites("Sure!\n\n---\n1.\n", QUESTION, 3) == []


def test_parse_score_and_passage_cleanup() -> None:
    assert parse_score("7") == 7.0
    assert parse_score("Relevance: 8/10") == 8.0
    assert parse_score("8.5") == 8.5
    assert parse_score("10") == 10.0
    assert parse_score("score 85") is None and parse_score("not relevant at all") is None
    assert parse_score("10. The passage is irrelevant to") is None  # list numbering, not a score
    assert clean_passage("Passage:  Jaguars are\n fast. ") == "Jaguars are fast."


def test_reorder_keeps_unscored_hits_in_their_fused_positions() -> None:
    doc = Document(id="d", source="d.txt", text="abcdefghij")
    hits = [Hit(chunk=Chunk.from_span(doc, i, i + 1), score=1.0 - i / 10) for i in range(4)]
    result = reorder(hits, [1.0, None, 9.0, 5.0])
    assert [h.chunk.text for h in result] == ["c", "b", "d", "a"]  # "b" stays 2nd: it was not scored
    assert result[0].retrievers["rerank"].score == 9.0 and "rerank" not in result[1].retrievers
    assert reorder(hits, [None] * 4) is hits


# --- multi-query and HyDE against the real index ---------------------------------------------------


def test_multi_query_finds_the_document_the_plain_question_misses(
    index_dir: Path, server: FakeOpenAIServer
) -> None:
    plain, _ = retrieve(index_dir, pipeline(server.base_url))
    assert plain[0] == "car"  # precondition: the plain question ranks the distractor first
    server.script(Reply(body=completion(REWRITES)))
    found, trace = retrieve(
        index_dir, pipeline(server.base_url, query_transform={"name": "multi-query", "n": 3})
    )
    assert found[0] == "cat" and set(found) == set(plain)
    [request] = server.requests
    assert QUESTION in user_text(request) and "3 different search queries" in user_text(request)
    assert request["body"]["max_tokens"] == 128  # the transform's own reply budget, not the generator's
    assert "query_transform" in trace.stages and "transform_retrieval" in trace.stages
    assert trace.warnings == []


def test_transform_searches_keep_the_metadata_filter(index_dir: Path, server: FakeOpenAIServer) -> None:
    # The rewrites point at the cat, but the filter allows only the car and the river: the extra
    # searches must obey the same filter as the question's own search.
    server.script(Reply(body=completion(REWRITES)))
    trace = Trace()
    raw = pipeline(server.base_url, query_transform={"name": "multi-query", "n": 3})
    with RAG(parse_pipeline(raw), index_dir) as rag:
        hits = rag.retrieve(QUESTION, trace=trace, filter={"source": {"$in": ["car.txt", "river.txt"]}})
    assert sorted(h.chunk.doc_id for h in hits) == ["car", "river"]
    assert len(server.requests) == 1 and "transform_retrieval" in trace.stages


def test_hyde_passage_is_used_for_dense_and_sparse_search(index_dir: Path, server: FakeOpenAIServer) -> None:
    server.script(Reply(body=completion("Passage: " + PASSAGE)))
    hyde = {"name": "hyde", "sparse_query": "question+passage", "max_tokens": 90}
    found, trace = retrieve(index_dir, pipeline(server.base_url, query_transform=hyde))
    assert found[0] == "cat"
    [request] = server.requests
    assert QUESTION in user_text(request) and request["body"]["max_tokens"] == 90
    assert trace.warnings == []


def test_hyde_fuse_mode_and_several_passages(index_dir: Path, server: FakeOpenAIServer) -> None:
    server.script(
        Reply(body=completion(PASSAGE)),
        Reply(body=completion("The big cat Panthera onca hunts deer at a sprint.")),
    )
    hyde = {"name": "hyde", "n": 2, "temperature": 0.7, "combine": "fuse", "sparse_query": "question+passage"}
    found, _ = retrieve(index_dir, pipeline(server.base_url, query_transform=hyde))
    assert found[0] == "cat" and len(server.requests) == 2
    assert all(r["body"]["temperature"] == 0.7 for r in server.requests)


def test_unusable_transform_reply_falls_back_to_the_question(
    index_dir: Path, server: FakeOpenAIServer
) -> None:
    plain, _ = retrieve(index_dir, pipeline(server.base_url))
    server.script(Reply(body=completion("Sure! Here are some queries:\n\n")))
    found, trace = retrieve(index_dir, pipeline(server.base_url, query_transform={"name": "multi-query"}))
    assert found == plain
    assert any("no usable rewrite" in w for w in trace.warnings)


@pytest.mark.parametrize("transform", ["multi-query", "hyde"])
def test_llm_server_down_falls_back_to_the_question(index_dir: Path, transform: str) -> None:
    url = closed_port_url()
    plain, _ = retrieve(index_dir, pipeline(url))
    found, trace = retrieve(index_dir, pipeline(url, query_transform={"name": transform}))
    assert found == plain
    [warning] = trace.warnings
    assert f"query_transform {transform}: the LLM request failed" in warning and "connection error" in warning


def test_http_error_falls_back_with_a_warning(index_dir: Path, server: FakeOpenAIServer) -> None:
    server.script(Reply(status=503, body={"error": {"message": "overloaded", "type": "server_error"}}))
    found, trace = retrieve(index_dir, pipeline(server.base_url, query_transform={"name": "hyde"}))
    assert found[0] == "car"
    assert any("HTTP 503" in w for w in trace.warnings)


# --- the LLM reranker ------------------------------------------------------------------------------


def score_by_passage(request: dict[str, Any]) -> Reply:
    """A scripted judge: 9 for the big-cat passage, 2 for anything else."""
    return Reply(body=completion("9" if "Panthera" in user_text(request) else "Score: 2/10"))


def test_llm_reranker_reorders_by_the_scripted_scores(index_dir: Path) -> None:
    with FakeOpenAIServer(respond=score_by_passage) as server:
        found, trace = retrieve(index_dir, pipeline(server.base_url, rerank={"name": "llm", "top_n": 5}))
    assert found[0] == "cat" and len(found) == 5
    assert len(server.requests) == 5 and all(r["body"]["max_tokens"] == 8 for r in server.requests)
    assert "llm_rerank" in trace.stages and trace.warnings == []


def test_llm_reranker_garbage_keeps_fused_order_with_a_warning(
    index_dir: Path, server: FakeOpenAIServer
) -> None:
    plain, _ = retrieve(index_dir, pipeline(server.base_url))
    server.script(*[Reply(body=completion("I cannot judge this passage.")) for _ in range(5)])
    found, trace = retrieve(index_dir, pipeline(server.base_url, rerank={"name": "llm", "top_n": 5}))
    assert found == plain
    assert any("5 of 5 replies had no 0-10 score" in w for w in trace.warnings)


def test_llm_reranker_server_down_keeps_fused_order_after_one_request(index_dir: Path) -> None:
    url = closed_port_url()
    plain, _ = retrieve(index_dir, pipeline(url))
    found, trace = retrieve(index_dir, pipeline(url, rerank={"name": "llm", "top_n": 5}))
    assert found == plain
    [warning] = trace.warnings
    assert (
        "retrieval.rerank llm: the LLM request failed" in warning
        and "5 of 5 hits keep their fused order" in warning
    )


# --- config errors, the cache and the eval ---------------------------------------------------------


def test_config_errors_name_the_field_and_the_fix() -> None:
    with pytest.raises(PipelineError) as info:
        parse_pipeline({"retrieval": {"query_transform": {"name": "hyde"}}}, origin="p.yaml")
    assert "retrieval.query_transform (hyde)" in str(info.value) and "`openai` (or `local`) generator" in str(
        info.value
    )
    with pytest.raises(PipelineError, match=r"retrieval.rerank \(llm\)"):
        parse_pipeline({"retrieval": {"rerank": {"name": "llm"}}}, origin="p.yaml")
    with pytest.raises(PipelineError, match="n > 1 needs temperature > 0"):
        parse_pipeline(
            {"retrieval": {"query_transform": {"name": "hyde", "n": 2}}, "generator": {"name": "openai"}}
        )
    with pytest.raises(PipelineError, match="'hyde', 'multi-query', 'none'"):
        parse_pipeline({"retrieval": {"query_transform": {"name": "expand"}}})
    # Built in code without an LLM, the components refuse with the same advice.
    with pytest.raises(UserError, match=r"retrieval.rerank \(llm\) needs an LLM"):
        make_reranker(LLMRerankConfig())
    config = parse_pipeline(
        {"retrieval": {"query_transform": {"name": "multi-query"}}, "generator": {"name": "openai"}}
    )
    with pytest.raises(UserError, match=r"retrieval.query_transform \(multi-query\) needs an LLM"):
        make_query_transform(config.retrieval.query_transform, None)


def test_cached_chat_model_answers_repeats_from_disk(tmp_path: Path, server: FakeOpenAIServer) -> None:
    server.script(Reply(body=completion("one")), Reply(body=completion("two")))
    config = parse_pipeline(pipeline(server.base_url))
    with RAG(config, tmp_path / "unused") as rag:
        assert rag.chat_model is not None
        chat = CachedChatModel(rag.chat_model, tmp_path / "cache.sqlite")
        messages = [{"role": "user", "content": "hi"}]
        assert chat.complete(messages) == ("one", "stop")
        assert chat.complete(messages) == ("one", "stop")  # from the cache
        assert chat.complete([{"role": "user", "content": "other"}]) == ("two", "stop")
        reopened = CachedChatModel(rag.chat_model, tmp_path / "cache.sqlite")
        assert reopened.complete(messages) == ("one", "stop")
        assert len(server.requests) == 2


def test_eval_compare_measures_the_transform_and_reuses_the_llm_cache(tmp_path: Path) -> None:
    dataset = tmp_path / "beir"
    (dataset / "qrels").mkdir(parents=True)
    (dataset / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in CORPUS.items())
    )
    (dataset / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": QUESTION}) + "\n")
    (dataset / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tcat\t1\n")

    def respond(request: dict[str, Any]) -> Reply:
        return Reply(body=completion(REWRITES if "search queries" in user_text(request) else "3"))

    raw = pipeline("", query_transform={"name": "multi-query"}, rerank={"name": "llm", "top_n": 3})
    with FakeOpenAIServer(respond=respond) as server:
        raw["generator"]["base_url"] = server.base_url
        results = []
        for _ in range(2):
            with RAG(parse_pipeline(raw), tmp_path / "index") as rag:
                results.append(
                    evaluate_retrieval(dataset, rag, compare=True, llm_cache=tmp_path / "llm.sqlite")
                )
        first_run_requests = len(server.requests)
    first, second = results
    assert set(first.variants or {}) == {
        "sparse",
        "dense",
        "fused",
        "fused+rerank",
        "fused+multi-query",
        "fused+multi-query+rerank",
    }
    assert first.main_variant == "fused+multi-query+rerank"
    assert first.variants["fused"]["ndcg@10"] < 1.0 == first.variants["fused+multi-query"]["ndcg@10"]
    assert first.timings["query_transform_ms_mean"] > 0 and first.timings["llm_requests"] > 0
    # The re-run asked the LLM nothing and scored the same.
    assert second.timings["llm_requests"] == 0 and first_run_requests == first.timings["llm_requests"]
    assert second.variants == first.variants


def test_retrieval_does_not_import_generation() -> None:
    from architecture import imports_of

    for module in ("ragkit.retrieval.search", "ragkit.retrieval.transforms", "ragkit.retrieval.llm_rerank"):
        assert not [m for m in imports_of(module) if m.startswith("ragkit.generation")], module
