"""`ragkit serve`: one process that answers apps (REST), chat UIs (OpenAI-compatible), agents (MCP)
and people (the web UI at /), from one index, with its models loaded once.

Needs the `serve` extra (`pip install 'ragkit[serve]'`); the CLI imports this package only for
`ragkit serve` and `ragkit mcp`, so `ragkit query` never loads FastAPI.

    ragkit serve --index .ragkit-demo                 # http://127.0.0.1:8000 (UI at /, API docs at /docs)
    RAGKIT_API_KEY=... ragkit serve --host 0.0.0.0    # any other address needs an API key
    ragkit mcp --index .ragkit-demo                   # the MCP tools over stdio, for desktop clients

Modules: settings (options, checked before loading), security (key, Host, limits, uploads, paths,
log redaction), errors (JSON errors), jobs (background ingests), metrics (Prometheus), service
(the `RAG` behind every front end), rest, openai_compat, mcp_tools, app (assembly); static/ is the UI.
"""

from __future__ import annotations

import logging
import sys

from ragkit.server.settings import ServerConfigError, ServerSettings

__all__ = ["ServerConfigError", "ServerSettings", "run_mcp_stdio", "serve"]


def serve(settings: ServerSettings, log_level: str = "info") -> None:
    """Run the HTTP server until interrupted (ServerConfigError before anything loads)."""
    import uvicorn

    from ragkit.server.app import build_service, create_app
    from ragkit.server.security import install_log_redaction

    settings.check()
    secrets = [settings.api_key.get_secret_value()] if settings.api_key else []
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    install_log_redaction(secrets)
    service = build_service(settings)
    app = create_app(settings, service)
    where = f"http://{settings.host if ':' not in settings.host else '[' + settings.host + ']'}:{settings.port}"
    print(
        f"ragkit serve: {where}/ (web UI), {where}/docs (API), {where}/mcp (MCP) - index {settings.index_dir}, "
        f"pipeline {service.rag.config.name}, {settings.workers} query workers"
        + (", API key required" if settings.api_key else ""),
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level, proxy_headers=False)
    install_log_redaction(secrets)  # again: uvicorn.Config has just set up its own log handlers
    uvicorn.Server(config).run()


def run_mcp_stdio(settings: ServerSettings) -> None:
    """The MCP tools over stdio (stdout carries the protocol: everything else goes to stderr)."""
    import anyio

    from ragkit.server.app import build_service
    from ragkit.server.mcp_tools import build_mcp

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    service = build_service(settings)
    mcp = build_mcp(service)
    service.warm_up()
    try:
        anyio.run(mcp.run_stdio_async)
    finally:
        service.close()
