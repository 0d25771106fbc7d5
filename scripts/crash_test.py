#!/usr/bin/env python
"""Kill `ragkit ingest` with SIGKILL at random moments; prove that nothing is lost or duplicated.

Each round changes a corpus (edits, a new file, a deleted file, JSONL rows edited, removed or
renumbered), starts the real CLI, `ragkit ingest CORPUS --index IDX --prune --json`, in a
subprocess and sends it SIGKILL at a random moment. Then it checks that

  * the index opens (a reader gets one complete generation) and passes `verify_index`
    (store, faiss, embeddings.npy and BM25 agree chunk for chunk; sampled rows re-embedded);
  * its content is exactly the old state or exactly the new one (documents and their hashes,
    chunks by id and span), and the old one whenever the kill came before the CURRENT swap;
  * a query answers from it with a citation;
  * re-running the same ingest (in this process with the same code, or every Nth round with the
    CLI again) succeeds although the killed writer's PID is still in LOCK, and leaves exactly the
    new state: nothing lost, nothing duplicated, no unpublished generation, no temporary file.

Expected states come from the corpus itself (loaders + chunker), not from the index.

Kill moments are real timing, no hooks in ragkit: a first, uninterrupted run records when each
phase begins (as seen on disk: the new generation directory appears; the new segment's vectors
are written; the generation's manifest.json is written at the start of publishing; CURRENT is
swapped; old generations are removed; a background merge reserves its segment and publishes).
The pipeline merges eagerly (`segments.per_tier: 2`), so nearly every ingest ends with a merge
that the CLI waits for. Each kill then waits for one of those moments and sleeps a random
fraction of that phase's measured length, so kills spread over startup, building, publishing, the
swap, cleanup and the merge. Where the kill really landed is read from the disk afterwards and
reported. A kill during the merge must leave the commit's (new) state: the merge is dropped and
its reserved segment removed by the next writer.

    python scripts/crash_test.py --kills 20 --seed 7 [--json] [--workdir DIR] [--keep]

Exit status 0 when every round passed; the summary lists phases hit and outcomes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ragkit import RAG  # noqa: E402
from ragkit.chunkers import make_chunker  # noqa: E402
from ragkit.config import PipelineConfig, parse_pipeline  # noqa: E402
from ragkit.indexes.embedder import make_embedder  # noqa: E402
from ragkit.indexes.generation import GenerationView  # noqa: E402
from ragkit.indexes.layout import (  # noqa: E402
    BUILDING_SUFFIX,
    CURRENT_FILE,
    EMBEDDINGS_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    SEGMENTS_DIR,
    generation_dir_name,
    next_segment_number,
    read_current,
    segment_dir_name,
)
from ragkit.indexes.maintenance import verify_index  # noqa: E402
from ragkit.indexes.snapshot import IndexSnapshot  # noqa: E402
from ragkit.indexes.store import document_hash  # noqa: E402
from ragkit.loaders import discover, load_file  # noqa: E402

PHASES = ["startup", "building", "indexing", "publishing", "swapping", "cleanup", "merging", "published"]
# Eager merges: every ingest after the first leaves two segments of one tier, merged at once.
PIPELINE = {"segments": {"per_tier": 2, "floor_rows": 100_000}}
BEFORE_SWAP = {"startup", "building", "indexing", "publishing", "swapping"}
ANCHOR_QUESTION = "Who built the Kestrel lighthouse?"
ANCHOR_TEXT = (
    "# The Kestrel lighthouse\n\nThe Kestrel lighthouse was built in 1887 by the engineer Ada Morrow. "
    "Its lamp was first lit on a stormy night in November.\n"
)
SYLLABLES = "ka lo mi ne ru sa te vi zo qua bre dil fen gor hap jun kel mor nix pel rask tov umb wex yor".split()


# --- the corpus ------------------------------------------------------------------------------


class Corpus:
    """Markdown documents, a JSONL file whose rows have no ids (so removing a row renumbers the
    rest), a large file of repeated text (store, vectors and fsyncs of a realistic size) and an
    anchor document that never changes (the query check)."""

    def __init__(self, path: Path, rng: random.Random, bulk_kb: int) -> None:
        self.path = path
        self.rng = rng
        self.serial = 0
        path.mkdir(parents=True)
        (path / "anchor.md").write_text(ANCHOR_TEXT, encoding="utf-8")
        paragraph = (
            "Routine log entry: the keeper trimmed the wick, wound the clockwork and noted calm seas. "
            "Nothing unusual was observed during the watch.\n\n"
        )
        (path / "bulk.txt").write_text(paragraph * (bulk_kb * 1024 // len(paragraph) + 1), encoding="utf-8")
        self.rows = [self.sentence(12) for _ in range(6)]
        self.write_rows()
        for _ in range(12):
            self.add_doc()

    def word(self) -> str:
        return "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(2, 3)))

    def sentence(self, n: int) -> str:
        self.serial += 1
        words = [self.word() for _ in range(n)]
        return f"Entry {self.serial} says " + " ".join(words) + "."

    def doc_text(self) -> str:
        paragraphs = [" ".join(self.sentence(self.rng.randint(8, 16)) for _ in range(3)) for _ in range(3)]
        return f"# Notes {self.serial}\n\n" + "\n\n".join(paragraphs) + "\n"

    def docs(self) -> list[Path]:
        return sorted(self.path.glob("doc_*.md"))

    def add_doc(self) -> None:
        self.serial += 1
        (self.path / f"doc_{self.serial:04d}.md").write_text(self.doc_text(), encoding="utf-8")

    def write_rows(self) -> None:
        lines = [json.dumps({"text": row}) for row in self.rows]
        (self.path / "rows.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def mutate(self) -> list[str]:
        """One round of changes; returns what was done."""
        done = []
        for path in self.rng.sample(self.docs(), 2):
            paragraphs = path.read_text(encoding="utf-8").split("\n\n")
            i = self.rng.randrange(1, len(paragraphs))
            paragraphs[i] = self.sentence(10)
            path.write_text("\n\n".join(paragraphs), encoding="utf-8")
            done.append(f"edit {path.name}")
        victim = self.rng.choice(self.docs())
        victim.unlink()
        done.append(f"delete {victim.name}")
        self.add_doc()
        done.append("add a file")
        action = self.rng.choice(["edit", "remove", "insert"] if len(self.rows) > 3 else ["edit", "insert"])
        i = self.rng.randrange(len(self.rows))
        if action == "edit":
            self.rows[i] = self.sentence(12)
        elif action == "remove":
            del self.rows[i]
        else:
            self.rows.insert(i, self.sentence(12))
        self.write_rows()
        done.append(f"{action} JSONL row {i + 1}")
        return done


# --- states: what the index holds, what it should hold ----------------------------------------


@dataclass(frozen=True)
class State:
    documents: frozenset[tuple[str, str]]  # (id, content hash)
    chunks: frozenset[tuple[str, str, int, int]]  # (chunk id, document id, start, end)

    def describe(self) -> str:
        return f"{len(self.documents)} documents, {len(self.chunks)} chunks"


class Oracle:
    """The state a complete ingest of the corpus must produce, from the loaders and the chunker."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.chunker = make_chunker(config.chunker)
        self.cache: dict[tuple[str, str], list[tuple[str, str, int, int]]] = {}

    def expected(self, corpus: Path) -> State:
        found = discover([corpus], self.config.loader)
        documents, chunks = set(), set()
        for path in found.files:
            for document in load_file(path, self.config.loader).documents:
                key = (document.id, document_hash(document))
                if key not in self.cache:
                    self.cache[key] = [(c.id, c.doc_id, c.start, c.end) for c in self.chunker.chunk(document)]
                documents.add(key)
                chunks.update(self.cache[key])
        return State(frozenset(documents), frozenset(chunks))


