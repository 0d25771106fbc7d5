"""Generator backed by any OpenAI-compatible chat completions endpoint (OpenAI, llama.cpp, vLLM, ...).

Uses the official `openai` SDK. Where to connect: `generator.base_url`, else `$OPENAI_BASE_URL`,
else the SDK's default (api.openai.com). The key: `generator.api_key`, else `$OPENAI_API_KEY`.
Errors become `GenerationError`s that name the endpoint and model and never contain the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai
from openai.types.chat import ChatCompletionChunk

from ragkit.config import OpenAIGeneratorConfig
from ragkit.generation import Generated
from ragkit.generation.citations import resolve_citations
from ragkit.generation.errors import GenerationError
from ragkit.generation.prompt import NO_ANSWER, prompt_builder
from ragkit.generation.stream import AnswerStream, check_finish, warn_no_hits
from ragkit.schema import Hit, Trace

__all__ = ["AnswerStream", "GenerationError", "OpenAIGenerator", "PLACEHOLDER_API_KEY"]

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


class OpenAIGenerator:
    """Grounded answers from an OpenAI-compatible chat model, with checked `[n]` citations."""

    def __init__(self, config: OpenAIGeneratorConfig) -> None:
        self.config = config
        base_url = (config.base_url or "").strip() or _env("OPENAI_BASE_URL")
        api_key = config.api_key.get_secret_value().strip() if config.api_key is not None else ""
        api_key = api_key or _env("OPENAI_API_KEY")
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

    # --- answering ---------------------------------------------------------------------------

    def generate(self, question: str, hits: list[Hit], trace: Trace) -> Generated:
        """Ask the model with the grounded prompt; resolve its `[n]` citations against `hits`."""
        if not hits:
            self._warn_no_hits(trace)
            return Generated(text=NO_ANSWER)
        completion = self._create(question, hits, stream=False)
        choices = getattr(completion, "choices", None)
        if not choices:
            raise GenerationError(
                self._redact(f"{self._where()} failed: the response has no choices: {completion!r:.200}")
            )
        choice = choices[0]
        text = (choice.message.content or "").strip() if choice.message is not None else ""
        self._check_finish(choice.finish_reason, trace)
        if not text:
            trace.warn(
                f"the model returned no text (finish_reason={choice.finish_reason}); answered '{NO_ANSWER}'"
            )
            return Generated(text=NO_ANSWER)
        return resolve_citations(text, hits, trace)

    def generate_stream(self, question: str, hits: list[Hit], trace: Trace) -> AnswerStream:
        """Like `generate`, but yields text deltas as they arrive; see `AnswerStream`.

        The request is sent here, so an HTTP error (bad key, unknown model) raises
        `GenerationError` before anything is yielded.
        """
        if not hits:
            self._warn_no_hits(trace)
            return AnswerStream(iter([NO_ANSWER]), hits, trace)
        stream = self._create(question, hits, stream=True)
        return AnswerStream(self._deltas(stream, trace), hits, trace)

    def _create(self, question: str, hits: list[Hit], *, stream: bool) -> Any:
        """One chat completions request (a `ChatCompletion`, or a `Stream` of chunks)."""
        messages: Any = prompt_builder(self.config.prompt)(question, hits, self.config.max_context_chars)
        try:
            return self._client.chat.completions.create(
                model=self.config.model,
                messages=messages,
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
                **({"stream": True} if stream else {}),
            )
        except openai.OpenAIError as exc:
            # `from None`: the SDK exception may carry the raw response body, which a server
            # could have filled with the key; our message keeps everything useful, redacted.
            raise self._error(exc) from None

    def complete(self, messages: list[dict[str, str]]) -> tuple[str, str | None]:
        """One plain chat completion with caller-built `messages` -> (text, finish_reason).

        Same client, endpoint, key, timeout, retries and redacted `GenerationError`s as
        `generate`; used by callers with their own prompts (e.g. the LLM faithfulness judge).
        """
        try:
            completion = self._client.chat.completions.create(
                model=self.config.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
            )
        except openai.OpenAIError as exc:
            raise self._error(exc) from None
        choices = getattr(completion, "choices", None)
        if not choices:
            raise GenerationError(
                self._redact(f"{self._where()} failed: the response has no choices: {completion!r:.200}")
            )
        choice = choices[0]
        text = (choice.message.content or "") if choice.message is not None else ""
        return text, choice.finish_reason

    def _deltas(self, stream: openai.Stream[ChatCompletionChunk], trace: Trace) -> Iterator[str]:
        """Text deltas from the SDK stream; a break after some text keeps it and warns instead of raising."""
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
                        yield content
        except openai.OpenAIError as exc:
            if not got_text:
                # Nothing to keep: a failure before any text is a plain error, not a partial answer.
                raise self._error(exc) from None
            trace.warn(f"answer incomplete: stream interrupted: {self._reason(exc)}")
            return
        finally:
            stream.close()
        if finish_reason is None:
            # The SDK ends quietly when the server just closes the connection; only the missing
            # finish_reason tells an interrupted answer from a complete one.
            if not got_text:
                raise GenerationError(self._where() + " failed: the stream ended before any text arrived")
            trace.warn(
                "answer incomplete: stream interrupted: the connection closed before the model finished"
            )
        else:
            self._check_finish(finish_reason, trace)

    # --- helpers -----------------------------------------------------------------------------

    def _warn_no_hits(self, trace: Trace) -> None:
        warn_no_hits(trace)

    def _check_finish(self, finish_reason: str | None, trace: Trace) -> None:
        check_finish(finish_reason, self.config.max_tokens, trace)

    def _where(self) -> str:
        return f"generator 'openai': request to {self.endpoint} (model {self.config.model!r})"

    def _reason(self, exc: openai.OpenAIError) -> str:
        """What went wrong, in one line, redacted: status code and error type, or the transport failure."""
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
        status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
        message = self._redact(f"{self._where()} failed: {self._reason(exc)}")
        return GenerationError(message, status_code=status)

    def _redact(self, text: str) -> str:
        """Defence in depth: a server may echo the key back in its error body."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
            if len(secret) >= 8:
                # Servers often echo a masked key ("abcd1234****wxyz"); its head is still secret.
                text = text.replace(secret[:8], "***")
        return _KEY_LIKE.sub("sk-***", text)
