"""`ragkit eval retrieval` on a slice of the real boolq-dev dataset (built in a temp dir).

The slice keeps the first 150 judged queries, their relevant passages and 250 other passages,
so the whole pipeline (ingest, batched retrieval, fusion, TREC output) runs in CI time.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOLQ = ROOT.parent / "shared" / "datasets" / "boolq-dev"
pytestmark = pytest.mark.skipif(not BOOLQ.exists(), reason=f"shared dataset not found at {BOOLQ}")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("boolq-slice")
    qrels_lines = (BOOLQ / "qrels" / "test.tsv").read_text().splitlines()
    header, rows = qrels_lines[0], [line.split("\t") for line in qrels_lines[1:]]
    queries = [json.loads(line) for line in (BOOLQ / "queries.jsonl").read_text().splitlines()]
    judged = {q for q, _, _ in rows}
    keep = [q for q in queries if q["_id"] in judged][:150]
    keep_ids = {q["_id"] for q in keep}
    relevant = {d for q, d, _ in rows if q in keep_ids}
    corpus = [json.loads(line) for line in (BOOLQ / "corpus.jsonl").read_text().splitlines()]
    others = [c for c in corpus if c["_id"] not in relevant][:250]
    passages = [c for c in corpus if c["_id"] in relevant] + others
    (out / "qrels").mkdir()
    (out / "qrels" / "test.tsv").write_text(
        "\n".join([header] + ["\t".join(r) for r in rows if r[0] in keep_ids]) + "\n"
    )
    (out / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in keep))
    (out / "corpus.jsonl").write_text("".join(json.dumps(c) + "\n" for c in passages))
    return out


def ragkit(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "ragkit.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return result


def test_eval_retrieval_json_run_file_and_cache(dataset, tmp_path):
    run_file = tmp_path / "run.trec"
    first = json.loads(ragkit("eval", "retrieval", str(dataset), "--run-out", str(run_file), "--json", cwd=tmp_path).stdout)
    assert set(first) >= {"dataset", "pipeline", "queries", "metrics", "timings"}
    assert first["queries"] == 150 and first["pipeline"] == "default"
    assert set(first["metrics"]) == {"ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100"}
    assert all(0.0 <= v <= 1.0 for v in first["metrics"].values())
    assert first["metrics"]["ndcg@10"] > 0.7  # measured ~0.95 on this slice; a broken ranking scores far lower
    assert first["timings"]["texts_embedded"] > 0

    # the run file is standard TREC, and ranx scores it exactly as we do
    ranx = pytest.importorskip("ranx")
    lines = run_file.read_text().splitlines()
    assert all(len(line.split()) == 6 and line.split()[1] == "Q0" for line in lines)
    qrels = {}
    for line in (dataset / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    ranx_ndcg = ranx.evaluate(ranx.Qrels(qrels), ranx.Run.from_file(str(run_file), kind="trec"), "ndcg@10")
    assert ranx_ndcg == pytest.approx(first["metrics"]["ndcg@10"], abs=1e-6)

    # second run: the cached index is reused, nothing is embedded again; --compare shows variants
    second = json.loads(ragkit("eval", "retrieval", str(dataset), "--compare", "--max-queries", "50", "--json", cwd=tmp_path).stdout)
    assert second["timings"]["texts_embedded"] == 0
    # no reranker configured: no "+rerank" variant (it would only repeat "fused")
    assert set(second["variants"]) == {"sparse", "dense", "fused"}
    assert second["fusion"]["method"] == "adaptive" and second["fusion"]["normalization"] == "zscore"
    assert set(second["fusion_weights"]) == {"dense", "sparse"}
    assert "metrics" not in second and second["queries"] == 50


def test_dataset_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad"
    (bad / "qrels").mkdir(parents=True)

    def run():
        return subprocess.run(
            [sys.executable, "-m", "ragkit.cli", "eval", "retrieval", str(bad)],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )

    missing = run()
    assert missing.returncode == 2 and "no corpus.jsonl; expected a BEIR directory" in missing.stderr
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    no_qrels = run()
    assert no_qrels.returncode == 2 and "qrels/test.tsv: file not found" in no_qrels.stderr
    (bad / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (bad / "queries.jsonl").write_text('{"_id": "q1", "text": "what is x"}\n')
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\nnot json\n')
    broken = run()
    assert broken.returncode == 2
    assert "corpus.jsonl:2" in broken.stderr
