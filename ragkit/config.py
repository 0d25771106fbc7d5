"""Pipeline configuration, mirrored 1:1 by `pipelines/*.yaml`.

The skeleton (which stages exist, and the settings that are not a component's: include globs,
candidate counts...) is declared here; each component declares its own config next to its code and
registers it (`ragkit.components`). A stage's field accepts exactly the registered configs of that
stage, chosen by `name`, so an unknown component (`generator: {name: gpt}`) or a misspelled field
is a validation error naming the exact field path, and a plugin's component is configurable the
moment its package is installed. A section without `name` means the field's default component.

A pipeline file may start from another: `extends: default.yaml` (relative to the file) loads that
pipeline first and deep-merges this file over it; a section that switches component (another
`name`) replaces the inherited one instead of merging into it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, Union

import yaml
from pydantic import BaseModel, Discriminator, Field, SecretStr, Tag, ValidationError, model_validator
from pydantic.fields import FieldInfo

from ragkit.components import ComponentConfig, Stage, Strict, load_components, on_change, registered
from ragkit.components import version as registry_version
from ragkit.errors import UserError
from ragkit.models import BUNDLED_MINILM, BUNDLED_SMOLLM2
from ragkit.redaction import strip_userinfo

if TYPE_CHECKING:  # the built-in components, for static typing; at run time: the registry
    from ragkit.chunkers.markdown import MarkdownChunkerConfig
    from ragkit.chunkers.recursive import RecursiveChunkerConfig
    from ragkit.generation.extractive import ExtractiveGeneratorConfig
    from ragkit.generation.local_llama import LocalGeneratorConfig
    from ragkit.generation.openai_chat import OpenAIGeneratorConfig
    from ragkit.indexes.bm25 import BM25Config
    from ragkit.indexes.chroma import ChromaConfig
    from ragkit.indexes.embedder import SentenceTransformersEmbedderConfig
    from ragkit.indexes.faiss_dense import FaissConfig
    from ragkit.loaders.html import HtmlLoaderConfig
    from ragkit.loaders.tabular import CsvLoaderConfig, JsonlLoaderConfig
    from ragkit.retrieval.adaptive import AdaptiveConfig
    from ragkit.retrieval.convex import ConvexConfig
    from ragkit.retrieval.cross_encoder import CrossEncoderRerankConfig
    from ragkit.retrieval.hyde import HydeConfig
    from ragkit.retrieval.llm_rerank import LLMRerankConfig
    from ragkit.retrieval.multi_query import MultiQueryConfig
    from ragkit.retrieval.rerank import NoRerankConfig
    from ragkit.retrieval.rrf import RRFConfig
    from ragkit.retrieval.transforms import NoQueryTransformConfig

    ChunkerConfig: TypeAlias = RecursiveChunkerConfig | MarkdownChunkerConfig
    EmbedderConfig: TypeAlias = SentenceTransformersEmbedderConfig
    VectorStoreConfig: TypeAlias = FaissConfig | ChromaConfig
    SparseConfig: TypeAlias = BM25Config
    FusionConfig: TypeAlias = AdaptiveConfig | ConvexConfig | RRFConfig
    QueryTransformConfig: TypeAlias = NoQueryTransformConfig | MultiQueryConfig | HydeConfig
    RerankConfig: TypeAlias = NoRerankConfig | CrossEncoderRerankConfig | LLMRerankConfig
    GeneratorConfig: TypeAlias = ExtractiveGeneratorConfig | OpenAIGeneratorConfig | LocalGeneratorConfig

__all__ = [
    "BUNDLED_MINILM",
    "BUNDLED_SMOLLM2",
    "DenseConfig",
    "LoaderConfig",
    "PipelineConfig",
    "PipelineError",
    "RetrievalConfig",
    "Strict",
    "load_pipeline",
    "merge_overrides",
    "parse_pipeline",
    "public_dump",
    "read_yaml_mapping",
]



def component_field(stage: Stage, default: str, description: str = "") -> Any:
    """A pipeline field holding one component of `stage`; `default` when the YAML omits it."""
    return Field(
        default_factory=lambda: _default_config(stage, default),
        description=description or None,
        json_schema_extra={"component_stage": stage, "default_component": default},
    )


def _default_config(stage: Stage, name: str) -> ComponentConfig:
    for component in registered(stage):
        if component.name == name:
            return component.default_config()
    raise UserError(f"the default {stage} {name!r} is not registered")


# --- loading -------------------------------------------------------------------------------


class LoaderConfig(Strict):
    """Which files an ingest reads; per-format options sit in a section named after the loader
    (`jsonl: {text_fields: [body]}`), one for every registered loader that has options."""

    include: list[str] = Field(default_factory=lambda: ["**/*"])
    exclude: list[str] = Field(default_factory=lambda: ["**/.*", "**/.*/**"])
    follow_symlinks: bool = False
    max_file_mb: float = Field(200.0, gt=0)

    if TYPE_CHECKING:  # sections of the built-in loaders with options (at run time: the registry's)
        jsonl: JsonlLoaderConfig = Field(default_factory=JsonlLoaderConfig)
        csv: CsvLoaderConfig = Field(default_factory=CsvLoaderConfig)
        html: HtmlLoaderConfig = Field(default_factory=HtmlLoaderConfig)

    @model_validator(mode="before")
    @classmethod
    def _sections_as_data(cls, data: Any) -> Any:
        """A section may be given as any pydantic model with its fields (e.g. a TabularConfig)."""
        if isinstance(data, dict):
            return {k: v.model_dump(exclude={"name"}) if isinstance(v, ComponentConfig) else v for k, v in data.items()}
        return data

    def section(self, loader: str) -> ComponentConfig | None:
        """The options of `loader` (None when it has none)."""
        value = self.__dict__.get(loader)
        return value if isinstance(value, ComponentConfig) else None


# --- indexing ------------------------------------------------------------------------------


class DenseConfig(Strict):
    embedder: EmbedderConfig = component_field("embedder", "sentence-transformers")
    backend: VectorStoreConfig = component_field("vector_store", "faiss", "where vectors are stored and searched")


# --- retrieval -----------------------------------------------------------------------------


class RetrievalConfig(Strict):
    dense_k: int = Field(50, gt=0, description="candidates taken from the dense index")
    sparse_k: int = Field(50, gt=0, description="candidates taken from the sparse index")
    # Adaptive: per-query weights from the top dense cosine, so the hybrid matches the better
    # retriever whichever it is (dense on boolq-dev, BM25 on HaluEval QA and NarrativeQA), where
    # the fixed convex 0.75/0.25 fell 0.02-0.05 nDCG@10 below BM25 (docs/benchmarks.md). It relies
    # on `merge_duplicates`: thousands of identical chunks would otherwise tie the dense top-k
    # (tests/test_hostile.py).
    fusion: FusionConfig = component_field("fusion", "adaptive")
    # Transforms and the LLM reranker call the pipeline's chat model (the generator's LLM).
    query_transform: QueryTransformConfig = component_field("query_transform", "none")
    # No reranker by default: no cross-encoder ships offline, and a default that is never available
    # would only put a warning on every answer. Configure `cross-encoder` with a local model.
    rerank: RerankConfig = component_field("reranker", "none")
    merge_duplicates: bool = Field(
        True, description="merge candidates with identical chunk text before fusion (one hit per text)"
    )
    top_k: int = Field(5, gt=0, description="hits handed to the generator")


# --- the pipeline --------------------------------------------------------------------------


class SegmentsConfig(Strict):
    """How the segments of an index are merged (ragkit/indexes/merge.py: a tiered policy, as
    Lucene's). Merging never changes results; it bounds how many segments a query searches and
    purges deleted rows. Not part of the index signature: change it freely."""

    per_tier: int = Field(10, ge=2, description="merge when a size tier holds this many segments")
    floor_rows: int = Field(10_000, ge=1, description="segments up to this many live rows share the lowest tier")
    max_merged_rows: int = Field(
        5_000_000, ge=1, description="background merges never produce a larger segment (`ragkit optimize` may)"
    )
    max_deleted_share: float = Field(
        0.3, gt=0, le=1, description="a segment with a larger share of deleted rows is rewritten without them"
    )
    background: bool = Field(True, description="merge after commits in a background thread (false: only `ragkit optimize`)")


class PipelineConfig(Strict):
    name: str = "default"
    loader: LoaderConfig = Field(default_factory=LoaderConfig)
    # markdown falls back to recursive splitting for documents without headings; on the sample
    # questions it cited the right source 28/28 vs 27/28 for recursive (heading-sized chunks).
    chunker: ChunkerConfig = component_field("chunker", "markdown")
    dense: DenseConfig = Field(default_factory=DenseConfig)
    sparse: SparseConfig = component_field("sparse_index", "bm25")
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    generator: GeneratorConfig = component_field("generator", "extractive")
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig)

    @model_validator(mode="after")
    def _chat_users_need_a_chat_model(self) -> PipelineConfig:
        if self.generator.provides_chat_model:
            return self
        users = [
            f"{where} ({config.name})"
            for where, config in (
                ("retrieval.query_transform", self.retrieval.query_transform),
                ("retrieval.rerank", self.retrieval.rerank),
            )
            if config.uses_chat_model
        ]
        if users:
            raise ValueError(
                f"{' and '.join(users)} {'call' if len(users) > 1 else 'calls'} the pipeline's LLM, "
                f"but generator {self.generator.name!r} has none: configure an `openai` (or `local`) "
                "generator, or set these back to `none`"
            )
        return self

    def index_signature(self) -> dict[str, Any]:
        """The parts that shape what is stored in an index: changing them needs a rebuild.

        The dense *backend* (faiss index type and parameters, or chroma) is not part of it: the
        writer rebuilds the dense index from the stored vectors when only that changes, no re-embedding.
        """
        return {
            "chunker": self.chunker.index_identity(),
            "dense": {"embedder": self.dense.embedder.index_identity()},
            "sparse": self.sparse.index_identity(),
        }

    def to_yaml(self) -> str:
        """YAML for saving next to an index. Secrets are never written (see `public_dump`)."""
        return yaml.safe_dump(_name_first(public_dump(self)), sort_keys=False)


# --- the registry's unions --------------------------------------------------------------------

_MODELS = (LoaderConfig, DenseConfig, RetrievalConfig, PipelineConfig)  # inner before outer
# LoaderConfig's own fields; every other field is the section of a registered loader, rebuilt each time
# (a loader that is no longer registered loses its section).
_LOADER_BASE_FIELDS = frozenset(LoaderConfig.model_fields)
_rebuild_lock = threading.RLock()


def _union(stage: Stage, default: str) -> Any:
    """The discriminated union of `stage`'s registered configs (`name` selects; missing: `default`)."""

    def component_name(value: Any) -> str:
        if isinstance(value, dict):
            return str(value.get("name", default))
        return str(getattr(value, "name", default))

    found = sorted(registered(stage), key=lambda c: c.name)
    members = tuple(Annotated[c.config, Tag(c.name)] for c in found)
    if len(members) == 1:
        return members[0]
    names = ", ".join(repr(c.name) for c in found)
    message = f"unknown {stage.replace('_', ' ')} name: expected one of {names} (`ragkit components` lists them)"
    discriminator = Discriminator(component_name, custom_error_type="unknown_component", custom_error_message=message)
    return Annotated[Union[members], discriminator]  # noqa: UP007  (a runtime tuple)


_built_version = -1


def rebuild_models() -> None:
    """Make every stage field accept exactly the registered configs (called after registrations,
    so a plugin's component is valid YAML as soon as it is registered)."""
    global _built_version
    with _rebuild_lock:
        if _built_version == registry_version():
            return
        _built_version = registry_version()
        for model in _MODELS:
            fields = dict(model.model_fields)
            for name, info in list(fields.items()):
                extra = info.json_schema_extra
                if isinstance(extra, dict) and "component_stage" in extra:
                    stage, default = extra["component_stage"], extra["default_component"]
                    if not any(c.name == default for c in registered(stage)):  # type: ignore[arg-type]
                        raise UserError(f"the default {stage} component {default!r} is not registered")
                    factory = info.default_factory
                    assert factory is not None  # component_field always sets one
                    fields[name] = FieldInfo.from_annotated_attribute(
                        _union(stage, default),  # type: ignore[arg-type]
                        Field(default_factory=factory, description=info.description, json_schema_extra=extra),
                    )
            if model is LoaderConfig:
                fields = {name: info for name, info in fields.items() if name in _LOADER_BASE_FIELDS}
                for component in registered("loader"):
                    if set(component.config.model_fields) - {"name"}:
                        fields[component.name] = FieldInfo.from_annotated_attribute(
                            component.config, Field(default_factory=component.config)
                        )
            model.model_fields.clear()
            model.model_fields.update(fields)
            model.model_rebuild(force=True)



# --- saving ----------------------------------------------------------------------------------


def public_dump(model: BaseModel) -> dict[str, Any]:
    """`model` as JSON-ready data with every secret removed: `SecretStr` fields become null and
    credentials in URLs (`http://user:pw@host`) are cut out. The one dumper for anything saved."""

    def scrub(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return None
        if isinstance(value, BaseModel):
            # The instance's own fields: a component registered after it was made (a plugin
            # imported later) adds a field to its class that this instance does not hold.
            return {name: scrub(v) for name, v in value.__dict__.items() if name in type(value).model_fields}
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [scrub(v) for v in value]
        if isinstance(value, str):
            return strip_userinfo(value)
        return value

    # model_dump(mode="json") first: it turns enums, paths etc. into JSON values and drops excluded
    # fields; then the secrets (which it would render as "**********") come from the model itself.
    def merge(plain: Any, clean: Any) -> Any:
        if isinstance(plain, dict) and isinstance(clean, dict):
            return {k: merge(v, clean.get(k)) for k, v in plain.items()}
        if isinstance(plain, list) and isinstance(clean, list):
            return [merge(a, b) for a, b in zip(plain, clean)]
        return clean if clean is None or isinstance(clean, str) else plain

    return merge(model.model_dump(mode="json"), scrub(model))


def secret_fields(model: BaseModel, prefix: str = "") -> list[str]:
    """Dotted paths of the `SecretStr` fields of `model` (nested) that hold a value."""
    found = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        path = f"{prefix}{name}"
        if isinstance(value, SecretStr):
            found.append(path)
        elif isinstance(value, BaseModel):
            found += secret_fields(value, path + ".")
    return found


def _name_first(value: Any) -> Any:
    """Put each component's `name` key first so saved YAML reads like the shipped pipelines."""
    if isinstance(value, dict):
        ordered = {"name": value["name"]} if "name" in value else {}
        ordered.update({k: _name_first(v) for k, v in value.items() if k != "name"})
        return ordered
    return value


# --- reading ---------------------------------------------------------------------------------


class PipelineError(UserError, ValueError):
    """A pipeline file that cannot be used; the message names the file and field."""


def read_yaml_mapping(path: str | Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The top-level mapping of a YAML file; problems raise `error` naming the file.

    Only the error position is shown: YAML's own message quotes the offending line, which may
    hold a key.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} file not found: {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise error(f"{path}: invalid YAML{where}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def merge_overrides(base: Any, override: Any) -> Any:
    """Deep merge `override` into `base`; a mapping that switches component (another `name`)
    replaces the old one, since the old component's settings mean nothing to the new one."""
    if isinstance(base, dict) and isinstance(override, dict):
        if "name" in override and override["name"] != base.get("name", override["name"]):
            return override
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge_overrides(base.get(key), value) if key in base else value
        return merged
    return override


MAX_EXTENDS = 8  # `extends` chains longer than this are surely a cycle


def resolve_extends(raw: dict[str, Any], path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """`raw` (read from `path`) with its `extends:` chain loaded and merged underneath it."""
    parent = raw.get("extends")
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent.strip():
        raise PipelineError(f"{path}: extends: expected a pipeline file name, got {parent!r}")
    parent_path = (path.parent / parent).resolve()
    if parent_path in seen or len(seen) >= MAX_EXTENDS:
        chain = " -> ".join(str(p) for p in (*seen, parent_path))
        raise PipelineError(f"{path}: extends: the pipelines extend each other in a cycle ({chain})")
    base = resolve_extends(read_yaml_mapping(parent_path, "pipeline", PipelineError), parent_path, (*seen, path.resolve()))
    body = {k: v for k, v in raw.items() if k != "extends"}
    merged = merge_overrides({k: v for k, v in base.items() if k != "name"}, body)
    return merged


def load_pipeline(path: str | Path) -> PipelineConfig:
    path = Path(path)
    raw = read_yaml_mapping(path, "pipeline", PipelineError)
    return parse_pipeline(resolve_extends(raw, path), origin=str(path))


def parse_pipeline(raw: Any, origin: str = "<pipeline>") -> PipelineConfig:
    if not isinstance(raw, dict):
        raise PipelineError(f"{origin}: expected a mapping at the top level, got {type(raw).__name__}")
    if "extends" in raw:
        raise PipelineError(f"{origin}: extends: only a pipeline file can extend another (use load_pipeline)")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        # `from None`: pydantic's own error echoes the input values, which may include an api_key.
        raise PipelineError(f"{origin}: invalid pipeline:\n{describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One `  - field.path: message` line per problem, for errors that name the field."""
    return "\n".join(
        f"  - {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )


# Component configs are declared with their components; these names stay importable from here.
_MOVED = {
    "TabularConfig": "ragkit.loaders.tabular",
    "JsonlLoaderConfig": "ragkit.loaders.tabular",
    "CsvLoaderConfig": "ragkit.loaders.tabular",
    "RecursiveChunkerConfig": "ragkit.chunkers.recursive",
    "MarkdownChunkerConfig": "ragkit.chunkers.markdown",
    "SentenceTransformersEmbedderConfig": "ragkit.indexes.embedder",
    "FaissConfig": "ragkit.indexes.faiss_dense",
    "FaissHNSWConfig": "ragkit.indexes.faiss_dense",
    "FaissIVFPQConfig": "ragkit.indexes.faiss_dense",
    "ChromaConfig": "ragkit.indexes.chroma",
    "ChromaHNSWConfig": "ragkit.indexes.chroma",
    "CHROMA_AUTH_TOKEN_ENV": "ragkit.indexes.chroma",
    "BM25Config": "ragkit.indexes.bm25",
    "BM25TokenizerConfig": "ragkit.indexes.tokenize",
    "RRFConfig": "ragkit.retrieval.rrf",
    "ConvexConfig": "ragkit.retrieval.convex",
    "AdaptiveConfig": "ragkit.retrieval.adaptive",
    "NoRerankConfig": "ragkit.retrieval.rerank",
    "CrossEncoderRerankConfig": "ragkit.retrieval.cross_encoder",
    "LLMRerankConfig": "ragkit.retrieval.llm_rerank",
    "NoQueryTransformConfig": "ragkit.retrieval.transforms",
    "MultiQueryConfig": "ragkit.retrieval.multi_query",
    "HydeConfig": "ragkit.retrieval.hyde",
    "ExtractiveGeneratorConfig": "ragkit.generation.extractive",
    "OpenAIGeneratorConfig": "ragkit.generation.openai_chat",
    "LocalGeneratorConfig": "ragkit.generation.local_llama",
    "PromptStyle": "ragkit.generation.prompt",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'ragkit.config' has no attribute {name!r}")


# Last, once every name above exists (component modules may import from this module): register the
# built-ins and plugins, then make the stage fields accept what registered.
on_change(rebuild_models)
load_components()
rebuild_models()
