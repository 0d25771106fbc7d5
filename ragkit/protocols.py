"""What every implementation of a stage offers its callers: one complete protocol per stage.

Callers use exactly what is listed here, never `getattr`/`hasattr` probing; an implementation
that lacks a method fails type checking (mypy runs in `make test`), and the conformance tests
(tests/conformance/) check the behaviour behind the signatures. Stages in data-flow order:

    Loader -> Chunker -> Embedder -> VectorStore (-> VectorSearcher) / SparseIndex
    -> Fusion -> QueryTransform -> Reranker -> ChatModel -> Generator -> AnswerMetric

Implementations register themselves with `ragkit.components.register(stage, name, Config)` and
are built by `ragkit.components.build(stage, config, **deps)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Generator as GeneratorOf
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragkit.schema import Chunk, Citation, Document, Hit, LoadFailure, RetrieverScore, Trace

if TYPE_CHECKING:
    from ragkit.config import LoaderConfig
    from ragkit.indexes.filters import MetadataFilter
    from ragkit.indexes.generation import GenerationView, SegmentView

Ranking = Sequence[tuple[int, float]]  # (row, score), best first
Messages = list[dict[str, str]]


# --- load ----------------------------------------------------------------------------------------


class Loader(Protocol):
    """One file -> documents; bad rows are failures (`path:LINE`), a bad file raises LoaderError."""

    def load(self, path: Path, settings: LoaderConfig) -> tuple[list[Document], list[LoadFailure]]: ...


# --- chunk ---------------------------------------------------------------------------------------


class Chunker(Protocol):
    """`document.text[c.start:c.end] == c.text` for every chunk it returns."""

    def chunk(self, document: Document) -> list[Chunk]: ...


# --- index ---------------------------------------------------------------------------------------


class Embedder(Protocol):
    """Texts -> float32 row vectors (L2-normalised when configured). `model_id` names the model:
    vectors of two embedders with the same `model_id` are interchangeable."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None: ...

    def embed(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_with_tokens(
        self,
        texts: Sequence[str],
        on_tokens: Callable[[int, np.ndarray, list[tuple[int, int]]], None],
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """`embed(texts)`, also handing each text's contextual token embeddings to
        `on_tokens(i, token_embeddings [tokens, dim], character offsets of the tokens in texts[i])`,
        so the writer pools sentence vectors from the same forward pass (ragkit/indexes/sentences.py).
        This default (for embedders that subclass `Embedder`) gives no token embeddings: the
        extractive generator then embeds sentences at query time."""
        return self.embed(texts, on_batch)


class VectorSearcher(Protocol):
    """Search over the vectors of ONE published generation (what a reader opened).

    Rows are the generation's global rows (its segments' rows concatenated in manifest order,
    `GenerationView`); deleted rows are never returned. Scores are inner products (cosine on
    normalised vectors). `flt` is the parsed metadata filter; each store applies it its own way
    (faiss: the store's row mask, chroma: a `where` clause, SQL: a WHERE) with the same
    semantics. Results for each query: (rows, scores), best first, ties by lower row, at most k.
    `len()` is the generation's number of global rows."""

    def __len__(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def search(
        self, queries: np.ndarray, k: int, flt: MetadataFilter | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class VectorStore(Protocol):
    """Where a pipeline's vectors live, kept in step with the index's generations.

    An index is a list of immutable segments plus per-generation deletions
    (ragkit/indexes/layout.py). The writer calls, in order: `prepare` (connect; repair what a
    crashed writer left, before anything is embedded), `write_segment` for each new segment (a
    commit's added chunks or a merge's output: its local rows and vectors), `before_publish`
    (make the new generation, with its new segments, deletions and segments merged away,
    searchable without disturbing readers of the current one), then publishes, then
    `after_publish` (drop what only older generations used). Readers call `open`. `verify`
    proves the store holds exactly a generation's live vectors. A crash between any two steps
    must leave the published generation fully searchable.
    """

    @property
    def config(self) -> Any:
        """The store's config as settled for this index (e.g. chroma's collection name), saved."""
        ...

    def identity(self) -> Any:
        """What makes two configurations address different stored vectors (a change rebuilds)."""
        ...

    def prepare(self, current: GenerationView | None) -> None: ...

    def write_segment(self, segment: SegmentView, vectors: np.ndarray) -> None: ...

    def before_publish(self, current: GenerationView | None, new: GenerationView) -> None: ...

    def after_publish(self, new: GenerationView) -> None: ...

    def open(self, generation: GenerationView) -> VectorSearcher: ...

    def verify(self, generation: GenerationView, sample: int) -> tuple[list[str], str]: ...

    def describe(self) -> str:
        """One line for `ragkit status` (no connection needed)."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters of the last write (e.g. records upserted/deleted on a server)."""
        ...


@dataclass
class PreparedIngest:
    """What an ingest executor did before the commit: every file loaded (in `files` order), and
    the chunker and embedder the single writer then uses (answering from what was computed)."""

    loaded: list[Any]  # ragkit.loaders.LoadedFile, one per file, in order
    chunker: Chunker
    embedder: Embedder


class IngestExecutor(Protocol):
    """Where an ingest loads, chunks and embeds (e.g. a Ray cluster: ragkit/executors/). The
    commit stays one local writer (`write_generation`) under the index's writer lock."""

    def prepare(
        self, files: Sequence[Path], index_dir: Path, config: Any, chunker: Chunker, embedder: Embedder
    ) -> PreparedIngest: ...


class SparseWriter(Protocol):
    """The sparse index's side of one commit or merge."""

    def write_segment(self, texts: Iterable[str], directory: Path) -> None:
        """Index a new segment's chunk texts (local row i = the i-th text) into its directory."""
        ...

    def merge_segments(self, parts: Sequence[SegmentView], directory: Path) -> None:
        """Index the live rows of `parts`, in order, into a merged segment's directory."""
        ...

    def finish(self, generation_dir: Path) -> None:
        """Write the generation-level files (e.g. BM25's vocabulary) into the new generation."""
        ...


class SparseBackend(Protocol):
    """The sparse (lexical) index kind of a pipeline: its analyzer, how segments are written, and
    how a generation is opened (with the statistics of its live rows)."""

    @property
    def analyzer(self) -> Callable[[str], list[str]]: ...

    def writer(self, current: GenerationView | None) -> SparseWriter: ...

    def open(self, generation: GenerationView) -> SparseIndex: ...

    def verify(self, generation: GenerationView) -> tuple[list[str], str]:
        """(problems, summary): each segment's index holds exactly its chunks' texts."""
        ...


class SparseIndex(Protocol):
    """Lexical search over the analyzed chunk texts of one generation (global rows, deleted rows
    never returned). `allowed`: a boolean mask over global rows (the store's metadata filter)."""

    def __len__(self) -> int: ...

    def search_batch(
        self, queries: Sequence[Sequence[str]], k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]: ...


# --- retrieve ------------------------------------------------------------------------------------


@dataclass
class Fused:
    """A fused candidate: its row, fused score and every retriever's rank/score."""

    row: int
    score: float
    retrievers: dict[str, RetrieverScore] = field(default_factory=dict)


class Fusion(Protocol):
    """Several rankings (retriever name -> (row, score) best first) -> one, best first."""

    def fuse(self, rankings: Mapping[str, Ranking]) -> list[Fused]: ...

    def weights(self, rankings: Mapping[str, Ranking]) -> dict[str, float]:
        """The weight each retriever gets when fusing `rankings` (fixed for convex and rrf,
        per query for adaptive), for reports."""
        ...

    def describe(self) -> dict[str, Any]:
        """The method and its parameters (as used: fitted values included), for reports."""
        ...


@dataclass(frozen=True)
class QueryVariant:
    """One search for a question: `dense_texts` are embedded and averaged into the query vector;
    BM25 searches `sparse_text`. `label` names the variant in `Hit.retrievers` and warnings."""

    label: str
    dense_texts: tuple[str, ...]
    sparse_text: str

    @classmethod
    def plain(cls, question: str) -> QueryVariant:
        return cls("question", (question,), question)


class QueryTransform(Protocol):
    """Turns a question into the searches to run (asking the pipeline's LLM). Never raises on
    LLM trouble: it falls back to the plain question with a trace warning. When there are
    several variants, their fused lists are fused again by RRF with `rrf_k`."""

    @property
    def name(self) -> str: ...

    @property
    def rrf_k(self) -> float: ...

    def variants(self, question: str, trace: Trace) -> list[QueryVariant]: ...


class Reranker(Protocol):
    """Reorders the top `depth` fused hits; the rest keep their fused order below them.
    `depth` 0 means the reranker does nothing (and the stage is not reported as a variant)."""

    @property
    def depth(self) -> int: ...

    def rerank(self, question: str, hits: list[Hit], trace: Trace) -> list[Hit]: ...


# --- generate ------------------------------------------------------------------------------------


class ChatModel(Protocol):
    """An LLM that completes chat messages. Per-call `overrides` (max_tokens, temperature) change
    only that request. Raises GenerationError on transport or HTTP errors (message redacted)."""

    @property
    def identity(self) -> str:
        """Everything that can change a reply (model, endpoint, settings): a cache key part."""
        ...

    def complete(self, messages: Messages, **overrides: Any) -> tuple[str, str | None]:
        """-> (text, finish_reason)."""
        ...

    def stream(self, messages: Messages, **overrides: Any) -> GeneratorOf[tuple[str, str | None], None, None]:
        """Sends the request (errors raise here), then yields (text delta, finish_reason or None)
        as they arrive. A break after some text raises `StreamInterrupted` (generation.chat);
        `close()` stops the request at once."""
        ...


@dataclass
class Generated:
    text: str
    citations: list[Citation] = field(default_factory=list)
    # With an "I don't know": chunks that were related to the question without answering it.
    related: list[Citation] = field(default_factory=list)


class AnswerStream(Protocol):
    """A streamed answer: iterate for display text deltas; `result()` gives the checked answer."""

    def __iter__(self) -> Iterator[str]: ...

    def __next__(self) -> str: ...

    def result(self) -> Generated: ...

    def close(self) -> None: ...


class Generator(Protocol):
    """Question + hits -> answer text with checked `[n]` citations (blocks are hits[n-1])."""

    @property
    def chat_model(self) -> ChatModel | None:
        """The LLM behind the generator (query transforms and the LLM reranker use it), if any."""
        ...

    def generate(self, question: str, hits: list[Hit], trace: Trace) -> Generated: ...

    def generate_stream(self, question: str, hits: list[Hit], trace: Trace) -> AnswerStream: ...


# --- evaluate ------------------------------------------------------------------------------------


@dataclass
class AnswerSample:
    """One answered question as answer metrics see it."""

    question: str
    answer: str  # citation markers stripped
    abstained: bool
    hits: list[Hit]
    retrieved_sources: list[str]  # per hit, comparable with `expected_sources`
    expected_sources: list[str]  # empty: the question is unanswerable from the corpus
    references: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    claims_text: str = ""  # the answer as claims are read from it (citations and "Sources" removed)
    details: dict[str, Any] = field(default_factory=dict)  # metrics may leave per-sample results here


class AnswerMetric(Protocol):
    """Scores answered questions; None where the metric does not apply to a sample. Built with
    the pipeline's embedder (`embedder=`), for metrics that embed (offline faithfulness)."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def score(self, samples: Sequence[AnswerSample]) -> list[float | None]: ...

    def aggregate(self, samples: Sequence[AnswerSample], values: Sequence[float | None]) -> float | None: ...
