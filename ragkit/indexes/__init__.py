"""Stage 3: indexing. Chunks -> a dense index (embeddings in faiss), a sparse BM25 index and a
chunk/document store, written together as one immutable generation of an index directory.

Modules, in the order an ingest uses them: `embedder` (texts -> vectors), `faiss_dense`,
`tokenize` + `bm25` (sparse), `store` (SQLite), `writer` (builds the next generation),
`layout` (generations, atomic publish, writer lock), `snapshot` (opens one generation to read).
"""
