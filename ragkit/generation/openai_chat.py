"""Any OpenAI-compatible chat completions endpoint (OpenAI, llama.cpp's server, vLLM, ...) as a
`ChatModel`, and the `openai` generator (a `ChatGenerator` over it).

Uses the official `openai` SDK (extra `ragkit[openai]`, imported when first used). Where to
connect: `generator.base_url`, else `$OPENAI_BASE_URL`, else the SDK's default (api.openai.com).
The key: `generator.api_key`, else `$OPENAI_API_KEY`. Errors become `GenerationError`s that name
the endpoint and model and never contain the key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr

from ragkit.components import ComponentConfig, register
from ragkit.errors import UserError
from ragkit.generation.chat import ChatGenerator, StreamInterrupted
from ragkit.generation.errors import GenerationError
from ragkit.generation.prompt import PromptStyle
from ragkit.protocols import Messages
from ragkit.redaction import redact

if TYPE_CHECKING:
    import openai

__all__ = ["GenerationError", "OpenAIChat", "OpenAIGeneratorConfig", "PLACEHOLDER_API_KEY", "openai_generator"]

OPENAI_MISSING = "generator 'openai' needs the openai SDK: pip install 'ragkit[openai]'"


class OpenAIGeneratorConfig(ComponentConfig):
    """An OpenAI-compatible chat model (endpoint, model, key) and how it is prompted."""

    provides_chat_model = True
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


def _sdk() -> Any:
    try:
        import openai
    except ImportError:
        raise UserError(OPENAI_MISSING) from None
    return openai

# Local OpenAI-compatible servers (llama.cpp, vLLM, Ollama, LM Studio) ignore the key, but the SDK
# refuses to build a client without one; this value is sent instead and is not a secret.
PLACEHOLDER_API_KEY = "sk-no-key-required"

MISSING_KEY_MESSAGE = (
    "generator 'openai' needs an API key: set OPENAI_API_KEY or generator.api_key "
    "(or point generator.base_url at a local OpenAI-compatible server)"
)

# OpenAI-style keys, including the partly masked form some servers echo ("sk-abc1****wxyz").
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_*\-]{6,}")
_MAX_DETAIL_CHARS = 500


def _env(name: str) -> str | None:
    """An environment variable, with "" treated as unset (as in `OPENAI_BASE_URL= ragkit ...`)."""
    value = os.environ.get(name, "").strip()
    return value or None


def _shown(url: str | None) -> str:
    """The URL with any `user:password@` removed, so it can be shown in messages."""
    if url is None:
        return "the default endpoint"
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


@register("chat_model", "openai", OpenAIGeneratorConfig)
class OpenAIChat:
    """Chat completions from an OpenAI-compatible endpoint, through the official SDK (its retries,
    backoff and `Retry-After` handling), with redacted `GenerationError`s."""

    def __init__(self, config: OpenAIGeneratorConfig) -> None:
        openai = _sdk()
        self.config = config
        base_url = (config.base_url or "").strip() or _env("OPENAI_BASE_URL")
        given = config.api_key.get_secret_value().strip() if config.api_key is not None else ""
        api_key = given or _env("OPENAI_API_KEY")
        if api_key is None:
            if base_url is None:
                raise GenerationError(MISSING_KEY_MESSAGE)
            api_key = PLACEHOLDER_API_KEY  # see PLACEHOLDER_API_KEY: local servers ignore it
        self._secrets = [api_key] if api_key != PLACEHOLDER_API_KEY else []
        try:
            self._client = openai.OpenAI(
                api_key=api_key,
                # None would make the SDK re-read $OPENAI_BASE_URL (we already did, treating ""
                # as unset); not passing it at all leaves the SDK's own default.
                **({"base_url": base_url} if base_url is not None else {}),
                timeout=config.timeout_s,
                max_retries=config.max_retries,
            )
        except openai.OpenAIError as exc:
            raise GenerationError(
                self._redact(f"generator 'openai': cannot create a client for {_shown(base_url)}: {exc}")
            ) from None
        self.endpoint = _shown(str(self._client.base_url)).rstrip("/") + "/chat/completions"

    @property
    def identity(self) -> str:
        settings = self.config.model_dump(mode="json", include={"model", "temperature", "max_tokens"})
        return json.dumps({"endpoint": self.endpoint, **settings}, sort_keys=True)

    def _request(self, messages: Messages, overrides: dict[str, Any], stream: bool) -> Any:
        openai = _sdk()
        try:
            return self._client.chat.completions.create(
                model=self.config.model,
                messages=messages,
                temperature=overrides.get("temperature", self.config.temperature),
                max_tokens=overrides.get("max_tokens", self.config.max_tokens),
                **({"stream": True} if stream else {}),
            )
        except openai.OpenAIError as exc:
            # `from None`: the SDK exception may carry the raw response body, which a server
            # could have filled with the key; our message keeps everything useful, redacted.
            raise self._error(exc) from None

    def complete(self, messages: Messages, **overrides: Any) -> tuple[str, str | None]:
        """One chat completion -> (text, finish_reason). `overrides`: temperature, max_tokens."""
        completion = self._request(messages, overrides, stream=False)
        choices = getattr(completion, "choices", None)
        if not choices:
            raise GenerationError(
                self._redact(f"{self._where()} failed: the response has no choices: {completion!r:.200}")
            )
        choice = choices[0]
        text = (choice.message.content or "") if choice.message is not None else ""
        return text, choice.finish_reason

    def stream(self, messages: Messages, **overrides: Any) -> Generator[tuple[str, str | None], None, None]:
        """The request is sent now (an HTTP error raises here); the deltas come as they arrive."""
        return self._pieces(self._request(messages, overrides, stream=True))

    def _pieces(self, stream: Any) -> Generator[tuple[str, str | None], None, None]:
        openai = _sdk()
        got_text = False
        finish_reason: str | None = None
        try:
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
                    content = choice.delta.content if choice.delta is not None else None
                    if content:
                        got_text = True
                        yield content, None
        except openai.OpenAIError as exc:
            if not got_text:
                # Nothing to keep: a failure before any text is a plain error, not a partial answer.
                raise self._error(exc) from None
            raise StreamInterrupted(self._reason(exc)) from None
        finally:
            stream.close()
        if finish_reason is None:
            # The SDK ends quietly when the server just closes the connection; only the missing
            # finish_reason tells an interrupted answer from a complete one.
            if not got_text:
                raise GenerationError(self._where() + " failed: the stream ended before any text arrived")
            raise StreamInterrupted("the connection closed before the model finished")
        yield "", finish_reason

    # --- errors -----------------------------------------------------------------------------

    def _where(self) -> str:
        return f"generator 'openai': request to {self.endpoint} (model {self.config.model!r})"

    def _reason(self, exc: openai.OpenAIError) -> str:
        """What went wrong, in one line, redacted: status code and error type, or the transport failure."""
        openai = _sdk()
        if isinstance(exc, openai.APIStatusError):
            kinds = [k for k in (getattr(exc, "type", None), getattr(exc, "code", None)) if k]
            kind = f" ({', '.join(dict.fromkeys(kinds))})" if kinds else ""
            body = exc.body
            # OpenAI puts the text in error.message; other servers (e.g. FastAPI-based) use other keys.
            detail = (body.get("message") or body) if isinstance(body, dict) else body
            detail_text = f": {str(detail)[:_MAX_DETAIL_CHARS]}" if detail else ""
            reason = f"HTTP {exc.status_code} {type(exc).__name__}{kind}{detail_text}"
            if exc.status_code in (401, 403):
                reason += " (check OPENAI_API_KEY / generator.api_key)"
            elif exc.status_code == 404:
                reason += " (check generator.model and generator.base_url)"
        elif isinstance(exc, openai.APITimeoutError):
            reason = f"timed out after {self.config.timeout_s}s (generator.timeout_s)"
        elif isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            reason = f"connection error ({cause})" if cause is not None else "connection error"
        else:
            reason = f"{type(exc).__name__}: {str(exc)[:_MAX_DETAIL_CHARS]}"
        return self._redact(reason)

    def _error(self, exc: openai.OpenAIError) -> GenerationError:
        openai = _sdk()
        status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
        message = self._redact(f"{self._where()} failed: {self._reason(exc)}")
        return GenerationError(message, status_code=status)

    def _redact(self, text: str) -> str:
        """Defence in depth: a server may echo the key back in its error body (ragkit.redaction
        masks it, whole or in part); key-shaped strings of other keys are masked too."""
        return _KEY_LIKE.sub("sk-***", redact(text, extra=self._secrets))


@register("generator", "openai", OpenAIGeneratorConfig)
def openai_generator(config: OpenAIGeneratorConfig, embedder: Any = None, analyzer: Any = None, sentences: Any = None) -> ChatGenerator:
    """Grounded answers with checked citations from an OpenAI-compatible chat model."""
    return ChatGenerator(
        OpenAIChat(config), prompt=config.prompt, max_context_chars=config.max_context_chars, max_tokens=config.max_tokens
    )
