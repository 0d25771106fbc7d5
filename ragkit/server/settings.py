"""What `ragkit serve` is told on its command line, checked before anything is loaded."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

MIB = 1024 * 1024


class ServerConfigError(ValueError):
    """A server setting that cannot work (the message names the option and what to do)."""


def default_workers() -> int:
    """Query threads: one per core. A query's model work runs on one torch thread (see
    `ragkit.indexes.embedder`), so more threads than cores only adds waiting inside the process."""
    return max(1, os.cpu_count() or 1)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index_dir: Path
    pipeline: Path | None = Field(None, description="pipeline YAML; default: the index's own, else the built-in one")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(None, description="required on every API request when set")
    allow_roots: list[Path] = Field(
        default_factory=list, description="server-side directories `POST /v1/ingest` may name (none: uploads only)"
    )
    upload_dir: Path | None = Field(None, description="where uploaded files are kept; default INDEX/uploads")
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed by CORS (none: off)")
    workers: int = Field(default_factory=default_workers, ge=1, description="queries answered at once")
    max_queue: int = Field(64, ge=0, description="queries waiting for a worker before 503 busy")
    max_body_bytes: int = Field(1 * MIB, ge=1024, description="largest JSON request body")
    max_upload_bytes: int = Field(100 * MIB, ge=1024, description="largest upload request (all files together)")
    max_upload_files: int = Field(1000, ge=1, description="most files in one upload request")
    max_jobs_kept: int = Field(200, ge=1, description="finished ingest jobs remembered for GET /v1/jobs/{id}")

    @property
    def uploads(self) -> Path:
        return self.upload_dir if self.upload_dir is not None else self.index_dir / "uploads"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def check(self) -> None:
        """Refuse settings that would expose the index (or that cannot work) before anything loads."""
        if not self.loopback and self.api_key is None:
            raise ServerConfigError(
                f"--host {self.host} lets other machines reach the server: set an API key "
                "(RAGKIT_API_KEY=... or --api-key) or bind to 127.0.0.1"
            )
        if self.api_key is not None and len(self.api_key.get_secret_value()) < 16:
            raise ServerConfigError("the API key is too short: use at least 16 characters (e.g. `openssl rand -hex 24`)")
        for root in self.allow_roots:
            if not root.is_dir():
                raise ServerConfigError(f"--allow-root {root}: not a directory")
        if self.pipeline is not None and not self.pipeline.is_file():
            raise ServerConfigError(f"--pipeline {self.pipeline}: no such file")
