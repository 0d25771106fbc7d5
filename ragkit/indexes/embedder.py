"""Dense embeddings through sentence-transformers (the bundled all-MiniLM-L6-v2 by default)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Protocol

import numpy as np

from ragkit.config import SentenceTransformersEmbedderConfig
from ragkit.models import ModelUnavailable, resolve_model

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Texts -> float32 row vectors (L2-normalised when the config says so)."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(
        self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None: ...


class SentenceTransformerEmbedder:
    """Loads the model lazily (on first use) so opening an index for BM25-only work stays cheap."""

    def __init__(self, config: SentenceTransformersEmbedderConfig) -> None:
        self.config = config

    @property
    def model_id(self) -> str:
        return self.config.model

    @cached_property
    def _model(self):  # type: ignore[no-untyped-def]  # SentenceTransformer, imported lazily (slow import)
        if not self.config.allow_download:
            # Offline-first: without this, a hub id retries the network for ~45 s before failing.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars would garble CLI output

        path = resolve_model(self.config.model)
        try:
            return SentenceTransformer(
                path, device=self.config.device, local_files_only=not self.config.allow_download
            )
        except Exception as exc:  # any load failure becomes one actionable message
            raise ModelUnavailable(
                f"cannot load embedding model {self.config.model!r} ({type(exc).__name__}: {exc}). "
                "Use a local path, a model already in the Hugging Face cache, or set "
                "dense.embedder.allow_download: true where the hub is reachable."
            ) from exc

    @property
    def loaded(self) -> bool:
        return "_model" in self.__dict__  # cached_property stores the model there once loaded

    def load(self) -> None:
        """Load the model now (otherwise the first embed call does)."""
        _ = self._model

    @property
    def dim(self) -> int:
        model = self._model
        # sentence-transformers >= 5.x renamed the method; support both.
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:  # some models only know their size after one forward pass
            dim = int(self.embed(["dimension probe"]).shape[1])
        return int(dim)

    def embed(
        self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Encode `texts` in order. `on_batch(n)` is called after each block of n texts (progress).

        sentence-transformers sorts each call's inputs by length to limit padding; we call it on
        blocks of several batches so progress can be reported without losing that benefit.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        block = self.config.batch_size * 8
        parts = []
        for begin in range(0, len(texts), block):
            piece = list(texts[begin : begin + block])
            vectors = self._model.encode(
                piece,
                batch_size=self.config.batch_size,
                normalize_embeddings=self.config.normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            parts.append(np.asarray(vectors, dtype=np.float32))
            if on_batch is not None:
                on_batch(len(piece))
        return np.ascontiguousarray(np.vstack(parts), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def make_embedder(config: SentenceTransformersEmbedderConfig) -> Embedder:
    if config.name == "sentence-transformers":
        return SentenceTransformerEmbedder(config)
    raise ValueError(f"unknown embedder {config.name!r}")  # unreachable: config validates names
