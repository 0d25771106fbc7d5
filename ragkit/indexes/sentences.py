"""Sentences of every chunk, segmented and embedded once at ingest, for the extractive generator.

A query's generate stage needs, for the sentences of its top chunks, their boundaries and a
vector to compare with the question. Computing those per query cost ~10x retrieval (issue 13).
Here they are computed when a chunk is first embedded and stored next to the index:

- **Segmentation** (`segment`): quotable sentence spans of a chunk text (character offsets into
  it); headings, table rows, code lines and the pieces cut by chunk boundaries are not quotable.
  Each sentence also records its `lead` (the label line it explains, e.g. an API signature above
  its description) and whether it opens its paragraph.
- **Vectors without a second forward pass** (`encode_with_sentences`): the chunk goes through the
  embedding model once, as it must for the dense index; each sentence's vector is the mean of the
  chunk's *contextual token embeddings* within the sentence (the same mean pooling the model
  applies to the whole chunk), normalised. Embedding every sentence separately would roughly
  double ingest time (embedding is ~98 % of it); pooling costs one tokenisation for the offsets
  and a few means (measured in docs/benchmarks.md). Sentences past the model's 256-token window
  get no vector; the generator embeds those few at query time.
- **Storage** (`SentenceIndex`): `sentences.sqlite` in each generation, one row per distinct chunk
  text keyed by its text hash (as the embedding cache is), never by row number, so it survives
  renumbering and moves with a chunk into any segment. Vectors are int8 with a per-sentence scale
  (384 bytes a sentence; cosines change by < 0.01). `SentenceWriter` (driven by the index writer)
  carries the previous generation's rows over, adds each encoded block's rows as it is encoded and
  drops rows no chunk uses.

A chunk without a row (an index written before this existed, or an embedder without token
embeddings) is segmented and embedded at query time, as before.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SENTENCES_FILE = "sentences.sqlite"
# Bump when `segment` changes what it returns: rows of another version are recomputed at query time.
SEGMENTER_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk_sentences (
    text_hash TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    spans BLOB NOT NULL,     -- int32 [n, 4]: start, end, lead_start, lead_end (-1: no lead)
    flags BLOB NOT NULL,     -- uint8 [n]: 1 = opens its paragraph
    vectors BLOB,            -- int8 [n, dim], or NULL when the embedder gave no token embeddings
    scales BLOB              -- float32 [n]: vector = int8 * scale (0: no vector for that sentence)
) WITHOUT ROWID
"""

# --- segmentation ----------------------------------------------------------------------------

# Sentence ends: ., ! or ? (plus closing quotes/brackets) followed by whitespace, or directly by a
# capitalised word ("century.First", as in text joined without spaces). Initials and common
# abbreviations ("John F. Kennedy", "Mt. Everest", "e.g. this") are re-joined afterwards.
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*\s+|(?<=[a-z0-9)][.!?])(?=[A-Z][a-z])")
_ABBREVIATION = re.compile(
    r"(?:\b[A-Z]|\b(?:Dr|Mr|Mrs|Ms|St|Mt|Jr|Sr|Prof|Gen|Col|Lt|Sgt|Rev|Inc|Ltd|Co|Corp|vs|etc|approx|"
    r"No|Nos|Vol|Fig|Figs|Eq|Sec|Ch|pp|al|cf|ca|e\.g|i\.e|a\.m|p\.m|U\.S|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|"
    r"Oct|Nov|Dec))\.[\"'”’)\]]*$"
)
_TERMINAL = re.compile(r"[.!?][\"'”’)\]]*$")
_LIST_MARKER = re.compile(r"[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+")
_CODE_LINE = re.compile(r"^(?:>>>|\.\.\.|\$ |#!|//|/\*|[{}\[\]();]+$)|[;{]\s*$|^\s{4,}\S")
_MIN_WORDS = 4
_MAX_LEAD_WORDS = 14


@dataclass(frozen=True)
class SentenceSpan:
    """A quotable sentence of a chunk: `text[start:end]`; `lead` is the label line it explains."""

    start: int
    end: int
    lead: tuple[int, int] | None = None
    opens_paragraph: bool = False


def _is_title(line: str) -> bool:
    """Headings, table rows, fences and ALL-CAPS title lines: never soft-wrapped into a sentence."""
    return line.startswith(("#", "|", "```", "~~~")) or (
        line.upper() == line and sum(c.isalpha() for c in line) > 1
    )


