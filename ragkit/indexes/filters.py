"""Metadata filters: what a chunk can be filtered on.

`filterable_metadata` is the one flat view of a chunk's metadata that every backend filters on
(faiss and BM25 through the chunk store, chroma through its own metadata), so a filter means the
same thing everywhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from ragkit.errors import UserError

Scalar = str | int | float | bool

# Always present; they win over loader fields of the same name (a CSV column called `source`
# must not make a chunk look like it came from another file).
BUILTIN_FIELDS = ("source", "doc_id")
_INT64 = 2**63


def _scalar(value: Any) -> bool:
    if isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -_INT64 <= value < _INT64  # chroma and SQLite store 64-bit integers
    if isinstance(value, float):
        return math.isfinite(value)
    return False


def filterable_metadata(
    source: str, doc_id: str, document_metadata: Mapping[str, Any], chunk_metadata: Mapping[str, Any]
) -> dict[str, Scalar]:
    """Document fields, then chunk fields (a chunk's `page` beats its document's), then builtins.

    Only scalar values (str, int, float, bool) are filterable: lists and mappings (`pages`,
    `headings`) and nulls are left out, because chroma metadata cannot hold them either.
    """
    flat: dict[str, Scalar] = {}
    for metadata in (document_metadata, chunk_metadata):
        flat.update({str(k): v for k, v in metadata.items() if _scalar(v)})
    flat["source"] = source
    flat["doc_id"] = doc_id
    return flat


# --- the filter language ------------------------------------------------------------------------
#
# Semantics are chroma 1.5.9's, established empirically (tests/test_filters.py re-checks them on a
# real chroma collection), so faiss, BM25 and chroma select the same chunks:
#
# * Values have three kinds: text, number (int and float alike: 3 == 3.0), and bool. Bool is not a
#   number (True != 1) and text is never converted ("3" != 3).
# * $eq/$in match a chunk whose field exists with an equal value of the same kind.
# * $ne/$nin are exactly "not $eq"/"not $in": they also match chunks without the field, or with a
#   value of another kind ({"page": {"$ne": 3}} matches a chunk that has no page).
# * $gt/$gte/$lt/$lte need a number operand and match only numeric values (never bools or text):
#   chroma rejects text and bool operands, so they are rejected here too.
# * Integers are compared exactly (2**53 + 1 != float(2**53)); they must fit in 64 bits and floats
#   must be finite (chroma rejects the others).
#
# What chroma cannot express directly is translated, not refused: several fields in one mapping
# (implicit $and), several operators on one field, $and/$or with one clause, $in/$nin lists mixing
# kinds (chroma wants one type per list: ["a", 3] becomes an $or of two $in clauses), and
# fractional float operands, which chroma compares with integer values after truncating them
# (see `_chroma_leaf`; chroma alone would say 2 == 2.5).

# Limits on what a filter may be: a filter comes from users and from network clients, and
# parsing, SQL generation and chroma translation all walk it recursively.
MAX_DEPTH = 32  # nested containers ($and/$or lists, operator mappings)
MAX_TERMS = 10_000  # mapping entries + list items, all levels together
MAX_JSON_CHARS = 1_000_000

FIELD_OPERATORS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte")
LOGICAL_OPERATORS = ("$and", "$or")
_COMPARISONS = {"$gt", "$gte", "$lt", "$lte"}


class FilterError(UserError, ValueError):
    """An invalid filter; the message names the path of the offending part and what is wrong."""


def value_kind(value: Any) -> str:
    """'bool', 'number' or 'text': values of different kinds never compare equal."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "text"


