"""BM25Okapi over immutable segments, with statistics of the whole live corpus.

A segment's postings (`BM25Postings`: term frequencies in a CSC layout, one column per term the
segment holds, plus document lengths) are written once, when the segment is (by a commit or a
merge), and never change. Term columns are identified by *global* term ids from the index's
`Vocabulary` (append-only: ids never change, so segments written at different times agree).

The statistics come from the live corpus of the generation being read (`SegmentedBM25.open`):
N = live chunks, avgdl = their total length / N, df[t] = live chunks containing t (each
segment's df minus its deleted rows' postings). From those, each term's idf and each row's
length norm; a query's weights are then computed from the postings it touches:

    w[d, t] = idf[t] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl[d] / avgdl))

so a commit never rewrites old postings (their weights change with every commit's statistics:
precomputing them, as bm25s does, would mean rewriting every segment). Computing a weight per
touched posting costs a gather and three vector operations more than summing precomputed ones.

Scores equal `rank_bm25.BM25Okapi(live corpus, k1, b, epsilon).get_scores(query)`, quirks
included (checked by tests/test_bm25.py and, after updates and deletes, by tests/test_segments.py):

* idf[t] = log(N - df + 0.5) - log(df + 0.5); a term whose idf is strictly negative (it is
  in more than half of the documents) gets `epsilon * average_idf` instead, where
  average_idf is the mean idf over the whole (live) vocabulary *before* that replacement (so it
  may itself be negative on small corpora, and an idf of exactly 0 stays 0);
* a query term repeated n times contributes n times; unknown query terms contribute 0;
* avgdl = total tokens / N, empty documents included.

Why not bm25s directly: its idf variants cannot express rank-bm25's floor (its "robertson" idf
clamps a negative idf to 0), and it precomputes weights, which segments cannot keep exact.

Deliberate differences from rank-bm25, where it has no sane answer:

* N == 0 or an all-empty corpus: rank-bm25 raises ZeroDivisionError; here every search is
  empty and `get_scores` returns an empty/zero vector;
* k1 == 0, or b == 1 with empty documents: rank-bm25 computes 0/0 = NaN for documents that
  lack a query term (poisoning their whole score); here such a document just gets 0 from it.

Matching rule for `search`: a document is a hit only if it contains at least one query term
that is in the vocabulary, whatever its score. A document containing none of the terms is
not returned even though its score (0) may exceed that of a hit whose terms carry a
negative (epsilon-floored) idf, or equal a hit whose terms all have idf 0.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.indexes.layout import SPARSE_DIR
from ragkit.indexes.tokenize import Analyzer, BM25TokenizerConfig, make_analyzer

if TYPE_CHECKING:
    from ragkit.indexes.generation import GenerationView, SegmentView

FORMAT_VERSION = 2
VOCABULARY_FILE = "terms.txt"
_POSTINGS = ("terms", "indptr", "rows", "tf", "lengths")
# search_batch multiplies at most this many postings at once, which bounds the product
# (at most one entry, ~12 bytes, per posting) and scipy's temporaries.
_BATCH_POSTINGS = 1 << 22
# `search` accumulates densely over all documents once a query has more than
# n_docs / _DENSE_FACTOR postings (measured crossover vs np.unique: ~n_docs / 40).
_DENSE_FACTOR = 32
# `search` prunes candidates by a sampled score bound (see `_top_hits`) once a query matches at
# least _PRUNE_MIN_FACTOR * k postings, sampling ~_SAMPLE_FACTOR * k documents for the bound.
_PRUNE_MIN_FACTOR = 8
_SAMPLE_FACTOR = 32
# `_top_k` sorts up to this many candidates outright (measured: 400 candidates, lexsort 6 us vs
# argpartition and tie handling 13 us).
_SORT_ALL = 1024

Hits = tuple[np.ndarray, np.ndarray]


class BM25Config(ComponentConfig):
    """BM25Okapi; defaults equal rank-bm25's (k1=1.5, b=0.75, epsilon=0.25)."""

    name: Literal["bm25"] = "bm25"
    k1: float = Field(1.5, ge=0)
    b: float = Field(0.75, ge=0, le=1)
    epsilon: float = Field(0.25, ge=0)
    tokenizer: BM25TokenizerConfig = Field(default_factory=BM25TokenizerConfig)


# --- vocabulary --------------------------------------------------------------------------------


