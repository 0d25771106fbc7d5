#!/usr/bin/env python3
"""ragkit vs LlamaIndex vs Haystack, side by side on one BEIR dataset, same model, same texts.

    python bench/peers.py --quick        # 500 passages, 1 repetition: a few minutes
    python bench/peers.py                # all passages (boolq-dev: 2,938), 3 repetitions
    python bench/peers.py --dataset DIR  # any BEIR directory (e.g. scripts/make_halueval_beir.py's)

Run it with the project's interpreter (`.venv/bin/python`, `make install-dev`: it needs ranx).
The peers are installed on first use into their own virtual environments under
`--cache-dir` (default ~/.cache/ragkit-bench), so the project's own environment stays clean:

  LlamaIndex  llama-index-core, -embeddings-huggingface, -retrievers-bm25: VectorStoreIndex +
              BM25Retriever (bm25s), QueryFusionRetriever(mode="reciprocal_rerank", num_queries=1)
  Haystack    haystack-ai + sentence-transformers-haystack: InMemoryDocumentStore, InMemoryBM25 and
              InMemoryEmbedding retrievers, DocumentJoiner(reciprocal_rank_fusion)

Every system gets the bundled all-MiniLM-L6-v2 from its local directory (no hub), the same passage
texts (title + text, one document per passage), the same thread count, each library's default
batch size, top-10 hybrid retrieval and no LLM or reranker. Measured per system, each phase in a
fresh process (bench/peer_workers.py), repetitions interleaved (the system order rotates each
repetition, so load changes hit all alike), medians over repetitions:

  ingest        passages -> a persisted hybrid index, model already loaded: wall and CPU seconds
  raw encode    SentenceTransformer.encode (torch fp32) of ragkit's chunk texts: the floor the
                torch-based peers cannot beat; ragkit's ONNX fp32/int8 encodes of the same texts
  cold          a new process: import, reopen the index, first hybrid query (wall, CPU incl. start);
                also `ragkit query` itself (the CLI, extractive answer) and, with --baseline, the
                same CLI at an older commit on the same passages
  warm          hybrid retrieval p50/p95 over the latency queries, one at a time
  quality       nDCG@10 and recall@10 (ranx) for dense, BM25 and hybrid over the quality queries
                (computed once: retrieval is deterministic)

Prints a table, saves bench/results/peers[-quick][-DATASET].json, and rewrites this mode's section
in docs/benchmarks.md and the README's peers table (not with --no-doc).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "boolq-dev"
SYSTEMS = ("ragkit", "llamaindex", "haystack")
# Pinned CPU torch first (otherwise pip pulls CUDA builds), then the framework.
PEER_PACKAGES = {
    "llamaindex": ["llama-index-core", "llama-index-embeddings-huggingface", "llama-index-retrievers-bm25"],
    "haystack": ["haystack-ai", "sentence-transformers-haystack"],
}
TORCH = "torch==2.13.0"
QUESTION = "is the great red spot a storm on jupiter"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- environments -------------------------------------------------------------------------------


def peer_python(system: str, cache: Path) -> Path:
    """The interpreter of `system`'s own venv, created and filled on first use."""
    venv = cache / f"venv-{system}"
    python = venv / "bin" / "python"
    marker = venv / ".ragkit-bench-installed"
    if marker.exists():
        return python
    log(f"[setup] installing {system} into {venv} (once) ...")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, TORCH], check=True)
    subprocess.run([*pip, *PEER_PACKAGES[system]], check=True)
    marker.write_text(json.dumps(versions(python, system)))
    return python


def versions(python: Path, system: str) -> dict[str, str]:
    names = {"ragkit": ["ragkit", "onnxruntime", "torch", "sentence-transformers", "faiss-cpu"],
             "llamaindex": ["llama-index-core", "llama-index-retrievers-bm25", "bm25s", "torch", "sentence-transformers"],
             "haystack": ["haystack-ai", "sentence-transformers-haystack", "torch", "sentence-transformers"]}[system]  # fmt: skip
    code = ("import json, importlib.metadata as m\nout = {}\n"
            f"for n in {names!r}:\n    try: out[n] = m.version(n)\n    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")  # fmt: skip
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


# --- data ---------------------------------------------------------------------------------------


