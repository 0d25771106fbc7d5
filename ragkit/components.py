"""The component registry: every implementation of a stage registers itself by (stage, name).

    from ragkit.components import ComponentConfig, register

    class KeywordRerankConfig(ComponentConfig):
        name: Literal["keyword"] = "keyword"
        top_n: int = 20

    @register("reranker", "keyword", KeywordRerankConfig)
    class KeywordReranker:
        def __init__(self, config: KeywordRerankConfig, **deps): ...

A component is a factory (usually its class) called as `factory(config, **deps)` by `build(stage,
config, **deps)`; `config` is an instance of the pydantic model it registered, which is also what
the pipeline YAML accepts for that stage (`retrieval.rerank: {name: keyword, top_n: 10}`): the
pipeline's per-stage unions are made from the registry (ragkit.config), so a registered component
is configurable with no edit anywhere else. Every factory of a stage is called with the same
keyword dependencies (`STAGE_DEPENDENCIES`) and the protocol of `ragkit.protocols` for its stage.

Built-in components live in the modules listed in `BUILTIN_MODULES` (one module per
implementation; heavy libraries are imported lazily inside them, so registering costs little).
Third-party packages add components through the entry point group `ragkit.components`: each entry
point names a module (or an object in one) whose import registers its components.

    [project.entry-points."ragkit.components"]
    my_store = "my_package.store"
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from ragkit.errors import UserError
from ragkit.redaction import register_secret

log = logging.getLogger(__name__)

Stage = Literal[
    "loader",
    "chunker",
    "embedder",
    "vector_store",
    "sparse_index",
    "fusion",
    "reranker",
    "query_transform",
    "chat_model",
    "generator",
    "answer_metric",
]
STAGES: tuple[Stage, ...] = (
    "loader",
    "chunker",
    "embedder",
    "vector_store",
    "sparse_index",
    "fusion",
    "reranker",
    "query_transform",
    "chat_model",
    "generator",
    "answer_metric",
)
ENTRY_POINT_GROUP = "ragkit.components"
# What `build` passes each stage's factories besides the config (see each stage's protocol).
STAGE_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "loader": (),
    "chunker": (),
    "embedder": (),
    "vector_store": ("index_dir", "stored"),  # stored: the config the index's generation was built with
    "sparse_index": (),
    "fusion": (),
    "reranker": ("chat",),  # the pipeline's ChatModel, or None
    "query_transform": ("chat",),
    "chat_model": (),
    "generator": ("embedder", "analyzer", "sentences"),  # sentences: () -> stored SentenceIndex, or None
    "answer_metric": ("embedder",),
}

# Built-in implementations, in data-flow order. Importing one registers what it defines.
BUILTIN_MODULES = (
    "ragkit.loaders.text",
    "ragkit.loaders.markdown",
    "ragkit.loaders.html",
    "ragkit.loaders.pdf",
    "ragkit.loaders.jsonl",
    "ragkit.loaders.csv",
    "ragkit.loaders.docx",
    "ragkit.chunkers.recursive",
    "ragkit.chunkers.markdown",
    "ragkit.indexes.embedder",
    "ragkit.indexes.faiss_dense",
    "ragkit.indexes.chroma",
    "ragkit.indexes.pgvector",
    "ragkit.indexes.bm25",
    "ragkit.retrieval.convex",
    "ragkit.retrieval.rrf",
    "ragkit.retrieval.adaptive",
    "ragkit.retrieval.transforms",
    "ragkit.retrieval.multi_query",
    "ragkit.retrieval.hyde",
    "ragkit.retrieval.rerank",
    "ragkit.retrieval.cross_encoder",
    "ragkit.retrieval.llm_rerank",
    "ragkit.generation.openai_chat",
    "ragkit.generation.local_llama",
    "ragkit.generation.extractive",
    "ragkit.eval.answer_metrics",
)


class Strict(BaseModel):
    """Unknown keys are errors: a typo in YAML must not be silently ignored.

    Every `SecretStr` field's value is registered with the redactor as the model is validated, so
    it is masked in every error, trace and output from then on (`ragkit.redaction`); secrets are
    never saved (`ragkit.config.public_dump`)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _register_secrets(self) -> Any:
        for name in type(self).model_fields:
            value = getattr(self, name, None)
            if isinstance(value, SecretStr):
                register_secret(value.get_secret_value())
        return self


