"""Query transforms through the generator LLM: multi-query expansion and HyDE.

A transform turns the question into `QueryVariant`s — what to embed for the dense search (several
texts are embedded and averaged into one query vector) and what BM25 searches with. Each variant
is retrieved like a plain question (dense + sparse, fused by the pipeline's fusion), and when
there are several, their fused lists are fused again with reciprocal rank fusion (RRF, equal
weights, `rrf_k`): a chunk found high by several rewrites rises, one found by a single rewrite
still gets in. RRF rather than score fusion because the variants' fused scores are not comparable
(RRF scores depend only on ranks).

- **multi-query** (`MultiQueryTransform`): one request asks for `n` rewrites, one per line;
  `parse_rewrites` keeps the usable lines (numbering, bullets, quotes, blank lines, preambles such
  as "Here are 3 queries:" and repeats of the question are dropped). Variants: the question (when
  `include_original`) and each rewrite.
- **hyde** (`HydeTransform`, Gao et al. 2022, "Precise Zero-Shot Dense Retrieval without Relevance
  Labels"): `n` requests each write a hypothetical passage answering the question. One variant:
  dense searches with the mean of the passages' embeddings and (when `include_original`) the
  question's, as in the paper; BM25 searches with the question (`sparse_query: question`) or the
  question followed by the passages (`question+passage`). Why the mean rather than separate
  searches fused: measured on boolq-dev, see README "Query transforms".

Failure never stops retrieval: when the LLM errors (server down, HTTP error, timeout) or its reply
has nothing usable, the transform falls back to the question alone and says so in the trace. Both
the LLM call ("query_transform") and the extra searches ("transform_retrieval") are timed there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragkit.config import HydeConfig, MultiQueryConfig, NoQueryTransformConfig, QueryTransformConfig
from ragkit.retrieval.chat import ChatModel, describe_error
from ragkit.retrieval.fusion import Fused, fuse, reciprocal_rank_fusion
from ragkit.schema import Trace

if TYPE_CHECKING:
    from ragkit.retrieval.hybrid import HybridRetriever

MULTI_QUERY_SYSTEM = "You rewrite questions into search queries for a document search engine."

MULTI_QUERY_USER = """\
Write {n} different search queries that look for the information needed to answer the question \
below. Use other words and synonyms, keep the meaning, put each query on its own line and number \
them 1. to {n}. Write only the queries.

Question: {question}"""

HYDE_SYSTEM = "You write short, factual encyclopedia passages."

HYDE_USER = """\
Write a short passage (2 to 4 sentences), in the style of an encyclopedia article, that answers \
the question below. Write only the passage.

Question: {question}"""


@dataclass(frozen=True)
class QueryVariant:
    """One search: `dense_texts` are embedded and averaged into the query vector; BM25 searches
    `sparse_text`. `label` names the variant in `Hit.retrievers` and warnings."""

    label: str
    dense_texts: tuple[str, ...]
    sparse_text: str

    @classmethod
    def plain(cls, question: str) -> QueryVariant:
        return cls("question", (question,), question)


class QueryTransform(Protocol):
    name: str

    @property
    def rrf_k(self) -> float: ...

    def variants(self, question: str, trace: Trace) -> list[QueryVariant]:
        """The searches to run for `question` (at least one; never raises on LLM trouble)."""
        ...


# --- parsing the model's replies -------------------------------------------------------------

# A list marker at the start of a line: "1.", "2)", "(3)", "4:", "-", "*", "•", "Query 2:", "Q1."
_LIST_MARKER = re.compile(
    r"^\s*(?:[-*•]+|\(?\d{1,2}\s*[.):]|(?:search\s+)?(?:query|question|rewrite|q)\s*\d{0,2}\s*[:.)-])\s*",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    r"^(?:here\s+(?:are|is)|sure|certainly|okay|ok\b|note\b|these\s+queries)", re.IGNORECASE
)
_WORD = re.compile(r"[^\W_]", re.UNICODE)
MAX_REWRITE_CHARS = 300


def _normalised(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def parse_rewrites(text: str, question: str, n: int) -> list[str]:
    """Up to `n` distinct rewrites from a reply with one query per line (see the module docstring)."""
    rewrites: list[str] = []
    seen = {_normalised(question)}
    for line in text.splitlines():
        line = _LIST_MARKER.sub("", line, count=1).strip()
        line = line.strip("\"'`“”*_ ").strip()
        if not line or not _WORD.search(line) or len(line) > MAX_REWRITE_CHARS:
            continue
        if line.endswith(":") or _PREAMBLE.match(line):
            continue
        key = _normalised(line)
        if not key or key in seen:
            continue
        seen.add(key)
        rewrites.append(line)
        if len(rewrites) == n:
            break
    return rewrites


_PASSAGE_LABEL = re.compile(r"^\s*(?:passage|answer|hypothetical passage)\s*:\s*", re.IGNORECASE)


def clean_passage(text: str) -> str:
    """The passage text without a leading "Passage:" label, code fences or extra whitespace."""
    text = text.strip().strip("`").strip()
    text = _PASSAGE_LABEL.sub("", text)
    return " ".join(text.split())


# --- the transforms --------------------------------------------------------------------------


def _ask(chat: ChatModel, messages: list[dict[str, str]], what: str, trace: Trace) -> str | None:
    """The model's reply text, or None (with a trace warning) when the request failed."""
    try:
        text, _finish_reason = chat.complete(messages)
    except Exception as exc:  # any LLM failure (GenerationError, timeout, ...): degrade, don't fail
        trace.warn(
            f"{what}: the LLM request failed ({describe_error(exc)}); retrieved with the question alone"
        )
        return None
    return text


