"""Metadata filters: one language, the same chunks on every backend.

The reference semantics (`MetadataFilter.matches`) are checked against the store's SQL masks and
against a real chroma collection (embedded, our own embeddings: chroma never embeds), so faiss and
BM25 (which filter through the store's mask) select exactly what chroma's `where` selects. Then
faiss' and BM25's filtered search are checked against brute force, and `ragkit query --filter`
end to end on an ingested corpus (real CLI, bundled MiniLM).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit.config import FaissConfig
from ragkit.indexes.bm25 import BM25Index
from ragkit.indexes.faiss_dense import FaissDenseIndex
from ragkit.indexes.filters import FilterError, MetadataFilter
from ragkit.indexes.store import ChunkStore
from ragkit.retrieval.search import Retriever
from ragkit.schema import Chunk, Document, Trace

ROOT = Path(__file__).resolve().parents[1]

# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"$and": [{"a": 1}, {"page": {"$gt": "3"}}]}, '$and[1].page: $gt needs a number, got "3"'),
        ({"page": {"$gte": True}}, "page: $gte needs a number, got true"),
        ({"page": {"$foo": 1}}, "page: $foo is not supported"),
        ({"$not": {"a": 1}}, "$not: unknown operator $not"),
        ({"a": {"$in": []}}, "a: $in needs at least one value, got an empty list"),
        ({"a": {"$nin": "x"}}, 'a: $nin needs a list of values, got "x"'),
        ({"$or": []}, "$or: $or needs at least one filter, got an empty list"),
        ({"$or": [{"a": 1}, 3]}, "$or[1]: each $or item must be a filter object, got 3"),
        ({"$and": [{}]}, "$and[0]: empty filter object inside $and"),
        ({"a": None}, "a: $eq got null"),
        ({"a": [1, 2]}, 'a: a list is not a filterable value; to match any of several use {"$in": [1, 2]}'),
        ({"a": {"$eq": {"b": 1}}}, 'a: $eq needs a string, number or boolean, got {"b": 1}'),
        ({"a": {"b": 1}}, 'a: expected an operator, got key "b"'),
        ({"a": {}}, "a: empty operator object"),
        ({"a": float("inf")}, "a: $eq got Infinity; numbers must be finite"),
        ({"a": 2**63}, "integers fit in 64 bits"),
        ({"$or": [{"x": 1}, {"$and": [{"y": {"$in": [1, [2]]}}]}]}, "$or[1].$and[0].y: $in needs a string"),
        ("[1]", "a filter must be a JSON object (mapping), got [1]"),
        ("{source: 1}", "filter is not valid JSON"),
    ],
)
def test_invalid_filters_name_the_path_and_the_problem(spec, message):
    with pytest.raises(FilterError) as raised:
        MetadataFilter.parse(spec)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_syntax_sugar_parses_to_explicit_and_translates_to_valid_chroma():
    flt = MetadataFilter.parse('{"page": {"$gte": 2, "$lt": 5}, "lang": "en"}')
    assert flt.to_chroma_where() == {
        "$and": [{"page": {"$gte": 2}}, {"page": {"$lt": 5}}, {"lang": {"$eq": "en"}}]
    }
    # chroma wants >= 2 clauses in $and/$or and one type per $in list
    assert MetadataFilter.parse({"$or": [{"a": 1}]}).to_chroma_where() == {"a": {"$eq": 1}}
    assert MetadataFilter.parse({"a": {"$nin": ["x", 3, 2.0]}}).to_chroma_where() == {
        "$and": [{"a": {"$nin": ["x"]}}, {"a": {"$nin": [3]}}, {"a": {"$nin": [2.0]}}]
    }
    # chroma compares a fractional float with ints after truncating it: the int it gets wrong is fixed
    assert MetadataFilter.parse({"a": 2.5}).to_chroma_where() == {"$and": [{"a": {"$eq": 2.5}}, {"a": {"$ne": 2}}]}
    assert MetadataFilter.parse({}).matches_all and MetadataFilter.parse({}).to_chroma_where() is None
    assert MetadataFilter.parse({"a": 1}) == MetadataFilter.parse('{"a": {"$eq": 1}}')
    assert MetadataFilter.parse({"a": 1, "$or": [{"b": 2}, {"c": 3}]}).fields() == {"a", "b", "c"}


def test_reference_semantics():
    m = {"n": 3, "f": 2.5, "b": True, "s": "3"}
    passes = lambda spec: MetadataFilter.parse(spec).matches(m)  # noqa: E731
    assert passes({"n": 3.0}) and passes({"n": {"$in": [1.0, 3.0]}})  # int 3 == float 3.0
    assert not passes({"b": 1}) and passes({"b": {"$ne": 1}})  # bool is not a number
    assert not passes({"s": 3}) and not passes({"n": "3"})  # text is never converted
    assert passes({"missing": {"$ne": 1}}) and passes({"missing": {"$nin": [1]}})  # missing passes $ne/$nin
    assert not passes({"missing": {"$lt": 1}}) and not passes({"b": {"$gt": 0}}) and not passes({"s": {"$gt": 0}})
    assert passes({"$or": [{"n": 4}, {"f": {"$gt": 2, "$lt": 3}}]})
    assert not MetadataFilter.parse({"n": 2**53}).matches({"n": 2**53 + 1})  # exact integers


# --- the same rows from Python, the store's SQL and chroma --------------------------------------

# Mixed kinds per field on purpose: ints, floats, bools, text and absent values side by side.
FIELD_VALUES = {
    "n": [0, 1, 2, 3, 3.0, 2.5, 2.0, -1, -0.5, -2, 2**40, True, False, "3", "a"],
    "lang": ["en", "de", "EN", "", "é", 1],
    "flag": [True, False, 0, 1, "true"],
}


def _corpus(n_docs: int = 60) -> list[tuple[Document, list[Chunk]]]:
    rng = np.random.default_rng(7)
    corpus = []
    for i in range(n_docs):
        doc_meta = {f: vals[rng.integers(len(vals))] for f, vals in FIELD_VALUES.items() if rng.random() < 0.8}
        doc_meta["tags"] = ["x", "y"]  # not scalar: never filterable
        doc = Document(id=f"doc{i}", source=f"dir/f{i % 7}.md", text="alpha beta gamma delta " * 5, metadata=doc_meta)
        chunks = []
        for j in range(int(rng.integers(1, 4))):
            chunk_meta = {"page": j + 1} if rng.random() < 0.7 else {}
            if rng.random() < 0.3:  # a chunk field beats its document's
                chunk_meta["n"] = FIELD_VALUES["n"][rng.integers(len(FIELD_VALUES["n"]))]
            chunks.append(Chunk(id=f"doc{i}:{j}", doc_id=doc.id, source=doc.source, text="alpha beta",
                                start=0, end=10, metadata=chunk_meta))
        corpus.append((doc, chunks))
    return corpus


def _write_store(path: Path, corpus) -> ChunkStore:
    store = ChunkStore.create(path)
    store.add_documents(d for d, _ in corpus)
    store.add_chunks(enumerate(c for _, chunks in corpus for c in chunks))
    store.add_chunk_fields(0)
    store.commit()
    return store


BATTERY = [
    {"n": 3}, {"n": 3.0}, {"n": True}, {"n": "3"}, {"n": {"$ne": 3}}, {"n": {"$ne": True}},
    {"n": {"$in": [1, 2.5, "a", True]}}, {"n": {"$nin": [3, False]}}, {"n": {"$gt": 2}}, {"n": {"$gte": 2.5}},
    {"n": {"$lt": 0}}, {"n": {"$lte": -0.5}}, {"n": {"$gt": 0, "$lt": 3}}, {"n": 2**40}, {"n": {"$gt": 1e12}},
    {"n": 2.5}, {"n": -0.5}, {"n": {"$ne": 2.5}}, {"n": {"$nin": [2.5, -0.5, "a"]}}, {"n": {"$gt": -0.5}},
    {"n": {"$gte": 2.5}}, {"n": {"$lt": 2.5}}, {"n": {"$lte": -1.5}}, {"n": {"$gt": 1.5}}, {"n": {"$lte": 2.5}},
    {"lang": "en"}, {"lang": ""}, {"lang": "é"}, {"lang": {"$in": ["en", "EN"]}}, {"lang": {"$ne": "en"}},
    {"flag": True}, {"flag": 1}, {"flag": {"$ne": False}}, {"flag": {"$nin": [True, 1]}},
    {"page": 2}, {"page": {"$ne": 1}}, {"missing": {"$ne": 1}}, {"missing": 1}, {"tags": "x"},
    {"source": "dir/f3.md"}, {"doc_id": {"$in": ["doc1", "doc2"]}}, {"source": {"$nin": ["dir/f1.md", "dir/f2.md"]}},
    {"$or": [{"n": {"$gt": 2}}, {"lang": "de"}]}, {"$and": [{"page": {"$gte": 2}}, {"flag": {"$ne": True}}]},
    {"$or": [{"$and": [{"n": 1}, {"lang": "en"}]}, {"source": "dir/f0.md", "page": 1}]},
    {"lang": "en", "n": {"$ne": 3}, "$or": [{"page": 1}, {"page": 3}]},
]


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    """The same chunks in a ChunkStore and in a chroma collection (metadata = the store's flat view)."""
    chromadb = pytest.importorskip("chromadb")
    tmp = tmp_path_factory.mktemp("filters")
    store = _write_store(tmp / "store.sqlite", _corpus())
    flat = dict(store.iter_filterable_metadata())
    client = chromadb.PersistentClient(path=str(tmp / "chroma"))
    collection = client.create_collection("filters", embedding_function=None)
    rng = np.random.default_rng(0)
    collection.add(
        ids=[str(r) for r in flat], embeddings=rng.random((len(flat), 4)).tolist(), metadatas=list(flat.values())
    )
    yield store, flat, collection
    store.close()


def _all_three(backends, spec) -> tuple[set[int], set[int], set[int]]:
    store, flat, collection = backends
    flt = MetadataFilter.parse(spec)
    python = {r for r, m in flat.items() if flt.matches(m)}
    sql = set(np.flatnonzero(store.filter_mask(flt)).tolist())
    where = flt.to_chroma_where()
    chroma = {int(i) for i in collection.get(where=where, include=[])["ids"]} if where else set(flat)
    return python, sql, chroma


@pytest.mark.parametrize("spec", BATTERY, ids=[json.dumps(s) for s in BATTERY])
def test_python_sql_and_chroma_select_the_same_chunks(backends, spec):
    python, sql, chroma = _all_three(backends, spec)
    assert python == sql == chroma


def test_battery_is_not_trivial(backends):
    sizes = [len(_all_three(backends, s)[0]) for s in BATTERY]
    n = len(backends[1])
    assert sum(0 < s < n for s in sizes) >= len(BATTERY) * 2 // 3


_scalars = st.one_of(
    st.sampled_from([v for vals in FIELD_VALUES.values() for v in vals]),
    st.integers(-3, 4), st.sampled_from([0.5, 2.5, 3.0, -1.0, -0.5, -1.5, -2.5]), st.booleans(),
)
_numbers = st.one_of(st.integers(-3, 4), st.sampled_from([-2.5, -1.5, -0.5, 0.0, 0.5, 2.5, 3.0]))
_fields = st.sampled_from(["n", "lang", "flag", "page", "missing"])
_leaf = st.one_of(
    st.builds(lambda f, v: {f: v}, _fields, _scalars),
    st.builds(lambda f, op, v: {f: {op: v}}, _fields, st.sampled_from(["$eq", "$ne"]), _scalars),
    st.builds(lambda f, op, v: {f: {op: v}}, _fields, st.sampled_from(["$in", "$nin"]), st.lists(_scalars, min_size=1, max_size=4)),
    st.builds(lambda f, op, v: {f: {op: v}}, _fields, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), _numbers),
)
_filters = st.recursive(
    _leaf,
    lambda inner: st.builds(lambda op, items: {op: items}, st.sampled_from(["$and", "$or"]), st.lists(inner, min_size=1, max_size=3)),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=_filters)
