#!/usr/bin/env python3
"""Build a BEIR-layout QA dataset from HaluEval QA (../shared/datasets/faithfulness/halueval-qa-dev.jsonl).

    python scripts/make_halueval_beir.py [--source FILE] [--out DIR]

HaluEval QA rows are {"id", "context", "question", "answer", "label"}: per item one correct answer
(label 1) and one hallucinated one (label 0), both with the item's knowledge passage as `context`.
The dataset written here (default `.ragkit/datasets/halueval-qa`, outside version control: the
data stays out of the repo) is:

- corpus.jsonl   one passage per distinct knowledge context  {"_id", "title": "", "text"}
- queries.jsonl  one query per item  {"_id", "text": question, "answers": [the label-1 answer]}
- qrels/test.tsv each question -> the passage it was asked about (relevance 1)

Ids are content hashes (stable across runs and independent of row order). Retrieval evaluation
(`ragkit eval retrieval DIR`) uses queries + qrels; QA evaluation also reads `answers`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "datasets" / "faithfulness" / "halueval-qa-dev.jsonl"
DEFAULT_OUT = REPO / ".ragkit" / "datasets" / "halueval-qa"


def _id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def convert(source: Path, out: Path) -> dict[str, int]:
    """Write the BEIR files for `source` into `out`; returns counts."""
    if not source.is_file():
        raise SystemExit(f"error: {source}: no such file (expected HaluEval QA JSONL; see shared/datasets/README.md)")
    corpus: dict[str, str] = {}
    queries: dict[str, dict] = {}
    qrels: list[tuple[str, str]] = []
    with source.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                context, question, answer, label = row["context"], row["question"], row["answer"], row["label"]
            except (ValueError, KeyError) as exc:
                raise SystemExit(f"error: {source}:{line_no}: not a HaluEval QA row ({exc})") from None
            if int(label) != 1:  # the hallucinated answer of the item: not a reference answer
                continue
            doc_id = _id("halu-d", context)
            corpus.setdefault(doc_id, context)
            query_id = _id("halu-q", question + "\x00" + context)
            if query_id in queries:
                queries[query_id]["answers"].append(answer)
                continue
            queries[query_id] = {"_id": query_id, "text": question, "answers": [answer]}
            qrels.append((query_id, doc_id))
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc_id, text in corpus.items():
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}, ensure_ascii=False) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query in queries.values():
            handle.write(json.dumps(query, ensure_ascii=False) + "\n")
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for query_id, doc_id in qrels:
            handle.write(f"{query_id}\t{doc_id}\t1\n")
    return {"passages": len(corpus), "queries": len(queries), "qrels": len(qrels)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    counts = convert(args.source, args.out)
    print(f"wrote {args.out}: {counts['passages']} passages, {counts['queries']} queries, {counts['qrels']} qrels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
