"""Security and writing through a real `ragkit serve`: API key, bind refusal, CORS, uploads (names,
limits, planted symlinks), --allow-root paths, the writer lock (409), delete, and no secret in any
response or log line. Each server here is a subprocess on 127.0.0.1 started by the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
from server_support import ROOT, TEST_KEY, copy_index, hermetic_env, require_serve_extra, start_server

from ragkit.indexes.layout import writer_lock

pytestmark = pytest.mark.slow


def _serve_exit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragkit.cli", "serve", *args], cwd=ROOT, capture_output=True, text=True,
        env=hermetic_env(env), timeout=120, stdin=subprocess.DEVNULL, check=False,
    )


def test_a_non_loopback_bind_without_a_key_refuses_to_start(data_index):
    require_serve_extra()
    result = _serve_exit("--index", str(data_index), "--host", "0.0.0.0", "--port", "1")
    assert result.returncode == 2, result
    assert "--host 0.0.0.0" in result.stderr and "RAGKIT_API_KEY" in result.stderr
    short = _serve_exit("--index", str(data_index), "--host", "0.0.0.0", "--port", "1", env={"RAGKIT_API_KEY": "abc"})
    assert short.returncode == 2 and "too short" in short.stderr
    root = _serve_exit("--index", str(data_index), "--allow-root", str(ROOT / "no-such-dir"))
    assert root.returncode == 2 and "--allow-root" in root.stderr


@pytest.fixture(scope="module")
def keyed(data_index, tmp_path_factory):
    """A server with an API key (from RAGKIT_API_KEY) and one allowed CORS origin."""
    server = start_server(
        data_index, tmp_path_factory.mktemp("keyed"), "--cors-origin", "http://app.example", api_key=TEST_KEY
    )
    try:
        yield server
    finally:
        server.stop()


def test_the_api_key_is_required_on_every_api_endpoint(keyed):
    endpoints = [
        ("GET", "/healthz", None), ("GET", "/readyz", None), ("GET", "/metrics", None), ("GET", "/v1/status", None),
        ("GET", "/v1/models", None), ("POST", "/v1/query", {"question": "Voyager"}),
        ("POST", "/v1/retrieve", {"question": "Voyager"}), ("POST", "/v1/delete", {"sources": ["x"]}),
        ("POST", "/v1/chat/completions", {"model": "ragkit-default", "messages": [{"role": "user", "content": "hi"}]}),
        ("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}), ("GET", "/v1/jobs/x", None),
    ]
    wrong = TEST_KEY[:-1] + "X"
    for method, path, body in endpoints:
        for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"X-API-Key": wrong}, {"Authorization": TEST_KEY}):
            keyed.api_key = None  # send exactly these headers
            status, response_headers, payload = keyed.request(method, path, body, headers=headers)
            keyed.api_key = TEST_KEY
            assert status == 401, (method, path, headers, payload)
            assert json.loads(payload)["code"] == "unauthorized"
            assert response_headers.get("www-authenticate") == "Bearer"
    assert keyed.request("GET", "/v1/status")[0] == 200  # Authorization: Bearer KEY
    keyed.api_key = None
    try:
        assert keyed.request("GET", "/v1/status", headers={"X-API-Key": TEST_KEY})[0] == 200
        # The UI page and its assets hold no data: a browser loads them, then asks for the key.
        for path in ("/", "/static/app.js", "/static/app.css", "/docs", "/openapi.json"):
            assert keyed.request("GET", path)[0] == 200, path
    finally:
        keyed.api_key = TEST_KEY


def test_the_key_never_appears_in_responses_or_logs(keyed):
    bodies = [
        keyed.request("GET", "/v1/status")[2],
        keyed.request("POST", "/v1/query", {"question": "When was Voyager 1 launched?"})[2],
        keyed.request("GET", "/metrics")[2],
        keyed.request("GET", "/openapi.json")[2],
        keyed.request("GET", "/v1/status", headers={"Authorization": "Bearer wrong"})[2],
    ]
    for body in bodies:
        assert TEST_KEY.encode() not in body
    # A client that puts the key in a URL: the access log line is redacted, not written as is.
    keyed.request("GET", f"/v1/jobs/{TEST_KEY}")
    time.sleep(0.5)
    log = keyed.log()
    assert TEST_KEY not in log
    assert "/v1/jobs/***" in log


def test_cors_allows_only_the_configured_origin(keyed):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    status, headers, _ = keyed.request("OPTIONS", "/v1/query", headers={"Origin": "http://app.example", **preflight})
    assert status == 200 and headers["access-control-allow-origin"] == "http://app.example"
    status, headers, _ = keyed.request("OPTIONS", "/v1/query", headers={"Origin": "http://evil.example", **preflight})
    assert headers.get("access-control-allow-origin") != "http://evil.example"


# --- writing: uploads, server-side paths, the writer lock, delete ----------------------------------

FACT = "The Kestrel Array radio telescope has exactly 417 dishes, built on the Altiplano in 2031."


@pytest.fixture(scope="module")
def writable(data_index, tmp_path_factory):
    """A server on a private copy of the index, with an allowed root and a small upload limit."""
    base = tmp_path_factory.mktemp("writable")
    index = copy_index(data_index, base)
    allowed = base / "allowed"
    (allowed / "docs").mkdir(parents=True)
    (allowed / "docs" / "kestrel.md").write_text(f"# Kestrel\n\n{FACT}\n", encoding="utf-8")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nThe vault code is 9999.\n", encoding="utf-8")
    (allowed / "escape").symlink_to(outside, target_is_directory=True)
    server = start_server(index, base, "--allow-root", str(allowed), "--max-upload-mb", "0.25")
    server.base = base  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def _upload(server, files: list[tuple[str, bytes]]) -> httpx.Response:
    with httpx.Client(base_url=server.url, trust_env=False, timeout=60, headers=server.headers()) as client:
        return client.post("/v1/ingest", files=[("files", (name, data, "text/markdown")) for name, data in files])


@pytest.mark.parametrize(
    "name", ["../escaped.md", "..\\escaped.md", "/tmp/escaped.md", "sub/escaped.md", ".hidden.md", ".."]
)
def test_upload_names_cannot_leave_the_upload_directory(writable, name):
    response = _upload(writable, [("fine.md", b"# Fine\n\nfine\n"), (name, b"# Escaped\n\nescaped\n")])
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["code"] == "invalid_upload_name" and payload["field"] == "files[1]"
    assert not list(writable.base.rglob("escaped.md"))
    assert not (writable.index_dir / "uploads" / "fine.md").exists(), "nothing is stored when one name is refused"


def test_upload_names_with_control_characters_are_refused(writable):
    # Written by hand: HTTP clients percent-encode such names, a hostile client need not.
    boundary = "ragkit-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a\x01b.md"\r\n'
        f"Content-Type: text/markdown\r\n\r\n# A\n\na\n\r\n--{boundary}--\r\n"
    ).encode()
    status, _, payload = writable.request(
        "POST", "/v1/ingest", raw=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert status == 400, payload
    assert json.loads(payload)["field"] == "files[0]"


def test_an_upload_is_ingested_in_a_background_job_with_progress(writable):
    response = _upload(writable, [("lunar-notes.md", b"# Lunar notes\n\nThe Lumen crater holds 31 ice caves.\n")])
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["kind"] == "upload" and job["inputs"] == ["lunar-notes.md"]
    done = writable.wait_for_job(job["id"])
    assert done["state"] == "succeeded", done
    report = done["report"]
    assert report["files_ok"] == 1 and report["files_failed"] == [] and report["chunks_added"] >= 1
    progress = done["progress"]
    assert progress["phase"] == "publishing" and progress["fraction"] == 1.0  # the last phase; all counted
    assert {c["name"] for c in progress["counters"]} >= {"files loaded", "chunks embedded"}
    stored = writable.index_dir / "uploads" / "lunar-notes.md"
    assert stored.read_bytes().startswith(b"# Lunar notes")
    status, answer = writable.json("POST", "/v1/query", {"question": "How many ice caves does the Lumen crater hold?"})
    assert status == 200 and "31" in answer["answer"]
    assert answer["citations"][0]["source"] == str(stored)


def test_a_symlink_planted_in_the_upload_directory_is_replaced_not_followed(writable):
    target = writable.base / "outside" / "victim.md"
    target.write_text("untouched\n", encoding="utf-8")
    uploads = writable.index_dir / "uploads"
    uploads.mkdir(exist_ok=True)
    (uploads / "victim.md").symlink_to(target)
    response = _upload(writable, [("victim.md", b"# Victim\n\nreplaced\n")])
    assert response.status_code == 202, response.text
    assert writable.wait_for_job(response.json()["id"])["state"] == "succeeded"
    assert target.read_text(encoding="utf-8") == "untouched\n"
    assert not (uploads / "victim.md").is_symlink()


def test_an_upload_over_the_limit_is_refused_with_413(writable):
    response = _upload(writable, [("big.md", b"# Big\n\n" + b"word " * 80_000)])
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "body_too_large"


def test_server_side_paths_must_stay_under_an_allowed_root(writable):
    allowed = writable.base / "allowed"
    cases = [
        ([str(writable.base / "outside")], 403, "path_not_allowed", "paths[0]"),
        ([str(allowed / "docs"), str(allowed / "escape" / "secret.md")], 403, "path_not_allowed", "paths[1]"),
        ([str(allowed / "docs" / ".." / ".." / "outside")], 403, "path_not_allowed", "paths[0]"),
        ([str(allowed / "missing.md")], 400, "path_not_found", "paths[0]"),
        ([], 422, "invalid_request", "paths"),
    ]
    for paths, status, code, field in cases:
        got, payload = writable.json("POST", "/v1/ingest", {"paths": paths})
        assert (got, payload["code"], payload["field"]) == (status, code, field), payload
    got, job = writable.json("POST", "/v1/ingest", {"paths": [str(allowed / "docs")]})
    assert got == 202, job
    done = writable.wait_for_job(job["id"])
    assert done["state"] == "succeeded" and done["report"]["files_ok"] == 1, done
    status, answer = writable.json("POST", "/v1/query", {"question": "How many dishes does the Kestrel Array have?"})
    assert "417" in answer["answer"]


def test_a_locked_index_gives_409_naming_the_writer(writable):
    with writer_lock(writable.index_dir):
        got, payload = writable.json("POST", "/v1/ingest", {"paths": [str(writable.base / "allowed" / "docs")]})
        assert got == 409 and payload["code"] == "index_locked", payload
        assert f"PID {os.getpid()}" in payload["message"]
        got, payload = writable.json("POST", "/v1/delete", {"sources": ["anything.md"]})
        assert got == 409 and payload["code"] == "index_locked", payload
    got, payload = writable.json("POST", "/v1/query", {"question": "Voyager"})
    assert got == 200  # readers never wait for the writer


def test_delete_removes_documents_and_lists_unmatched_targets(writable):
    kestrel = str(writable.base / "allowed" / "docs" / "kestrel.md")
    got, report = writable.json("POST", "/v1/delete", {"sources": [kestrel, "no/such/file.md"]})
    assert got == 200, report
    assert report["deleted"] == [kestrel] and report["unmatched"] == ["no/such/file.md"]
    _, answer = writable.json("POST", "/v1/retrieve", {"question": "Kestrel Array dishes", "top_k": 5})
    assert kestrel not in {h["source"] for h in answer["hits"]}


def test_the_cli_does_not_import_the_server_unless_it_serves():
    code = (
        "import sys, ragkit.cli, ragkit.api; "
        "loaded = [m for m in ('fastapi', 'uvicorn', 'mcp', 'ragkit.server') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=hermetic_env(), timeout=120)


def test_queries_beyond_the_workers_and_queue_get_503_busy(data_index, tmp_path):
    server = start_server(data_index, tmp_path, "--workers", "1", "--max-queue", "1")
    try:
        barrier = threading.Barrier(16)
        replies: list[tuple[int, dict[str, str], bytes]] = []

        def ask() -> None:
            barrier.wait()
            replies.append(server.request("POST", "/v1/query", {"question": "When was Voyager 1 launched?"}))

        threads = [threading.Thread(target=ask) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    finally:
        server.stop()
    statuses = sorted(status for status, _, _ in replies)
    assert len(replies) == 16 and set(statuses) == {200, 503}, statuses
    assert statuses.count(200) >= 2  # one running, one queued: both answered
    busy = next((headers, json.loads(body)) for status, headers, body in replies if status == 503)
    assert busy[1]["code"] == "busy" and "--workers 1" in busy[1]["message"]
    assert busy[0]["retry-after"] == "1"
