"""Dense embeddings through ONNX Runtime + `tokenizers`: the bundled MiniLM without torch at query time.

A query process that embeds with sentence-transformers spends most of its CPU importing torch and
transformers (measured: ~6 CPU-s of imports vs ~0.3 for onnxruntime + tokenizers). This module runs
the same model with ONNX Runtime instead:

* the ONNX graph is exported once from the model's own weights (`torch.onnx.export` of the
  transformer plus its mean pooling; torch is needed for that one step only) and cached under
  `$RAGKIT_CACHE_DIR/onnx/` (default `~/.cache/ragkit/onnx/`), keyed by the model files, so every
  later process loads the cached file and never imports torch;
* texts are tokenized with the model's own `tokenizer.json` (truncated to the model's
  `max_seq_length`, as sentence-transformers does);
* the vectors equal sentence-transformers' (cosine >= 0.999, tests/test_onnx_embedder.py), so an
  index embedded by either path is searched correctly by the other: the runtime is not part of
  the index signature (`SentenceTransformersEmbedderConfig.vector_identity`).

`quantize: int8` instead runs a dynamically quantised copy (`onnxruntime.quantization.
quantize_dynamic`, per-channel int8 MatMul weights, made from the fp32 export and cached beside
it). Its vectors are *not* the same (cosine ~0.99), so `quantize` is part of the index signature.

Supported models: sentence-transformers directories made of a Transformer, mean Pooling and an
optional Normalize module (all-MiniLM-L6-v2 is one); anything else needs `runtime: torch`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.indexes.embedder import SentenceTransformersEmbedderConfig
from ragkit.models import ModelUnavailable, resolve_model
from ragkit.protocols import Embedder

log = logging.getLogger(__name__)

# Bump when the exported graph changes (inputs, outputs, pooling): old cache entries are ignored.
EXPORT_VERSION = 2  # 2: token states as a second output (stored sentence vectors)
OPSET = 17
_SUPPORTED_MODULES = (
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
)


def cache_root() -> Path:
    """Where exported ONNX models are kept: $RAGKIT_CACHE_DIR, else $XDG_CACHE_HOME/ragkit."""
    if os.environ.get("RAGKIT_CACHE_DIR"):
        return Path(os.environ["RAGKIT_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ragkit"


class OnnxModelSpec:
    """What an ONNX export needs to know about a sentence-transformers model directory."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        modules_file = directory / "modules.json"
        if not modules_file.is_file():
            raise ModelUnavailable(
                f"embedding model {name!r} ({directory}) is not a local sentence-transformers directory "
                "(no modules.json): the onnx runtime supports only those; use dense.embedder.runtime: torch"
            )
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        types = [m.get("type") for m in modules]
        if not types or types[0] != _SUPPORTED_MODULES[0] or any(t not in _SUPPORTED_MODULES for t in types):
            raise ModelUnavailable(
                f"embedding model {name!r}: modules {types} are not Transformer + Pooling (+ Normalize); "
                "the onnx runtime supports only that layout: use dense.embedder.runtime: torch"
            )
        self.normalizes = _SUPPORTED_MODULES[2] in types
        pooling = next((m for m in modules if m.get("type") == _SUPPORTED_MODULES[1]), None)
        if pooling is None:
            raise ModelUnavailable(f"embedding model {name!r}: no Pooling module; use dense.embedder.runtime: torch")
        pooling_config = json.loads((directory / pooling["path"] / "config.json").read_text(encoding="utf-8"))
        modes = [k for k, v in pooling_config.items() if k.startswith("pooling_mode") and v]
        if modes != ["pooling_mode_mean_tokens"]:
            raise ModelUnavailable(
                f"embedding model {name!r}: pooling {modes} is not mean pooling; use dense.embedder.runtime: torch"
            )
        self.dim = int(pooling_config["word_embedding_dimension"])
        st_config_file = directory / "sentence_bert_config.json"
        st_config = json.loads(st_config_file.read_text(encoding="utf-8")) if st_config_file.is_file() else {}
        self.max_seq_length = int(st_config.get("max_seq_length") or 512)
        if st_config.get("do_lower_case"):
            raise ModelUnavailable(f"embedding model {name!r}: do_lower_case is not supported; use runtime: torch")
        if not (directory / "tokenizer.json").is_file():
            raise ModelUnavailable(f"embedding model {name!r}: no tokenizer.json; use dense.embedder.runtime: torch")

    def cache_dir(self) -> Path:
        """A directory per (model files, export version): a changed model never meets a stale export."""
        digest = hashlib.sha256(f"{EXPORT_VERSION}:{OPSET}:{self.directory.resolve()}".encode())
        for path in sorted(self.directory.rglob("*")):
            if path.is_file() and path.suffix in {".json", ".safetensors", ".bin", ".txt"}:
                stat = path.stat()
                digest.update(f"{path.relative_to(self.directory)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.directory.name)
        return cache_root() / "onnx" / f"{slug}-{digest.hexdigest()[:16]}"


def export_fp32(spec: OnnxModelSpec, target: Path) -> None:
    """Export the transformer + mean pooling to `target` (written atomically). Needs torch, once."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:  # pragma: no cover - torch is a dependency of sentence-transformers
        raise ModelUnavailable(f"exporting {spec.name!r} to ONNX needs torch and transformers ({exc})") from exc

    class MeanPooled(torch.nn.Module):
        """The transformer's token states averaged over the attention mask (sentence-transformers'
        Pooling with pooling_mode_mean_tokens), and the token states themselves (the writer pools
        sentence vectors from them: ragkit/indexes/sentences.py)."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            states = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9), states

    model = MeanPooled(AutoModel.from_pretrained(str(spec.directory), local_files_only=True)).eval()
    example = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # TracerWarnings about shape checks that are constant for BERT (the mask always has
            # the input's length); the tests compare the vectors at many lengths.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example, torch.ones_like(example), torch.zeros_like(example)),
                str(partial),
                dynamo=False,  # the TorchScript exporter: no onnxscript needed, dynamic axes as given
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["sentence_embedding", "token_embeddings"],
                dynamic_axes={
                    "input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                    "sentence_embedding": {0: "batch"}, "token_embeddings": axes,
                },  # fmt: skip
                opset_version=OPSET,
            )
        os.replace(partial, target)  # concurrent exporters write the same bytes; last rename wins
    finally:
        partial.unlink(missing_ok=True)


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation (weights int8, activations quantised at run time), atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp.onnx")
    try:
        # Per-channel scales on the MatMul weights only: on 200 boolq-dev passages per-tensor int8
        # reached cosine 0.907 min / 0.957 mean vs fp32, per-channel MatMul-only 0.991 / 0.995 at
        # the same speed (quantising the embedding Gather too gained nothing).
        quantize_dynamic(
            str(source), str(partial), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
        )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def onnx_model_file(spec: OnnxModelSpec, quantize: str) -> Path:
    """The cached ONNX file for `spec` (exported / quantised now if it is not cached yet)."""
    directory = spec.cache_dir()
    fp32 = directory / "model.onnx"
    if not fp32.is_file():
        log.info("exporting %s to ONNX (once) into %s", spec.name, directory)
        export_fp32(spec, fp32)
    if quantize == "none":
        return fp32
    int8 = directory / "model-int8.onnx"
    if not int8.is_file():
        log.info("quantising %s to int8 (once) into %s", spec.name, directory)
        quantize_int8(fp32, int8)
    return int8


