"""Evaluation: retrieval metrics (ranx-identical) and evaluation dataset readers."""

from .datasets import BeirDataset, QARow, load_beir, load_qa_jsonl
from .metrics import (
    METRICS,
    DatasetError,
    Qrels,
    Run,
    average_precision,
    evaluate,
    evaluate_per_query,
    hit_rate,
    hits,
    ndcg,
    ndcg_burges,
    parse_metric,
    precision,
    recall,
    reciprocal_rank,
)

__all__ = [
    "METRICS",
    "BeirDataset",
    "DatasetError",
    "QARow",
    "Qrels",
    "Run",
    "average_precision",
    "evaluate",
    "evaluate_per_query",
    "hit_rate",
    "hits",
    "load_beir",
    "load_qa_jsonl",
    "ndcg",
    "ndcg_burges",
    "parse_metric",
    "precision",
    "recall",
    "reciprocal_rank",
]
