"""A third-party ragkit plugin, as a user would write one: each component is a config class plus
a registered factory, and the entry point `ragkit.components` makes ragkit import this module.

- vector store `numpy-exact`: exact inner-product search over a .npy file in each generation;
- reranker `keyword-overlap`: reorders the top hits by how many question words they contain;
- loader `log` (.log files): one document per file, DEBUG lines dropped when configured;
- answer metric `brevity`: share of answers of at most `max_words` words.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragkit.components import ComponentConfig, register
from ragkit.loaders.base import make_document, read_bytes
from ragkit.schema import Hit, RetrieverScore, Trace

VECTORS = "plugin-vectors.npy"


class NumpyStoreConfig(ComponentConfig):
    name: Literal["numpy-exact"] = "numpy-exact"


@register("vector_store", "numpy-exact", NumpyStoreConfig)
class NumpyStore:
    """Exact search over a .npy copy of each segment's vectors (a demo plugin store)."""

    def __init__(self, config: NumpyStoreConfig, index_dir: Path | None = None, stored: Any = None) -> None:
        self.config = config

    def identity(self) -> Any:
        return {"name": self.config.name}

    def describe(self) -> str:
        return "numpy-exact (plugin)"

    def stats(self) -> dict[str, int]:
        return {}

    def prepare(self, current: Any) -> None:
        pass

    def write_segment(self, segment: Any, vectors: np.ndarray) -> None:
        np.save(segment.directory / VECTORS, np.asarray(vectors, dtype=np.float32))

    def before_publish(self, current: Any, new: Any) -> None:
        pass

    def after_publish(self, new: Any) -> None:
        pass

    def open(self, generation: Any) -> NumpySearcher:
        return NumpySearcher(generation)

    def verify(self, generation: Any, sample: int) -> tuple[list[str], str]:
        problems = []
        for segment in generation.segments:
            if not np.array_equal(np.load(segment.directory / VECTORS), segment.vectors):
                problems.append(f"{segment.name}/{VECTORS} differs from the stored embeddings")
        return problems, f"{generation.rows} vectors in {VECTORS} files, identical to the stored embeddings"


class NumpySearcher:
    def __init__(self, generation: Any) -> None:
        self.generation = generation
        parts = [np.load(s.directory / VECTORS) for s in generation.segments]
        self.vectors = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def describe(self) -> dict[str, Any]:
        return {"type": "numpy-exact", "vectors": len(self)}

    def close(self) -> None:
        pass

    def search(self, queries: np.ndarray, k: int, flt: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
        allowed = self.generation.live() if flt is None or flt.matches_all else self.generation.store.filter_mask(flt)
        results = []
        for query in np.asarray(queries, dtype=np.float32):
            scores = self.vectors @ query
            rows = np.arange(len(scores))
            rows, scores = rows[allowed], scores[allowed]
            order = np.lexsort((rows, -scores))[:k]
            results.append((rows[order], scores[order]))
        return results


class KeywordRerankConfig(ComponentConfig):
    name: Literal["keyword-overlap"] = "keyword-overlap"
    top_n: int = 10


@register("reranker", "keyword-overlap", KeywordRerankConfig)
class KeywordReranker:
    """Reorders the top hits by the number of question words (4+ letters) each contains."""

    def __init__(self, config: KeywordRerankConfig, chat: Any = None) -> None:
        self.config = config

    @property
    def depth(self) -> int:
        return self.config.top_n

    def rerank(self, question: str, hits: list[Hit], trace: Trace) -> list[Hit]:
        words = {w for w in re.findall(r"[a-z]{4,}", question.lower())}
        scores = [sum(w in hit.chunk.text.lower() for w in words) for hit in hits]
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
        reranked = []
        for rank, i in enumerate(order, start=1):
            retrievers = dict(hits[i].retrievers)
            retrievers["rerank"] = RetrieverScore(rank=rank, score=float(scores[i]))
            reranked.append(hits[i].model_copy(update={"score": float(scores[i]), "retrievers": retrievers}))
        return reranked


class LogLoaderConfig(ComponentConfig):
    name: Literal["log"] = "log"
    skip_debug: bool = True


@register("loader", "log", LogLoaderConfig, extensions=(".log",))
class LogLoader:
    """Log files: one document each, DEBUG lines dropped when `loader.log.skip_debug`."""

    def __init__(self, config: LogLoaderConfig) -> None:
        self.config = config

    def load(self, path: Path, settings: Any) -> tuple[list[Any], list[Any]]:
        lines = read_bytes(path).decode("utf-8", "replace").splitlines()
        if self.config.skip_debug:
            lines = [line for line in lines if " DEBUG " not in line]
        return [make_document(path, "\n".join(lines), "log", {"lines": len(lines)})], []


class BrevityConfig(ComponentConfig):
    name: Literal["brevity"] = "brevity"
    max_words: int = 40


@register("answer_metric", "brevity", BrevityConfig)
class Brevity:
    """Share of answers of at most `max_words` words."""

    name = "brevity"
    description = "share of answers of at most max_words words"

    def __init__(self, config: BrevityConfig, embedder: Any = None) -> None:
        self.config = config

    def score(self, samples: list[Any]) -> list[float | None]:
        return [float(len(s.answer.split()) <= self.config.max_words) for s in samples]

    def aggregate(self, samples: list[Any], values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return sum(present) / len(present) if present else None
