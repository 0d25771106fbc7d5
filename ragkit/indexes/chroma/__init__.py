"""Vectors in a chroma collection: embedded (`PersistentClient`) or a server (`HttpClient`).

One collection per index holds one record per chunk: id = the chunk id (a content hash, stable
across generations), the chunk's vector from `embeddings.npy` (never embedded by chroma: every
call passes `embeddings=`, collections are opened with `embedding_function=None`) and the
chunk's `filterable_metadata`. `embeddings.npy` stays the source of truth, so switching backend
never re-embeds.

Generations and crashes. A generation is published by swapping CURRENT (layout.py); the
collection is shared by all generations, so it is kept in step around that swap:

* before publish: upsert the chunks whose ids the published generation does not have;
* after publish: refresh the metadata of re-ingested chunks whose ids were already there (a
  document's metadata changed, its text did not) and delete the ids the new generation dropped;
* readers map chroma ids to rows through their own generation's store and ignore ids it does
  not hold (over-fetching as needed), so records of an unpublished generation are never seen;
* a journal file (`chroma-sync.json` in the index dir) is written before the collection is
  touched and removed when it is in step again. The next writer that finds it (a crash
  between the two points) reconciles: deletes ids the published store lacks, upserts the ones
  missing and re-sends the journal's documents' metadata.

A crash can therefore leave the collection larger than the published generation, never
smaller, and only for the journal's documents can chroma's metadata (what `where` filters see)
lag the published store, until the next ingest.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, SecretStr, field_validator

from ragkit.components import ComponentConfig, Strict, register
from ragkit.indexes.layout import IndexStoreError

if TYPE_CHECKING:
    from ragkit.indexes.chroma.reader import ChromaSearcher
    from ragkit.indexes.chroma.sync import ChromaSync
    from ragkit.indexes.generation import GenerationView, SegmentView

CHROMA_AUTH_TOKEN_ENV = "CHROMA_AUTH_TOKEN"
DEFAULT_DIR = "chroma"
JOURNAL_FILE = "chroma-sync.json"


class ChromaHNSWConfig(Strict):
    """The chroma collection's HNSW index. `space: ip` makes chroma's distance 1 - inner product,
    so scores equal faiss inner product (cosine on normalised vectors). Defaults are generous:
    with them chroma returned exactly exact-faiss's ids in exact order on the boolq-dev parity
    slice (tests/test_chroma.py)."""

    space: Literal["ip", "cosine"] = "ip"
    max_neighbors: int = Field(32, ge=2, description="HNSW M; fixed when the collection is created")
    ef_construction: int = Field(200, gt=0, description="fixed when the collection is created")
    ef_search: int = Field(256, gt=0, description="query-time breadth; changeable on an existing collection")


class ChromaConfig(ComponentConfig):
    """Vectors in a chroma collection: embedded (a local directory) or a `chroma run` server.

    ragkit always sends its own embeddings; chroma never embeds anything."""

    name: Literal["chroma"] = "chroma"
    mode: Literal["embedded", "server"] | None = Field(
        None, description="null: server when `host` is set, else embedded"
    )
    path: str | None = Field(
        None, description="embedded: chroma's directory; null: `chroma/` in the index dir (relative: to it)"
    )
    host: str | None = Field(None, description="server host (server mode)")
    port: int = Field(8000, gt=0, lt=65536)
    ssl: bool = False
    auth_token: SecretStr | None = Field(
        None, description=f"server token; default ${CHROMA_AUTH_TOKEN_ENV} (never saved)"
    )
    auth_header: Literal["Authorization", "X-Chroma-Token"] = Field(
        "Authorization", description="Authorization sends `Bearer TOKEN`"
    )
    collection: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$",
        description="null: ragkit-<hash of the index dir>, chosen at the first ingest and saved with the index",
    )
    batch_size: int | None = Field(None, gt=0, description="upsert batch; null: the client's max batch size")
    hnsw: ChromaHNSWConfig = Field(default_factory=ChromaHNSWConfig)
    exact_threshold: int = Field(
        50_000, ge=0,
        description="queries with at most this many candidate chunks (live, passing the filter) are answered "
        "exactly from the stored vectors, without chroma's approximate search (as faiss's exact_threshold)",
    )

    @property
    def resolved_mode(self) -> Literal["embedded", "server"]:
        return self.mode or ("server" if self.host else "embedded")

    @field_validator("path")
    @classmethod
    def _path_is_embedded(cls, path: str | None, info: Any) -> str | None:
        if path is not None and info.data.get("mode") == "server":
            raise ValueError("path applies to embedded mode; a server keeps its own (`chroma run --path`)")
        return path


class ChromaBackendError(IndexStoreError):
    """chroma cannot be used as configured; the message says what to do."""


# --- configuration ---------------------------------------------------------------------------


def default_collection_name(index_dir: Path) -> str:
    """`ragkit-<12 hex>` from the index directory's real path: two indexes on one server never
    share a collection. Chosen once, at the first ingest, and saved in the index's pipeline."""
    digest = hashlib.sha256(str(Path(index_dir).resolve()).encode("utf-8")).hexdigest()[:12]
    return f"ragkit-{digest}"


