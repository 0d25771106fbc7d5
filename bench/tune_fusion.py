"""Tune the fusion defaults on a BEIR dataset (boolq-dev), with a held-out half.

    python bench/tune_fusion.py ../shared/datasets/boolq-dev [--index DIR] [--out FILE]

(The fixed-weight tuning behind the previous default, kept for reference; bench/fusion.py
compares the methods on sets where either retriever wins and chose the current `adaptive`.)

Protocol (no per-row tuning):
  1. Index the corpus with the default pipeline (same documents as `ragkit eval retrieval`)
     and retrieve 300 dense and 300 sparse candidates per judged query, once.
  2. Split the judged queries by file order: the first half tunes, the second half reports.
  3. For every setting in a small grid (fusion method, RRF k, weights, convex normalisation,
     candidate depth = dense_k = sparse_k) fuse the candidates truncated to that depth, map
     chunks to documents (a document ranks at its best chunk) and score nDCG@10 with
     ragkit.eval.metrics - exactly how the eval command scores a run.
  4. Pick the best setting on the tuning half, preferring the simplest among those within
     0.002 of the best, and report it on the held-out half next to the best single retriever.

Prints Markdown tables and writes all scores as JSON (default bench/results/fusion-tuning.json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ragkit.api import RAG  # noqa: E402
from ragkit.config import ConvexConfig, PipelineConfig, RRFConfig  # noqa: E402
from ragkit.eval.datasets import load_beir  # noqa: E402
from ragkit.eval.metrics import Qrels, Run, evaluate, evaluate_per_query  # noqa: E402
from ragkit.eval.retrieval import _doc_run, beir_documents, select_queries  # noqa: E402
from ragkit.retrieval.fusion import fuse  # noqa: E402
from ragkit.schema import Trace  # noqa: E402

DEPTH = 300
METRIC = "ndcg@10"


def zscore_fusion(found: dict[str, list[tuple[int, float]]], weights: dict[str, float]) -> list[tuple[int, float]]:
    """Convex combination with z-score normalisation (explored here; not a ragkit option)."""
    scores: dict[int, float] = {}
    for name, ranking in found.items():
        values = np.array([s for _, s in ranking], dtype=np.float64)
        if values.size == 0:
            continue
        std = values.std()
        z = (values - values.mean()) / std if std > 1e-12 else np.zeros_like(values)
        floor = float(z.min())  # a retriever that missed a chunk contributes its own minimum
        for (row, _), value in zip(ranking, z):
            scores[row] = scores.get(row, 0.0) + weights.get(name, 0.0) * (float(value) - floor)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def settings() -> list[dict[str, Any]]:
    grid: list[dict[str, Any]] = []
    depths = [10, 20, 50, 100]
    weight_pairs = [(1.0, 1.0), (1.0, 0.75), (1.0, 0.5), (1.0, 0.35), (1.0, 0.25), (1.0, 0.15), (0.75, 1.0), (0.5, 1.0)]
    for depth, k, (wd, ws) in itertools.product(depths, [1, 2, 5, 10, 20, 60], weight_pairs):
        grid.append({"method": "rrf", "k": k, "dense": wd, "sparse": ws, "depth": depth})
    for depth, wd in itertools.product(depths, [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]):
        grid.append({"method": "convex-minmax", "dense": wd, "sparse": round(1 - wd, 2), "depth": depth})
        grid.append({"method": "convex-zscore", "dense": wd, "sparse": round(1 - wd, 2), "depth": depth})
    return grid


def simplicity(s: dict[str, Any]) -> tuple:
    """Lower is simpler: RRF before convex, equal weights, then conventional k and depth."""
    return (
        s["method"] != "rrf",
        s["method"] == "convex-zscore",  # not a ragkit option: only if clearly better
        s["dense"] != s["sparse"],
        abs(s.get("k", 60) - 60),
        abs(s["depth"] - 50),
    )


def fused_run(candidates, setting) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    found_all, doc_of_row = candidates
    depth = setting["depth"]
    weights = {"dense": setting["dense"], "sparse": setting["sparse"]}
    if setting["method"] == "rrf":
        config: Any = RRFConfig(k=setting["k"], weights=weights)
    elif setting["method"] == "convex-minmax":
        config = ConvexConfig(weights=weights)
    else:
        config = None
    run = {}
    for query_id, found in found_all.items():
        cut = {name: ranking[:depth] for name, ranking in found.items()}
        if config is None:
            rows = zscore_fusion(cut, weights)
        else:
            rows = [(f.row, f.score) for f in fuse(cut, config)]
        run[query_id] = _doc_run(rows, doc_of_row)
    return run


def score(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], ids: list[str]) -> float:
    return evaluate(Qrels({q: qrels[q] for q in ids}), Run({q: run[q] for q in ids if q in run}), [METRIC])[METRIC]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--index", type=Path, default=Path(".ragkit/eval-fusion-tuning"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fusion-tuning.json")
    opts = parser.parse_args()

    dataset = load_beir(opts.dataset)
    rag = RAG(PipelineConfig(), opts.index)
    t = time.perf_counter()
    rag.ingest_documents(beir_documents(dataset, opts.dataset / "corpus.jsonl"))
    print(f"indexed in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    ids = select_queries(dataset, None)
    retriever = rag.retriever()
    doc_of_row = retriever.snapshot.store.doc_ids_by_row()
    t = time.perf_counter()
    found_all = {}
    for begin in range(0, len(ids), 256):
        batch = ids[begin : begin + 256]
        results = retriever.search([dataset.queries[i] for i in batch], Trace(), top_k=1, depth=DEPTH)
        for q, result in zip(batch, results):
            found_all[q] = {name: result.rankings[name] for name in ("dense", "sparse")}
    print(f"retrieved candidates in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    half = len(ids) // 2
    tune_ids, test_ids = ids[:half], ids[half:]
    qrels = dataset.qrels
    candidates = (found_all, doc_of_row)

    singles, per_query = {}, {}
    for name in ("sparse", "dense"):
        run = {q: _doc_run(found[name], doc_of_row) for q, found in found_all.items()}
        singles[name] = {"tune": score(run, qrels, tune_ids), "test": score(run, qrels, test_ids), "all": score(run, qrels, ids)}
        per_query[name] = evaluate_per_query(Qrels({q: qrels[q] for q in ids}), Run(run), [METRIC])[METRIC]
    # Hindsight upper bound for choosing one retriever per query (not achievable; context only).
    oracle = {q: max(per_query["dense"][q], per_query["sparse"][q]) for q in ids}
    singles_oracle = {"tune": float(np.mean([oracle[q] for q in tune_ids])), "test": float(np.mean([oracle[q] for q in test_ids]))}

    rows = []
    t = time.perf_counter()
    for setting in settings():
        run = fused_run(candidates, setting)
        rows.append({**setting, "tune": score(run, qrels, tune_ids), "test": score(run, qrels, test_ids)})
    print(f"scored {len(rows)} settings in {time.perf_counter() - t:.0f}s", file=sys.stderr)

    best_tune = max(r["tune"] for r in rows)
    near = [r for r in rows if r["tune"] >= best_tune - 0.002]
    chosen = min(near, key=simplicity)
    current = next(r for r in rows if r["method"] == "rrf" and r["k"] == 60 and r["dense"] == r["sparse"] == 1.0 and r["depth"] == 50)
    best_single = max(singles, key=lambda n: singles[n]["tune"])
    chosen_all = score(fused_run(candidates, chosen), qrels, ids)
    report = {
        "dataset": str(opts.dataset.name), "queries": len(ids), "tune_queries": len(tune_ids),
        "test_queries": len(test_ids), "metric": METRIC, "singles": singles, "previous_default": current,
        "chosen": {**chosen, "all": chosen_all}, "best_on_tune": max(rows, key=lambda r: r["tune"]),
        "best_single_on_tune": best_single, "oracle_per_query_choice": singles_oracle, "settings": rows,
    }  # fmt: skip
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(report, indent=2))
    print(markdown(report))


def label(r: dict[str, Any]) -> str:
    if r["method"] == "rrf":
        return f"RRF k={r['k']}, weights dense {r['dense']} / sparse {r['sparse']}, depth {r['depth']}"
    return f"{r['method']} dense {r['dense']} / sparse {r['sparse']}, depth {r['depth']}"


def markdown(report: dict[str, Any]) -> str:
    s, rows = report["singles"], report["settings"]
    lines = [
        f"nDCG@10 on {report['dataset']}: tuning half = first {report['tune_queries']} judged queries (file order), "
        f"held-out half = last {report['test_queries']}.", "",
        "| setting | tuning half | held-out half |", "|---|---|---|",
        f"| sparse (BM25) only | {s['sparse']['tune']:.4f} | {s['sparse']['test']:.4f} |",
        f"| dense (MiniLM) only | {s['dense']['tune']:.4f} | {s['dense']['test']:.4f} |",
        f"| previous default: {label(report['previous_default'])} | {report['previous_default']['tune']:.4f} "
        f"| {report['previous_default']['test']:.4f} |",
    ]  # fmt: skip
    best_of = {}
    for r in rows:
        key = r["method"]
        if key not in best_of or r["tune"] > best_of[key]["tune"]:
            best_of[key] = r
    o = report["oracle_per_query_choice"]
    lines.append(f"| (hindsight bound: the better of the two retrievers for each query) | {o['tune']:.4f} | {o['test']:.4f} |")
    for key, r in best_of.items():
        lines.append(f"| best {key} on the tuning half: {label(r)} | {r['tune']:.4f} | {r['test']:.4f} |")
    c = report["chosen"]
    lines.append(f"| **chosen** (simplest within 0.002 of the best): {label(c)} | **{c['tune']:.4f}** | **{c['test']:.4f}** |")
    best_single = max(s[n]["test"] for n in s)
    lines += ["", f"Held-out: chosen {c['test']:.4f} vs best single retriever {best_single:.4f} "
              f"(+{c['test'] - best_single:.4f}; target +0.02)."]  # fmt: skip
    # depth sensitivity of the chosen family
    lines += ["", "Candidate depth (dense_k = sparse_k) for the chosen fusion and weights:", "",
              "| depth | tuning half | held-out half |", "|---|---|---|"]  # fmt: skip
    for r in rows:
        same = all(r.get(k) == c.get(k) for k in ("method", "k", "dense", "sparse"))
        if same:
            lines.append(f"| {r['depth']} | {r['tune']:.4f} | {r['test']:.4f} |")
    if c["method"] == "rrf":
        lines += ["", f"RRF k at depth {c['depth']} with the chosen weights:", "", "| k | tuning half | held-out half |",
                  "|---|---|---|"]  # fmt: skip
        for r in rows:
            if r["method"] == "rrf" and r["depth"] == c["depth"] and r["dense"] == c["dense"] and r["sparse"] == c["sparse"]:
                lines.append(f"| {r['k']} | {r['tune']:.4f} | {r['test']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
