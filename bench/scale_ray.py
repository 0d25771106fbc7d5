"""Ray Data ingest vs the single-process ingest: throughput and fixed cost, on one machine.

    python bench/scale_ray.py [--rows 1000]

Ingests the first `--rows` passages of boolq-dev (../shared/datasets/boolq-dev/corpus.jsonl,
as a JSONL file) into a fresh index twice with the bundled MiniLM: locally (`RAG.ingest`), and
through `RayExecutor` on a local Ray cluster (127.0.0.1; 2 embedding actors x 1 CPU here). The
fixed cost is measured apart: starting the cluster, and a Ray ingest of one document (actor
start and model load included). Saves bench/results/scale-ray.json.
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

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from ragkit import RAG  # noqa: E402
from ragkit.config import parse_pipeline  # noqa: E402
from ragkit.executors.ray_data import RayExecutor  # noqa: E402

BOOLQ = BENCH.parent.parent / "shared" / "datasets" / "boolq-dev" / "corpus.jsonl"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "scale-ray.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragkit-ray-bench-"))
    try:
        corpus = work / "corpus"
        corpus.mkdir()
        with open(BOOLQ, encoding="utf-8") as rows, open(corpus / "boolq.jsonl", "w", encoding="utf-8") as out:
            for _, line in zip(range(args.rows), rows):
                row = json.loads(line)
                out.write(json.dumps({"id": row["_id"], "title": row["title"], "text": row["text"]}) + "\n")
        one = work / "one"
        one.mkdir()
        (one / "one.jsonl").write_text(json.dumps({"id": "x", "text": "A single short passage."}) + "\n", encoding="utf-8")
        config = parse_pipeline({})

        started = time.perf_counter()
        local = RAG(config, work / "local").ingest([corpus])
        local_s = time.perf_counter() - started

        executor = RayExecutor()
        started = time.perf_counter()
        with executor.cluster():
            cluster_s = time.perf_counter() - started
            started = time.perf_counter()
            RAG(config, work / "tiny").ingest([one], executor=executor)
            tiny_s = time.perf_counter() - started
            started = time.perf_counter()
            distributed = RAG(config, work / "ray").ingest([corpus], executor=executor)
            ray_s = time.perf_counter() - started
        chunks = local.index.chunks_total
        assert distributed.index.chunks_total == chunks
        result = {
            "meta": {"machine": platform.machine(), "cpus": os.cpu_count(), "load_average_end": os.getloadavg(),
                     "corpus": f"boolq-dev first {args.rows} passages", "model": "bundled all-MiniLM-L6-v2"},  # fmt: skip
            "documents": local.index.documents_total,
            "chunks": chunks,
            "texts_embedded": local.index.texts_embedded,
            "local": {"seconds": round(local_s, 2), "chunks_per_s": round(chunks / local_s, 1), "timings": local.index.timings},
            "ray": {
                "seconds_in_running_cluster": round(ray_s, 2),
                "chunks_per_s": round(chunks / ray_s, 1),
                "cluster_start_s": round(cluster_s, 2),
                "one_document_ingest_s": round(tiny_s, 2),
                "actors": executor.actors or "one per CPU",
                "stats": executor.stats,
            },
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
