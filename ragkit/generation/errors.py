"""Errors raised by generators (importable without pulling in any generator's SDK)."""

from __future__ import annotations

from ragkit.errors import RagkitError


class GenerationError(RagkitError, RuntimeError):
    """Generation failed; the message says which endpoint and model, and why (never a secret).

    `status_code` is the HTTP status when the server answered with an error, else None.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
