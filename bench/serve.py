"""`ragkit serve` under load, and a warm server query against a cold `ragkit query` process.

    heavy --exclusive .venv/bin/python bench/serve.py             # ~3-4 minutes on 2 cores
    .venv/bin/python bench/serve.py --requests 64 --clients 1,8,32,64

Ingests data/ (the `make demo` corpus and pipeline) into a temporary index, starts a real
`ragkit serve` on 127.0.0.1 and, for each client count, sends a fixed number of requests from
that many concurrent clients (threads, one keep-alive HTTP connection each), questions cycled from
data/questions.jsonl: POST /v1/query (retrieve + extractive answer) and POST /v1/retrieve
(retrieval only). It reports throughput, p50/p95/p99 latency and errors (non-200 or transport
errors). Then it times `ragkit query QUESTION --json` as a fresh process (cold: Python start,
imports, model load) against the same questions asked of the warm server one at a time.

Prints a Markdown table and saves bench/results/serve.json (with the machine and load average).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH))
from run import machine

QUESTIONS = [
    json.loads(line)["question"]
    for line in (ROOT / "data" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "RAGKIT_API_KEY"}
    clean["NO_PROXY"] = "127.0.0.1,localhost"
    return clean


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ragkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragkit.cli", *args], cwd=ROOT, capture_output=True, text=True, env=env(), check=True
    )


def start_server(index: Path, log: Path, workers: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    extra = ["--workers", str(workers)] if workers else []
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ragkit.cli", "serve", "--index", str(index), "--port", str(port),
             "--log-level", "warning", *extra],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env(),
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ragkit serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2, trust_env=False).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("ragkit serve did not become ready")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = q / 100 * (len(ordered) - 1)  # linear interpolation between closest ranks
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def load(url: str, path: str, clients: int, requests: int) -> dict[str, Any]:
    """`requests` POSTs to `path` from `clients` threads; latency per request, wall time overall."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        with httpx.Client(base_url=url, timeout=600, trust_env=False) as http:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                body = {"question": QUESTIONS[n % len(QUESTIONS)]}
                started = time.perf_counter()
                try:
                    response = http.post(path, json=body)
                    ok = response.status_code == 200
                    problem = None if ok else f"HTTP {response.status_code}: {response.text[:120]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if problem:
                        errors.append(problem)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "endpoint": path,
        "clients": clients,
        "requests": requests,
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": wall,
        "throughput_rps": requests / wall,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p95_ms": 1000 * percentile(latencies, 95),
        "p99_ms": 1000 * percentile(latencies, 99),
    }


def cold_vs_warm(url: str, index: Path, runs: int) -> dict[str, Any]:
    """The same questions: a fresh `ragkit query` process each, then the warm server one at a time."""
    questions = QUESTIONS[:runs]
    cold, cold_load = [], []
    for question in questions:
        started = time.perf_counter()
        result = ragkit("query", question, "--index", str(index), "--json")
        cold.append(time.perf_counter() - started)
        stages = json.loads(result.stdout)["trace"]["stages"]
        cold_load.append(stages.get("load_models", {}).get("ms", 0.0) / 1000)
    warm = []
    with httpx.Client(base_url=url, timeout=600, trust_env=False) as http:
        for question in questions:
            started = time.perf_counter()
            response = http.post("/v1/query", json={"question": question})
            warm.append(time.perf_counter() - started)
            response.raise_for_status()
    return {
        "questions": len(questions),
        "cold_process_s": cold,
        "cold_model_load_s": cold_load,
        "warm_server_s": warm,
        "cold_median_s": statistics.median(cold),
        "warm_median_s": statistics.median(warm),
        "ratio_cold_over_warm": statistics.median(cold) / statistics.median(warm),
    }


def table(rows: list[dict[str, Any]], cold: dict[str, Any]) -> str:
    lines = [
        "| endpoint | clients | requests | throughput (req/s) | p50 ms | p95 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| `{r['endpoint']}` | {r['clients']} | {r['requests']} | {r['throughput_rps']:.2f} | "
            f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} |"
        )
    load_s = statistics.median(cold["cold_model_load_s"])
    lines.append("")
    lines.append(
        f"Cold `ragkit query` process vs warm server, same {cold['questions']} questions, one at a time: "
        f"median {cold['cold_median_s']:.2f} s vs {cold['warm_median_s']:.2f} s "
        f"({cold['ratio_cold_over_warm']:.1f}x; model load alone {load_s:.2f} s of each cold run)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=32, help="POST /v1/query requests per client count")
    parser.add_argument("--retrieve-requests", type=int, default=160, help="POST /v1/retrieve requests per client count")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold `ragkit query` processes")
    parser.add_argument("--workers", type=int, default=None, help="the server's --workers (default: its own)")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]

    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "loadavg_start": os.getloadavg(),
        "workers": args.workers or os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="ragkit-bench-serve-") as tmp:
        index = Path(tmp) / "index"
        ragkit("ingest", "data", "--index", str(index), "--pipeline", "pipelines/default.yaml", "--json")
        process, url = start_server(index, Path(tmp) / "serve.log", args.workers)
        try:
            for question in QUESTIONS[:4]:  # warm caches (first-query costs are not throughput)
                httpx.post(url + "/v1/query", json={"question": question}, timeout=600, trust_env=False)
            rows = []
            for path, count in (("/v1/query", args.requests), ("/v1/retrieve", args.retrieve_requests)):
                for n in clients:
                    row = load(url, path, n, count)
                    rows.append(row)
                    print(f"{path} {n:>3} clients: {row['throughput_rps']:.2f} req/s, p50 {row['p50_ms']:.0f} ms, "
                          f"p99 {row['p99_ms']:.0f} ms, {row['errors']} errors", file=sys.stderr, flush=True)
            cold = cold_vs_warm(url, index, args.cold_runs)
        finally:
            process.terminate()
            process.wait(timeout=60)
    meta["loadavg_end"] = os.getloadavg()
    report = {"meta": meta, "load": rows, "cold_vs_warm": cold}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(rows, cold))
    print(f"\n{meta['machine']}; load average {meta['loadavg_start'][0]:.2f} at start, "
          f"{meta['loadavg_end'][0]:.2f} at end; saved {args.out}")


if __name__ == "__main__":
    main()
