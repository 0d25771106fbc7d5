"""The dense index: exact/HNSW/IVF-PQ chosen by size, float16/int8 storage, batched search,
save/load, and clear errors for impossible configurations.

Vectors are random unit vectors in 384 dimensions (MiniLM's size) drawn around 200 random
centres, so that each has real near neighbours as text embeddings do (uniformly random vectors
are all nearly orthogonal: their "top 10" is noise that no index can or needs to find).
Recall is measured against the exact index on the same vectors.
"""

import numpy as np
import pytest

from ragkit.config import FaissConfig, PipelineError, parse_pipeline
from ragkit.indexes.faiss_dense import DenseConfigError, FaissDenseIndex, resolve_index_type

DIM = 384


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, centres: int = 200) -> np.ndarray:
    c = unit(rng, centres)
    x = c[rng.integers(0, centres, n)] + 0.9 * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    both = clustered(rng, 4040)
    vectors, queries = both[:4000], both[4000:]
    exact = FaissDenseIndex.build(vectors, FaissConfig(index="flat"))
    truth = exact.search_batch(queries, 10)[0]
    return vectors, queries, truth


def recall(index: FaissDenseIndex, queries: np.ndarray, truth: list[np.ndarray], k: int = 10) -> float:
    rows = index.search_batch(queries, k)[0]
    return float(np.mean([len(set(r.tolist()) & set(t.tolist())) / k for r, t in zip(rows, truth)]))


CONFIGS = {
    "flat": FaissConfig(index="flat"),
    "flat-float16": FaissConfig(index="flat", storage="float16"),
    "flat-int8": FaissConfig(index="flat", storage="int8"),
    "hnsw": FaissConfig(index="hnsw", hnsw={"M": 16, "ef_construction": 40, "ef_search": 64}),
    "hnsw-float32": FaissConfig(index="hnsw", storage="float32", hnsw={"M": 16, "ef_construction": 40}),
    "hnsw-int8": FaissConfig(index="hnsw", storage="int8", hnsw={"M": 16, "ef_construction": 40}),
    "ivfpq": FaissConfig(index="ivfpq", ivfpq={"nlist": 16, "m": 48, "nbits": 6, "nprobe": 8}),
}
# Minimum recall@10 vs exact on this data (measured: 1.0, 1.0, 0.997, 1.0, 0.997, 0.67).
MIN_RECALL = {"flat": 1.0, "flat-float16": 0.98, "flat-int8": 0.95, "hnsw": 0.95, "hnsw-float32": 0.95,
              "hnsw-int8": 0.95, "ivfpq": 0.5}  # fmt: skip
KIND = {name: name.split("-")[0] for name in CONFIGS}
# storage "auto" (the default): float32 for exact flat, float16 for hnsw
STORAGE = {"flat": "float32", "flat-float16": "float16", "flat-int8": "int8", "hnsw": "float16",
           "hnsw-float32": "float32", "hnsw-int8": "int8", "ivfpq": "pq"}  # fmt: skip


