"""Distributed ingest on Ray Data: load and chunk as tasks, embed with an actor pool, one commit.

`ragkit ingest PATHS --executor ray [--ray-address ADDR]` (extra `ragkit[ray]`). Three Ray Data
jobs, with the driver deciding between them what is worth the next one:

1. **load** (tasks, one per file): `load_file` on a worker; documents come back to the driver.
2. **chunk** (tasks, batches of documents): only documents that are new or changed (their
   content hash differs from the published generation's; unchanged ones cost nothing, as in a
   local ingest).
3. **embed** (an actor pool, `ActorPoolStrategy`: one model per actor, loaded once; CPU actors,
   or GPU actors with `gpus_per_actor`): each distinct chunk text once (deduplicated by content
   hash, the writer's embedding-cache key), minus the texts the published generation already
   holds. Actors return the chunk vector and the chunk's sentence vectors pooled from the same
   forward pass (ragkit/indexes/sentences.py), so the extractive generator's sentence index
   is the same as after a local ingest.

Then the usual local commit runs (`RAG.ingest`: writer lock, deletions, segments, the vector
store's generation protocol) with a chunker and an embedder that answer from those results
(`PrecomputedChunker`, `PrecomputedEmbedder`); anything they miss (a text another writer
removed meanwhile) is computed locally. The index content is the one a local ingest writes.

Without an address a local Ray instance is started for this ingest and stopped afterwards: bound
to 127.0.0.1 (node IP), no dashboard, usage statistics off; nothing is downloaded. A cluster
(`--ray-address`) must have ragkit and its model installed on every node.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.components import build
from ragkit.config import PipelineConfig
from ragkit.errors import UserError
from ragkit.indexes.sentences import ChunkSentences, encode_with_sentences
from ragkit.indexes.store import document_hash, text_hash
from ragkit.loaders import LoadedFile, load_file
from ragkit.protocols import Chunker, Embedder, PreparedIngest
from ragkit.schema import Chunk, Document

RAY_MISSING = "--executor ray needs Ray Data: pip install 'ragkit[ray]'"


# --- what runs on the workers ----------------------------------------------------------------
# Arguments and results cross process boundaries pickled: Ray Data rows are Arrow columns, and
# ragkit's documents and chunks are nested pydantic models.


def _load_row(row: dict[str, Any], loader: bytes) -> dict[str, Any]:
    loaded = load_file(Path(row["path"]), pickle.loads(loader))
    return {"position": row["position"], "loaded": pickle.dumps(loaded)}


_CHUNKERS: dict[bytes, Chunker] = {}


def _chunk_batch(batch: dict[str, np.ndarray], chunker: bytes) -> dict[str, np.ndarray]:
    if chunker not in _CHUNKERS:  # one chunker per worker process
        _CHUNKERS[chunker] = build("chunker", pickle.loads(chunker))
    make = _CHUNKERS[chunker]
    out = []
    for blob in batch["document"]:
        document: Document = pickle.loads(blob)
        try:
            out.append(pickle.dumps(make.chunk(document)))
        except Exception:  # the local writer chunks it again and reports the failure
            out.append(pickle.dumps(None))
    return {"key": batch["key"], "chunks": np.array(out, dtype=object)}


class _EmbedActor:
    """One embedding model per actor, loaded once; `threads` intra-op threads."""

    def __init__(self, config: bytes, threads: int) -> None:
        embedder_config = pickle.loads(config)
        if threads and "threads" in type(embedder_config).model_fields:
            embedder_config = embedder_config.model_copy(update={"threads": threads})
        try:
            import torch

            torch.set_num_threads(max(1, threads))
        except ImportError:
            pass
        self.embedder: Embedder = build("embedder", embedder_config)
        self.embedder.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors, found = encode_with_sentences(self.embedder, texts)
        return {
            "hash": np.array([text_hash(t) for t in texts], dtype=object),
            "vector": np.asarray(vectors, dtype=np.float32),
            "sentences": np.array([pickle.dumps(found[t]) for t in texts], dtype=object),
        }


# --- what the local writer uses ----------------------------------------------------------------


class PrecomputedChunker:
    """The chunks computed on the cluster, by document (id and content hash); else `fallback`."""

    def __init__(self, chunks: dict[tuple[str, str], list[Chunk]], fallback: Chunker) -> None:
        self.chunks = chunks
        self.fallback = fallback

    def chunk(self, document: Document) -> list[Chunk]:
        found = self.chunks.get((document.id, document_hash(document)))
        return list(found) if found is not None else self.fallback.chunk(document)


class PrecomputedEmbedder:
    """The vectors (and pooled sentence vectors) computed on the cluster, by text hash; texts it
    lacks and queries go to `fallback`, loaded only then."""

    def __init__(self, vectors: dict[str, np.ndarray], sentences: dict[str, ChunkSentences], fallback: Embedder) -> None:
        self.vectors = vectors
        self.sentences = sentences
        self.fallback = fallback
        self.fallback_texts = 0  # texts embedded locally (a test checks it stays 0)

    @property
    def model_id(self) -> str:
        return self.fallback.model_id

    @property
    def dim(self) -> int:
        return next(iter(self.vectors.values())).shape[0] if self.vectors else self.fallback.dim

    @property
    def loaded(self) -> bool:
        return True  # nothing to load unless a text is missing (then `fallback` loads itself)

    def load(self) -> None:
        pass

    def embed(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        return self.embed_with_tokens(texts, lambda *_: None, on_batch)

    def embed_query(self, text: str) -> np.ndarray:
        return self.fallback.embed_query(text)

    def embed_with_tokens(
        self,
        texts: Sequence[str],
        on_tokens: Callable[[int, np.ndarray, list[tuple[int, int]]], None],
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Vectors from the cluster's results. The sentence vectors pooled there are replayed as
        one pseudo-token per sentence at the sentence's offsets: pooling a single token gives
        that token's (unit) vector back, so the writer stores the same sentence vectors."""
        hashes = [text_hash(t) for t in texts]
        missing = [i for i, h in enumerate(hashes) if h not in self.vectors]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if missing:
            self.fallback_texts += len(missing)

            def local_tokens(j: int, tokens: np.ndarray, offsets: list[tuple[int, int]]) -> None:
                on_tokens(missing[j], tokens, offsets)

            out[missing] = self.fallback.embed_with_tokens([texts[i] for i in missing], local_tokens)
        for i, h in enumerate(hashes):
            if h not in self.vectors:
                continue
            out[i] = self.vectors[h]
            data = self.sentences.get(h)
            if data is not None and data.vectors is not None:
                on_tokens(i, data.vectors, [(s.start, s.end) for s in data.spans])
        if on_batch is not None:
            on_batch(len(texts))
        return out


