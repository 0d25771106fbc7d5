#!/usr/bin/env python3
"""Fusion methods side by side on BEIR sets where dense wins and where BM25 wins.

    python bench/fusion.py                       # boolq-dev + HaluEval QA (scripts/make_halueval_beir.py)
    python bench/fusion.py --check NAME=DIR ...  # plus sets never used to choose anything
    python bench/fusion.py --no-doc              # do not rewrite the section in docs/benchmarks.md

Protocol (no per-row tuning, one configuration for every set):
  1. Each set is indexed with the default pipeline exactly as `ragkit eval retrieval` indexes it
     (same cache directory, so an index built by either is reused) and every judged query is run
     once through the retrieval path (`Retriever.search`) for 300 dense and 300 BM25 candidates,
     identical chunk texts merged as in the pipeline.
  2. Every method fuses those candidates cut to the pipeline's depth (50 per retriever) and to the
     eval command's (300); chunks map to documents as in the eval command (a document ranks at its
     best chunk) and `ragkit.eval.metrics` scores nDCG@10 and recall@10.
  3. The queries of the two dev sets are split by file order: the first half chooses `adaptive`'s
     `center` and `slope` from a small grid (the setting with the largest smaller-margin over the
     better single retriever of each set), the second half is held out. `--check` sets are never
     used for choosing.
  4. Cost: each method's fusion alone timed per query (median of interleaved repetitions over the
     same candidate lists at depth 50), and the whole single-query retrieval path (embedding,
     both searches, merging, fusion, fetching hits) with the old and the new default interleaved.
     `adaptive` keeps no state: nothing happens at ingest.

Prints Markdown tables, saves everything in bench/results/fusion.json and rewrites the
`fusion` section of docs/benchmarks.md (not with --no-doc). Run it with `heavy --exclusive`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from ragkit.api import RAG
from ragkit.components import ComponentConfig, build
from ragkit.config import PipelineConfig
from ragkit.eval.datasets import load_beir
from ragkit.eval.metrics import Qrels, Run, evaluate
from ragkit.eval.retrieval import _doc_run, beir_documents, cache_dir_for, select_queries
from ragkit.retrieval.adaptive import AdaptiveConfig
from ragkit.retrieval.convex import ConvexConfig
from ragkit.retrieval.rrf import RRFConfig
from ragkit.schema import Trace

DEV_SETS = {
    "boolq-dev": ROOT.parent / "shared" / "datasets" / "boolq-dev",
    "halueval-qa": ROOT / ".ragkit" / "datasets" / "halueval-qa",
}
CANDIDATES = 300
DEPTHS = (50, 300)  # the pipeline's dense_k/sparse_k; the eval command's
METRICS = ("ndcg@10", "recall@10")
TARGET_SLACK = 0.005  # fused nDCG@10 >= the better single retriever - this (issue 17)
GRID_CENTERS = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
GRID_SLOPES = (2.5, 5.0, 10.0, 20.0)


def methods() -> dict[str, ComponentConfig | None]:
    """Label -> fusion config (None: one retriever alone, by its label)."""
    return {
        "sparse (BM25) alone": None,
        "dense (MiniLM) alone": None,
        "convex min-max 0.75/0.25 (previous default)": ConvexConfig(),
        "convex min-max 0.5/0.5": ConvexConfig(weights={"dense": 0.5, "sparse": 0.5}),
        "convex z-score 0.75/0.25": ConvexConfig(normalization="zscore"),
        "convex z-score 0.5/0.5": ConvexConfig(normalization="zscore", weights={"dense": 0.5, "sparse": 0.5}),
        "RRF k=60, equal weights": RRFConfig(),
        "RRF k=1, dense 1 / sparse 0.5": RRFConfig(k=1, weights={"dense": 1.0, "sparse": 0.5}),
        "adaptive (per-query weight, z-score)": AdaptiveConfig(),
        "adaptive, min-max": AdaptiveConfig(normalization="minmax"),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- candidates ---------------------------------------------------------------------------------


def collect(dataset_dir: Path) -> dict[str, Any]:
    """Index (cached) and run every judged query once: merged dense and sparse candidates."""
    config = PipelineConfig()
    rag = RAG(config, cache_dir_for(dataset_dir, config))
    dataset = load_beir(dataset_dir)
    started = time.perf_counter()
    rag.ingest_documents(beir_documents(dataset, dataset_dir / "corpus.jsonl"))
    ingest_s = time.perf_counter() - started
    ids = select_queries(dataset, None)
    retriever = rag.retriever()
    candidates: dict[str, dict[str, list[tuple[int, float]]]] = {}
    started = time.perf_counter()
    for begin in range(0, len(ids), 128):
        batch = ids[begin : begin + 128]
        results = retriever.search([dataset.queries[q] for q in batch], Trace(), top_k=1, depth=CANDIDATES)
        for query_id, result in zip(batch, results):
            candidates[query_id] = {"dense": result.rankings["dense"], "sparse": result.rankings["sparse"]}
    log(f"{dataset_dir.name}: {len(ids)} queries, index {ingest_s:.0f} s, candidates {time.perf_counter() - started:.0f} s")
    return {
        "rag": rag,
        "retriever": retriever,
        "questions": [dataset.queries[q] for q in ids],
        "ids": ids,
        "qrels": {q: dataset.qrels[q] for q in ids},
        "doc_of_row": retriever.snapshot.store.doc_ids_by_row(),
        "candidates": candidates,
        "chunks": len(retriever.snapshot.store.doc_ids_by_row()),
        "documents": len(dataset.corpus),
    }


# --- scoring ------------------------------------------------------------------------------------


def ranked_rows(found: dict[str, list[tuple[int, float]]], label: str, fusion: Any, depth: int) -> list[tuple[int, float]]:
    cut = {name: ranking[:depth] for name, ranking in found.items()}
    if fusion is None:
        return cut["sparse" if label.startswith("sparse") else "dense"]
    return [(f.row, f.score) for f in fusion.fuse(cut)]


def score(data: dict[str, Any], label: str, fusion: Any, depth: int, ids: list[str]) -> dict[str, float]:
    run = {q: _doc_run(ranked_rows(data["candidates"][q], label, fusion, depth), data["doc_of_row"]) for q in ids}
    return evaluate(Qrels({q: data["qrels"][q] for q in ids}), Run(run), list(METRICS))


def halves(ids: list[str]) -> tuple[list[str], list[str]]:
    return ids[: len(ids) // 2], ids[len(ids) // 2 :]


def weight_summary(data: dict[str, Any], fusion: Any, depth: int = 50) -> dict[str, float]:
    """Distribution of the dense weight over the set's queries."""
    weights = sorted(
        fusion.weights({n: r[:depth] for n, r in found.items()})["dense"] for found in data["candidates"].values()
    )
    at = lambda p: weights[min(len(weights) - 1, int(p * len(weights)))]
    return {"p10": at(0.1), "median": at(0.5), "p90": at(0.9), "mean": statistics.fmean(weights)}