def load_dataset(directory: Path, max_passages: int | None, n_quality: int, n_latency: int) -> dict[str, Any]:
    """Passages (title + text, as `ragkit eval retrieval` indexes them), judged queries in file
    order whose relevant passages are all in the corpus, and their qrels.

    With `max_passages`, the corpus is the relevant passages of the first judged queries (in file
    order) until that many, so the subset has judged queries at all; no row is chosen by hand."""
    corpus: dict[str, str] = {}
    with (directory / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            title, text = row.get("title", ""), row.get("text", "")
            body = f"{title}\n\n{text}" if title else text
            if body.strip():
                corpus[str(row["_id"])] = body
    queries: dict[str, str] = {}
    with (directory / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            queries[str(row["_id"])] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    with (directory / "qrels" / "test.tsv").open(encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0] == "query-id":
                continue
            if int(parts[2]) > 0:
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    judged = [q for q in queries if q in qrels and all(d in corpus for d in qrels[q])]
    if max_passages is not None:
        chosen: dict[str, None] = {}
        for q in judged:
            if len(chosen) >= max_passages:
                break
            chosen.update(dict.fromkeys(qrels[q]))
        corpus = {d: corpus[d] for d in chosen}
        judged = [q for q in judged if all(d in corpus for d in qrels[q])]
    quality = judged[:n_quality]
    return {
        "passages": [{"id": d, "text": t} for d, t in corpus.items()],
        "quality": {q: queries[q] for q in quality},
        "latency": [queries[q] for q in judged[:n_latency]],
        "qrels": {q: qrels[q] for q in quality},
    }


# --- running phases -----------------------------------------------------------------------------


def run_worker(python: Path, system: str, phase: str, args: dict[str, Any], work: Path,
               env: dict[str, str], cwd: Path = ROOT) -> dict[str, Any]:  # fmt: skip
    args_file = work / f"{system}-{phase}-args.json"
    result_file = work / f"{system}-{phase}-result.json"
    args_file.write_text(json.dumps(args))
    result_file.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(
        [str(python), str(BENCH / "peer_workers.py"), system, phase, str(args_file), str(result_file)],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or not result_file.exists():
        log(proc.stdout[-4000:])
        raise SystemExit(f"{system} {phase} failed (exit {proc.returncode})")
    result = json.loads(result_file.read_text())
    result["process_wall_s"] = wall
    result["process_cpu_s_outside"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def timed_process(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        log(proc.stdout[-4000:])
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode})")
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


def baseline_tree(commit: str, cache: Path) -> Path:
    """ragkit's package at `commit`, unpacked once (run with this venv's dependencies)."""
    target = cache / f"ragkit-{commit}"
    if not (target / "ragkit").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "ragkit"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def thread_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env.update(extra or {})
    return env


# --- reporting ----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def quality_metrics(data: dict[str, Any], runs: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    from ranx import Qrels, Run, evaluate

    qrels = Qrels(data["qrels"])
    out = {}
    for mode, run in runs.items():
        # ranx needs a non-empty ranking per query; a query that retrieved nothing scores 0.
        filled = {q: (run.get(q) or {"__none__": 0.0}) for q in data["qrels"]}
        scores = evaluate(qrels, Run(filled), ["ndcg@10", "recall@10"], make_comparable=True)
        out[mode] = {k: float(v) for k, v in scores.items()}
    return out


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for system, reps in results["systems"].items():
        s: dict[str, Any] = {}
        s["ingest_s"] = median([r["ingest"]["ingest_s"] for r in reps])
        s["ingest_cpu_s"] = median([r["ingest"]["ingest_cpu_s"] for r in reps])
        s["cold_s"] = median([r["cold"]["process_wall_s"] for r in reps])
        s["cold_cpu_s"] = median([r["cold"]["process_cpu_s_outside"] for r in reps])
        s["warm_p50_ms"] = median([r["warm"]["hybrid"]["p50_ms"] for r in reps])
        s["warm_p95_ms"] = median([r["warm"]["hybrid"]["p95_ms"] for r in reps])
        s["quality"] = results["quality"].get(system)
        s["chunks"] = reps[0]["ingest"].get("chunks")
        s["batch_size"] = reps[0]["ingest"].get("batch_size")
        summary[system] = s
    raw = results.get("raw", [])
    if raw:
        summary["raw"] = {name: {"s": median([r[name]["s"] for r in raw]), "cpu_s": median([r[name]["cpu_s"] for r in raw])}
                          for name in ("torch_fp32", "onnx_fp32", "onnx_int8")}  # fmt: skip
        summary["raw"]["texts"] = raw[0]["texts"]
    for key in ("cli", "baseline_cli"):
        if results.get(key):
            summary[key] = {"wall_s": median([r["wall_s"] for r in results[key]]),
                            "cpu_s": median([r["cpu_s"] for r in results[key]])}  # fmt: skip
    return summary


def table(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    names = [s for s in SYSTEMS if s in summary]
    label = {"ragkit": "ragkit", "llamaindex": "LlamaIndex", "haystack": "Haystack"}
    lines = [f"| {meta['dataset']} ({meta['passages']:,} passages) | " + " | ".join(label[n] for n in names) + " |",
             "|---|" + "---:|" * len(names)]  # fmt: skip

    def row(title: str, fmt: Any) -> None:
        lines.append(f"| {title} | " + " | ".join(fmt(summary[n]) for n in names) + " |")

    row("ingest wall / CPU (s)", lambda s: f"{s['ingest_s']:.1f} / {s['ingest_cpu_s']:.1f}")
    row("reopen + first query: wall / CPU (s, new process)", lambda s: f"{s['cold_s']:.1f} / {s['cold_cpu_s']:.1f}")
    row("warm hybrid p50 / p95 (ms)", lambda s: f"{s['warm_p50_ms']:.1f} / {s['warm_p95_ms']:.1f}")
    for mode in ("hybrid", "dense", "bm25"):
        row(f"{mode} nDCG@10 / recall@10",
            lambda s, m=mode: f"{s['quality'][m]['ndcg@10']:.3f} / {s['quality'][m]['recall@10']:.3f}" if s["quality"] else "-")  # fmt: skip
    row("documents embedded (chunks) / batch size", lambda s: f"{s['chunks']:,} / {s['batch_size']}")
    out = "\n".join(lines)
    raw = summary.get("raw")
    if raw:
        out += (f"\n\nRaw encode of ragkit's {raw['texts']:,} chunk texts (the floor): torch fp32 "
                f"{raw['torch_fp32']['s']:.1f} s wall / {raw['torch_fp32']['cpu_s']:.1f} CPU-s; ONNX fp32 "
                f"{raw['onnx_fp32']['s']:.1f} / {raw['onnx_fp32']['cpu_s']:.1f}; ONNX int8 "
                f"{raw['onnx_int8']['s']:.1f} / {raw['onnx_int8']['cpu_s']:.1f}.")  # fmt: skip
    if summary.get("cli"):
        cli = summary["cli"]
        out += f"\n\nCold `ragkit query` (CLI, extractive answer, new process): {cli['wall_s']:.1f} s wall / {cli['cpu_s']:.1f} CPU-s"
        if summary.get("baseline_cli"):
            base = summary["baseline_cli"]
            out += (f"; at {meta['baseline']}: {base['wall_s']:.1f} s / {base['cpu_s']:.1f} CPU-s "
                    f"(**{cli['cpu_s'] / base['cpu_s']:.2f}x** CPU)")  # fmt: skip
        out += "."
    return out


def targets(summary: dict[str, Any]) -> list[str]:
    out = []
    peers = [p for p in ("llamaindex", "haystack") if p in summary]
    if "ragkit" not in summary or not peers:
        return out
    r = summary["ragkit"]

    def mark(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    for p in peers:
        ratio = r["ingest_cpu_s"] / summary[p]["ingest_cpu_s"]
        out.append(f"ingest CPU <= 0.67x {p}: {ratio:.2f}x -> {mark(ratio <= 0.67)}")
    fastest = min(summary[p]["warm_p50_ms"] for p in peers)
    ratio = r["warm_p50_ms"] / fastest
    out.append(f"warm hybrid p50 <= 0.5x the faster peer: {ratio:.2f}x -> {mark(ratio <= 0.5)}")
    if r["quality"]:
        for p in peers:
            q = summary[p]["quality"]
            out.append(f"hybrid nDCG@10 >= {p}: {r['quality']['hybrid']['ndcg@10']:.4f} vs {q['hybrid']['ndcg@10']:.4f} "
                       f"-> {mark(r['quality']['hybrid']['ndcg@10'] >= q['hybrid']['ndcg@10'])}")  # fmt: skip
            out.append(f"BM25 nDCG@10 >= {p}: {r['quality']['bm25']['ndcg@10']:.4f} vs {q['bm25']['ndcg@10']:.4f} "
                       f"-> {mark(r['quality']['bm25']['ndcg@10'] >= q['bm25']['ndcg@10'])}")  # fmt: skip
    cold = summary.get("cli", {}).get("cpu_s")
    if cold is not None:
        if summary.get("baseline_cli"):
            ratio = cold / summary["baseline_cli"]["cpu_s"]
            out.append(f"cold `ragkit query` CPU <= 0.3x the baseline's: {ratio:.2f}x -> {mark(ratio <= 0.3)}")
        for p in peers:
            out.append(f"cold `ragkit query` CPU below {p}'s reopen + first query: {cold:.1f} vs "
                       f"{summary[p]['cold_cpu_s']:.1f} CPU-s -> {mark(cold < summary[p]['cold_cpu_s'])}")  # fmt: skip
    return out


def machine() -> str:
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def replace_section(path: Path, key: str, body: str) -> None:
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    text = path.read_text(encoding="utf-8")
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 passages, 1 repetition, fewer queries")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="a BEIR directory")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; --quick 1)")
    parser.add_argument("--passages", type=int, help="passages (default all; --quick 500)")
    parser.add_argument("--quality-queries", type=int, help="default 1000 (--quick 300)")
    parser.add_argument("--latency-queries", type=int, help="default 300 (--quick 100)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--baseline", default="fc3afc0", help="also time `ragkit query` at this commit ('' to skip)")
    parser.add_argument("--pipeline", type=Path, help="a ragkit pipeline YAML (default: the built-in default)")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "ragkit-bench")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md and README.md")
    opts = parser.parse_args()
    quick = opts.quick
    reps = opts.reps or (1 if quick else 3)
    n_passages = opts.passages or (500 if quick else None)
    systems = [s.strip() for s in opts.systems.split(",") if s.strip()]

    started = time.perf_counter()
    meta: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
                            "loadavg_start": os.getloadavg(), "mode": "quick" if quick else "full",
                            "dataset": opts.dataset.name, "reps": reps, "threads": opts.threads}  # fmt: skip
    data = load_dataset(opts.dataset, n_passages, opts.quality_queries or (300 if quick else 1000),
                        opts.latency_queries or (100 if quick else 300))  # fmt: skip
    meta.update(passages=len(data["passages"]), quality_queries=len(data["quality"]), latency_queries=len(data["latency"]))
    log(f"{opts.dataset.name}: {meta['passages']} passages, {meta['quality_queries']} quality and "
        f"{meta['latency_queries']} latency queries; {reps} repetition(s), {opts.threads} threads")  # fmt: skip

    from ragkit.models import resolve_model

    model_path = resolve_model("bundled:all-MiniLM-L6-v2")
    opts.cache_dir.mkdir(parents=True, exist_ok=True)
    pythons = {"ragkit": Path(sys.executable)}
    for system in systems:
        if system != "ragkit":
            pythons[system] = peer_python(system, opts.cache_dir)
    meta["versions"] = {s: versions(p, s) for s, p in pythons.items()}
    env = thread_env(opts.threads)

    work = Path(tempfile.mkdtemp(prefix="ragkit-peers-"))
    results: dict[str, Any] = {"systems": {s: [] for s in systems}, "quality": {}, "raw": [], "cli": [], "baseline_cli": []}
    try:
        passages_file = work / "passages.jsonl"
        with passages_file.open("w", encoding="utf-8") as f:
            for p in data["passages"]:
                f.write(json.dumps(p) + "\n")
        base = {"passages": str(passages_file), "model_path": model_path, "threads": opts.threads,
                "question": QUESTION, "pipeline": str(opts.pipeline) if opts.pipeline else None}  # fmt: skip
        baseline_index = None
        if opts.baseline and "ragkit" in systems:
            tree = baseline_tree(opts.baseline, opts.cache_dir)
            baseline_index = work / "baseline-index"
            log(f"[baseline] ragkit at {opts.baseline}: ingesting the passages (not timed) ...")
            docs_dir = work / "baseline-docs"
            docs_dir.mkdir()
            (docs_dir / "passages.jsonl").write_text(passages_file.read_text(encoding="utf-8"), encoding="utf-8")
            baseline_env = thread_env(opts.threads, {"PYTHONPATH": str(tree)})
            timed_process([sys.executable, "-m", "ragkit.cli", "ingest", str(docs_dir), "--index", str(baseline_index)],
                          baseline_env, cwd=work)  # fmt: skip
        for rep in range(reps):
            order = systems[rep % len(systems):] + systems[: rep % len(systems)]
            for system in order:
                index = work / f"{system}-index-{rep}"
                python = pythons[system]
                log(f"[rep {rep + 1}/{reps}] {system}: ingest ...")
                r: dict[str, Any] = {"ingest": run_worker(python, system, "ingest", {**base, "index": str(index)}, work, env)}
                log(f"[rep {rep + 1}/{reps}] {system}: ingest {r['ingest']['ingest_s']:.1f} s "
                    f"({r['ingest']['ingest_cpu_s']:.1f} CPU-s); cold, warm ...")  # fmt: skip
                r["cold"] = run_worker(python, system, "cold", {**base, "index": str(index)}, work, env)
                r["warm"] = run_worker(python, system, "warm", {**base, "index": str(index), "queries": data["latency"]}, work, env)
                if rep == 0:
                    log(f"[rep {rep + 1}/{reps}] {system}: quality over {len(data['quality'])} queries ...")
                    q = run_worker(python, system, "quality", {**base, "index": str(index), "queries": data["quality"]}, work, env)
                    results["quality"][system] = quality_metrics(data, q["runs"])
                if system == "ragkit":
                    log(f"[rep {rep + 1}/{reps}] ragkit: raw encode floor, cold CLI ...")
                    results["raw"].append(run_worker(python, "ragkit", "raw", {**base, "index": str(index)}, work, env))
                    cli = [str(python), "-m", "ragkit.cli", "query", QUESTION, "--index", str(index), "--json"]
                    results["cli"].append(timed_process(cli, env, cwd=work))
                    if baseline_index is not None:
                        cli = [sys.executable, "-m", "ragkit.cli", "query", QUESTION, "--index", str(baseline_index), "--json"]
                        results["baseline_cli"].append(timed_process(cli, baseline_env, cwd=work))
                results["systems"][system].append(r)
                shutil.rmtree(index, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta.update(loadavg_end=os.getloadavg(), total_s=time.perf_counter() - started, baseline=opts.baseline or None)
    summary = summarize(results)
    checks = targets(summary)
    suffix = ("-quick" if quick else "") + ("" if opts.dataset.resolve() == DEFAULT_DATASET.resolve() else f"-{opts.dataset.name}")
    suffix += f"-{opts.pipeline.stem}" if opts.pipeline else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_file = RESULTS / f"peers{suffix}.json"
    out_file.write_text(json.dumps({"meta": meta, "summary": summary, "targets": checks, "results": results}, indent=2))

    load = meta["loadavg_start"]
    note = (f"Measured {meta['date']} on {meta['machine']}; load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
            f"(1/5/15 min) at start, {meta['loadavg_end'][0]:.2f} at end; {reps} repetition(s), interleaved, medians; "
            f"{opts.threads} threads; {meta['quality_queries']} quality and {meta['latency_queries']} latency queries; "
            f"`python bench/peers.py{' --quick' if quick else ''}"
            f"{'' if opts.dataset.resolve() == DEFAULT_DATASET.resolve() else f' --dataset {opts.dataset}'}"
            f"{f' --pipeline {opts.pipeline}' if opts.pipeline else ''}` ({meta['total_s'] / 60:.1f} min; "
            f"versions in bench/results/{out_file.name}).")  # fmt: skip
    body = f"### peers: `{meta['mode']}` run on {meta['dataset']}\n\n{note}\n\n{table(summary, meta)}\n\nTargets:\n\n"
    body += "\n".join(f"- {t}" for t in checks)
    print(body)
    if not opts.no_doc:
        replace_section(ROOT / "docs" / "benchmarks.md", f"peers:{meta['mode']}{suffix.replace('-quick', '')}", body)
        if suffix in ("", "-quick"):
            replace_section(ROOT / "README.md", "peers", body.replace("### peers", "#### peers", 1))


if __name__ == "__main__":
    main()
