"""Readers for evaluation data: BEIR retrieval datasets and general QA JSONL files.

Every problem raises `DatasetError` (a ValueError) whose message starts with `file:line:`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .metrics import DatasetError, Qrels, _iter_lines, _read_beir_qrels_rows

__all__ = ["BeirDataset", "DatasetError", "QARow", "load_beir", "load_qa_jsonl"]

# How many offending qrels rows an "unknown id" error lists before summarising.
_MAX_LISTED = 5


@dataclass(frozen=True)
class BeirDataset:
    """A BEIR dataset: passages, questions, judgments, and answers when the queries carry them."""

    corpus: dict[str, dict[str, str]]  # doc_id -> {"title", "text"}
    queries: dict[str, str]  # query_id -> text
    qrels: Qrels
    answers: dict[str, list[str]] = field(default_factory=dict)  # only queries with "answers"


class QARow(BaseModel):
    """One QA / faithfulness example; fields beyond these are kept (see `model_extra`)."""

    # strict: a label of "1" or 1.5 is a data error, not something to coerce silently.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    id: str
    answer: str
    question: str | None = None
    context: str | None = None
    label: int | None = None
    reference: str | None = None
    answers: list[str] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _int_id_to_str(cls, value: Any) -> Any:
        # Numeric JSON ids are common and unambiguous; everything else must already be a str.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line."""
    if not path.is_file():
        raise DatasetError("file not found", path)
    for lineno, text in _iter_lines(path):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            message = f"invalid JSON ({exc.msg} at column {exc.colno})"
            raise DatasetError(message, path, lineno) from None
        if not isinstance(obj, dict):
            raise DatasetError(f"expected a JSON object, got {type(obj).__name__}", path, lineno)
        yield lineno, obj


def _get_id(obj: dict[str, Any], key: str, path: Path, lineno: int) -> str:
    if key not in obj:
        raise DatasetError(f"missing required field '{key}'", path, lineno)
    value = obj[key]
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"field '{key}' must be a non-empty string, got {value!r}", path, lineno)
    return value


def _get_str(
    obj: dict[str, Any], key: str, path: Path, lineno: int, default: str | None = None
) -> str:
    if key not in obj or obj[key] is None:
        if default is None:
            raise DatasetError(f"missing required field '{key}'", path, lineno)
        return default
    value = obj[key]
    if not isinstance(value, str):
        message = f"field '{key}' must be a string, got {type(value).__name__}"
        raise DatasetError(message, path, lineno)
    return value


def _check_duplicate(seen: dict[str, int], item_id: str, path: Path, lineno: int) -> None:
    if item_id in seen:
        message = f"duplicate id {item_id!r} (first on line {seen[item_id]})"
        raise DatasetError(message, path, lineno)
    seen[item_id] = lineno


def _load_corpus(path: Path) -> dict[str, dict[str, str]]:
    corpus: dict[str, dict[str, str]] = {}
    seen: dict[str, int] = {}
    for lineno, obj in _read_jsonl(path):
        doc_id = _get_id(obj, "_id", path, lineno)
        _check_duplicate(seen, doc_id, path, lineno)
        corpus[doc_id] = {
            "title": _get_str(obj, "title", path, lineno, default=""),
            "text": _get_str(obj, "text", path, lineno),
        }
    return corpus


def _load_queries(path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    queries: dict[str, str] = {}
    answers: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for lineno, obj in _read_jsonl(path):
        q_id = _get_id(obj, "_id", path, lineno)
        _check_duplicate(seen, q_id, path, lineno)
        queries[q_id] = _get_str(obj, "text", path, lineno)
        if obj.get("answers") is not None:
            value = obj["answers"]
            if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
                raise DatasetError("field 'answers' must be a list of strings", path, lineno)
            answers[q_id] = list(value)
    return queries, answers


def load_beir(directory: str | Path, split: str = "test", strict: bool = True) -> BeirDataset:
    """Read `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv` from a BEIR directory.

    A qrels row whose query or document is missing from the files would be scored as an
    unreachable target (or an unanswerable query). With `strict=True` (default) such rows raise
    a `DatasetError` listing the first few; with `strict=False` they are dropped with a warning.
    """
    root = Path(directory)
    corpus_path, queries_path = root / "corpus.jsonl", root / "queries.jsonl"
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise DatasetError(f"file not found (available splits: {available or 'none'})", qrels_path)

    corpus = _load_corpus(corpus_path)
    queries, answers = _load_queries(queries_path)
    rows = _read_beir_qrels_rows(qrels_path)
    if not rows:
        raise DatasetError("no relevance judgments", qrels_path)

    problems: list[tuple[int, str]] = []
    kept = []
    for row in rows:
        lineno, q_id, doc_id, _ = row
        if q_id not in queries:
            problems.append((lineno, f"query {q_id!r} not in {queries_path.name}"))
        elif doc_id not in corpus:
            problems.append((lineno, f"doc {doc_id!r} not in {corpus_path.name}"))
        else:
            kept.append(row)
    if problems:
        listed = "; ".join(f"line {n}: {msg}" for n, msg in problems[:_MAX_LISTED])
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        message = f"{len(problems)} qrels rows reference unknown ids: {listed}{more}"
        if strict:
            raise DatasetError(message, qrels_path, problems[0][0])
        warnings.warn(f"{qrels_path}: {message}; dropping them", stacklevel=2)
        if not kept:
            raise DatasetError("no relevance judgments left after dropping unknown ids", qrels_path)

    qrels = Qrels._from_rows(kept)
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, answers=answers)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "missing":
            parts.append(f"missing required field '{loc}'")
        else:
            parts.append(f"field '{loc}': {err['msg']}")
    return "; ".join(parts)


def load_qa_jsonl(path: str | Path) -> list[QARow]:
    """Read a QA JSONL file (`{id, answer, question?, context?, label?, reference?, answers?}`)."""
    path = Path(path)
    rows: list[QARow] = []
    seen: dict[str, int] = {}
    for lineno, obj in _read_jsonl(path):
        try:
            row = QARow.model_validate(obj)
        except ValidationError as exc:
            raise DatasetError(_describe(exc), path, lineno) from None
        _check_duplicate(seen, row.id, path, lineno)
        rows.append(row)
    return rows