def _is_heading_line(line: str, following: str, width: int) -> bool:
    """A section title inside wrapped text (PDF pages): a short line without final punctuation
    followed by a line that starts a sentence. Wrapped lines fill the width; titles do not."""
    return (
        bool(line)
        and following[:1].isupper()
        and not _TERMINAL.search(line)
        and not line.endswith((",", ";", ":"))
        and len(line) < 0.6 * width
        and len(line.split()) <= 8
    )


@dataclass
class _Unit:
    start: int
    end: int
    kind: str  # "text" | "item" (list item) | "label" (title, heading, code, table: not quoted)


def _units(text: str) -> list[_Unit]:
    """Paragraphs, list items and label lines of a chunk, as spans of `text`.

    A single newline inside a paragraph is a soft wrap (PDF and plain-text line breaks); a blank
    line, list marker, heading, table row or code line starts a new unit.
    """
    units: list[_Unit] = []
    for paragraph in re.finditer(r"[^\n]+(?:\n(?![ \t]*\n)[^\n]*)*", text):
        lines = []
        pos = paragraph.start()
        for line in paragraph.group().split("\n"):
            lines.append((pos, pos + len(line), line))
            pos += len(line) + 1
        width = max((len(line.strip()) for *_, line in lines), default=0)
        only = lines[0][2] if len(lines) == 1 else ""
        if (
            only and not _TERMINAL.search(only.rstrip()) and not _LIST_MARKER.match(only)
            and len(only.split()) <= _MAX_LEAD_WORDS and not _SENTENCE_END.search(only)
        ):
            # A line standing alone without final punctuation is a label (a title, an API
            # signature, a glossary term), never a sentence; the paragraph after it explains it.
            a, b, line = lines[0]
            units.append(_Unit(a + len(line) - len(line.lstrip()), a + len(line.rstrip()), "label"))
            continue
        current: _Unit | None = None
        in_fence = False
        for n, (a, b, line) in enumerate(lines):
            stripped = line.strip()
            following = lines[n + 1][2].strip() if n + 1 < len(lines) else ""
            if not stripped:
                continue
            lead_space = len(line) - len(line.lstrip())
            a0, b0 = a + lead_space, a + len(line.rstrip())
            if stripped.startswith(("```", "~~~")):
                in_fence = not in_fence
            label = (
                in_fence or stripped.startswith(("```", "~~~")) or _is_title(stripped)
                or bool(_CODE_LINE.search(line)) or _is_heading_line(stripped, following, width)
                or (set(stripped) <= set("-=") and len(stripped) >= 3)
            )
            marker = _LIST_MARKER.match(line)
            if label:
                if set(stripped) <= set("-=") and current is not None and current.kind != "label":
                    current.kind = "label"  # setext underline: the line above is a heading
                current = None
                units.append(_Unit(a0, b0, "label"))
                continue
            if marker:
                current = _Unit(a + marker.end(), b0, "item")
                units.append(current)
                continue
            if current is None or current.kind == "label":
                current = _Unit(a0, b0, "text")
                units.append(current)
            else:
                current.end = b0
    return units


