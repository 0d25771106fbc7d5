"""Incremental updates (issue 12): what one small commit costs on a big index, and what 100 of
them do to queries.

    python bench/update.py --scales 100K --quick     # 12 commits, 100 queries: minutes (segmented writer)
    python bench/update.py --scales 100K,1M          # 100 commits, 300 queries per scale
    python bench/run.py update --scales 100K --quick # the same, through bench/run.py

For each scale it prints a table and saves bench/results/update-<scale>[-quick][-<label>].json
with the keys `chunks`, `full_build_s`, `add_one_doc_s`, `delete_one_doc_s`, `update_one_doc_s`,
`commit_peak_rss_mb`, `query_p50_ms_fresh`, `query_p50_ms_after_100_commits`,
`segments_after_100_commits`, `recall_at_10_vs_exact`, plus the figures behind them (per-commit
samples, RSS of the query process, the optimised index, load averages, target verdicts).

Phases, each in a fresh subprocess (`--worker PHASE`) so that peak RSS and timings are its own:

  build      generate the documents and index them with one `RAG.ingest_documents` call;
  query      open the index (`RAG.open`), answer fused queries one at a time (`RAG.retrieve`,
             top 10), record peak RSS, then dense recall@10 against exact search;
  commits    N single-document commits cycling add / update / delete (`ingest_documents`,
             `delete`), each timed;
  optimise   copy the index and call `RAG.optimize()` (or `ragkit optimize`) on the copy, when
             this ragkit has it (otherwise every "optimised" figure is null);
  compare    the after-commits index and its optimised copy, queried in one process, interleaved;
  commit_rss one add, one update, one delete, each alone in a fresh process (its peak RSS);
  noop       re-ingest every live document unchanged: nothing may be embedded or published.

What is synthetic, and why: text is generated (bench/corpus.py, 700-word documents of ~5.7
chunks); the dense side uses clustered random unit vectors as bench/workers.py does (MiniLM
encodes 10-20 chunks/s on 2 cores), here a pure function of each chunk's text, so that the exact
ground truth over the LIVE vectors is recomputed from the live documents rather than read from
the index under test, and so that "embedded twice" is observable: the embedder records every text
it is given. No MiniLM is loaded anywhere: question embedding (~0.02 ms synthetic; MiniLM adds
~8-10 ms, docs/benchmarks.md) and model loading are in no figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path[:0] = [str(BENCH), str(ROOT)]

from corpus import TextGenerator
from run import machine  # bench/run.py: the same machine line in every result

from ragkit.protocols import Embedder

DIM = 384
NOISE = 0.9  # as bench/workers.py: each vector is its centre plus N(0, NOISE^2 / DIM) per coordinate
WORDS_PER_DOC = 700  # ~5.7 chunks of the default chunker (as bench/workers.py)
CHUNKS_PER_DOC = 5.7
EDIT_WORDS = 90  # an update replaces one paragraph (3-7 sentences of 8-24 words) with this many words
SOURCE_DIR = "synthetic"  # document ids/sources: synthetic/d0000042.txt (never read from disk)
KINDS = ("add", "update", "delete")
WARMUP_QUERIES = 10
TOP_K = 10
# Targets of issue 12 (checked here, not by timed tests).
COMMIT_LIMIT_S = {100_000: 0.5, 1_000_000: 2.0}
RSS_RATIO_LIMIT = 1.2
P50_RATIO_LIMIT = 1.2
RECALL_TOLERANCE = 0.002  # "recall@10 unchanged": after >= optimised - this (2 of 1,000 results)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def text_key(text: str) -> int:
    """64-bit key of a text: the embedder's seed for it, and the embedded-texts ledger's entry."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    a = np.asarray(seconds, dtype=np.float64) * 1000
    if not len(a):
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "n": 0}
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "n": len(a)}


def parse_scale(name: str) -> int:
    """'100K' -> 100000, '1M' -> 1000000, '2500' -> 2500."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", name)
    if not m:
        raise argparse.ArgumentTypeError(f"scale {name!r}: write a chunk count such as 20K, 100K or 1M")
    factor = {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
    return int(float(m.group(1)) * factor)


def commit_limit_s(chunks: int) -> float:
    """The issue's one-document commit target for an index of `chunks` (the nearer of 100K / 1M)."""
    return COMMIT_LIMIT_S[100_000] if chunks < 300_000 else COMMIT_LIMIT_S[1_000_000]


# --- the synthetic corpus and embedder ---------------------------------------------------------------


