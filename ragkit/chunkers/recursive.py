"""Token-budgeted recursive splitting with exact character offsets.

Like LangChain's RecursiveCharacterTextSplitter, but every decision is made on token offsets:
a range over budget is cut at paragraph breaks, pieces still over budget at sentence ends
(and newlines), then at whitespace, then between tokens. Chunks are greedy runs of pieces
of at most `chunk_size` tokens; each chunk after the first starts with up to `chunk_overlap`
tokens of the previous one, beginning at a sentence start if possible, else at a word start.

Token counts come from one tokenisation of the document (`TokenIndex`), so each budget check
is a bisection: chunking is O(n log n) in the text length. With tokenizers whose counts depend
on context (Hugging Face ones) a chunk is re-counted, in batches, unless its edges sit where
the tokenizer provably splits anyway (`safe_edges`), and shrunk if it really is over budget.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator

from ragkit.chunkers.tokens import Tokenizer, load_tokenizer
from ragkit.components import ComponentConfig, register
from ragkit.schema import Chunk, Document

_CLOSERS = "\"'”’»)]}」』）"
_SENTENCE_ENDS = ".!?。！？"
# Cut positions are the ends of these matches, i.e. where the next piece begins.
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")
_CLOSER_CLASS = "[" + re.escape(_CLOSERS) + "]"
_SENTENCE = re.compile(rf"[.!?]{_CLOSER_CLASS}*\s+|[。！？]{_CLOSER_CLASS}*\s*|\n\s*")
_WORD = re.compile(r"\s+")
_LEVELS = (_PARAGRAPH, _SENTENCE, _WORD)
_WORD_START = re.compile(r"(?<=\s)\S")
_VERIFY_BATCH = 32  # chunks re-counted per batch call for context-dependent tokenizers


class ChunkerConfigBase(ComponentConfig):
    """What every token-budgeted chunker takes."""

    chunk_size: int = Field(200, gt=0, description="token budget per chunk")
    chunk_overlap: int = Field(30, ge=0, description="tokens shared by consecutive chunks")
    tokenizer: str = Field(
        "regex", description="'regex' (words and punctuation) or a HF tokenizer id/local path"
    )

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, overlap: int, info: Any) -> int:
        size = info.data.get("chunk_size")
        if size is not None and overlap >= size:
            raise ValueError(f"chunk_overlap ({overlap}) must be smaller than chunk_size ({size})")
        return overlap


class RecursiveChunkerConfig(ChunkerConfigBase):
    name: Literal["recursive"] = "recursive"


class TokenIndex:
    """Where the tokens of one text start, answering 'tokens starting before pos' by bisection."""

    def __init__(self, text: str, tokenizer: Tokenizer) -> None:
        self.text = text
        self.tokenizer = tokenizer
        self.starts = tokenizer.starts(text)

    def before(self, pos: int) -> int:
        return bisect_left(self.starts, pos)


def split_spans(
    index: TokenIndex,
    start: int,
    end: int,
    chunk_size: int,
    chunk_overlap: int,
    head_end: int | None = None,
    keep_whole: Sequence[tuple[int, int]] = (),
) -> list[tuple[int, int]]:
    """(start, end) spans of the chunks of text[start:end], whitespace trimmed off both edges.

    `head_end` marks a heading that should share the first chunk with what follows it: the
    rest of the range is cut into pieces small enough to fit next to the heading.
    `keep_whole` are (start, end) ranges (code blocks) never cut, nor overlapped into, when
    they fit in `chunk_size`; longer ones are cut like any text.
    """
    return _Splitter(index, chunk_size, chunk_overlap, keep_whole).split(start, end, head_end)


class _Splitter:
    def __init__(
        self, index: TokenIndex, size: int, overlap: int, keep_whole: Sequence[tuple[int, int]] = ()
    ) -> None:
        self.index = index
        self.text = index.text
        self.size = size
        self.overlap = overlap
        before = index.before
        whole = sorted((a, b) for a, b in keep_whole if a < b and before(b) - before(a) <= size)
        self.whole_starts = [a for a, _ in whole]
        self.whole_ends = [b for _, b in whole]

    def _inside_whole(self, pos: int) -> bool:
        """Whether `pos` lies strictly inside a range that must stay whole."""
        i = bisect_left(self.whole_starts, pos) - 1
        return i >= 0 and pos < self.whole_ends[i]

    # --- cutting a range into pieces that each fit the budget -------------------------------

    def _cut(self, start: int, end: int, budget: int, level: int, out: list[int]) -> None:
        """Append (in order) the cut positions strictly inside (start, end)."""
        before = self.index.before
        if level == len(_LEVELS):
            budget = self.size  # a smaller (heading-side) budget never justifies cutting a word
        if before(end) - before(start) <= budget:
            return
        if level == len(_LEVELS):
            # One run of tokens with no whitespace: cut between tokens.
            starts = self.index.starts
            last = start
            for i in range(bisect_right(starts, start), before(end)):
                # several tokens can share an offset (byte fallback)
                if starts[i] != last and not self._inside_whole(starts[i]):
                    out.append(starts[i])
                    last = starts[i]
            return
        piece = start
        for match in _LEVELS[level].finditer(self.text, start, end):
            cut = match.end()
            if cut >= end:
                break
            if cut <= piece or self._inside_whole(cut):
                continue
            self._cut(piece, cut, budget, level + 1, out)
            out.append(cut)
            piece = cut
        self._cut(piece, end, budget, level + 1, out)

    def _cuts(self, start: int, end: int, head_end: int | None) -> list[int]:
        cuts = [start]
        if head_end is not None and start < head_end < end:
            self._cut(start, head_end, self.size, 0, cuts)
            cuts.append(head_end)
            head = self.index.before(head_end) - self.index.before(start)
            # Body pieces small enough to sit next to the heading in the first chunk.
            budget = self.size - head if head < self.size else self.size
            self._cut(head_end, end, budget, 0, cuts)
        else:
            self._cut(start, end, self.size, 0, cuts)
        cuts.append(end)
        return cuts

    # --- greedy merging ---------------------------------------------------------------------

    def split(self, start: int, end: int, head_end: int | None = None) -> list[tuple[int, int]]:
        cuts = self._cuts(start, end, head_end)
        cut_tokens = [self.index.before(c) for c in cuts]
        tokenizer = self.index.tokenizer
        spans: list[tuple[int, int]] = []
        s = start
        floor = start  # an overlap never reaches back past the end of the chunk before last
        while s < end:
            # Plan chunks as if the token index were exact. Context-dependent tokenizers then
            # re-count a batch of them in one (parallel) call, and we keep the run up to the
            # first chunk that turned out over budget, shrunk to fit.
            run: list[tuple[int, int, int, tuple[int, int]]] = []
            limit = len(cuts) if tokenizer.context_free else _VERIFY_BATCH
            while s < end and len(run) < limit:
                e = self._greedy_end(s, cuts, cut_tokens)
                span, next_s, next_floor = self._chunk_at(s, e, floor, end, cuts, cut_tokens)
                if span is not None:
                    run.append((s, e, floor, span))
                s, floor = next_s, next_floor
            if tokenizer.context_free:
                spans.extend(span for *_, span in run)
                continue
            uncertain = [i for i, (*_, span) in enumerate(run) if not self._exact(*span)]
            counts = tokenizer.count_many([self.text[slice(*run[i][3])] for i in uncertain])
            over = {i for i, count in zip(uncertain, counts) if count > self.size}
            for i, (run_s, e, run_floor, span) in enumerate(run):
                if i in over:
                    e = self._fit(span[0], e, cuts, cut_tokens)
                    fitted, s, floor = self._chunk_at(run_s, e, run_floor, end, cuts, cut_tokens)
                    assert fitted is not None  # _fit never moves e to or before span[0]
                    spans.append(fitted)
                    break
                spans.append(span)
        return spans

    def _exact(self, a: int, b: int) -> bool:
        """Whether text[a:b] surely has the tokens the index planned (no re-count needed)."""
        safe = self.index.tokenizer.safe_edges
        return (a == 0 or self.text[a - 1] in safe) and (b == len(self.text) or self.text[b] in safe)

    def _greedy_end(self, s: int, cuts: list[int], cut_tokens: list[int]) -> int:
        """The farthest cut after `s` such that text[s:cut] fits the budget."""
        k = bisect_right(cut_tokens, self.index.before(s) + self.size) - 1
        if cuts[k] <= s:
            # Not even the next piece fits: only possible when more than `size` tokens share
            # one offset. Take it anyway rather than loop forever.
            k = bisect_right(cuts, s)
        return cuts[k]

    def _chunk_at(
        self, s: int, e: int, floor: int, end: int, cuts: list[int], cut_tokens: list[int]
    ) -> tuple[tuple[int, int] | None, int, int]:
        """The chunk text[s:e] trimmed (None if blank), where the next one starts, and its floor."""
        a, b = _trim(self.text, s, e)
        if a >= b:
            return None, e, floor
        if e >= end:
            return (a, b), end, b
        p = self._overlap_start(a, b, e, cuts, cut_tokens, floor)
        return (a, b), e if p is None else p, b

    def _fit(self, a: int, e: int, cuts: list[int], cut_tokens: list[int]) -> int:
        """Move `e` back until text[a:e] really has at most `size` tokens (context-dependent counts)."""
        before = self.index.before
        starts = self.index.starts
        while True:
            b = _trim(self.text, a, e)[1]
            actual = self.index.tokenizer.count(self.text[a:b])
            if actual <= self.size:
                return e
            planned = before(b) - before(a)
            limit = before(a) + max(1, planned - (actual - self.size))
            k = bisect_right(cut_tokens, limit) - 1
            if a < cuts[k] < e:
                e = cuts[k]
            elif limit < len(starts) and a < starts[limit] < e:
                e = starts[limit]  # no piece boundary fits: cut between tokens
            elif e - a > 1:
                e = self._longest_prefix(a, e)  # one token that re-tokenises longer on its own
            else:
                return e  # a single character over budget: nothing smaller exists

    def _longest_prefix(self, a: int, e: int) -> int:
        """The end of the longest text[a:end] (end < e) within budget, by bisection; at least a+1."""
        lo, hi = a + 1, e - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.index.tokenizer.count(self.text[a:mid]) <= self.size:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _overlap_start(
        self, a: int, b: int, e: int, cuts: list[int], cut_tokens: list[int], floor: int
    ) -> int | None:
        """Where the next chunk starts inside the chunk text[a:b] (which ended at cut `e`), or None."""
        before = self.index.before
        k = bisect_right(cuts, e)
        next_piece = cut_tokens[k] - before(e) if k < len(cuts) else 0
        allowed = min(self.overlap, self.size - next_piece)  # the next piece must still fit
        if allowed <= 0:
            return None
        first = before(e) - allowed  # the overlap may hold tokens first .. before(e)-1
        lowest = self.index.starts[first - 1] + 1 if first > 0 else 0
        lowest = max(lowest, a + 1, floor)
        word_start = None
        for match in _WORD_START.finditer(self.text, lowest, b):
            q = match.start()
            if self._inside_whole(q):
                continue  # never start a chunk in the middle of a code block
            if _is_sentence_start(self.text, q, a):
                return q
            if word_start is None:
                word_start = q
        return word_start


def _is_sentence_start(text: str, q: int, lowest: int) -> bool:
    """True when the whitespace before word start `q` holds a newline or follows a sentence end."""
    r = q - 1
    while r >= lowest and text[r].isspace():
        if text[r] == "\n":
            return True
        r -= 1
    while r >= lowest and text[r] in _CLOSERS:
        r -= 1
    return r >= lowest and text[r] in _SENTENCE_ENDS


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """text[start:end] without leading/trailing whitespace, as offsets (start >= end if empty)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