def _show(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class Condition:
    """`field <op> value`: one leaf of a filter."""

    field: str
    op: str
    value: Scalar | tuple[Scalar, ...]

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        present = self.field in metadata
        actual = metadata.get(self.field)
        if self.op in ("$ne", "$nin"):
            return not Condition(self.field, "$eq" if self.op == "$ne" else "$in", self.value).matches(metadata)
        if not present or not _scalar(actual):
            return False
        if self.op == "$eq":
            return _same(cast(Scalar, actual), cast(Scalar, self.value))
        if self.op == "$in":
            return any(_same(cast(Scalar, actual), v) for v in cast(tuple[Scalar, ...], self.value))
        if value_kind(actual) != "number":
            return False
        operand = self.value
        if self.op == "$gt":
            return actual > operand  # type: ignore[operator]
        if self.op == "$gte":
            return actual >= operand  # type: ignore[operator]
        if self.op == "$lt":
            return actual < operand  # type: ignore[operator]
        return actual <= operand  # type: ignore[operator]

    def to_chroma(self) -> dict[str, Any]:
        if self.op not in ("$in", "$nin"):
            return _chroma_leaf(self.field, self.op, self.value)  # type: ignore[arg-type]
        # chroma wants one type per list (it rejects [3, 1.5] and ["a", 3]): split by type, and
        # give each fractional float its own corrected clause (see _chroma_leaf).
        single = "$eq" if self.op == "$in" else "$ne"
        groups: dict[type, list[Scalar]] = {}
        clauses = []
        for v in self.value:  # type: ignore[union-attr]
            if _fractional(v):
                clauses.append(_chroma_leaf(self.field, single, v))
            else:
                groups.setdefault(type(v), []).append(v)
        clauses = [{self.field: {self.op: values}} for values in groups.values()] + clauses
        if len(clauses) == 1:
            return clauses[0]
        return {"$or" if self.op == "$in" else "$and": clauses}

    def to_json(self) -> Any:
        return {self.field: {self.op: list(self.value) if isinstance(self.value, tuple) else self.value}}


def _fractional(value: Any) -> bool:
    return isinstance(value, float) and not value.is_integer()


def _chroma_leaf(field: str, op: str, x: Scalar) -> dict[str, Any]:
    """`{field: {op: x}}` for chroma, corrected for how chroma 1.5.9 compares a fractional float
    operand with *integer* values: against the operand truncated toward zero (measured:
    {"$in": [2.5]} matches the int 2, {"$lt": 2.5} misses it, {"$eq": -0.5} matches 0), while
    float values compare exactly. Clauses with integer operands (exact for both) add or remove
    the one integer that truncation gets wrong, so chroma selects what `matches` selects."""
    clause = {field: {op: x}}
    if not _fractional(x):
        return clause
    low, high, truncated = math.floor(x), math.ceil(x), int(x)  # type: ignore[arg-type]
    assert isinstance(x, float)

    def exact(o: str, v: int) -> dict[str, Any]:
        return {field: {o: v}}

    if op == "$eq":  # chroma also matches the int trunc(x)
        return {"$and": [clause, exact("$ne", truncated)]}
    if op == "$ne":
        return {"$or": [clause, exact("$eq", truncated)]}
    # ints: v > x <=> v >= ceil(x); v < x <=> v <= floor(x). trunc is floor above 0, ceil below.
    if op == "$gt":
        return clause if x > 0 else {"$or": [clause, exact("$eq", high)]}
    if op == "$gte":
        return {"$and": [clause, exact("$ne", low)]} if x > 0 else clause
    if op == "$lt":
        return {"$or": [clause, exact("$eq", low)]} if x > 0 else clause
    return clause if x > 0 else {"$and": [clause, exact("$ne", high)]}  # $lte


def _same(actual: Scalar, expected: Scalar) -> bool:
    return value_kind(actual) == value_kind(expected) and actual == expected


@dataclass(frozen=True)
class Logical:
    """`$and` / `$or` over clauses (never empty)."""

    op: str
    clauses: tuple[Node, ...]

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        if self.op == "$and":
            return all(c.matches(metadata) for c in self.clauses)
        return any(c.matches(metadata) for c in self.clauses)

    def to_chroma(self) -> dict[str, Any]:
        if len(self.clauses) == 1:  # chroma wants at least two clauses
            return self.clauses[0].to_chroma()
        return {self.op: [c.to_chroma() for c in self.clauses]}

    def to_json(self) -> Any:
        return {self.op: [c.to_json() for c in self.clauses]}


Node = Condition | Logical


class MetadataFilter:
    """A parsed, validated metadata filter (Mongo-like syntax, chroma's semantics).

        MetadataFilter.parse({"source": "a.md"})                          # implicit $eq
        MetadataFilter.parse({"page": {"$gte": 2, "$lt": 5}, "lang": "en"})  # implicit $and
        MetadataFilter.parse('{"$or": [{"year": {"$gt": 2020}}, {"tag": {"$in": ["x", "y"]}}]}')

    Fields are those of `filterable_metadata`: document and chunk metadata scalars plus `source`
    and `doc_id`. An empty filter `{}` matches every chunk.
    """

    def __init__(self, root: Node | None) -> None:
        self.root = root

    @classmethod
    def parse(cls, spec: MetadataFilter | Mapping[str, Any] | str) -> MetadataFilter:
        """From a mapping, a JSON object string, or an existing filter. Raises `FilterError`."""
        if isinstance(spec, MetadataFilter):
            return spec
        if isinstance(spec, str):
            if len(spec) > MAX_JSON_CHARS:
                raise FilterError(f"filter is {len(spec):,} characters long; the limit is {MAX_JSON_CHARS:,}")
            try:
                spec = json.loads(spec)
            except json.JSONDecodeError as exc:
                raise FilterError(f"filter is not valid JSON: {exc}") from None
            except RecursionError:
                raise FilterError(f"filter is nested too deeply (the limit is {MAX_DEPTH} levels)") from None
        _check_size(spec)
        if not isinstance(spec, Mapping):
            raise FilterError(f"a filter must be a JSON object (mapping), got {_show(spec)}")
        if not spec:
            return cls(None)
        return cls(_parse_mapping(spec, ""))

    @property
    def matches_all(self) -> bool:
        return self.root is None

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a chunk with this flat metadata (`filterable_metadata`) passes: the reference
        semantics that the store's SQL and chroma's `where` reproduce."""
        return self.root is None or self.root.matches(metadata)

    def to_chroma_where(self) -> dict[str, Any] | None:
        """The equivalent chroma `where` clause (None for the empty filter, which matches all)."""
        return None if self.root is None else self.root.to_chroma()

    def key(self) -> str:
        """A canonical string for caching: equal for filters written the same way."""
        return json.dumps(None if self.root is None else self.root.to_json(), sort_keys=True)

    def fields(self) -> set[str]:
        """Every field the filter mentions."""
        found: set[str] = set()
        stack: list[Node] = [] if self.root is None else [self.root]
        while stack:
            node = stack.pop()
            if isinstance(node, Condition):
                found.add(node.field)
            else:
                stack.extend(node.clauses)
        return found

    def __repr__(self) -> str:
        return f"MetadataFilter({self.key()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MetadataFilter) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())


def _check_size(spec: Any) -> None:
    """Refuse a filter deeper than MAX_DEPTH or with more than MAX_TERMS parts, walking it without
    recursion (a hostile filter nested thousands of levels deep must not raise RecursionError)."""
    terms = 0
    stack: list[tuple[Any, int]] = [(spec, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        if depth > MAX_DEPTH:
            raise FilterError(f"filter is nested too deeply (the limit is {MAX_DEPTH} levels)")
        terms += len(children)
        if terms > MAX_TERMS:
            raise FilterError(f"filter has more than {MAX_TERMS:,} conditions and values (the limit)")
        stack.extend((child, depth + 1) for child in children)


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _parse_mapping(spec: Mapping[str, Any], path: str) -> Node:
    clauses: list[Node] = []
    for key, value in spec.items():
        if not isinstance(key, str) or not key:
            raise FilterError(f"{path or 'filter'}: field names must be non-empty strings, got {_show(key)}")
        if key in LOGICAL_OPERATORS:
            clauses.append(_parse_logical(key, value, _join(path, key)))
        elif key.startswith("$"):
            raise FilterError(
                f"{_join(path, key)}: unknown operator {key} at this level; "
                f"combine clauses with {' or '.join(LOGICAL_OPERATORS)}, or compare a field with "
                f"{{\"field\": {{\"$op\": value}}}} ({', '.join(FIELD_OPERATORS)})"
            )
        else:
            clauses.extend(_parse_field(key, value, _join(path, key)))
    return clauses[0] if len(clauses) == 1 else Logical("$and", tuple(clauses))


def _parse_logical(op: str, value: Any, path: str) -> Node:
    if not isinstance(value, list | tuple):
        raise FilterError(f"{path}: {op} needs a list of filters, got {_show(value)}")
    if not value:
        raise FilterError(f"{path}: {op} needs at least one filter, got an empty list")
    clauses = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            raise FilterError(f"{where}: each {op} item must be a filter object, got {_show(item)}")
        if not item:
            raise FilterError(f"{where}: empty filter object inside {op}")
        clauses.append(_parse_mapping(item, where))
    return Logical(op, tuple(clauses))


def _parse_field(field: str, value: Any, path: str) -> list[Condition]:
    if not isinstance(value, Mapping):
        return [Condition(field, "$eq", _operand("$eq", value, path))]
    if not value:
        raise FilterError(f"{path}: empty operator object; use e.g. {{\"$eq\": value}}")
    conditions = []
    for op, operand in value.items():
        if op not in FIELD_OPERATORS:
            hint = (
                f"{op} is not supported" if isinstance(op, str) and op.startswith("$")
                else f"expected an operator, got key {_show(op)} (nested objects are not filterable)"
            )
            raise FilterError(f"{path}: {hint}; operators are {', '.join(FIELD_OPERATORS)}")
        conditions.append(Condition(field, op, _operand(op, operand, path)))
    return conditions


def _operand(op: str, value: Any, path: str) -> Scalar | tuple[Scalar, ...]:
    if op in ("$in", "$nin"):
        if not isinstance(value, list | tuple):
            raise FilterError(f"{path}: {op} needs a list of values, got {_show(value)}")
        if not value:
            raise FilterError(f"{path}: {op} needs at least one value, got an empty list")
        return tuple(_scalar_operand(op, v, f"{path}") for v in value)
    scalar = _scalar_operand(op, value, path)
    if op in _COMPARISONS and value_kind(scalar) != "number":
        raise FilterError(f"{path}: {op} needs a number, got {_show(value)} (only numbers are ordered)")
    return scalar


def _scalar_operand(op: str, value: Any, path: str) -> Scalar:
    if value is None:
        raise FilterError(
            f"{path}: {op} got null; null values are not stored as filterable fields "
            f"(a missing field matches $ne/$nin)"
        )
    if op == "$eq" and isinstance(value, list | tuple):
        raise FilterError(f"{path}: a list is not a filterable value; to match any of several use {{\"$in\": {_show(value)}}}")
    if isinstance(value, list | tuple | Mapping) or not isinstance(value, str | int | float):
        raise FilterError(f"{path}: {op} needs a string, number or boolean, got {_show(value)}")
    if not _scalar(value):
        raise FilterError(f"{path}: {op} got {_show(value)}; numbers must be finite and integers fit in 64 bits")
    return value
