"""The vector store conformance suite (tests/vector_store_conformance.py) run on every built-in
store: faiss (exact flat and HNSW) and chroma (embedded; the server mode is in test_chroma.py).
The plugin store of tests/test_plugins.py runs it too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vector_store_conformance import VectorStoreConformance


class TestFaissFlat(VectorStoreConformance):
    @pytest.fixture
    def backend(self) -> dict[str, Any]:
        return {"name": "faiss", "index": "flat"}


@pytest.mark.slow
class TestFaissHNSW(VectorStoreConformance):
    @pytest.fixture
    def backend(self) -> dict[str, Any]:
        # float32 storage: the default float16 rounds scores (~1e-3), and scores must equal exact search
        return {"name": "faiss", "index": "hnsw", "storage": "float32"}


@pytest.mark.slow
class TestChromaEmbedded(VectorStoreConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
        pytest.importorskip("chromadb")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))  # chroma must never download an embedding model
        yield {"name": "chroma", "path": str(tmp_path / "chroma-data")}
