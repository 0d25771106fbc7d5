#!/usr/bin/env python3
"""One measured phase of bench/peers.py for one system, in a fresh process.

    PYTHON bench/peer_workers.py SYSTEM PHASE ARGS.json RESULT.json

SYSTEM is ragkit, llamaindex or haystack; each runs with its own interpreter (the project venv,
or a peer venv made by bench/peers.py), so this file imports nothing but the standard library at
module level and the system's own packages inside its functions. PHASE:

  ingest   load the model (timed apart), then build a persisted hybrid (dense + BM25) index of
           the passages in a fresh directory: wall and CPU time of that step alone
  cold     import the framework, reopen the index and answer one hybrid query (the driver times
           the whole process, interpreter start included, from outside)
  warm     reopen, warm up, then hybrid p50/p95 over the latency queries, one at a time
  quality  top-10 document runs for dense, BM25 and hybrid over the quality queries
  raw      ragkit only: the raw-encode floor, SentenceTransformer.encode (torch fp32) of the same
           texts, and the same with ragkit's ONNX Runtime embedder

Every system: the same MiniLM directory, the same passage texts (one document each), the same
thread count (OMP/MKL env + torch.set_num_threads), top-10 hybrid retrieval with the framework's
documented hybrid recipe and no LLM, no reranker.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

TOP_K = 10
CANDIDATES = 50  # ragkit: chunk candidates mapped to documents (a passage may be several chunks)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def set_threads(n: int) -> None:
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50_ms": statistics.median(ordered) * 1000, "p95_ms": p95 * 1000, "n": len(ordered)}


def timed_latencies(search: Callable[[str], Any], queries: list[str]) -> dict[str, float]:
    for q in queries[:5]:
        search(q)  # warm-up: caches, lazy loads, first-call compilation
    spent = []
    for q in queries:
        t = time.perf_counter()
        search(q)
        spent.append(time.perf_counter() - t)
    return percentiles(spent)


def load_passages(args: dict[str, Any]) -> list[dict[str, str]]:
    with open(args["passages"], encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# --- ragkit -------------------------------------------------------------------------------------


class Ragkit:
    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args
        self.index = Path(args["index"])

    def pipeline(self):  # type: ignore[no-untyped-def]
        from ragkit.config import PipelineConfig, load_pipeline

        config = load_pipeline(self.args["pipeline"]) if self.args.get("pipeline") else PipelineConfig()
        threads = self.args["threads"]
        if threads != (os.cpu_count() or 1):
            embedder = config.dense.embedder.model_copy(update={"threads": threads})
            config = config.model_copy(update={"dense": config.dense.model_copy(update={"embedder": embedder})})
        return config

    def ingest(self) -> dict[str, Any]:
        from ragkit.api import RAG
        from ragkit.schema import Document

        passages = load_passages(self.args)
        rag = RAG(self.pipeline(), self.index)
        t, c = time.perf_counter(), cpu_s()
        rag.embedder.load()
        rag.embedder.embed(["warm up"])  # the model is loaded and ready, as for the peers
        load = {"model_load_s": time.perf_counter() - t, "model_load_cpu_s": cpu_s() - c}
        docs = [Document(id=p["id"], source="corpus.jsonl", text=p["text"]) for p in passages]
        t, c = time.perf_counter(), cpu_s()
        stats = rag.ingest_documents(docs)
        return {**load, "ingest_s": time.perf_counter() - t, "ingest_cpu_s": cpu_s() - c,
                "chunks": stats.chunks_total, "runtime": rag.config.dense.embedder.resolved_runtime(),
                "batch_size": rag.config.dense.embedder.batch_size}  # fmt: skip

    def open(self):  # type: ignore[no-untyped-def]
        from ragkit.api import RAG

        return RAG.open(self.index)

    def cold(self) -> dict[str, Any]:
        rag = self.open()
        hits = rag.retrieve(self.args["question"], top_k=TOP_K)
        return {"hits": len(hits)}

    def warm(self) -> dict[str, Any]:
        rag = self.open()
        return {"hybrid": timed_latencies(lambda q: rag.retrieve(q, top_k=TOP_K), self.args["queries"])}

    def quality(self) -> dict[str, Any]:
        rag = self.open()
        retriever = rag.retriever()
        snapshot = retriever.snapshot
        doc_of_row: dict[int, str] = {}

        def doc_run(rows: Any, scores: Any) -> dict[str, float]:
            missing = [int(r) for r in rows if int(r) not in doc_of_row]
            for row, chunk in zip(missing, snapshot.store.chunks_by_rows(missing)):
                doc_of_row[row] = chunk.doc_id
            run: dict[str, float] = {}
            for row, score in zip(rows, scores):
                run.setdefault(doc_of_row[int(row)], float(score))  # a document ranks at its best chunk
            return dict(list(run.items())[:TOP_K])

        runs: dict[str, dict[str, dict[str, float]]] = {"dense": {}, "bm25": {}, "hybrid": {}}
        for qid, text in self.args["queries"].items():
            rows, scores = snapshot.dense.search(rag.embedder.embed_query(text), CANDIDATES)
            runs["dense"][qid] = doc_run(rows, scores)
            rows, scores = snapshot.sparse.search(rag.analyzer(text), CANDIDATES)
            runs["bm25"][qid] = doc_run(rows, scores)
            runs["hybrid"][qid] = _hit_run(rag.retrieve(text, top_k=CANDIDATES))
        return {"runs": runs}

    def raw(self) -> dict[str, Any]:
        """The raw-encode floor on exactly the texts ragkit embeds (its chunks)."""
        from sentence_transformers import SentenceTransformer

        from ragkit.indexes.embedder import make_embedder
        from ragkit.models import resolve_model

        rag = self.open()
        store = rag.snapshot().store
        texts = list(store.iter_chunk_texts())
        config = rag.config.dense.embedder
        result: dict[str, Any] = {"texts": len(texts)}
        model = SentenceTransformer(resolve_model(config.model), device="cpu")
        model.encode(["warm up"])
        t, c = time.perf_counter(), cpu_s()
        model.encode(texts, batch_size=config.batch_size, normalize_embeddings=True, show_progress_bar=False)
        result["torch_fp32"] = {"s": time.perf_counter() - t, "cpu_s": cpu_s() - c}
        for name, update in (("onnx_fp32", {"runtime": "onnx", "quantize": "none"}), ("onnx_int8", {"runtime": "onnx", "quantize": "int8"})):
            embedder = make_embedder(config.model_copy(update=update))
            embedder.embed(["warm up"])
            t, c = time.perf_counter(), cpu_s()
            embedder.embed(texts)
            result[name] = {"s": time.perf_counter() - t, "cpu_s": cpu_s() - c}
        return result


def _hit_run(hits: list[Any]) -> dict[str, float]:
    run: dict[str, float] = {}
    for hit in hits:
        run.setdefault(hit.chunk.doc_id, float(hit.score))
    return dict(list(run.items())[:TOP_K])


# --- LlamaIndex ---------------------------------------------------------------------------------


class LlamaIndex:
    """VectorStoreIndex (default SimpleVectorStore) + BM25Retriever (bm25s), fused by
    QueryFusionRetriever in reciprocal-rank mode with num_queries=1 (no LLM query generation)."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args
        self.index = Path(args["index"])
        from llama_index.core import Settings

        Settings.llm = None  # no LLM anywhere (QueryFusionRetriever would otherwise resolve OpenAI)

    def embed_model(self):  # type: ignore[no-untyped-def]
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        model = HuggingFaceEmbedding(model_name=self.args["model_path"], device="cpu")
        set_threads(self.args["threads"])
        return model

    def ingest(self) -> dict[str, Any]:
        from llama_index.core import Settings, StorageContext, VectorStoreIndex
        from llama_index.core.schema import TextNode
        from llama_index.retrievers.bm25 import BM25Retriever

        passages = load_passages(self.args)
        t, c = time.perf_counter(), cpu_s()
        Settings.embed_model = self.embed_model()
        Settings.embed_model.get_text_embedding("warm up")
        load = {"model_load_s": time.perf_counter() - t, "model_load_cpu_s": cpu_s() - c}
        nodes = [TextNode(id_=p["id"], text=p["text"]) for p in passages]  # one passage = one node
        t, c = time.perf_counter(), cpu_s()
        storage = StorageContext.from_defaults()
        index = VectorStoreIndex(nodes, storage_context=storage)
        index.storage_context.persist(persist_dir=str(self.index / "vector"))
        bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=TOP_K)
        bm25.persist(str(self.index / "bm25"))
        return {**load, "ingest_s": time.perf_counter() - t, "ingest_cpu_s": cpu_s() - c, "chunks": len(nodes),
                "batch_size": Settings.embed_model.embed_batch_size}  # fmt: skip

    def open(self):  # type: ignore[no-untyped-def]
        from llama_index.core import Settings, StorageContext, load_index_from_storage
        from llama_index.core.retrievers import QueryFusionRetriever
        from llama_index.retrievers.bm25 import BM25Retriever

        Settings.embed_model = self.embed_model()
        storage = StorageContext.from_defaults(persist_dir=str(self.index / "vector"))
        index = load_index_from_storage(storage)
        dense = index.as_retriever(similarity_top_k=TOP_K)
        bm25 = BM25Retriever.from_persist_dir(str(self.index / "bm25"))
        bm25.similarity_top_k = TOP_K
        hybrid = QueryFusionRetriever(
            [dense, bm25], similarity_top_k=TOP_K, num_queries=1, mode="reciprocal_rerank",
            use_async=False, verbose=False,
        )  # fmt: skip
        return dense, bm25, hybrid

    def cold(self) -> dict[str, Any]:
        _, _, hybrid = self.open()
        return {"hits": len(hybrid.retrieve(self.args["question"]))}

    def warm(self) -> dict[str, Any]:
        _, _, hybrid = self.open()
        return {"hybrid": timed_latencies(hybrid.retrieve, self.args["queries"])}

    def quality(self) -> dict[str, Any]:
        retrievers = dict(zip(("dense", "bm25", "hybrid"), self.open()))
        runs: dict[str, dict[str, dict[str, float]]] = {name: {} for name in retrievers}
        for qid, text in self.args["queries"].items():
            for name, retriever in retrievers.items():
                runs[name][qid] = {n.node.node_id: float(n.score or 0.0) for n in retriever.retrieve(text)}
        return {"runs": runs}