def chroma_path(config: ChromaConfig, index_dir: Path) -> Path:
    """The embedded database directory: `chroma/` in the index dir, or `path` relative to it."""
    path = Path(config.path) if config.path else Path(DEFAULT_DIR)
    return path if path.is_absolute() else Path(index_dir) / path


def location(config: ChromaConfig, index_dir: Path) -> str:
    """Where the collection lives, for messages and `status`."""
    if config.resolved_mode == "server":
        scheme = "https" if config.ssl else "http"
        return f"{scheme}://{config.host or 'localhost'}:{config.port}"
    return str(chroma_path(config, index_dir))


def _identity(config: ChromaConfig, index_dir: Path) -> tuple[Any, ...]:
    """Two configs with one identity address the same collection."""
    if config.resolved_mode == "server":
        return ("server", config.host or "localhost", config.port, config.collection)
    return ("embedded", str(chroma_path(config, index_dir).resolve()), config.collection)


def resolve_config(config: ChromaConfig, index_dir: Path, stored: Any | None) -> ChromaConfig:
    """`config` with its collection name decided: the configured one, else the one the index
    already uses at the same place, else the default for this index directory."""
    if config.collection is not None:
        return config
    if isinstance(stored, ChromaConfig) and stored.collection is not None:
        candidate = config.model_copy(update={"collection": stored.collection})
        if _identity(candidate, index_dir) == _identity(stored, index_dir):
            return candidate
    return config.model_copy(update={"collection": default_collection_name(index_dir)})


def auth_token(config: ChromaConfig) -> str | None:
    if config.auth_token is not None:
        return config.auth_token.get_secret_value()
    return os.environ.get(CHROMA_AUTH_TOKEN_ENV) or None


# --- the vector store component ------------------------------------------------------------------


@register("vector_store", "chroma", ChromaConfig)
class ChromaVectorStore:
    """Vectors in a chroma collection shared by the index's generations, kept in step with them
    around each publish (see the package docstring); chromadb is imported only when used."""

    def __init__(self, config: ChromaConfig, index_dir: Path, stored: ComponentConfig | None = None) -> None:
        self.index_dir = Path(index_dir)
        self.config = resolve_config(config, self.index_dir, stored)
        same = isinstance(stored, ChromaConfig) and _identity(
            resolve_config(stored, self.index_dir, None), self.index_dir
        ) == _identity(self.config, self.index_dir)
        self.same_collection = same  # the published generation uses this very collection
        self._sync: ChromaSync | None = None

    def identity(self) -> Any:
        """Where the collection is and how it is indexed; not the token, the header or the
        upsert batch size, which change nothing stored."""
        data = self.config.model_dump(mode="json", exclude={"auth_token", "auth_header", "batch_size"})
        data["mode"] = self.config.resolved_mode
        return data

    def describe(self) -> str:
        where = location(self.config, self.index_dir)
        return f"chroma {self.config.resolved_mode} {where}, collection {self.config.collection}"

    def _writer(self) -> ChromaSync:
        if self._sync is None:
            from ragkit.indexes.chroma.sync import ChromaSync

            self._sync = ChromaSync.open(self.index_dir, self.config, self.same_collection)
        return self._sync

    def stats(self) -> dict[str, int]:
        if self._sync is None:
            return {}
        return {"vectors_upserted": self._sync.upserted, "vectors_deleted": self._sync.deleted}

    def prepare(self, current: GenerationView | None) -> None:
        """Connect (failing fast, before anything is embedded) and repair a crashed writer's leftovers."""
        self._writer().reconcile(current)

    def write_segment(self, segment: SegmentView, vectors: np.ndarray) -> None:
        pass  # upserted from the segments' stored vectors in before_publish

    def before_publish(self, current: GenerationView | None, new: GenerationView) -> None:
        self._writer().before_publish(current, new)

    def after_publish(self, new: GenerationView) -> None:
        self._writer().after_publish(new)

    def open(self, generation: GenerationView) -> ChromaSearcher:
        from ragkit.indexes.chroma.reader import ChromaSearcher

        return ChromaSearcher.open(self.config, generation)

    def verify(self, generation: GenerationView, sample: int) -> tuple[list[str], str]:
        from ragkit.indexes.chroma.verify import verify_collection

        return verify_collection(self.config, generation, max(sample, 16))
