"""An ingest while 20 clients query a real `ragkit serve` at once: no query fails, and every answer
comes from one consistent index generation (never a mix of the old and the new one).

The probe document says one code word in the old generation and another in the new one; every
answer, its hits and the generation it reports (X-Ragkit-Generation) must agree. Filler documents
make the ingest take long enough for queries to run during it, which the test checks by time
(the clients' own clocks against the job's start and end, on the same machine).
"""

from __future__ import annotations

import threading
import time

import pytest
from server_support import copy_index, start_server

pytestmark = pytest.mark.slow

CLIENTS = 20
QUESTION = "What is the Zephyrine probe code word?"
OLD_CODE, NEW_CODE = "ALPHA-7731", "BRAVO-2294"


def _probe(code: str) -> str:
    return f"# Zephyrine probe\n\nThe Zephyrine probe code word is {code}. It was assigned at the launch review.\n"


def _filler(n: int) -> str:
    # Distinct text per file (nothing comes from the embedding cache), a few chunks each.
    sentences = [
        f"Survey note {n}.{i}: the dune field {n * 31 + i} near ridge {chr(65 + i % 26)}{n} drifted "
        f"{(n * 7 + i) % 90 + 3} metres during season {i % 4 + 1}, measured by team {n % 9}."
        for i in range(30)
    ]
    return f"# Survey log {n}\n\n" + " ".join(sentences) + "\n"


def test_ingest_during_20_concurrent_queries_gives_each_query_one_generation(data_index, tmp_path):
    index = copy_index(data_index, tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "probe.md").write_text(_probe(OLD_CODE), encoding="utf-8")
    server = start_server(index, tmp_path, "--allow-root", str(docs))
    try:
        status, job = server.json("POST", "/v1/ingest", {"paths": [str(docs / "probe.md")]})
        assert status == 202, job
        assert server.wait_for_job(job["id"])["state"] == "succeeded"
        old_generation = server.json("GET", "/v1/status")[1]["generation"]

        (docs / "probe.md").write_text(_probe(NEW_CODE), encoding="utf-8")
        (docs / "filler").mkdir()
        for n in range(6):
            (docs / "filler" / f"survey-{n:02d}.md").write_text(_filler(n), encoding="utf-8")

        results: list[dict] = []
        lock = threading.Lock()
        stop = threading.Event()
        rounds = [0] * CLIENTS

        def client(number: int) -> None:
            while not stop.is_set():
                started = time.time()
                status, headers, body = server.request("POST", "/v1/query", {"question": QUESTION})
                record = {"status": status, "started": started, "ended": time.time(), "headers": headers, "body": body}
                with lock:
                    results.append(record)
                rounds[number] += 1

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        _until(lambda: min(rounds) >= 1, "every client answered once before the ingest")

        status, job = server.json("POST", "/v1/ingest", {"paths": [str(docs)]})
        assert status == 202, job
        status, second = server.json("POST", "/v1/ingest", {"paths": [str(docs)]})
        assert status == 409 and second["code"] == "index_locked", second  # one writer at a time
        done = server.wait_for_job(job["id"])
        assert done["state"] == "succeeded", done
        after = list(rounds)
        _until(lambda: all(r >= a + 1 for r, a in zip(rounds, after)), "every client answered after the ingest")
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        server.stop()

    import json

    assert all(r["status"] == 200 for r in results), [r["body"][:300] for r in results if r["status"] != 200][:3]
    new_generation = done["report"]["generation"]
    assert new_generation == old_generation + 1
    seen = set()
    for record in results:
        generation = int(record["headers"]["x-ragkit-generation"])
        seen.add(generation)
        answer = json.loads(record["body"])
        code, other = (OLD_CODE, NEW_CODE) if generation == old_generation else (NEW_CODE, OLD_CODE)
        assert generation in (old_generation, new_generation)
        texts = [h["text"] for h in answer["hits"]] + [answer["answer"]]
        assert not any(other in t for t in texts), (generation, answer)
        assert any(code in h["text"] for h in answer["hits"]), "the probe is retrieved"
        if generation == old_generation:
            assert not any("/filler/" in h["source"] for h in answer["hits"])
    assert seen == {old_generation, new_generation}
    during = [r for r in results if r["started"] >= done["started_at"] and r["ended"] <= done["finished_at"]]
    overlapping = [r for r in results if r["ended"] > done["started_at"] and r["started"] < done["finished_at"]]
    # Every client had a query in flight when the ingest started (they query back to back).
    assert len(overlapping) >= CLIENTS, "queries ran while the ingest was running"
    durations = sorted(r["ended"] - r["started"] for r in results)
    print(f"{len(results)} queries, {len(during)} of them entirely and {len(overlapping)} partly during the ingest "
          f"({done['finished_at'] - done['started_at']:.1f} s); latency median {durations[len(durations) // 2]:.2f} s, "
          f"max {durations[-1]:.2f} s")


def _until(condition, what: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)
