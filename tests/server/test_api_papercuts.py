"""What a newcomer meets first over HTTP: docs/server.md's curl examples, /docs offline, a 422 that says why, token
usage, stable model ids, an unknown model, the wrong-KB message, and the job and whoami endpoints."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from harness import wait_job

from ragtune.server import create_app
from ragtune.settings import load_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "server.md"
QUESTION = "What is the refund window for enterprise plans?"


def curl_examples() -> list[list[str]]:
    """The curl commands of docs/server.md's first shell block, split into arguments."""
    block = re.search(r"```bash\n(.*?)```", DOCS.read_text(), re.S)
    assert block, "docs/server.md starts with a bash block"
    commands = block.group(1).replace("\\\n", " ")
    return [shlex.split(line.split("#")[0]) for line in commands.splitlines() if line.strip().startswith("curl")]


@pytest.mark.e2e
def test_the_curl_examples_of_docs_server_md_work_as_written(live):
    examples = curl_examples()
    assert len(examples) >= 3
    for argv in examples:
        argv = [a.replace("localhost:8080", live.url).replace("$KEY", live.keys["reader"]) for a in argv]
        done = subprocess.run(argv + ["--silent", "--show-error", "--write-out", "\n%{http_code}"], capture_output=True,
                              text=True, timeout=120)
        body, _, status = done.stdout.rpartition("\n")
        assert done.returncode == 0 and status == "200", (argv, done.stdout, done.stderr)
        if "-N" in argv:  # streamed: server-sent events, the sources in the last chunk
            events = [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data: {")]
            assert events[-1]["sources"] and "45" in events[-1]["answer"]
        elif "/chat/completions" in argv[-1] or any("/chat/completions" in a for a in argv):
            answer = json.loads(body)
            assert "45" in answer["choices"][0]["message"]["content"] and answer["answer_id"]
        else:
            assert "kb:handbook" in [m["id"] for m in json.loads(body)["data"]]


@pytest.mark.integration
def test_a_body_without_a_json_content_type_gets_a_422_that_says_so(live):
    body = json.dumps({"model": "kb:handbook", "messages": [{"role": "user", "content": QUESTION}]})
    with live.client("reader") as http:
        for headers in ({"Content-Type": "application/x-www-form-urlencoded"}, {}):  # curl -d; no header at all
            response = http.post("/v1/chat/completions", content=body, headers=headers)
            error = response.json()["error"]
            assert response.status_code == 422 and error["code"] == "json_required", response.text
            assert "Content-Type: application/json" in error["message"]
        missing = http.post("/v1/chat/completions", json={"model": "kb:handbook"})
        assert missing.status_code == 422
        assert missing.json()["error"]["message"].startswith("invalid request — messages: Field required")
        broken = http.post("/v1/chat/completions", content=b'{"model":', headers={"Content-Type": "application/json"})
        assert "malformed JSON — at character 9" in broken.json()["error"]["message"]


@pytest.mark.integration
def test_chat_completions_and_embeddings_count_tokens(live):
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.keys["reader"], max_retries=0)
    answered = client.chat.completions.create(model="kb:handbook", messages=[{"role": "user", "content": QUESTION}])
    usage = answered.usage
    assert usage is not None and usage.prompt_tokens > 50 and usage.completion_tokens > 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    chunks = list(client.chat.completions.create(model="kb:handbook", stream=True,
                                                 messages=[{"role": "user", "content": QUESTION}]))
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == usage.total_tokens
    direct = client.chat.completions.create(model="fake-extractive", messages=[{"role": "user", "content": "hi"}])
    assert direct.usage is not None and direct.usage.prompt_tokens > 0 and direct.usage.completion_tokens > 0
    embedded = client.embeddings.create(model="kb:handbook", input=["refund window", "annual leave days"])
    assert embedded.usage.prompt_tokens == embedded.usage.total_tokens >= 5


@pytest.mark.integration
def test_the_model_list_is_stable_and_unknown_models_are_refused(tmp_path, handbook_root, embedder, fake_llm_url):
    # No LLM handed in: the server loads the configured one on first use, as 'ragtune serve' does.
    settings = load_settings(llm="openai", llm_model="fake-extractive", llm_base_url=fake_llm_url,
                             server_db=str(tmp_path / "server.db"))
    shutil.copytree(handbook_root / "handbook", tmp_path / "handbook")
    app = create_app(kbs=[tmp_path / "handbook"], settings=settings, embedder=embedder, auth=False)
    with TestClient(app) as http:
        before = [m["id"] for m in http.get("/v1/models").json()["data"]]
        assert before == ["kb:handbook", "fake-extractive"]
        reply = http.post("/v1/chat/completions", json={"model": "fake-extractive",
                                                        "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200 and app.state.server.llm is not None  # now loaded
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == before
        unknown = http.post("/v1/chat/completions", json={"model": "gpt-4o",
                                                          "messages": [{"role": "user", "content": "hi"}]})
        error = unknown.json()["error"]
        assert unknown.status_code == 404 and error["code"] == "model_not_found"
        assert "'kb:NAME'" in error["message"] and "'fake-extractive'" in error["message"]


@pytest.mark.integration
def test_a_key_for_one_kb_is_told_what_it_can_use_not_to_create_a_key(live):
    with live.client("other_reader") as http:
        for model in ("kb:nope", "kb:handbook"):  # one that does not exist, one that does: the same answer
            response = http.post("/v1/chat/completions", json={
                "model": model, "messages": [{"role": "user", "content": "hi"}]})
            error = response.json()["error"]
            assert response.status_code == 403 and error["code"] == "wrong_kb"
            assert "for the knowledge base 'other' only" in error["message"] and "'kb:other'" in error["message"]
            assert "--kb" not in error["message"]


@pytest.mark.integration
def test_jobs_of_every_readable_kb_and_the_calling_key(live):
    with live.client("writer") as http:
        job = http.post("/v1/kbs/handbook/documents", files=[
            ("files", ("memo.txt", b"Desks are cleaned every Tuesday evening.", "text/plain")),
            ("files", ("broken.pdf", b"%PDF-1.4\n this is a truncated pdf", "application/pdf"))])
        job_id = job.json()["job"]["id"]
        report = wait_job(http, "handbook", job_id)["report"]
        assert [f["source"] for f in report["failures"]] == ["broken.pdf"], "a file name, not the server's path"
        assert job_id in [j["id"] for j in http.get("/v1/jobs").json()["data"]]
        assert http.get(f"/v1/jobs/{job_id}").json()["kb"] == "handbook"
        me = http.get("/v1/me").json()
        assert me["id"] and me["role"] == "writer" and me["kb"] == "handbook"
    with live.client("other_reader") as http:
        assert job_id not in [j["id"] for j in http.get("/v1/jobs").json()["data"]]
        assert http.get(f"/v1/jobs/{job_id}").status_code == 404


@pytest.mark.integration
def test_docs_are_served_without_a_cdn(live):
    page = httpx.get(f"{live.url}/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/") for a in assets), assets  # nothing from another host
    for asset in assets:
        assert httpx.get(live.url + asset).status_code == 200, asset
    assert "https://" not in page.split("<script>")[-1]  # nor loaded by the page's own script


@pytest.mark.unit
def test_the_upload_label_names_every_format_the_server_accepts():
    from ragtune.parse import source_type_for
    from ragtune.server.uploads import accepted_extensions

    script = (Path(__file__).resolve().parents[2] / "src" / "ragtune" / "server" / "static" / "app.js").read_text()
    label = re.search(r'const FORMATS_EN = "([^"]+)"', script).group(1).split(", ")
    words = {"pdf": "PDF", "docx": "Word", "pptx": "PowerPoint", "xlsx": "Excel", "csv": "CSV", "html": "HTML",
             "epub": "EPUB", "md": "Markdown", "txt": "text", "json": "JSON", "code": "code", None: "zip"}
    families = {source_type_for("x" + ext) for ext in accepted_extensions()}
    assert families <= words.keys(), f"a new format family needs a word in the upload label: {families - words.keys()}"
    assert sorted(words[f] for f in families) == sorted(label)
