"""Retrieval metrics: ragkit's `Qrels` / `Run` (reading and validating TREC and BEIR files, with
errors that name the file and line) scored by ranx itself (extra `ragkit[eval]`).

Definitions (ranx's, `ranx/metrics/*.py`):

- A document is relevant iff its qrels grade is >= 1. Grade 0 (and negative grades) and
  unjudged documents are not relevant. `R` = number of relevant documents of the query.
- The run is ranked by score descending (ranx's tie order: numba's argsort over the run's
  insertion order).
- `@k` keeps the top k ranked documents; a name without `@k` keeps the whole run.
- hits@k      = number of relevant documents in the top k (a count; this is ranx's "hits",
                NOT an alias of hit_rate).
- hit_rate@k  = 1 if any relevant document is in the top k else 0 (trec_eval "success").
- precision@k = hits@k / k, with k = len(run) when no cutoff is given (so a run shorter
                than k is penalised, as in ranx).
- recall@k    = hits@k / R.
- mrr@k       = 1 / rank of the first relevant document in the top k.
- map@k       = sum of precision@i over the ranks i <= k holding a relevant document, / R
                (R, not min(R, k), as in ranx).
- ndcg@k      = DCG@k / IDCG@k with gain = grade (Järvelin & Kekäläinen, ranx's "ndcg"),
                discount log2(rank + 1); IDCG uses the qrels grades sorted descending.
- ndcg_burges@k: the same with gain = 2**grade - 1 (ranx's "ndcg_burges").
Every metric is 0 for a query with R == 0 or with no run entry.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.errors import UserError

__all__ = [
    "METRICS",
    "DatasetError",
    "Qrels",
    "Run",
    "evaluate",
    "evaluate_per_query",
    "parse_metric",
]


class DatasetError(UserError, ValueError):
    """A malformed evaluation file (qrels, run, dataset); the message names file and line."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(where + message)


# ---------------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------------