def test_generated_filters_agree_across_backends(backends, spec):
    python, sql, chroma = _all_three(backends, spec)
    assert python == sql == chroma, spec


def test_masks_are_cached_and_read_only(backends):
    store = backends[0]
    first = store.filter_mask({"lang": "en"})
    assert store.filter_mask({"lang": {"$eq": "en"}}) is first
    with pytest.raises(ValueError):
        first[0] = not first[0]
    assert store.filter_mask({}).all()
    assert set(store.field_counts()) >= {"n", "lang", "flag", "page", "source", "doc_id"}
    assert store.field_counts()["n"].keys() == {"number", "bool", "text"}


def test_a_store_without_chunk_fields_still_filters(tmp_path, backends):
    path = tmp_path / "old.sqlite"
    _write_store(path, _corpus()).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE chunk_fields")  # as written before filters existed
    db.commit()
    db.close()
    old = ChunkStore.open(path)  # read-only: the fields are built in a temporary table
    for spec in BATTERY[:8]:
        assert (old.filter_mask(spec) == backends[0].filter_mask(spec)).all()
    old.close()


def test_writer_keeps_chunk_fields_in_step_with_chunks(tmp_path):
    """Renumbering after a delete in the middle, and appending, both keep row -> fields right."""
    corpus = _corpus(12)
    store = _write_store(tmp_path / "s.sqlite", corpus[:8])
    gone = {corpus[2][0].id, corpus[5][0].id}
    store.db.executemany("DELETE FROM chunks WHERE doc_id = ?", [(i,) for i in gone])
    store.db.executemany("DELETE FROM documents WHERE id = ?", [(i,) for i in gone])
    kept = np.array([r for (r,) in store.db.execute("SELECT row FROM chunks ORDER BY row")])
    store.db.executemany("UPDATE chunks SET row = ? WHERE row = ?", [(n, o) for n, o in enumerate(kept.tolist())])
    store.renumber_chunk_fields(kept)
    store.add_documents(d for d, _ in corpus[8:])
    store.add_chunks(enumerate((c for _, cs in corpus[8:] for c in cs), start=len(kept)))
    store.add_chunk_fields(len(kept))
    store.commit()
    stored = {}
    for field, is_bool, value, row in store.db.execute("SELECT field, is_bool, value, row FROM chunk_fields"):
        stored.setdefault(row, {})[field] = bool(value) if is_bool else value
    assert stored == dict(store.iter_filterable_metadata())
    assert sorted(stored) == list(range(store.count_chunks()))