class OnnxEmbedder(Embedder):
    """The `Embedder` protocol on ONNX Runtime. Loads lazily, like `SentenceTransformerEmbedder`.

    Batches (`embed`) run on a session with `config.threads` intra-op threads; single queries
    (`embed_query`) on a separate one-thread session, created on first use: a short query gains
    nothing from intra-op threads, and on busy cores each parallel region waits for a time slice.
    """

    def __init__(self, config: SentenceTransformersEmbedderConfig) -> None:
        self.config = config
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._spec: OnnxModelSpec | None = None
        self._tokenizer: Any = None
        self._file: Path | None = None

    @property
    def model_id(self) -> str:
        return self.config.model

    @property
    def loaded(self) -> bool:
        return bool(self._sessions)

    def load(self) -> None:
        """Load the model now (for queries: the one-thread session), instead of on first use."""
        self._session(1)

    @property
    def dim(self) -> int:
        self._prepare()
        assert self._spec is not None
        return self._spec.dim

    def _prepare(self) -> None:
        if self._file is not None:
            return
        with self._lock:
            if self._file is not None:
                return
            from tokenizers import Tokenizer

            spec = OnnxModelSpec(self.config.model, Path(resolve_model(self.config.model)))
            if not spec.directory.is_dir():
                raise ModelUnavailable(
                    f"embedding model {self.config.model!r} is not a local directory: the onnx runtime "
                    "exports only local models; use dense.embedder.runtime: torch"
                )
            tokenizer = Tokenizer.from_file(str(spec.directory / "tokenizer.json"))
            # tokenizer.json carries its own fixed padding/truncation: use sentence-transformers'.
            tokenizer.enable_truncation(max_length=spec.max_seq_length)
            pad = tokenizer.padding or {}
            tokenizer.enable_padding(pad_id=pad.get("pad_id", 0), pad_token=pad.get("pad_token", "[PAD]"))
            file = onnx_model_file(spec, self.config.quantize)
            self._spec, self._tokenizer, self._file = spec, tokenizer, file

    def _session(self, threads: int) -> Any:
        session = self._sessions.get(threads)
        if session is not None:
            return session
        self._prepare()
        import onnxruntime as ort

        with self._lock:
            if threads not in self._sessions:
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                # Spinning workers burn a core while idle: on a shared machine that slows the others.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                options.log_severity_level = 3
                self._sessions[threads] = ort.InferenceSession(
                    str(self._file), options, providers=["CPUExecutionProvider"]
                )
        return self._sessions[threads]

    def _run(
        self, texts: Sequence[str], session: Any, on_tokens: Callable[[int, np.ndarray, list[tuple[int, int]]], None] | None = None
    ) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        outputs = ["sentence_embedding"] if on_tokens is None else ["sentence_embedding", "token_embeddings"]
        found = session.run(outputs, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        vectors = np.asarray(found[0], dtype=np.float32)
        if on_tokens is not None:
            states = np.asarray(found[1], dtype=np.float32)
            for i, encoding in enumerate(encodings):
                real = int(mask[i].sum())  # padded to the batch's longest text: keep the real tokens
                # special tokens ([CLS], [SEP]) have empty offsets (0, 0)
                on_tokens(i, states[i, :real], [(a, b) if b > a else (0, 0) for a, b in encoding.offsets[:real]])
        assert self._spec is not None
        if self.config.normalize or self._spec.normalizes:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors /= np.maximum(norms, 1e-12)  # sentence-transformers' Normalize (F.normalize eps)
        return vectors

    def embed(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Encode `texts` in order; `on_batch(n)` after each block of n texts (progress).

        Length-sorted batches over all texts, as `SentenceTransformerEmbedder.embed` does, so each
        batch pads to nearly its own length; results come back in input order.
        """
        threads = self.config.threads or (os.cpu_count() or 1)
        if len(texts) <= self.config.batch_size and 1 in self._sessions:
            # A few texts (e.g. the extractive generator's sentences in a query process): a second
            # session would cost ~0.25 CPU-s and another copy of the weights, more than it saves.
            threads = 1
        return self._embed(texts, self._session(threads), on_batch)

    def _embed(
        self, texts: Sequence[str], session: Any, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        assert self._spec is not None
        out = np.zeros((len(texts), self._spec.dim), dtype=np.float32)
        if not len(texts):
            return out
        order = np.argsort([-len(t) for t in texts], kind="stable")
        batch = self.config.batch_size
        block = batch * 8
        for begin in range(0, len(texts), block):
            rows = order[begin : begin + block]
            for lo in range(0, len(rows), batch):
                part = rows[lo : lo + batch]
                out[part] = self._run([texts[i] for i in part.tolist()], session)
            if on_batch is not None:
                on_batch(len(rows))
        return out

    def embed_with_tokens(
        self,
        texts: Sequence[str],
        on_tokens: Callable[[int, np.ndarray, list[tuple[int, int]]], None],
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """`embed(texts)`, also handing each text's token states and their character offsets to
        `on_tokens(i, ...)` (the `Embedder` protocol), from the same forward pass."""
        threads = self.config.threads or (os.cpu_count() or 1)
        session = self._session(threads)
        assert self._spec is not None
        out = np.zeros((len(texts), self._spec.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        batch = self.config.batch_size
        for lo in range(0, len(texts), batch):
            part = order[lo : lo + batch].tolist()
            out[part] = self._run([texts[i] for i in part], session, lambda j, tokens, offsets: on_tokens(part[j], tokens, offsets))
            if on_batch is not None:
                on_batch(len(part))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One text on the one-thread session (see the class docstring)."""
        return self._embed([text], self._session(1))[0]
