"""The ASGI app of `ragkit serve`: REST, OpenAI-compatible chat, MCP at /mcp, the web UI at /.

Middleware, outermost first: guard (Host check on loopback, API key, body limits), metrics,
CORS (only with --cors-origin), then the routes. Models load once, in the background at startup;
`/readyz` answers 200 when they are loaded and an index is published.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ragkit.api import RAG
from ragkit.config import PipelineConfig, load_pipeline
from ragkit.indexes.layout import read_current
from ragkit.server import openai_compat, rest
from ragkit.server.errors import install_error_handlers
from ragkit.server.metrics import Metrics, MetricsMiddleware
from ragkit.server.security import GuardMiddleware
from ragkit.server.service import RagService
from ragkit.server.settings import ServerSettings

STATIC_DIR = Path(__file__).parent / "static"


def pipeline_for(settings: ServerSettings) -> PipelineConfig:
    """--pipeline, else the index's own pipeline, else the built-in default (as `ragkit ingest`)."""
    if settings.pipeline is not None:
        return load_pipeline(settings.pipeline)
    if read_current(settings.index_dir) is not None:
        return RAG.open(settings.index_dir).config
    return PipelineConfig()


def build_service(settings: ServerSettings, metrics: Metrics | None = None) -> RagService:
    settings.check()
    return RagService(RAG(pipeline_for(settings), settings.index_dir), settings, metrics)


def create_app(settings: ServerSettings, service: RagService | None = None) -> FastAPI:
    metrics = Metrics()
    if service is None:
        service = build_service(settings, metrics)
    else:
        service.metrics = metrics

    from mcp.server.transport_security import TransportSecuritySettings

    from ragkit.server.mcp_tools import build_mcp

    mcp = build_mcp(service)
    # The guard middleware already checks Host (loopback binds) and the API key for every path,
    # /mcp included; the SDK's own DNS-rebinding check would refuse the non-loopback hosts a
    # keyed server is meant to answer.
    mcp_app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=service.warm_up, name="ragkit-warm-up", daemon=True).start()
        async with mcp.session_manager.run():
            try:
                yield
            finally:
                service.close()

    app = FastAPI(
        title="ragkit",
        summary="Cited answers from your documents: REST, OpenAI-compatible chat, MCP, web UI.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app)
    app.include_router(rest.build_router(service))
    app.include_router(openai_compat.build_router(service))

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # The SDK's app is one route (/mcp) and a lifespan (entered above): take the route itself, so
    # /mcp answers without a redirect and everything else keeps the JSON 404 of this app.
    app.router.routes.extend(mcp_app.routes)

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "Mcp-Session-Id", "Mcp-Protocol-Version"],
            expose_headers=["Mcp-Session-Id", rest.GENERATION_HEADER],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(
        GuardMiddleware,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        check_host=settings.loopback,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ragkit")
    except PackageNotFoundError:
        return "0"
