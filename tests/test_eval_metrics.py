"""ragkit.eval: metrics (ranx behind ragkit's Qrels/Run, checked on hand-computed values) and the
dataset readers, cross-checked against ranx's own file readers."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import ranx
from hypothesis import strategies as st

from ragkit.eval import (
    DatasetError,
    Qrels,
    Run,
    evaluate,
    evaluate_per_query,
    load_beir,
    load_qa_jsonl,
    parse_metric,
)

# ranx casts numba hashes internally; the warning is about ranx, not about these tests.
pytestmark = pytest.mark.filterwarnings("ignore:unsafe cast from uint64 to int64")

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
BOOLQ = DATASETS / "boolq-dev"
HALUEVAL = DATASETS / "faithfulness" / "halueval-qa-dev.jsonl"

N_QUERIES = 300
DEPTH = 100
KS = (1, 5, 10, 100)
RANX_METRICS = ("recall", "precision", "hit_rate", "mrr", "ndcg", "map")
ALL_METRICS = [f"{m}@{k}" for m in RANX_METRICS for k in KS]


def _needs(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real evaluation data not found at {path} (see ../shared/datasets/README.md)")


# ---------------------------------------------------------------------------------------------
# (1) Real BM25 run over boolq-dev, every metric vs ranx
# ---------------------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


@pytest.fixture(scope="module")
def boolq_bm25() -> dict:
    """A self-contained BM25 oracle run (rank_bm25) for the first N_QUERIES queries.

    Files are parsed here with plain json/csv so the ranx side does not depend on our readers.
    """
    _needs(BOOLQ)
    from rank_bm25 import BM25Okapi

    docs = [json.loads(line) for line in (BOOLQ / "corpus.jsonl").open(encoding="utf-8")]
    queries = [json.loads(line) for line in (BOOLQ / "queries.jsonl").open(encoding="utf-8")]
    queries = queries[:N_QUERIES]
    doc_ids = [d["_id"] for d in docs]
    bm25 = BM25Okapi([_tokens(d["title"] + " " + d["text"]) for d in docs])

    run: dict[str, dict[str, float]] = {}
    for i, query in enumerate(queries):
        if i % 37 == 5:
            continue  # leave a few queries without results: they must score 0, not vanish
        scores = bm25.get_scores(_tokens(query["text"]))
        top = np.argsort(-scores, kind="stable")[:DEPTH]
        # Insert in corpus order, not rank order, so ranking (and tie-breaking) is exercised.
        run[query["_id"]] = {doc_ids[j]: float(scores[j]) for j in np.sort(top)}

    wanted = {q["_id"] for q in queries}
    qrels: dict[str, dict[str, int]] = {}
    lines = (BOOLQ / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        q_id, doc_id, score = line.split("\t")
        if q_id in wanted:
            qrels.setdefault(q_id, {})[doc_id] = int(score)
    return {"run": run, "qrels": qrels}


# ---------------------------------------------------------------------------------------------
# (2) Hand-computed examples: graded relevance, ties, missing queries
# ---------------------------------------------------------------------------------------------

# Grades: a=3, b=2, c=1 relevant (R=3); z=0 judged non-relevant; x unjudged.
HAND_QRELS = {"q1": {"a": 3, "b": 2, "c": 1, "z": 0}}
# b and z tie at 0.7; with <= 16 documents ties keep insertion order, so the ranking is
# x, b, z, a, c  -> grades 0, 2, 0, 3, 1.
HAND_RUN = {"q1": {"x": 0.9, "b": 0.7, "z": 0.7, "a": 0.5, "c": 0.1}}

L3, L5, L6 = math.log2(3), math.log2(5), math.log2(6)
HAND_EXPECTED = {
    "hits@3": 1.0,
    "hit_rate@1": 0.0,
    "hit_rate@3": 1.0,
    "precision@3": 1 / 3,
    "precision@10": 3 / 10,  # run shorter than k still divides by k (ranx)
    "precision": 3 / 5,  # no cutoff: divide by run length
    "recall@3": 1 / 3,
    "recall@5": 1.0,
    "mrr": 1 / 2,
    "mrr@1": 0.0,
    "map@3": (1 / 2) / 3,  # divides by R, not min(R, k)
    "map@5": (1 / 2 + 2 / 4 + 3 / 5) / 3,
    "ndcg@1": 0.0,
    "ndcg@3": (2 / L3) / (3 + 2 / L3 + 1 / 2),
    "ndcg@5": (2 / L3 + 3 / L5 + 1 / L6) / (3 + 2 / L3 + 1 / 2),
    "ndcg_burges@5": (3 / L3 + 7 / L5 + 1 / L6) / (7 + 3 / L3 + 1 / 2),
}


def test_hand_computed_graded_example() -> None:
    scores = evaluate(Qrels(HAND_QRELS), Run(HAND_RUN), list(HAND_EXPECTED))
    for metric, expected in HAND_EXPECTED.items():
        assert scores[metric] == pytest.approx(expected, abs=1e-12), metric
    assert scores["ndcg@5"] == pytest.approx(0.6175617, abs=1e-6)  # the formula, evaluated


def test_ties_keep_insertion_order_for_short_lists() -> None:
    qrels = Qrels({"q": {"z": 1}})
    assert evaluate(qrels, Run({"q": {"x": 0.9, "b": 0.7, "z": 0.7}}), "mrr")["mrr"] == 1 / 3
    assert evaluate(qrels, Run({"q": {"x": 0.9, "z": 0.7, "b": 0.7}}), "mrr")["mrr"] == 1 / 2


def test_missing_run_query_and_unjudged_query_score_zero_but_count() -> None:
    qrels = Qrels(
        {
            "hit": {"a": 1},
            "absent": {"a": 1},  # no run entry
            "nothing_relevant": {"a": 0},  # judged, but no relevant document
        }
    )
    run = Run({"hit": {"a": 1.0, "b": 0.5}, "nothing_relevant": {"a": 1.0}, "extra": {"a": 1.0}})
    per_query = evaluate_per_query(qrels, run, ["ndcg@10", "recall@10"])
    assert per_query["ndcg@10"] == {"hit": 1.0, "absent": 0.0, "nothing_relevant": 0.0}
    assert evaluate(qrels, run, ["ndcg@10", "recall@10"]) == {"ndcg@10": 1 / 3, "recall@10": 1 / 3}


def test_hits_is_a_count_and_hit_rate_is_binary() -> None:
    qrels = Qrels({"q": {"a": 1, "b": 2}})
    run = Run({"q": {"a": 2.0, "b": 1.0}})
    assert evaluate(qrels, run, ["hits@10", "hit_rate@10"]) == {"hits@10": 2.0, "hit_rate@10": 1.0}


@pytest.mark.parametrize("name", ["hits@k", "ndcg@0", "NDCG@10", "recall@-1", "f1@5", "ndcg@10 "])
def test_bad_metric_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        parse_metric(name)


def test_parse_metric() -> None:
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    assert parse_metric("map") == ("map", None)
    assert parse_metric("hit_rate@100") == ("hit_rate", 100)


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Run({"q": {"a": float("nan")}})
    with pytest.raises(ValueError, match="int"):
        Qrels({"q": {"a": 1.5}})
    with pytest.raises(ValueError, match="no queries"):
        evaluate(Qrels({}), Run({}), "ndcg@10")


_doc_ids = st.sampled_from([f"d{i}" for i in range(25)])
_grades = st.dictionaries(_doc_ids, st.integers(0, 3), max_size=8)
# Few distinct score values on purpose: ties are where implementations disagree.
_scores = st.dictionaries(
    _doc_ids, st.sampled_from([0.0, 0.5, 1.0, 2.0]), max_size=25
)


# ---------------------------------------------------------------------------------------------
# (3) TREC files
# ---------------------------------------------------------------------------------------------


def test_trec_run_round_trip_matches_ranx(boolq_bm25: dict, tmp_path: Path) -> None:
    run_dict, qrels_dict = boolq_bm25["run"], boolq_bm25["qrels"]
    run, qrels = Run(run_dict), Qrels(qrels_dict)
    path = tmp_path / "bm25.trec"
    run.to_trec(path, tag="bm25")

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == sum(len(d) for d in run_dict.values())
    q_id, q0, doc_id, rank, score, tag = lines[0].split()
    assert (q0, rank, tag) == ("Q0", "1", "bm25") and doc_id == max(run_dict[q_id], key=run_dict[q_id].get)
    assert float(score) == run_dict[q_id][doc_id]  # repr round-trips floats exactly

    back = Run.from_trec(path)
    assert back == run
    theirs = ranx.evaluate(
        ranx.Qrels(qrels_dict),
        ranx.Run.from_file(str(path), kind="trec"),
        "ndcg@10",
        make_comparable=True,
    )
    assert evaluate(qrels, run, "ndcg@10")["ndcg@10"] == pytest.approx(theirs, abs=1e-6)
    assert evaluate(qrels, back, "ndcg@10")["ndcg@10"] == pytest.approx(theirs, abs=1e-6)


def test_trec_qrels_read_like_ranx(tmp_path: Path) -> None:
    path = tmp_path / "qrels.txt"
    path.write_text("q1 0 a 2\nq1 0 b 0\nq2 0 c 1\n", encoding="utf-8")
    qrels = Qrels.from_trec(path)
    assert qrels.to_dict() == {"q1": {"a": 2, "b": 0}, "q2": {"c": 1}}
    theirs = ranx.Qrels.from_file(str(path)).to_dict()
    assert qrels.to_dict() == {q: dict(d) for q, d in theirs.items()}
    # Unlike ranx, blank lines (e.g. a trailing one from an editor) are tolerated.
    path.write_text("q1 0 a 2\nq1 0 b 0\n\nq2 0 c 1\n\n", encoding="utf-8")
    assert Qrels.from_trec(path) == qrels


def test_to_trec_rejects_ids_with_whitespace(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whitespace"):
        Run({"q 1": {"a": 1.0}}).to_trec(tmp_path / "run.trec")
    with pytest.raises(ValueError, match="tag"):
        Run({"q": {"a": 1.0}}).to_trec(tmp_path / "run.trec", tag="my run")


# ---------------------------------------------------------------------------------------------
# (4) Reader errors name file and line
# ---------------------------------------------------------------------------------------------

GOOD_CORPUS = [
    '{"_id": "d1", "title": "T1", "text": "one"}',
    '{"_id": "d2", "title": "T2", "text": "two"}',
]
GOOD_QUERIES = [
    '{"_id": "q1", "text": "first?", "answers": ["True"]}',
    '{"_id": "q2", "text": "second?"}',
]
GOOD_QRELS = ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td2\t2"]


def _write_beir(
    root: Path,
    corpus: list[str] = GOOD_CORPUS,
    queries: list[str] = GOOD_QUERIES,
    qrels: list[str] = GOOD_QRELS,
) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    (root / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return root


def _raises_at(path: Path, line: int | None, *fragments: str):
    """Context manager: DatasetError whose message names `path` (and `:line:`) and fragments."""
    where = re.escape(f"{path}:{line}:" if line is not None else f"{path}")
    return pytest.raises(DatasetError, match=where + ".*" + ".*".join(map(re.escape, fragments)))


def test_good_beir_directory_loads(tmp_path: Path) -> None:
    ds = load_beir(_write_beir(tmp_path))
    assert ds.corpus == {"d1": {"title": "T1", "text": "one"}, "d2": {"title": "T2", "text": "two"}}
    assert ds.queries == {"q1": "first?", "q2": "second?"}
    assert ds.answers == {"q1": ["True"]}
    assert ds.qrels.to_dict() == {"q1": {"d1": 1}, "q2": {"d2": 2}}


def test_real_boolq_loads() -> None:
    _needs(BOOLQ)
    ds = load_beir(BOOLQ)
    assert len(ds.corpus) == 2938 and len(ds.queries) == 3270 and len(ds.qrels) == 3270
    assert set(ds.answers) == set(ds.queries)


def test_real_halueval_loads() -> None:
    _needs(HALUEVAL)
    rows = load_qa_jsonl(HALUEVAL)
    assert len(rows) == 2000
    assert {r.label for r in rows} == {0, 1}
    assert all(r.context and r.question and r.answer for r in rows)


def test_corpus_invalid_json_names_line(tmp_path: Path) -> None:
    root = _write_beir(tmp_path, corpus=[*GOOD_CORPUS, '{"_id": "d3", "text": '])
    with _raises_at(root / "corpus.jsonl", 3, "invalid JSON"):
        load_beir(root)


def test_corpus_missing_field_names_line_and_field(tmp_path: Path) -> None:
    root = _write_beir(tmp_path, corpus=[GOOD_CORPUS[0], '{"_id": "d2", "title": "T2"}'])
    with _raises_at(root / "corpus.jsonl", 2, "'text'"):
        load_beir(root)


def test_corpus_non_object_line(tmp_path: Path) -> None:
    root = _write_beir(tmp_path, corpus=[*GOOD_CORPUS, '["d3", "three"]'])
    with _raises_at(root / "corpus.jsonl", 3, "JSON object"):
        load_beir(root)


def test_duplicate_query_id_names_both_lines(tmp_path: Path) -> None:
    root = _write_beir(tmp_path, queries=[*GOOD_QUERIES, "", '{"_id": "q1", "text": "again"}'])
    # The blank line 3 is skipped but still counted.
    with _raises_at(root / "queries.jsonl", 4, "duplicate id 'q1'", "first on line 1"):
        load_beir(root)


def test_queries_bad_answers_type(tmp_path: Path) -> None:
    bad = '{"_id": "q2", "text": "x", "answers": "True"}'
    root = _write_beir(tmp_path, queries=[GOOD_QUERIES[0], bad])
    with _raises_at(root / "queries.jsonl", 2, "'answers'"):
        load_beir(root)


@pytest.mark.parametrize(
    ("bad_line", "fragment"),
    [
        ("q2\td2", "3 tab-separated columns"),
        ("q2\td2\t1\textra", "3 tab-separated columns"),
        ("q2\td2\t1.5", "'1.5' is not an integer"),
        ("q2\td2\thigh", "'high' is not an integer"),
        ("q1\td1\t1", "duplicate judgment"),
    ],
)
def test_bad_qrels_rows_name_line(tmp_path: Path, bad_line: str, fragment: str) -> None:
    root = _write_beir(tmp_path, qrels=[*GOOD_QRELS[:2], bad_line])
    with _raises_at(root / "qrels" / "test.tsv", 3, fragment):
        load_beir(root)


def test_qrels_unknown_ids_strict_error_lists_them(tmp_path: Path) -> None:
    qrels = [*GOOD_QRELS, "q9\td1\t1", "q2\td9\t1"]
    root = _write_beir(tmp_path, qrels=qrels)
    qrels_path = root / "qrels" / "test.tsv"
    with _raises_at(qrels_path, 4, "2 qrels rows", "line 4: query 'q9'", "line 5: doc 'd9'"):
        load_beir(root)
    with pytest.warns(UserWarning, match="unknown ids"):
        ds = load_beir(root, strict=False)
    assert ds.qrels.to_dict() == {"q1": {"d1": 1}, "q2": {"d2": 2}}


def test_missing_split_names_file_and_available_splits(tmp_path: Path) -> None:
    root = _write_beir(tmp_path)
    with pytest.raises(DatasetError, match=r"dev\.tsv.*available splits: \['test'\]"):
        load_beir(root, split="dev")


def test_invalid_utf8_names_line(tmp_path: Path) -> None:
    root = _write_beir(tmp_path)
    (root / "corpus.jsonl").write_bytes(GOOD_CORPUS[0].encode() + b"\n" + b'{"_id": "\xff"}\n')
    with _raises_at(root / "corpus.jsonl", 2, "UTF-8"):
        load_beir(root)


def test_trec_file_errors_name_line(tmp_path: Path) -> None:
    run_path = tmp_path / "run.trec"
    run_path.write_text("q1 Q0 d1 1 2.5 tag\nq1 Q0 d2 2 high tag\n", encoding="utf-8")
    with _raises_at(run_path, 2, "'high' is not a number"):
        Run.from_trec(run_path)
    run_path.write_text("q1 Q0 d1 1 2.5\n", encoding="utf-8")
    with _raises_at(run_path, 1, "6 columns"):
        Run.from_trec(run_path)
    qrels_path = tmp_path / "qrels.txt"
    qrels_path.write_text("q1 0 d1 1\nq1 d1 1\n", encoding="utf-8")
    with _raises_at(qrels_path, 2, "4 columns"):
        Qrels.from_trec(qrels_path)


QA_OK = '{"id": "1-ok", "context": "c", "question": "q?", "answer": "a", "label": 1}'


@pytest.mark.parametrize(
    ("bad_line", "fragment"),
    [
        ('{"id": "2", "context": "c", "label": 0}', "missing required field 'answer'"),
        ('{"context": "c", "answer": "a"}', "missing required field 'id'"),
        ('{"id": "2", "answer": "a", "label": "1"}', "field 'label'"),
        ('{"id": "2", "answer": "a", "answers": "a"}', "field 'answers'"),
        ('{"id": "2", "answer": "a",', "invalid JSON"),
        ('{"id": "1-ok", "answer": "again"}', "duplicate id '1-ok'"),
    ],
)
def test_qa_jsonl_errors_name_line(tmp_path: Path, bad_line: str, fragment: str) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(f"{QA_OK}\n{bad_line}\n", encoding="utf-8")
    with _raises_at(path, 2, fragment):
        load_qa_jsonl(path)


def test_qa_jsonl_is_general(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(
        f'{QA_OK}\n{{"id": 7, "answer": "a", "answers": ["a", "b"], "source": "x"}}\n',
        encoding="utf-8",
    )
    first, second = load_qa_jsonl(path)
    assert (first.context, first.label) == ("c", 1)
    assert second.id == "7" and second.answers == ["a", "b"] and second.question is None
    assert second.model_extra == {"source": "x"}
