"""How often a generator's answer cites the right source, on data/questions.jsonl.

    python scripts/local_citation_rate.py                      # pipelines/local.yaml, index in .ragkit/local-rate
    python scripts/local_citation_rate.py --pipeline P --index DIR --max-questions 10

For each answerable question (28 of the 30 have an expected source file): did the answer cite any
context block, did it cite the expected source, and does it contain one of the question's keywords?
For the unanswerable ones: did it say the "I don't know" sentence? Prints one line per question and a
JSON summary. The index is built from data/ on first use (bundled MiniLM; no rerank step, whose model
is not available offline).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ragkit.api import RAG
from ragkit.config import NoRerankConfig, load_pipeline
from ragkit.generation.prompt import NO_ANSWER

ROOT = Path(__file__).resolve().parents[1]


def repo_relative(source: str) -> str:
    """`source` as the questions name it ("data/..."), whether it was ingested relative or absolute."""
    path = Path(source)
    return str(path.resolve().relative_to(ROOT)) if path.is_absolute() else source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", type=Path, default=ROOT / "pipelines" / "local.yaml")
    parser.add_argument("--index", type=Path, default=ROOT / ".ragkit" / "local-rate")
    parser.add_argument("--questions", type=Path, default=ROOT / "data" / "questions.jsonl")
    parser.add_argument("--max-questions", type=int, default=None)
    args = parser.parse_args()

    config = load_pipeline(args.pipeline)
    config.retrieval.rerank = NoRerankConfig()
    questions = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]
    questions = questions[: args.max_questions]
    with RAG(config, args.index) as rag:
        if not (args.index / "CURRENT").exists():
            rag.ingest([ROOT / "data"])
        counts = {"answerable": 0, "cited_any": 0, "cited_expected": 0, "first_citation_expected": 0,
                  "keyword_in_answer": 0, "unanswerable": 0, "abstained_when_unanswerable": 0}  # fmt: skip
        started = time.perf_counter()
        for q in questions:
            answer = rag.query(q["question"])
            sources = [repo_relative(c.source) for c in answer.citations]
            if q["source"]:
                counts["answerable"] += 1
                counts["cited_any"] += bool(sources)
                counts["cited_expected"] += q["source"] in sources
                counts["first_citation_expected"] += bool(sources) and sources[0] == q["source"]
                counts["keyword_in_answer"] += any(k.lower() in answer.text.lower() for k in q["keywords"])
                verdict = "right source" if q["source"] in sources else ("wrong source" if sources else "no citation")
            else:
                counts["unanswerable"] += 1
                abstained = answer.text.strip() == NO_ANSWER
                counts["abstained_when_unanswerable"] += abstained
                verdict = "abstained" if abstained else "answered"
            print(f"{q['id']} {verdict:13} {answer.text[:110]!r} {sources}", flush=True)
        elapsed = time.perf_counter() - started
    summary = {"pipeline": str(args.pipeline), "generator": config.generator.name, **counts,
               "seconds": round(elapsed, 1), "seconds_per_question": round(elapsed / max(len(questions), 1), 2)}  # fmt: skip
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
