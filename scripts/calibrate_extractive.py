#!/usr/bin/env python3
"""Calibrate the extractive generator's abstention on a QA set with unanswerable questions.

    python scripts/calibrate_extractive.py [DATASET_DIR] [--unanswerable 0.2] [--max-queries N]
        [--recall 0.93] [--pipeline FILE]

DATASET_DIR defaults to the HaluEval QA set (`python scripts/make_halueval_beir.py` writes it).
The share `--unanswerable` of the questions loses its gold passages (as `ragkit eval qa` does).
Every question is retrieved and decided once with abstention switched off, recording the support
of the sentence that would be quoted (`Decision.score`), the share of the question's names its
passages lack (`Decision.entity_missing`) and whether the quote holds a reference answer. Then,
on the questions with an even hash ("dev"), every (min_support, max missing names) pair is scored
offline, and the pair with the highest containment whose abstention recall is at least `--recall`
is chosen; its figures on the other half ("test") are printed next to the dev ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ragkit.config import PipelineConfig, load_pipeline  # noqa: E402
from ragkit.eval.answers import containment  # noqa: E402
from ragkit.eval.qa import prepare_qa  # noqa: E402
from ragkit.generation import extractive  # noqa: E402
from ragkit.schema import Trace  # noqa: E402

DEFAULT_DATASET = REPO / ".ragkit" / "datasets" / "halueval-qa"


def collect(args: argparse.Namespace) -> list[dict]:
    config = load_pipeline(args.pipeline) if args.pipeline else PipelineConfig()
    config = config.model_copy(update={"generator": config.generator.model_copy(update={"min_support": 0.0})})
    setup = prepare_qa(args.dataset, config, max_queries=args.max_queries, unanswerable=args.unanswerable, seed=args.seed)
    rag = setup.rag
    generator = rag.generator
    extractive.MAX_MISSING_ENTITIES = 1.0  # decide, never abstain on names: measured here instead
    rows = []
    for n, (query_id, question) in enumerate(setup.questions.items(), 1):
        trace = Trace()
        hits = rag.retrieve(question, trace=trace)
        decision = generator.decide(question, hits, trace)
        answer = generator.generate(question, hits, Trace()).text if decision.abstain is None else ""
        rows.append({
            "id": query_id,
            "answerable": query_id not in setup.unanswerable,
            "score": decision.score if decision.abstain is None else -1.0,
            "entity_missing": decision.entity_missing,
            "contains": bool(answer) and containment(answer, setup.answers[query_id]) == 1.0,
            "kinds": decision.kinds,
            "dense_top": max((h.retrievers["dense"].score for h in hits if "dense" in h.retrievers), default=0.0),
            "dense_chosen": max(
                (hits[decision.candidates[i].block - 1].retrievers["dense"].score for i in decision.chosen
                 if "dense" in hits[decision.candidates[i].block - 1].retrievers), default=0.0),
        })
        if n % 100 == 0:
            print(f"  {n}/{len(setup.questions)}", file=sys.stderr)
    return rows


def score(rows: list[dict], min_support: float, max_missing: float) -> dict[str, float]:
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]

    def abstains(r: dict) -> bool:
        return r["score"] < min_support or r["entity_missing"] > max_missing

    abstained = [r for r in rows if abstains(r)]
    right = sum(not r["answerable"] for r in abstained)
    return {
        "containment": sum(r["contains"] and not abstains(r) for r in answerable) / max(1, len(answerable)),
        "abstention_recall": right / max(1, len(unanswerable)),
        "abstention_precision": right / len(abstained) if abstained else 0.0,
        "false_abstention_rate": sum(abstains(r) for r in answerable) / max(1, len(answerable)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--unanswerable", type=float, default=0.2)
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recall", type=float, default=0.93, help="abstention recall the choice must reach on dev")
    parser.add_argument("--pipeline", type=Path, default=None)
    parser.add_argument("--rows", type=Path, default=None, help="reuse (or save) the collected rows as JSON")
    args = parser.parse_args()
    if args.rows is not None and args.rows.exists():
        rows = json.loads(args.rows.read_text())
    else:
        rows = collect(args)
        if args.rows is not None:
            args.rows.write_text(json.dumps(rows))
    half = {r["id"]: int(hashlib.sha256(r["id"].encode()).hexdigest(), 16) % 2 for r in rows}
    dev = [r for r in rows if half[r["id"]] == 0]
    test = [r for r in rows if half[r["id"]] == 1]
    grid = [(t / 100, e) for t in range(0, 80) for e in (0.34, 0.5, 0.67, 1.0)]
    scored = [(t, e, score(dev, t, e)) for t, e in grid]
    feasible = [s for s in scored if s[2]["abstention_recall"] >= args.recall] or scored
    t, e, best = max(feasible, key=lambda s: (s[2]["containment"], s[2]["abstention_precision"]))
    print(f"{len(rows)} questions ({sum(not r['answerable'] for r in rows)} unanswerable); dev {len(dev)}, test {len(test)}")
    print(f"chosen: min_support {t:.2f}, max missing names {e:.2f} (containment-best with dev abstention recall >= {args.recall})")
    for name, part in (("dev", dev), ("test", test), ("all", rows)):
        print(f"  {name:<5}", json.dumps({k: round(v, 4) for k, v in score(part, t, e).items()}))
    print("nearby min_support values (all questions, same max missing names):")
    for other in (t - 0.05, t - 0.02, t, t + 0.02, t + 0.05):
        print(f"  {other:.2f}", json.dumps({k: round(v, 4) for k, v in score(rows, other, e).items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
