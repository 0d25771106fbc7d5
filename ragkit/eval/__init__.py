"""Evaluation: retrieval metrics (ranx), evaluation dataset readers, answer metrics, suites."""

from .datasets import BeirDataset, QARow, load_beir, load_qa_jsonl
from .metrics import METRICS, DatasetError, Qrels, Run, evaluate, evaluate_per_query, parse_metric

__all__ = [
    "METRICS",
    "BeirDataset",
    "DatasetError",
    "QARow",
    "Qrels",
    "Run",
    "evaluate",
    "evaluate_per_query",
    "load_beir",
    "load_qa_jsonl",
    "parse_metric",
]
