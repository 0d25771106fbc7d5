"""BM25Okapi as a precomputed sparse (doc x term) weight matrix.

Every (doc, term) weight

    w[d, t] = idf[t] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl[d] / avgdl))

is computed once at build time and stored in a CSC matrix (one column per term), the eager
scoring scheme of bm25s. A query's scores are then the sum of a few columns: a gather of
their postings and one `np.bincount`, with no Python loop over documents; `search_batch`
scores many queries at once as a sparse (queries x terms) @ (terms x docs) product.

Scores equal `rank_bm25.BM25Okapi(corpus, k1, b, epsilon).get_scores(query)`, quirks
included (checked by tests/test_bm25.py against rank-bm25 itself):

* idf[t] = log(N - df + 0.5) - log(df + 0.5); a term whose idf is strictly negative (it is
  in more than half of the documents) gets `epsilon * average_idf` instead, where
  average_idf is the mean idf over the whole vocabulary *before* that replacement (so it may
  itself be negative on small corpora, and an idf of exactly 0 stays 0);
* a query term repeated n times contributes n times; unknown query terms contribute 0;
* avgdl = total tokens / N, empty documents included.

Why not bm25s directly: its idf variants cannot express rank-bm25's floor. Its "robertson"
idf clamps a negative idf to 0 (`_score_idf_robertson`, `allow_negative` is never set), so
`BM25(method="atire", idf_method="robertson")` matches BM25Okapi only when no term is in more
than half the documents or epsilon == 0; the other idf variants are different formulas.
The matrix itself is a few lines of scipy, and owning it lets us add the allowed-docs mask
and memory-mapped loading cheaply.

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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.indexes.tokenize import Analyzer, BM25TokenizerConfig, make_analyzer

FORMAT_VERSION = 1
_ARRAYS = ("data", "indices", "indptr", "doc_lengths", "idf")
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


@register("sparse_index", "bm25", BM25Config)
class BM25Backend:
    """BM25Okapi over the analyzed chunk texts, equal to rank-bm25's scores (this module's docstring)."""

    def __init__(self, config: BM25Config) -> None:
        self.config = config
        self.analyzer: Analyzer = make_analyzer(config.tokenizer)

    def write(self, texts: Sequence[str], directory: Path) -> None:
        """Index `texts` (chunk i -> document i) into `directory`. `texts` is iterated twice and
        re-analyzed each time: cheaper than holding every token as a Python string."""
        c = self.config
        BM25Index.build(_Analyzed(texts, self.analyzer), k1=c.k1, b=c.b, epsilon=c.epsilon).save(directory)

    def open(self, directory: Path) -> BM25Index:
        return BM25Index.load(directory)

    def verify(self, directory: Path, texts: Sequence[str] | None) -> tuple[list[str], str]:
        """(problems, summary): every document of the index has the length and the terms of its
        chunk's analyzed text, and every term occurs in some chunk. `texts`: the chunk texts in
        row order (None: the store is broken, only the index itself is checked)."""
        index = BM25Index.load(directory)
        n = index.n_docs
        if texts is None:
            return [], f"{n} documents (not compared: the store could not be read)"
        problems = []
        if n != len(texts):
            return [f"BM25 holds {n} documents, the store {len(texts)} chunks"], ""
        structure = sp.csc_matrix(
            (np.ones(len(index._indices), dtype=np.int8), index._indices, index._indptr),
            shape=(index.n_docs, index.n_terms),
        ).tocsr()
        lengths = np.asarray(index.doc_lengths)
        seen_terms = np.zeros(index.n_terms, dtype=bool)
        vocab = index.vocab
        for row, text in enumerate(texts):
            tokens = self.analyzer(text)
            if len(tokens) != int(lengths[row]):
                problems.append(f"row {row}: BM25 length {int(lengths[row])} != {len(tokens)} analyzed tokens")
                continue
            try:
                wanted = sorted({vocab[t] for t in tokens})
            except KeyError as exc:
                problems.append(f"row {row}: term {exc.args[0]!r} is not in the BM25 vocabulary")
                continue
            have = sorted(structure.indices[structure.indptr[row] : structure.indptr[row + 1]].tolist())
            if have != wanted:
                problems.append(f"row {row}: BM25 terms differ from the chunk's text")
            seen_terms[wanted] = True
        if not problems and not seen_terms.all():
            problems.append(f"{int((~seen_terms).sum())} BM25 terms occur in no chunk")
        return problems, f"{n} documents; lengths and terms match every chunk's analyzed text"


class _Analyzed(Sequence[list[str]]):
    """`texts` analyzed on the fly each time they are iterated (BM25Index.build iterates twice)."""

    def __init__(self, texts: Sequence[str], analyzer: Analyzer) -> None:
        self.texts = texts
        self.analyzer = analyzer

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self) -> Any:
        analyzer = self.analyzer
        for text in self.texts:
            yield analyzer(text)

    def __getitem__(self, i: Any) -> Any:
        raise TypeError("analyzed texts are iterated, not indexed")


class BM25Index:
    """A BM25Okapi index over pre-tokenized documents; build with `BM25Index.build`."""

    def __init__(
        self,
        matrix: sp.csc_matrix,
        vocab: dict[str, int],
        doc_lengths: np.ndarray,
        idf: np.ndarray,
        params: dict[str, Any],
    ) -> None:
        """Wrap already-computed parts; use `build` or `load` rather than calling this."""
        self.matrix = matrix  # (n_docs, n_terms) weights; column t holds term t's postings
        self.vocab = vocab  # term -> column
        self.doc_lengths = doc_lengths
        self.idf = idf  # float64, after the epsilon floor
        self.k1 = float(params["k1"])
        self.b = float(params["b"])
        self.epsilon = float(params["epsilon"])
        self.avgdl = float(params["avgdl"])
        self.average_idf = float(params["average_idf"])
        self.dtype = np.dtype(params["dtype"])
        # Raw arrays, used directly in the hot path (no scipy dispatch per query). np.asarray
        # views a memory map as a plain ndarray (same buffer): slicing an np.memmap goes through
        # its Python-level __array_finalize__, which made gathering postings ~1.7x slower.
        self._data = np.asarray(matrix.data)
        self._indices = np.asarray(matrix.indices)
        self._indptr = np.asarray(matrix.indptr)

    # --- construction ------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        corpus_tokens: Sequence[Sequence[str]],
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
        dtype: Any = np.float32,
    ) -> BM25Index:
        """Index `corpus_tokens` (one token list per document, document i -> index i)."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"dtype must be a floating type, got {dtype}")
        n_docs = len(corpus_tokens)
        vocab: dict[str, int] = {}
        setdefault = vocab.setdefault
        doc_lengths = np.fromiter((len(doc) for doc in corpus_tokens), dtype=np.int64, count=n_docs)
        total = int(doc_lengths.sum())
        # Term ids in first-occurrence order (rank-bm25's dict order), one per token.
        term_ids = np.fromiter(
            (setdefault(tok, len(vocab)) for doc in corpus_tokens for tok in doc),
            dtype=np.int64,
            count=total,
        )
        n_terms = len(vocab)
        doc_ids = np.repeat(np.arange(n_docs, dtype=np.int64), doc_lengths)
        # Duplicate (doc, term) pairs are summed into term frequencies.
        tf = sp.coo_matrix(
            (np.ones(total, dtype=np.float64), (doc_ids, term_ids)), shape=(n_docs, n_terms)
        ).tocsc()
        tf.sum_duplicates()
        tf.sort_indices()

        df = np.diff(tf.indptr).astype(np.float64)
        raw_idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
        # rank-bm25 averages over the vocabulary before flooring; math.fsum keeps the mean
        # independent of summation order.
        average_idf = math.fsum(raw_idf.tolist()) / n_terms if n_terms else 0.0
        idf = np.where(raw_idf < 0, epsilon * average_idf, raw_idf)

        avgdl = total / n_docs if n_docs else 0.0
        weights = tf.data  # float64 term frequencies, >= 1
        if weights.size:  # postings exist only if total > 0, so avgdl > 0 here
            dl = doc_lengths[tf.indices]
            col_idf = np.repeat(idf, np.diff(tf.indptr))
            # Same operation order as rank-bm25, in float64, then stored as `dtype`.
            weights = col_idf * (weights * (k1 + 1) / (weights + k1 * (1 - b + b * dl / avgdl)))
        matrix = sp.csc_matrix(
            (weights.astype(dtype), tf.indices, tf.indptr), shape=(n_docs, n_terms), copy=False
        )
        params = {
            "k1": k1, "b": b, "epsilon": epsilon, "avgdl": avgdl,
            "average_idf": average_idf, "dtype": dtype.name,
        }  # fmt: skip
        return cls(matrix, vocab, doc_lengths, idf, params)

    # --- basic properties --------------------------------------------------------------

    @property
    def n_docs(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_terms(self) -> int:
        return self.matrix.shape[1]

    def __len__(self) -> int:
        return self.n_docs

    def __repr__(self) -> str:
        return (
            f"BM25Index(n_docs={self.n_docs}, n_terms={self.n_terms}, k1={self.k1}, "
            f"b={self.b}, epsilon={self.epsilon}, dtype={self.dtype.name})"
        )

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
        contrib = np.concatenate([self._data[lo:hi] for lo, hi in bounds]).astype(np.float64)
        if (counts != 1).any():
            contrib *= np.repeat(counts, [hi - lo for lo, hi in bounds])
        return docs, contrib

    def _hits(
        self, cols: np.ndarray, counts: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every allowed document containing one of `cols` (ascending) and its score."""
        docs, contrib = self._gather(cols, counts)
        if docs.size == 0:
            return _empty_hits()
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
        """`_hits` from already gathered postings."""
        if docs.size * _DENSE_FACTOR >= self.n_docs:
            scores = np.bincount(docs, weights=contrib, minlength=self.n_docs)
            hit = np.zeros(self.n_docs, dtype=bool)
            hit[docs] = True
            if allowed is not None:
                hit &= allowed
            cand = np.flatnonzero(hit)
            return cand, scores[cand]
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
        weights = self._by_term[terms].astype(np.float64)
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
        """The weights as a (terms x docs) CSR matrix: the same buffers as `matrix`, no copy."""
        return sp.csr_matrix(
            (self._data, self._indices, self._indptr),
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

    # --- persistence -------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write the arrays as .npy (memory-mappable), the vocabulary and the parameters."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {
            "data": self._data, "indices": self._indices, "indptr": self._indptr,
            "doc_lengths": self.doc_lengths, "idf": self.idf,
        }  # fmt: skip
        for name, array in arrays.items():
            np.save(directory / f"{name}.npy", np.asarray(array), allow_pickle=False)
        # A list in column order: smaller than a mapping, and the order *is* the mapping.
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        (directory / "vocab.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        params = {
            "format_version": FORMAT_VERSION, "n_docs": self.n_docs, "n_terms": self.n_terms,
            "k1": self.k1, "b": self.b, "epsilon": self.epsilon, "avgdl": self.avgdl,
            "average_idf": self.average_idf, "dtype": self.dtype.name,
        }  # fmt: skip
        (directory / "params.json").write_text(json.dumps(params, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> BM25Index:
        """Open an index written by `save`; with `mmap` the arrays are memory-mapped read-only."""
        directory = Path(directory)
        params = json.loads((directory / "params.json").read_text(encoding="utf-8"))
        if params.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory}: unsupported BM25 index format {params.get('format_version')!r}"
            )
        mode: Literal["r"] | None = "r" if mmap else None
        arrays = {
            name: np.load(directory / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
            for name in _ARRAYS
        }
        terms = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        shape = (int(params["n_docs"]), int(params["n_terms"]))
        if len(terms) != shape[1] or arrays["indptr"].shape != (shape[1] + 1,):
            raise ValueError(f"{directory}: vocab.json / indptr.npy disagree with params.json")
        # copy=False + check-free construction keeps the memory maps as the matrix's buffers.
        matrix = sp.csc_matrix(
            (arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape, copy=False
        )
        vocab = {term: i for i, term in enumerate(terms)}
        return cls(matrix, vocab, arrays["doc_lengths"], arrays["idf"], params)


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
