#!/usr/bin/env python3
"""Generate-stage latency of the default (extractive) pipeline vs retrieval, and the ingest cost
of storing sentences, on boolq-dev.

    python bench/generate_latency.py [--dataset ../shared/datasets/boolq-dev] [--queries 100]
        [--cold 3] [--index-root .ragkit/bench] [--ingest-sample 800] [--out FILE.json]

Run it with `heavy --exclusive` (timings need an idle machine). It
1. indexes the boolq-dev corpus (cached under --index-root), then asks the first `--queries`
   questions in one process: per query, retrieval = dense + sparse + fusion + rerank stage times and
   generate = the generate stage (the first query, which loads models, is left out): warm p50s;
2. cold: `--cold` fresh processes each ask one question; their generate time (the first generate
   of a process, with models already loaded by retrieval) is the cold figure;
3. ingest cost: encodes `--ingest-sample` passages twice in this process, as plain chunk embeddings
   (`embed`) and with sentence vectors pooled from the same forward pass
   (`encode_with_sentences`); the ratio is what storing sentences adds to embedding, which is
   ~98 % of ingest. Skipped when the code under test has no sentence storage (a "before" run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RETRIEVAL_STAGES = ("dense", "sparse", "fusion", "rerank")


def one_query(index_dir: str, question: str) -> None:
    """Child process for the cold figure: print the first query's stage times as JSON."""
    from ragkit import RAG

    rag = RAG.open(index_dir)
    answer = rag.query(question)
    print(json.dumps({name: stage.ms for name, stage in answer.trace.stages.items()}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "datasets" / "boolq-dev")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--cold", type=int, default=3)
    parser.add_argument("--index-root", type=Path, default=REPO / ".ragkit" / "bench")
    parser.add_argument("--ingest-sample", type=int, default=800)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "generate_latency.json")
    parser.add_argument("--child", nargs=2, metavar=("INDEX", "QUESTION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        one_query(*args.child)
        return 0

    import ragkit
    from ragkit import RAG
    from ragkit.config import PipelineConfig
    from ragkit.eval.datasets import load_beir
    from ragkit.eval.retrieval import beir_documents, cache_dir_for

    result: dict[str, object] = {"ragkit": str(Path(ragkit.__file__).parent), "load_before": os.getloadavg()}
    dataset = load_beir(args.dataset)
    config = PipelineConfig()
    index_dir = cache_dir_for(args.dataset, config, root=args.index_root)
    rag = RAG(config, index_dir)
    started = time.perf_counter()
    stats = rag.ingest_documents(beir_documents(dataset, args.dataset / "corpus.jsonl"))
    result["ingest_s"] = time.perf_counter() - started
    result["texts_embedded"] = stats.texts_embedded

    questions = [dataset.queries[q] for q in dataset.queries if q in dataset.qrels][: args.queries]
    retrieval, generate = [], []
    for n, question in enumerate(questions):
        stages = {name: s.ms for name, s in rag.query(question).trace.stages.items()}
        if n == 0:
            result["first_query_ms"] = stages
            continue
        retrieval.append(sum(stages.get(s, 0.0) for s in RETRIEVAL_STAGES))
        generate.append(stages.get("generate", 0.0))
    result["warm"] = {
        "queries": len(generate),
        "retrieval_p50_ms": statistics.median(retrieval),
        "generate_p50_ms": statistics.median(generate),
        "generate_over_retrieval": statistics.median(generate) / statistics.median(retrieval),
    }
    rag.close()

    cold = []
    for question in questions[1 : 1 + args.cold]:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(index_dir), question],
            capture_output=True, text=True, check=True, env=os.environ,
        )
        cold.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if cold:
        result["cold"] = {
            "processes": len(cold),
            "generate_p50_ms": statistics.median(c.get("generate", 0.0) for c in cold),
            "retrieval_p50_ms": statistics.median(sum(c.get(s, 0.0) for s in RETRIEVAL_STAGES) for c in cold),
        }

    try:
        from ragkit.indexes.sentences import encode_with_sentences
    except ImportError:
        encode_with_sentences = None
    if encode_with_sentences is not None and args.ingest_sample:
        texts = [d.text for d in beir_documents(dataset, args.dataset / "corpus.jsonl")][: args.ingest_sample]
        embedder = RAG(config, index_dir).embedder
        embedder.embed(texts[:64])  # load and warm up
        timings = {}
        for name, run in (("embed only", lambda: embedder.embed(texts)),
                          ("embed + pooled sentences", lambda: encode_with_sentences(embedder, texts)),
                          ("embed only (again)", lambda: embedder.embed(texts))):
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            timings[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
        plain = statistics.fmean([timings["embed only"]["cpu_s"], timings["embed only (again)"]["cpu_s"]])
        timings["pooled_over_plain_cpu"] = timings["embed + pooled sentences"]["cpu_s"] / plain
        timings["passages"] = len(texts)
        result["ingest_cost"] = timings
    result["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