def index_state(index_dir: Path) -> tuple[State, list[str]]:
    """The published generation's content, and any duplicate (which a State would hide)."""
    manifest = read_current(index_dir)
    assert manifest is not None
    view = GenerationView.open(index_dir, manifest)
    try:
        documents = list(view.store.document_hashes().items())
        chunks = [(c.id, c.doc_id, c.start, c.end) for _, c, _ in view.store.chunks_of(sorted(view.store.document_sources()))]
        n_docs = view.store.count_documents()
    finally:
        view.close()
    problems = []
    if len(set(documents)) != len(documents) or n_docs != len(documents):
        problems.append(f"duplicate documents ({n_docs} live, {len(documents)} distinct ids)")
    if len(set(chunks)) != len(chunks) or len({c[0] for c in chunks}) != len(chunks):
        problems.append(f"duplicate chunks ({len(chunks) - len(set(chunks))})")
    return State(frozenset(documents), frozenset(chunks)), problems


# --- watching an ingest from outside ---------------------------------------------------------


class Observer:
    """Which phase a writer publishing generation old+1 is in, judged from the files alone."""

    def __init__(self, index_dir: Path, old_generation: int) -> None:
        self.index_dir = index_dir
        self.old = old_generation
        self.new_dir = index_dir / generation_dir_name(old_generation + 1)
        self.new_segment = index_dir / SEGMENTS_DIR / segment_dir_name(next_segment_number(index_dir))
        self.kept = generation_dir_name(old_generation)
        # While polling, only a few stat calls (the writer must not compete with a busy poller).
        self.current_inode = self._current_inode()
        self.last_stale = index_dir / generation_dir_name(old_generation - 1)  # removed last by cleanup
        self.has_stale = self.last_stale.is_dir()

    def _current_inode(self) -> int | None:
        try:
            return os.stat(self.index_dir / CURRENT_FILE).st_ino
        except FileNotFoundError:
            return None

    def quick_phase(self) -> str:
        """The phase from a few stat calls (no directory listing); "swapping" shows as "publishing"."""
        if self._current_inode() != self.current_inode:  # os.replace gives CURRENT a new inode
            if self.has_stale and self.last_stale.exists():
                return "cleanup"
            return "merging" if self._merging() else "published"
        if (self.new_dir / MANIFEST_FILE).exists():
            return "publishing"
        if (self.new_segment / EMBEDDINGS_FILE).exists():
            return "indexing"
        return "building" if self.new_dir.exists() else "startup"

    def _merging(self) -> bool:
        return any((self.index_dir / SEGMENTS_DIR).glob(f"*{BUILDING_SUFFIX}"))

    def _tmp_current(self) -> bool:
        return any(self.index_dir.glob(f"{CURRENT_FILE}.tmp-*"))

    def phase(self) -> tuple[str, str]:
        """(phase, detail)."""
        current = read_current(self.index_dir)
        if current is not None and current.generation > self.old:
            if self._merging():
                return "merging", "a merge's reserved segment is present (its process was killed)"
            stale = [p.name for p in self.index_dir.glob("gen-*") if p.name < self.kept]
            if stale or self._tmp_current():
                return "cleanup", "old generations still present" if stale else "temporary CURRENT present"
            if current.generation > self.old + 1:
                return "published", "clean (and merged)"
            return "published", "clean"
        if self.new_dir.is_dir():
            if (self.new_dir / MANIFEST_FILE).exists():
                return ("swapping", "CURRENT.tmp written") if self._tmp_current() else ("publishing", "fsync")
            names = {p.name for p in self.new_segment.iterdir()} if self.new_segment.is_dir() else set()
            if "bm25" in names:
                return "indexing", "sparse postings being saved"
            if "dense.faiss" in names:
                return "indexing", "dense index saved"
            if "embeddings.npy" in names:
                return "indexing", "vectors saved"
            return "building", "loading the model, chunking, embedding"
        return "startup", "loading files / waiting for the lock"