def choose(dev: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """adaptive's center and slope from the tuning halves of the dev sets (depth 50)."""
    singles = {}
    for name, data in dev.items():
        tune, _ = halves(data["ids"])
        singles[name] = max(score(data, label, None, 50, tune)["ndcg@10"] for label in ("sparse", "dense"))
    grid: list[dict[str, Any]] = []
    for center, slope in itertools.product(GRID_CENTERS, GRID_SLOPES):
        fusion = build("fusion", AdaptiveConfig(center=center, slope=slope))
        margins = {}
        for name, data in dev.items():
            tune, _ = halves(data["ids"])
            margins[name] = score(data, "adaptive", fusion, 50, tune)["ndcg@10"] - singles[name]
        grid.append({"center": center, "slope": slope, "margins": margins, "worst": min(margins.values())})
    best = max(grid, key=lambda g: (g["worst"], -g["slope"]))  # ties: the gentler slope
    return {"grid": grid, "chosen": {"center": best["center"], "slope": best["slope"]}, "tune_singles": singles}


# --- cost ---------------------------------------------------------------------------------------


def fusion_cost(data: dict[str, Any], fusions: dict[str, Any], repetitions: int = 5) -> dict[str, float]:
    """Median microseconds per query of `fuse` alone at depth 50, methods interleaved."""
    lists = [{n: r[:50] for n, r in found.items()} for found in data["candidates"].values()]
    per_method: dict[str, list[float]] = {label: [] for label in fusions}
    for _ in range(repetitions):
        for label, fusion in fusions.items():
            started = time.perf_counter()
            for found in lists:
                fusion.fuse(found)
            per_method[label].append((time.perf_counter() - started) * 1e6 / len(lists))
    return {label: statistics.median(values) for label, values in per_method.items()}


def path_cost(data: dict[str, Any], configs: dict[str, ComponentConfig], queries: int = 200) -> dict[str, dict[str, float]]:
    """The whole single-query retrieval path (`Retriever.search`, top 5), configs interleaved."""
    retriever = data["retriever"]
    fusions = {label: build("fusion", config) for label, config in configs.items()}
    times: dict[str, list[float]] = {label: [] for label in configs}
    for question in data["questions"][:queries]:
        for label, fusion in fusions.items():
            retriever.fusion = fusion
            started = time.perf_counter()
            retriever.search([question], Trace(), top_k=5)
            times[label].append((time.perf_counter() - started) * 1000)
    out = {}
    for label, values in times.items():
        values.sort()
        out[label] = {"p50_ms": statistics.median(values), "p95_ms": values[int(0.95 * (len(values) - 1))]}
    return out


# --- report -------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    sets = list(report["sets"])
    lines = [
        (
            f"Measured {meta['date']} on {meta['machine']}; load average {meta['loadavg_start'][0]:.2f} at start, "
            f"{meta['loadavg_end'][0]:.2f} at end; `python bench/fusion.py {meta['args']}` "
            f"({meta['total_s'] / 60:.1f} min; all numbers in bench/results/fusion.json)."
        ),
        "",
    ]
    for depth in DEPTHS:
        what = "the pipeline's depth" if depth == 50 else "`ragkit eval retrieval`'s depth"
        lines += [
            f"**nDCG@10 / recall@10, all judged queries, {depth} candidates per retriever ({what})**",
            "",
            "| method | " + " | ".join(f"{s} ({report['sets'][s]['queries']} q)" for s in sets) + " |",
            "|---|" + "---:|" * len(sets),
        ]
        for label in report["methods"]:
            cells = []
            for s in sets:
                m = report["sets"][s]["scores"][str(depth)][label]["all"]
                cells.append(f"{m['ndcg@10']:.4f} / {m['recall@10']:.3f}")
            bold = "**" if label == report["default"] else ""
            lines.append(f"| {bold}{label}{bold} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["**Held-out halves** (nDCG@10, depth 50; the first halves chose `center`/`slope`)", "",
              "| method | " + " | ".join(f"{s} tune / held-out" for s in report["dev_sets"]) + " |",
              "|---|" + "---:|" * len(report["dev_sets"])]  # fmt: skip
    for label in report["methods"]:
        cells = []
        for s in report["dev_sets"]:
            sc = report["sets"][s]["scores"]["50"][label]
            cells.append(f"{sc['tune']['ndcg@10']:.4f} / {sc['test']['ndcg@10']:.4f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    sel = report["selection"]
    lines += ["", (f"Grid (smaller tune-half margin over the better single retriever, nDCG@10): chosen center "
                   f"{sel['chosen']['center']}, slope {sel['chosen']['slope']}."), "",
              "| center \\ slope | " + " | ".join(f"{s:g}" for s in GRID_SLOPES) + " |",
              "|---|" + "---:|" * len(GRID_SLOPES)]  # fmt: skip
    for center in GRID_CENTERS:
        row = [g for g in sel["grid"] if g["center"] == center]
        lines.append(f"| {center} | " + " | ".join(f"{g['worst']:+.4f}" for g in row) + " |")
    lines += ["", "Dense weight per query under the default (depth 50): "
              + "; ".join(f"{s} median {w['median']:.2f} (10-90%: {w['p10']:.2f}-{w['p90']:.2f})"
                          for s, w in report["weights"].items()) + ".", ""]  # fmt: skip
    lines += ["**Targets** (fused nDCG@10 >= the better single retriever - 0.005, same configuration everywhere):", ""]
    for s in sets:
        for depth in DEPTHS:
            sc = report["sets"][s]["scores"][str(depth)]
            best = max(sc[label]["all"]["ndcg@10"] for label in ("sparse (BM25) alone", "dense (MiniLM) alone"))
            fused = sc[report["default"]]["all"]["ndcg@10"]
            ok = "MET" if fused >= best - TARGET_SLACK else "NOT MET"
            lines.append(f"- {s}, depth {depth}: {fused:.4f} vs {best:.4f} ({fused - best:+.4f}) -> {ok}")
    cost = report["cost"]
    lines += ["", f"**Cost** ({cost['set']}, {cost['queries']} queries): `fuse` alone per query (median of 5 interleaved "
              "passes over the same depth-50 lists): " + ", ".join(f"{label} {us:.0f} us" for label, us in cost["fuse_us"].items())
              + ". Whole single-query retrieval path (200 queries, interleaved): "
              + ", ".join(f"{label} p50 {v['p50_ms']:.1f} ms / p95 {v['p95_ms']:.1f} ms" for label, v in cost["path"].items())
              + ". Ingest: nothing (no fitted state, no files)."]  # fmt: skip
    return "\n".join(lines)


def rewrite_doc(text: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    start, end = "<!-- fusion:start -->", "<!-- fusion:end -->"
    current = doc.read_text()
    if start not in current:
        log(f"{doc}: no {start} marker; not rewritten")
        return
    head, rest = current.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), platform.processor())
    return f"{cpu.split()[0]} {' '.join(cpu.split()[1:3])}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", nargs="*", default=[], metavar="NAME=DIR", help="held-out BEIR sets (never used to choose)")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "fusion.json")
    parser.add_argument("--no-doc", action="store_true")
    opts = parser.parse_args()
    started = time.perf_counter()
    meta: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "loadavg_start": os.getloadavg(),
                            "args": " ".join(sys.argv[1:])}  # fmt: skip
    sets = dict(DEV_SETS)
    for item in opts.check:
        name, _, path = item.partition("=")
        sets[name] = Path(path)
    for name, path in sets.items():
        if not (path / "corpus.jsonl").is_file():
            hint = " (python scripts/make_halueval_beir.py)" if name == "halueval-qa" else ""
            raise SystemExit(f"error: {name}: no BEIR dataset at {path}{hint}")
    data = {name: collect(path) for name, path in sets.items()}
    dev = {name: data[name] for name in DEV_SETS}

    selection = choose(dev)
    chosen = AdaptiveConfig(**selection["chosen"])
    log(f"chosen: {selection['chosen']}")
    configs = methods()
    configs["adaptive (per-query weight, z-score)"] = chosen
    default = "adaptive (per-query weight, z-score)"
    fusions = {label: (build("fusion", c) if c is not None else None) for label, c in configs.items()}

    report: dict[str, Any] = {"meta": meta, "methods": list(configs), "default": default, "dev_sets": list(DEV_SETS),
                              "selection": selection, "sets": {}, "weights": {}}  # fmt: skip
    for name, d in data.items():
        entry: dict[str, Any] = {"queries": len(d["ids"]), "documents": d["documents"], "chunks": d["chunks"], "scores": {}}
        tune, test = halves(d["ids"])
        for depth in DEPTHS:
            entry["scores"][str(depth)] = {
                label: {"all": score(d, label, f, depth, d["ids"]), "tune": score(d, label, f, depth, tune), "test": score(d, label, f, depth, test)}
                for label, f in fusions.items()
            }  # fmt: skip
        report["sets"][name] = entry
        report["weights"][name] = weight_summary(d, fusions[default])
        log(f"{name}: scored")

    timed = {label: f for label, f in fusions.items() if f is not None}
    report["cost"] = {
        "set": "boolq-dev",
        "queries": len(data["boolq-dev"]["ids"]),
        "fuse_us": fusion_cost(data["boolq-dev"], timed),
        "path": path_cost(data["boolq-dev"], {"convex min-max 0.75/0.25": ConvexConfig(), "adaptive": chosen}),
    }
    meta.update(loadavg_end=os.getloadavg(), total_s=time.perf_counter() - started)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    print(text)
    if not opts.no_doc:
        rewrite_doc(text)


if __name__ == "__main__":
    main()