class Corpus:
    """The benchmark's documents: document `i` at `version` (0 = as built), deterministic.

    Version v is version v-1 with one paragraph (not the title) replaced by new text, as an edit
    of a real file: the document's other chunks keep their text and must come from the
    embedding cache. Versions chain, so an edited paragraph never reverts to a text that was
    embedded before."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.gen = TextGenerator(seed)

    @staticmethod
    def source(i: int) -> str:
        return f"{SOURCE_DIR}/d{i:07d}.txt"

    def text(self, i: int, version: int = 0) -> str:
        text = self.gen.document(i, WORDS_PER_DOC)
        for v in range(1, version + 1):
            paragraphs = text.split("\n\n")
            rng = np.random.default_rng((self.seed, 7, i, v))
            replaced = int(rng.integers(1, len(paragraphs)))
            paragraphs[replaced] = self.gen.passage(1_000_000_000 + i * 1_000 + v, EDIT_WORDS)
            text = "\n\n".join(paragraphs)
        return text

    def document(self, i: int, version: int = 0):  # type: ignore[no-untyped-def]
        from ragkit.schema import Document

        source = self.source(i)
        return Document(id=source, source=source, text=self.text(i, version))


class TextKeyedEmbedder(Embedder):
    """Clustered synthetic unit vectors (as bench/workers.py's SyntheticEmbedder), each a pure
    function of its text: the centre `key % n_centres` plus Gaussian noise seeded by the text's
    key. So a text has the same vector whichever batch it came in, and the exact ground truth can
    be recomputed from the documents alone. Records every text it embeds (`keys`) and the time
    spent embedding (`seconds`), which commit timings exclude (~17 us per text)."""

    model_id = "synthetic-text-keyed"
    loaded = True
    dim = DIM

    def __init__(self, n_centres: int, seed: int = 0) -> None:
        rng = np.random.default_rng((seed, 99))
        centres = rng.standard_normal((max(1, n_centres), DIM)).astype(np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.reset()

    def reset(self) -> None:
        self.keys: list[int] = []
        self.seconds = 0.0
        self.calls = 0

    def load(self) -> None:
        pass

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), DIM), dtype=np.float32)
        scale = np.float32(NOISE / np.sqrt(DIM))
        for j, text in enumerate(texts):
            key = text_key(text)
            noise = np.random.default_rng(key).standard_normal(DIM, dtype=np.float32)
            out[j] = self.centres[key % len(self.centres)] + scale * noise
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def embed(self, texts, on_batch=None):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        texts = list(texts)
        out = self.vectors(texts)
        self.keys.extend(text_key(t) for t in texts)
        self.calls += 1
        self.seconds += time.perf_counter() - started
        if on_batch:
            on_batch(len(texts))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.vectors([text])[0]  # not a corpus text: not recorded


def open_rag(index: Path, n_centres: int, seed: int):  # type: ignore[no-untyped-def]
    """`RAG.open(index)` with the synthetic embedder in place of the pipeline's MiniLM (RAG takes
    no embedder instance: its cached property is replaced, as bench/workers.py does)."""
    from ragkit.api import RAG

    rag = RAG.open(index)
    embedder = TextKeyedEmbedder(n_centres, seed)
    rag.__dict__["embedder"] = embedder
    return rag, embedder


def index_status(rag) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The index status fields this benchmark reports. `segments` exists once the index is
    segmented (issue 12): a count or a list of segments; None before."""
    status = rag.status().model_dump(mode="json")
    segments = status.get("segments")
    if isinstance(segments, list):
        segments = len(segments)
    out = {k: status.get(k) for k in ("generation", "documents", "chunks", "size_bytes", "generation_size_bytes")}
    out["segments"] = segments
    out["has_segments_field"] = "segments" in status
    for extra in ("deleted_chunks", "live_chunks", "deleted_documents"):
        if extra in status:
            out[extra] = status[extra]
    return out


# --- state shared by the phases (files in the scale's work directory) -----------------------------


class State:
    """Which documents are live at which version, the next new document id, and every text key
    the embedder was given so far (`ledger/*.npy`, one file per phase)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.path = work / "state.json"

    def load(self) -> tuple[dict[int, int], int]:
        raw = json.loads(self.path.read_text())
        return {int(i): v for i, v in raw["live"].items()}, raw["next_id"]

    def save(self, live: dict[int, int], next_id: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"live": live, "next_id": next_id}))
        tmp.replace(self.path)

    def ledger(self) -> np.ndarray:
        files = sorted((self.work / "ledger").glob("*.npy"))
        return np.concatenate([np.load(f) for f in files]) if files else np.zeros(0, np.uint64)

    def record(self, phase: str, keys: Sequence[int]) -> None:
        (self.work / "ledger").mkdir(exist_ok=True)
        np.save(self.work / "ledger" / f"{phase}.npy", np.asarray(keys, dtype=np.uint64))


def chunk_keys(chunker, document) -> set[int]:  # type: ignore[no-untyped-def]
    return {text_key(c.text) for c in chunker.chunk(document)}


# --- exact ground truth -------------------------------------------------------------------------------


def recall_queries(embedder: TextKeyedEmbedder, n: int) -> np.ndarray:
    """Held-out query vectors from the corpus vectors' distribution (no document text has them)."""
    return np.stack([embedder.embed_query(f"held-out query {i}") for i in range(n)]).astype(np.float32)


