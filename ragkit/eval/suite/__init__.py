"""Eval suites: datasets x pipelines x metrics, checked against thresholds (`ragkit eval suite`).

A suite is YAML (see `eval/*.yaml`), validated strictly (an unknown or misspelled key is an
error naming the field):

    name: sample                        # also the default report directory: reports/<name>
    datasets:
      - name: solar-system
        kind: questions                 # or: beir
        path: ../data/questions.jsonl   # beir: the dataset directory
        corpus: [../data]               # questions only: files/directories to ingest
        sources_root: ..                # questions only: what `source` fields are relative to
        max_queries: null               # use the first N questions (null: all)
        sample_questions: 30            # of those, how many get generated answers (null: all)
        seed: 0                         # which sample (a seeded random sample, kept in file order)
    pipelines:
      - ../pipelines/default.yaml
      - path: ../pipelines/default.yaml  # a variant: the file, with some settings overridden
        name: bm25-only
        override: {retrieval: {fusion: {name: convex, weights: {dense: 0.0, sparse: 1.0}}, rerank: {name: none}}}
    metrics: [hit_rate@5, mrr@10, faithfulness, token_f1, abstention_accuracy]
    thresholds:
      - {metric: hit_rate@5, min: 0.8}                       # every dataset x pipeline
      - {metric: faithfulness, min: 0.6, pipeline: default, dataset: solar-system}

**Paths** (`path`, `corpus`, `sources_root`, `pipelines`) that are relative resolve against the
directory of the suite file, so a suite runs the same from any working directory
(`eval/boolq-dev.yaml` reads `../../shared/datasets/boolq-dev` = `../shared/datasets/boolq-dev`
from the repository root). `sources_root` defaults to the suite file's directory.

**Pipelines** are pipeline files, or variants of one: `{path, name, override}` deep-merges
`override` into the file's YAML (mappings merge key by key, except that a mapping naming another
component, e.g. `rerank: {name: none}`, replaces the old one; anything else replaces) and renames
it, so a comparison stays in step with the pipeline it varies. Pipeline names must be distinct.

**Questions files** (`kind: questions`) are JSONL rows `{"id", "question", "answer"?,
"source"?, "sources"?, "keywords"?}`: `source`/`sources` are the expected source file(s)
(relative to `sources_root`); a question with neither is unanswerable and should get the
"I don't know" sentence (`ragkit.generation.prompt.NO_ANSWER`); `answer` (may be null) and
`keywords` are the references for answer quality.

**Indexes** are cached under `<cache_root>/` (default `.ragkit/eval/` in the working directory):
for BEIR datasets at `ragkit.eval.retrieval.cache_dir_for`, for questions datasets at
`<name>-<hash of the corpus paths and the pipeline's loader and index settings>`; ingest is
incremental (with pruning), so reruns only embed what changed. Pipelines with the same
loader/chunker/dense/sparse settings share an index.

**Metrics** (`metrics`; every metric named by a threshold is computed too). Each is a mean in
[0, 1] over the questions it applies to; `null` ("n/a") when no question qualifies.

- Retrieval, over the first `max_queries` questions that have expected sources / qrels: any
  ranx-style name of `ragkit.eval.metrics` (`hit_rate@5`, `mrr@10`, `ndcg@10`, `recall@100`, ...).
  BEIR: the documents are the passages, via `evaluate_retrieval`. Questions: the documents are the
  source files (a file ranks at its best chunk), relevant = the expected source(s).
- On the sampled questions, each answered with `rag.query` (the generator sees the top_k hits):
  - `context_precision` / `context_recall` (`ragkit.eval.answers`): the hits' sources (BEIR:
    passage ids) against the expected ones; questions with expected sources.
  - `faithfulness`: the offline scorer's answer score (`OfflineFaithfulnessScorer`) of the answer
    (each citation marker replaced by a line break: it ends a passage from one block) against the context it was given (the hits' texts joined), over
    answers that are not "I don't know". `claims_supported`: the share of all those answers'
    claims marked supported.
  - `exact_match`, `token_f1`, `containment`: against the acceptable references (the `answer`
    and each keyword; BEIR: the query's `answers`); containment also accepts "all keywords
    present". `keyword_recall`: share of the keywords present. Questions with references.
  - `abstention_accuracy`: share of unanswerable questions answered with exactly the
    "I don't know" sentence. `false_abstention_rate`: share of answerable questions answered so.

**Thresholds** (`{metric, min?, max?, pipeline?, dataset?}`) apply to every dataset x pipeline
matching the filters (`pipeline` is a pipeline's `name`). A threshold fails when the value is
below `min` / above `max`, or when the metric could not be measured there. `run_suite` writes
`results.json`, `report.md` and `pipelines.png` to the report directory; the CLI exits 1 when any
threshold fails.
"""

from ragkit.eval.suite.report import write_report
from ragkit.eval.suite.runner import run_suite
from ragkit.eval.suite.spec import (
    DatasetSpec,
    PairResult,
    PipelineSpec,
    Question,
    Suite,
    SuiteError,
    SuiteResult,
    ThresholdCheck,
    ThresholdSpec,
    answer_metrics,
    check_thresholds,
    is_retrieval_metric,
    load_questions,
    load_suite,
)

__all__ = [
    "DatasetSpec",
    "PairResult",
    "PipelineSpec",
    "Question",
    "Suite",
    "SuiteError",
    "SuiteResult",
    "ThresholdCheck",
    "ThresholdSpec",
    "answer_metrics",
    "check_thresholds",
    "is_retrieval_metric",
    "load_questions",
    "load_suite",
    "run_suite",
    "write_report",
]