# --- the executor ----------------------------------------------------------------------------


class RayExecutor:
    """`IngestExecutor` on Ray Data (see the module docstring)."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        actors: int | None = None,
        cpus_per_actor: int = 1,
        gpus_per_actor: float = 0.0,
        embed_batch: int = 256,
        chunk_batch: int = 64,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.actors = actors
        self.cpus_per_actor = cpus_per_actor
        self.gpus_per_actor = gpus_per_actor
        self.embed_batch = embed_batch
        self.chunk_batch = chunk_batch
        self.stats: dict[str, int] = {}

    @contextmanager
    def cluster(self) -> Iterator[Any]:
        """Ray, connected: to `address`, or a local instance started (and stopped) here."""
        if not self.address:
            _loopback_only()
        try:
            import ray
            import ray.data  # noqa: F401
        except ImportError:
            raise UserError(RAY_MISSING) from None
        started = False
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: never phone home
            if self.address:
                try:
                    ray.init(address=self.address, log_to_driver=False)
                except ConnectionError as exc:
                    raise UserError(f"cannot connect to the Ray cluster at {self.address!r}: {exc}") from None
            else:
                ray.init(
                    num_cpus=self.num_cpus,
                    # Workers import what the driver imports (plugins registered from its path).
                    runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(_driver_paths())}},
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",  # every Ray service of this node on loopback
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
            started = True
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ragkit's own progress shows the phase
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-dataset INFO lines on stderr
        try:
            yield ray
        finally:
            if started:
                ray.shutdown()

    def prepare(
        self, files: Sequence[Path], index_dir: Path, config: PipelineConfig, chunker: Chunker, embedder: Embedder
    ) -> PreparedIngest:
        with self.cluster() as ray:
            loaded = self._load(ray, files, config)
            changed = self._changed_documents(index_dir, loaded)
            chunks = self._chunk(ray, changed, config)
            texts = self._texts_to_embed(index_dir, chunks)
            vectors, sentences = self._embed(ray, texts, config)
        self.stats = {
            "files": len(files),
            "documents": sum(len(f.documents) for f in loaded),
            "documents_chunked": len(changed),
            "texts_embedded": len(vectors),
        }
        return PreparedIngest(
            loaded=loaded,
            chunker=PrecomputedChunker(chunks, chunker),
            embedder=PrecomputedEmbedder(vectors, sentences, embedder),
        )

    # --- the stages ----------------------------------------------------------------------------

    def _load(self, ray: Any, files: Sequence[Path], config: PipelineConfig) -> list[LoadedFile]:
        if not files:
            return []
        rows = [{"position": i, "path": str(path)} for i, path in enumerate(files)]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        results = dataset.map(_load_row, fn_kwargs={"loader": pickle.dumps(config.loader)}).take_all()
        ordered: list[LoadedFile | None] = [None] * len(files)
        for row in results:
            ordered[int(row["position"])] = pickle.loads(row["loaded"])
        return [f for f in ordered if f is not None]

    def _changed_documents(self, index_dir: Path, loaded: list[LoadedFile]) -> list[Document]:
        """Documents whose id is new or whose content hash differs from the published one."""
        documents = {d.id: d for f in loaded for d in f.documents}  # a later duplicate id wins, as in the writer
        published = _published(index_dir, lambda store: store.locate_documents(list(documents)))
        return [d for d in documents.values() if d.id not in published or published[d.id][2] != document_hash(d)]

    def _chunk(self, ray: Any, documents: list[Document], config: PipelineConfig) -> dict[tuple[str, str], list[Chunk]]:
        if not documents:
            return {}
        keys = [(d.id, document_hash(d)) for d in documents]
        rows = [{"key": i, "document": pickle.dumps(d)} for i, d in enumerate(documents)]
        blocks = max(1, min(len(rows) // self.chunk_batch + 1, 64))
        dataset = ray.data.from_items(rows, override_num_blocks=blocks)
        out: dict[tuple[str, str], list[Chunk]] = {}
        chunked = dataset.map_batches(
            _chunk_batch, fn_kwargs={"chunker": pickle.dumps(config.chunker)}, batch_size=self.chunk_batch, batch_format="numpy"
        )
        for batch in chunked.iter_batches(batch_format="numpy", batch_size=None):
            for key, blob in zip(batch["key"], batch["chunks"]):
                chunks = pickle.loads(blob)
                if chunks is not None:
                    out[keys[int(key)]] = chunks
        return out

    def _texts_to_embed(self, index_dir: Path, chunks: dict[tuple[str, str], list[Chunk]]) -> list[str]:
        """Each distinct chunk text once, minus those the published generation holds."""
        distinct: dict[str, str] = {}
        for doc_chunks in chunks.values():
            for chunk in doc_chunks:
                distinct.setdefault(text_hash(chunk.text), chunk.text)
        cached = _published(index_dir, lambda store: store.rows_of_text_hashes(list(distinct)))
        return [text for h, text in distinct.items() if h not in cached]

    def _embed(
        self, ray: Any, texts: list[str], config: PipelineConfig
    ) -> tuple[dict[str, np.ndarray], dict[str, ChunkSentences]]:
        if not texts:
            return {}, {}
        actors = self.actors or max(1, int(ray.cluster_resources().get("CPU", 1)) // self.cpus_per_actor)
        # Longest first within the stream: similar lengths share a batch (less padding).
        ordered = sorted(texts, key=len, reverse=True)
        blocks = max(actors, min(len(ordered) // self.embed_batch + 1, 4 * actors))
        dataset = ray.data.from_items([{"text": t} for t in ordered], override_num_blocks=blocks)
        embedded = dataset.map_batches(
            _EmbedActor,
            fn_constructor_kwargs={"config": pickle.dumps(config.dense.embedder), "threads": self.cpus_per_actor},
            batch_size=self.embed_batch,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=self.cpus_per_actor,
            num_gpus=self.gpus_per_actor or None,
        )
        vectors: dict[str, np.ndarray] = {}
        sentences: dict[str, ChunkSentences] = {}
        for batch in embedded.iter_batches(batch_format="numpy", batch_size=None):
            for h, vector, blob in zip(batch["hash"], batch["vector"], batch["sentences"]):
                vectors[str(h)] = np.asarray(vector, dtype=np.float32)
                sentences[str(h)] = pickle.loads(blob)
        return vectors, sentences


def _driver_paths() -> list[str]:
    """Where the driver imports from: `sys.path`, plus the directories of top-level modules it
    imported from elsewhere (a plugin loaded from a path no longer on `sys.path`), so a local
    cluster's workers can unpickle every class the pipeline config holds."""
    paths = [p for p in sys.path if p]
    for name, module in list(sys.modules.items()):
        location = getattr(module, "__file__", None)
        if "." in name or not location:
            continue
        path = Path(location).parent
        root = str(path.parent if Path(location).name == "__init__.py" else path)
        if root not in paths:
            paths.append(root)
    return paths


