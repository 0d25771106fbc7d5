"""Benchmark phases, each run by bench/run.py in a fresh subprocess so that its peak RSS and
timings are its own:  python bench/workers.py PHASE ARGS.json RESULT.json

Phases:
  build   generate a corpus, ingest it with the real pipeline (RAG.ingest), and optionally
          time plain SentenceTransformer.encode on the same chunk texts;
  query   open the index like a server would and time sparse, dense, fused, fused+rerank;
  bm25    ragkit's BM25 vs rank-bm25's BM25Okapi on the same tokens (scores and throughput);
  recall  approximate dense index vs exact search on the same vectors.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from corpus import TextGenerator  # noqa: E402

from ragkit.protocols import Embedder  # noqa: E402

DIM = 384


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "n": len(values)}


def pipeline_config(overrides: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    from ragkit.config import PipelineConfig, parse_pipeline

    raw = PipelineConfig().model_dump(mode="json")
    for path, value in (overrides or {}).items():
        node = raw
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    return parse_pipeline(raw)


# --- synthetic dense vectors ----------------------------------------------------------------


class SyntheticEmbedder(Embedder):
    """Stands in for MiniLM where encoding every chunk on 2 cores would take hours.

    Random unit vectors drawn around `n/100` random centres (each vector: its centre plus
    Gaussian noise, normalised), so each has real near neighbours as text embeddings do;
    uniformly random vectors are all nearly orthogonal, which no ANN index handles (and real
    data never looks like). Deterministic for a given sequence of calls.
    """

    model_id = "synthetic"
    loaded = True
    dim = DIM

    def __init__(self, n_centres: int, seed: int = 0) -> None:
        rng = np.random.default_rng((seed, 99))
        centres = rng.standard_normal((max(1, n_centres), DIM)).astype(np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)

    def load(self) -> None:
        pass

    def vectors(self, keys: list[str]) -> np.ndarray:
        digest = hashlib.sha256("\x00".join(keys).encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        picks = np.array([int(hashlib.md5(k.encode()).hexdigest()[:8], 16) for k in keys]) % len(self.centres)
        x = self.centres[picks] + 0.9 * rng.standard_normal((len(keys), DIM)).astype(np.float32) / np.sqrt(DIM)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def embed(self, texts, on_batch=None):  # type: ignore[no-untyped-def]
        out = self.vectors(list(texts)) if len(texts) else np.zeros((0, DIM), np.float32)
        if on_batch:
            on_batch(len(texts))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.vectors([text])[0]


# --- build ------------------------------------------------------------------------------------

WORDS_PER_DOC = 700  # ~5.7 chunks of the default 200-token recursive chunker


def write_corpus(root: Path, n_docs: int, seed: int) -> list[Path]:
    """Small corpora as .txt/.md files; large ones as JSONL shards of 5,000 documents."""
    gen = TextGenerator(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    if n_docs <= 20_000:
        for i in range(n_docs):
            folder = root / f"part{i // 500:04d}"
            folder.mkdir(exist_ok=True)
            text = gen.document(i, WORDS_PER_DOC)
            path = folder / (f"doc{i:07d}.md" if i % 4 == 3 else f"doc{i:07d}.txt")
            path.write_text(("# " + text) if i % 4 == 3 else text, encoding="utf-8")
            paths.append(path)
        return paths
    for shard in range(0, n_docs, 5000):
        path = root / f"shard{shard // 5000:04d}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for i in range(shard, min(n_docs, shard + 5000)):
                text = gen.document(i, WORDS_PER_DOC)
                title, body = text.split("\n\n", 1)
                handle.write(json.dumps({"id": f"doc{i}", "title": title, "text": body}) + "\n")
        paths.append(path)
    return paths


def phase_build(args: dict[str, Any]) -> dict[str, Any]:
    from ragkit.api import RAG

    work = Path(args["work"])
    index_dir = work / "index"
    shutil.rmtree(index_dir, ignore_errors=True)
    real = args["real_encode"]
    chunks_per_doc = args.get("chunks_per_doc", 5.7)
    n_docs = max(1, round(args["chunks"] / chunks_per_doc))
    clock = time.perf_counter()
    corpus_dir = work / "corpus"
    shutil.rmtree(corpus_dir, ignore_errors=True)
    files = write_corpus(corpus_dir, n_docs, args.get("seed", 0))
    result: dict[str, Any] = {"documents": n_docs, "files": len(files), "generate_s": time.perf_counter() - clock}

    config = pipeline_config(args.get("overrides"))
    rag = RAG(config, index_dir)
    if real:
        rag.embedder.load()  # model loading is not ingest work (the raw baseline excludes it too)
        model = rag.embedder._model  # type: ignore[attr-defined]
        model.encode(["warm up"] * 64, batch_size=64)
    else:
        rag.__dict__["embedder"] = SyntheticEmbedder(args["n_centres"], args.get("seed", 0))

    raw_texts: list[str] = []
    raw_wall = raw_cpu = 0.0
    if real and args.get("raw_baseline", True):
        # The same chunk texts the ingest will produce (same loader + chunker), untimed.
        from ragkit.chunkers import make_chunker
        from ragkit.loaders import discover, load_file

        chunker = make_chunker(config.chunker)
        for path in discover([corpus_dir], config.loader).files:
            for document in load_file(path, config.loader).documents:
                raw_texts.extend(c.text for c in chunker.chunk(document))
        half = len(raw_texts) // 2
        # Plain encode, split around the ingest (first half before, second half after) so a
        # change in the machine's load during the run hits both measurements alike.
        raw_wall, raw_cpu = _raw_encode(model, raw_texts[:half], config.dense.embedder.batch_size)

    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    load0 = os.getloadavg()[0]
    report = rag.ingest([corpus_dir])
    ingest_wall, ingest_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    stats = report.index
    result.update(
        chunks=stats.chunks_total,
        load_failures=len(report.failures),
        ingest_s=ingest_wall,
        ingest_cpu_s=ingest_cpu,
        ingest_chunks_per_s=stats.chunks_total / ingest_wall,
        texts_embedded=stats.texts_embedded,
        writer_timings=stats.timings,
        loadavg_during_ingest=[load0, os.getloadavg()[0]],
        dense_vectors="MiniLM (real)" if real else "synthetic clustered unit vectors",
    )
    if raw_texts:
        wall2, cpu2 = _raw_encode(model, raw_texts[len(raw_texts) // 2 :], config.dense.embedder.batch_size)
        raw_wall += wall2
        raw_cpu += cpu2
        result.update(
            raw_chunks=len(raw_texts),
            raw_encode_s=raw_wall,
            raw_encode_cpu_s=raw_cpu,
            raw_chunks_per_s=len(raw_texts) / raw_wall,
            ingest_vs_raw=(stats.chunks_total / ingest_wall) / (len(raw_texts) / raw_wall),
            ingest_vs_raw_cpu=(stats.chunks_total / ingest_cpu) / (len(raw_texts) / raw_cpu),
        )
    from ragkit.indexes.faiss_dense import FaissDenseIndex
    from ragkit.indexes.layout import SPARSE_DIR, read_current

    gen_dir = index_dir / read_current(index_dir).directory  # type: ignore[union-attr]
    dense = FaissDenseIndex.load(gen_dir)
    result["dense_index"] = dense.describe()
    result["bm25_matrix_bytes"] = sum((gen_dir / SPARSE_DIR / f"{n}.npy").stat().st_size for n in ("data", "indices", "indptr"))
    result["dense_index_bytes"] = (gen_dir / "dense.faiss").stat().st_size
    result["vectors_f32_bytes"] = stats.chunks_total * dense.dim * 4
    result["peak_rss_mb"] = peak_rss_mb()
    shutil.rmtree(corpus_dir, ignore_errors=True)  # the index keeps the text
    return result


def _raw_encode(model, texts: list[str], batch_size: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return time.perf_counter() - wall, time.process_time() - cpu


# --- query ------------------------------------------------------------------------------------


def make_random_cross_encoder(path: Path) -> Path:
    """A randomly initialised BERT cross-encoder of all-MiniLM-L6's size (6 layers, hidden 384,
    12 heads, MiniLM's 30,522-token vocabulary): its scores are meaningless but its cost per
    pair is that of a real MiniLM-L6 cross-encoder such as ms-marco-MiniLM-L-6-v2."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from ragkit.models import resolve_model

    source = Path(resolve_model("bundled:all-MiniLM-L6-v2"))
    path.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, path / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
        intermediate_size=1536, max_position_embeddings=512, num_labels=1,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(path)
    return path