def _pieces(text: str, unit: _Unit) -> list[tuple[int, int]]:
    """A text or item unit cut at sentence ends (not after an abbreviation or an initial)."""
    pieces: list[tuple[int, int]] = []
    piece_start = unit.start
    for match in _SENTENCE_END.finditer(text, unit.start, unit.end):
        end = match.start() + len(match.group().rstrip())
        if end <= piece_start or end >= unit.end:
            continue
        if _ABBREVIATION.search(text[piece_start:end]):
            continue
        pieces.append((piece_start, end))
        piece_start = match.end()
    if piece_start < unit.end:
        pieces.append((piece_start, unit.end))
    return pieces


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Every sentence of `text` as `(start, end)` offsets: ragkit's one sentence splitter (the
    quotable sentences of `segment`, and the claims and context sentences of the faithfulness
    scorer). A label line (title, heading, code, a short line without final punctuation such as a
    one-phrase answer) is one sentence; a single newline inside a paragraph is a soft wrap."""
    spans: list[tuple[int, int]] = []
    for unit in _units(text):
        spans.extend([(unit.start, unit.end)] if unit.kind == "label" else _pieces(text, unit))
    return spans


def segment(text: str) -> list[SentenceSpan]:
    """Quotable sentences of a chunk text, as spans.

    Left out: headings, table rows, titles, code and other lines that are not sentences (no final
    punctuation, unless a list item), pieces shorter than four words, and the pieces cut by chunk
    boundaries (a first piece that starts in lower case, a last piece without final punctuation):
    a truncated sentence can say something the document does not.
    """
    sentences: list[SentenceSpan] = []
    units = _units(text)
    for index, unit in enumerate(units):
        if unit.kind == "label":
            continue
        pieces = _pieces(text, unit)
        if index == 0 and pieces and text[pieces[0][0] : pieces[0][0] + 1].islower():
            pieces = pieces[1:]  # the chunk starts mid-sentence
        previous = units[index - 1] if index else None
        lead = None
        if (
            previous is not None and previous.kind == "label"
            and not text.startswith(("#", "|", "```", "~~~"), previous.start)
            and len(text[previous.start : previous.end].split()) <= _MAX_LEAD_WORDS
            and not _CODE_LINE.search(text[previous.start : previous.end])
        ):
            lead = (previous.start, previous.end)  # e.g. "random.choice(seq)" above its description
        for n, (a, b) in enumerate(pieces):
            piece = text[a:b]
            if len(piece.split()) < _MIN_WORDS:
                continue
            last_of_chunk = index == len(units) - 1 and n == len(pieces) - 1
            if _TERMINAL.search(piece) or (unit.kind == "item" and len(pieces) == 1 and not last_of_chunk):
                sentences.append(SentenceSpan(a, b, lead if n == 0 else None, opens_paragraph=n == 0))
    return sentences


def display(text: str) -> str:
    """A sentence as quoted: soft wraps and runs of whitespace become single spaces."""
    return " ".join(text.split())


# --- vectors from the chunk's own forward pass ----------------------------------------------


@dataclass
class ChunkSentences:
    """What is stored for one chunk text."""

    spans: list[SentenceSpan]
    vectors: np.ndarray | None  # float32 [n, dim], unit length; rows of zeros: no vector


def pool_sentence_vectors(
    token_embeddings: np.ndarray, offsets: Sequence[tuple[int, int]], spans: Sequence[SentenceSpan]
) -> np.ndarray:
    """Mean of the contextual token embeddings inside each span, normalised; zeros for a span
    with no token inside the model's window (the chunk was truncated before it)."""
    dim = token_embeddings.shape[1]
    out = np.zeros((len(spans), dim), dtype=np.float32)
    starts = np.array([a for a, _ in offsets], dtype=np.int64)
    ends = np.array([b for _, b in offsets], dtype=np.int64)
    real = ends > starts  # special tokens ([CLS], [SEP]) have empty offsets
    for i, span in enumerate(spans):
        inside = real & (starts >= span.start) & (ends <= span.end)
        if inside.any():
            mean = token_embeddings[inside].mean(axis=0)
            norm = float(np.linalg.norm(mean))
            if norm > 0:
                out[i] = mean / norm
    return out


def encode_with_sentences(
    embedder: Any, texts: Sequence[str], on_batch: Callable[[int], None] | None = None
) -> tuple[np.ndarray, dict[str, ChunkSentences]]:
    """Chunk vectors for `texts` (exactly `embedder.embed(texts)`) and, keyed by chunk text, their
    sentences with vectors pooled from the same forward pass. An embedder that cannot give token
    embeddings (`embed_with_tokens`) gives chunk vectors and sentence spans only."""
    spans = [segment(text) for text in texts]
    found: dict[str, ChunkSentences] = {}

    def pool(i: int, tokens: np.ndarray, offsets: Sequence[tuple[int, int]]) -> None:
        found[texts[i]] = ChunkSentences(spans[i], pool_sentence_vectors(tokens, offsets, spans[i]) if spans[i] else None)

    vectors = embedder.embed_with_tokens(texts, pool, on_batch=on_batch)
    for text, text_spans in zip(texts, spans):  # an embedder without token embeddings: spans only
        found.setdefault(text, ChunkSentences(text_spans, None))
    return vectors, found


# --- storage -----------------------------------------------------------------------------------


def _quantize(vectors: np.ndarray) -> tuple[bytes, bytes]:
    peak = np.abs(vectors).max(axis=1)
    scales = np.where(peak > 0, peak / 127.0, 0.0).astype(np.float32)
    safe = np.where(scales > 0, scales, 1.0)[:, None]
    quantized = np.clip(np.rint(vectors / safe), -127, 127).astype(np.int8)
    return quantized.tobytes(), scales.tobytes()


def _row(text_hash: str, data: ChunkSentences) -> tuple[Any, ...]:
    spans = np.array(
        [(s.start, s.end, *(s.lead if s.lead else (-1, -1))) for s in data.spans], dtype=np.int32
    ).reshape(-1, 4)
    flags = np.array([s.opens_paragraph for s in data.spans], dtype=np.uint8)
    vectors = scales = None
    if data.vectors is not None and len(data.spans):
        vectors, scales = _quantize(np.asarray(data.vectors, dtype=np.float32))
    return (text_hash, SEGMENTER_VERSION, spans.tobytes(), flags.tobytes(), vectors, scales)


