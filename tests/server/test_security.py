"""Security over HTTP: keys and roles, per-KB scope, rate limits, traversal names, size limits, zip bombs,
malformed JSON and filter injection."""

from __future__ import annotations

import io
import zipfile

import httpx
import pytest
from harness import running_server

pytestmark = pytest.mark.integration

CHAT = {"model": "kb:handbook", "messages": [{"role": "user", "content": "refund window?"}]}


@pytest.mark.parametrize("headers, code", [
    ({}, "missing_api_key"),
    ({"Authorization": "Bearer rt_nope_x"}, "invalid_api_key"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_api_key"),
])
def test_missing_or_invalid_keys_get_401_with_a_clear_body(live, headers, code):
    for method, path, body in [("GET", "/v1/models", None), ("POST", "/v1/chat/completions", CHAT),
                               ("GET", "/v1/kbs/handbook/documents", None)]:
        response = httpx.request(method, live.url + path, json=body, headers=headers)
        assert response.status_code == 401, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == code and "ragtune keys create" in error["message"]
        assert response.headers["www-authenticate"] == "Bearer"


def test_keys_are_scoped_to_their_knowledge_base_and_role(live):
    with live.client("other_reader") as http:
        for method, path, body in [("POST", "/v1/chat/completions", CHAT), ("GET", "/v1/kbs/handbook", None),
                                   ("POST", "/v1/kbs/handbook/search", {"query": "x"})]:
            response = http.request(method, path, json=body)
            assert response.status_code == 403 and response.json()["error"]["code"] == "wrong_kb"
    with live.client("reader") as http:
        upload = http.post("/v1/kbs/handbook/documents", files=[("files", ("a.txt", b"hello world", "text/plain"))])
        assert upload.status_code == 403 and upload.json()["error"]["code"] == "insufficient_role"
        assert http.post("/v1/kbs", json={"name": "mine"}).status_code == 403
        assert http.delete("/v1/kbs/handbook").status_code == 403
    with live.client("writer") as http:
        assert http.delete("/v1/kbs/handbook").status_code == 403
        assert http.get("/v1/kbs/handbook").status_code == 200


def test_revoked_keys_stop_working(live):
    secret, record = live.state.keys.create("handbook", "reader")
    with live.client(secret) as http:
        assert http.get("/v1/models").status_code == 200
        live.state.keys.revoke(record.id)
        assert http.get("/v1/models").json()["error"]["code"] == "invalid_api_key"


def test_keys_are_stored_only_as_digests(live):
    import sqlite3

    conn = sqlite3.connect(live.root / "server.db")
    stored = " ".join(str(v) for row in conn.execute("SELECT * FROM api_keys") for v in row)
    conn.close()
    assert all(secret not in stored for secret in live.keys.values())


@pytest.mark.parametrize("name", ["../../evil.txt", "..\\..\\evil.txt", "/etc/passwd.txt", "a/../../b.md",
                                  "....//x.txt", "\x00nul.txt", ".hidden.txt"])
def test_traversal_names_stay_inside_the_files_folder(live, name):
    with live.client("writer") as http:
        response = http.post("/v1/kbs/handbook/documents",
                             files=[("files", (name, b"Some harmless text about travel.", "text/plain"))])
    assert response.status_code in (202, 400), response.text
    files = live.root / "handbook" / "files"
    stored = [p for p in files.rglob("*") if p.is_file() and ".incoming" not in p.parts]
    assert all(p.resolve().is_relative_to(files.resolve()) for p in stored)
    assert not (live.root / "evil.txt").exists() and not (live.root.parent / "evil.txt").exists()


def test_oversized_uploads_are_refused_with_413(live):
    big = b"a" * (3 * 1024 * 1024)  # the live server allows 2 MiB
    with live.client("writer") as http:
        response = http.post("/v1/kbs/handbook/documents", files=[("files", ("big.txt", big, "text/plain"))])
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

        def chunks():  # no Content-Length: counted as it streams in
            for _ in range(48):
                yield b"b" * 65536

        streamed = http.post("/v1/kbs/handbook/search", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413


def test_zip_bombs_are_refused(live):
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("bomb.txt", b"0" * (64 * 1024 * 1024))  # 64 MiB of zeros: ~64 KiB compressed
    assert len(bomb.getvalue()) < 200_000
    with live.client("writer") as http:
        response = http.post("/v1/kbs/handbook/documents",
                             files=[("files", ("bomb.zip", bomb.getvalue(), "application/zip"))])
    assert response.status_code == 413 and response.json()["error"]["code"] in ("archive_too_large", "zip_bomb")
    assert not (live.root / "handbook" / "files" / "bomb").exists()


def test_content_that_lies_about_its_type_is_refused(live):
    with live.client("writer") as http:
        for name, data in [("report.pdf", b"<html>not a pdf</html>"), ("notes.txt", b"%PDF-1.7 binary"),
                           ("image.md", b"\x89PNG\r\n\x1a\n\x00\x00"), ("tool.exe", b"MZ\x90\x00")]:
            response = http.post("/v1/kbs/handbook/documents", files=[("files", (name, data, "text/plain"))])
            assert response.status_code == 415, (name, response.text)
            assert response.json()["error"]["code"] in ("content_mismatch", "unsupported_file_type")


@pytest.mark.parametrize("body", [b"{not json", b'{"model": "kb:handbook", "messages": "hi"}', b"[]", b"\xff\xfe"])
def test_malformed_json_gets_422_not_500(live, body):
    with live.client("reader") as http:
        response = http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("filter", [
    {"source_type": "md' OR 1=1 --"},
    {"source_type); DROP TABLE chunks; --": "md"},
    {"page_number": {"$gt": "1) OR (1=1"}},
    {"$where": "1=1"},
    {"source_type": {"$regex": ".*"}},
    {"json_extract(c.meta, '$.x')": 1},
])
def test_filter_injection_is_rejected_or_harmless(live, filter):
    with live.client("reader") as http:
        search = http.post("/v1/kbs/handbook/search", json={"query": "refund", "filter": filter})
        chat = http.post("/v1/chat/completions", json={**CHAT, "filter": filter})
        count = http.get("/v1/kbs/handbook").json()["chunks"]
    for response in (search, chat):
        if response.status_code == 200:  # a well-formed filter on a strange value matches nothing
            body = response.json()
            assert body.get("hits", []) == [] or body.get("refused") is True
        else:
            assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_filter"
    assert count > 0  # nothing was dropped


def test_rate_limit_per_key_returns_429_with_retry_after(tmp_path, embedder, fake_llm_url):
    (tmp_path / "kbs").mkdir()
    for server in running_server(tmp_path / "kbs", embedder, fake_llm_url, rate_limit_per_minute=60,
                                 rate_limit_burst=3):
        with server.client("reader") as http:
            codes = [http.get("/v1/models").status_code for _ in range(5)]
            assert codes[:3] == [200, 200, 200] and codes[3] == 429
            limited = http.get("/v1/models")
            assert limited.json()["error"]["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
        with server.client("writer") as http:  # another key has its own bucket
            assert http.get("/v1/models").status_code == 200


def test_cors_allows_only_configured_origins(tmp_path, embedder, fake_llm_url):
    (tmp_path / "kbs").mkdir()
    for server in running_server(tmp_path / "kbs", embedder, fake_llm_url, cors_origins=["https://app.example"]):
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        ok = httpx.options(server.url + "/v1/chat/completions", headers={"Origin": "https://app.example", **preflight})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        bad = httpx.options(server.url + "/v1/chat/completions",
                            headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in bad.headers
