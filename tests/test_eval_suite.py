"""Eval suites: validation, threshold checks, the report, and `ragkit eval suite` end to end.

The slow tests run the shipped `eval/sample.yaml` through the CLI (this is the small suite CI
runs: its thresholds gate `make test`), then a reduced copy with an impossible threshold, which
must exit 1 and name the failing check in the report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragkit.eval.metrics import DatasetError
from ragkit.eval.suite import (
    PairResult,
    SuiteError,
    SuiteResult,
    ThresholdSpec,
    check_thresholds,
    load_questions,
    load_suite,
    write_report,
)
from ragkit.eval.suite.runner import _sample

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "eval" / "sample.yaml"


def ragkit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ragkit.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=1800
    )


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- validation ----------------------------------------------------------------------------------

MINIMAL = """\
name: t
datasets:
  - {name: d, kind: questions, path: q.jsonl, corpus: [docs]}
pipelines: [p.yaml]
metrics: [hit_rate@5]
"""


@pytest.mark.parametrize(
    "change, message",
    [
        (("kind: questions", "kind: questions, kindd: beir"), "datasets.0.kindd: Extra inputs are not permitted"),
        (("kind: questions", "kind: csv"), "datasets.0.kind"),
        (("metrics: [hit_rate@5]", "metrics: [hit_rate@5, ndcgg@10]"), "unknown metric 'ndcgg@10'"),
        (("metrics: [hit_rate@5]", "metrics: [hit_rate@5]\nthresholds: [{metric: mrr@10}]"), "needs 'min' and/or 'max'"),
        (("metrics: [hit_rate@5]", "metrics: [hit_rate@5]\nthresholds: [{metric: mrr@10, min: 0.5, dataset: x}]"),
         "thresholds.0.dataset: 'x' is not one of the datasets"),
        (("metrics: [hit_rate@5]", "metrics: [hit_rate@5]\nthresholds: [{metric: mrr@10, minimum: 0.5}]"),
         "thresholds.0.minimum: Extra inputs"),
        ((", corpus: [docs]", ""), "needs 'corpus'"),
        (("name: t", "name: ../escape"), "name: Value error"),
    ],
)
def test_invalid_suites_name_the_field(tmp_path, change, message):
    path = write_suite(tmp_path / "s.yaml", MINIMAL.replace(*change))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_valid_suite_and_wanted_metrics(tmp_path):
    text = MINIMAL.replace("metrics: [hit_rate@5]", "metrics: [hit_rate@5, faithfulness]\nthresholds: [{metric: mrr@10, min: 0.5}]")
    suite = load_suite(write_suite(tmp_path / "s.yaml", text))
    assert suite.wanted_metrics() == ["hit_rate@5", "faithfulness", "mrr@10"]  # thresholds add their metric
    assert suite.datasets[0].sample_questions == 20 and suite.datasets[0].max_queries is None
    shipped = [load_suite(p) for p in sorted((ROOT / "eval").glob("*.yaml"))]
    assert {s.name for s in shipped} >= {"sample", "boolq-dev"}


def test_pipeline_variants_deep_merge_overrides(tmp_path):
    from ragkit.config import PipelineError, load_pipeline
    from ragkit.eval.suite import PipelineSpec
    from ragkit.eval.suite.runner import _load_suite_pipeline

    default = ROOT / "pipelines" / "default.yaml"
    base = load_pipeline(default)
    variant = _load_suite_pipeline(tmp_path, PipelineSpec(
        path=str(default), name="v",
        override={"retrieval": {"fusion": {"name": "convex", "weights": {"dense": 0.0}}, "rerank": {"name": "none"}, "top_k": 3}},
    ))
    assert variant.name == "v" and variant.retrieval.top_k == 3 and variant.retrieval.rerank.name == "none"
    # another component: its section replaces the file's (adaptive's settings mean nothing to convex)
    assert variant.retrieval.fusion.name == "convex" and variant.retrieval.fusion.weights == {"dense": 0.0}
    assert variant.index_signature() == base.index_signature()  # untouched sections stay as in the file
    assert variant.generator == base.generator
    with pytest.raises(PipelineError, match=r"(?s)override for 'w'.*retrieval\.top_kk"):
        _load_suite_pipeline(tmp_path, PipelineSpec(path=str(default), name="w", override={"retrieval": {"top_kk": 3}}))


def test_questions_file_errors_name_file_and_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"id": "a", "question": "Q?", "answer": null, "source": null}\n'
        '{"id": "b", "question": "Q2?", "answer": "x", "source": "f.md", "keywords": ["x"], "page": 2}\n'
    )
    rows = load_questions(path)
    assert rows[0].expected_sources() == [] and rows[1].expected_sources() == ["f.md"]
    path.write_text(path.read_text() + '{"id": "a", "question": "again"}\n')
    with pytest.raises(DatasetError, match=r"q\.jsonl:3: duplicate id 'a' \(first on line 1\)"):
        load_questions(path)
    path.write_text('{"id": "a", "question": "Q?", "keywords": "x"}\n')
    with pytest.raises(DatasetError, match=r"q\.jsonl:1: field 'keywords'"):
        load_questions(path)


def test_sample_is_seeded_and_keeps_file_order():
    items = list(range(30))
    first, again = _sample(items, 5, seed=0), _sample(items, 5, seed=0)
    assert first == again == sorted(first) and len(set(first)) == 5
    assert _sample(items, 5, seed=1) != first
    assert _sample(items, None, seed=0) == items and _sample(items, 99, seed=0) == items


# --- thresholds and the report (no models) ----------------------------------------------------------


def pair(dataset: str, pipeline: str, **metrics: float | None) -> PairResult:
    return PairResult(
        dataset=dataset, kind="questions", pipeline=pipeline, pipeline_file=f"{pipeline}.yaml", metrics=metrics,
        counts={"questions": 3, "sampled": 3}, timings={"total_s": 1.0}, samples=[],
    )


def test_threshold_checks():
    results = [pair("d1", "a", mrr=0.8, faithfulness=None), pair("d1", "b", mrr=0.5, faithfulness=0.9), pair("d2", "a", mrr=0.95)]
    specs = [
        ThresholdSpec(metric="mrr", min=0.6),  # every pair
        ThresholdSpec(metric="mrr", max=0.9, dataset="d2"),
        ThresholdSpec(metric="faithfulness", min=0.5, pipeline="a", dataset="d1"),  # not measured: fails
        ThresholdSpec(metric="faithfulness", min=0.8, max=0.95, pipeline="b"),  # both bounds checked
    ]
    checks = [(c.metric, c.bound, c.dataset, c.pipeline, c.passed) for c in check_thresholds(specs, results)]
    assert checks == [
        ("mrr", "min", "d1", "a", True),
        ("mrr", "min", "d1", "b", False),
        ("mrr", "min", "d2", "a", True),
        ("mrr", "max", "d2", "a", False),
        ("faithfulness", "min", "d1", "a", False),
        ("faithfulness", "min", "d1", "b", True),
        ("faithfulness", "max", "d1", "b", True),
    ]
    assert check_thresholds([ThresholdSpec(metric="mrr", min=0.8)], [pair("d", "a", mrr=0.8)])[0].passed  # inclusive


def test_report_files_from_a_result(tmp_path):
    suite = load_suite(write_suite(tmp_path / "s.yaml", MINIMAL))
    results = [pair("d", "a", hit_rate=0.9, faithfulness=None), pair("d", "b", hit_rate=0.4, faithfulness=0.7)]
    checks = check_thresholds([ThresholdSpec(metric="hit_rate", min=0.5)], results)
    result = SuiteResult(
        suite="t", suite_file="s.yaml", report_dir=str(tmp_path / "r"), started_at="now", duration_s=1.0,
        passed=False, environment={}, results=results, thresholds=checks,
    )
    write_report(result, suite, tmp_path / "r")
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["passed"] is False and [f["pipeline"] for f in data["failures"]] == ["b"]
    report = (tmp_path / "r" / "report.md").read_text()
    assert "FAILED (1 of 2 checks)" in report
    assert "- **FAIL** `hit_rate >= 0.5 (d / b): 0.4000`" in report
    assert "| hit_rate | 0.900 | **0.400** (fail) |" in report and "| faithfulness | n/a | 0.700 |" in report
    assert (tmp_path / "r" / "pipelines.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_suites_exit_2_before_loading_models(tmp_path):
    bad = write_suite(tmp_path / "bad.yaml", MINIMAL.replace("kind: questions", "kind: questions, kindd: x"))
    result = ragkit("eval", "suite", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and "datasets.0.kindd" in result.stderr
    (tmp_path / "q.jsonl").write_text('{"id": "a", "question": "Q?"}\n')
    (tmp_path / "docs").mkdir()
    unknown = write_suite(
        tmp_path / "unknown.yaml",
        MINIMAL.replace("[p.yaml]", f"[{ROOT / 'pipelines' / 'default.yaml'}]")
        + "thresholds: [{metric: hit_rate@5, min: 0.5, pipeline: nope}]\n",
    )
    result = ragkit("eval", "suite", str(unknown), cwd=tmp_path)
    assert result.returncode == 2 and "thresholds.0.pipeline: 'nope' is not the name of a suite pipeline" in result.stderr
    missing = write_suite(tmp_path / "missing.yaml", MINIMAL)
    result = ragkit("eval", "suite", str(missing), cwd=tmp_path)
    assert result.returncode == 2 and "p.yaml" in result.stderr
    assert not (tmp_path / "reports").exists()


# --- end to end: the shipped sample suite ------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("suite-run")  # the cwd: index cache in .ragkit/eval/, shared by the runs


@pytest.fixture(scope="module")
def sample_run(workdir):
    report = workdir / "sample-report"
    result = ragkit("eval", "suite", str(SAMPLE), "--report", str(report), "--json", cwd=workdir)
    return result, report


@pytest.mark.slow
def test_sample_suite_passes_and_writes_a_sensible_report(sample_run):
    result, report = sample_run
    failing = [t for t in json.loads(result.stdout or "{}").get("thresholds", []) if not t["passed"]]
    assert result.returncode == 0, f"failing thresholds: {failing}\n{result.stderr[-3000:]}"
    summary = json.loads(result.stdout)
    assert summary["passed"] is True and summary["thresholds"], "the sample suite must gate something"

    data = json.loads((report / "results.json").read_text())
    assert [(r["dataset"], r["pipeline"]) for r in data["results"]] == [
        ("solar-system", "default"), ("solar-system", "bm25-only")
    ]
    default = data["results"][0]
    assert default["counts"]["questions"] == 30 and default["counts"]["retrieval_queries"] == 28
    assert default["counts"]["sampled"] == 30 and default["counts"]["unanswerable"] == 2
    assert all(v is None or 0.0 <= v <= 1.0 for r in data["results"] for v in r["metrics"].values())
    assert default["metrics"]["hit_rate@5"] >= 0.9 and default["metrics"]["abstention_accuracy"] == 1.0
    by_id = {s["id"]: s for s in default["samples"]}
    assert by_id["q29"]["abstained"] and "faithfulness" not in by_id["q29"]  # "I don't know" claims nothing
    assert by_id["q23"]["expected_sources"] == ["data/missions/voyager_program.pdf"]
    assert 0.0 <= by_id["q23"]["faithfulness"] <= 1.0 and by_id["q23"]["containment"] == 1.0

    md = (report / "report.md").read_text()
    assert md.startswith("# Eval suite `sample`: PASSED")
    assert "| metric | default | bm25-only |" in md and "| hit_rate@5 |" in md
    assert "- PASS `hit_rate@5 >= " in md
    png = (report / "pipelines.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.slow
def test_impossible_threshold_fails_the_suite_and_is_named(workdir, sample_run):
    reduced = write_suite(
        workdir / "reduced.yaml",
        f"""\