class Qrels:
    """Relevance judgments: query_id -> {doc_id: graded relevance (int)}."""

    def __init__(self, qrels: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self._qrels: dict[str, dict[str, int]] = {}
        for q_id, docs in (qrels or {}).items():
            judged: dict[str, int] = {}
            for doc_id, grade in docs.items():
                if not _is_int(grade):
                    raise DatasetError(
                        f"qrels grade for ({q_id!r}, {doc_id!r}) must be an int, got {grade!r}"
                    )
                judged[str(doc_id)] = operator.index(grade)
            self._qrels[str(q_id)] = judged

    @classmethod
    def from_dict(cls, qrels: Mapping[str, Mapping[str, int]]) -> Qrels:
        """Build from {query_id: {doc_id: grade}}."""
        return cls(qrels)

    @classmethod
    def from_trec(cls, path: str | Path) -> Qrels:
        """Read a TREC qrels file: `qid iteration docid grade`, whitespace separated."""
        return cls._from_rows(_read_trec_qrels_rows(path))

    @classmethod
    def from_beir_tsv(cls, path: str | Path) -> Qrels:
        """Read a BEIR qrels tsv: header `query-id<TAB>corpus-id<TAB>score`, then rows."""
        return cls._from_rows(_read_beir_qrels_rows(path))

    @classmethod
    def _from_rows(cls, rows: Iterable[tuple[int, str, str, int]]) -> Qrels:
        qrels: dict[str, dict[str, int]] = {}
        for _, q_id, doc_id, grade in rows:
            qrels.setdefault(q_id, {})[doc_id] = grade
        return cls(qrels)

    def to_dict(self) -> dict[str, dict[str, int]]:
        """A deep copy as plain dicts."""
        return {q: dict(d) for q, d in self._qrels.items()}

    def query_ids(self) -> list[str]:
        """Query ids in insertion order."""
        return list(self._qrels)

    def __getitem__(self, q_id: str) -> dict[str, int]:
        return dict(self._qrels[q_id])

    def get(self, q_id: str) -> dict[str, int] | None:
        docs = self._qrels.get(q_id)
        return None if docs is None else dict(docs)

    def __contains__(self, q_id: object) -> bool:
        return q_id in self._qrels

    def __iter__(self) -> Iterator[str]:
        return iter(self._qrels)

    def __len__(self) -> int:
        return len(self._qrels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Qrels) and self._qrels == other._qrels

    def __repr__(self) -> str:
        n_judged = sum(len(d) for d in self._qrels.values())
        return f"Qrels({len(self._qrels)} queries, {n_judged} judgments)"


class Run:
    """Retrieval scores: query_id -> {doc_id: score (float)}; ranking is score descending.

    Insertion order of a query's documents matters only for tied scores (see module doc).
    """

    def __init__(self, run: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self._run: dict[str, dict[str, float]] = {}
        for q_id, docs in (run or {}).items():
            scored: dict[str, float] = {}
            for doc_id, score in docs.items():
                value = float(score)
                # NaN has no place in a ranking: it would make the order undefined.
                if math.isnan(value):
                    raise DatasetError(f"run score for ({q_id!r}, {doc_id!r}) is NaN")
                scored[str(doc_id)] = value
            self._run[str(q_id)] = scored
        
    @classmethod
    def from_dict(cls, run: Mapping[str, Mapping[str, float]]) -> Run:
        """Build from {query_id: {doc_id: score}}."""
        return cls(run)

    @classmethod
    def from_trec(cls, path: str | Path) -> Run:
        """Read a TREC run file: `qid Q0 docid rank score tag`.

        The rank column is ignored (ranking comes from the scores, as in ranx and trec_eval);
        file order is the insertion order, so ties resolve like `ranx.Run.from_file`.
        """
        run: dict[str, dict[str, float]] = {}
        for lineno, cols in _split_lines(path):
            if len(cols) != 6:
                raise DatasetError(
                    f"expected 6 columns 'qid Q0 docid rank score tag', got {len(cols)}",
                    path,
                    lineno,
                )
            q_id, _, doc_id, _, score_text, _ = cols
            try:
                score = float(score_text)
            except ValueError:
                raise DatasetError(f"score {score_text!r} is not a number", path, lineno) from None
            if math.isnan(score):
                raise DatasetError("score is NaN", path, lineno)
            docs = run.setdefault(q_id, {})
            if doc_id in docs:
                raise DatasetError(
                    f"duplicate document {doc_id!r} for query {q_id!r}", path, lineno
                )
            docs[doc_id] = score
        return cls(run)

    def to_trec(self, path: str | Path, tag: str = "ragkit") -> None:
        """Write `qid Q0 docid rank score tag` lines, queries sorted, documents ranked.

        Scores are written with `repr` so reading the file back gives the same floats. Readers
        rank by score, not by the rank column, so the order of tied documents can change
        on reading back (ranx's own save/load does the same): file order is the new
        insertion order.
        """
        if not tag or any(c.isspace() for c in tag):
            raise DatasetError(f"run tag must be non-empty without whitespace, got {tag!r}")
        lines: list[str] = []
        for q_id in sorted(self._run):
            _check_trec_token(q_id, "query id")
            scores = self._run[q_id]
            for rank, doc_id in enumerate(sorted(scores, key=lambda d: -scores[d]), start=1):
                _check_trec_token(doc_id, "doc id")
                lines.append(f"{q_id} Q0 {doc_id} {rank} {scores[doc_id]!r} {tag}\n")
        Path(path).write_text("".join(lines), encoding="utf-8")

    def to_dict(self) -> dict[str, dict[str, float]]:
        """A deep copy as plain dicts (insertion order kept)."""
        return {q: dict(d) for q, d in self._run.items()}

    def query_ids(self) -> list[str]:
        """Query ids in insertion order."""
        return list(self._run)

    def __getitem__(self, q_id: str) -> dict[str, float]:
        return dict(self._run[q_id])

    def get(self, q_id: str) -> dict[str, float] | None:
        docs = self._run.get(q_id)
        return None if docs is None else dict(docs)

    def __contains__(self, q_id: object) -> bool:
        return q_id in self._run

    def __iter__(self) -> Iterator[str]:
        return iter(self._run)

    def __len__(self) -> int:
        return len(self._run)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and self._run == other._run

    def __repr__(self) -> str:
        n_scored = sum(len(d) for d in self._run.values())
        return f"Run({len(self._run)} queries, {n_scored} scored documents)"


def _is_int(value: Any) -> bool:
    try:
        operator.index(value)  # int, bool, numpy integers; not floats or strings
    except TypeError:
        return False
    return True


def _check_trec_token(value: str, what: str) -> None:
    # TREC files are whitespace separated: an id with a space would shift every column.
    if not value or any(c.isspace() for c in value):
        raise DatasetError(
            f"{what} {value!r} cannot be written to a TREC file (empty or has whitespace)"
        )


# ---------------------------------------------------------------------------------------------
# Qrels file parsing (rows keep their line number so callers can report unknown ids by line)
# ---------------------------------------------------------------------------------------------


def _iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text) for non-blank lines, decoding line by line."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DatasetError(f"cannot open file: {exc.strerror}", path) from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"not valid UTF-8 ({exc.reason})", path, lineno) from None
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            text = text.rstrip("\r\n")
            if text.strip():
                yield lineno, text


def _split_lines(path: str | Path, sep: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, columns) for non-blank lines; `sep=None` splits on whitespace."""
    for lineno, text in _iter_lines(path):
        yield lineno, text.split(sep)


def _parse_grade(text: str, path: str | Path, lineno: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"relevance {text!r} is not an integer", path, lineno) from None


def _read_trec_qrels_rows(path: str | Path) -> list[tuple[int, str, str, int]]:
    rows: list[tuple[int, str, str, int]] = []
    seen: dict[tuple[str, str], int] = {}
    for lineno, cols in _split_lines(path):
        if len(cols) != 4:
            raise DatasetError(
                f"expected 4 columns 'qid iteration docid relevance', got {len(cols)}", path, lineno
            )
        q_id, _, doc_id, grade_text = cols
        _add_row(rows, seen, (lineno, q_id, doc_id, _parse_grade(grade_text, path, lineno)), path)
    return rows


_BEIR_HEADER = ["query-id", "corpus-id", "score"]


def _read_beir_qrels_rows(path: str | Path) -> list[tuple[int, str, str, int]]:
    rows: list[tuple[int, str, str, int]] = []
    seen: dict[tuple[str, str], int] = {}
    first = True
    for lineno, cols in _split_lines(path, sep="\t"):
        cols = [c.strip() for c in cols]
        if first:
            first = False
            # BEIR files start with a header; accept files without it too.
            if [c.lower() for c in cols] == _BEIR_HEADER:
                continue
        if len(cols) != 3:
            raise DatasetError(
                f"expected 3 tab-separated columns 'query-id corpus-id score', got {len(cols)}",
                path,
                lineno,
            )
        q_id, doc_id, grade_text = cols
        if not q_id or not doc_id:
            raise DatasetError("empty query-id or corpus-id", path, lineno)
        _add_row(rows, seen, (lineno, q_id, doc_id, _parse_grade(grade_text, path, lineno)), path)
    return rows


def _add_row(
    rows: list[tuple[int, str, str, int]],
    seen: dict[tuple[str, str], int],
    row: tuple[int, str, str, int],
    path: str | Path,
) -> None:
    lineno, q_id, doc_id, _ = row
    key = (q_id, doc_id)
    if key in seen:
        # ranx silently keeps the last grade; a repeated judgment is more likely a bad merge.
        raise DatasetError(
            f"duplicate judgment for query {q_id!r}, doc {doc_id!r} (first on line {seen[key]})",
            path,
            lineno,
        )
    seen[key] = lineno
    rows.append(row)


# ---------------------------------------------------------------------------------------------
# Metrics: ranx itself (extra `ragkit[eval]`)
# ---------------------------------------------------------------------------------------------

# The metric names ranx computes and ragkit accepts; the definitions are ranx's (module docstring).
METRICS = ("hits", "hit_rate", "precision", "recall", "mrr", "map", "ndcg", "ndcg_burges")
RANX_MISSING = "retrieval metrics need ranx: pip install 'ragkit[eval]'"


_METRIC_NAME = re.compile(r"^([a-z_]+)(?:@([0-9]+))?$")


def parse_metric(name: str) -> tuple[str, int | None]:
    """Split "ndcg@10" into ("ndcg", 10); a name without "@k" means no cutoff (k=None)."""
    match = _METRIC_NAME.match(name)
    if match is None or match.group(1) not in METRICS:
        raise ValueError(
            f"unknown metric {name!r}; expected one of {sorted(METRICS)} optionally followed by "
            "'@k' (note: 'hits@k' is the count of relevant documents, 'hit_rate@k' is 0/1)"
        )
    k = None if match.group(2) is None else int(match.group(2))
    if k == 0:
        raise ValueError(f"metric {name!r}: k must be >= 1 (omit '@k' for no cutoff)")
    return match.group(1), k


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def _ranx() -> Any:
    try:
        import ranx
    except ImportError:
        raise UserError(RANX_MISSING) from None
    return ranx


def evaluate_per_query(qrels: Qrels, run: Run, metrics: list[str] | str) -> dict[str, dict[str, float]]:
    """{metric: {query_id: score}} for every query in `qrels` (missing from the run -> 0), by ranx.

    Run queries absent from qrels are ignored (ranx's `make_comparable=True`). ragkit's own
    `Qrels`/`Run` hold and validate the data (line-numbered file errors); the scoring is ranx's,
    which costs ~3 s of import and, once per machine, ~25 s of numba compilation (cached), measured
    against ragkit's former hand port of its tie-breaking: one source of truth is worth it.
    """
    ranx = _ranx()
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    for name in names:
        parse_metric(name)
    judged = {q: dict(docs) for q, docs in qrels.to_dict().items()}
    ranked = {q: dict(run.get(q) or {}) for q in judged}
    for q, docs in ranked.items():
        if not docs:  # ranx needs at least one document per query; a zero-score outsider ranks nothing
            docs["\x00no-result"] = 0.0
    scored = ranx.Run(ranked)
    ranx.evaluate(ranx.Qrels(judged), scored, names, make_comparable=True)
    return {name: {q: float(scored.scores[name][q]) for q in judged} for name in names}


def evaluate(qrels: Qrels, run: Run, metrics: list[str] | str) -> dict[str, float]:
    """{metric: mean over the qrels' queries}; a query with no run entry scores 0."""
    if len(qrels) == 0:
        raise DatasetError("qrels has no queries: nothing to average over")
    per_query = evaluate_per_query(qrels, run, metrics)
    return {name: float(np.mean(list(scores.values()))) for name, scores in per_query.items()}