class Vocabulary:
    """Global term ids of an index: term i is line i of the generation's `terms.txt`.

    Append-only across generations (a commit copies its predecessor's list and appends the terms
    it meets first), so a segment's term ids stay valid in every later generation. Terms are
    word runs (`\\w+`), never containing a newline.
    """

    def __init__(self, terms: list[str], source: Path | None = None) -> None:
        self.terms = terms
        # dict(zip(...)) builds the 3.7M-term map of a 1M-chunk index in about half the time of
        # a comprehension over enumerate (measured 1.98 s under the profiler for the latter).
        self.ids = dict(zip(terms, range(len(terms))))
        # The immutable file `terms` were read from: saving copies it and appends only the new
        # terms instead of writing millions of lines again (0.7 s per commit at 1M chunks).
        self.source = source
        self.saved = len(terms) if source is not None else 0

    @classmethod
    def load(cls, generation_dir: Path | None) -> Vocabulary:
        path = generation_dir / VOCABULARY_FILE if generation_dir is not None else None
        if path is None or not path.exists():
            return cls([])
        text = path.read_text(encoding="utf-8")
        return cls(text.split("\n")[:-1] if text else [], source=path)

    @staticmethod
    def copy(previous_generation_dir: Path | None, generation_dir: Path) -> None:
        """Carry an unchanged vocabulary into a new generation without reading it."""
        source = previous_generation_dir / VOCABULARY_FILE if previous_generation_dir is not None else None
        if source is not None and source.exists():
            shutil.copyfile(source, generation_dir / VOCABULARY_FILE)
        else:
            Vocabulary([]).save(generation_dir)

    def __len__(self) -> int:
        return len(self.terms)

    def add(self, tokens: Iterable[str]) -> np.ndarray:
        """Ids of `tokens` (int64, in order), assigning new ids to terms met for the first time."""
        ids = self.ids
        terms = self.terms

        def term_id(token: str) -> int:
            found = ids.get(token)
            if found is None:
                found = ids[token] = len(terms)
                terms.append(token)
            return found

        return np.fromiter((term_id(t) for t in tokens), dtype=np.int64)

    def save(self, generation_dir: Path) -> None:
        target = generation_dir / VOCABULARY_FILE
        start = 0
        if self.source is not None and self.source.exists() and self.source.resolve() != target.resolve():
            shutil.copyfile(self.source, target)
            start = self.saved
        with open(target, "a" if start else "w", encoding="utf-8", newline="\n") as handle:
            for term in self.terms[start:]:
                handle.write(term)
                handle.write("\n")


# --- one segment's postings --------------------------------------------------------------------


class BM25Postings:
    """A segment's term frequencies: CSC over the segment's terms (sorted global ids)."""

    def __init__(self, terms: np.ndarray, indptr: np.ndarray, rows: np.ndarray, tf: np.ndarray, lengths: np.ndarray) -> None:
        self.terms = terms  # int64 [L]: global term id of column j, ascending
        self.indptr = indptr  # int64 [L + 1]
        self.rows = rows  # int32 [postings]: local row of each posting, ascending within a column
        self.tf = tf  # float32 [postings]: term frequency (an integer)
        self.lengths = lengths  # int64 [rows]: analyzed tokens per row

    @property
    def n_rows(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_term_ids(cls, documents: Iterable[np.ndarray]) -> BM25Postings:
        """Postings of documents given as arrays of global term ids (one per token)."""
        docs = list(documents)
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        if not docs or lengths.sum() == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32), lengths)
        ids = np.concatenate(docs)
        rows = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
        return cls._from_coo(ids, rows, np.ones(len(ids), dtype=np.float64), lengths)

    @classmethod
    def _from_coo(cls, ids: np.ndarray, rows: np.ndarray, tf: np.ndarray, lengths: np.ndarray) -> BM25Postings:
        """Sum duplicate (term, row) pairs and lay them out by term, then row."""
        terms, column = np.unique(ids, return_inverse=True)
        matrix = sp.coo_matrix((tf, (rows, column)), shape=(len(lengths), len(terms))).tocsc()
        matrix.sum_duplicates()
        matrix.sort_indices()
        return cls(
            terms.astype(np.int64),
            matrix.indptr.astype(np.int64),
            matrix.indices.astype(np.int32),
            matrix.data.astype(np.float32),
            lengths,
        )

    @classmethod
    def merge(cls, parts: Sequence[tuple[BM25Postings, np.ndarray]]) -> BM25Postings:
        """The live rows of each (postings, live mask), renumbered consecutively in order."""
        all_ids, all_rows, all_tf, lengths = [], [], [], []
        offset = 0
        for postings, live in parts:
            new_row = np.cumsum(live) - 1 + offset  # local row -> merged row (live rows only)
            ids = np.repeat(postings.terms, np.diff(postings.indptr))
            keep = live[postings.rows]
            all_ids.append(ids[keep])
            all_rows.append(new_row[postings.rows[keep]])
            all_tf.append(np.asarray(postings.tf)[keep].astype(np.float64))
            lengths.append(np.asarray(postings.lengths)[live])
            offset += int(np.count_nonzero(live))
        merged_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        ids = np.concatenate(all_ids) if all_ids else np.zeros(0, dtype=np.int64)
        if ids.size == 0:
            return cls.from_term_ids([np.zeros(0, dtype=np.int64)] * len(merged_lengths)) if len(merged_lengths) else cls.from_term_ids([])
        return cls._from_coo(ids, np.concatenate(all_rows), np.concatenate(all_tf), merged_lengths)

    def document_frequencies(self, deleted: np.ndarray | None = None) -> np.ndarray:
        """Per column: rows holding the term (not counting `deleted` rows)."""
        df = np.diff(self.indptr)
        if deleted is None or not deleted.any():
            return df
        hit = np.concatenate([[0], np.cumsum(deleted[self.rows], dtype=np.int64)])
        return df - (hit[self.indptr[1:]] - hit[self.indptr[:-1]])

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in _POSTINGS:
            np.save(directory / f"{name}.npy", np.asarray(getattr(self, name)), allow_pickle=False)
        params = {"format_version": FORMAT_VERSION, "rows": self.n_rows, "columns": len(self.terms), "postings": len(self.rows)}
        (directory / "params.json").write_text(json.dumps(params), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> BM25Postings:
        params = json.loads((directory / "params.json").read_text(encoding="utf-8"))
        if params.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported BM25 postings format {params.get('format_version')!r}")
        mode: Literal["r"] | None = "r" if mmap else None
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode=mode, allow_pickle=False) for name in _POSTINGS}
        postings = cls(**arrays)
        if postings.indptr.shape != (len(postings.terms) + 1,) or len(postings.lengths) != params["rows"]:
            raise ValueError(f"{directory}: BM25 arrays disagree with params.json")
        return postings


