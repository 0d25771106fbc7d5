"""Dense index in faiss: inner product over normalised vectors (= cosine similarity).

The index type follows the corpus size (`FaissConfig`):

* `flat`  - exact search, every vector scored (`IndexFlatIP`, or `IndexScalarQuantizer` with
  float16/int8 storage). Cost grows linearly with the corpus.
* `hnsw`  - approximate graph search (`IndexHNSWFlat` / `IndexHNSWSQ`), sub-linear: M, ef_construction
  and ef_search trade memory and build time for recall.
* `ivfpq` - inverted lists over product-quantised codes (`IndexIVFPQ`): smallest memory, lowest
  recall; trained on the vectors being indexed.
* `auto`  - `flat` below `exact_threshold` vectors, `hnsw` from there on.

Storage `float16`/`int8` (faiss scalar quantizer, int8 with per-dimension ranges trained on the
vectors) applies to `flat` and `hnsw`; inner product on the decoded vectors stays a cosine
similarity up to the quantisation error. `auto` storage keeps exact search exact (float32) and
stores HNSW vectors as float16: half the memory of the largest part of a big index, with recall
unchanged (measured 1.000 vs float32's 1.000 at 100K vectors; see docs/benchmarks.md). Row i of the index is chunk row i of the store, so no
id map is needed.

Filtered search (`allowed`, a boolean mask over rows from the store's metadata filter): a small
allowed set (at most `EXACT_FILTER_ROWS` rows, or under `SELECTOR_MIN_FRACTION` of an approximate
index) is searched exactly, by brute force over just those rows' float32 embeddings; HNSW and
IVF with a selector miss results when few rows qualify (the graph walk / probed lists hold too
few allowed rows). Larger allowed sets use faiss' own search with an `IDSelectorBitmap`, exact
for flat indexes, with efSearch / nprobe widened by 1/fraction for approximate ones; a query
that still comes back short of k is redone exactly.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator

from ragkit.components import ComponentConfig, Strict, register
from ragkit.errors import UserError

if TYPE_CHECKING:
    import faiss

    from ragkit.indexes.filters import MetadataFilter
    from ragkit.indexes.generation import GenerationView, SegmentView
else:

    class _LazyFaiss:
        """`faiss` imported on first use (0.2 s): registering the component must stay cheap."""

        def __getattr__(self, name: str) -> Any:
            module = importlib.import_module("faiss")
            globals()["faiss"] = module
            return getattr(module, name)

    faiss = _LazyFaiss()

log = logging.getLogger(__name__)

INDEX_FILE = "dense.faiss"
# Fewer queries than this are searched on the calling thread alone: an OpenMP parallel region
# costs a scheduler time slice (~10-20 ms measured) whenever the cores are busy, 10-100x the
# search itself (exact search over 10K vectors: 0.2 ms on one thread, 24 ms on two, loaded).
SMALL_BATCH = 8
# faiss' k-means warns below 39 training points per centroid; IVF/PQ training needs that many.
MIN_POINTS_PER_CENTROID = 39

# Filtered search: brute force over the allowed rows up to this many of them (20K x 384 floats:
# a few ms on one thread), or when they are this small a fraction of an approximate (hnsw/ivfpq)
# index. Instance attributes of the same name override them (tests use small indexes).
EXACT_FILTER_ROWS = 20_000
SELECTOR_MIN_FRACTION = 0.02
# Upper bound for the widened HNSW search breadth of a filtered query.
MAX_FILTER_EF = 4096



def _sq_type(storage: str) -> int | None:
    return {"float16": faiss.ScalarQuantizer.QT_fp16, "int8": faiss.ScalarQuantizer.QT_8bit}.get(storage)


class FaissHNSWConfig(Strict):
    """HNSW graph parameters (faiss IndexHNSWFlat / IndexHNSWSQ)."""

    M: int = Field(32, ge=4, le=256, description="neighbours per node: recall and memory (~8*M bytes/vector)")
    ef_construction: int = Field(200, gt=0, description="build-time search breadth: recall vs build time")
    ef_search: int = Field(512, gt=0, description="query-time search breadth (at least the k asked for)")


class FaissIVFPQConfig(Strict):
    """IVF-PQ parameters (faiss IndexIVFPQ), trained on the vectors being indexed."""

    nlist: int | None = Field(
        None, gt=0, description="inverted lists; null: 4*sqrt(n), at most n/39 (39 training vectors each)"
    )
    m: int = Field(48, gt=0, description="PQ sub-quantizers; must divide the vector dimension")
    nbits: int = Field(8, ge=1, le=16, description="bits per sub-quantizer code")
    nprobe: int = Field(16, gt=0, description="lists visited per query: recall vs speed")


class FaissConfig(ComponentConfig):
    """The dense index: exact below `exact_threshold` chunks, HNSW above (`index: auto`)."""

    name: Literal["faiss"] = "faiss"
    index: Literal["auto", "flat", "hnsw", "ivfpq"] = Field(
        "auto", description="auto: flat below exact_threshold vectors, else hnsw"
    )
    exact_threshold: int = Field(50_000, ge=0, description="auto's switch from exact flat to hnsw")
    storage: Literal["auto", "float32", "float16", "int8"] = Field(
        "auto",
        description="vector storage of flat/hnsw (faiss scalar quantizer below float32); "
        "auto: float32 for exact flat, float16 for hnsw (half the memory, same recall)",
    )
    hnsw: FaissHNSWConfig = Field(default_factory=FaissHNSWConfig)
    ivfpq: FaissIVFPQConfig = Field(default_factory=FaissIVFPQConfig)

    @field_validator("storage")
    @classmethod
    def _storage_applies(cls, storage: str, info: Any) -> str:
        if storage not in ("auto", "float32") and info.data.get("index") == "ivfpq":
            raise ValueError(
                "storage applies to flat and hnsw indexes; ivfpq stores PQ codes (set ivfpq.m / ivfpq.nbits)"
            )
        return storage


class DenseConfigError(UserError, ValueError):
    """A faiss configuration that cannot work for these vectors; the message says what to change."""


def resolve_index_type(n_vectors: int, config: FaissConfig) -> str:
    """The index type `config` asks for at `n_vectors` vectors (`auto` resolved)."""
    if config.index == "auto":
        return "flat" if n_vectors < config.exact_threshold else "hnsw"
    return config.index


def ivf_nlist(n_vectors: int, config: FaissConfig) -> int:
    """Inverted lists for `n_vectors`: the configured count, or 4*sqrt(n) when it is null."""
    if config.ivfpq.nlist is not None:
        return config.ivfpq.nlist
    return max(1, min(int(4 * math.sqrt(n_vectors)), n_vectors // MIN_POINTS_PER_CENTROID))


class FaissDenseIndex:
    def __init__(self, index: faiss.Index, note: str | None = None, vectors_file: Path | None = None) -> None:
        self.index = index
        self.note = note  # why the built index differs from the configured one (fallbacks)
        # The generation's float32 embeddings (row i = index row i), memory-mapped on first
        # filtered search; without it, vectors are reconstructed from the index.
        self.vectors_file = vectors_file
        self._vectors: np.ndarray | None = None
        self.exact_filter_rows = EXACT_FILTER_ROWS
        self.selector_min_fraction = SELECTOR_MIN_FRACTION

    # --- construction ------------------------------------------------------------------

    @classmethod
    def build(cls, vectors: np.ndarray, config: FaissConfig | None = None) -> FaissDenseIndex:
        """Index `vectors` (row i -> id i) with the type and storage `config` selects.

        Raises `DenseConfigError` for a configuration that cannot work with these vectors
        (e.g. ivfpq.m not dividing the dimension). An IVF-PQ index over too few vectors to
        train falls back to an exact flat index, with the reason in `note` and the log.
        """
        config = config or FaissConfig()
        if vectors.ndim != 2:
            raise ValueError(f"expected a 2-d array of vectors, got shape {vectors.shape}")
        n, dim = vectors.shape
        kind = resolve_index_type(n, config)
        note = None
        if kind == "ivfpq":
            note = _ivfpq_problem(n, dim, config)
            if note is not None:
                log.warning(note)
                kind = "flat"
        index = _new_index(kind, dim, n, config)
        if n:
            if not index.is_trained:
                index.train(_training_sample(vectors, kind, n, dim, config))
            _add_in_blocks(index, vectors)
        return cls(index, note)

    # --- properties ----------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def kind(self) -> str:
        """'flat', 'hnsw' or 'ivfpq' (what was built, after `auto` and fallbacks)."""
        if isinstance(self.index, faiss.IndexHNSW):
            return "hnsw"
        if isinstance(self.index, faiss.IndexIVF):
            return "ivfpq"
        return "flat"

    @property
    def storage(self) -> str:
        """How vectors are stored: 'float32', 'float16', 'int8' or 'pq'."""
        codec = self._codec()
        if isinstance(codec, faiss.IndexScalarQuantizer):
            return {faiss.ScalarQuantizer.QT_fp16: "float16"}.get(codec.sq.qtype, "int8")
        return "pq" if self.kind == "ivfpq" else "float32"

    def describe(self) -> dict[str, Any]:
        """Type, storage, search parameters and size: for logs, `status` and benchmarks."""
        info: dict[str, Any] = {"type": self.kind, "storage": self.storage, "vectors": len(self), "dim": self.dim}
        if isinstance(self.index, faiss.IndexHNSW):
            hnsw = self.index.hnsw
            info.update(M=int(hnsw.nb_neighbors(1)), ef_construction=int(hnsw.efConstruction), ef_search=int(hnsw.efSearch))
        elif isinstance(self.index, faiss.IndexIVF):
            ivf = faiss.extract_index_ivf(self.index)
            pq = faiss.downcast_index(ivf).pq
            info.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe), m=int(pq.M), nbits=int(pq.nbits))
        if self.note:
            info["note"] = self.note
        return info

    def set_search_params(self, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change search-time parameters in place (no rebuild); ignored by types without them."""
        if ef_search is not None and isinstance(self.index, faiss.IndexHNSW):
            self.index.hnsw.efSearch = int(ef_search)
        if nprobe is not None and isinstance(self.index, faiss.IndexIVF):
            faiss.extract_index_ivf(self.index).nprobe = int(nprobe)

    # --- search --------------------------------------------------------------------------

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and scores for one query vector (fewer when the index is smaller).

        `allowed`: a boolean mask over rows; only rows where it is True are returned.
        """
        rows, scores = self.search_batch(query.reshape(1, -1), k, allowed)
        return rows[0], scores[0]

    def search_batch(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Top-k rows and scores for each row of `queries`: one faiss call for the whole batch
        (faiss spreads queries over its threads). Results equal `search` on each query.
        `allowed` as in `search`."""
        queries = np.asarray(queries)
        if queries.ndim != 2:
            raise ValueError(f"expected a 2-d array of query vectors, got shape {queries.shape}")
        if allowed is not None:
            return self._search_allowed(queries, k, allowed)
        k = min(k, len(self))
        if k <= 0 or len(queries) == 0:
            empty = [np.zeros(0, dtype=np.int64) for _ in range(len(queries))]
            return empty, [np.zeros(0, dtype=np.float32) for _ in range(len(queries))]
        if queries.shape[1] != self.dim:
            raise ValueError(
                f"query vectors have {queries.shape[1]} dimensions but the index has {self.dim}: "
                "was the index built with a different embedding model?"
            )
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        ef = self.index.hnsw.efSearch if isinstance(self.index, faiss.IndexHNSW) else None
        with _single_thread(len(queries) < SMALL_BATCH):
            if ef is not None and ef < k:  # faiss would search with ef = k anyway; make it explicit
                scores, rows = self.index.search(queries, k, params=faiss.SearchParametersHNSW(efSearch=k))
            else:
                scores, rows = self.index.search(queries, k)
        keep = rows >= 0  # faiss pads with -1 when fewer than k results exist
        return [r[m] for r, m in zip(rows, keep)], [s[m] for s, m in zip(scores, keep)]

    def _search_allowed(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        allowed = np.asarray(allowed)
        if allowed.dtype != np.bool_ or allowed.shape != (len(self),):
            raise ValueError(
                f"allowed must be a boolean mask of shape ({len(self)},), got {allowed.dtype} {allowed.shape}"
            )
        n_allowed = int(np.count_nonzero(allowed))
        k = min(k, n_allowed)
        if k <= 0 or len(queries) == 0:  # nothing allowed: empty results, as for an empty index
            return self.search_batch(queries, 0)
        if queries.shape[1] != self.dim:
            return self.search_batch(queries, k)  # raises the dimension error
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        fraction = n_allowed / len(self)
        if n_allowed <= self.exact_filter_rows or (self.kind != "flat" and fraction < self.selector_min_fraction):
            return self._exact(queries, k, np.flatnonzero(allowed))
        selector = faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little"))
        params: faiss.SearchParameters
        if isinstance(self.index, faiss.IndexHNSW):
            ef = min(MAX_FILTER_EF, max(int(math.ceil(max(self.index.hnsw.efSearch, k) / fraction)), k))
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
        elif isinstance(self.index, faiss.IndexIVF):
            ivf = faiss.extract_index_ivf(self.index)
            params = faiss.SearchParametersIVF(sel=selector, nprobe=min(ivf.nlist, math.ceil(ivf.nprobe / fraction)))
        else:
            params = faiss.SearchParameters(sel=selector)
        with _single_thread(len(queries) < SMALL_BATCH):
            scores, rows = self.index.search(queries, k, params=params)
        keep = rows >= 0
        out_rows = [r[m] for r, m in zip(rows, keep)]
        out_scores = [s[m] for s, m in zip(scores, keep)]
        short = [i for i, r in enumerate(out_rows) if len(r) < k]
        if short:  # the approximate walk found too few allowed rows: exact for those queries
            exact_rows, exact_scores = self._exact(queries[short], k, np.flatnonzero(allowed))
            for i, r, sc in zip(short, exact_rows, exact_scores):
                out_rows[i], out_scores[i] = r, sc
        return out_rows, out_scores

    def _exact(
        self, queries: np.ndarray, k: int, rows: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Brute-force inner product over `rows` only (faiss' exact k-NN on their vectors)."""
        with _single_thread(len(queries) < SMALL_BATCH):
            vectors = self.vectors(rows)
            scores, positions = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        keep = positions >= 0
        return [rows[p[m]] for p, m in zip(positions, keep)], [s[m] for s, m in zip(scores, keep)]

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """float32 vectors of `rows`: the stored embeddings when known, else decoded from the index."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._vectors is None and self.vectors_file is not None and self.vectors_file.exists():
            self._vectors = np.load(self.vectors_file, mmap_mode="r")
        if self._vectors is not None:
            return np.ascontiguousarray(self._vectors[rows], dtype=np.float32)
        if isinstance(self.index, faiss.IndexIVF):
            faiss.extract_index_ivf(self.index).make_direct_map()
        return self.index.reconstruct_batch(rows)

    # --- checking --------------------------------------------------------------------------

    def mismatched_rows(self, vectors: np.ndarray, block: int = 65536) -> np.ndarray:
        """Rows whose stored vector is not exactly `vectors[row]` passed through this index's
        codec (identity for float32; float16/int8/PQ rounding otherwise). Proves that the
        index rows line up with the embeddings they were built from."""
        n = len(self)
        if len(vectors) != n:
            raise ValueError(f"index holds {n} vectors, got {len(vectors)} to compare")
        codec = self._codec()
        ivf = faiss.extract_index_ivf(self.index) if self.kind == "ivfpq" else None
        if ivf is not None:
            ivf.make_direct_map()
        bad = []
        for begin in range(0, n, block):
            end = min(n, begin + block)
            want = np.ascontiguousarray(vectors[begin:end], dtype=np.float32)
            if ivf is not None:
                want = ivf.sa_decode(ivf.sa_encode(want))
            elif codec is not None and not isinstance(codec, faiss.IndexFlat):
                want = codec.sa_decode(codec.sa_encode(want))
            stored = self.index.reconstruct_n(begin, end - begin)
            bad.append(begin + np.flatnonzero((stored != want).any(axis=1)))
        return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)

    def _codec(self) -> faiss.Index | None:
        if isinstance(self.index, faiss.IndexHNSW):
            return faiss.downcast_index(self.index.storage)
        if isinstance(self.index, faiss.IndexIVF):
            return None
        return self.index

    # --- persistence -----------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        faiss.write_index(self.index, str(Path(directory) / INDEX_FILE))

    @classmethod
    def load(cls, directory: Path) -> FaissDenseIndex:
        # Search parameters (ef_search, nprobe) are stored in the file with the index.
        from ragkit.indexes.layout import EMBEDDINGS_FILE

        directory = Path(directory)
        index = faiss.read_index(str(directory / INDEX_FILE))  # already the concrete type
        return cls(index, vectors_file=directory / EMBEDDINGS_FILE)


# --- helpers -----------------------------------------------------------------------------------


@contextmanager
def _single_thread(enabled: bool) -> Iterator[None]:
    """Run faiss on the calling thread only (OpenMP's thread count is per calling thread)."""
    before = faiss.omp_get_max_threads()
    if not enabled or before == 1:
        yield
        return
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _ivfpq_problem(n: int, dim: int, config: FaissConfig) -> str | None:
    """Why IVF-PQ cannot be trained on `n` vectors (None: it can). Raises for impossible configs."""
    p = config.ivfpq
    if dim % p.m:
        divisors = [m for m in (8, 12, 16, 24, 32, 48, 64, 96) if dim % m == 0 and m <= dim]
        raise DenseConfigError(
            f"dense.backend.ivfpq.m = {p.m} must divide the vector dimension {dim} "
            f"(e.g. {', '.join(map(str, divisors)) or 1})"
        )
    nlist = ivf_nlist(n, config)
    needed = MIN_POINTS_PER_CENTROID * max(nlist, 2**p.nbits)
    if n < needed:
        what = f"nlist = {nlist}" if nlist >= 2**p.nbits else f"nbits = {p.nbits} ({2**p.nbits} centroids)"
        return (
            f"ivfpq with {what} needs at least {needed} vectors to train "
            f"({MIN_POINTS_PER_CENTROID} per centroid) but the index has {n}: "
            "using an exact flat index instead (lower dense.backend.ivfpq.nlist/nbits, or use hnsw)"
        )
    return None


def resolve_storage(kind: str, config: FaissConfig) -> str:
    """The vector storage for an index of type `kind` (`auto` resolved)."""
    if config.storage == "auto":
        return "float16" if kind == "hnsw" else "float32"
    return config.storage


def _new_index(kind: str, dim: int, n: int, config: FaissConfig) -> faiss.Index:
    ip = faiss.METRIC_INNER_PRODUCT
    sq = _sq_type(resolve_storage(kind, config))
    if kind == "flat":
        return faiss.IndexFlatIP(dim) if sq is None else faiss.IndexScalarQuantizer(dim, sq, ip)
    if kind == "hnsw":
        h = config.hnsw
        index = faiss.IndexHNSWFlat(dim, h.M, ip) if sq is None else faiss.IndexHNSWSQ(dim, sq, h.M, ip)
        index.hnsw.efConstruction = h.ef_construction
        index.hnsw.efSearch = h.ef_search
        return index
    if kind == "ivfpq":
        p = config.ivfpq
        quantizer = faiss.IndexFlatIP(dim)
        # faiss' Python wrapper keeps `quantizer` alive as long as the index (referenced_objects).
        index = faiss.IndexIVFPQ(quantizer, dim, ivf_nlist(n, config), p.m, p.nbits, ip)
        index.nprobe = p.nprobe
        return index
    raise DenseConfigError(f"unknown faiss index type {kind!r}")  # unreachable: config validates


def _training_sample(vectors: np.ndarray, kind: str, n: int, dim: int, config: FaissConfig) -> np.ndarray:
    """Training vectors. A scalar quantizer learns per-dimension min/max ranges, so two rows (the
    minima and the maxima, computed blockwise) train it exactly as all vectors would. IVF-PQ
    trains on a fixed, evenly spaced sample of at most 256 per centroid (faiss' own k-means cap)."""
    if kind == "ivfpq":
        limit = 256 * max(ivf_nlist(n, config), 2**config.ivfpq.nbits)
        rows = np.linspace(0, n - 1, limit).astype(np.int64) if n > limit else slice(None)
        return np.ascontiguousarray(vectors[rows], dtype=np.float32)
    low = np.full(dim, np.inf, dtype=np.float32)
    high = np.full(dim, -np.inf, dtype=np.float32)
    for begin in range(0, n, 131072):
        part = np.asarray(vectors[begin : begin + 131072], dtype=np.float32)
        np.minimum(low, part.min(axis=0), out=low)
        np.maximum(high, part.max(axis=0), out=high)
    return np.ascontiguousarray(np.stack([low, high]))


def _add_in_blocks(index: faiss.Index, vectors: np.ndarray, block: int = 131072) -> None:
    """Add in blocks, so a memory-mapped float32 array is never copied whole."""
    for begin in range(0, len(vectors), block):
        index.add(np.ascontiguousarray(vectors[begin : begin + block], dtype=np.float32))


# --- the vector store component ------------------------------------------------------------------


@register("vector_store", "faiss", FaissConfig)
class FaissVectorStore:
    """Vectors in a faiss index file inside each segment (exact flat, HNSW or IVF-PQ, chosen by
    the segment's size under `index: auto`).

    A segment's `embeddings.npy` is the source of truth; its index is built from it when the
    segment is written and never changes, so generations never share mutable state and a crash
    leaves nothing to repair. Deleted rows are masked at search time (a faiss ID selector)."""

    def __init__(self, config: FaissConfig, index_dir: Path | None = None, stored: ComponentConfig | None = None) -> None:
        self.config = config

    def identity(self) -> Any:
        return self.config.model_dump(mode="json")

    def describe(self) -> str:
        return f"faiss {self.config.index}"

    def stats(self) -> dict[str, int]:
        return {}

    def prepare(self, current: GenerationView | None) -> None:
        pass  # nothing outside the segment directories

    def write_segment(self, segment: SegmentView, vectors: np.ndarray) -> None:
        FaissDenseIndex.build(vectors, self.config).save(segment.directory)

    def before_publish(self, current: GenerationView | None, new: GenerationView) -> None:
        pass

    def after_publish(self, new: GenerationView) -> None:
        pass

    def open(self, generation: GenerationView) -> FaissSearcher:
        return FaissSearcher([(s, FaissDenseIndex.load(s.directory)) for s in generation.segments], generation)

    def verify(self, generation: GenerationView, sample: int) -> tuple[list[str], str]:
        problems = []
        kinds = set()
        total = 0
        for segment in generation.segments:
            dense = FaissDenseIndex.load(segment.directory)
            vectors = segment.vectors
            n = len(dense)
            total += n
            kinds.add(f"{dense.kind}/{dense.storage}")
            where = segment.directory
            if vectors.ndim != 2 or vectors.shape[0] != n or n != segment.chunks:
                problems.append(f"{where}: faiss holds {n} vectors, the embeddings have shape {vectors.shape}, the segment {segment.chunks} rows")
            elif vectors.shape[1] != dense.dim:
                problems.append(f"{where}: dimensions differ: faiss {dense.dim}, embeddings {vectors.shape[1]}")
            elif n:
                # Exactly equal, after the index's own codec (float16/int8/PQ storage rounds vectors).
                differ = dense.mismatched_rows(vectors)
                if differ.size:
                    problems.append(f"{where}: faiss rows {differ[:5].tolist()} differ from the stored embeddings")
        return problems, f"{total} vectors in {len(generation.segments)} segments ({', '.join(sorted(kinds)) or 'none'}), identical to the stored embeddings"


class FaissSearcher:
    """`VectorSearcher` over a generation's segments: each segment's faiss index is searched for
    the top k among its allowed rows (live, and passing the filter: the store's row mask), and
    the per-segment lists are merged. Exact indexes give exactly the top k of one flat index over
    the live vectors; ties go to the lower row."""

    def __init__(self, parts: list[tuple[SegmentView, FaissDenseIndex]], generation: GenerationView) -> None:
        self.parts = parts
        self.generation = generation
        self.rows = generation.rows
        self._dim = parts[0][1].dim if parts else 0

    def __len__(self) -> int:
        return self.rows

    @property
    def dim(self) -> int:
        return self._dim

    def describe(self) -> dict[str, Any]:
        segments = [index.describe() for _, index in self.parts]
        kinds = sorted({f"{d['type']}" for d in segments})
        return {"type": "+".join(kinds) or "flat", "segments": len(segments), "vectors": self.rows, "dim": self.dim, "per_segment": segments}

    def search(
        self, queries: np.ndarray, k: int, flt: MetadataFilter | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        queries = np.asarray(queries)
        allowed = None if flt is None or flt.matches_all else self.generation.store.filter_mask(flt)
        found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(len(queries))]
        for segment, index in self.parts:
            mask: np.ndarray | None
            if allowed is not None:
                mask = allowed[segment.base : segment.base + segment.chunks]
            else:
                mask = None if segment.deleted is None else ~segment.deleted
            if mask is not None and mask.all():
                mask = None
            segment_rows, segment_scores = index.search_batch(queries, k, mask)
            for q, (r, s) in enumerate(zip(segment_rows, segment_scores)):
                if r.size:
                    found[q].append((r.astype(np.int64) + segment.base, s))
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for parts in found:
            if not parts:
                out.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)))
                continue
            rows = np.concatenate([r for r, _ in parts])
            scores = np.concatenate([s for _, s in parts])
            order = np.lexsort((rows, -scores))[:k]
            out.append((rows[order], scores[order]))
        return out

    def close(self) -> None:
        pass
