"""The ONNX Runtime embedder against sentence-transformers (the reference), on the bundled MiniLM.

Real components: the bundled model's weights exported to ONNX by torch (once, cached), ONNX Runtime,
the model's own tokenizer.json, faiss, BM25 and SQLite. The export cache goes to a temporary
directory (RAGKIT_CACHE_DIR) shared by this module's tests.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ragkit.api import RAG
from ragkit.config import PipelineConfig, SentenceTransformersEmbedderConfig, parse_pipeline
from ragkit.indexes.embedder import SentenceTransformerEmbedder, make_embedder
from ragkit.indexes.onnx_embedder import OnnxEmbedder
from ragkit.indexes.sentences import encode_with_sentences
from ragkit.schema import Document

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "When was Voyager 1 launched?",
    "",
    "a",
    "Saturn's largest moon, Titan, has a thick nitrogen atmosphere and lakes of liquid methane.",
    "naïve café İstanbul 東京 — Ünïcödé, emoji 🚀 and numbers 3.14159",
    # longer than the model's 256-token limit: both paths must truncate at the same place
    " ".join(f"word{i} of a very long passage about the outer planets" for i in range(120)),
    "The Great Red Spot is a persistent high-pressure region in the atmosphere of Jupiter. " * 3,
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("ragkit-cache")
    old = os.environ.get("RAGKIT_CACHE_DIR")
    os.environ["RAGKIT_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("RAGKIT_CACHE_DIR", None)
    else:
        os.environ["RAGKIT_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def reference():
    return SentenceTransformerEmbedder(SentenceTransformersEmbedderConfig(runtime="torch"))


@pytest.fixture(scope="module")
def onnx(onnx_cache):
    return OnnxEmbedder(SentenceTransformersEmbedderConfig(runtime="onnx"))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_default_runtime_for_the_bundled_model_is_onnx(onnx_cache):
    config = PipelineConfig().dense.embedder
    assert config.resolved_runtime() == "onnx"
    assert isinstance(make_embedder(config), OnnxEmbedder)
    other = config.model_copy(update={"model": "some/other-model"})
    assert other.resolved_runtime() == "torch"  # any other model: sentence-transformers


def test_same_vectors_as_sentence_transformers(reference, onnx):
    want = reference.embed(TEXTS)
    got = onnx.embed(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert cosines(got, want).min() >= 0.999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    queries = np.stack([onnx.embed_query(t) for t in TEXTS])
    assert cosines(queries, want).min() >= 0.999
    assert onnx.dim == 384 and onnx.loaded


def test_sentence_vectors_from_the_same_pass_equal_sentence_transformers(reference, onnx):
    """The writer stores sentence vectors pooled from the token states of the chunk's forward
    pass (ragkit/indexes/sentences.py): the ONNX graph gives the same token states as torch."""
    texts = [*TEXTS, "  Leading spaces. Then a second sentence, and a third one here!  "]
    got_vectors, got = encode_with_sentences(onnx, texts)
    want_vectors, want = encode_with_sentences(reference, texts)
    assert cosines(got_vectors, want_vectors).min() >= 0.999
    for text in texts:
        assert [s.start for s in got[text].spans] == [s.start for s in want[text].spans]
        if not got[text].spans:
            continue  # nothing quotable in this text
        assert got[text].vectors is not None and want[text].vectors is not None
        assert got[text].vectors.shape == want[text].vectors.shape
        assert cosines(got[text].vectors, want[text].vectors).min() >= 0.999


def test_progress_and_order(onnx):
    blocks = []
    texts = [f"passage number {i} " + "x " * (i % 7) for i in range(40)]
    small = OnnxEmbedder(SentenceTransformersEmbedderConfig(runtime="onnx", batch_size=3))
    vectors = small.embed(texts, on_batch=blocks.append)
    assert sum(blocks) == len(texts) and len(blocks) == 2  # blocks of 8 batches of 3
    one_by_one = np.stack([onnx.embed([t])[0] for t in texts[:5]])
    assert cosines(vectors[:5], one_by_one).min() >= 0.9999  # input order kept


def test_export_is_cached(onnx, onnx_cache):
    onnx.embed(["warm"])
    files = list(onnx_cache.rglob("model.onnx"))
    assert len(files) == 1
    before = files[0].stat().st_mtime_ns
    OnnxEmbedder(SentenceTransformersEmbedderConfig(runtime="onnx")).embed(["again"])
    assert files[0].stat().st_mtime_ns == before  # loaded, not exported again


def test_int8_is_close_but_part_of_the_index_signature(onnx, onnx_cache):
    int8 = OnnxEmbedder(SentenceTransformersEmbedderConfig(quantize="int8"))
    assert cosines(int8.embed(TEXTS), onnx.embed(TEXTS)).min() >= 0.97
    base = PipelineConfig()
    quantized = parse_pipeline({"dense": {"embedder": {"quantize": "int8"}}})
    assert quantized.index_signature() != base.index_signature()
    with pytest.raises(ValueError, match="int8 runs on ONNX Runtime"):
        parse_pipeline({"dense": {"embedder": {"quantize": "int8", "runtime": "torch"}}})


def test_runtime_is_not_part_of_the_index_signature():
    signatures = {
        json.dumps(parse_pipeline({"dense": {"embedder": {"runtime": r, "batch_size": b}}}).index_signature())
        for r in ("auto", "torch", "onnx")
        for b in (8, 64)
    }
    assert len(signatures) == 1


def unsupported_model(tmp_path: Path) -> Path:
    model = tmp_path / "cls-model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))  # fmt: skip
    (model / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 8, "pooling_mode_cls_token": True})
    )
    return model


def test_unsupported_model_names_the_fix(tmp_path, onnx_cache):
    from ragkit.models import ModelUnavailable

    embedder = OnnxEmbedder(SentenceTransformersEmbedderConfig(model=str(unsupported_model(tmp_path)), runtime="onnx"))
    with pytest.raises(ModelUnavailable, match="runtime: torch"):
        embedder.embed(["x"])


DOCS = [
    Document(id="saturn", source="saturn.md", text="Saturn has rings of ice. Titan is its largest moon."),
    Document(id="mars", source="mars.md", text="Mars has Olympus Mons, the tallest volcano in the solar system."),
    Document(id="jupiter", source="jupiter.md", text="Jupiter's Great Red Spot is a giant storm."),
    Document(id="voyager", source="voyager.md", text="Voyager 1 was launched in 1977 and left the heliosphere in 2012."),
]


@pytest.mark.parametrize("built_with,queried_with", [("torch", "onnx"), ("onnx", "torch")])
def test_index_from_one_runtime_is_queried_by_the_other(tmp_path, onnx_cache, built_with, queried_with):
    def config(runtime: str) -> PipelineConfig:
        return parse_pipeline({"dense": {"embedder": {"runtime": runtime}}, "retrieval": {"rerank": {"name": "none"}}})

    with RAG(config(built_with), tmp_path) as writer:
        writer.ingest_documents(DOCS)
        want = [[(h.chunk.doc_id, round(h.score, 4)) for h in writer.retrieve(q)] for q in ("tallest volcano", "storm")]
    with RAG(config(queried_with), tmp_path) as reader:
        got = [[(h.chunk.doc_id, round(h.score, 4)) for h in reader.retrieve(q)] for q in ("tallest volcano", "storm")]
        assert reader.verify().ok  # sampled chunks re-embedded by the other runtime match the stored vectors
        # ...and ingesting more with the other runtime is allowed (same index signature)
        reader.ingest_documents([Document(id="venus", source="venus.md", text="Venus is the hottest planet.")])
        assert reader.retrieve("hottest planet")[0].chunk.doc_id == "venus"
    assert got == want


def test_query_process_does_not_import_torch(tmp_path, onnx_cache):
    """A cold `ragkit query` with the default pipeline: ONNX Runtime only, no torch, no
    sentence-transformers (the absent default cross-encoder is detected without importing it)."""
    index = tmp_path / "index"
    with RAG(PipelineConfig(), index) as rag:
        rag.ingest_documents(DOCS)
    script = textwrap.dedent(
        f"""
        import sys
        from typer.testing import CliRunner
        from ragkit.cli import app
        result = CliRunner().invoke(app, ["query", "When was Voyager 1 launched?", "--index", {str(index)!r}, "--json"])
        assert result.exit_code == 0, result.output
        heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout, proc.stdout[-2000:]