# --- dense and sparse search under a mask ------------------------------------------------------


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((40, dim))
    x = centers[rng.integers(40, size=n)] + 0.35 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _exact_top(vectors, queries, mask, k):
    rows = np.flatnonzero(mask)
    scores = queries @ vectors[rows].T
    return [rows[np.argsort(-s, kind="stable")[:k]] for s in scores], [np.sort(s)[::-1][:k] for s in scores]


@pytest.mark.parametrize("path", ["exact", "selector"])
def test_faiss_flat_filtered_equals_brute_force(path):
    vectors, queries = _clustered(3000, 32, 1), _clustered(12, 32, 2)
    index = FaissDenseIndex.build(vectors, FaissConfig(index="flat"))
    if path == "selector":
        index.exact_filter_rows = 0  # force faiss' own search with an IDSelectorBitmap
    mask = np.random.default_rng(3).random(3000) < 0.3
    rows, scores = index.search_batch(queries, 10, allowed=mask)
    want_rows, want_scores = _exact_top(vectors, queries, mask, 10)
    for r, s, wr, ws in zip(rows, scores, want_rows, want_scores):
        assert r.tolist() == wr.tolist()
        np.testing.assert_allclose(s, ws, rtol=1e-5, atol=1e-6)
    one_rows, _ = index.search(queries[0], 10, allowed=mask)
    assert one_rows.tolist() == rows[0].tolist()
    assert [len(r) for r in index.search_batch(queries, 10, allowed=np.zeros(3000, bool))[0]] == [0] * 12
    few = np.zeros(3000, bool)
    few[[5, 7]] = True
    assert sorted(index.search(queries[0], 10, allowed=few)[0].tolist()) == [5, 7]
    with pytest.raises(ValueError, match="boolean mask of shape"):
        index.search(queries[0], 10, allowed=np.ones(10, bool))


