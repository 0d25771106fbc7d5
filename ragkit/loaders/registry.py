"""File extension -> loader component (stage "loader" of `ragkit.components`).

A loader registers with the extensions it reads; a plugin's loader for a new extension is picked
up like the built-in ones. When two loaders claim one extension, the one registered last wins
(a plugin can replace a built-in format).
"""

from __future__ import annotations

from pathlib import Path

from ragkit.components import Component, components


def _by_extension() -> dict[str, Component]:
    found: dict[str, Component] = {}
    for component in components("loader"):
        for extension in component.extensions:
            found[extension] = component
    return found


def supported_extensions() -> list[str]:
    return sorted(_by_extension())


def loader_for(path: Path) -> Component | None:
    """The loader component for `path` by its (case-insensitive) extension, or None."""
    return _by_extension().get(path.suffix.lower())


def unsupported_reason(path: Path, hint: bool = False) -> str:
    """Why `path` is not loaded; with `hint`, also list what is supported."""
    kind = f"'{path.suffix}'" if path.suffix else "(no extension)"
    reason = f"unsupported file type {kind}"
    return f"{reason} (supported: {', '.join(supported_extensions())})" if hint else reason