# --- Haystack -----------------------------------------------------------------------------------


class Haystack:
    """InMemoryDocumentStore (saved to disk) + InMemoryBM25Retriever and InMemoryEmbeddingRetriever,
    joined by DocumentJoiner in reciprocal_rank_fusion mode, in a Pipeline."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args
        self.index = Path(args["index"])

    def ingest(self) -> dict[str, Any]:
        from haystack import Document
        from haystack.document_stores.in_memory import InMemoryDocumentStore
        from haystack_integrations.components.embedders.sentence_transformers import (
            SentenceTransformersDocumentEmbedder,
        )

        passages = load_passages(self.args)
        t, c = time.perf_counter(), cpu_s()
        embedder = SentenceTransformersDocumentEmbedder(
            model=self.args["model_path"], progress_bar=False, local_files_only=True
        )
        embedder.warm_up()
        set_threads(self.args["threads"])
        embedder.run(documents=[Document(content="warm up")])
        load = {"model_load_s": time.perf_counter() - t, "model_load_cpu_s": cpu_s() - c}
        t, c = time.perf_counter(), cpu_s()
        docs = [Document(id=p["id"], content=p["text"]) for p in passages]
        store = InMemoryDocumentStore()
        store.write_documents(embedder.run(documents=docs)["documents"])
        self.index.mkdir(parents=True, exist_ok=True)
        store.save_to_disk(str(self.index / "store.json"))
        return {**load, "ingest_s": time.perf_counter() - t, "ingest_cpu_s": cpu_s() - c, "chunks": len(docs),
                "batch_size": embedder.batch_size}  # fmt: skip

    def open(self):  # type: ignore[no-untyped-def]
        from haystack import Pipeline
        from haystack.components.joiners import DocumentJoiner
        from haystack.components.retrievers.in_memory import InMemoryBM25Retriever, InMemoryEmbeddingRetriever
        from haystack.document_stores.in_memory import InMemoryDocumentStore
        from haystack_integrations.components.embedders.sentence_transformers import (
            SentenceTransformersTextEmbedder,
        )

        store = InMemoryDocumentStore.load_from_disk(str(self.index / "store.json"))
        text_embedder = SentenceTransformersTextEmbedder(
            model=self.args["model_path"], progress_bar=False, local_files_only=True
        )
        text_embedder.warm_up()
        set_threads(self.args["threads"])
        dense = InMemoryEmbeddingRetriever(document_store=store, top_k=TOP_K)
        bm25 = InMemoryBM25Retriever(document_store=store, top_k=TOP_K)
        pipe = Pipeline()
        pipe.add_component("text_embedder", text_embedder)
        pipe.add_component("dense", dense)
        pipe.add_component("bm25", bm25)
        pipe.add_component("joiner", DocumentJoiner(join_mode="reciprocal_rank_fusion", top_k=TOP_K))
        pipe.connect("text_embedder.embedding", "dense.query_embedding")
        pipe.connect("dense", "joiner")
        pipe.connect("bm25", "joiner")

        def hybrid(q: str) -> list[Any]:
            return pipe.run({"text_embedder": {"text": q}, "bm25": {"query": q}})["joiner"]["documents"]

        def dense_only(q: str) -> list[Any]:
            return dense.run(query_embedding=text_embedder.run(text=q)["embedding"])["documents"]

        def bm25_only(q: str) -> list[Any]:
            return bm25.run(query=q)["documents"]

        return dense_only, bm25_only, hybrid

    def cold(self) -> dict[str, Any]:
        _, _, hybrid = self.open()
        return {"hits": len(hybrid(self.args["question"]))}

    def warm(self) -> dict[str, Any]:
        _, _, hybrid = self.open()
        return {"hybrid": timed_latencies(hybrid, self.args["queries"])}

    def quality(self) -> dict[str, Any]:
        searches = dict(zip(("dense", "bm25", "hybrid"), self.open()))
        runs: dict[str, dict[str, dict[str, float]]] = {name: {} for name in searches}
        for qid, text in self.args["queries"].items():
            for name, search in searches.items():
                runs[name][qid] = {d.id: float(d.score or 0.0) for d in search(text)}
        return {"runs": runs}


SYSTEMS = {"ragkit": Ragkit, "llamaindex": LlamaIndex, "haystack": Haystack}


def main() -> None:
    system, phase, args_file, result_file = sys.argv[1:5]
    args = json.loads(Path(args_file).read_text())
    worker = SYSTEMS[system](args)
    result = getattr(worker, phase)()
    result["process_cpu_s"] = cpu_s()
    Path(result_file).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