class ComponentConfig(Strict):
    """Base of every component's config: `name` (a `Literal`) selects the component.

    `uses_chat_model`: the component calls the pipeline's LLM (query transforms, the LLM
    reranker); `provides_chat_model`: a generator with an LLM behind it that others may call."""

    uses_chat_model: ClassVar[bool] = False
    provides_chat_model: ClassVar[bool] = False
    name: str

    def index_identity(self) -> dict[str, Any]:
        """The settings that decide what an index stores (part of its signature: a change needs
        a rebuild). Default: all of them; a component overrides this to leave out settings that
        only change speed."""
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Component:
    stage: Stage
    name: str
    config: type[ComponentConfig]
    factory: Callable[..., Any]
    module: str
    extensions: tuple[str, ...] = ()  # loaders: the file extensions they read (".md")

    @property
    def summary(self) -> str:
        doc = (self.factory.__doc__ or self.config.__doc__ or "").strip()
        return " ".join(doc.split("\n\n")[0].split())  # the first paragraph, on one line

    def default_config(self) -> ComponentConfig:
        """The component's config with every default (its `name` defaults to the component's)."""
        return self.config()  # type: ignore[call-arg]  # subclasses give `name` a default

    def describe(self) -> dict[str, Any]:
        """What `ragkit components --json` prints for this component."""
        info: dict[str, Any] = {
            "stage": self.stage,
            "name": self.name,
            "module": self.module,
            "summary": self.summary,
            "config_schema": self.config.model_json_schema(),
        }
        if self.extensions:
            info["extensions"] = list(self.extensions)
        return info


_lock = threading.RLock()
_registry: dict[tuple[str, str], Component] = {}
_loaded = False
_loading = False  # listeners are told once, after every built-in and plugin module is imported
_listeners: list[Callable[[], None]] = []
_version = 0  # bumped by every registration

F = TypeVar("F", bound=Callable[..., Any])


def register(
    stage: Stage, name: str, config: type[ComponentConfig], *, extensions: tuple[str, ...] = ()
) -> Callable[[F], F]:
    """Class/function decorator: make `factory` the component `name` of `stage`."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    name_field = config.model_fields.get("name")
    if name_field is None or name_field.default != name:
        raise ValueError(f"{config.__name__}.name must default to {name!r} (a Literal[{name!r}] field)")

    def decorate(factory: F) -> F:
        component = Component(stage, name, config, factory, factory.__module__, tuple(e.lower() for e in extensions))
        with _lock:
            previous = _registry.get((stage, name))
            if previous is not None and previous.factory is not factory and previous.module != component.module:
                log.warning("component %s/%s from %s replaces the one from %s", stage, name, component.module, previous.module)
            _registry[(stage, name)] = component
            global _version
            _version += 1
            listeners = [] if _loading else list(_listeners)
        for listener in listeners:  # ragkit.config rebuilds the pipeline model's unions
            listener()
        return factory

    return decorate


def version() -> int:
    """Changes whenever a component is registered (lets callers rebuild derived state lazily)."""
    return _version


def on_change(listener: Callable[[], None]) -> None:
    """Call `listener` after every registration (ragkit.config keeps its unions current)."""
    with _lock:
        _listeners.append(listener)


def load_components() -> None:
    """Import the built-in component modules and the `ragkit.components` entry points (once).

    A plugin that fails to import is logged and skipped: one broken package must not make
    every ragkit command fail."""
    global _loaded, _loading
    with _lock:
        if _loaded:
            return
        _loaded = _loading = True
    try:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                entry_point.load()
            except Exception as exc:  # a broken plugin is reported, not fatal
                log.warning(
                    "ragkit plugin %r (%s) failed to load: %s: %s",
                    entry_point.name, entry_point.value, type(exc).__name__, exc,
                )  # fmt: skip
    finally:
        with _lock:
            _loading = False
            listeners = list(_listeners)
    for listener in listeners:
        listener()


def components(stage: Stage | None = None) -> list[Component]:
    """Registered components (of one stage), in registration order."""
    load_components()
    with _lock:
        return [c for c in _registry.values() if stage is None or c.stage == stage]


def registered(stage: Stage) -> Iterator[Component]:
    """Components of `stage` registered so far, without loading anything (for ragkit.config)."""
    with _lock:
        found = [c for c in _registry.values() if c.stage == stage]
    return iter(found)


def component(stage: Stage, name: str) -> Component:
    """The component `name` of `stage`; an unknown one is a UserError listing what exists."""
    load_components()
    with _lock:
        found = _registry.get((stage, name))
    if found is None:
        known = ", ".join(sorted(c.name for c in components(stage))) or "none"
        raise UserError(f"no {stage.replace('_', ' ')} named {name!r} is registered (known: {known})")
    return found


def build(stage: Stage, config: ComponentConfig, **deps: Any) -> Any:
    """Instantiate the component that `config` selects: `factory(config, **deps)`."""
    return component(stage, config.name).factory(config, **deps)