class _LLMTransform:
    """A transform that asks the pipeline's LLM (`chat`) and fuses its variants with RRF (`rrf_k`)."""

    def __init__(self, config: MultiQueryConfig | HydeConfig, chat: ChatModel) -> None:
        self.config = config
        self.chat = chat

    @property
    def rrf_k(self) -> float:
        return self.config.rrf_k


class MultiQueryTransform(_LLMTransform):
    name = "multi-query"
    config: MultiQueryConfig

    def messages(self, question: str) -> list[dict[str, str]]:
        user = MULTI_QUERY_USER.format(n=self.config.n, question=question.strip())
        return [{"role": "system", "content": MULTI_QUERY_SYSTEM}, {"role": "user", "content": user}]

    def variants(self, question: str, trace: Trace) -> list[QueryVariant]:
        plain = QueryVariant.plain(question)
        with trace.stage("query_transform"):
            reply = _ask(self.chat, self.messages(question), "query_transform multi-query", trace)
        if reply is None:
            return [plain]
        rewrites = parse_rewrites(reply, question, self.config.n)
        if not rewrites:
            trace.warn(
                "query_transform multi-query: no usable rewrite in the LLM's reply "
                f"({reply.strip()[:120]!r}); "
                "retrieved with the question alone"
            )
            return [plain]
        variants = [QueryVariant(f"rewrite {i}", (text,), text) for i, text in enumerate(rewrites, start=1)]
        return [plain, *variants] if self.config.include_original else variants


class HydeTransform(_LLMTransform):
    name = "hyde"
    config: HydeConfig

    def messages(self, question: str) -> list[dict[str, str]]:
        user = HYDE_USER.format(question=question.strip())
        return [{"role": "system", "content": HYDE_SYSTEM}, {"role": "user", "content": user}]

    def variants(self, question: str, trace: Trace) -> list[QueryVariant]:
        passages: list[str] = []
        with trace.stage("query_transform"):
            for _ in range(self.config.n):
                reply = _ask(self.chat, self.messages(question), "query_transform hyde", trace)
                if reply is None:
                    break  # the server is failing: don't wait for it n times
                passage = clean_passage(reply)
                if passage and _normalised(passage) != _normalised(question):
                    passages.append(passage)
        if not passages:
            if not any("query_transform hyde" in w for w in trace.warnings):
                trace.warn(
                    "query_transform hyde: the LLM wrote no passage; retrieved with the question alone"
                )
            return [QueryVariant.plain(question)]
        if self.config.combine == "fuse":  # each passage searched on its own, lists fused by RRF
            searches = [
                QueryVariant(
                    f"hyde {i}",
                    (p,),
                    question if self.config.sparse_query == "question" else f"{question}\n{p}",
                )
                for i, p in enumerate(passages, start=1)
            ]
            return [QueryVariant.plain(question), *searches] if self.config.include_original else searches
        dense = (question, *passages) if self.config.include_original else tuple(passages)
        sparse = question if self.config.sparse_query == "question" else "\n".join([question, *passages])
        return [QueryVariant("hyde", dense, sparse)]


def make_query_transform(config: QueryTransformConfig, chat: ChatModel | None) -> QueryTransform | None:
    """The configured transform, or None for `name: none`."""
    if isinstance(config, NoQueryTransformConfig):
        return None
    if chat is None:
        raise ValueError(
            f"retrieval.query_transform ({config.name}) needs an LLM to call: configure an `openai` "
            "(or `local`) generator in the pipeline"
        )
    if isinstance(config, MultiQueryConfig):
        return MultiQueryTransform(config, chat)
    if isinstance(config, HydeConfig):
        return HydeTransform(config, chat)
    raise ValueError(f"unknown query transform {config!r}")  # unreachable: config validates names