def phase_query(args: dict[str, Any]) -> dict[str, Any]:
    from ragkit.retrieval.hybrid import HybridRetriever

    from ragkit.api import RAG
    from ragkit.config import CrossEncoderRerankConfig, NoRerankConfig
    from ragkit.retrieval.rerank import make_reranker
    from ragkit.schema import Trace

    index_dir = Path(args["index"])
    rss_start = peak_rss_mb()
    clock = time.perf_counter()
    rag = RAG.open(index_dir)
    snapshot = rag.snapshot()
    open_s = time.perf_counter() - clock
    rag.embedder.load()
    retrieval = rag.config.retrieval.model_copy(update={"rerank": NoRerankConfig()})
    plain = HybridRetriever(snapshot, rag.embedder, rag.analyzer, retrieval)
    queries = TextGenerator(args.get("seed", 0)).queries(args["queries"] + 5)
    for q in queries[:5]:  # warm-up: first-touch page faults, lazy imports
        plain.retrieve(q, Trace())
    queries = queries[5:]
    times: dict[str, list[float]] = {"sparse": [], "dense": [], "fused": []}
    stages: dict[str, list[float]] = {}
    fused_cpu: list[float] = []  # CPU seconds of this process: less sensitive to other load
    for q in queries:
        t = time.perf_counter()
        snapshot.sparse.search(rag.analyzer(q), retrieval.sparse_k)
        times["sparse"].append(time.perf_counter() - t)
        t = time.perf_counter()
        snapshot.dense.search(rag.embedder.embed_query(q), retrieval.dense_k)
        times["dense"].append(time.perf_counter() - t)
        trace = Trace()
        t, cpu = time.perf_counter(), time.process_time()
        plain.retrieve(q, trace)
        times["fused"].append(time.perf_counter() - t)
        fused_cpu.append(time.process_time() - cpu)
        for name, stage in trace.stages.items():
            stages.setdefault(name, []).append(stage.ms / 1000)
    rss_queries = peak_rss_mb()
    result: dict[str, Any] = {
        "open_s": open_s,
        "rss_before_open_mb": rss_start,
        "peak_rss_mb": rss_queries,
        "latency": {name: percentiles(v) for name, v in times.items()},
        "fused_stages": {name: percentiles(v) for name, v in stages.items()},
        "fused_cpu": percentiles(fused_cpu),
        "loadavg": os.getloadavg()[0],
    }
    n_rerank = args.get("rerank_queries", 0)
    if n_rerank:
        model_dir = make_random_cross_encoder(Path(args["work"]) / "random-cross-encoder")
        rerank_config = CrossEncoderRerankConfig(model=str(model_dir))
        reranking = retrieval.model_copy(update={"rerank": rerank_config})
        reranker = make_reranker(rerank_config)
        rr = HybridRetriever(snapshot, rag.embedder, rag.analyzer, reranking, reranker)
        rr.retrieve(queries[0], Trace())  # loads the model
        spent = []
        for q in queries[1 : n_rerank + 1]:
            trace = Trace()
            t = time.perf_counter()
            rr.retrieve(q, trace)
            spent.append(time.perf_counter() - t)
            assert not trace.warnings, trace.warnings
        result["latency"]["fused+rerank"] = percentiles(spent)
        result["rerank_model"] = (
            f"random-weight BERT cross-encoder of MiniLM-L6 size (6 layers, hidden 384), top_n={rerank_config.top_n}, "
            f"max_length={rerank_config.max_length}: representative cost, meaningless scores"
        )
    rag.close()
    return result