@pytest.fixture(scope="module")
def built(data):
    vectors = data[0]
    return {name: FaissDenseIndex.build(vectors, config) for name, config in CONFIGS.items()}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_recall_against_exact_search(name, built, data):
    _, queries, truth = data
    index = built[name]
    assert (index.kind, index.storage) == (KIND[name], STORAGE[name])
    assert len(index) == 4000 and index.dim == DIM
    assert recall(index, queries, truth) >= MIN_RECALL[name]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_batched_search_equals_single_searches(name, built, data):
    _, queries, _ = data
    index = built[name]
    rows, scores = index.search_batch(queries, 10)
    for q, r, s in zip(queries, rows, scores):
        single_rows, single_scores = index.search(q, 10)
        # Exact flat search of a big batch goes through BLAS: same rows, scores up to rounding.
        assert np.array_equal(r, single_rows)
        np.testing.assert_allclose(s, single_scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_save_and_load_keep_type_parameters_and_results(name, built, data, tmp_path):
    _, queries, _ = data
    index = built[name]
    index.save(tmp_path)
    loaded = FaissDenseIndex.load(tmp_path)
    assert loaded.describe() == index.describe()
    for a, b in zip(index.search_batch(queries, 10), loaded.search_batch(queries, 10)):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_stored_rows_line_up_with_their_vectors(name, built, data):
    vectors = data[0]
    index = built[name]
    assert index.mismatched_rows(vectors).size == 0
    swapped = vectors.copy()
    swapped[[0, 5]] = swapped[[5, 0]]
    assert index.mismatched_rows(swapped).tolist() == [0, 5]


def test_reduced_storage_is_smaller_and_scores_stay_close(built, data, tmp_path):
    _, queries, _ = data
    sizes = {}
    for name in ("flat", "flat-float16", "flat-int8"):
        built[name].save(tmp_path / name) if (tmp_path / name).mkdir() is None else None
        sizes[name] = (tmp_path / name / "dense.faiss").stat().st_size
    assert sizes["flat-float16"] < 0.55 * sizes["flat"] and sizes["flat-int8"] < 0.3 * sizes["flat"]
    exact_rows, exact_scores = built["flat"].search(queries[0], 10)
    for name, tolerance in (("flat-float16", 2e-3), ("flat-int8", 3e-2)):
        rows, scores = built[name].search(queries[0], 10)
        assert rows[0] == exact_rows[0]
        np.testing.assert_allclose(scores[0], exact_scores[0], atol=tolerance)


def test_auto_is_exact_below_the_threshold_and_hnsw_from_it():
    config = FaissConfig(exact_threshold=100)
    assert config.index == "auto"
    assert resolve_index_type(99, config) == "flat"
    assert resolve_index_type(100, config) == "hnsw"
    rng = np.random.default_rng(0)
    assert FaissDenseIndex.build(unit(rng, 99), config).kind == "flat"
    hnsw = FaissDenseIndex.build(unit(rng, 150), config)
    assert hnsw.describe()["type"] == "hnsw" and hnsw.describe()["ef_search"] == config.hnsw.ef_search
    assert hnsw.storage == "float16"  # storage auto: float16 once the index is approximate anyway
    assert resolve_index_type(10**9, FaissConfig(index="flat")) == "flat"


def test_search_params_change_without_rebuild(built):
    index = built["hnsw"]
    index.set_search_params(ef_search=200)
    assert index.describe()["ef_search"] == 200
    index.set_search_params(ef_search=64, nprobe=3)  # nprobe: ignored by hnsw
    assert index.describe()["ef_search"] == 64
    ivf = built["ivfpq"]
    ivf.set_search_params(nprobe=4)
    assert ivf.describe()["nprobe"] == 4
    ivf.set_search_params(nprobe=8)


def test_k_larger_than_the_index_and_empty_index():
    rng = np.random.default_rng(1)
    vectors = unit(rng, 5)
    for config in (FaissConfig(index="flat"), FaissConfig(index="hnsw")):
        rows, scores = FaissDenseIndex.build(vectors, config).search(vectors[2], 50)
        assert sorted(rows.tolist()) == [0, 1, 2, 3, 4] and rows[0] == 2
        assert np.all(np.diff(scores) <= 0)
    empty = FaissDenseIndex.build(np.zeros((0, DIM), dtype=np.float32), FaissConfig())
    rows, scores = empty.search(vectors[0], 5)
    assert rows.size == 0 and scores.size == 0
    assert empty.search_batch(np.zeros((0, DIM), dtype=np.float32), 5) == ([], [])


def test_wrong_query_dimension_is_explained(built):
    with pytest.raises(ValueError, match="different embedding model"):
        built["flat"].search(np.zeros(DIM + 1, dtype=np.float32), 3)


def test_ivfpq_sub_quantizers_must_divide_the_dimension():
    vectors = unit(np.random.default_rng(2), 3000)
    with pytest.raises(DenseConfigError, match=r"ivfpq.m = 40 must divide the vector dimension 384"):
        FaissDenseIndex.build(vectors, FaissConfig(index="ivfpq", ivfpq={"m": 40}))


def test_ivfpq_with_too_few_vectors_falls_back_to_exact_and_says_why(caplog):
    vectors = unit(np.random.default_rng(3), 500)
    index = FaissDenseIndex.build(vectors, FaissConfig(index="ivfpq", ivfpq={"nlist": 1000}))
    assert index.kind == "flat"
    assert "nlist = 1000 needs at least 39000 vectors" in index.note
    assert "using an exact flat index instead" in caplog.text
    assert index.describe()["note"] == index.note
    # nlist: null adapts to the corpus; nbits=8 still needs 256 * 39 vectors to train
    small = FaissDenseIndex.build(vectors, FaissConfig(index="ivfpq"))
    assert small.kind == "flat" and "nbits = 8" in small.note


def test_impossible_configs_are_rejected_by_the_pipeline():
    with pytest.raises(PipelineError) as info:
        parse_pipeline({"dense": {"backend": {"index": "ivfpq", "storage": "int8"}}})
    assert "dense.backend.faiss.storage" in str(info.value) and "ivfpq stores PQ codes" in str(info.value)
    with pytest.raises(PipelineError, match="dense.backend.faiss.index"):
        parse_pipeline({"dense": {"backend": {"index": "lsh"}}})
    with pytest.raises(PipelineError, match="dense.backend.faiss.hnsw.M"):
        parse_pipeline({"dense": {"backend": {"hnsw": {"M": 2}}}})
