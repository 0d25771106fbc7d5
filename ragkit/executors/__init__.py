"""Where an ingest loads, chunks and embeds besides this process (`ragkit.protocols.IngestExecutor`).

`ray_data`: a Ray cluster through Ray Data (extra `ragkit[ray]`, imported only when used). The
commit itself is always the local single writer (`ragkit.indexes.writer.write_generation`).
"""