def ingest_command(corpus: Path, index_dir: Path) -> list[str]:
    pipeline = index_dir.parent / "pipeline.yaml"
    return [
        sys.executable, "-m", "ragkit.cli", "ingest", str(corpus), "--index", str(index_dir), "--prune", "--json",
        "--pipeline", str(pipeline),
    ]  # fmt: skip


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


@dataclass
class Run:
    pid: int
    returncode: int
    killed: bool
    phase: str = ""
    detail: str = ""
    anchor: str = ""
    delay_s: float = 0.0
    seconds: float = 0.0
    times: dict[str, float] = field(default_factory=dict)  # phase -> first seen (s after start)


def run_ingest(
    corpus: Path, index_dir: Path, anchor: str | None = None, delay_s: float = 0.0, poll_s: float = 0.0005
) -> Run:
    """Run the CLI; with `anchor`, SIGKILL it `delay_s` after that phase (or a later one) is seen."""
    old = read_current(index_dir)
    observer = Observer(index_dir, old.generation if old else 0)
    started = time.monotonic()
    proc = subprocess.Popen(
        ingest_command(corpus, index_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=subprocess_env(), cwd=ROOT,
    )  # fmt: skip
    times: dict[str, float] = {}
    kill_at: float | None = None
    killed = False
    while True:
        now = time.monotonic()
        if kill_at is not None and now >= kill_at:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
            break
        if proc.poll() is not None:
            break
        phase = observer.quick_phase()
        if phase not in times:
            for earlier in PHASES[: PHASES.index(phase) + 1]:
                times.setdefault(earlier, now - started)
        if anchor is not None and kill_at is None and anchor in times:
            kill_at = started + times[anchor] + delay_s
        time.sleep(poll_s)
    stderr = proc.communicate()[1].decode(errors="replace")
    run = Run(proc.pid, proc.returncode, killed, anchor=anchor or "", delay_s=delay_s)
    run.seconds = time.monotonic() - started
    run.times = times
    if killed and proc.returncode != -signal.SIGKILL:
        run.killed = False  # it exited on its own just before the signal
    if not killed and proc.returncode not in (0,):
        raise RuntimeError(f"ingest exited {proc.returncode}:\n{stderr[-3000:]}")
    run.phase, run.detail = observer.phase()
    return run


# --- the test ----------------------------------------------------------------------------------


@dataclass
class Round:
    n: int
    changes: list[str]
    anchor: str
    delay_ms: float
    landed: str
    detail: str
    outcome: str  # "old" | "new" | "completed" (the process finished before the kill)
    lock_named_dead_pid: bool
    rerun: str
    problems: list[str]


def check_index(  # type: ignore[no-untyped-def]
    index_dir: Path, embedder, config: PipelineConfig, problems: list[str], sample: int = 2, query: bool = True
) -> None:
    """Opens, verifies (re-embedding `sample` chunks), answers a query with a citation."""
    try:
        IndexSnapshot.open(index_dir).close()
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        problems.append(f"index does not open: {exc}")
        return
    report = verify_index(index_dir, embedder if sample else None, sample=sample)
    problems.extend(f"verify: {p}" for p in report.problems)
    if not query:
        return
    rag = RAG(config, index_dir)
    rag.embedder = embedder  # type: ignore[misc]  # share the loaded model
    try:
        answer = rag.query(ANCHOR_QUESTION)
        if "Ada Morrow" not in answer.text or not any(c.source.endswith("anchor.md") for c in answer.citations):
            problems.append(f"query: unexpected answer {answer.text!r}")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"query failed: {type(exc).__name__}: {exc}")
    finally:
        rag.close()


