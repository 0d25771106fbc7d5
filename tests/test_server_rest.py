"""The REST API of a real `ragkit serve` process (127.0.0.1, started by the test) over plain HTTP.

Answers are compared with the Python API's on the same index; errors must be JSON with a code and
a message naming the field; the UI's assets must all be served locally.
"""

from __future__ import annotations

import json
import re

import pytest
from server_support import sse_events

from ragkit import RAG

pytestmark = pytest.mark.slow

VOYAGER = "When was Voyager 1 launched?"


@pytest.fixture(scope="module")
def rag(data_index):
    with RAG.open(data_index) as rag:
        yield rag


def test_query_is_the_query_json_answer_of_the_api(served, rag):
    status, headers, body = served.request("POST", "/v1/query", {"question": VOYAGER})
    assert status == 200, body
    payload = json.loads(body)
    assert set(payload) == {"answer", "citations", "related", "hits", "trace"}
    expected = rag.query(VOYAGER).to_json_dict()
    assert payload["answer"] == expected["answer"]
    assert payload["citations"] == expected["citations"]
    assert [h["chunk_id"] for h in payload["hits"]] == [h["chunk_id"] for h in expected["hits"]]
    assert "1977" in payload["answer"]
    assert payload["citations"] and all(c["source"].endswith("voyager_program.pdf") for c in payload["citations"])
    assert int(headers["x-ragkit-generation"]) == rag.status().generation


def test_stream_sends_delta_events_then_one_answer_event(served):
    status, headers, body = served.request("POST", "/v1/query", {"question": VOYAGER, "stream": True})
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = sse_events(body)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "answer" and kinds.count("answer") == 1
    assert kinds[:-1] and set(kinds[:-1]) == {"delta"}
    answer = events[-1][1]
    assert set(answer) == {"answer", "citations", "related", "hits", "trace"}
    assert "".join(data["text"] for kind, data in events if kind == "delta") == answer["answer"]
    assert answer["citations"]


def test_retrieve_and_chunk_give_exact_offsets_into_the_document(served):
    status, payload = served.json("POST", "/v1/retrieve", {"question": "Great Red Spot", "top_k": 3})
    assert status == 200, payload
    assert len(payload["hits"]) == 3
    for hit in payload["hits"]:
        status, passage = served.json("GET", f"/v1/chunks/{hit['chunk_id']}")
        assert status == 200, passage
        document = passage["document"]
        offset = document["offset"]
        assert document["text"][hit["start"] - offset : hit["end"] - offset] == hit["text"] == passage["text"]
        assert passage["source"] == hit["source"] and passage["doc_id"] == hit["doc_id"]


def test_filter_restricts_the_answer_to_matching_chunks(served):
    status, payload = served.json(
        "POST", "/v1/retrieve", {"question": "launch", "top_k": 5, "filter": {"source": {"$in": [_voyager(served)]}}}
    )
    assert status == 200, payload
    assert payload["hits"] and {h["source"] for h in payload["hits"]} == {_voyager(served)}


def _voyager(served) -> str:
    _, payload = served.json("POST", "/v1/retrieve", {"question": VOYAGER, "top_k": 1})
    return payload["hits"][0]["source"]


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "field", "message"),
    [
        ("/v1/query", {"question": "x", "top_k": 0}, 422, "invalid_request", "top_k", "greater than or equal to 1"),
        ("/v1/query", {"question": ""}, 422, "invalid_request", "question", "at least 1 character"),
        ("/v1/query", {"question": "x", "colour": 1}, 422, "invalid_request", "colour", "Extra inputs"),
        ("/v1/query", {"top_k": 2}, 422, "invalid_request", "question", "Field required"),
        ("/v1/query", {"question": "x", "filter": {"page": {"$gt": "3"}}}, 400, "invalid_filter", "filter",
         'filter: page: $gt needs a number, got "3"'),
        ("/v1/retrieve", {"question": "x", "filter": {"$and": [{"a": 1}, {"page": {"$in": 3}}]}}, 400,
         "invalid_filter", "filter", "$and[1].page: $in needs a list"),
        ("/v1/retrieve", {"question": "x", "filter": {"$nor": []}}, 400, "invalid_filter", "filter", "$nor"),
        ("/v1/delete", {"sources": []}, 422, "invalid_request", "sources", "at least 1 item"),
        ("/v1/chat/completions", {"model": "ragkit-default", "messages": [{"role": "user", "content": 3}]}, 422,
         "invalid_request", "messages.0.content", ""),
    ],
)
def test_bad_input_is_a_json_error_naming_the_field(served, path, body, status, code, field, message):
    got_status, payload = served.json("POST", path, body)
    assert got_status == status, payload
    assert payload["code"] == code
    assert payload["field"].startswith(field)
    assert message in payload["message"]


