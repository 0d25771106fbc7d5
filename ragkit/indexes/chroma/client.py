"""Connecting to chroma: clients, clear errors, the index's collection."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.indexes.chroma import (
    CHROMA_AUTH_TOKEN_ENV,
    ChromaBackendError,
    ChromaConfig,
    auth_token,
    chroma_path,
    default_collection_name,
    location,
)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

PAGE = 5000  # ids per page when listing a whole collection


def _headers(config: ChromaConfig) -> dict[str, str]:
    token = auth_token(config)
    if token is None:
        return {}
    if config.auth_header == "Authorization":
        return {"Authorization": f"Bearer {token}"}
    return {"X-Chroma-Token": token}


def _settings() -> Any:
    from chromadb.config import Settings

    # No telemetry: ragkit is offline-first (and chroma's posthog client would try the network).
    return Settings(anonymized_telemetry=False)


def _unreachable(config: ChromaConfig) -> str:
    host, port = config.host or "localhost", config.port
    return (
        f"chroma server {host}:{port} is not reachable; start one with "
        f"`chroma run --path CHROMA_DATA_DIR --host {host} --port {port}` "
        "or fix dense.backend.host/port"
    )


def _auth_failed(config: ChromaConfig, status: int) -> str:
    sent = "no token" if auth_token(config) is None else f"the token in the {config.auth_header} header"
    return (
        f"chroma server {config.host or 'localhost'}:{config.port} refused {sent} (HTTP {status}); "
        f"set dense.backend.auth_token or ${CHROMA_AUTH_TOKEN_ENV} to a token the server accepts"
    )


def _probe_server(config: ChromaConfig) -> None:
    """One authenticated request before chroma's client is built: chroma's own client turns a
    refused connection or a 401 into a vague 'could not connect to tenant' error."""
    import httpx

    url = f"{location(config, Path('.'))}/api/v2/auth/identity"
    try:
        response = httpx.get(url, headers=_headers(config), timeout=10.0)
    except httpx.HTTPError as exc:
        raise ChromaBackendError(f"{_unreachable(config)} ({type(exc).__name__})") from None
    if response.status_code in (401, 403):
        raise ChromaBackendError(_auth_failed(config, response.status_code))
    if response.status_code >= 400:
        raise ChromaBackendError(
            f"chroma server {config.host or 'localhost'}:{config.port} answered HTTP {response.status_code} "
            f"to {url}: is it a chroma 1.x server?"
        )


CHROMA_MISSING = "dense.backend 'chroma' needs chromadb: pip install 'ragkit[chroma]'"


def connect(config: ChromaConfig, index_dir: Path) -> ClientAPI:
    """A chroma client for `config` (server mode is probed first for a clear error)."""
    try:
        import chromadb
    except ImportError:
        raise ChromaBackendError(CHROMA_MISSING) from None

    with chroma_errors(config):
        if config.resolved_mode == "server":
            _probe_server(config)
            return chromadb.HttpClient(
                host=config.host or "localhost",
                port=config.port,
                ssl=config.ssl,
                headers=_headers(config),
                settings=_settings(),
            )
        path = chroma_path(config, index_dir)
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=_settings())


@contextmanager
def chroma_errors(config: ChromaConfig) -> Iterator[None]:
    """chroma's and httpx's exceptions as `ChromaBackendError`s that say what to do."""
    import httpx
    from chromadb.errors import AuthorizationError, ChromaAuthError, ChromaError

    try:
        yield
    except ChromaBackendError:
        raise
    except (ChromaAuthError, AuthorizationError) as exc:
        raise ChromaBackendError(_auth_failed(config, exc.code())) from None
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code in (401, 403):
            raise ChromaBackendError(_auth_failed(config, exc.response.status_code)) from None
        raise ChromaBackendError(f"chroma request failed: {exc}") from exc
    except (httpx.TransportError, ConnectionError) as exc:
        raise ChromaBackendError(f"{_unreachable(config)} ({type(exc).__name__})") from None
    except ValueError as exc:
        if "Could not connect" in str(exc):
            raise ChromaBackendError(_unreachable(config)) from None
        raise
    except ChromaError as exc:
        raise ChromaBackendError(f"chroma error: {type(exc).__name__}: {exc}") from exc


def open_collection(
    config: ChromaConfig, index_dir: Path, create: bool, client: ClientAPI | None = None
) -> Collection:
    """The index's collection. `create`: make it (inner-product HNSW with the configured
    parameters) if missing, and bring a changed `ef_search` to an existing one."""
    client = client or connect(config, index_dir)  # first: says what to install when chromadb is missing
    from chromadb.errors import NotFoundError

    name = config.collection or default_collection_name(index_dir)
    with chroma_errors(config):
        try:
            collection = client.get_collection(name, embedding_function=None)
        except (NotFoundError, ValueError) as exc:
            if not isinstance(exc, NotFoundError) and "does not exist" not in str(exc):
                raise
            if not create:
                raise ChromaBackendError(
                    f"chroma collection {name!r} is missing at {location(config, index_dir)}; "
                    "re-ingest to rebuild it from the stored vectors (no re-embedding)"
                ) from None
            h = config.hnsw
            return client.create_collection(
                name,
                configuration={
                    "hnsw": {
                        "space": h.space,
                        "max_neighbors": h.max_neighbors,
                        "ef_construction": h.ef_construction,
                        "ef_search": h.ef_search,
                    }
                },
                metadata={"created_by": "ragkit"},
                embedding_function=None,
            )
        if create:
            _check_hnsw(collection, config, index_dir)
    return collection


def _check_hnsw(collection: Collection, config: ChromaConfig, index_dir: Path) -> None:
    hnsw = (collection.configuration_json or {}).get("hnsw") or {}
    fixed = {"space": config.hnsw.space, "max_neighbors": config.hnsw.max_neighbors,
             "ef_construction": config.hnsw.ef_construction}
    differ = {k: (hnsw.get(k), v) for k, v in fixed.items() if hnsw.get(k) is not None and hnsw.get(k) != v}
    if differ:
        shown = ", ".join(f"{k} {have!r} (configured {want!r})" for k, (have, want) in differ.items())
        raise ChromaBackendError(
            f"chroma collection {collection.name!r} at {location(config, index_dir)} was created with {shown}; "
            "these cannot change on an existing collection: set dense.backend.collection to a new name "
            "(the next ingest fills it from the stored vectors)"
        )
    if hnsw.get("ef_search") != config.hnsw.ef_search:
        with warnings.catch_warnings():
            # chroma calls a collection without an embedding function "legacy"; that is the point.
            warnings.filterwarnings("ignore", "legacy embedding function config", DeprecationWarning)
            collection.modify(configuration={"hnsw": {"ef_search": config.hnsw.ef_search}})


def all_ids(collection: Collection) -> set[str]:
    ids: set[str] = set()
    offset = 0
    while True:
        page = collection.get(include=[], limit=PAGE, offset=offset)["ids"]
        ids.update(page)
        if len(page) < PAGE:
            return ids
        offset += len(page)