# --- chunk metadata ------------------------------------------------------------------------


def code_blocks(document: Document) -> list[tuple[int, int, str | None]]:
    """(start, end, language) of the code blocks a loader recorded (`metadata["code_blocks"]`)."""
    found = []
    for block in document.metadata.get("code_blocks") or []:
        start, end = int(block["start"]), int(block["end"])
        if 0 <= start < end <= len(document.text):
            found.append((start, end, block.get("language") or None))
    return sorted(found)


class ChunkMetadata:
    """Per-document metadata every chunk carries: `title`, `page`/`pages` for PDFs, and
    `code_language` (the language of the first code block it holds, when known)."""

    def __init__(self, document: Document, blocks: list[tuple[int, int, str | None]] | None = None) -> None:
        self.title = document.metadata.get("title")
        self.code = [b for b in (code_blocks(document) if blocks is None else blocks) if b[2]]
        self.code_starts = [b[0] for b in self.code]
        pages = document.metadata.get("pages") or []
        self.pages = sorted(
            ((int(p["start"]), int(p["end"]), p["page"]) for p in pages), key=lambda p: p[0]
        )
        self.page_starts = [p[0] for p in self.pages]
        # Running maximum of page ends, so "first page that may end after x" is a bisection
        # even if a loader reported overlapping or unordered ranges.
        self.reach: list[int] = []
        for p in self.pages:
            self.reach.append(max(p[1], self.reach[-1]) if self.reach else p[1])

    def for_span(self, start: int, end: int) -> dict[str, Any]:
        metadata: dict[str, Any] = {}
        if self.title is not None:
            metadata["title"] = self.title
        if self.code:
            i = bisect_right(self.code_starts, start) - 1
            i = i if i >= 0 and self.code[i][1] > start else i + 1
            if i < len(self.code) and self.code[i][0] < end:
                metadata["code_language"] = self.code[i][2]
        if self.pages:
            lo = bisect_right(self.reach, start)
            hi = bisect_left(self.page_starts, end)
            spanned = [p for p in self.pages[lo:hi] if p[1] > start]
            if spanned:
                containing = [p for p in spanned if p[0] <= start]
                metadata["page"] = (containing or spanned)[0][2]
                metadata["pages"] = [p[2] for p in spanned]
        return metadata


@register("chunker", "recursive", RecursiveChunkerConfig)
class RecursiveChunker:
    """Paragraphs, then sentences, then words, then tokens, merged greedily up to the budget."""

    def __init__(self, config: RecursiveChunkerConfig) -> None:
        self.config = config
        self.tokenizer = load_tokenizer(config.tokenizer)

    def chunk(self, document: Document) -> list[Chunk]:
        index = TokenIndex(document.text, self.tokenizer)
        blocks = code_blocks(document)
        meta = ChunkMetadata(document, blocks)
        spans = split_spans(
            index, 0, len(document.text), self.config.chunk_size, self.config.chunk_overlap,
            keep_whole=[(a, b) for a, b, _ in blocks],
        )
        return [Chunk.from_span(document, a, b, meta.for_span(a, b)) for a, b in spans]