# --- BM25 vs rank-bm25 --------------------------------------------------------------------------


def phase_bm25(args: dict[str, Any]) -> dict[str, Any]:
    from ragkit.api import RAG

    rag = RAG.open(Path(args["index"]))
    snapshot = rag.snapshot()
    ours = snapshot.sparse
    analyzer = rag.analyzer
    k = rag.config.retrieval.sparse_k
    queries = [analyzer(q) for q in TextGenerator(args.get("seed", 0)).queries(args["queries"])]
    result: dict[str, Any] = {"documents": ours.n_docs, "terms": ours.n_terms, "k": k}

    def timed(fn, qs):  # type: ignore[no-untyped-def]
        spent = []
        for q in qs:
            t = time.perf_counter()
            fn(q)
            spent.append(time.perf_counter() - t)
        return spent

    ours.search(queries[0], k)
    spent = timed(lambda q: ours.search(q, k), queries)
    result["ragkit"] = {"qps": len(spent) / sum(spent), **percentiles(spent)}
    t = time.perf_counter()
    ours.search_batch(queries, k)
    result["ragkit_batch_qps"] = len(queries) / (time.perf_counter() - t)

    if not args.get("rank_bm25", True):
        result["rank_bm25"] = None
        return result
    from rank_bm25 import BM25Okapi

    t = time.perf_counter()
    corpus = [analyzer(text) for text in snapshot.store.iter_chunk_texts()]
    tokenize_s = time.perf_counter() - t
    t = time.perf_counter()
    theirs = BM25Okapi(corpus, k1=ours.k1, b=ours.b, epsilon=ours.epsilon)
    result["rank_bm25_build_s"] = time.perf_counter() - t
    result["tokenize_s"] = tokenize_s
    del corpus
    gc.collect()
    n_theirs = min(len(queries), args.get("rank_bm25_queries", 20))

    def rank_search(q):  # type: ignore[no-untyped-def]
        scores = theirs.get_scores(q)
        top = np.argpartition(-scores, k)[:k]  # top-k without a full sort: generous to rank-bm25
        return top[np.argsort(-scores[top])]

    spent_theirs = timed(rank_search, queries[:n_theirs])
    result["rank_bm25"] = {"qps": n_theirs / sum(spent_theirs), **percentiles(spent_theirs)}
    # Same queries on both sides for the ratio.
    spent_same = timed(lambda q: ours.search(q, k), queries[:n_theirs])
    result["ratio_qps"] = (n_theirs / sum(spent_same)) / result["rank_bm25"]["qps"]
    diffs = [float(np.max(np.abs(ours.get_scores(q) - theirs.get_scores(q)))) for q in queries[:n_theirs]]
    result["max_abs_score_diff"] = max(diffs)
    return result


