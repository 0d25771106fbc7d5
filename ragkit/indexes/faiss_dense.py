"""Dense index in faiss: exact inner product over normalised vectors (= cosine similarity).

Row i of the index is chunk row i of the store, so no id map is needed.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from ragkit.config import FaissConfig

INDEX_FILE = "dense.faiss"


class FaissDenseIndex:
    def __init__(self, index: faiss.Index) -> None:
        self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray, config: FaissConfig) -> FaissDenseIndex:
        if vectors.ndim != 2:
            raise ValueError(f"expected a 2-d array of vectors, got shape {vectors.shape}")
        index = faiss.IndexFlatIP(vectors.shape[1])
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and scores for one query vector (fewer when the index is smaller)."""
        rows, scores = self.search_batch(query.reshape(1, -1), k)
        return rows[0], scores[0]

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        k = min(k, len(self))
        if k == 0:
            empty = [np.zeros(0, dtype=np.int64) for _ in range(len(queries))]
            return empty, [np.zeros(0, dtype=np.float32) for _ in range(len(queries))]
        if queries.shape[1] != self.dim:
            raise ValueError(
                f"query vectors have {queries.shape[1]} dimensions but the index has {self.dim}: "
                "was the index built with a different embedding model?"
            )
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        keep = rows >= 0  # faiss pads with -1 when fewer than k results exist
        return [r[m] for r, m in zip(rows, keep)], [s[m] for s, m in zip(scores, keep)]

    def save(self, directory: Path) -> None:
        faiss.write_index(self.index, str(directory / INDEX_FILE))

    @classmethod
    def load(cls, directory: Path) -> FaissDenseIndex:
        return cls(faiss.read_index(str(directory / INDEX_FILE)))
