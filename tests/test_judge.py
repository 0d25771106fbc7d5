"""The LLM faithfulness judge against a real local OpenAI-compatible HTTP server.

The server is the shared fake (`tests/fake_openai.py`: a stdlib `ThreadingHTTPServer` on 127.0.0.1);
the real `openai` SDK talks to it over a socket. Each test scripts the model's replies (by stage:
claim extraction or verdicts) and the server records every request, so the tests check both the
parsing and what was sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAIServer, Reply, completion, error_body

from ragkit.config import OpenAIGeneratorConfig
from ragkit.eval.faithfulness import FaithfulnessResult
from ragkit.eval.judge import (
    CLAIMS_SYSTEM,
    JudgeError,
    LLMJudgeScorer,
    ScoreError,
    parse_claims,
    parse_verdicts,
)
from ragkit.generation.errors import GenerationError

# The judge talks to the local test server only: ignore any OPENAI_*/proxy settings of the machine.
pytestmark = pytest.mark.usefixtures("hermetic_openai_env")

MODEL = "judge-model"
CONTEXT = "Paris is the capital and largest city of France. It has about 2.1 million inhabitants."


def _stage(body: dict[str, Any]) -> str:
    return "claims" if body["messages"][0]["content"] == CLAIMS_SYSTEM else "verdicts"


class JudgeServer:
    """The shared fake server, answering with `script(stage, request_body) -> (status, content)`."""

    def __init__(self) -> None:
        self.script: Callable[[str, dict[str, Any]], tuple[int, str]] = lambda stage, body: (500, "")
        self.http = FakeOpenAIServer(respond=self._respond)
        self.requests = self.http.requests  # path, headers, body, received_at
        self.url = self.http.base_url

    def _respond(self, request: dict[str, Any]) -> Reply:
        status, content = self.script(_stage(request["body"]), request["body"])
        if status == 200:
            return Reply(body=completion(content))
        return Reply(status=status, body=error_body(content or "scripted failure", "test"))

    def stages(self) -> list[str]:
        return [_stage(r["body"]) for r in self.requests]


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    s = JudgeServer()
    with s.http:
        yield s


def config(server: JudgeServer, **overrides: Any) -> OpenAIGeneratorConfig:
    return OpenAIGeneratorConfig(
        model=MODEL, base_url=server.url, api_key="test-key-0123456789", max_retries=0, timeout_s=10, **overrides
    )


def claims_json(*claims: str) -> str:
    return json.dumps({"claims": list(claims)})


def verdicts_json(*verdicts: tuple[bool, str]) -> str:
    return json.dumps(
        {"verdicts": [{"claim": i, "supported": s, "evidence": e} for i, (s, e) in enumerate(verdicts, 1)]}
    )


def test_claims_and_verdicts_are_stored_per_claim(server):
    def script(stage, body):
        if stage == "claims":
            return 200, claims_json("Paris is the capital of France.", "Paris has 10 million inhabitants.")
        return 200, verdicts_json((True, "Paris is the capital and largest city of France."), (False, "about 2.1 million"))

    server.script = script
    result = LLMJudgeScorer(config(server)).score(CONTEXT, "Paris; it has 10 million people.", "What is the capital?")
    assert isinstance(result, FaithfulnessResult)
    assert result.score == 0.5  # fraction of supported claims
    assert [(c.text, c.supported, c.score) for c in result.claims] == [
        ("Paris is the capital of France.", True, 1.0),
        ("Paris has 10 million inhabitants.", False, 0.0),
    ]
    assert result.claims[0].evidence == "Paris is the capital and largest city of France."
    assert result.claims[0].features["evidence_in_context"] == 1.0
    assert result.claims[1].features["evidence_in_context"] == 1.0  # "about 2.1 million" is a real quote

    assert server.stages() == ["claims", "verdicts"]
    claims_req, verdict_req = (r["body"] for r in server.requests)
    assert claims_req["model"] == MODEL and claims_req["temperature"] == 0.0
    assert "What is the capital?" in claims_req["messages"][1]["content"]
    assert "Paris; it has 10 million people." in claims_req["messages"][1]["content"]
    user = verdict_req["messages"][1]["content"]
    assert CONTEXT in user and "```text" in user  # the context is fenced as untrusted data
    assert "1. Paris is the capital of France.\n2. Paris has 10 million inhabitants." in user


def test_unparseable_output_is_retried_with_the_reason(server):
    replies = iter(["Sure! The claims are: Paris is the capital.", "```json\n" + claims_json("Paris is the capital.") + "\n```"])

    def script(stage, body):
        if stage == "claims":
            return 200, next(replies)
        return 200, verdicts_json((True, "Paris is the capital"))

    server.script = script
    result = LLMJudgeScorer(config(server), attempts=3).score(CONTEXT, "Paris is the capital.")
    assert result.score == 1.0 and len(result.claims) == 1
    assert server.stages() == ["claims", "claims", "verdicts"]
    retry = server.requests[1]["body"]["messages"]
    assert retry[2] == {"role": "assistant", "content": "Sure! The claims are: Paris is the capital."}
    assert retry[3]["role"] == "user" and "not valid JSON" in retry[3]["content"]


def test_output_that_stays_unparseable_is_reported_never_a_score(server):
    def script(stage, body):
        question = body["messages"][1]["content"]
        if "BROKEN" in question:
            return 200, '{"claims": "Paris"}'  # valid JSON, wrong shape: still unusable
        if stage == "claims":
            return 200, claims_json("Paris is the capital of France.")
        return 200, verdicts_json((True, "Paris is the capital"))

    server.script = script
    judge = LLMJudgeScorer(config(server), attempts=2)
    with pytest.raises(JudgeError, match=r"claim extraction: unparseable judge output after 2 attempt\(s\).*must be a list"):
        judge.score(CONTEXT, "BROKEN answer")
    server.requests.clear()

    rows = [
        {"context": CONTEXT, "answer": "BROKEN answer"},
        {"context": CONTEXT, "answer": "Paris is the capital.", "question": "Capital?"},
    ]
    results = judge.score_batch(rows)
    assert isinstance(results[0], ScoreError) and "unparseable" in results[0].error
    assert "'{\"claims\": \"Paris\"}'" in results[0].error  # the start of the last reply is shown
    assert isinstance(results[1], FaithfulnessResult) and results[1].score == 1.0
    assert server.stages() == ["claims", "claims", "claims", "verdicts"]


def test_verdicts_that_miss_a_claim_are_retried_then_fail(server):
    def script(stage, body):
        if stage == "claims":
            return 200, claims_json("A.", "B.")
        return 200, verdicts_json((True, ""))  # one verdict for two claims

    server.script = script
    with pytest.raises(JudgeError, match=r"verdicts: .*no verdict for claim\(s\) \[2\]"):
        LLMJudgeScorer(config(server), attempts=3).score(CONTEXT, "A. B.")
    assert server.stages() == ["claims", "verdicts", "verdicts", "verdicts"]


def test_an_answer_without_claims_scores_one(server):
    server.script = lambda stage, body: (200, claims_json())
    judge = LLMJudgeScorer(config(server))
    assert judge.score(CONTEXT, "I don't know.").score == 1.0
    assert judge.score(CONTEXT, "   ").claims == []
    assert server.stages() == ["claims"]  # no verdict request, and none at all for an empty answer


def test_endpoint_failures_are_row_errors_until_the_endpoint_looks_down(server):
    server.script = lambda stage, body: (500, "overloaded")
    judge = LLMJudgeScorer(config(server), max_endpoint_failures=3)
    rows = [(CONTEXT, "Paris.")] * 2
    results = judge.score_batch(rows)
    assert all(isinstance(r, ScoreError) and "HTTP 500" in r.error for r in results)
    with pytest.raises(GenerationError, match="HTTP 500"):
        judge.score_batch([(CONTEXT, "Paris.")] * 3)
    server.requests.clear()
    server.script = lambda stage, body: (404, "no such model")
    with pytest.raises(GenerationError, match="HTTP 404"):
        judge.score_batch([(CONTEXT, "Paris.")] * 3)
    assert len(server.requests) == 1  # a configuration error stops at once


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"verdicts": [{"claim": 1, "supported": "yes", "evidence": ""}]}', "true or false"),
        ('{"verdicts": [{"claim": 1, "supported": true}]}', "missing \\['evidence'\\]"),
        ('{"verdicts": [{"claim": 1, "supported": true, "evidence": "", "why": "x"}]}', "unexpected \\['why'\\]"),
        ('{"verdicts": [{"claim": 2, "supported": true, "evidence": ""}]}', "from 1 to 1"),
        ('{"verdicts": [{"claim": true, "supported": true, "evidence": ""}]}', "claim number"),
        ('[{"claim": 1, "supported": true, "evidence": ""}]', "expected a JSON object"),
        ('{"verdicts": []} trailing', "not valid JSON"),
        ("", "empty"),
    ],
)
def test_verdict_parsing_is_strict(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_verdicts(text, 1)


def test_parsing_accepts_exactly_the_documented_shapes():
    two = {"verdicts": [{"claim": 2, "supported": False, "evidence": ""}, {"claim": 1, "supported": True, "evidence": " q "}]}
    assert parse_verdicts(json.dumps(two), 2) == [(True, "q"), (False, "")]  # ordered by claim number
    with pytest.raises(ValueError, match="more than one verdict"):
        parse_verdicts(json.dumps({"verdicts": [two["verdicts"][0]] * 2}), 2)
    assert parse_claims('```json\n{"claims": ["A  b", "C"]}\n```') == ["A b", "C"]
    assert parse_claims('{"claims": []}') == []
    for bad in ('{"claims": ["A", ""]}', '{"claims": [1]}', '{"claims": ["A"], "note": "x"}', "claims: [A]"):
        with pytest.raises(ValueError):
            parse_claims(bad)


def test_cli_llm_judge_reports_errors_and_auroc(server, tmp_path):
    def script(stage, body):
        user = body["messages"][1]["content"]
        if "garbled" in user:
            return 200, "not json at all"
        if stage == "claims":
            return 200, claims_json("WRONG claim." if "WRONG" in user else "Claim one.")
        supported = "WRONG" not in user
        return 200, verdicts_json((supported, "Paris is the capital"))

    server.script = script
    pipeline = tmp_path / "judge.yaml"
    pipeline.write_text(
        f"name: judge\ngenerator:\n  name: openai\n  model: {MODEL}\n  base_url: {server.url}\n  max_retries: 0\n"
    )
    rows = [
        {"id": "a", "context": CONTEXT, "question": "Q?", "answer": "Paris", "label": 1},
        {"id": "b", "context": CONTEXT, "question": "Q?", "answer": "WRONG Lyon", "label": 0},
        {"id": "c", "context": CONTEXT + " WRONG", "question": "Q?", "answer": "Paris again", "label": 1},
        {"id": "d", "context": CONTEXT, "question": "Q?", "answer": "garbled", "label": 0},
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scores = tmp_path / "scores.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", "eval", "faithfulness", str(data), "--scorer", "llm-judge",
         "--pipeline", str(pipeline), "--out", str(scores), "--json"],
        capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 1, result.stderr  # one row could not be scored
    summary = json.loads(result.stdout)
    assert summary["scorer"] == "llm-judge" and summary["rows"] == 4 and summary["errors"] == 1
    assert summary["mean_score"] == pytest.approx(1 / 3)
    # scored rows: a (1, 1.0), b (0, 0.0), c (1, 0.0): AUROC = P(pos > neg) + 0.5 P(tie) = (1 + 0.5) / 2
    assert summary["auroc"] == pytest.approx(0.75) and summary["labelled_rows"] == 3
    assert 0 <= summary["accuracy"] <= 1 and "best_threshold" in summary
    written = [json.loads(line) for line in scores.read_text().splitlines()]
    assert [w["id"] for w in written] == ["a", "b", "c", "d"]
    assert written[0]["claims"] == [
        {"text": "Claim one.", "supported": True, "score": 1.0, "evidence": "Paris is the capital"}
    ]
    assert set(written[3]) == {"id", "error", "label"} and "unparseable" in written[3]["error"]
    assert all("score" not in w or w["score"] == w["score"] for w in written)  # no NaN anywhere
    assert "NaN" not in scores.read_text() and "NaN" not in result.stdout


def test_cli_rejects_bad_scorer_and_non_openai_pipeline(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"id": 1, "context": "c", "answer": "a"}) + "\n")
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "ragkit.cli", "eval", "faithfulness", str(data), *args],
        capture_output=True, text=True, timeout=300,
    )
    bad = run("--scorer", "gpt-judge")
    assert bad.returncode == 2 and "unknown scorer 'gpt-judge'" in bad.stderr
    root = Path(__file__).resolve().parents[1]
    extractive = run("--scorer", "llm-judge", "--pipeline", str(root / "pipelines" / "default.yaml"))
    assert extractive.returncode == 2 and "needs an 'openai' generator" in extractive.stderr
    data.write_text(json.dumps({"id": 1, "answer": "a"}) + "\n")
    missing = run()
    assert missing.returncode == 2 and "rows.jsonl" in missing.stderr and "'context'" in missing.stderr
