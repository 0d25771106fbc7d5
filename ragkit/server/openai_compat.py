"""OpenAI-compatible chat: `POST /v1/chat/completions` (streaming or not) and `GET /v1/models`.

Any OpenAI client or chat UI can use ragkit as its backend. The served pipeline is one model,
`ragkit-<pipeline name>`. The last user message is the question; with an LLM generator, earlier
turns condense it into a standalone question first. The reply's content is the cited answer
followed by a Markdown "Sources" list, and the response (the last chunk, when streaming) carries
the citations in an extra `citations` field and the full `query --json` answer under `ragkit`.
Sampling parameters (temperature, max_tokens, ...) are accepted and ignored: the pipeline decides.
Extra request fields `top_k` and `filter` (the SDK's `extra_body`) scope retrieval.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from ragkit.schema import Answer
from ragkit.server.errors import ApiError, describe_exception
from ragkit.server.rest import FILTER_HELP
from ragkit.server.service import RagService, parse_filter, sources_markdown

OWNER = "ragkit"


def model_id(service: RagService) -> str:
    return f"ragkit-{service.rag.config.name}"


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, ...: accepted, unused
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send many sampling fields: ignored
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    top_k: int | None = Field(None, ge=1, le=100, description="ragkit: hits handed to the generator")
    filter: dict[str, Any] | None = Field(None, description="ragkit: " + FILTER_HELP)


def citations_json(answer: Answer) -> list[dict[str, Any]]:
    metadata = {h.chunk.id: h.chunk.metadata for h in answer.hits}
    return [
        {**c.model_dump(), "page": metadata.get(c.chunk_id, {}).get("page"), "pages": metadata.get(c.chunk_id, {}).get("pages")}
        for c in answer.citations
    ]


def build_router(service: RagService) -> APIRouter:
    router = APIRouter(tags=["openai"])

    @router.get("/v1/models")
    async def models() -> dict[str, Any]:
        """The served pipeline, as an OpenAI model."""
        return {
            "object": "list",
            "data": [{"id": model_id(service), "object": "model", "created": 0, "owned_by": OWNER}],
        }

    @router.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest) -> Response:
        """An OpenAI chat completion whose answer is ragkit's cited answer."""
        served = model_id(service)
        if body.model != served:
            raise ApiError(404, "model_not_found", f"model {body.model!r} is not served here; use {served!r}", "model")
        turns = [(m.role, m.text()) for m in body.messages if m.role in ("user", "assistant")]
        if not any(role == "user" and text.strip() for role, text in turns):
            raise ApiError(422, "invalid_request", "messages: no user message with text to answer", "messages")
        flt = parse_filter(body.filter)
        question, note = await service.run(service.standalone_question, turns)
        completion_id = f"chatcmpl-{secrets.token_hex(12)}"
        created = int(time.time())
        if body.stream:
            events = await service.stream(question, body.top_k, flt)
            return EventSourceResponse(_chunks(events, completion_id, created, served, question, note), ping=15)
        answer = await service.query(question, body.top_k, flt)
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": served,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer.text + sources_markdown(answer)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "citations": citations_json(answer),
                "ragkit": _extra(answer, question, note),
            }
        )

    return router


def _extra(answer: Answer, question: str, note: str | None) -> dict[str, Any]:
    extra = answer.to_json_dict()
    extra["question"] = question
    if note:
        extra["trace"]["warnings"] = [note, *extra["trace"]["warnings"]]
    return extra


async def _chunks(
    events: Any, completion_id: str, created: int, model: str, question: str, note: str | None
) -> Any:
    """OpenAI `chat.completion.chunk` events: the role, each text delta, the Sources list, then a
    final chunk with finish_reason "stop" and the citations, then `[DONE]`."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return json.dumps(payload, ensure_ascii=False)

    yield {"data": chunk({"role": "assistant", "content": ""})}
    async for kind, value in events:
        if kind == "delta":
            yield {"data": chunk({"content": value})}
        elif kind == "answer":
            sources = sources_markdown(value)
            if sources:
                yield {"data": chunk({"content": sources})}
            yield {"data": chunk({}, "stop", citations=citations_json(value), ragkit=_extra(value, question, note))}
        elif kind == "error":
            _, code, message = describe_exception(value)
            yield {"data": json.dumps({"error": {"message": message, "type": "server_error", "code": code}})}
    yield {"data": "[DONE]"}
