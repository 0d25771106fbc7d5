"""`ragkit eval faithfulness` with the offline scorer on a slice of the real HaluEval-QA dev file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HALUEVAL = ROOT.parent / "shared" / "datasets" / "faithfulness" / "halueval-qa-dev.jsonl"
pytestmark = pytest.mark.skipif(not HALUEVAL.exists(), reason=f"shared dataset not found at {HALUEVAL}")


def test_offline_scores_auroc_and_per_row_output(tmp_path):
    scores = tmp_path / "scores.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", "eval", "faithfulness", str(HALUEVAL), "--max-rows", "80",
         "--out", str(scores), "--json"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)  # --json: stdout is exactly one JSON document
    assert summary["scorer"] == "offline" and summary["rows"] == 80 and summary["errors"] == 0
    assert summary["labelled_rows"] == 80
    # 0.970 on all 2,000 rows; a scorer that ignored the context would sit near 0.5
    assert summary["auroc"] > 0.85 and summary["accuracy"] > 0.8
    assert 0.0 <= summary["best_threshold"] <= 1.0 and 0.0 < summary["mean_score"] < 1.0
    assert set(summary["timings"]) >= {"load_s", "score_s", "rows_per_s"}

    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    source = [json.loads(line) for line in HALUEVAL.read_text().splitlines()[:80]]
    assert [r["id"] for r in rows] == [s["id"] for s in source]
    assert all(0.0 <= r["score"] <= 1.0 and r["claims"] and r["label"] in (0, 1) for r in rows)
    claim = rows[0]["claims"][0]
    assert set(claim) == {"text", "supported", "score", "evidence"}
    assert claim["evidence"] in source[0]["context"]  # evidence is a sentence of the context
    ok = [r["score"] for r in rows if r["label"] == 1]
    bad = [r["score"] for r in rows if r["label"] == 0]
    assert sum(ok) / len(ok) > sum(bad) / len(bad)