def test_other_errors_are_json_with_code_and_message(served):
    cases = [
        (served.request("GET", "/nope"), 404, "not_found"),
        (served.request("GET", "/v1/query"), 405, "method_not_allowed"),
        (served.request("GET", "/v1/chunks/0000000000000000"), 404, "chunk_not_found"),
        (served.request("GET", "/v1/jobs/unknown"), 404, "job_not_found"),
        (served.request("POST", "/v1/query", raw=b"{not json", headers={"Content-Type": "application/json"}), 422,
         "invalid_request"),
        (served.request("POST", "/v1/ingest", raw=b"x", headers={"Content-Type": "text/plain"}), 415,
         "unsupported_media_type"),
        (served.request("POST", "/v1/ingest", {"paths": ["data"]}), 403, "paths_not_allowed"),
    ]
    for (status, headers, body), want_status, want_code in cases:
        assert status == want_status, body
        assert headers["content-type"] == "application/json"
        payload = json.loads(body)
        assert payload["code"] == want_code and payload["message"], payload


def test_body_over_the_limit_is_refused_with_413(served):
    """Refused from the declared Content-Length, before the body is read: the client sends the
    headers and reads the answer (sending a 1 MB body first would race the server's close)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    try:
        connection.putrequest("POST", "/v1/query")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(2 * 1024 * 1024))
        for name, value in served.headers().items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        payload = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 413 and payload["code"] == "body_too_large", payload


def test_status_is_what_status_json_says(served, rag):
    status, payload = served.json("GET", "/v1/status")
    assert status == 200
    expected = rag.status().model_dump()
    assert set(payload) == set(expected)
    for key in ("generation", "documents", "chunks", "sources", "embedding_model", "filter_fields"):
        assert payload[key] == expected[key]


def test_probes_metrics_and_docs(served):
    assert served.json("GET", "/healthz") == (200, {"status": "ok"})
    status, ready = served.json("GET", "/readyz")
    assert status == 200 and ready["ready"] is True
    served.json("POST", "/v1/query", {"question": "Which moon of Saturn has a thick atmosphere?"})
    status, headers, body = served.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["ragkit_http_requests"].samples
        if s.name == "ragkit_http_requests_total"
    }
    assert requests[("/v1/query", "200")] >= 1
    stages = {s.labels["stage"] for s in families["ragkit_stage_duration_seconds"].samples if "stage" in s.labels}
    assert {"dense", "sparse", "fusion", "generate"} <= stages
    status, _, docs = served.request("GET", "/docs")
    assert status == 200 and b"swagger" in docs.lower()
    status, schema = served.json("GET", "/openapi.json")
    assert {"/v1/query", "/v1/retrieve", "/v1/ingest", "/v1/jobs/{job_id}", "/v1/delete", "/v1/status",
            "/v1/chat/completions", "/v1/models", "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])


def test_cors_is_off_by_default(served):
    origin = {"Origin": "http://evil.example"}
    status, headers, _ = served.request("GET", "/v1/status", headers=origin)
    assert status == 200 and "access-control-allow-origin" not in headers
    status, headers, _ = served.request(
        "OPTIONS", "/v1/query", headers={**origin, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in headers


def test_requests_for_another_host_are_refused_on_loopback(served):
    status, _, body = served.request("GET", "/v1/status", headers={"Host": "attacker.example:80"})
    assert status == 421 and json.loads(body)["code"] == "bad_host"


def test_the_ui_and_all_its_assets_are_served_locally(served):
    status, headers, page = served.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    html = page.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and not [a for a in assets if "//" in a], "no CDN: every asset is a local path"
    for asset in assets:
        status, _, body = served.request("GET", asset)
        assert status == 200 and body, asset
    status, _, script = served.request("GET", "/static/app.js")
    assert b"http://" not in script and b"https://" not in script
    assert b"innerHTML" not in script  # server text is inserted as text, never as HTML
