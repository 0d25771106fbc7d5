"""ragkit's error hierarchy. The CLI maps `UserError` to exit code 2 ("nothing was done: fix the
input"); any other exception is a bug and keeps its traceback.

Every message is redacted when the error is created (see `ragkit.redaction`): an error can be
printed, logged or returned by a server without leaking a key that some server echoed into it.
"""

from __future__ import annotations

from ragkit.redaction import redact


class RagkitError(Exception):
    """Base of every error ragkit raises on purpose; the message is already redacted."""

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(redact(str(message)), *args)


class UserError(RagkitError):
    """Something the user can fix (bad input, configuration, a missing or locked index, a model
    that is not installed); the message names the file or field and says what to do. CLI exit 2."""


class TargetError(UserError, ValueError):
    """A delete/prune target that is empty or would remove more than it names."""