class TopK:
    """Exact running top-k of inner products, fed block by block."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.queries, self.k = queries, k
        self.scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        self.ids = np.zeros((len(queries), 0), dtype=object)

    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        if not len(ids):
            return
        s = np.concatenate([self.scores, self.queries @ vectors.T], axis=1)
        i = np.concatenate([self.ids, np.broadcast_to(np.asarray(ids, dtype=object), (len(self.queries), len(ids)))], axis=1)
        keep = min(self.k, s.shape[1])
        part = np.argpartition(-s, keep - 1, axis=1)[:, :keep]
        self.scores, self.ids = np.take_along_axis(s, part, 1), np.take_along_axis(i, part, 1)

    def result(self) -> tuple[list[list[str]], list[list[float]]]:
        order = np.argsort(-self.scores, axis=1)
        scores = np.take_along_axis(self.scores, order, 1)
        ids = np.take_along_axis(self.ids, order, 1)
        return [list(map(str, row)) for row in ids], [list(map(float, row)) for row in scores]


def exact_truth(  # type: ignore[no-untyped-def]
    corpus: Corpus, live: dict[int, int], chunker, embedder: TextKeyedEmbedder, queries: np.ndarray, k: int
) -> dict[str, Any]:
    """Exact top-k by inner product over the vectors of every live chunk, recomputed from the
    live documents (chunked by the index's own chunker, embedded by the same pure function)."""
    top = TopK(queries, k)
    block_texts: list[str] = []
    block_ids: list[str] = []
    live_ids: set[str] = set()
    started = time.perf_counter()
    order = sorted(live)
    for n, i in enumerate(order, 1):
        for c in chunker.chunk(corpus.document(i, live[i])):
            block_texts.append(c.text)
            block_ids.append(c.id)
            live_ids.add(c.id)
        if len(block_texts) >= 20_000 or n == len(order):
            top.add(embedder.vectors(block_texts), block_ids)
            block_texts, block_ids = [], []
        if n % 50_000 == 0:
            log(f"    exact ground truth: {n:,}/{len(order):,} documents")
    ids, scores = top.result()
    return {"ids": ids, "scores": scores, "live_chunk_ids": live_ids, "seconds": time.perf_counter() - started}


def index_dense_top(rag, queries: np.ndarray, k: int) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """The served dense index's top-k chunk ids (the snapshot's VectorSearcher, rows -> chunks)."""
    snapshot = rag.snapshot()
    out = []
    for rows, _scores in snapshot.dense.search(queries, k):
        out.append([c.id for c in snapshot.store.chunks_by_rows([int(r) for r in rows])])
    return out


def recall_at_k(found: Sequence[Sequence[str]], truth: Sequence[Sequence[str]], k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


# --- worker phases --------------------------------------------------------------------------------------


def phase_build(a: dict[str, Any]) -> dict[str, Any]:
    from ragkit.api import RAG
    from ragkit.config import PipelineConfig

    work, index = Path(a["work"]), Path(a["index"])
    shutil.rmtree(index, ignore_errors=True)
    corpus, n_docs = Corpus(a["seed"]), a["documents"]
    rag = RAG(PipelineConfig(), index)  # the default pipeline (convex fusion, no reranker)
    embedder = TextKeyedEmbedder(a["n_centres"], a["seed"])
    rag.__dict__["embedder"] = embedder
    generate_s = 0.0
    step = max(1, n_docs // 10)

    def documents() -> Iterator[Any]:
        nonlocal generate_s
        for i in range(n_docs):
            t = time.perf_counter()
            document = corpus.document(i)
            generate_s += time.perf_counter() - t
            if i and i % step == 0:
                log(f"    build: {i:,}/{n_docs:,} documents streamed ({time.perf_counter() - started:.0f} s)")
            yield document

    load0 = os.getloadavg()[0]
    started = time.perf_counter()
    stats = rag.ingest_documents(documents())
    wall = time.perf_counter() - started
    State(work).save({i: 0 for i in range(n_docs)}, n_docs)
    State(work).record("0-build", embedder.keys)
    keys = np.asarray(embedder.keys, dtype=np.uint64)
    return {
        "documents": n_docs,
        "chunks": stats.chunks_total,
        "full_build_wall_s": wall,
        "generate_documents_s": generate_s,
        "embed_s": embedder.seconds,
        "full_build_s": wall - generate_s - embedder.seconds,
        "texts_embedded": len(embedder.keys),
        "texts_embedded_twice": int(len(keys) - len(np.unique(keys))),
        "writer_timings": stats.timings,
        "loadavg_during": [load0, os.getloadavg()[0]],
        "status": index_status(rag),
    }


def phase_query(a: dict[str, Any]) -> dict[str, Any]:
    from ragkit.chunkers import make_chunker
    from ragkit.schema import Trace

    index, work = Path(a["index"]), Path(a["work"])
    started = time.perf_counter()
    rag, embedder = open_rag(index, a["n_centres"], a["seed"])
    rag.snapshot()
    open_s = time.perf_counter() - started
    questions = TextGenerator(a["seed"]).queries(WARMUP_QUERIES + a["queries"])
    for q in questions[:WARMUP_QUERIES]:  # first-touch page faults, lazy imports
        rag.retrieve(q, top_k=TOP_K)
    spent: list[float] = []
    stages: dict[str, list[float]] = {}
    load0 = os.getloadavg()[0]
    for q in questions[WARMUP_QUERIES:]:
        trace = Trace()
        t = time.perf_counter()
        hits = rag.retrieve(q, top_k=TOP_K, trace=trace)
        spent.append(time.perf_counter() - t)
        assert len(hits) == TOP_K, f"{len(hits)} hits for {q!r}"
        for name, stage in trace.stages.items():
            stages.setdefault(name, []).append(stage.ms / 1000)
    load1 = os.getloadavg()[0]
    held_out = recall_queries(embedder, a["recall_queries"])
    found = index_dense_top(rag, held_out, TOP_K)
    query_rss = peak_rss_mb()  # before the ground truth below allocates its own arrays
    result: dict[str, Any] = {
        "open_s": open_s,
        "fused": percentiles_ms(spent),
        "stages_p50_ms": {name: percentiles_ms(v)["p50_ms"] for name, v in stages.items()},
        "query_process_rss_mb": query_rss,
        "loadavg_during": [load0, load1],
        "status": index_status(rag),
    }
    live, _ = State(work).load()
    chunker = make_chunker(rag.config.chunker)
    truth = exact_truth(Corpus(a["seed"]), live, chunker, embedder, held_out, TOP_K)
    result.update(_recall_result(found, truth, result["status"]))
    if a.get("save_truth"):
        Path(a["save_truth"]).write_text(json.dumps({"ids": truth["ids"], "live_chunks": len(truth["live_chunk_ids"])}))
    rag.close()
    return result


def _recall_result(found: list[list[str]], truth: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    live_ids = truth["live_chunk_ids"]
    return {
        "recall_at_10": recall_at_k(found, truth["ids"], TOP_K),
        # A dense hit that is no live chunk (a deleted or replaced one): must be 0.
        "non_live_hits": sum(i not in live_ids for row in found for i in row),
        "live_chunks_expected": len(live_ids),
        "live_chunks_match_status": len(live_ids) == status.get("live_chunks", status.get("chunks")),
        "exact_truth_s": truth["seconds"],
    }


def phase_commits(a: dict[str, Any]) -> dict[str, Any]:
    from ragkit.chunkers import make_chunker

    work, index = Path(a["work"]), Path(a["index"])
    state = State(work)
    live, next_id = state.load()
    # Every text given to the embedder before this phase, as a numpy array: a Python set of 1M
    # keys would add ~60 MB to the peak RSS this process may be measuring.
    embedded_earlier = state.ledger()
    corpus = Corpus(a["seed"])
    rag, embedder = open_rag(index, a["n_centres"], a["seed"])
    chunker = make_chunker(rag.config.chunker)
    rng = np.random.default_rng((a["seed"], 5, a.get("stream", 0)))
    kinds = a.get("kinds") or [KINDS[c % len(KINDS)] for c in range(a["commits"])]
    commits: list[dict[str, Any]] = []
    this_phase: list[int] = []
    started = time.perf_counter()
    for n, kind in enumerate(kinds, 1):
        # Everything but the commit itself is prepared before the clock starts.
        if kind == "add":
            i, next_id = next_id, next_id + 1
        else:
            i = int(rng.choice(np.fromiter(live, dtype=np.int64, count=len(live))))
        source = Corpus.source(i)
        expected: set[int] = set()
        if kind == "add":
            document = corpus.document(i)
            expected = chunk_keys(chunker, document)
        elif kind == "update":
            document = corpus.document(i, live[i] + 1)
            expected = chunk_keys(chunker, document) - chunk_keys(chunker, corpus.document(i, live[i]))
        embedder.reset()
        t = time.perf_counter()
        if kind == "delete":
            report = rag.delete([source])
            wall = time.perf_counter() - t
            assert report.deleted == [source], (report.deleted, source)
            detail: dict[str, Any] = {"published": report.published, "chunks_removed": report.chunks_removed}
            del live[i]
        else:
            stats = rag.ingest_documents([document])
            wall = time.perf_counter() - t
            detail = {
                "published": stats.published,
                "texts_embedded": stats.texts_embedded,
                "embedding_cache_hits": stats.embedding_cache_hits,
                "chunks_added": stats.chunks_added,
                "chunks_removed": stats.chunks_removed,
                "writer_timings": stats.timings,
            }
            live[i] = live.get(i, -1) + 1
        keys = embedder.keys
        repeats = int(np.isin(np.asarray(keys, dtype=np.uint64), embedded_earlier).sum())
        repeats += sum(k in set(this_phase) for k in keys) + len(keys) - len(set(keys))
        commit = {
            "kind": kind,
            "document": source,
            "wall_s": wall,
            "embed_s": embedder.seconds,
            "s": wall - embedder.seconds,  # excluding the document's own embedding
            "embedded": len(keys),
            "expected_embedded": len(expected),
            "embedded_exactly_new_texts": set(keys) == expected and len(keys) == len(expected),
            "embedded_before": repeats,  # texts the embedder was given before (build, earlier commits)
            **detail,
        }
        commits.append(commit)
        this_phase.extend(keys)
        log(
            f"    commit {n}/{len(kinds)} {kind:6s} {source}: {commit['s']:.3f} s "
            f"(embedded {commit['embedded']}, expected {commit['expected_embedded']})"
        )
    state.save(live, next_id)
    state.record(a.get("ledger_name", "1-commits"), this_phase)
    by_kind = {
        kind: [c["s"] for c in commits if c["kind"] == kind] for kind in KINDS if any(c["kind"] == kind for c in commits)
    }
    return {
        "commits": commits,
        "total_s": time.perf_counter() - started,
        "median_s": {k: float(np.median(v)) for k, v in by_kind.items()},
        "max_s": {k: float(np.max(v)) for k, v in by_kind.items()},
        "nothing_embedded_twice": all(c["embedded_before"] == 0 for c in commits),
        "embedded_exactly_new_texts": all(c["embedded_exactly_new_texts"] for c in commits),
        "status": index_status(rag),
    }


def phase_commit_rss(a: dict[str, Any]) -> dict[str, Any]:
    """One commit of `kind` alone in a fresh process: its peak RSS."""
    rss_start = peak_rss_mb()
    from ragkit.api import RAG  # noqa: F401  (imports counted before the commit, as in the query process)

    rss_imported = peak_rss_mb()
    result = phase_commits({**a, "kinds": [a["kind"]], "ledger_name": f"2-rss-{a['kind']}"})
    commit = result["commits"][0]
    return {
        "kind": a["kind"],
        "peak_rss_mb": peak_rss_mb(),
        "rss_at_start_mb": rss_start,
        "rss_after_imports_mb": rss_imported,
        "commit": commit,
        "nothing_embedded_twice": result["nothing_embedded_twice"],
    }


def phase_optimise(a: dict[str, Any]) -> dict[str, Any]:
    """Optimise a copy of the index, when this ragkit can (`RAG.optimize`, else `ragkit optimize`)."""
    from ragkit.api import RAG

    source, copy = Path(a["index"]), Path(a["copy"])
    api = callable(getattr(RAG, "optimize", None))
    cli = Path(sys.executable).with_name("ragkit")
    has_cli = (
        not api
        and cli.exists()
        and subprocess.run([str(cli), "optimize", "--help"], check=False, capture_output=True).returncode == 0
    )
    if not api and not has_cli:
        return {"available": False, "reason": "this ragkit has neither RAG.optimize nor `ragkit optimize`"}
    shutil.rmtree(copy, ignore_errors=True)
    t = time.perf_counter()
    shutil.copytree(source, copy, symlinks=True)
    copy_s = time.perf_counter() - t
    rag, embedder = open_rag(copy, a["n_centres"], a["seed"])
    before = index_status(rag)
    t = time.perf_counter()
    if api:
        returned = rag.optimize()
        if hasattr(returned, "model_dump"):
            returned = returned.model_dump(mode="json")
    else:
        proc = subprocess.run([str(cli), "optimize", "--index", str(copy)], check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"ragkit optimize failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        returned = proc.stdout[-2000:]
    optimise_s = time.perf_counter() - t
    return {
        "available": True,
        "via": "RAG.optimize()" if api else "ragkit optimize",
        "copy_s": copy_s,
        "optimise_s": optimise_s,
        "texts_embedded": len(embedder.keys),  # must be 0: merging never embeds
        "returned": returned if isinstance(returned, (dict, list, str, int, float, type(None))) else repr(returned),
        "status_before": before,
        "status_after": index_status(rag),
    }


def phase_compare(a: dict[str, Any]) -> dict[str, Any]:
    """The after-commits index and its optimised copy, queried alternately in one process.

    Both indexes' files are read once first: the optimise phase before this one (10 GB of RSS at
    1M chunks, a new 4.6 GB copy) leaves the optimised copy in the page cache and evicts the
    other, and memory-mapped postings and vectors then cost page faults to only one side
    (measured at 1M without this: 19.9 vs 12.1 ms, while each alone ran at 12.0 and 12.1)."""
    started = time.perf_counter()
    for directory in (Path(a["index"]), Path(a["copy"])):
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                with open(path, "rb", buffering=0) as handle:
                    while handle.read(1 << 23):
                        pass
    preread_s = time.perf_counter() - started
    rag_a, _ = open_rag(Path(a["index"]), a["n_centres"], a["seed"])
    rag_b, embedder_b = open_rag(Path(a["copy"]), a["n_centres"], a["seed"])
    questions = TextGenerator(a["seed"]).queries(WARMUP_QUERIES + a["queries"])
    for q in questions[:WARMUP_QUERIES]:
        rag_a.retrieve(q, top_k=TOP_K)
        rag_b.retrieve(q, top_k=TOP_K)
    spent: dict[str, list[float]] = {"after": [], "optimised": []}
    load0 = os.getloadavg()[0]
    for n, q in enumerate(questions[WARMUP_QUERIES:]):
        pairs = [("after", rag_a), ("optimised", rag_b)]
        for name, rag in pairs if n % 2 == 0 else pairs[::-1]:
            t = time.perf_counter()
            rag.retrieve(q, top_k=TOP_K)
            spent[name].append(time.perf_counter() - t)
    load1 = os.getloadavg()[0]
    held_out = recall_queries(embedder_b, a["recall_queries"])
    truth = json.loads(Path(a["truth"]).read_text())
    found_a = index_dense_top(rag_a, held_out, TOP_K)
    found_b = index_dense_top(rag_b, held_out, TOP_K)
    after, optimised = percentiles_ms(spent["after"]), percentiles_ms(spent["optimised"])
    return {
        "after": after,
        "optimised": optimised,
        "after_vs_optimised_p50": after["p50_ms"] / optimised["p50_ms"],
        "recall_at_10_after": recall_at_k(found_a, truth["ids"], TOP_K),
        "recall_at_10_optimised": recall_at_k(found_b, truth["ids"], TOP_K),
        "loadavg_during": [load0, load1],
        "preread_s": preread_s,
    }


def phase_noop(a: dict[str, Any]) -> dict[str, Any]:
    """Re-ingest every live document unchanged: nothing may be embedded, nothing published."""
    work = Path(a["work"])
    live, _ = State(work).load()
    corpus = Corpus(a["seed"])
    rag, embedder = open_rag(Path(a["index"]), a["n_centres"], a["seed"])
    before = index_status(rag)
    t = time.perf_counter()
    stats = rag.ingest_documents(corpus.document(i, v) for i, v in sorted(live.items()))
    wall = time.perf_counter() - t
    after = index_status(rag)
    return {
        "documents": len(live),
        "wall_s": wall,  # includes generating the documents' text again
        "texts_embedded": len(embedder.keys),
        "writer_texts_embedded": stats.texts_embedded,
        "published": stats.published,
        "documents_unchanged": stats.documents_unchanged,
        "generation_before": before["generation"],
        "generation_after": after["generation"],
        "is_noop": not embedder.keys
        and not stats.published
        and stats.documents_unchanged == len(live)
        and before["generation"] == after["generation"],
    }


PHASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "build": phase_build,
    "query": phase_query,
    "commits": phase_commits,
    "commit_rss": phase_commit_rss,
    "optimise": phase_optimise,
    "compare": phase_compare,
    "noop": phase_noop,
}


def worker(phase: str, args_file: str, result_file: str) -> None:
    args = json.loads(Path(args_file).read_text())
    load0, t = os.getloadavg(), time.perf_counter()
    result = PHASES[phase](args)
    result.setdefault("peak_rss_mb", peak_rss_mb())
    result["phase_s"] = time.perf_counter() - t
    result["loadavg_start"], result["loadavg_end"] = list(load0), list(os.getloadavg())
    Path(result_file).write_text(json.dumps(result, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, set):
        return sorted(value)
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if hasattr(value, "model_dump"):  # pydantic results (e.g. RAG.optimize's MergeResult list)
        return value.model_dump()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --- orchestration -----------------------------------------------------------------------------------


def run_phase(phase: str, args: dict[str, Any], work: Path) -> dict[str, Any]:
    args_file = work / f"{phase}-{args.get('label', '')}-args.json"
    result_file = args_file.with_name(args_file.name.replace("-args", "-result"))
    args_file.write_text(json.dumps(args))
    result_file.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", phase, str(args_file), str(result_file)],
        check=False, cwd=ROOT, stdout=sys.stderr, stderr=None,
    )  # fmt: skip
    if proc.returncode != 0 or not result_file.exists():
        raise SystemExit(f"benchmark phase {phase!r} failed (exit {proc.returncode}); its output is above")
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def bench_scale(name: str, chunks: int, opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    index, copy = work / "index", work / "index-optimised"
    n_docs = max(1, round(chunks / CHUNKS_PER_DOC))
    common = {"work": str(work), "index": str(index), "seed": opts.seed, "n_centres": max(1, chunks // 100)}
    queries = {"queries": opts.queries, "recall_queries": opts.recall_queries}
    phases: dict[str, Any] = {}
    started = time.perf_counter()

    def phase(key: str, worker_phase: str, **args: Any) -> dict[str, Any]:
        log(f"[{name}] {key} ...")
        phases[key] = run_phase(worker_phase, {**common, "label": key, **args}, work)
        log(f"[{name}] {key} done in {phases[key]['phase_s']:.1f} s (peak RSS {phases[key]['peak_rss_mb']:.0f} MB)")
        return phases[key]

    build = phase("build", "build", documents=n_docs)
    fresh = phase("query_fresh", "query", **queries)
    commits = phase("commits", "commits", commits=opts.commits)
    after = phase("query_after", "query", save_truth=str(work / "truth-after.json"), **queries)
    optimise = phase("optimise", "optimise", copy=str(copy))
    compare = None
    if optimise["available"]:
        compare = phase("compare", "compare", copy=str(copy), truth=str(work / "truth-after.json"), **queries)
    shutil.rmtree(copy, ignore_errors=True)
    rss = {kind: phase(f"commit_rss_{kind}", "commit_rss", kind=kind, stream=1 + k) for k, kind in enumerate(KINDS)}
    noop = phase("noop", "noop")

    commit_rss = max(r["peak_rss_mb"] for r in rss.values())
    query_rss = after["query_process_rss_mb"]
    optimised_p50 = compare["optimised"]["p50_ms"] if compare else None
    result: dict[str, Any] = {
        # The keys.
        "chunks": build["chunks"],
        "full_build_s": build["full_build_s"],
        "add_one_doc_s": commits["median_s"].get("add"),
        "delete_one_doc_s": commits["median_s"].get("delete"),
        "update_one_doc_s": commits["median_s"].get("update"),
        "commit_peak_rss_mb": commit_rss,
        "query_p50_ms_fresh": fresh["fused"]["p50_ms"],
        "query_p50_ms_after_100_commits": after["fused"]["p50_ms"],
        "segments_after_100_commits": after["status"]["segments"],
        "recall_at_10_vs_exact": after["recall_at_10"],
        # What they are measured against, and the checks that are not timings.
        "scale": name,
        "documents": build["documents"],
        "commits_done": len(commits["commits"]),
        "query_process_rss_mb": query_rss,
        "commit_vs_query_rss": commit_rss / query_rss,
        "query_p50_ms_optimised": optimised_p50,
        "side_by_side_p50_ms": (
            {"after": compare["after"]["p50_ms"], "optimised": optimised_p50, "ratio": compare["after_vs_optimised_p50"]}
            if compare
            else None
        ),
        "after_vs_fresh_p50": after["fused"]["p50_ms"] / fresh["fused"]["p50_ms"],
        "recall_at_10_fresh": fresh["recall_at_10"],
        "recall_at_10_optimised": compare["recall_at_10_optimised"] if compare else None,
        "segments_fresh": fresh["status"]["segments"],
        "segments_optimised": optimise["status_after"]["segments"] if optimise["available"] else None,
        "optimise_s": optimise.get("optimise_s"),
        "non_live_dense_hits": fresh["non_live_hits"] + after["non_live_hits"],
        "live_chunks_match_status": fresh["live_chunks_match_status"] and after["live_chunks_match_status"],
        "reingest_unchanged_is_noop": noop["is_noop"],
        "reingest_unchanged_s": noop["wall_s"],
        "nothing_embedded_twice": bool(
            build["texts_embedded_twice"] == 0
            and commits["nothing_embedded_twice"]
            and all(r["nothing_embedded_twice"] for r in rss.values())
            and (not optimise["available"] or optimise["texts_embedded"] == 0)
        ),
        "commits_embedded_exactly_new_texts": commits["embedded_exactly_new_texts"]
        and all(r["commit"]["embedded_exactly_new_texts"] for r in rss.values()),
        "commit_s_max": commits["max_s"],
        "scale_s": time.perf_counter() - started,
        "phases": phases,
    }
    result["targets"] = targets(result)
    return result


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 12's targets, each with the measured value and whether it is met (None: not measurable)."""
    limit = commit_limit_s(r["chunks"])
    out = []
    for kind in ("add", "update", "delete"):
        value = r[f"{kind}_one_doc_s"]
        out.append({"target": f"one-document {kind} <= {limit} s (median, excluding its embedding)", "value": value,
                    "met": None if value is None else value <= limit})  # fmt: skip
    out.append({"target": f"commit peak RSS <= {RSS_RATIO_LIMIT}x the query process's", "value": r["commit_vs_query_rss"],
                "met": r["commit_vs_query_rss"] <= RSS_RATIO_LIMIT})  # fmt: skip
    side = r["side_by_side_p50_ms"]
    out.append({"target": f"fused p50 after {r['commits_done']} commits <= {P50_RATIO_LIMIT}x the optimised index's "
                "(side by side)", "value": side["ratio"] if side else None,
                "met": side["ratio"] <= P50_RATIO_LIMIT if side else None})  # fmt: skip
    optimised = r["recall_at_10_optimised"]
    out.append({"target": f"recall@10 after the commits unchanged vs the optimised index (>= it - {RECALL_TOLERANCE})",
                "value": [r["recall_at_10_vs_exact"], optimised],
                "met": None if optimised is None else r["recall_at_10_vs_exact"] >= optimised - RECALL_TOLERANCE})  # fmt: skip
    out.append({"target": "re-ingesting unchanged documents is a no-op (nothing embedded or published)",
                "value": r["reingest_unchanged_is_noop"], "met": r["reingest_unchanged_is_noop"]})  # fmt: skip
    out.append({"target": "nothing is embedded twice (build, commits, optimise)", "value": r["nothing_embedded_twice"],
                "met": r["nothing_embedded_twice"]})  # fmt: skip
    out.append({"target": "dense search never returns a deleted or replaced chunk", "value": r["non_live_dense_hits"],
                "met": r["non_live_dense_hits"] == 0})  # fmt: skip
    return out


# --- reporting -----------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, spec)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


ROWS = [
    ("chunks", "chunks", "d"),
    ("full_build_s", "full build (s, excl. embedding)", ".1f"),
    ("add_one_doc_s", "add one document (s, median)", ".3f"),
    ("update_one_doc_s", "update one document (s, median)", ".3f"),
    ("delete_one_doc_s", "delete one document (s, median)", ".3f"),
    ("commit_peak_rss_mb", "commit process peak RSS (MB)", ".0f"),
    ("query_process_rss_mb", "query process peak RSS (MB)", ".0f"),
    ("commit_vs_query_rss", "commit / query RSS", ".2f"),
    ("query_p50_ms_fresh", "fused p50, fresh build (ms)", ".2f"),
    ("query_p50_ms_after_100_commits", "fused p50 after the commits (ms)", ".2f"),
    ("query_p50_ms_optimised", "fused p50, optimised (ms)", ".2f"),
    ("segments_after_100_commits", "segments after the commits", "d"),
    ("recall_at_10_fresh", "dense recall@10 vs exact, fresh", ".3f"),
    ("recall_at_10_vs_exact", "dense recall@10 vs exact, after the commits", ".3f"),
    ("recall_at_10_optimised", "dense recall@10 vs exact, optimised", ".3f"),
    ("reingest_unchanged_is_noop", "re-ingest of unchanged documents is a no-op", ""),
    ("nothing_embedded_twice", "nothing embedded twice", ""),
]


def table(results: list[dict[str, Any]]) -> str:
    head = "| | " + " | ".join(f"{r['scale']} ({r['mode']}, {r['commits_done']} commits)" for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    for key, label, spec in ROWS:
        lines.append(f"| {label} | " + " | ".join(_fmt(r.get(key), spec) for r in results) + " |")
    for r in results:
        lines += ["", f"Targets at {r['scale']}:"]
        for t in r["targets"]:
            verdict = {True: "MET", False: "NOT MET", None: "not measurable here"}[t["met"]]
            lines.append(f"- {t['target']}: {_fmt(t['value'])} -> {verdict}")
    return "\n".join(lines)


def code_version() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def notes(opts: argparse.Namespace) -> list[str]:
    out = [
        (
            "Dense vectors are synthetic: clustered random unit vectors (chunks/100 centres, noise as in "
            "bench/workers.py), each a pure function of its chunk text; no MiniLM is loaded anywhere."
        ),
        (
            "Text is generated (bench/corpus.py): 700-word documents (~5.7 chunks of the default chunker), "
            "indexed with RAG.ingest_documents under ids synthetic/dNNNNNNN.txt; default pipeline (faiss, BM25, "
            "convex fusion, no reranker)."
        ),
        (
            "Commit times: wall time of one RAG.ingest_documents([doc]) (add, update) or RAG.delete([source]) "
            "on the big index, minus the time spent inside the embedder (the document's own embedding, ~17 us "
            "per text with the synthetic embedder); median over the commits of that kind. An update replaces one "
            "paragraph of the document, so its other chunks must come from the embedding cache."
        ),
        (
            f"The commits cycle add, update, delete ({opts.commits} in all"
            + (", fewer than the issue's 100 in quick mode" if opts.quick and opts.commits < 100 else "")
            + (f"; --commits {opts.commits} given" if opts.commits_given else "")
            + "); updated and deleted documents are drawn at random among the live ones."
        ),
        (
            "full_build_s: one ingest_documents call over all documents, minus generating their text and the "
            "synthetic embedding (full_build_wall_s in phases.build includes both)."
        ),
        (
            f"Query p50: RAG.retrieve(question, top_k={TOP_K}) one at a time in a fresh process after "
            f"{WARMUP_QUERIES} warm-up queries ({opts.queries} generated questions); the question is embedded by the "
            "synthetic embedder (~0.02 ms; MiniLM would add ~8-10 ms to every figure). side_by_side_p50_ms: the "
            "after-commits index and its optimised copy queried alternately in one process (the ratio the target uses)."
        ),
        (
            "Peak RSS (ru_maxrss) of fresh processes: commit = RAG.open + one single-document commit (max of an "
            "add, an update and a delete, each alone); query = RAG.open + the timed queries + the recall searches, "
            "read before the exact ground truth is computed, on the index after the commits."
        ),
        (
            f"recall@10: the served dense index's top {TOP_K} (the snapshot's VectorSearcher, rows mapped to chunk "
            f"ids by the store) vs exact inner product over the vectors of every live chunk, recomputed from the "
            f"live documents (not read from the index), for {opts.recall_queries} held-out query vectors of the "
            "corpus distribution."
        ),
        (
            "Embedding checks: the embedder records every text it is given; a re-ingest of every live document "
            "unchanged must embed nothing and publish nothing; no text may be given to the embedder twice "
            "(documents are never restored to an earlier text, so every repeat is a cache miss)."
        ),
    ]
    if opts.quick:
        out.append(f"QUICK mode: {opts.commits} commits instead of 100, {opts.queries} timed queries, "
                   f"{opts.recall_queries} recall queries.")  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="100K,1M", help="chunk counts, comma-separated (default 100K,1M)")
    parser.add_argument("--quick", action="store_true", help="12 commits, 100 queries, 50 recall queries")
    parser.add_argument("--commits", type=int, help="small commits before the 'after' measurements (default 100)")
    parser.add_argument("--queries", type=int, help="timed fused queries per measurement (default 300)")
    parser.add_argument("--recall-queries", type=int, help="held-out queries for recall@10 (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", help="added to the results file name, e.g. 'before'")
    parser.add_argument("--results", default=str(RESULTS), help="where the JSON goes (default bench/results)")
    parser.add_argument("--workdir", help="where the indexes go (default: a temp dir under /tmp, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--worker", nargs=3, metavar=("PHASE", "ARGS", "RESULT"), help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.worker:
        worker(*opts.worker)
        return
    opts.commits_given = opts.commits is not None
    opts.commits = opts.commits if opts.commits is not None else (12 if opts.quick else 100)
    opts.queries = opts.queries or (100 if opts.quick else 300)
    opts.recall_queries = opts.recall_queries or (50 if opts.quick else 100)
    if opts.commits < 1:
        parser.error("--commits must be at least 1")
    scales = [(s.strip().upper(), parse_scale(s)) for s in opts.scales.split(",") if s.strip()]
    mode = "quick" if opts.quick else "full"

    root = Path(opts.workdir) if opts.workdir else Path(tempfile.mkdtemp(prefix="ragkit-bench-update-", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "code": code_version(),
            "command": "python bench/update.py " + " ".join(sys.argv[1:] if argv is None else argv)}  # fmt: skip
    results = []
    try:
        for name, chunks in scales:
            load0, t = os.getloadavg(), time.perf_counter()
            log(f"[{name}] {chunks:,} chunks, {mode}, {opts.commits} commits, work directory {root / name}")
            result = bench_scale(name, chunks, opts, root / name)
            result.update(
                mode=mode, quick=opts.quick, commits=opts.commits, queries=opts.queries,
                recall_queries=opts.recall_queries, notes=notes(opts), **meta,
                loadavg_start=list(load0), loadavg_end=list(os.getloadavg()), total_s=time.perf_counter() - t,
            )  # fmt: skip
            results.append(result)
            results_dir = Path(opts.results)
            out = results_dir / f"update-{name}{'-quick' if opts.quick else ''}{'-' + opts.label if opts.label else ''}.json"
            results_dir.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
            log(f"[{name}] saved {out} ({result['total_s'] / 60:.1f} min)")
    finally:
        if not opts.workdir and not opts.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    for r in results:
        print(f"\n{r['scale']}: {r['date']}, {r['machine']}, code {r['code']}; load average "
              f"{r['loadavg_start'][0]:.2f} at start, {r['loadavg_end'][0]:.2f} at end; {r['total_s'] / 60:.1f} min")  # fmt: skip


if __name__ == "__main__":
    main()