# --- scoring -----------------------------------------------------------------------------------


class BM25Index:
    """BM25Okapi scoring over one set of postings with given statistics.

    `BM25Index.build(corpus_tokens)` indexes a token corpus on its own (its statistics are its
    own: the oracle tests compare it with rank-bm25); `SegmentedBM25` builds one per segment
    with the statistics of the whole live generation.
    """

    def __init__(
        self,
        postings: BM25Postings,
        idf: np.ndarray,
        params: dict[str, Any],
        vocab: dict[str, int] | None = None,
    ) -> None:
        """`idf`: float64 per column (after the epsilon floor); `params`: k1, b, epsilon, avgdl,
        average_idf (what the statistics were)."""
        self.postings = postings
        self.vocab = vocab or {}  # term -> column (only for a standalone index)
        self.doc_lengths = postings.lengths
        self.idf = idf
        self.k1 = float(params["k1"])
        self.b = float(params["b"])
        self.epsilon = float(params["epsilon"])
        self.avgdl = float(params["avgdl"])
        self.average_idf = float(params["average_idf"])
        # Each row's length norm k1 * (1 - b + b * dl / avgdl), for the whole segment at once.
        lengths = np.asarray(postings.lengths, dtype=np.float64)
        self._norm = self.k1 * (1 - self.b + self.b * lengths / self.avgdl) if self.avgdl else np.full(len(lengths), self.k1 * (1 - self.b))
        # Raw arrays, used directly in the hot path. np.asarray views a memory map as a plain
        # ndarray (same buffer): slicing an np.memmap goes through its Python-level
        # __array_finalize__, which made gathering postings ~1.7x slower.
        self._tf = np.asarray(postings.tf)
        self._indices = np.asarray(postings.rows)
        self._indptr = np.asarray(postings.indptr)

    @classmethod
    def build(cls, corpus_tokens: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> BM25Index:
        """Index `corpus_tokens` (one token list per document, document i -> index i)."""
        vocabulary = Vocabulary([])
        postings = BM25Postings.from_term_ids(vocabulary.add(doc) for doc in corpus_tokens)
        df = np.zeros(len(vocabulary), dtype=np.float64)
        df[postings.terms] = np.diff(postings.indptr)
        idf, average_idf = corpus_idf(df, len(postings.lengths), epsilon)
        total = int(np.asarray(postings.lengths).sum())
        avgdl = total / len(postings.lengths) if len(postings.lengths) else 0.0
        params = {"k1": k1, "b": b, "epsilon": epsilon, "avgdl": avgdl, "average_idf": average_idf}
        # Columns of a standalone index are its vocabulary ids (postings.terms is 0..V-1).
        return cls(postings, idf[postings.terms], params, vocab=vocabulary.ids)

    # --- basic properties --------------------------------------------------------------

    @property
    def n_docs(self) -> int:
        return len(self.doc_lengths)

    @property
    def n_terms(self) -> int:
        return len(self._indptr) - 1

    def __len__(self) -> int:
        return self.n_docs

    def __repr__(self) -> str:
        return f"BM25Index(n_docs={self.n_docs}, n_terms={self.n_terms}, k1={self.k1}, b={self.b}, epsilon={self.epsilon})"

    # --- scoring -----------------------------------------------------------------------
    #
    # Every path adds a document's contributions in float64, in ascending term-column order,
    # one `count * weight` per distinct query term: `get_scores`, `search` (np.bincount) and
    # `search_batch` (scipy's sparse matmul, which accumulates row by row in column order)
    # therefore produce bit-identical scores, so their rankings agree even on near-ties.

    def _query_terms(self, query_tokens: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Known term columns of a query, ascending, and how often each occurs in it."""
        if isinstance(query_tokens, str):  # iterating it would silently yield characters
            raise TypeError("query_tokens must be a sequence of tokens, not a str")
        counts: dict[int, int] = {}
        get = self.vocab.get
        for tok in query_tokens:
            col = get(tok)
            if col is not None:
                counts[col] = counts.get(col, 0) + 1
        cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        order = np.argsort(cols)
        return cols[order], np.fromiter(counts.values(), dtype=np.float64, count=len(counts))[order]

    def _gather(self, cols: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Postings of `cols`: (doc ids, count * weight in float64)."""
        if cols.size == 0:
            return self._indices[:0], np.empty(0, dtype=np.float64)
        # A query has few terms: contiguous slice copies beat a vectorised fancy-index gather.
        bounds = [(int(self._indptr[c]), int(self._indptr[c + 1])) for c in cols.tolist()]
        docs = np.concatenate([self._indices[lo:hi] for lo, hi in bounds])
        tf = np.concatenate([self._tf[lo:hi] for lo, hi in bounds])
        contrib = self._weights(tf, docs, np.repeat(self.idf[cols], [hi - lo for lo, hi in bounds]))
        if (counts != 1).any():
            contrib *= np.repeat(counts, [hi - lo for lo, hi in bounds])
        return docs, contrib

    def _weights(self, tf: np.ndarray, docs: np.ndarray, idf: np.ndarray) -> np.ndarray:
        """BM25 weights of postings, in float64, in rank-bm25's operation order."""
        tf = tf.astype(np.float64)
        return idf * (tf * (self.k1 + 1) / (tf + self._norm[docs]))

    def _hits(
        self, cols: np.ndarray, counts: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every allowed document containing one of `cols` (ascending) and its score."""
        docs, contrib = self._gather(cols, counts)
        if docs.size == 0:
            return _empty_hits()
        return self._accumulate(docs, contrib, allowed)

    def _top_hits(
        self, cols: np.ndarray, counts: np.ndarray, allowed: np.ndarray | None, k: int
    ) -> Hits:
        """`_top_k(*self._hits(...), k)`, with the candidates pruned first on the dense path.

        Most of a query's matched documents cannot reach its top k, and sorting or
        partitioning all of them dominated the query (~12K matches per query at 100K docs).
        A lower bound t on the k-th best score comes from a sample of *distinct* documents: the
        postings of one of the query's term columns (a column lists each document once). Any k
        distinct documents scoring >= t prove that the k-th best score is >= t, so every
        document scoring below t is dropped before the exact top-k; ties at the cut survive.
        """
        docs, contrib = self._gather(cols, counts)
        if docs.size == 0:
            return _empty_hits()
        if docs.size * _DENSE_FACTOR < self.n_docs or docs.size < _PRUNE_MIN_FACTOR * k:
            return _top_k(*self._accumulate(docs, contrib, allowed), k)
        scores = np.bincount(docs, weights=contrib, minlength=self.n_docs)
        lengths = self._indptr[cols + 1] - self._indptr[cols]
        long_enough = np.flatnonzero(lengths >= k)
        if long_enough.size:
            # The rarest term with >= k documents: its documents score highest on average, so
            # its k-th best is the tightest bound (measured: ~2x fewer survivors than the
            # commonest term's at 100K docs).
            col = int(cols[long_enough[np.argmin(lengths[long_enough])]])
            sample = self._indices[self._indptr[col] : self._indptr[col + 1]]
            if allowed is not None:
                sample = sample[allowed[sample]]
            if sample.size >= k:
                # Spread over the column, not its first rows only: ~_SAMPLE_FACTOR * k documents.
                sampled = scores[sample[:: max(1, sample.size // (_SAMPLE_FACTOR * k))]]
                threshold = np.partition(sampled, sampled.size - k)[sampled.size - k]
                if threshold > 0:
                    # Documents without a query term score exactly 0, so this is the candidate
                    # set, sorted and unique, in one vectorised pass (cheaper than filtering
                    # the postings and de-duplicating them).
                    cand = np.flatnonzero(scores >= threshold)
                else:  # zero or negative weights: a non-matching document could pass the bound
                    cand = _sorted_unique(docs[scores[docs] >= threshold])
                if allowed is not None:
                    cand = cand[allowed[cand]]
                return _top_k(cand, scores[cand], k)
        cand = _sorted_unique(docs)
        if allowed is not None:
            cand = cand[allowed[cand]]
        return _top_k(cand, scores[cand], k)

    def _accumulate(
        self, docs: np.ndarray, contrib: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sum gathered postings per document: the allowed documents hit and their scores."""
        if docs.size * _DENSE_FACTOR >= self.n_docs:
            # Many postings: dense accumulation over all documents is O(n_docs) but sort-free.
            scores = np.bincount(docs, weights=contrib, minlength=self.n_docs)
            hit = np.zeros(self.n_docs, dtype=bool)
            hit[docs] = True
            if allowed is not None:
                hit &= allowed
            cand = np.flatnonzero(hit)
            return cand, scores[cand]
        # Few postings: sort them instead of touching all n_docs. bincount adds in the same
        # (posting) order as above, so both branches give identical sums.
        cand, inverse = np.unique(docs, return_inverse=True)
        scores = np.bincount(inverse, weights=contrib)
        if allowed is not None:
            keep = allowed[cand]
            cand, scores = cand[keep], scores[keep]
        return cand, scores

    def get_scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document (float64, length n_docs), as rank-bm25 computes it."""
        docs, contrib = self._gather(*self._query_terms(query_tokens))
        scores = np.bincount(docs, weights=contrib, minlength=self.n_docs)
        return scores.astype(np.float64, copy=False)  # bincount of nothing is int64

    def search_columns(self, cols: np.ndarray, counts: np.ndarray, k: int, allowed: np.ndarray | None = None) -> Hits:
        """`search` for a query given as ascending columns and how often each occurs in it."""
        allowed = self._check_search_args(k, allowed)
        if k == 0:
            return _empty_hits()
        return self._top_hits(cols, counts, allowed, k)

    def search(
        self, query_tokens: Sequence[str], k: int, allowed: np.ndarray | None = None
    ) -> Hits:
        """Top-`k` hits as (doc indices, scores): score descending, ties by lower index.

        Only documents containing a query term are hits (see the module docstring), and with
        `allowed` (a boolean mask over documents) only those where it is True.
        """
        allowed = self._check_search_args(k, allowed)
        if k == 0:
            return _empty_hits()
        return self._top_hits(*self._query_terms(query_tokens), allowed, k)

    def search_batch(
        self, queries: Sequence[Sequence[str]], k: int, allowed: np.ndarray | None = None
    ) -> list[Hits]:
        """`search` for each query (same `allowed` mask for all); results equal `search`'s.

        Queries with few postings are scored in chunks, each as one sparse product
        (queries x terms) @ (terms x docs) whose output holds only their matched documents.
        """
        allowed = self._check_search_args(k, allowed)
        if k == 0 or not queries:
            return [_empty_hits() for _ in queries]
        parsed = [self._query_terms(q) for q in queries]
        indptr = self._indptr
        sizes = np.array([int((indptr[cols + 1] - indptr[cols]).sum()) for cols, _ in parsed], dtype=np.int64)
        results: list[Hits] = [_empty_hits()] * len(parsed)
        # A query with many postings is scored alone by `search`'s dense path: its product
        # row would be nearly dense anyway, and measured ~1.5x slower than that path.
        dense = sizes * _DENSE_FACTOR >= self.n_docs
        for i in np.flatnonzero(dense).tolist():
            results[i] = self._top_hits(*parsed[i], allowed, k)
        sparse = np.flatnonzero(~dense)
        postings = np.cumsum(sizes[sparse])
        start = 0
        while start < sparse.size:
            # Bound the product's size: queries until ~_BATCH_POSTINGS postings (at least one).
            budget = (postings[start - 1] if start else 0) + _BATCH_POSTINGS
            stop = max(start + 1, int(np.searchsorted(postings, budget, side="right")))
            chunk = sparse[start:stop].tolist()
            for i, hits in zip(chunk, self._search_chunk([parsed[i] for i in chunk], k, allowed)):
                results[i] = hits
            start = stop
        return results

    def _search_chunk(
        self, parsed: list[tuple[np.ndarray, np.ndarray]], k: int, allowed: np.ndarray | None
    ) -> list[Hits]:
        all_cols = np.concatenate([cols for cols, _ in parsed])
        # Only the chunk's terms are copied out, as float64 so that the product's sums are
        # bit-identical to `search`'s (no float64 copy of the whole index is ever kept).
        terms, local = np.unique(all_cols, return_inverse=True)
        weights = self._by_term[terms].astype(np.float64)  # term frequencies, then weights
        weights.data = self._weights(weights.data, weights.indices, np.repeat(self.idf[terms], np.diff(weights.indptr)))
        if weights.nnz and not weights.data.min() > 0:
            # A zero or negative weight lets a hit's score sum to exactly 0, and sparse matmul
            # drops exact zeros from its output, i.e. would lose hits: score one by one.
            return [_top_k(*self._hits(cols, counts, allowed), k) for cols, counts in parsed]
        # `local` keeps each query's columns ascending (np.unique preserves order), so the
        # product adds a document's contributions in the same order as `search`.
        queries = sp.csr_matrix(
            (
                np.concatenate([counts for _, counts in parsed]),
                local,
                np.concatenate([[0], np.cumsum([cols.size for cols, _ in parsed])]),
            ),
            shape=(len(parsed), terms.size),
        )
        product = (queries @ weights).tocsr()  # (queries, docs), float64
        results = []
        for i in range(len(parsed)):
            lo, hi = product.indptr[i], product.indptr[i + 1]
            cand, scores = product.indices[lo:hi], product.data[lo:hi]
            if allowed is not None:
                keep = allowed[cand]
                cand, scores = cand[keep], scores[keep]
            results.append(_top_k(cand, scores, k))
        return results

    @functools.cached_property
    def _by_term(self) -> sp.csr_matrix:
        """The term frequencies as a (terms x docs) CSR matrix: the postings' buffers, no copy."""
        return sp.csr_matrix(
            (self._tf, self._indices, self._indptr),
            shape=(self.n_terms, self.n_docs),
            copy=False,
        )

    def _check_search_args(self, k: int, allowed: np.ndarray | None) -> np.ndarray | None:
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if allowed is None:
            return None
        allowed = np.asarray(allowed)
        if allowed.dtype != np.bool_ or allowed.shape != (self.n_docs,):
            raise ValueError(
                f"allowed must be a boolean mask of shape ({self.n_docs},), "
                f"got {allowed.dtype} {allowed.shape}"
            )
        return allowed


def corpus_idf(df: np.ndarray, n_docs: int, epsilon: float) -> tuple[np.ndarray, float]:
    """(idf per term id, average idf) as rank-bm25 computes them, over the terms with df > 0
    (the live vocabulary); ids with df == 0 get 0 (no live row holds them)."""
    present = df > 0
    raw = np.zeros(len(df), dtype=np.float64)
    raw[present] = np.log(n_docs - df[present] + 0.5) - np.log(df[present] + 0.5)
    n_terms = int(np.count_nonzero(present))
    # rank-bm25 averages over the vocabulary before flooring; math.fsum keeps the mean
    # independent of summation order (and so of how the corpus is split into segments).
    average_idf = math.fsum(raw[present].tolist()) / n_terms if n_terms else 0.0
    idf = np.where(raw < 0, epsilon * average_idf, raw)
    idf[~present] = 0.0
    return idf, average_idf


class SegmentedBM25:
    """`SparseIndex` over a generation: one `BM25Index` per segment, scored with the statistics of
    the generation's live rows; hits are global rows, best first, ties by lower row."""

    def __init__(self, parts: list[tuple[int, BM25Index, np.ndarray | None]], vocabulary: Vocabulary, rows: int) -> None:
        self.parts = parts  # (base row, scorer, live mask or None)
        self.vocabulary = vocabulary
        self.rows = rows
        self._terms = [np.asarray(index.postings.terms) for _, index, _ in parts]
        self.statistics: dict[str, float] = {}  # of the live corpus: documents, avgdl, average_idf, terms

    @classmethod
    def open(cls, generation: GenerationView, config: BM25Config) -> SegmentedBM25:
        vocabulary = Vocabulary.load(generation.directory)
        loaded = [(s, BM25Postings.load(s.directory / SPARSE_DIR)) for s in generation.segments]
        df = np.zeros(len(vocabulary), dtype=np.float64)
        n_live = 0
        total_length = 0
        for segment, postings in loaded:
            if postings.n_rows != segment.chunks:
                raise ValueError(f"{segment.directory / SPARSE_DIR}: {postings.n_rows} rows, the segment has {segment.chunks}")
            if len(postings.terms) and int(postings.terms[-1]) >= len(vocabulary):
                raise ValueError(f"{segment.directory / SPARSE_DIR}: term ids beyond the vocabulary ({len(vocabulary)} terms)")
            df[np.asarray(postings.terms)] += postings.document_frequencies(segment.deleted)
            live = segment.live
            n_live += int(np.count_nonzero(live))
            total_length += int(np.asarray(postings.lengths)[live].sum())
        idf, average_idf = corpus_idf(df, n_live, config.epsilon)
        avgdl = total_length / n_live if n_live else 0.0
        params = {"k1": config.k1, "b": config.b, "epsilon": config.epsilon, "avgdl": avgdl, "average_idf": average_idf}
        parts = [
            (segment.base, BM25Index(postings, idf[np.asarray(postings.terms)], params), None if segment.deleted is None else segment.live)
            for segment, postings in loaded
        ]
        index = cls(parts, vocabulary, generation.rows)
        index.statistics = {"documents": n_live, "avgdl": avgdl, "average_idf": average_idf, "terms": int(np.count_nonzero(df))}
        return index

    def __len__(self) -> int:
        return self.rows

    def _query(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(tokens, str):  # iterating it would silently yield characters
            raise TypeError("query tokens must be a sequence of tokens, not a str")
        counts: dict[int, int] = {}
        get = self.vocabulary.ids.get
        for token in tokens:
            term = get(token)
            if term is not None:
                counts[term] = counts.get(term, 0) + 1
        ids = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        order = np.argsort(ids)
        return ids[order], np.fromiter(counts.values(), dtype=np.float64, count=len(counts))[order]

    def search(self, tokens: Sequence[str], k: int, allowed: np.ndarray | None = None) -> Hits:
        return self.search_batch([tokens], k, allowed)[0]

    def search_batch(
        self, queries: Sequence[Sequence[str]], k: int, allowed: np.ndarray | None = None
    ) -> list[Hits]:
        """Top-k global rows per query; `allowed`: a bool mask over global rows (live rows only
        are ever returned, whatever it says)."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if allowed is not None and (allowed.dtype != np.bool_ or allowed.shape != (self.rows,)):
            raise ValueError(f"allowed must be a boolean mask of shape ({self.rows},), got {allowed.dtype} {allowed.shape}")
        parsed = [self._query(q) for q in queries]
        per_part: list[list[Hits]] = []
        for (base, index, live), terms in zip(self.parts, self._terms):
            mask = live
            if allowed is not None:
                mask = allowed[base : base + index.n_docs] if live is None else live & allowed[base : base + index.n_docs]
            hits = []
            for ids, counts in parsed:
                position = np.searchsorted(terms, ids)
                inside = position < len(terms)
                found = np.zeros(len(ids), dtype=bool)
                found[inside] = terms[position[inside]] == ids[inside]
                docs, scores = index.search_columns(position[found], counts[found], k, mask)
                hits.append((docs + base, scores))
            per_part.append(hits)
        results = []
        for q in range(len(parsed)):
            parts = [hits[q] for hits in per_part if hits[q][0].size]
            if not parts:
                results.append(_empty_hits())
            elif len(parts) == 1:
                results.append(parts[0])
            else:
                docs = np.concatenate([d for d, _ in parts])
                scores = np.concatenate([s for _, s in parts])
                results.append(_top_k(docs, scores, k))
        return results

    def get_scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every global row (deleted rows: 0)."""
        ids, counts = self._query(tokens)
        out = np.zeros(self.rows, dtype=np.float64)
        for (base, index, live), terms in zip(self.parts, self._terms):
            position = np.searchsorted(terms, ids)
            inside = position < len(terms)
            found = np.zeros(len(ids), dtype=bool)
            found[inside] = terms[position[inside]] == ids[inside]
            docs, contrib = index._gather(position[found], counts[found])
            scores = np.bincount(docs, weights=contrib, minlength=index.n_docs).astype(np.float64)
            if live is not None:
                scores[~live] = 0.0
            out[base : base + index.n_docs] = scores
        return out


# --- the sparse index component ------------------------------------------------------------------


@register("sparse_index", "bm25", BM25Config)
class BM25Backend:
    """BM25Okapi over the analyzed chunk texts, equal to rank-bm25's scores on the live corpus."""

    def __init__(self, config: BM25Config) -> None:
        self.config = config
        self.analyzer: Analyzer = make_analyzer(config.tokenizer)

    def writer(self, current: GenerationView | None) -> BM25Writer:
        return BM25Writer(self.analyzer, current.directory if current is not None else None)

    def open(self, generation: GenerationView) -> SegmentedBM25:
        return SegmentedBM25.open(generation, self.config)

    def verify(self, generation: GenerationView) -> tuple[list[str], str]:
        """(problems, summary): every segment's postings hold exactly its chunks' analyzed texts
        (lengths and term frequencies) under the generation's vocabulary."""
        vocabulary = Vocabulary.load(generation.directory)
        problems: list[str] = []
        rows = 0
        for segment in generation.segments:
            where = segment.directory / SPARSE_DIR
            try:
                postings = BM25Postings.load(where)
            except (OSError, ValueError) as exc:
                problems.append(f"{where}: {exc}")
                continue
            texts = list(segment.store.iter_chunk_texts())
            if postings.n_rows != len(texts):
                problems.append(f"{where}: {postings.n_rows} rows, the segment's store {len(texts)} chunks")
                continue
            expected = BM25Postings.from_term_ids(
                np.array([vocabulary.ids.get(t, -1) for t in self.analyzer(text)], dtype=np.int64) for text in texts
            )
            if (np.asarray(expected.terms) < 0).any():
                problems.append(f"{where}: a chunk has terms missing from the vocabulary ({VOCABULARY_FILE})")
            elif not (
                np.array_equal(expected.lengths, postings.lengths)
                and np.array_equal(expected.terms, postings.terms)
                and np.array_equal(expected.indptr, postings.indptr)
                and np.array_equal(expected.rows, postings.rows)
                and np.array_equal(expected.tf, postings.tf)
            ):
                bad = np.flatnonzero(np.asarray(expected.lengths) != np.asarray(postings.lengths))
                what = f"rows {bad[:5].tolist()} differ in length" if bad.size else "terms or frequencies differ"
                problems.append(f"{where}: postings differ from the chunks' analyzed text ({what})")
            rows += len(texts)
        return problems, f"{rows} rows in {len(generation.segments)} segments; postings match every chunk's analyzed text"


class BM25Writer:
    """The sparse side of one commit: postings of new segments, merges, then the vocabulary."""

    def __init__(self, analyzer: Analyzer, previous_generation_dir: Path | None) -> None:
        self.analyzer = analyzer
        self.previous_generation_dir = previous_generation_dir
        # Loaded only when a new segment's texts are analyzed: a delete or a merge keeps the
        # term ids as they are, so it copies the file without parsing millions of terms.
        self._vocabulary: Vocabulary | None = None

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            self._vocabulary = Vocabulary.load(self.previous_generation_dir)
        return self._vocabulary

    def write_segment(self, texts: Iterable[str], directory: Path) -> None:
        """Postings of a new segment's chunk texts (local row i = the i-th text)."""
        analyze, add = self.analyzer, self.vocabulary.add
        BM25Postings.from_term_ids(add(analyze(text)) for text in texts).save(directory / SPARSE_DIR)

    def merge_segments(self, parts: Sequence[SegmentView], directory: Path) -> None:
        """Postings of the live rows of `parts`, in order (nothing is re-analyzed)."""
        loaded = [(BM25Postings.load(p.directory / SPARSE_DIR), p.live) for p in parts]
        BM25Postings.merge(loaded).save(directory / SPARSE_DIR)

    def finish(self, generation_dir: Path) -> None:
        if self._vocabulary is None:
            Vocabulary.copy(self.previous_generation_dir, generation_dir)
        else:
            self._vocabulary.save(generation_dir)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """`np.unique(values)` for a 1-d int array; ~4x faster than np.unique on ~1K values (its
    per-call overhead dominates small arrays)."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _empty_hits() -> Hits:
    return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)


def _top_k(docs: np.ndarray, scores: np.ndarray, k: int) -> Hits:
    """The k best `docs` by score desc, ties by lower doc, in O(len) via argpartition."""
    if docs.size <= _SORT_ALL:
        order = np.lexsort((docs, -scores))[:k]  # small: one sort beats partition + masks
        return docs[order].astype(np.int64), scores[order]
    if docs.size > k:
        # argpartition may pick any of several docs tied at the k-th score; keep everything
        # strictly better, then fill with the lowest-index ties.
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        keep = scores > kth
        ties = np.flatnonzero(scores == kth)
        need = k - int(np.count_nonzero(keep))
        if ties.size > need:
            ties = ties[np.argsort(docs[ties], kind="stable")[:need]]
        keep[ties] = True
        docs, scores = docs[keep], scores[keep]
    order = np.lexsort((docs, -scores))
    return docs[order].astype(np.int64), scores[order]
