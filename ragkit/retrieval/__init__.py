"""Stage 4: retrieval. Question -> dense and sparse candidates -> fusion -> rerank -> top-k `Hit`s.

Modules: `fusion` (RRF and convex combination, pure functions), `rerank` (cross-encoder),
`hybrid` (the retriever that runs them over an `IndexSnapshot`).
"""
