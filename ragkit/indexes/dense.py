"""What every dense backend offers a snapshot reader (faiss in `faiss_dense`, chroma in `chroma_dense`)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class DenseIndex(Protocol):
    """Top-k search over the chunk vectors of one generation; rows are the store's chunk rows and
    scores are inner products (cosine similarity on normalised vectors)."""

    def __len__(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]: ...

    def describe(self) -> dict[str, Any]: ...