# --- retrieving with the variants ------------------------------------------------------------


def _query_vectors(retriever: HybridRetriever, variants: Sequence[QueryVariant]) -> np.ndarray:
    """One query vector per variant: the mean of its texts' embeddings, all embedded in one batch.

    The mean of unit vectors is re-normalised when the embedder normalises (so inner-product
    scores stay cosines)."""
    texts = [text for variant in variants for text in variant.dense_texts]
    embedded = np.asarray(retriever.embedder.embed(texts), dtype=np.float32)
    vectors, start = [], 0
    for variant in variants:
        part = embedded[start : start + len(variant.dense_texts)]
        start += len(variant.dense_texts)
        mean = part.mean(axis=0)
        if np.allclose(np.linalg.norm(part, axis=1), 1.0, atol=1e-3):
            mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
        vectors.append(mean)
    return np.stack(vectors).astype(np.float32)


def search_variants(
    retriever: HybridRetriever,
    variants: Sequence[QueryVariant],
    dense_k: int,
    sparse_k: int,
    allowed: np.ndarray | None = None,
    where: dict[str, Any] | None = None,
) -> list[list[Fused]]:
    """Each variant's dense and sparse candidates fused by the pipeline's fusion (batched),
    under the same metadata filter (`allowed` rows, chroma `where`) as the question's own search."""
    if not variants:
        return []
    dense_rows, dense_scores = retriever.snapshot.dense.search_batch(
        _query_vectors(retriever, variants), dense_k, allowed=allowed, where=where
    )
    sparse = retriever.snapshot.sparse.search_batch(
        [retriever.analyzer(v.sparse_text) for v in variants], sparse_k, allowed=allowed
    )
    fused_lists = []
    for rows, scores, (sparse_rows, sparse_scores) in zip(dense_rows, dense_scores, sparse):
        rankings = {
            "dense": [(int(r), float(s)) for r, s in zip(rows, scores)],
            "sparse": [(int(r), float(s)) for r, s in zip(sparse_rows, sparse_scores)],
        }
        fused_lists.append(fuse(retriever.merged(rankings), retriever.config.fusion))
    return fused_lists


def fuse_variants(
    variants: Sequence[QueryVariant], fused_lists: Sequence[list[Fused]], rrf_k: float
) -> list[Fused]:
    """The per-variant fused lists fused again with RRF; one variant's list is returned as is.

    Each result keeps the `dense`/`sparse` scores from the first variant that found it, plus one
    `variant:<label>` entry per variant that did (its rank and fused score there)."""
    if len(fused_lists) == 1:
        return fused_lists[0]
    rankings = {
        f"variant:{variant.label}": [(f.row, f.score) for f in fused]
        for variant, fused in zip(variants, fused_lists)
    }
    merged = reciprocal_rank_fusion(rankings, k=rrf_k)
    first_seen: dict[int, Fused] = {}
    for fused in fused_lists:
        for entry in fused:
            first_seen.setdefault(entry.row, entry)
    for entry in merged:
        origin = first_seen[entry.row].retrievers
        entry.retrievers = {
            **{k: v for k, v in origin.items() if k in ("dense", "sparse")},
            **entry.retrievers,
        }
    return merged


def transformed_fusion(
    retriever: HybridRetriever,
    transform: QueryTransform,
    question: str,
    plain: list[Fused],
    trace: Trace,
    dense_k: int | None = None,
    sparse_k: int | None = None,
    allowed: np.ndarray | None = None,
    where: dict[str, Any] | None = None,
) -> list[Fused]:
    """The fused ranking for `question` under `transform`.

    `plain` is the question's own fused list (already computed by the caller), reused for the
    variant that is the question itself, so only the transform's extra searches run here."""
    variants = transform.variants(question, trace)
    if variants == [QueryVariant.plain(question)]:
        return plain  # fallback (or nothing to add): the plain result, searched once
    extra = [v for v in variants if v != QueryVariant.plain(question)]
    with trace.stage("transform_retrieval"):
        searched = iter(
            search_variants(
                retriever,
                extra,
                dense_k or retriever.config.dense_k,
                sparse_k or retriever.config.sparse_k,
                allowed=allowed,
                where=where,
            )
        )
        fused_lists = [plain if v == QueryVariant.plain(question) else next(searched) for v in variants]
        return fuse_variants(variants, fused_lists, transform.rrf_k)