def check_leftovers(index_dir: Path, problems: list[str]) -> None:
    current = read_current(index_dir)
    assert current is not None
    newer = [p.name for p in index_dir.glob("gen-*") if p.name > current.directory]
    if newer:
        problems.append(f"unpublished generations left after the re-run: {newer}")
    listed = {s.name for s in current.segments}
    kept = set(listed)
    for path in index_dir.glob("gen-*"):
        try:
            kept.update(s["name"] for s in json.loads((path / MANIFEST_FILE).read_text())["segments"])
        except (OSError, ValueError, KeyError):
            pass
    orphans = sorted(p.name for p in (index_dir / SEGMENTS_DIR).glob("seg-*") if p.is_dir() and p.name not in kept)
    if orphans:
        problems.append(f"segments no generation lists were left after the re-run: {orphans}")
    if any((index_dir / SEGMENTS_DIR).glob(f"*{BUILDING_SUFFIX}")):
        problems.append("a merge reservation was left after the re-run")
    if any(index_dir.glob(f"{CURRENT_FILE}.tmp-*")):
        problems.append("temporary CURRENT file left after the re-run")


def plan(kills: int, rng: random.Random) -> list[str]:
    """Anchor phases for the kills: spread over the run, most where the writer does work."""
    weights = {"startup": 0.1, "building": 0.2, "indexing": 0.15, "publishing": 0.15, "cleanup": 0.15, "merging": 0.25}
    anchors = [a for a, w in weights.items() for _ in range(max(1, round(w * kills)))]
    while len(anchors) < kills:
        anchors.append("building")
    anchors = anchors[:kills]
    rng.shuffle(anchors)
    return anchors