# --- recall -----------------------------------------------------------------------------------------


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-k, blockwise over a (memory-mapped) float32 array."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for begin in range(0, len(vectors), 200_000):
        block = np.asarray(vectors[begin : begin + 200_000], dtype=np.float32)
        s = queries @ block.T
        i = np.broadcast_to(np.arange(begin, begin + len(block)), s.shape)
        s = np.concatenate([best_s, s], axis=1)
        i = np.concatenate([best_i, i], axis=1)
        part = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, part, 1), np.take_along_axis(i, part, 1)
    return best_i


def phase_recall(args: dict[str, Any]) -> dict[str, Any]:
    from ragkit.config import FaissConfig
    from ragkit.indexes.faiss_dense import FaissDenseIndex
    from ragkit.indexes.layout import EMBEDDINGS_FILE, read_current

    index_dir = Path(args["index"])
    gen_dir = index_dir / read_current(index_dir).directory  # type: ignore[union-attr]
    vectors = np.load(gen_dir / EMBEDDINGS_FILE, mmap_mode="r")
    n = len(vectors)
    if args["synthetic"]:
        # In-distribution held-out queries from the same generator as the corpus vectors.
        queries = SyntheticEmbedder(args["n_centres"], args.get("seed", 0)).vectors(
            [f"held-out query {i}" for i in range(args["queries"])]
        )
        source = "held-out synthetic vectors (same clustered distribution as the corpus)"
    else:
        from ragkit.config import PipelineConfig
        from ragkit.indexes.embedder import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder(PipelineConfig().dense.embedder)
        queries = embedder.embed(TextGenerator(args.get("seed", 0)).queries(args["queries"]))
        source = "MiniLM embeddings of the benchmark queries"
    truth = exact_top_k(vectors, queries, 50)
    out: dict[str, Any] = {"queries": source, "n": n}

    def recall(index: FaissDenseIndex) -> dict[str, float]:
        rows = index.search_batch(queries, 50)[0]
        r = {}
        for k in (10, 50):
            r[f"recall@{k}"] = float(
                np.mean([len(set(a[:k].tolist()) & set(t[:k].tolist())) / k for a, t in zip(rows, truth)])
            )
        return r

    served = FaissDenseIndex.load(gen_dir)
    out["served"] = {**served.describe(), **recall(served)}
    if served.kind == "flat" and not args["synthetic"]:
        # What the approximate index would give on these same vectors: the defaults, and a
        # small sweep of build/search breadth (the measurements behind the defaults).
        defaults = FaissConfig()
        sweep = []
        for efc in sorted({80, defaults.hnsw.ef_construction}):
            config = defaults.model_copy(update={"index": "hnsw", "hnsw": defaults.hnsw.model_copy(update={"ef_construction": efc})})
            t = time.perf_counter()
            hnsw = FaissDenseIndex.build(vectors, config)
            build_s = time.perf_counter() - t
            for ef in sorted({128, 256, defaults.hnsw.ef_search}):
                hnsw.set_search_params(ef_search=ef)
                entry = {**hnsw.describe(), "build_s": build_s, **recall(hnsw)}
                sweep.append(entry)
                if efc == defaults.hnsw.ef_construction and ef == defaults.hnsw.ef_search:
                    out["hnsw_default"] = entry
        out["hnsw_sweep"] = sweep
    return out


PHASES = {"build": phase_build, "query": phase_query, "bm25": phase_bm25, "recall": phase_recall}

if __name__ == "__main__":
    phase, args_file, result_file = sys.argv[1:4]
    result = PHASES[phase](json.loads(Path(args_file).read_text()))
    result.setdefault("peak_rss_mb", peak_rss_mb())
    Path(result_file).write_text(json.dumps(result, indent=2))