def test_faiss_hnsw_filtered_search_finds_the_allowed_neighbours(tmp_path):
    vectors, queries = _clustered(6000, 32, 4), _clustered(20, 32, 5)
    config = FaissConfig(index="hnsw", storage="float32", hnsw={"M": 16, "ef_construction": 64, "ef_search": 32})
    FaissDenseIndex.build(vectors, config).save(tmp_path)
    np.save(tmp_path / "embeddings.npy", vectors)
    index = FaissDenseIndex.load(tmp_path)
    rng = np.random.default_rng(6)
    selective = rng.random(6000) < 0.005  # ~30 rows: exact over their stored embeddings
    rows, _ = index.search_batch(queries, 10, allowed=selective)
    assert [r.tolist() for r in rows] == [w.tolist() for w in _exact_top(vectors, queries, selective, 10)[0]]
    index.exact_filter_rows = 0  # a broad filter through HNSW with a selector (widened efSearch)
    broad = rng.random(6000) < 0.25
    rows, _ = index.search_batch(queries, 10, allowed=broad)
    want = _exact_top(vectors, queries, broad, 10)[0]
    assert all(broad[r].all() and len(r) == 10 for r in rows)
    recall = np.mean([len(set(r.tolist()) & set(w.tolist())) / 10 for r, w in zip(rows, want)])
    assert recall >= 0.95


def test_bm25_filtered_equals_post_filtered_unfiltered():
    rng = np.random.default_rng(8)
    words = [f"w{i}" for i in range(60)]
    docs = [list(rng.choice(words, size=int(rng.integers(3, 30)))) for _ in range(400)]
    index = BM25Index.build(docs)
    mask = rng.random(400) < 0.2
    for query in (["w1", "w2"], ["w3", "w3", "w40"], ["w59"]):
        rows, scores = index.search(query, 10, allowed=mask)
        all_rows, all_scores = index.search(query, 400)
        keep = mask[all_rows]
        assert rows.tolist() == all_rows[keep][:10].tolist()
        np.testing.assert_array_equal(scores, all_scores[keep][:10])


