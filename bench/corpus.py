"""Deterministic synthetic text for the benchmarks: English words with a Zipf distribution.

Words are the whole-word entries of the bundled MiniLM tokenizer's vocabulary (always
installed with ragkit), whose order is roughly by frequency, so rank r is drawn with
probability ~ 1/r. A small share of tokens are rare two-word compounds, so the vocabulary
keeps growing with the corpus (Heaps' law) as in real text. Sentences, paragraphs and a
title line give the recursive chunker real boundaries to cut at.

Nothing here reads the network or the shared datasets: a fresh clone can run it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

ZIPF_S = 1.0
RARE_SHARE = 0.03  # share of tokens that are rare compounds ("harborgranite")


def _vocab_words() -> list[str]:
    from ragkit.models import resolve_model

    path = Path(resolve_model("bundled:all-MiniLM-L6-v2")) / "vocab.txt"
    words = [w.strip() for w in path.read_text(encoding="utf-8").splitlines()]
    return [w for w in words if re.fullmatch(r"[a-z]{2,}", w)]


@dataclass
class TextGenerator:
    seed: int = 0

    @cached_property
    def words(self) -> np.ndarray:
        return np.array(_vocab_words(), dtype=object)

    @cached_property
    def _cdf(self) -> np.ndarray:
        ranks = np.arange(1, len(self.words) + 1, dtype=np.float64)
        p = ranks**-ZIPF_S
        return np.cumsum(p / p.sum())

    def _draw(self, rng: np.random.Generator, n: int) -> list[str]:
        idx = np.searchsorted(self._cdf, rng.random(n))
        idx = np.minimum(idx, len(self.words) - 1)
        tokens = self.words[idx]
        rare = np.flatnonzero(rng.random(n) < RARE_SHARE)
        if rare.size:
            # compounds of two mid/low-frequency words: ~4e8 possible types
            a = rng.integers(500, len(self.words), rare.size)
            b = rng.integers(500, len(self.words), rare.size)
            tokens[rare] = [x + y for x, y in zip(self.words[a], self.words[b])]
        return tokens.tolist()

    def _sentences(self, rng: np.random.Generator, n_words: int) -> list[str]:
        tokens = self._draw(rng, n_words)
        out, i = [], 0
        while i < len(tokens):
            length = int(rng.integers(8, 25))
            words = tokens[i : i + length]
            i += length
            words[0] = words[0].capitalize()
            out.append(" ".join(words) + ".")
        return out

    def document(self, index: int, n_words: int) -> str:
        """Document `index` (the same text for the same seed and index): a title, paragraphs."""
        rng = np.random.default_rng((self.seed, index))
        title = " ".join(self._draw(rng, 4)).title()
        sentences = self._sentences(rng, n_words)
        paragraphs, i = [], 0
        while i < len(sentences):
            size = int(rng.integers(3, 8))
            paragraphs.append(" ".join(sentences[i : i + size]))
            i += size
        return title + "\n\n" + "\n\n".join(paragraphs) + "\n"

    def passage(self, index: int, n_words: int) -> str:
        """One chunk-sized passage: sentences only (used as pre-chunked documents at 1M)."""
        rng = np.random.default_rng((self.seed, 1, index))
        return " ".join(self._sentences(rng, n_words))

    def queries(self, n: int, seed: int = 1) -> list[str]:
        """Short questions of 3-9 content words drawn from the same distribution (minus the
        ~100 most frequent words, as real queries are mostly content words)."""
        rng = np.random.default_rng((self.seed, 2, seed))
        out = []
        for _ in range(n):
            k = int(rng.integers(3, 10))
            idx = np.searchsorted(self._cdf[100:] - self._cdf[99], rng.random(k) * (1 - self._cdf[99])) + 100
            idx = np.minimum(idx, len(self.words) - 1)
            out.append("what " + " ".join(self.words[idx].tolist()) + "?")
        return out


def write_files(root: Path, n_docs: int, words_per_doc: int, seed: int = 0) -> list[Path]:
    """`n_docs` documents as .txt and .md files (every 4th is markdown) in 100-file folders."""
    gen = TextGenerator(seed)
    paths = []
    for i in range(n_docs):
        folder = root / f"part{i // 100:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".md" if i % 4 == 3 else ".txt"
        text = gen.document(i, words_per_doc)
        if suffix == ".md":
            text = "# " + text
        path = folder / f"doc{i:07d}{suffix}"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def passages(n: int, words: int, seed: int = 0) -> Iterator[str]:
    gen = TextGenerator(seed)
    for i in range(n):
        yield gen.passage(i, words)
