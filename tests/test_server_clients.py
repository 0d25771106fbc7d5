"""Real clients against a real `ragkit serve` (127.0.0.1, started by the test): the `openai` SDK
(chat completions, streaming and not, and models) and the official `mcp` client (streamable HTTP
at /mcp, with and without the API key, and `ragkit mcp` over stdio)."""

from __future__ import annotations

import asyncio
import sys

import pytest
from server_support import ROOT, TEST_KEY, hermetic_env, require_serve_extra, start_server

pytestmark = pytest.mark.slow

VOYAGER = "When was Voyager 1 launched?"


def openai_client(server, api_key: str = "unused"):
    import httpx
    from openai import OpenAI

    return OpenAI(
        base_url=server.url + "/v1", api_key=server.api_key or api_key, max_retries=0,
        http_client=httpx.Client(trust_env=False, timeout=120),
    )


def test_openai_sdk_lists_the_served_pipeline_as_a_model(served):
    models = openai_client(served).models.list()
    assert [m.id for m in models.data] == ["ragkit-default"]


def test_openai_sdk_gets_a_cited_answer_with_sources(served):
    completion = openai_client(served).chat.completions.create(
        model="ragkit-default", messages=[{"role": "user", "content": VOYAGER}]
    )
    content = completion.choices[0].message.content
    assert "1977" in content and "[1]" in content
    assert "**Sources**" in content and "voyager_program.pdf" in content
    citations = completion.model_extra["citations"]
    assert citations and all(c["source"].endswith("voyager_program.pdf") for c in citations)
    assert all(f"[{c['n']}]" in content for c in citations)


def test_openai_sdk_streams_a_cited_answer(served):
    stream = openai_client(served).chat.completions.create(
        model="ragkit-default", messages=[{"role": "user", "content": VOYAGER}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2  # answer, then Sources
    assert "1977" in text and "[1]" in text and "**Sources**" in text
    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop"
    citations = final.model_extra["citations"]
    assert citations and citations[0]["source"].endswith("voyager_program.pdf")
    assert final.model_extra["ragkit"]["answer"] in text


def test_openai_sdk_passes_a_filter_and_sees_errors(served):
    from openai import BadRequestError, NotFoundError

    client = openai_client(served)
    with pytest.raises(NotFoundError, match="model 'gpt-4o' is not served here"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": VOYAGER}])
    with pytest.raises(BadRequestError, match=r"filter: page: \$gt needs a number"):
        client.chat.completions.create(
            model="ragkit-default", messages=[{"role": "user", "content": VOYAGER}],
            extra_body={"filter": {"page": {"$gt": "1"}}},
        )
    mars = str(ROOT / "data" / "planets" / "mars.html")  # the session index ingested ROOT/data
    answer = client.chat.completions.create(
        model="ragkit-default", messages=[{"role": "user", "content": "Which volcano is the tallest?"}],
        extra_body={"filter": {"source": mars}},
    )
    assert {c["source"] for c in answer.model_extra["citations"]} == {mars}
    assert {h["source"] for h in answer.model_extra["ragkit"]["hits"]} == {mars}


# --- MCP ---------------------------------------------------------------------------------------------


async def _use_mcp(target, headers: dict[str, str] | None = None):
    """List the tools and call each; returns (tool names, ask result, search result, status result, bad result)."""
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    async def calls(client):
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        ask = await client.call_tool("ask", {"question": VOYAGER})
        search = await client.call_tool("search", {"query": "Great Red Spot", "top_k": 2})
        status = await client.call_tool("status", {})
        bad = await client.call_tool("search", {"query": "x", "filter": {"page": {"$gt": "1"}}})
        return tools, ask, search, status, bad

    if isinstance(target, str):
        async with (
            httpx2.AsyncClient(headers=headers or {}, trust_env=False, timeout=120) as http,
            Client(streamable_http_client(target, http_client=http)) as client,
        ):
            return await calls(client)
    async with Client(target) as client:
        return await calls(client)


def _check_mcp_results(tools, ask, search, status, bad):
    assert tools == ["ask", "search", "status"]
    assert not ask.is_error
    answer = ask.structured_content
    assert "1977" in answer["answer"] and "**Sources**" in answer["answer"]
    assert answer["citations"] and answer["citations"][0]["source"].endswith("voyager_program.pdf")
    assert answer["citations"][0]["text"]
    passages = search.structured_content["passages"]
    assert len(passages) == 2 and "Great Red Spot" in passages[0]["text"]
    assert status.structured_content["chunks"] > 0
    assert bad.is_error and "$gt needs a number" in bad.content[0].text


def test_mcp_client_lists_and_calls_the_tools_over_streamable_http(served):
    _check_mcp_results(*asyncio.run(_use_mcp(served.url + "/mcp")))


def test_mcp_over_http_needs_the_api_key_when_one_is_set(data_index, tmp_path):
    server = start_server(data_index, tmp_path, api_key=TEST_KEY)
    try:
        _check_mcp_results(*asyncio.run(_use_mcp(server.url + "/mcp", {"Authorization": f"Bearer {TEST_KEY}"})))
        with pytest.raises(Exception, match="TaskGroup"):  # the SDK reports the 401 as a generic MCPError
            asyncio.run(_use_mcp(server.url + "/mcp"))
        log = server.log()
        assert '"POST /mcp HTTP/1.1" 401' in log  # the refusal the client saw
        assert TEST_KEY not in log
    finally:
        server.stop()


def test_ragkit_mcp_serves_the_tools_over_stdio(data_index, tmp_path):
    require_serve_extra()
    from mcp import StdioServerParameters

    env = hermetic_env()
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "ragkit.cli", "mcp", "--index", str(data_index)], cwd=str(ROOT),
        env={k: env[k] for k in ("PATH", "HOME", "NO_PROXY", "PYTHONUNBUFFERED") if k in env},
    )
    _check_mcp_results(*asyncio.run(_use_mcp(params)))