# --- end to end: API and CLI on an ingested corpus --------------------------------------------


def ragkit(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "ragkit.cli", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=600,
    )


@pytest.fixture(scope="module")
def filtered_index(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus")
    (corpus / "volcano.md").write_text("# Volcanoes\n\nOlympus Mons is the tallest volcano in the solar system.\n")
    (corpus / "moon.md").write_text("# Moons\n\nGanymede is the largest moon and it orbits Jupiter.\n")
    rows = [
        {"text": "Mauna Kea is a tall volcano on Hawaii.", "region": "pacific", "year": 2019, "reviewed": True},
        {"text": "Etna is an active volcano on Sicily.", "region": "europe", "year": 2021, "reviewed": False},
        {"text": "Vesuvius is a volcano near Naples.", "region": "europe", "year": 2023, "reviewed": True},
    ]
    (corpus / "volcanoes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    index_dir = tmp_path_factory.mktemp("index") / "idx"
    result = ragkit("ingest", str(corpus), "--index", str(index_dir))
    assert result.returncode == 0, result.stderr
    return corpus, index_dir


def _sources(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    # a markdown file by name, a JSONL row by its first word (Mauna, Etna, Vesuvius)
    return [h["source"].rsplit("/", 1)[-1] if h["source"].endswith(".md") else h["text"].split()[0]
            for h in json.loads(result.stdout)["hits"]]


def test_cli_query_filter_returns_only_matching_chunks(filtered_index):
    _, index_dir = filtered_index
    q = ("Which volcano is tallest?", "--index", str(index_dir), "--json")
    assert set(_sources(ragkit("query", *q))) >= {"volcano.md", "Mauna"}
    assert set(_sources(ragkit("query", *q, "--filter", '{"region": "europe"}'))) == {"Etna", "Vesuvius"}


def test_cli_filter_matching_nothing_says_so(filtered_index):
    _, index_dir = filtered_index
    result = ragkit("query", "Which volcano is tallest?", "--index", str(index_dir), "--filter", '{"region": "mars"}')
    assert result.returncode == 0, result.stderr
    assert "I don't know based on the provided documents." in result.stdout
    assert "filter matched 0" in result.stderr


@pytest.mark.parametrize(
    "bad, message",
    [("{region: 1}", "--filter: filter is not valid JSON"), ('{"year": {"$gt": "2020"}}', "--filter: year: $gt needs a number")],
)
def test_cli_bad_filter_exits_2_naming_the_option(filtered_index, bad, message):
    result = ragkit("query", "volcano", "--index", str(filtered_index[1]), "--filter", bad)
    assert result.returncode == 2
    assert message in result.stderr


def test_api_filter_and_status_fields(filtered_index):
    from ragkit import RAG

    _, index_dir = filtered_index
    with RAG.open(index_dir) as rag:
        hits = rag.retrieve("volcano", filter={"region": {"$in": ["pacific"]}})
        assert [h.chunk.text.split()[0] for h in hits] == ["Mauna"]  # region is a document field
        hits = rag.retrieve("volcano", filter='{"year": {"$gte": 2021}, "reviewed": true}')
        assert [h.chunk.text.split()[0] for h in hits] == ["Vesuvius"]
        hits = rag.retrieve("volcano", filter={"source": {"$nin": [str(filtered_index[0] / "volcanoes.jsonl")]}})
        assert hits and all(h.chunk.source.endswith(".md") for h in hits)
        answer = rag.query("volcano", filter=MetadataFilter.parse({"year": {"$lt": 2000}}))
        assert answer.hits == [] and any("filter matched 0" in w for w in answer.trace.warnings)
        with pytest.raises(FilterError):
            rag.query("volcano", filter={"year": {"$lt": "x"}})
        retriever = rag.retriever()
        assert isinstance(retriever, Retriever)
        (result,) = retriever.search(["volcano"], Trace(), filter={"reviewed": False})
        rows = {r for r, _ in result.rankings["dense"] + result.rankings["sparse"]}
        chunks = rag.snapshot().store.chunks_by_rows(sorted(rows))
        assert {c.text.split()[0] for c in chunks} == {"Etna"}
        fields = rag.snapshot().store.field_counts()
        assert fields["region"] == {"text": 3} and fields["year"] == {"number": 3} and fields["reviewed"] == {"bool": 3}
