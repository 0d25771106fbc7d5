"""ragkit benchmarks: ingest, index build, query latency, memory, BM25 vs rank-bm25, ANN recall.

    python bench/run.py            # 10K (real MiniLM ingest), 100K and 1M chunks: about an hour
    python bench/run.py --quick    # 500 chunks real ingest, 10K and 100K: a few minutes
    python bench/run.py update ... # the incremental-update benchmark (bench/update.py, same options)

Prints a table, saves bench/results/<mode>.json and rewrites this mode's section of
docs/benchmarks.md. Each measurement runs in a fresh subprocess (bench/workers.py), so peak
RSS figures are per phase: "query RSS" is a process that opens the index and serves queries.

What is synthetic, and why:
  * text is generated (bench/corpus.py: Zipf-distributed English words; no download needed);
  * encoding with MiniLM runs at ~10-20 chunks/s on 2 CPU cores, so only the smallest scale
    is embedded for real; larger scales use clustered random unit vectors for the corpus
    (bench/workers.py SyntheticEmbedder) - query latency still includes embedding each query
    with the real MiniLM, and recall there is measured with held-out synthetic queries;
  * fused+rerank uses a randomly initialised cross-encoder of MiniLM-L6 size: the latency is
    representative of a real MiniLM-L6 cross-encoder, the ranking is meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DOC = ROOT / "docs" / "benchmarks.md"

# name -> (target chunks, real MiniLM encoding?)
FULL = [("10K", 10_000, True), ("100K", 100_000, False), ("1M", 1_000_000, False)]
QUICK = [("500", 500, True), ("10K", 10_000, False), ("100K", 100_000, False)]


def run_phase(phase: str, args: dict[str, Any], work: Path) -> dict[str, Any]:
    args_file = work / f"{phase}-args.json"
    result_file = work / f"{phase}-result.json"
    args_file.write_text(json.dumps(args))
    result_file.unlink(missing_ok=True)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(BENCH / "workers.py"), phase, str(args_file), str(result_file)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    if proc.returncode != 0 or not result_file.exists():
        print(proc.stdout[-4000:], file=sys.stderr)
        raise SystemExit(f"benchmark phase {phase!r} failed (exit {proc.returncode})")
    result = json.loads(result_file.read_text())
    result["phase_wall_s"] = time.perf_counter() - t
    return result


def bench_scale(name: str, chunks: int, real: bool, opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    index = work / "index"
    log(f"[{name}] building ({'MiniLM' if real else 'synthetic vectors'}) ...")
    n_centres = max(1, chunks // 100)
    build = run_phase(
        "build", {"work": str(work), "chunks": chunks, "real_encode": real, "n_centres": n_centres}, work
    )
    log(f"[{name}] {build['chunks']} chunks, ingest {build['ingest_s']:.1f}s; querying ...")
    query = run_phase(
        "query",
        {"index": str(index), "work": str(work), "queries": opts.queries, "rerank_queries": opts.rerank_queries},
        work,
    )
    run_rank = chunks < 1_000_000 or opts.rank_bm25_1m
    log(f"[{name}] BM25 vs {'rank-bm25' if run_rank else '(rank-bm25 skipped)'} ...")
    bm25 = run_phase(
        "bm25",
        {"index": str(index), "queries": opts.queries, "rank_bm25": run_rank, "rank_bm25_queries": opts.rank_bm25_queries},
        work,
    )
    log(f"[{name}] dense recall ...")
    recall = run_phase(
        "recall", {"index": str(index), "synthetic": not real, "queries": 100, "n_centres": n_centres}, work
    )
    return {"scale": name, "target_chunks": chunks, "real_encode": real, "build": build, "query": query,
            "bm25": bm25, "recall": recall}  # fmt: skip


# --- reporting ----------------------------------------------------------------------------------


def _lat(r: dict[str, Any], key: str) -> str:
    v = r["query"]["latency"].get(key)
    return f"{v['p50_ms']:.1f} / {v['p95_ms']:.1f}" if v else "-"


def _mb(x: float) -> str:
    return f"{x / 1024:.2f} GB" if x >= 1024 else f"{x:.0f} MB"


def rss_budget_mb(r: dict[str, Any]) -> float:
    b = r["build"]
    return 1.3 * (b["vectors_f32_bytes"] + b["bm25_matrix_bytes"]) / 2**20


def tables(results: list[dict[str, Any]]) -> str:
    lines = ["**Ingest and build** (wall clock; ratio = ingest chunks/s / raw `SentenceTransformer.encode` chunks/s "
             "on the same chunk texts, same process, raw run split before/after the ingest)", "",
             "| chunks | dense vectors | ingest chunks/s | raw encode chunks/s | ratio (wall) | ratio (CPU time) "
             "| dense index | dense build | BM25 build | build peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    raw_rate = next((r["build"]["raw_chunks_per_s"] for r in results if "raw_chunks_per_s" in r["build"]), None)
    for r in results:
        b = r["build"]
        d = b["dense_index"]
        kind = d["type"] + ("" if d["type"] == "flat" else f" M={d.get('M')} ef={d.get('ef_search')}")
        kind += f", {d['storage']}"
        t = b["writer_timings"]
        if "raw_chunks_per_s" in b:
            raw = (f"{b['ingest_chunks_per_s']:.1f} | {b['raw_chunks_per_s']:.1f} | **{b['ingest_vs_raw']:.2f}x** "
                   f"| {b['ingest_vs_raw_cpu']:.2f}x")  # fmt: skip
        elif raw_rate:
            # Everything but encoding, measured here; encoding at the raw rate measured above.
            projected = (1 / raw_rate) / (1 / raw_rate + b["ingest_s"] / b["chunks"])
            raw = (f"{b['ingest_chunks_per_s']:.0f} without encoding | - | {projected:.3f}x projected "
                   f"(with {raw_rate:.1f} chunks/s encoding) | -")  # fmt: skip
        else:
            raw = f"{b['ingest_chunks_per_s']:.0f} without encoding | - | - | -"
        lines.append(
            f"| {b['chunks']:,} | {b['dense_vectors']} | {raw} | {kind} | {t.get('dense_index', 0):.1f} s "
            f"| {t.get('sparse_index', 0):.1f} s | {_mb(b['peak_rss_mb'])} |"
        )
    lines += ["", "**Query latency** (ms, p50 / p95, one query at a time; dense includes embedding the query "
              "with MiniLM; fused = dense + sparse + the default fusion (merging identical texts, convex) + fetching the hits, no rerank)", "",
              "| chunks | sparse | dense | fused | fused CPU time | fused + rerank (top 30) | query-process peak RSS "
              "| 1.3 x (f32 vectors + BM25 matrix) |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        q = r["query"]
        lines.append(
            f"| {r['build']['chunks']:,} | {_lat(r, 'sparse')} | {_lat(r, 'dense')} | **{_lat(r, 'fused')}** "
            f"| {q['fused_cpu']['p50_ms']:.1f} / {q['fused_cpu']['p95_ms']:.1f} | {_lat(r, 'fused+rerank')} | {_mb(q['peak_rss_mb'])} | {_mb(rss_budget_mb(r))} |"
        )
    lines += ["", "**BM25 vs rank-bm25** (same tokens, same machine, same run; single-query top-k; rank-bm25 "
              "timed as `get_scores` + argpartition) and **dense recall** vs exact search", "",
              "| chunks | BM25 terms | ragkit q/s | ragkit batch q/s | rank-bm25 q/s | speed-up | max score diff "
              "| dense index served | recall@10 / @50 | default hnsw on the same vectors: recall@10 / @50 "
              "| recall measured with |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        m, rc = r["bm25"], r["recall"]
        theirs = m.get("rank_bm25")
        rank = (f"{theirs['qps']:.1f} | **{m['ratio_qps']:.0f}x** | {m['max_abs_score_diff']:.1e}"
                if theirs else "not run | - | -")  # fmt: skip
        s = rc["served"]
        h = rc.get("hnsw_default")
        alt = f"{h['recall@10']:.3f} / {h['recall@50']:.3f} ({h['storage']})" if h else "(served)"
        lines.append(
            f"| {r['build']['chunks']:,} | {m['terms']:,} | {m['ragkit']['qps']:.0f} | {m['ragkit_batch_qps']:.0f} "
            f"| {rank} | {s['type']} ({s['storage']}) | {s['recall@10']:.3f} / {s['recall@50']:.3f} | {alt} "
            f"| {rc['queries']} |"
        )
    for r in results:
        sweep = r["recall"].get("hnsw_sweep")
        if not sweep:
            continue
        lines += ["", f"**HNSW on the real MiniLM vectors** ({r['build']['chunks']:,} chunks, served exactly; M=32, "
                  f"{sweep[0]['storage']} storage; recall vs exact for the benchmark questions)", "",
                  "| ef_construction | ef_search | build | recall@10 | recall@50 |", "|---|---|---|---|---|"]  # fmt: skip
        for e in sweep:
            lines.append(f"| {e['ef_construction']} | {e['ef_search']} | {e['build_s']:.1f} s | {e['recall@10']:.3f} "
                         f"| {e['recall@50']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def targets(results: list[dict[str, Any]]) -> list[str]:
    out = []
    by = {r["target_chunks"]: r for r in results}

    def mark(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    real = [r for r in results if "raw_chunks_per_s" in r["build"]]
    for r in real:
        b = r["build"]
        out.append(f"ingest >= 0.9x raw encode ({b['chunks']:,} chunks): {b['ingest_vs_raw']:.2f}x wall "
                   f"({b['ingest_vs_raw_cpu']:.2f}x CPU time) -> {mark(b['ingest_vs_raw'] >= 0.9)}")  # fmt: skip
    for n, r in sorted(by.items()):
        m = r["bm25"]
        if m.get("rank_bm25") and n >= 100_000:
            out.append(f"BM25 >= 50x rank-bm25 at {r['build']['chunks']:,} chunks: {m['ratio_qps']:.0f}x "
                       f"-> {mark(m['ratio_qps'] >= 50)}")  # fmt: skip
    if 100_000 in by:
        p50 = by[100_000]["query"]["latency"]["fused"]["p50_ms"]
        out.append(f"fused p50 <= 30 ms at 100K: {p50:.1f} ms -> {mark(p50 <= 30)}")
    if 1_000_000 in by:
        r = by[1_000_000]
        p50 = r["query"]["latency"]["fused"]["p50_ms"]
        rss, budget = r["query"]["peak_rss_mb"], rss_budget_mb(r)
        out.append(f"fused p50 <= 50 ms at 1M: {p50:.1f} ms -> {mark(p50 <= 50)}")
        out.append(f"query peak RSS <= 1.3x (f32 vectors + BM25 matrix) at 1M: {_mb(rss)} vs {_mb(budget)} "
                   f"({rss / budget * 1.3:.2f}x) -> {mark(rss <= budget)}")  # fmt: skip
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def markdown(mode: str, results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    notes = [
        f"Measured {meta['date']} on {meta['machine']}; load average {meta['loadavg_start']:.1f} at start, "
        f"{meta['loadavg_end']:.1f} at end (the machine was shared: absolute timings are noisy, ratios are "
        f"measured within one run). Total run time {meta['total_s'] / 60:.1f} min (`python bench/run.py"
        f"{' --quick' if mode == 'quick' else ''}`).",
        "Synthetic parts: generated Zipf text; corpus vectors above the first scale are clustered random unit "
        "vectors (MiniLM would need hours to encode them on 2 cores), queries are still embedded with the real "
        "MiniLM; rerank latency uses a random-weight cross-encoder of MiniLM-L6 size (representative cost, "
        "meaningless ranking).",
    ]
    body = [f"### `{mode}` run", "", *[f"- {n}" for n in notes], "", tables(results), "", "Targets:", ""]
    body += [f"- {t}" for t in targets(results)]
    return "\n".join(body)


def write_doc(mode: str, section: str) -> None:
    start, end = f"<!-- bench:{mode}:start -->", f"<!-- bench:{mode}:end -->"
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    if sys.argv[1:2] == ["update"]:  # one commit on a big index, and 100 of them (issue 12)
        import update  # bench/update.py: this script's directory is on sys.path

        update.main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 real + 10K + 100K chunks (a few minutes)")
    parser.add_argument("--scales", help="comma-separated subset of the mode's scales, e.g. 10K,100K")
    parser.add_argument("--queries", type=int, default=None, help="queries per latency measurement")
    parser.add_argument("--rerank-queries", type=int, default=None)
    parser.add_argument("--rank-bm25-queries", type=int, default=20)
    parser.add_argument("--rank-bm25-1m", action="store_true", help="also run rank-bm25 at 1M (~10 GB RAM)")
    parser.add_argument("--workdir", help="where corpora and indexes go (default: a temp dir, removed)")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    opts = parser.parse_args()
    mode = "quick" if opts.quick else "full"
    opts.queries = opts.queries or (100 if opts.quick else 200)
    opts.rerank_queries = opts.rerank_queries if opts.rerank_queries is not None else (3 if opts.quick else 20)
    scales = QUICK if opts.quick else FULL
    if opts.scales:
        wanted = {s.strip().upper() for s in opts.scales.split(",")}
        scales = [s for s in scales if s[0].upper() in wanted]

    started = time.perf_counter()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "loadavg_start": os.getloadavg()[0]}
    root = Path(opts.workdir) if opts.workdir else Path(tempfile.mkdtemp(prefix="ragkit-bench-"))
    results = []
    # A subset run must not overwrite the full run's saved results (or its docs section).
    out_name = f"{mode}-{'-'.join(s[0] for s in scales)}.json" if opts.scales else f"{mode}.json"
    try:
        for name, chunks, real in scales:
            results.append(bench_scale(name, chunks, real, opts, root / name))
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / out_name).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    finally:
        if not opts.workdir:
            shutil.rmtree(root, ignore_errors=True)
    meta.update(loadavg_end=os.getloadavg()[0], total_s=time.perf_counter() - started)
    (RESULTS / out_name).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    section = markdown(mode, results, meta)
    print(section)
    if not opts.no_doc and not opts.scales:
        write_doc(mode, section)


if __name__ == "__main__":
    main()
