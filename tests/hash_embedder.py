"""A deterministic stand-in for the embedding model where only the index plumbing is tested: each
text's vector is a pure function of the text (sha256-seeded), and every call is recorded."""

from __future__ import annotations

import hashlib

import numpy as np

from ragkit.protocols import Embedder

DIM = 16


def vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class HashEmbedder(Embedder):
    model_id = "hash"
    dim = DIM
    loaded = True

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.on_call = lambda: None

    @property
    def embedded(self) -> list[str]:
        """Every text embedded so far, in order."""
        return [t for call in self.calls for t in call]

    def load(self) -> None:
        pass

    def embed(self, texts, on_batch=None):  # type: ignore[no-untyped-def]
        self.calls.append(list(texts))
        self.on_call()
        if on_batch:
            on_batch(len(texts))
        return np.stack([vector(t) for t in texts]) if texts else np.zeros((0, DIM), np.float32)

    def embed_query(self, text):  # type: ignore[no-untyped-def]
        return vector(text)
