"""Reranking fused candidates with a sentence-transformers CrossEncoder (HF id or local path).

No cross-encoder ships offline, so the model is often missing: then the stage is skipped, the
fused order is kept, and a warning goes into the trace — the answer still comes, and the user can
see it was not reranked.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.models import available_offline, resolve_model
from ragkit.protocols import ChatModel
from ragkit.schema import Hit, RetrieverScore, Trace


class CrossEncoderRerankConfig(ComponentConfig):
    name: Literal["cross-encoder"] = "cross-encoder"
    model: str = "cross-encoder/ms-marco-MiniLM-L-6-v2"
    top_n: int = Field(30, gt=0, description="how many fused candidates are rescored")
    batch_size: int = Field(16, gt=0)
    max_length: int = Field(512, gt=0)
    device: str = "cpu"
    allow_download: bool = False


@register("reranker", "cross-encoder", CrossEncoderRerankConfig)
class CrossEncoderReranker:
    """Rescores (question, chunk text) pairs; loads the model on first use, once per instance."""

    def __init__(self, config: CrossEncoderRerankConfig, chat: ChatModel | None = None) -> None:
        self.config = config
        self._model: Any = None
        self._load_error: str | None = None

    def _load(self) -> Any:
        if self._model is None and self._load_error is None:
            if not self.config.allow_download:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # fail fast instead of retrying the hub
                if not available_offline(self.config.model):
                    # Checked before importing sentence-transformers (~5 CPU-s) when the model
                    # is absent, as it is on most machines (no cross-encoder ships offline).
                    self._load_error = "not a local path and not in the Hugging Face cache"
                    return None
            from sentence_transformers import CrossEncoder
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()

            try:
                self._model = CrossEncoder(
                    resolve_model(self.config.model),
                    device=self.config.device,
                    max_length=self.config.max_length,
                    local_files_only=not self.config.allow_download,
                )
            except Exception as exc:  # any load failure: skip the stage, say why
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                self._load_error = f"{type(exc).__name__}: {first_line}"
        return self._model

    @property
    def depth(self) -> int:
        return self.config.top_n

    def rerank(self, question: str, hits: list[Hit], trace: Trace) -> list[Hit]:
        if not hits:
            return hits
        model = self._load()
        if model is None:
            trace.warn(
                f"rerank skipped: cross-encoder {self.config.model!r} could not be loaded offline "
                f"({self._load_error}); results are in fused order. Set retrieval.rerank.model to a "
                "local path, or retrieval.rerank.name: none to silence this."
            )
            return hits
        pairs = [(question, hit.chunk.text) for hit in hits]
        scores = model.predict(pairs, batch_size=self.config.batch_size, show_progress_bar=False)
        order = sorted(range(len(hits)), key=lambda i: (-float(scores[i]), i))
        reranked = []
        for rank, i in enumerate(order, start=1):
            hit = hits[i]
            retrievers = dict(hit.retrievers)
            retrievers["rerank"] = RetrieverScore(rank=rank, score=float(scores[i]))
            reranked.append(hit.model_copy(update={"score": float(scores[i]), "retrievers": retrievers}))
        return reranked
