"""Turn `[n]` markers in generated text into checked `Citation`s.

Context block `n` (1-based) is `hits[n-1]`. Accepted marker forms: `[2]`, `[1, 3]`, `[1][2]`,
`[1-3]` (also with an en/em dash, as models often write). Only digits, commas, dashes and spaces
may appear between the brackets, so `[a]`, `[1a]`, `[^1]` are untouched; a bracket directly
followed by `(` is a markdown link (`[1](url)`) and is untouched too.

A number that is not a provided block is a hallucinated citation: it is removed from the text and
flagged on the trace, so a user never sees a citation that points nowhere.

Readers see citations numbered 1, 2, 3... in order of first appearance, whichever context blocks
they are: a model citing blocks 1 and 3 shows "[1]" and "[2]", and `Citation.block` keeps the
block number (hits[block - 1]). `CitationNumbering` is that mapping; a streamed answer is
renumbered as it arrives by `StreamRenumberer`, with the same numbers as the final text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragkit.generation import Generated
from ragkit.generation.prompt import NO_ANSWER
from ragkit.schema import Citation, Hit, Trace

_ITEM = r"\d+(?:\s*[-\u2013\u2014]\s*\d+)?"
_MARKER = re.compile(rf"\[\s*(?P<body>{_ITEM}(?:\s*,\s*{_ITEM})*)\s*\](?!\()")
_RANGE_SPLIT = re.compile(r"\s*[-\u2013\u2014]\s*")


@dataclass(frozen=True)
class _Item:
    """One element of a marker: a single number (lo == hi) or an inclusive range."""

    lo: int
    hi: int

    def render(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


def _parse_item(raw: str) -> _Item:
    parts = _RANGE_SPLIT.split(raw.strip())
    lo = int(parts[0])
    hi = int(parts[-1])
    # A reversed range ("[3-1]") still names the same blocks; normalise instead of dropping it.
    return _Item(min(lo, hi), max(lo, hi))


def _split(item: _Item, count: int) -> tuple[_Item | None, list[_Item]]:
    """The part of `item` inside 1..count, and the parts outside it (ranges are never expanded,
    so a marker like `[1-999999999]` costs nothing)."""
    inside = None
    lo, hi = max(item.lo, 1), min(item.hi, count)
    if lo <= hi:
        inside = _Item(lo, hi)
    outside = []
    if item.lo < 1:
        outside.append(_Item(item.lo, min(item.hi, 0)))
    if item.hi > count:
        outside.append(_Item(max(item.lo, count + 1), item.hi))
    return inside, outside


class CitationNumbering:
    """Display numbers 1, 2, 3... for context blocks, in the order they are first cited."""

    def __init__(self) -> None:
        self.display: dict[int, int] = {}

    def number(self, block: int) -> int:
        return self.display.setdefault(block, len(self.display) + 1)

    def render(self, items: list[_Item]) -> str:
        """`[a, b-c]` with every block replaced by its display number (runs joined as ranges)."""
        numbers = sorted({self.number(n) for item in items for n in range(item.lo, item.hi + 1)})
        runs: list[_Item] = []
        for n in numbers:
            if runs and runs[-1].hi == n - 1:
                runs[-1] = _Item(runs[-1].lo, n)
            else:
                runs.append(_Item(n, n))
        parts = [run.render() if run.hi - run.lo >= 2 else ", ".join(map(str, range(run.lo, run.hi + 1))) for run in runs]
        return "[" + ", ".join(parts) + "]"


def renumber_marker(body: str, count: int, numbering: CitationNumbering) -> str | None:
    """A marker body (`1, 3-4`) renumbered for display; None when no number is a block."""
    kept = [inside for item in (_parse_item(raw) for raw in body.split(",")) if (inside := _split(item, count)[0])]
    return numbering.render(kept) if kept else None


class StreamRenumberer:
    """Renumbers `[n]` markers of a streamed answer as its pieces arrive, giving the same text as
    `resolve_citations` on the whole answer.

    Held back until the next piece: text that may be the start of a marker (`[1`, `[2,`, or `[3]`
    before the next character shows whether it is a markdown link `[3](url)`), and trailing spaces
    (a marker naming no provided block is dropped together with the spaces before it)."""

    _TAIL = re.compile(r"[ \t]*(?:\[[\d\s,\-\u2013\u2014]*\]?)?$")
    _SPACED_MARKER = re.compile(rf"(?P<space>[ \t]*){_MARKER.pattern}")

    def __init__(self, count: int, numbering: CitationNumbering) -> None:
        self.count = count
        self.numbering = numbering
        self.held = ""

    def feed(self, piece: str) -> str:
        text = self.held + piece
        tail = self._TAIL.search(text)
        cut = tail.start() if tail else len(text)
        self.held = text[cut:]
        return self._renumber(text[:cut])

    def flush(self) -> str:
        text, self.held = self.held, ""
        return self._renumber(text)

    def _renumber(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            shown = renumber_marker(match.group("body"), self.count, self.numbering)
            return "" if shown is None else match.group("space") + shown

        return self._SPACED_MARKER.sub(replace, text)


def resolve_citations(
    text: str, hits: list[Hit], trace: Trace, numbering: CitationNumbering | None = None
) -> Generated:
    """Resolve `[n]` markers against `hits`; drop (and warn about) numbers with no context block.

    Citations come one per distinct block, numbered for display in order of first appearance
    (`numbering`, shared with a stream's renumberer). A marker is rewritten with display numbers
    and only its valid blocks (`[3, 7]` -> `[1]` when block 3 is the first cited); a wholly
    invalid one is removed with the space before it.
    """
    count = len(hits)
    numbering = numbering or CitationNumbering()
    citations: dict[int, Citation] = {}
    warned: set[str] = set()
    out: list[str] = []
    pos = 0
    removed_any = False
    # Set after removing a marker at the start of a line, so "[7] The sky" becomes "The sky".
    eat_space = False

    def emit(piece: str) -> None:
        nonlocal eat_space
        if eat_space:
            piece = piece.lstrip(" \t")
            eat_space = not piece
        out.append(piece)

    for match in _MARKER.finditer(text):
        items = [_parse_item(raw) for raw in match.group("body").split(",")]
        kept: list[_Item] = []
        for item in items:
            inside, outside = _split(item, count)
            if inside is not None:
                kept.append(inside)
                for n in range(inside.lo, inside.hi + 1):
                    if n not in citations:
                        chunk = hits[n - 1].chunk
                        citations[n] = Citation(
                            n=numbering.number(n),
                            block=n,
                            chunk_id=chunk.id,
                            source=chunk.source,
                            start=chunk.start,
                            end=chunk.end,
                        )
            for bad in outside:
                label = bad.render()
                if label not in warned:
                    warned.add(label)
                    what = f"block {label}" if bad.lo == bad.hi else f"blocks {label}"
                    provided = f"only 1..{count} were provided" if count else "none were provided"
                    trace.warn(f"dropped citation [{label}]: no context {what} ({provided})")

        if kept:
            emit(text[pos : match.start()] + numbering.render(kept))
        else:
            removed_any = True
            # Take the spaces before the marker with it, so "blue [7]." becomes "blue.".
            start = match.start()
            while start > pos and text[start - 1] in " \t":
                start -= 1
            emit(text[pos:start])
            if start == 0 or text[start - 1] == "\n":
                eat_space = True
        pos = match.end()

    emit(text[pos:])
    result = "".join(out)
    if removed_any and text == text.rstrip():
        # A marker removed at the very end can leave a dangling blank line behind.
        result = result.rstrip()
    return Generated(text=result, citations=sorted(citations.values(), key=lambda c: c.n))


NO_CITATION_WARNING = "the model cited no context block: the answer is not grounded in a cited source"


def warn_if_uncited(generated: Generated, hits: list[Hit], trace: Trace) -> None:
    """Flag an answer that cites nothing although context was given (small models often do this).

    "I don't know" needs no citation; any other uncited answer may come from the model's own
    memory, so it must not be presented as sourced.
    """
    text = generated.text.strip()
    if hits and not generated.citations and text and text != NO_ANSWER:
        trace.warn(NO_CITATION_WARNING)
