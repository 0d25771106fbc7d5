"""Answer-quality metrics: does a generated answer match the reference, and was the right context used?

Text metrics (SQuAD v1.1 conventions), each taking the prediction and a list of acceptable
references and returning the best score over the references (0.0 when there is none):

- `normalize_answer(s)`: lowercase; drop punctuation (so "5,268" == "5268" and "Chang'e" ==
  "change"); drop the articles "a", "an", "the"; collapse whitespace. Citation markers such as
  "[1]" or "[1, 3]" are removed first (`strip_citations`): they are not part of the answer.
- `exact_match`: 1.0 if the normalised prediction equals a normalised reference, else 0.0.
- `token_f1`: harmonic mean of token precision and recall between the normalised prediction
  and a reference (bag of tokens, counted with multiplicity, as in the SQuAD script). Two
  empty strings score 1.0; one empty string scores 0.0.
- `containment`: 1.0 if a reference occurs inside the prediction as a contiguous run of
  normalised tokens ("1977" is contained in "It launched on 5 September 1977."). A reference may
  also be a list of strings (a keyword set): it is contained when every member is.
- `keyword_recall`: the fraction of keywords contained in the prediction (partial credit).

Context metrics compare the sources of the retrieved chunks, in rank order, with the expected
source(s) of the question (file paths or document ids; compared as given, so normalise first):

- `context_precision(retrieved, expected, k)`: the fraction of the top-k retrieved chunks whose
  source is an expected source (k = all retrieved when None). The denominator is the number of
  chunks actually retrieved within the cutoff, so a short list is not penalised; no chunk at all
  scores 0.0.
- `context_recall(retrieved, expected, k)`: the fraction of distinct expected sources that occur
  among the top-k retrieved chunks.

Both raise `ValueError` when `expected` is empty: for an unanswerable question neither is defined
(score abstention instead, see `is_abstention`).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

__all__ = [
    "containment",
    "context_precision",
    "context_recall",
    "exact_match",
    "is_abstention",
    "keyword_recall",
    "normalize_answer",
    "strip_citations",
    "token_f1",
]

_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
# string.punctuation is ASCII only; typographic quotes and dashes are punctuation too.
_PUNCTUATION = frozenset(string.punctuation) | frozenset("‘’“”–—…«»·")

Reference = str | Sequence[str]


def strip_citations(text: str) -> str:
    """`text` without citation markers ("[1]", "[2, 3]") and the whitespace before them."""
    return _CITATION.sub("", text).strip()


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, no punctuation, no articles, single spaces (citations removed)."""
    text = strip_citations(text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def _strings(references: Sequence[str]) -> list[str]:
    if isinstance(references, str):
        raise TypeError("references must be a list of strings, not a single string")
    return [r for r in references if r is not None]


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised reference, else 0.0."""
    pred = normalize_answer(prediction)
    return max((float(pred == normalize_answer(ref)) for ref in _strings(references)), default=0.0)


def _f1(pred: list[str], ref: list[str]) -> float:
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """Best token-level F1 (SQuAD) of the prediction against any reference."""
    pred = _tokens(prediction)
    return max((_f1(pred, _tokens(ref)) for ref in _strings(references)), default=0.0)


def _contains(haystack: list[str], needle: list[str]) -> bool:
    if not needle:
        return False  # an empty reference (e.g. only punctuation) says nothing
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def containment(prediction: str, references: Sequence[Reference]) -> float:
    """1.0 if any reference is contained in the prediction (as a run of normalised tokens).

    A reference that is a list of strings (a keyword set) counts as contained only when every
    one of its members is.
    """
    if isinstance(references, str):
        raise TypeError("references must be a list, not a single string")
    pred = _tokens(prediction)
    for ref in references:
        if ref is None:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        if parts and all(_contains(pred, _tokens(p)) for p in parts):
            return 1.0
    return 0.0


def keyword_recall(prediction: str, keywords: Sequence[str]) -> float:
    """Fraction of `keywords` contained in the prediction (0.0 when there are none)."""
    words = _strings(keywords)
    if not words:
        return 0.0
    pred = _tokens(prediction)
    return sum(_contains(pred, _tokens(k)) for k in words) / len(words)


def is_abstention(prediction: str, no_answer: str | None = None) -> bool:
    """Whether the answer is the "I don't know" sentence (`ragkit.generation.prompt.NO_ANSWER`),
    compared after normalisation (so punctuation, case and citation markers do not matter)."""
    if no_answer is None:
        from ragkit.generation.prompt import NO_ANSWER

        no_answer = NO_ANSWER
    return normalize_answer(prediction) == normalize_answer(no_answer)


def _top(retrieved: Sequence[str], k: int | None) -> list[str]:
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1 (or None for all), got {k}")
    return list(retrieved[:k] if k is not None else retrieved)


def _expected(expected: Sequence[str]) -> set[str]:
    if isinstance(expected, str):
        raise TypeError("expected must be a list of sources, not a single string")
    wanted = {e for e in expected if e}
    if not wanted:
        raise ValueError("no expected source: context precision/recall are undefined")
    return wanted


def context_precision(retrieved: Sequence[str], expected: Sequence[str], k: int | None = None) -> float:
    """Fraction of the top-k retrieved chunks (given by their sources, ranked) that come from an
    expected source. 0.0 when nothing was retrieved."""
    wanted = _expected(expected)
    top = _top(retrieved, k)
    if not top:
        return 0.0
    return sum(source in wanted for source in top) / len(top)


def context_recall(retrieved: Sequence[str], expected: Sequence[str], k: int | None = None) -> float:
    """Fraction of the distinct expected sources that appear among the top-k retrieved chunks."""
    wanted = _expected(expected)
    found = set(_top(retrieved, k)) & wanted
    return len(found) / len(wanted)
