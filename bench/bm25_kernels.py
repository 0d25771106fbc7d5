#!/usr/bin/env python3
"""BM25 query speed: ragkit's `search` and `search_batch` vs bm25s (numba and numpy backends).

    python bench/bm25_kernels.py [--docs 100000] [--queries 300] [--reps 3]

Same generated corpus (bench/corpus.py), same analyzer tokens for every library, top-k = the
default pipeline's sparse_k; one query at a time unless stated; repetitions interleaved so a
change in machine load hits every contender alike; medians over repetitions. bm25s is installed
on demand by the caller (it is not a ragkit dependency): `pip install bm25s numba`.
Saves bench/results/bm25-kernels.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from corpus import TextGenerator, passages  # noqa: E402

from ragkit.config import PipelineConfig  # noqa: E402
from ragkit.indexes.bm25 import BM25Index  # noqa: E402
from ragkit.indexes.tokenize import make_analyzer  # noqa: E402


def per_query_us(fn, queries) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for q in queries:
        fn(q)
    return (time.perf_counter() - started) / len(queries) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--words", type=int, default=150)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--reps", type=int, default=3)
    opts = parser.parse_args()

    import bm25s

    config = PipelineConfig()
    analyzer = make_analyzer(config.sparse.tokenizer)
    k = config.retrieval.sparse_k
    load_start = os.getloadavg()[0]
    t = time.perf_counter()
    corpus = [analyzer(p) for p in passages(opts.docs, opts.words)]
    tokenize_s = time.perf_counter() - t
    queries = [analyzer(q) for q in TextGenerator(1).queries(opts.queries)]

    t = time.perf_counter()
    ours = BM25Index.build(corpus)
    ours_build = time.perf_counter() - t
    t = time.perf_counter()
    numba = bm25s.BM25(backend="numba")
    numba.index(corpus, show_progress=False)
    numba_build = time.perf_counter() - t
    plain = bm25s.BM25()
    plain.index(corpus, show_progress=False)
    del corpus

    def bm25s_one(model, backend):  # type: ignore[no-untyped-def]
        return lambda q: model.retrieve([q], k=k, show_progress=False, n_threads=1, backend_selection=backend)

    contenders = {
        "ragkit search": lambda q: ours.search(q, k),
        "bm25s numba": bm25s_one(numba, "numba"),
        "bm25s numpy": bm25s_one(plain, "numpy"),
    }
    for fn in contenders.values():  # warm up (numba compiles on first call)
        fn(queries[0])
    ours.search_batch(queries[:10], k)
    numba.retrieve(queries[:10], k=k, show_progress=False, n_threads=1, backend_selection="numba")

    samples: dict[str, list[float]] = {name: [] for name in [*contenders, "ragkit search_batch", "bm25s numba batch"]}
    for _ in range(opts.reps):
        for name, fn in contenders.items():
            samples[name].append(per_query_us(fn, queries))
        t = time.perf_counter()
        ours.search_batch(queries, k)
        samples["ragkit search_batch"].append((time.perf_counter() - t) / len(queries) * 1e6)
        t = time.perf_counter()
        numba.retrieve(queries, k=k, show_progress=False, n_threads=1, backend_selection="numba")
        samples["bm25s numba batch"].append((time.perf_counter() - t) / len(queries) * 1e6)

    median = {name: statistics.median(v) for name, v in samples.items()}
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg()[0],
        "docs": opts.docs, "terms": ours.n_terms, "queries": len(queries), "k": k, "reps": opts.reps,
        "tokenize_s": tokenize_s, "build_s": {"ragkit": ours_build, "bm25s numba": numba_build},
        "us_per_query_median": median, "us_per_query_samples": samples,
        "ratios": {
            "ragkit search / bm25s numba": median["ragkit search"] / median["bm25s numba"],
            "ragkit search_batch / ragkit search": median["ragkit search_batch"] / median["ragkit search"],
            "ragkit search_batch / bm25s numba batch": median["ragkit search_batch"] / median["bm25s numba batch"],
        },
    }  # fmt: skip
    print(f"{opts.docs:,} docs, {ours.n_terms:,} terms, {len(queries)} queries, k={k}, "
          f"load {load_start:.1f} -> {result['loadavg_end']:.1f}")  # fmt: skip
    for name, us in median.items():
        print(f"  {name:22s} {us:8.1f} us/query  ({1e6 / us:8.0f} q/s)")
    for name, r in result["ratios"].items():
        print(f"  {name}: {r:.2f}x")
    out = BENCH / "results" / "bm25-kernels.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
