"""Token counting with character offsets, so chunkers can budget spans without re-tokenising.

`load_tokenizer("regex")` counts words and punctuation (`\\w+|[^\\w\\s]`, unicode-aware);
any other name is a Hugging Face tokenizer id, a local path or `bundled:all-MiniLM-L6-v2`,
loaded from local files only. Both expose `count(text)` and `starts(text)` (the character
offset where each token begins), which is all a chunker needs to budget any span exactly.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Protocol

from ragkit.models import ModelUnavailable, resolve_model

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")

# Long texts are encoded in blocks of about this many characters, cut at whitespace: a batch
# call lets the Rust tokenizer use every core, and one giant sequence is not faster anyway.
_BLOCK_CHARS = 1 << 16
_SEPARATOR = re.compile(r"[ \n]")


class Tokenizer(Protocol):
    """Counts tokens and says where each token starts in a text."""

    name: str
    # True when the count of a span cut at token starts or whitespace always equals the number
    # of the full text's tokens that start inside it, so chunkers need not re-count chunks.
    context_free: bool
    # Characters no token spans and no normalisation joins across: a span whose edges both
    # touch one of them (or the text's ends) has exactly the tokens the full text has there.
    safe_edges: str

    def count(self, text: str) -> int: ...

    def count_many(self, texts: list[str]) -> list[int]: ...

    def starts(self, text: str) -> list[int]:
        """Sorted character offsets at which the tokens of `text` begin (one per token)."""
        ...


class RegexTokenizer:
    """Words (`\\w+`) and single punctuation/symbol characters are one token each."""

    name = "regex"
    context_free = True
    safe_edges = ""  # unused: every cut the chunkers make is safe for this tokenizer

    def count(self, text: str) -> int:
        return len(TOKEN_PATTERN.findall(text))

    def count_many(self, texts: list[str]) -> list[int]:
        return [self.count(text) for text in texts]

    def starts(self, text: str) -> list[int]:
        return [m.start() for m in TOKEN_PATTERN.finditer(text)]


class HFTokenizer:
    """A Hugging Face fast tokenizer; counts exclude special tokens ([CLS], [SEP], ...)."""

    context_free = False

    def __init__(self, name: str, tokenizer: Any) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        self.name = name
        self.tokenizer = tokenizer
        # A private copy of the Rust tokenizer: some tokenizer.json files (MiniLM's included)
        # enable padding/truncation to 128, which transformers only switches off per call.
        self._backend = RustTokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._backend.no_padding()
        self._backend.no_truncation()
        self.safe_edges = " \t\n\r" if _splits_words_independently(self._backend) else ""

    def count(self, text: str) -> int:
        """Equals `len(tokenizer(text, add_special_tokens=False)["input_ids"])`."""
        return len(self._backend.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: list[str]) -> list[int]:
        encodings = self._backend.encode_batch(texts, add_special_tokens=False)
        return [len(encoding.ids) for encoding in encodings]

    def starts(self, text: str) -> list[int]:
        blocks = _blocks(text)
        encodings = self._backend.encode_batch([text[a:b] for a, b in blocks], add_special_tokens=False)
        starts: list[int] = []
        for (offset, _), encoding in zip(blocks, encodings):
            starts.extend(offset + start for start, _ in encoding.offsets)
        starts.sort()  # normalisers can reorder offsets slightly; bisecting needs them sorted
        return starts


def _splits_words_independently(backend: Any) -> bool:
    """True for BERT-style WordPiece: each whitespace-separated word is tokenised on its own.

    Its normaliser only maps characters one by one (ASCII whitespace stays a separator) and
    its pre-tokeniser splits at whitespace first, so chunks cut at ASCII whitespace need no
    re-count. Anything else (BPE, SentencePiece, added tokens that swallow spaces) is re-counted.
    """
    spec = json.loads(backend.to_str())
    normalizer = spec.get("normalizer") or {"type": "BertNormalizer"}
    pre_tokenizer = spec.get("pre_tokenizer") or {}
    return (
        normalizer.get("type") == "BertNormalizer"
        and pre_tokenizer.get("type") == "BertPreTokenizer"
        and spec.get("model", {}).get("type") == "WordPiece"
        and all(
            not token.get("lstrip") and not token.get("rstrip") and not re.search(r"\s", token["content"])
            for token in spec.get("added_tokens") or []
        )
    )


def _blocks(text: str) -> list[tuple[int, int]]:
    """Consecutive (start, end) ranges of about `_BLOCK_CHARS`, each ending after a space or newline.

    Never cut inside a word: the offsets must be the ones the whole text would get.
    """
    blocks = []
    start = 0
    while len(text) - start > _BLOCK_CHARS:
        limit = start + _BLOCK_CHARS
        cut = text.rfind("\n", start, limit) + 1 or text.rfind(" ", start, limit) + 1
        if cut <= start:  # a block-sized run without spaces: extend it to the next one
            match = _SEPARATOR.search(text, limit)
            if match is None:
                break
            cut = match.end()
        blocks.append((start, cut))
        start = cut
    blocks.append((start, len(text)))
    return blocks


def load_tokenizer(name: str) -> Tokenizer:
    """The tokenizer `name` ('regex', a HF id, a local path or 'bundled:all-MiniLM-L6-v2')."""
    if name == "regex":
        return RegexTokenizer()
    return _load_hf(name)


@lru_cache(maxsize=8)
def _load_hf(name: str) -> HFTokenizer:
    # Cached: loading takes a noticeable fraction of a second and chunkers are built often.
    hint = (
        f"tokenizer {name!r} must be available locally (a local directory, a Hugging Face id "
        "already in the local cache, or 'bundled:all-MiniLM-L6-v2'); ragkit never downloads "
        "tokenizers. Use tokenizer: regex to count words instead"
    )
    try:
        path = resolve_model(name)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"{hint}: {exc}") from exc
    except Exception as exc:  # transformers raises OSError, ValueError, ... for missing files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailable(f"{hint}. Loading it failed: {reason}") from exc
    if not getattr(tokenizer, "is_fast", False) or getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ModelUnavailable(
            f"tokenizer {name!r} has no fast (Rust) implementation; ragkit needs one for "
            "character offsets. Use a tokenizer with a tokenizer.json, or tokenizer: regex"
        )
    return HFTokenizer(name, tokenizer)


def count_tokens(text: str, tokenizer: str = "regex") -> int:
    """How many tokens `text` has under the named tokenizer."""
    return load_tokenizer(tokenizer).count(text)