def window(anchor: str, times: dict[str, float], total: float) -> float:
    """How long the anchor's phase lasted in the calibration run (the random delay's range)."""
    nxt = {
        "startup": "building", "building": "indexing", "indexing": "publishing",
        "publishing": "cleanup", "cleanup": "merging", "merging": "published",
    }  # fmt: skip
    start = times.get(anchor, 0.0)
    length = max(times.get(nxt[anchor], total) - start, 0.0)
    if anchor == "cleanup":
        length = length * 1.5 + 0.002  # a little past the cleanup, into the process's exit
    return max(length, 0.001)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=int(os.environ.get("RAGKIT_CRASH_KILLS", "20")))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--bulk-kb", type=int, default=1024, help="size of the repeated-text file")
    parser.add_argument("--cli-rerun-every", type=int, default=10, help="re-run with the CLI every N rounds")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--dense-backend", default=None, help="the pipeline's dense.backend as JSON (e.g. pgvector)")
    args = parser.parse_args(argv)
    pipeline = {**PIPELINE, **({"dense": {"backend": json.loads(args.dense_backend)}} if args.dense_backend else {})}
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ragkit-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus_dir, index_dir = workdir / "corpus", workdir / "index"
    started = time.monotonic()
    config: PipelineConfig = parse_pipeline(pipeline)
    (workdir / "pipeline.yaml").write_text(json.dumps(pipeline), encoding="utf-8")
    embedder = make_embedder(config.dense.embedder)
    embedder.load()
    oracle = Oracle(config)
    corpus = Corpus(corpus_dir, rng, args.bulk_kb)
    log(f"crash test: seed {seed}, {args.kills} kill points, work directory {workdir}")

    # Generations 1 and 2 (so that publishing 3 has an old generation to clean up), then one
    # uninterrupted CLI run to measure the phases.
    for _ in range(2):
        rag = RAG(config, index_dir)
        rag.embedder = embedder  # type: ignore[misc]
        rag.ingest([corpus_dir], prune=True)
        rag.close()  # waits for the merge
        corpus.mutate()
    calibration = run_ingest(corpus_dir, index_dir)
    expected = oracle.expected(corpus_dir)
    state, dupes = index_state(index_dir)
    if state != expected or dupes:
        log(f"calibration run did not produce the expected state: {dupes}")
        return 1
    total = calibration.seconds
    log("calibration (s after start): " + ", ".join(f"{p} {t:.3f}" for p, t in calibration.times.items())
        + f", exit {total:.3f}")  # fmt: skip

    rounds: list[Round] = []
    anchors = plan(args.kills, rng)
    attempts = 0
    while sum(r.outcome != "completed" for r in rounds) < args.kills and attempts < 3 * args.kills:
        attempts += 1
        killed_so_far = sum(r.outcome != "completed" for r in rounds)
        anchor = anchors[killed_so_far]
        old_state, _ = index_state(index_dir)
        changes = corpus.mutate()
        new_state = oracle.expected(corpus_dir)
        delay = rng.uniform(0, window(anchor, calibration.times, total))
        run = run_ingest(corpus_dir, index_dir, anchor, delay)
        problems: list[str] = []

        state, dupes = index_state(index_dir)
        problems.extend(dupes)
        if not run.killed:
            outcome = "completed"
            if state != new_state:
                problems.append("the ingest completed but the index is not the new state")
        elif state == old_state:
            outcome = "old"
            if run.phase not in BEFORE_SWAP:
                problems.append(f"killed in {run.phase} (after the swap) but the index is the old state")
        elif state == new_state:
            outcome = "new"
            if run.phase in BEFORE_SWAP:
                problems.append(f"killed in {run.phase} (before the swap) but the index is the new state")
        else:
            outcome = "neither"
            problems.append(
                f"index is neither the old state ({old_state.describe()}) nor the new one "
                f"({new_state.describe()}): it has {state.describe()}, "
                f"{len(state.chunks - old_state.chunks - new_state.chunks)} chunks in neither, "
                f"{len((old_state.chunks & new_state.chunks) - state.chunks)} chunks of both lost"
            )
        check_index(index_dir, embedder, config, problems)
        lock_pid = (index_dir / LOCK_FILE).read_text().strip() if (index_dir / LOCK_FILE).exists() else ""
        named_dead = run.killed and lock_pid == str(run.pid)

        # Re-run the same ingest: it must complete and leave exactly the new state.
        n = len(rounds) + 1
        if args.cli_rerun_every and n % args.cli_rerun_every == 0:
            rerun = "cli"
            run_ingest(corpus_dir, index_dir)
        else:
            rerun = "api"
            rag = RAG(config, index_dir)
            rag.embedder = embedder  # type: ignore[misc]
            try:
                rag.ingest([corpus_dir], prune=True)
                rag.close()  # waits for the merge
            except Exception as exc:  # noqa: BLE001
                problems.append(f"re-run failed: {type(exc).__name__}: {exc}")
        state, dupes = index_state(index_dir)
        problems.extend(f"after re-run: {d}" for d in dupes)
        if state != new_state:
            problems.append(
                f"after re-run: {len(new_state.chunks - state.chunks)} chunks lost, "
                f"{len(state.chunks - new_state.chunks)} extra"
            )
        check_index(index_dir, embedder, config, problems, sample=0, query=False)
        check_leftovers(index_dir, problems)

        rounds.append(
            Round(n, changes, anchor, round(delay * 1000, 1), run.phase, run.detail, outcome, named_dead, rerun, problems)
        )
        mark = "ok " if not problems else "FAIL"
        log(
            f"{mark} round {n:2d}: anchor {anchor:<10} +{delay * 1000:7.1f} ms -> landed in {run.phase:<10} "
            f"({run.detail}); index = {outcome} state; LOCK named the dead PID: {named_dead}; re-run ({rerun}) ok"
            if not problems else f"{mark} round {n:2d}: " + "; ".join(problems)
        )  # fmt: skip

    kills = [r for r in rounds if r.outcome != "completed"]
    summary = {
        "seed": seed,
        "kills": len(kills),
        "rounds": len(rounds),
        "missed": len(rounds) - len(kills),
        "landed": dict(Counter(r.landed for r in kills)),
        "landed_detail": dict(Counter(f"{r.landed}: {r.detail}" for r in kills)),
        "outcomes": dict(Counter(r.outcome for r in rounds)),
        "lock_left_by_killed_writer": sum(r.lock_named_dead_pid for r in kills),
        "cli_reruns": sum(r.rerun == "cli" for r in rounds),
        "calibration_s": {k: round(v, 3) for k, v in calibration.times.items()} | {"exit": round(total, 3)},
        "failures": [{"round": r.n, "problems": r.problems} for r in rounds if r.problems],
        "seconds": round(time.monotonic() - started, 1),
        "rounds_detail": [r.__dict__ for r in rounds],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(json.dumps({k: v for k, v in summary.items() if k != "rounds_detail"}, indent=2))
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    ok = not summary["failures"] and len(kills) >= args.kills
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
