"""Dense embeddings through sentence-transformers (the bundled all-MiniLM-L6-v2 by default).

sentence-transformers (torch) is the reference implementation and runs any model; the bundled
model runs by default on ONNX Runtime instead (`onnx_embedder.py`, same vectors, no torch import).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from ragkit.components import ComponentConfig, build, register
from ragkit.models import BUNDLED_MINILM, ModelUnavailable, resolve_model
from ragkit.protocols import Embedder

log = logging.getLogger(__name__)


class SentenceTransformersEmbedderConfig(ComponentConfig):
    name: Literal["sentence-transformers"] = "sentence-transformers"
    model: str = Field(BUNDLED_MINILM, description=f"'{BUNDLED_MINILM}', a HF id or a local path")
    batch_size: int = Field(64, gt=0)
    normalize: bool = True
    device: str = "cpu"
    allow_download: bool = Field(
        False, description="let sentence-transformers fetch a model from the hub (off: offline-first)"
    )
    # How the model runs; the same vectors either way (cosine >= 0.999), so not part of the index
    # signature: an index embedded by one runtime is queried by the other. `auto`: ONNX Runtime
    # (ragkit/indexes/onnx_embedder.py, no torch import) for the bundled model, torch otherwise.
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    # int8: a dynamically quantised ONNX copy (onnx runtime only). Different vectors: part of the
    # index signature. See docs/benchmarks.md for its speed and nDCG@10 change.
    quantize: Literal["none", "int8"] = "none"
    threads: int = Field(0, ge=0, description="onnx runtime: intra-op threads for batches (0: one per core)")

    @model_validator(mode="after")
    def _int8_needs_onnx(self) -> SentenceTransformersEmbedderConfig:
        if self.quantize == "int8" and self.runtime == "torch":
            raise ValueError("quantize: int8 runs on ONNX Runtime: set runtime to auto or onnx")
        return self

    def resolved_runtime(self) -> str:
        """`torch` or `onnx` (what `auto` means for this model)."""
        if self.runtime != "auto":
            return self.runtime
        return "onnx" if self.quantize == "int8" or self.model == BUNDLED_MINILM else "torch"

    def index_identity(self) -> dict[str, Any]:
        """The settings that decide the vectors (the index signature's embedder part): runtime,
        batch size, device and threads change how fast vectors come, not what they are."""
        return {"name": self.name, "model": self.model, "normalize": self.normalize, "quantize": self.quantize}


@register("embedder", "sentence-transformers", SentenceTransformersEmbedderConfig)
def sentence_transformers_embedder(config: SentenceTransformersEmbedderConfig) -> Embedder:
    """A sentence-transformers model: on ONNX Runtime (bundled model) or torch (`runtime`; same vectors)."""
    if config.resolved_runtime() == "onnx":
        from ragkit.indexes.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder(config)
    return SentenceTransformerEmbedder(config)


class SentenceTransformerEmbedder(Embedder):
    """Loads the model lazily (on first use) so opening an index for BM25-only work stays cheap."""

    def __init__(self, config: SentenceTransformersEmbedderConfig) -> None:
        self.config = config
        # The last few query vectors: the extractive generator embeds the question retrieval just
        # embedded (one MiniLM pass, about what the whole retrieval costs).
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._recent_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.config.model

    @cached_property
    def _model(self) -> Any:  # SentenceTransformer, imported lazily (slow import)
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
        """Encode `texts` in order. `on_batch(n)` is called after each batch of n texts (progress).

        Batches are length-sorted over *all* `texts` (longest first, sentence-transformers' own
        order), so every batch pads to nearly its own length; the sorted sequence is encoded one
        batch per call so progress moves every batch (a few seconds on a CPU), and results are put
        back in input order. Splitting unsorted input into blocks would sort only within each block.
        """
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        block = self.config.batch_size
        out: np.ndarray | None = None
        for begin in range(0, len(texts), block):
            rows = order[begin : begin + block]
            vectors = self._model.encode(
                [texts[i] for i in rows.tolist()],
                batch_size=self.config.batch_size,
                normalize_embeddings=self.config.normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
            if on_batch is not None:
                on_batch(len(rows))
        assert out is not None
        return out

    def embed_with_tokens(
        self,
        texts: Sequence[str],
        on_tokens: Callable[[int, np.ndarray, list[tuple[int, int]]], None],
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """`embed(texts)`, also handing each text's contextual token embeddings to
        `on_tokens(i, token_embeddings [tokens, dim], character offsets of the tokens in texts[i])`
        batch by batch (special tokens have empty offsets), so callers can pool parts of a text
        (ragkit/indexes/sentences.py) without a second forward pass or holding every token."""
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._model
        order = np.argsort([-len(t) for t in texts], kind="stable").tolist()
        size = self.config.batch_size
        out: np.ndarray | None = None
        for begin in range(0, len(order), size):
            rows = order[begin : begin + size]
            batch = [texts[i] for i in rows]
            features = model.encode(
                batch, output_value=None, batch_size=len(batch), convert_to_numpy=True, show_progress_bar=False
            )
            stripped = [t.strip() for t in batch]  # sentence-transformers strips before tokenising
            encoded = model.tokenizer(
                stripped, return_offsets_mapping=True, truncation=True, max_length=model.max_seq_length
            )
            for i, text, clean, feature, offsets in zip(rows, batch, stripped, features, encoded["offset_mapping"]):
                vector = np.asarray(feature["sentence_embedding"], dtype=np.float32)
                if self.config.normalize:
                    norm = float(np.linalg.norm(vector))
                    vector = vector / norm if norm > 0 else vector
                if out is None:
                    out = np.empty((len(texts), vector.shape[0]), dtype=np.float32)
                out[i] = vector
                # Token embeddings come padded to the batch's longest text: keep the real ones.
                real = int(np.asarray(feature["attention_mask"]).sum())
                tokens = np.asarray(feature["token_embeddings"], dtype=np.float32)[:real]
                if real != len(offsets):  # tokenised differently than here: no safe alignment
                    continue
                shift = len(text) - len(text.lstrip())
                on_tokens(i, tokens, [(a + shift, b + shift) if b > a else (0, 0) for a, b in offsets])
            if on_batch is not None:
                on_batch(len(rows))
        assert out is not None
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One text, on one torch thread: a short query gains nothing from intra-op threads,
        and on busy cores each parallel region waits for a time slice (measured on 2 loaded
        cores: p50 29 ms on one thread vs 91 ms on two, p95 39 vs 743 ms)."""
        with self._recent_lock:
            if text in self._recent:
                self._recent.move_to_end(text)
                return self._recent[text].copy()
        with _single_torch_thread():
            vector = self.embed([text])[0]
        with self._recent_lock:
            self._recent[text] = vector.copy()
            while len(self._recent) > _RECENT_QUERIES:
                self._recent.popitem(last=False)
        return vector


_RECENT_QUERIES = 32
_threads_lock = threading.Lock()
_single_users = 0
_saved_threads = 0


@contextmanager
def _single_torch_thread() -> Iterator[None]:
    """torch's thread count is process-wide: concurrent callers share one switch to 1 thread,
    and the previous count is restored when the last one leaves."""
    global _single_users, _saved_threads
    import torch

    with _threads_lock:
        if _single_users == 0:
            _saved_threads = torch.get_num_threads()
            if _saved_threads != 1:
                torch.set_num_threads(1)
        _single_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _single_users -= 1
            if _single_users == 0 and _saved_threads != 1:
                torch.set_num_threads(_saved_threads)


# Public name: a server holds it for each query that runs beside another one (ragkit.server.service).
single_torch_thread = _single_torch_thread


def make_embedder(config: ComponentConfig) -> Embedder:
    """The embedder `config` names (stage "embedder")."""
    embedder: Embedder = build("embedder", config)
    return embedder