name: reduced
datasets:
  - name: solar-system
    kind: questions
    path: {ROOT / 'data' / 'questions.jsonl'}
    corpus: [{ROOT / 'data'}]
    sources_root: {ROOT}
    sample_questions: 4
pipelines: [{ROOT / 'pipelines' / 'default.yaml'}]
metrics: [hit_rate@5, faithfulness]
thresholds:
  - {{metric: hit_rate@5, min: 0.5}}
  - {{metric: token_f1, min: 0.99}}
""",
    )
    result = ragkit("eval", "suite", str(reduced), cwd=workdir)  # default report dir: reports/<name>
    assert result.returncode == 1, result.stderr[-3000:]
    assert "FAIL token_f1 >= 0.99 (solar-system / default)" in result.stdout
    report = workdir / "reports" / "reduced"
    data = json.loads((report / "results.json").read_text())
    assert data["passed"] is False
    assert [(f["metric"], f["bound"], f["limit"]) for f in data["failures"]] == [("token_f1", "min", 0.99)]
    assert data["results"][0]["counts"]["sampled"] == 4
    assert data["results"][0]["timings"]["texts_embedded"] == 0  # the sample run's cached index was reused
    md = (report / "report.md").read_text()
    assert md.startswith("# Eval suite `reduced`: FAILED (1 of 2 checks)")
    assert "- **FAIL** `token_f1 >= 0.99 (solar-system / default)" in md
    assert "## Failures" in md and "- `token_f1` on solar-system / default:" in md
    assert (report / "pipelines.png").exists()