class SentenceIndex:
    """Read side: stored sentences by chunk text hash, over the `sentences.sqlite` of every
    segment of a generation (a text is looked up in each until found)."""

    def __init__(self, connections: list[sqlite3.Connection]) -> None:
        self.dbs = connections

    @classmethod
    def open(cls, segment_dirs: Iterable[Path]) -> SentenceIndex:
        connections = []
        for directory in segment_dirs:
            path = directory / SENTENCES_FILE
            if path.exists():  # absent: a segment migrated from an index without stored sentences
                connections.append(sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False))
        return cls(connections)

    def get(self, text_hashes: Iterable[str]) -> dict[str, ChunkSentences]:
        """Stored sentences of the given chunk texts (missing or outdated ones are left out)."""
        wanted = list(dict.fromkeys(text_hashes))
        found: dict[str, ChunkSentences] = {}
        for db in self.dbs:
            if not wanted:
                break
            for begin in range(0, len(wanted), 500):  # under SQLite's bound-parameter limit
                part = wanted[begin : begin + 500]
                for text_hash, version, spans, flags, vectors, scales in db.execute(
                    "SELECT text_hash, version, spans, flags, vectors, scales FROM chunk_sentences "
                    f"WHERE text_hash IN ({','.join('?' * len(part))})",
                    part,
                ):
                    if version == SEGMENTER_VERSION:
                        found[text_hash] = _parse(spans, flags, vectors, scales)
            wanted = [h for h in wanted if h not in found]
        return found

    def raw_rows(self, text_hashes: Iterable[str]) -> list[tuple[Any, ...]]:
        """The stored rows of the given texts, as stored (to copy into another segment)."""
        wanted = list(dict.fromkeys(text_hashes))
        rows: list[tuple[Any, ...]] = []
        for db in self.dbs:
            if not wanted:
                break
            got: set[str] = set()
            for begin in range(0, len(wanted), 500):
                part = wanted[begin : begin + 500]
                for row in db.execute(
                    "SELECT text_hash, version, spans, flags, vectors, scales FROM chunk_sentences "
                    f"WHERE text_hash IN ({','.join('?' * len(part))})",
                    part,
                ):
                    rows.append(tuple(row))
                    got.add(row[0])
            wanted = [h for h in wanted if h not in got]
        return rows

    def close(self) -> None:
        for db in self.dbs:
            db.close()


def _parse(spans: bytes, flags: bytes, vectors: bytes | None, scales: bytes | None) -> ChunkSentences:
    table = np.frombuffer(spans, dtype=np.int32).reshape(-1, 4)
    opens = np.frombuffer(flags, dtype=np.uint8)
    parsed = [
        SentenceSpan(int(a), int(b), (int(la), int(lb)) if la >= 0 else None, bool(o))
        for (a, b, la, lb), o in zip(table.tolist(), opens.tolist())
    ]
    matrix = None
    if vectors is not None and scales is not None and parsed:
        scale = np.frombuffer(scales, dtype=np.float32)
        matrix = np.frombuffer(vectors, dtype=np.int8).reshape(len(parsed), -1).astype(np.float32) * scale[:, None]
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return ChunkSentences(parsed, matrix)


class SentenceWriter:
    """Writes a new segment's `sentences.sqlite` (used by the index writer and merges): each
    encoded block's rows are added at once (memory stays bounded by one block), and rows of texts
    the segment reuses from older segments (the embedding cache, a merge) are copied over."""

    def __init__(self, segment_dir: Path) -> None:
        self.db = sqlite3.connect(segment_dir / SENTENCES_FILE)
        self.db.executescript(_SCHEMA)
        self.written = 0

    def add(self, found: Mapping[str, ChunkSentences]) -> None:
        """Rows for freshly encoded chunk texts, keyed by text hash."""
        self.db.executemany(
            "INSERT OR REPLACE INTO chunk_sentences (text_hash, version, spans, flags, vectors, scales) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [_row(h, data) for h, data in found.items()],
        )
        self.written += len(found)

    def copy(self, source: SentenceIndex, text_hashes: Iterable[str]) -> None:
        """Rows of `text_hashes` that `source` holds (and this file does not yet)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO chunk_sentences (text_hash, version, spans, flags, vectors, scales) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            source.raw_rows(text_hashes),
        )

    def finish(self) -> int:
        """Commit and close."""
        self.db.commit()
        self.close()
        return self.written

    def close(self) -> None:
        self.db.close()
