"""One index generation as the stores see it: its directory, chunk store and stored vectors.

Writers build a view of the generation they are writing (its store open for writing), readers
of the published one; vector stores (`ragkit.protocols.VectorStore`) get views, never paths to
guess from, so where a generation keeps its files is decided here and in `layout`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragkit.config import PipelineConfig, PipelineError, load_pipeline
from ragkit.indexes.layout import (
    EMBEDDINGS_FILE,
    PIPELINE_FILE,
    IndexDamaged,
    Manifest,
    damage_message,
    file_digest,
)
from ragkit.indexes.store import STORE_FILE, ChunkStore


@dataclass
class GenerationView:
    index_dir: Path
    directory: Path
    generation: int
    store: ChunkStore
    _vectors: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def open(cls, index_dir: Path, directory: Path, generation: int) -> GenerationView:
        """A read-only view of a published (or fully written) generation."""
        return cls(index_dir, directory, generation, ChunkStore.open(directory / STORE_FILE))

    @property
    def vectors(self) -> np.ndarray:
        """The generation's float32 embeddings, row i = chunk row i (memory-mapped)."""
        if self._vectors is None:
            self._vectors = np.load(self.directory / EMBEDDINGS_FILE, mmap_mode="r")
        return self._vectors

    def close(self) -> None:
        self.store.close()


def generation_pipeline(index_dir: Path, manifest: Manifest) -> PipelineConfig:
    """The pipeline a generation was built with; its file is checked against the manifest first,
    so a damaged pipeline.yaml is reported as damage (IndexDamaged), not as a bad pipeline."""
    relative = PIPELINE_FILE
    expected = (manifest.files or {}).get(relative)
    path = index_dir / manifest.directory / relative
    if expected is not None:
        try:
            actual = file_digest(path)
        except OSError as exc:
            raise IndexDamaged(damage_message(index_dir, manifest, [f"{relative}: missing ({exc.strerror or exc})"])) from None
        if actual != expected:
            raise IndexDamaged(damage_message(index_dir, manifest, [f"{relative}: content differs from its checksum"]))
    try:
        return load_pipeline(path)
    except PipelineError as exc:
        raise IndexDamaged(damage_message(index_dir, manifest, [f"{relative}: {exc}"])) from None
