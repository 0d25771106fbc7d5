"""BM25Index and its analyzer, with rank_bm25.BM25Okapi as the oracle for every score."""

from __future__ import annotations

import json
import math
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

import ragkit.indexes.bm25 as bm25_module
from ragkit.config import BM25TokenizerConfig
from ragkit.indexes.bm25 import BM25Index, BM25Postings
from ragkit.indexes.tokenize import ENGLISH_STOPWORDS, make_analyzer

BOOLQ = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "boolq-dev"
N_PASSAGES = 1000
N_QUERIES = 100

_HALF = np.random.default_rng(0).random(N_PASSAGES) < 0.5  # an `allowed` mask for boolq

F32 = {"rtol": 1e-5, "atol": 1e-6}
F64 = {"rtol": 1e-9, "atol": 1e-9}

# (k1, b, epsilon), rank-bm25's defaults first.
SETTINGS = [(1.5, 0.75, 0.25), (1.2, 0.75, 0.25), (0.9, 0.4, 0.5), (2.0, 1.0, 0.0), (3.0, 0.0, 1.0)]


def expected_hits(scores: np.ndarray, matched: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The documented ranking: matched docs only, score desc, ties by lower index."""
    docs = np.flatnonzero(matched)
    order = sorted(docs.tolist(), key=lambda d: (-scores[d], d))[:k]
    return np.array(order, dtype=np.int64), scores[order]


def matched_docs(corpus: list[list[str]], query: list[str]) -> np.ndarray:
    terms = set(query)
    return np.array([bool(terms.intersection(doc)) for doc in corpus], dtype=bool)


def assert_hits_equal(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


# --- real data: the first 1,000 boolq-dev passages ------------------------------------------


def _read_jsonl(path: Path, limit: int) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == limit:
                break
    return rows


@pytest.fixture(scope="module")
def boolq() -> tuple[list[str], list[str]]:
    if not (BOOLQ / "corpus.jsonl").is_file() or not (BOOLQ / "queries.jsonl").is_file():
        pytest.skip(f"boolq-dev dataset not found at {BOOLQ} (shared/ must sit beside the repo)")
    passages = [f"{p['title']}\n{p['text']}" for p in _read_jsonl(BOOLQ / "corpus.jsonl", N_PASSAGES)]
    queries = [q["text"] for q in _read_jsonl(BOOLQ / "queries.jsonl", N_QUERIES)]
    return passages, queries


@pytest.fixture(scope="module", params=["english", "none"], ids=["stop-english", "stop-none"])
def boolq_tokens(request, boolq) -> tuple[list[list[str]], list[list[str]]]:
    passages, queries = boolq
    analyze = make_analyzer(BM25TokenizerConfig(stopwords=request.param))
    corpus = [analyze(p) for p in passages]
    query_tokens = [analyze(q) for q in queries]
    # Make sure real queries exercise repeated and unknown terms too.
    query_tokens[0] = query_tokens[0] + query_tokens[0][:1] + ["zzz-not-a-term"]
    return corpus, query_tokens


@pytest.mark.slow  # 10 cases on the real dataset, ~8 s together
@pytest.mark.parametrize("k1,b,epsilon", SETTINGS)
def test_scores_equal_rank_bm25_on_boolq(boolq_tokens, k1, b, epsilon):
    corpus, queries = boolq_tokens
    oracle = BM25Okapi(corpus, k1=k1, b=b, epsilon=epsilon)
    index = BM25Index.build(corpus, k1=k1, b=b, epsilon=epsilon)
    assert len(index) == index.n_docs == len(corpus)
    assert index.avgdl == oracle.avgdl
    assert index.average_idf == pytest.approx(oracle.average_idf, rel=1e-12)
    for term, col in index.vocab.items():
        assert index.idf[col] == pytest.approx(oracle.idf[term], rel=1e-12, abs=1e-15)
    for query in queries:
        want = oracle.get_scores(query)
        np.testing.assert_allclose(index.get_scores(query), want, **F64)
        scores = index.get_scores(query)
        assert_hits_equal(index.search(query, 10), expected_hits(scores, matched_docs(corpus, query), 10))


def test_boolq_without_stopwords_has_negative_idf_terms(boolq):
    """Guards the test above: stopwords kept, real data must hit the epsilon floor."""
    passages, _ = boolq
    analyze = make_analyzer(BM25TokenizerConfig(stopwords="none"))
    corpus = [analyze(p) for p in passages]
    index = BM25Index.build(corpus)
    oracle = BM25Okapi(corpus)
    floored = [t for t, col in index.vocab.items() if index.idf[col] == 0.25 * index.average_idf]
    assert "the" in floored
    np.testing.assert_allclose(index.get_scores(["the"]), oracle.get_scores(["the"]), **F32)


@pytest.mark.parametrize("dense_factor", [None, 0, 10**9], ids=["default", "matmul", "per-query"])
def test_search_batch_equals_search_on_boolq(boolq_tokens, monkeypatch, dense_factor):
    corpus, queries = boolq_tokens
    index = BM25Index.build(corpus)
    # All idf positive (so all weights), so the sparse-matmul path is not skipped for zero sums.
    assert index.idf.min() > 0
    want = {
        (k, masked): [index.search(q, k, allowed=_HALF if masked else None) for q in queries]
        for k in (1, 10, 5000)
        for masked in (False, True)
    }
    if dense_factor is not None:  # 0: every query through the sparse matmul; 10**9: none
        monkeypatch.setattr(bm25_module, "_DENSE_FACTOR", dense_factor)
    for (k, masked), expected in want.items():
        batch = index.search_batch(queries, k, allowed=_HALF if masked else None)
        assert len(batch) == len(queries)
        for got, hits in zip(batch, expected):
            assert_hits_equal(got, hits)
    # A tiny postings budget forces many chunks; results must not change.
    monkeypatch.setattr(bm25_module, "_BATCH_POSTINGS", 50)
    for got, hits in zip(index.search_batch(queries, 10), want[(10, False)]):
        assert_hits_equal(got, hits)


def test_dense_and_sparse_accumulation_agree(boolq_tokens, monkeypatch):
    corpus, queries = boolq_tokens
    index = BM25Index.build(corpus)
    allowed = np.arange(len(corpus)) % 4 != 1
    default = [index.search(q, 20, allowed) for q in queries]
    for factor in (0, 10**9):  # 0: always np.unique; 10**9: always dense bincount
        monkeypatch.setattr(bm25_module, "_DENSE_FACTOR", factor)
        for query, want in zip(queries, default):
            assert_hits_equal(index.search(query, 20, allowed), want)


@pytest.mark.parametrize("mmap", [True, False])
def test_postings_save_load_round_trip(boolq_tokens, tmp_path, mmap):
    """A segment's postings are written once and memory-mapped by readers: scores are unchanged."""
    corpus, queries = boolq_tokens
    index = BM25Index.build(corpus, k1=1.2, b=0.6, epsilon=0.3)
    index.postings.save(tmp_path / "bm25")
    assert {p.name for p in (tmp_path / "bm25").iterdir()} == {
        "terms.npy", "indptr.npy", "rows.npy", "tf.npy", "lengths.npy", "params.json",
    }  # fmt: skip
    postings = BM25Postings.load(tmp_path / "bm25", mmap=mmap)
    loaded = BM25Index(postings, index.idf, {"k1": 1.2, "b": 0.6, "epsilon": 0.3, "avgdl": index.avgdl, "average_idf": index.average_idf}, index.vocab)
    assert _is_memory_mapped(postings.tf) is mmap
    assert _is_memory_mapped(postings.rows) is mmap
    allowed = np.arange(len(corpus)) % 3 != 0
    for query in queries:
        np.testing.assert_array_equal(loaded.get_scores(query), index.get_scores(query))
        assert_hits_equal(loaded.search(query, 10), index.search(query, 10))
        assert_hits_equal(loaded.search(query, 10, allowed), index.search(query, 10, allowed))
    for got, want in zip(loaded.search_batch(queries, 10), index.search_batch(queries, 10)):
        assert_hits_equal(got, want)


def _is_memory_mapped(array: np.ndarray) -> bool:
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base if isinstance(array.base, np.ndarray) else None
    return False


# --- synthetic edge cases -------------------------------------------------------------------


def test_negative_idf_gets_epsilon_times_average_idf():
    corpus = [["x", "a"], ["x", "b"], ["x", "c"], ["d"]]  # x is in 3 of 4 docs
    index = BM25Index.build(corpus)
    oracle = BM25Okapi(corpus)
    raw = {t: math.log(4 - df + 0.5) - math.log(df + 0.5) for t, df in
           {"x": 3, "a": 1, "b": 1, "c": 1, "d": 1}.items()}  # fmt: skip
    average = sum(raw.values()) / len(raw)
    assert raw["x"] < 0
    assert index.idf[index.vocab["x"]] == pytest.approx(0.25 * average, rel=1e-12)
    assert index.idf[index.vocab["a"]] == pytest.approx(raw["a"], rel=1e-12)
    for query in (["x"], ["x", "a"], ["d", "x", "x"]):
        np.testing.assert_allclose(index.get_scores(query), oracle.get_scores(query), **F64)


def test_negative_average_idf_floors_to_a_negative_weight():
    corpus = [["a", "b"], ["a", "b"], ["a", "c"]]  # a, b in more than half: average idf < 0
    index = BM25Index.build(corpus)
    oracle = BM25Okapi(corpus)
    assert oracle.average_idf < 0
    np.testing.assert_allclose(index.get_scores(["a"]), oracle.get_scores(["a"]), **F64)
    docs, scores = index.search(["a", "zzz"], 5)
    assert docs.tolist() == [0, 1, 2] and (scores < 0).all()  # negative, yet still hits


def test_idf_exactly_zero_stays_zero_and_doc_is_still_a_hit():
    corpus = [["h"], ["h", "q"], ["q"], ["r"]]  # h: df = N/2, idf = 0 (not floored)
    index = BM25Index.build(corpus)
    assert index.idf[index.vocab["h"]] == 0.0
    np.testing.assert_array_equal(index.get_scores(["h"]), BM25Okapi(corpus).get_scores(["h"]))
    docs, scores = index.search(["h"], 5)
    assert docs.tolist() == [0, 1] and scores.tolist() == [0.0, 0.0]
    # epsilon = 0 turns every negative idf into 0: those docs are hits with score 0 too.
    zero = BM25Index.build([["x"], ["x"], ["x", "y"]], epsilon=0.0)
    assert zero.search(["x"], 5)[0].tolist() == [0, 1, 2]
    assert zero.search_batch([["x"]], 5)[0][0].tolist() == [0, 1, 2]


def test_weights_underflowing_float32_are_still_hits():
    """Found by hypothesis: epsilon * average_idf ~ 1e-306 is positive but 0 in float32. Weights
    are now computed in float64 at query time: the tiny scores survive, and every match is a hit."""
    corpus = [[], [], ["a"], ["a"], ["a", "b"]]
    index = BM25Index.build(corpus, epsilon=1e-300)
    for rows, scores in (index.search(["a"], 5), index.search_batch([["a"]], 5)[0]):
        assert rows.tolist() == [2, 3, 4]
        assert (scores > 0).all() and scores[0] == scores[1] > scores[2]


def test_repeated_query_terms_count_each_time():
    corpus = [["a", "b"], ["b", "c"], ["c", "d"], ["e"]]
    index = BM25Index.build(corpus)
    oracle = BM25Okapi(corpus)
    np.testing.assert_allclose(index.get_scores(["a", "a", "a"]), 3 * index.get_scores(["a"]), **F64)
    for query in (["a", "a"], ["b", "c", "b"], ["d", "a", "d", "d"]):
        np.testing.assert_allclose(index.get_scores(query), oracle.get_scores(query), **F64)


def test_unknown_terms_contribute_nothing():
    corpus = [["a", "b"], ["b", "c"], ["d"]]
    index = BM25Index.build(corpus)
    np.testing.assert_array_equal(index.get_scores(["nope", "a", "nada"]), index.get_scores(["a"]))
    assert index.get_scores(["nope"]).tolist() == [0.0, 0.0, 0.0]
    assert index.get_scores([]).dtype == np.float64
    assert index.search(["nope"], 3)[0].size == 0
    assert index.search([], 3)[0].size == 0
    assert index.search_batch([["nope"], []], 3)[1][0].size == 0


def test_empty_documents():
    corpus = [[], ["a", "b"], [], ["b", "c", "c"], []]
    index = BM25Index.build(corpus)
    oracle = BM25Okapi(corpus)
    assert index.avgdl == oracle.avgdl == 1.0
    for query in (["a"], ["b", "c"], ["c", "c"]):
        np.testing.assert_allclose(index.get_scores(query), oracle.get_scores(query), **F64)
        assert set(index.search(query, 10)[0].tolist()) <= {1, 3}


def test_empty_documents_with_b_1_are_zero_not_nan():
    """rank-bm25 divides 0/0 for an empty doc when b == 1; we give it 0."""
    corpus = [[], ["a", "b"], ["b"]]
    index = BM25Index.build(corpus, b=1.0)
    with np.errstate(all="ignore"):
        want = BM25Okapi(corpus, b=1.0).get_scores(["b"])
    assert np.isnan(want[0])
    got = index.get_scores(["b"])
    assert got[0] == 0.0
    np.testing.assert_allclose(got[1:], want[1:], **F64)


def test_k1_zero_gives_idf_of_matched_terms_not_nan():
    corpus = [["a", "a", "b"], ["b", "c"], ["d"], ["e"]]
    index = BM25Index.build(corpus, k1=0.0)
    idf = {t: index.idf[c] for t, c in index.vocab.items()}
    np.testing.assert_allclose(
        index.get_scores(["a", "b"]), [idf["a"] + idf["b"], idf["b"], 0.0, 0.0], **F64
    )


def test_empty_corpus_is_sane(tmp_path):
    for corpus in ([], [[], []]):
        index = BM25Index.build(corpus)
        assert len(index) == index.n_docs == len(corpus)
        assert index.get_scores(["a"]).tolist() == [0.0] * len(corpus)
        docs, scores = index.search(["a"], 5)
        assert docs.size == 0 and docs.dtype == np.int64 and scores.dtype == np.float64
        assert [h[0].size for h in index.search_batch([["a"], []], 5)] == [0, 0]
        index.postings.save(tmp_path / str(len(corpus)))
        assert BM25Postings.load(tmp_path / str(len(corpus))).n_rows == len(corpus)


def test_single_document():
    corpus = [["only", "doc", "doc"]]
    index = BM25Index.build(corpus)
    oracle = BM25Okapi(corpus)
    np.testing.assert_allclose(index.get_scores(["doc"]), oracle.get_scores(["doc"]), **F64)
    docs, scores = index.search(["doc", "missing"], 10)
    assert docs.tolist() == [0]
    np.testing.assert_allclose(scores, oracle.get_scores(["doc", "missing"]), **F64)


def test_k_larger_than_n_and_k_zero():
    corpus = [["a"], ["a", "b"], ["c"], ["a", "c"]]
    index = BM25Index.build(corpus)
    docs, scores = index.search(["a"], 100)
    assert sorted(docs.tolist()) == [0, 1, 3] and len(scores) == 3
    assert index.search(["a"], 0)[0].size == 0
    assert index.search_batch([["a"]], 0)[0][0].size == 0
    with pytest.raises(ValueError):
        index.search(["a"], -1)


def test_ties_are_broken_by_lower_index_even_at_the_cut():
    # Seven identical matching docs scattered among others: every top-k cut falls in a tie,
    # where argpartition alone would pick arbitrary members of the tie.
    tied = [2, 4, 5, 8, 11, 13, 17]
    corpus = [["t", "u"] if i in tied else ["v", f"w{i}"] for i in range(20)]
    corpus[0] = ["t"]  # shorter doc, so it scores higher than the tied ones
    index = BM25Index.build(corpus)
    for k in range(1, 10):
        want = ([0] + tied)[:k]
        assert index.search(["t"], k)[0].tolist() == want
        assert index.search_batch([["t"]], k)[0][0].tolist() == want
    docs, scores = index.search(["t"], 3)
    assert scores[0] > scores[1] == scores[2]


@pytest.mark.parametrize("masked", [False, True])
def test_pruned_search_equals_rank_bm25_with_ties_at_the_cut(masked, monkeypatch):
    """`search` drops candidates below a sampled bound on the k-th score before ranking (see
    `BM25Index._top_hits`); on a corpus made of few distinct documents, repeated, every cut falls
    inside a large tie, and the bound itself is often exactly the k-th score."""
    rng = np.random.default_rng(7)
    vocab = [f"t{i}" for i in range(12)]
    shapes = [list(rng.choice(vocab, size=int(rng.integers(1, 6)))) for _ in range(25)]
    corpus = [shapes[int(i)] for i in rng.integers(0, len(shapes), 3000)]
    index = BM25Index.build(corpus)
    oracle = BM25Okapi(corpus)
    allowed = rng.random(len(corpus)) < 0.3 if masked else None
    queries = [["t0"], ["t1", "t2"], ["t3", "t4", "t5", "t3"], vocab[:6], vocab]
    for query in queries:
        scores = oracle.get_scores(query)
        matched = matched_docs(corpus, query) & (allowed if masked else True)
        for k in (1, 5, 10, 50, 300):
            got = index.search(query, k, allowed=allowed)
            want = expected_hits(scores, matched, k)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_allclose(got[1], want[1], **F32)
            assert_hits_equal(index.search_batch([query], k, allowed=allowed)[0], got)
    # Pruning must change nothing, bit for bit: compare with the unpruned path.
    pruned = [index.search(q, k, allowed=allowed) for q in queries for k in (1, 10, 50)]
    monkeypatch.setattr(bm25_module, "_PRUNE_MIN_FACTOR", 10**9)
    for got, q_k in zip(pruned, [(q, k) for q in queries for k in (1, 10, 50)]):
        assert_hits_equal(got, index.search(*q_k, allowed=allowed))


def test_allowed_mask_filters_hits():
    corpus = [["a"], ["a", "b"], ["a", "a"], ["b"], ["a", "c"]]
    index = BM25Index.build(corpus)
    scores = index.get_scores(["a"])
    allowed = np.array([True, False, True, True, False])
    want = expected_hits(scores, matched_docs(corpus, ["a"]) & allowed, 10)
    assert_hits_equal(index.search(["a"], 10, allowed=allowed), want)
    assert_hits_equal(index.search_batch([["a"]], 10, allowed=allowed)[0], want)
    assert index.search(["a"], 10, allowed=np.zeros(5, dtype=bool))[0].size == 0
    with pytest.raises(ValueError, match="boolean mask"):
        index.search(["a"], 10, allowed=np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="boolean mask"):
        index.search(["a"], 10, allowed=np.ones(5, dtype=int))


def test_a_str_query_is_rejected():
    index = BM25Index.build([["a"]])
    with pytest.raises(TypeError, match="not a str"):
        index.search("a", 1)
    with pytest.raises(TypeError, match="not a str"):
        index.search_batch(["a"], 1)


def test_load_rejects_unknown_format(tmp_path):
    BM25Index.build([["a"]]).postings.save(tmp_path)
    params = json.loads((tmp_path / "params.json").read_text())
    params["format_version"] = 999
    (tmp_path / "params.json").write_text(json.dumps(params))
    with pytest.raises(ValueError, match="format"):
        BM25Postings.load(tmp_path)


# --- random small corpora vs rank-bm25 ------------------------------------------------------

# A small alphabet makes terms in more than half the docs (negative idf) common.
_TERMS = st.sampled_from(list("abcdefg") + ["é", "東京"])
_CORPORA = st.lists(st.lists(_TERMS, max_size=8), min_size=1, max_size=12).filter(
    lambda corpus: any(corpus)  # rank-bm25 divides by zero on an empty vocabulary
)
_QUERY_TERMS = st.sampled_from(list("abcdefgxyz") + ["é"])  # x, y, z are never in the corpus
_QUERIES = st.lists(st.lists(_QUERY_TERMS, max_size=6), min_size=1, max_size=5)
_K1 = st.one_of(st.just(1.5), st.floats(0.05, 3.0))
_B = st.one_of(st.sampled_from([0.0, 0.75, 1.0]), st.floats(0.0, 1.0))
_EPS = st.one_of(st.sampled_from([0.0, 0.25]), st.floats(0.0, 1.0))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(corpus=_CORPORA, queries=_QUERIES, k1=_K1, b=_B, epsilon=_EPS, k=st.integers(1, 15))
def test_random_corpora_match_rank_bm25(corpus, queries, k1, b, epsilon, k):
    oracle = BM25Okapi(corpus, k1=k1, b=b, epsilon=epsilon)
    f32 = BM25Index.build(corpus, k1=k1, b=b, epsilon=epsilon)
    f64 = BM25Index.build(corpus, k1=k1, b=b, epsilon=epsilon)
    allowed = np.array([i % 2 == 0 for i in range(len(corpus))])
    batch = f32.search_batch(queries, k)
    # Tiny corpora always take the per-query dense path; force the sparse matmul too.
    with mock.patch.object(bm25_module, "_DENSE_FACTOR", 0):
        batch_masked = f32.search_batch(queries, k, allowed=allowed)
        batch_matmul = f64.search_batch(queries, k)
    for i, query in enumerate(queries):
        with np.errstate(all="ignore"):
            # NaN only for empty docs when b == 1 (0/0); their true score is 0.
            want = np.nan_to_num(oracle.get_scores(query), nan=0.0)
        np.testing.assert_allclose(f64.get_scores(query), want, **F64)
        np.testing.assert_allclose(f32.get_scores(query), want, **F32)
        scores = f32.get_scores(query)
        matched = matched_docs(corpus, query)
        assert_hits_equal(f32.search(query, k), expected_hits(scores, matched, k))
        assert_hits_equal(f32.search(query, k, allowed), expected_hits(scores, matched & allowed, k))
        assert_hits_equal(batch[i], f32.search(query, k))
        assert_hits_equal(batch_masked[i], f32.search(query, k, allowed))
        assert_hits_equal(batch_matmul[i], f64.search(query, k))


# --- the analyzer ---------------------------------------------------------------------------


def test_analyzer_defaults_lowercase_drop_english_stopwords_and_stem():
    analyze = make_analyzer(BM25TokenizerConfig(stemmer="none"))
    assert analyze("Is the Eiffel Tower in PARIS?") == ["eiffel", "tower", "paris"]
    assert analyze("It doesn't, won't: don't!") == []  # contraction pieces are stopwords
    assert analyze("") == [] and analyze("  ,.;!  ") == []
    assert make_analyzer(BM25TokenizerConfig())("Is the Eiffel Tower in PARIS?") == ["eiffel", "tower", "pari"]
    assert make_analyzer()("The cats") == ["cat"]  # no config: the defaults (Snowball English)


def test_analyzer_unicode_words():
    analyze = make_analyzer(BM25TokenizerConfig(stopwords="none", stemmer="none"))
    tokens = analyze("Café naïve Ελληνικά 東京 x_1 42")
    assert tokens == ["café", "naïve", "ελληνικά", "東京", "x_1", "42"]
    # str.lower() turns "İ" into "i" + a combining dot; the word must stay one token.
    assert len(analyze("İstanbul")) == 1
    assert analyze("ÄRGER—über") == ["ärger", "über"]


def test_analyzer_lowercase_off():
    analyze = make_analyzer(BM25TokenizerConfig(lowercase=False, stemmer="none"))
    assert analyze("The Cat and THE Dog") == ["Cat", "Dog"]  # stopwords matched case-insensitively
    keep = make_analyzer(BM25TokenizerConfig(lowercase=False, stopwords="none", stemmer="none"))
    assert keep("The Cat, the cat") == ["The", "Cat", "the", "cat"]


def test_analyzer_stopwords_none_keeps_everything():
    analyze = make_analyzer(BM25TokenizerConfig(stopwords="none", stemmer="none"))
    assert analyze("is the sky blue") == ["is", "the", "sky", "blue"]


def test_english_stopword_list():
    assert isinstance(ENGLISH_STOPWORDS, frozenset)
    assert {"the", "a", "is", "and", "of", "not", "t", "don"} <= ENGLISH_STOPWORDS
    assert not {"paris", "tower", "blue"} & ENGLISH_STOPWORDS
    assert all(w == w.lower() and w.isalpha() for w in ENGLISH_STOPWORDS)
    assert 150 <= len(ENGLISH_STOPWORDS) <= 200


def test_analyzer_rejects_unknown_stemmer():
    config = BM25TokenizerConfig.model_construct(lowercase=True, stopwords="none", stemmer="porter")
    with pytest.raises(ValueError, match="stemmer"):
        make_analyzer(config)


def test_analyzer_english_stemmer():
    analyze = make_analyzer(BM25TokenizerConfig(stemmer="english"))
    assert analyze("The Running dogs were studying") == ["run", "dog", "studi"]  # stopwords go first
    assert analyze("run runs running") == ["run"] * 3
    assert len(analyze("İstanbul naïve café")) == 3  # unicode words stay one token each
    # Query and document meet on the stem: a BM25 hit that the unstemmed analyzer misses.
    corpus = [analyze("Voyager 1 launched in 1977"), analyze("Mars has volcanoes")]
    index = BM25Index.build(corpus)
    assert index.search(analyze("When was it launching?"), 2)[0].tolist() == [0]
    plain = make_analyzer(BM25TokenizerConfig(stemmer="none"))
    assert BM25Index.build([plain("Voyager 1 launched in 1977")]).search(plain("launching"), 1)[0].size == 0