def _loopback_only() -> None:
    """Make a local Ray instance listen on 127.0.0.1 only.

    `ray.init(_node_ip_address="127.0.0.1")` alone is not enough: Ray 2.60 replaces a loopback
    node IP by the machine's routable address, and its GCS, raylet and worker gRPC servers then
    listen on every interface (measured: `::` and the host's address). Ray keeps loopback only
    when it treats the machine as a single-node platform (`ENABLE_RAY_CLUSTER`, switched by
    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, read when `ray` is imported and by every process it
    starts); then every server binds 127.0.0.1 (tests/test_ray_ingest.py checks the sockets)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # ray was imported before: its constant was read already
        constants.ENABLE_RAY_CLUSTER = False  # type: ignore[attr-defined]


def _published(index_dir: Path, ask: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """`ask(store)` on the published generation's chunk store ({} when nothing is published)."""
    from ragkit.indexes.generation import GenerationView
    from ragkit.indexes.layout import IndexNeedsUpgrade, read_current

    try:
        manifest = read_current(index_dir) if Path(index_dir).exists() else None
    except IndexNeedsUpgrade:  # the writer upgrades it; meanwhile nothing counts as published
        return {}
    if manifest is None:
        return {}
    view = GenerationView.open(Path(index_dir), manifest)
    try:
        return ask(view.store)
    finally:
        view.close()
