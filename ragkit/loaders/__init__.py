"""Stage 1: loading. Files on disk -> `Document`s, with failures reported, never raised.

Public entry point: `load_paths(paths, config) -> LoadReport` (implemented in `walk.py`).
One module per file format; each registers a `Loader` (ragkit.protocols) for its extensions and
raises `LoaderError` (or any exception) with a human reason when a file is unusable.
"""

from ragkit.loaders.base import LoaderError
from ragkit.loaders.registry import loader_for, supported_extensions
from ragkit.loaders.walk import Discovery, LoadedFile, LoadReport, discover, load_file, load_paths

__all__ = [
    "Discovery",
    "LoadReport",
    "LoadedFile",
    "LoaderError",
    "discover",
    "load_file",
    "load_paths",
    "loader_for",
    "supported_extensions",
]
