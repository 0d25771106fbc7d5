"""`ragkit eval qa`: end-to-end QA evaluation on BEIR directories with answers (real model, faiss, BM25)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragkit.cli import app
from ragkit.eval.qa import is_qa_metric, parse_bounds

REPO = Path(__file__).resolve().parent.parent
HALUEVAL = REPO.parent / "shared" / "datasets" / "faithfulness" / "halueval-qa-dev.jsonl"

PASSAGES = {
    "p1": "The harbour tram line opens in 2029 and will have nine stops along Harbour Street.",
    "p2": "Anna Berg chairs the transport committee of the city council since 2021.",
    "p3": "A sourdough starter is fed twice a day with equal weights of rye flour and water.",
    "p4": "The Mersenne Twister generator has a period of 2**19937-1 and produces 53-bit floats.",
    "p5": "ZeroDivisionError is raised when the second argument of a division is zero.",
}
QUESTIONS = [
    ("q1", "When does the harbour tram line open?", ["2029"], "p1"),
    ("q2", "Who chairs the transport committee?", ["Anna Berg"], "p2"),
    ("q3", "How often is a sourdough starter fed?", ["twice a day"], "p3"),
    ("q4", "What is the period of the Mersenne Twister?", ["2**19937-1"], "p4"),
    ("q5", "Which exception is raised when dividing by zero?", ["ZeroDivisionError"], "p5"),
]


def write_dataset(root: Path, answers: bool = True) -> Path:
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as handle:
        for doc_id, text in PASSAGES.items():
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with (root / "queries.jsonl").open("w") as handle:
        for query_id, text, refs, _ in QUESTIONS:
            row = {"_id": query_id, "text": text, **({"answers": refs} if answers else {})}
            handle.write(json.dumps(row) + "\n")
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, _, _, d in QUESTIONS)
    )
    return root


def test_bounds_and_metric_names() -> None:
    assert parse_bounds(["containment=0.5", "answer_in_context@5=0.7"], "--min") == {
        "containment": 0.5, "answer_in_context@5": 0.7,
    }
    assert is_qa_metric("answer_in_context@10") and not is_qa_metric("answer_in_context@x")
    with pytest.raises(ValueError, match="unknown metric 'contanment'"):
        parse_bounds(["contanment=0.5"], "--min")
    with pytest.raises(ValueError, match="expected METRIC=VALUE"):
        parse_bounds(["containment"], "--min")


@pytest.mark.slow
def test_eval_qa_cli_metrics_report_gate_and_unanswerable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    dataset = write_dataset(tmp_path / "qa")
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "qa", str(dataset), "--json", "--report", "out/report.md",
                                 "--min", "answer_in_context@5=1.0", "--min", "containment=0.6"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    metrics = summary["metrics"]
    assert metrics["answer_in_context@5"] == 1.0  # every gold passage is retrieved, answer included
    assert metrics["containment"] >= 0.6 and metrics["citation_precision"] >= 0.6
    assert metrics["abstention_recall"] is None  # nothing was made unanswerable
    assert {"dense", "sparse", "generate"} <= set(summary["stage_ms"])
    assert summary["passed"] and all(check["passed"] for check in summary["gate"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| containment |" in report and "## Gate: PASSED" in report
    answers = json.loads((tmp_path / "out" / "report.json").read_text())["samples"]
    assert len(answers) == 5 and all("answer" in a for a in answers)

    # 40 % unanswerable: two questions lose their passage; abstention is scored on them.
    result = runner.invoke(app, ["eval", "qa", str(dataset), "--json", "--unanswerable", "0.4",
                                 "--min", "abstention_recall=1.01"])
    assert result.exit_code == 1  # the gate fails (recall cannot exceed 1), and says so
    summary = json.loads(result.output)
    assert summary["unanswerable"] == 2 and summary["passages_removed"] == 2 and summary["passages_indexed"] == 3
    assert summary["metrics"]["abstention_recall"] is not None
    assert not summary["passed"]


def test_eval_qa_bad_input_exits_2(tmp_path: Path) -> None:
    runner = CliRunner()
    no_answers = write_dataset(tmp_path / "plain", answers=False)
    result = runner.invoke(app, ["eval", "qa", str(no_answers)])
    assert result.exit_code == 2 and "no judged query has 'answers'" in result.output
    result = runner.invoke(app, ["eval", "qa", str(no_answers), "--min", "bogus=1"])
    assert result.exit_code == 2 and "unknown metric 'bogus'" in result.output


@pytest.mark.slow
def test_halueval_slice_in_ci(tmp_path: Path) -> None:
    """The CI slice: HaluEval QA built by the repo's script, 100 questions, 20 % unanswerable, gated."""
    if not HALUEVAL.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{HALUEVAL} is missing: CI must have ../shared/datasets")
        pytest.skip(f"{HALUEVAL} not present")
    out = tmp_path / "halueval-qa"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_halueval_beir.py"), "--out", str(out)], check=True)
    result = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", "eval", "qa", str(out), "--max-queries", "100", "--unanswerable", "0.2",
         "--json", "--min", "answer_in_context@5=0.7", "--min", "containment=0.5", "--min", "citation_precision=0.6",
         "--min", "abstention_recall=0.6", "--min", "abstention_precision=0.4"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["questions"] == 100 and summary["unanswerable"] == 20


@pytest.mark.slow
def test_suite_qa_dataset_kind(tmp_path: Path) -> None:
    from ragkit.eval.suite import run_suite

    write_dataset(tmp_path / "qa")
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"name: tiny-qa\ndatasets:\n  - {{name: tiny, kind: qa, path: qa, unanswerable: 0.2}}\n"
        f"pipelines: [{REPO / 'pipelines' / 'default.yaml'}]\n"
        "metrics: [answer_in_context@5, containment, abstention_recall]\n"
        "thresholds:\n  - {metric: answer_in_context@5, min: 1.0}\n  - {metric: abstention_recall, min: 0.0}\n"
    )
    result = run_suite(suite, tmp_path / "report", cache_root=tmp_path / "cache")
    (pair,) = result.results
    assert pair.kind == "qa" and pair.counts["unanswerable"] == 1
    assert pair.metrics["answer_in_context@5"] == 1.0 and pair.metrics["abstention_recall"] is not None
    assert result.passed and (tmp_path / "report" / "report.md").is_file()
