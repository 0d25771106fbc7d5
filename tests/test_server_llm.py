"""Token streaming through `ragkit serve` with a real LLM: the server's pipeline uses the `openai`
generator against a real llama.cpp server (SmolLM2-135M-Instruct, started by llama_support), so
SSE and OpenAI-compatible streams carry the model's text piece by piece as it is generated, and a
multi-turn chat is condensed into a standalone question by that LLM first.
"""

from __future__ import annotations

import pytest
from llama_support import data_pipeline
from server_support import copy_index, sse_events, start_server
from test_llama_server import openai_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llm_served(llama_server, data_index, tmp_path_factory):
    base = tmp_path_factory.mktemp("llm-served")
    pipeline = base / "llama-server.yaml"
    pipeline.write_text(
        data_pipeline(generator=openai_config(llama_server).model_dump(mode="json")).to_yaml(), encoding="utf-8"
    )
    server = start_server(copy_index(data_index, base), base, "--pipeline", str(pipeline))
    try:
        yield server
    finally:
        server.stop()


def test_sse_carries_the_llm_answer_token_by_token(llm_served):
    status, _, body = llm_served.request(
        "POST", "/v1/query", {"question": "When was Voyager 1 launched?", "top_k": 3, "stream": True}
    )
    assert status == 200, body
    events = sse_events(body)
    deltas = [data["text"] for kind, data in events if kind == "delta"]
    assert len(deltas) >= 3, deltas  # generated pieces, not one block
    kind, answer = events[-1]
    assert kind == "answer" and answer["answer"].strip()
    assert set(answer) == {"answer", "citations", "related", "hits", "trace"}
    assert answer["trace"]["stages"]["generate"]["ms"] > 0


def test_openai_chat_condenses_earlier_turns_and_streams(llm_served):
    import httpx
    from openai import OpenAI

    client = OpenAI(
        base_url=llm_served.url + "/v1", api_key="unused", max_retries=0,
        http_client=httpx.Client(trust_env=False, timeout=300),
    )
    last = "When was the first one launched?"
    stream = client.chat.completions.create(
        model=client.models.list().data[0].id,
        messages=[
            {"role": "user", "content": "Tell me about the Voyager spacecraft."},
            {"role": "assistant", "content": "Voyager 1 and Voyager 2 are twin NASA space probes. [1]"},
            {"role": "user", "content": last},
        ],
        stream=True,
        extra_body={"top_k": 3},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3
    final = chunks[-1].model_extra["ragkit"]
    # The LLM was asked to rewrite the question: either it did, or the answer says why not.
    warnings = final["trace"]["warnings"]
    assert final["question"].strip()
    assert any(w.startswith(("asked as the standalone question", "the question was not condensed")) for w in warnings)
