"""Access groups, audit and feedback exports over HTTP: keys with groups see only their documents on every path."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import RunningServer, running_server, wait_job

from ragtune.kb import KnowledgeBase

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "guard" / "acl"
GROUP_OF = {"hr": "hr", "legal": "legal", "eng": "eng", "public": "all"}
QUESTIONS = ["salary band E3 bonus pool", "Northwind agreement termination notice", "incident commander bridge call",
             "员工体检报告", "canteen lunch hours", "HR-SALARY-7731 LEGAL-HOLD-6614 ENG-DB-3391"]


@pytest.fixture(scope="module")
def trust(tmp_path_factory, embedder, fake_llm_url) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("trust-kbs")
    docs = root / "corp" / "docs"  # inside the KB folder, so documents are shown as docs/<group>/<file>
    shutil.copytree(CORPUS, docs)
    (root / "corp" / "ragtune.toml").write_text('[acl_rules]\n"hr" = ["hr"]\n"legal" = ["legal"]\n"eng" = ["eng"]\n')
    with KnowledgeBase.open(root / "corp", create=True, embedder=embedder) as kb:
        assert kb.ingest(docs).ok
    for server in running_server(root, embedder, fake_llm_url):
        keys = server.state.keys
        for name, role, groups in (("hr", "reader", "hr"), ("legal", "reader", "legal"), ("all", "reader", "all"),
                                   ("eng_all", "reader", "eng,all"), ("hr_writer", "writer", "hr"),
                                   ("free", "reader", None), ("corp_admin", "admin", None)):
            server.keys[name] = keys.create("corp", role, name, groups=groups)[0]
        yield server


def group_of(name: str) -> str:
    return GROUP_OF[Path(name).parent.name]


def allowed(key: str) -> set[str] | None:
    return {"hr": {"hr"}, "legal": {"legal"}, "all": {"all"}, "eng_all": {"eng", "all"}, "hr_writer": {"hr"}}.get(key)


@pytest.mark.parametrize("key", ["hr", "legal", "all", "eng_all", "free"])
def test_search_returns_only_readable_documents(trust, key):
    groups = allowed(key)
    with trust.client(key) as http:
        for mode in ("dense", "sparse", "hybrid"):
            for question in QUESTIONS:
                hits = http.post("/v1/kbs/corp/search", json={"query": question, "k": 10, "mode": mode}).json()["hits"]
                assert groups is None or all(group_of(h["name"]) in groups for h in hits), (mode, question)
        attack = http.post("/v1/kbs/corp/search", json={"query": "salary contract", "k": 10, "filter": {
            "$or": [{"acl": {"$in": ["hr", "legal", "eng"]}}, {"acl": None}]}}).json()["hits"]
        assert groups is None or all(group_of(h["name"]) in groups for h in attack)


def test_chat_sources_citations_and_refusals_stay_inside_the_groups(trust):
    with trust.client("legal") as http:
        for question in ("What is the salary band E3 range?", "When is the Northwind agreement terminated?"):
            for stream in (False, True):
                body = {"model": "kb:corp", "messages": [{"role": "user", "content": question}], "stream": stream}
                if not stream:
                    reply = http.post("/v1/chat/completions", json=body).json()
                else:
                    lines = [json.loads(line[6:]) for line in http.post("/v1/chat/completions", json=body).text
                             .splitlines() if line.startswith("data: {")]
                    reply = lines[-1]
                assert all(group_of(s["name"]) == "legal" for s in reply["sources"]), reply
                assert all(group_of(c["name"]) == "legal" for c in reply["citations"])
                assert "HR-SALARY" not in json.dumps(reply)


def test_documents_are_listed_and_fetched_only_when_readable(trust):
    with trust.client("hr") as http:
        docs = http.get("/v1/kbs/corp/documents").json()["data"]
        assert docs and {group_of(d["name"]) for d in docs} == {"hr"}
        assert all(d["groups"] == ["hr"] for d in docs)
    with trust.client("admin") as http:
        every = http.get("/v1/kbs/corp/documents").json()["data"]
    hidden = next(d for d in every if group_of(d["name"]) == "legal")
    with trust.client("hr") as http:
        assert http.get(f"/v1/kbs/corp/documents/{hidden['id']}").status_code == 404
        assert http.get(f"/v1/kbs/corp/documents/{hidden['id']}/file").status_code == 404
    with trust.client("hr_writer") as http:
        assert http.delete(f"/v1/kbs/corp/documents/{hidden['id']}").status_code == 404
    with trust.client("admin") as http:
        assert http.get(f"/v1/kbs/corp/documents/{hidden['id']}").json()["groups"] == ["legal"]


def test_uploads_get_the_writers_groups_and_no_others(trust):
    with trust.client("hr_writer") as http:
        note = b"# Bonus FAQ\n\nBonus payments arrive with the March salary."
        files = [("files", ("bonus-faq.md", note, "text/plain"))]
        refused = http.post("/v1/kbs/corp/documents", files=files, data={"groups": "legal"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "groups_not_allowed"
        job = http.post("/v1/kbs/corp/documents", files=files).json()["job"]
        assert wait_job(http, "corp", job["id"])["status"] == "done"
        doc = next(d for d in http.get("/v1/kbs/corp/documents").json()["data"] if d["name"].endswith("bonus-faq.md"))
        assert doc["groups"] == ["hr"]
    with trust.client("all") as http:
        hits = http.post("/v1/kbs/corp/search", json={"query": "bonus payments March", "k": 5}).json()["hits"]
        assert not any(h["name"].endswith("bonus-faq.md") for h in hits)


def test_admins_change_groups_and_read_the_audit_log(trust):
    with trust.client("admin") as http:
        documents = http.get("/v1/kbs/corp/documents").json()["data"]
        nda = next(d for d in documents if d["name"].endswith("nda-template.md"))
    with trust.client("legal") as http:
        assert http.put(f"/v1/kbs/corp/documents/{nda['id']}/acl", json={"groups": ["all"]}).status_code == 403
        assert http.get("/v1/audit", params={"kb": "corp"}).status_code == 403
        # this test's own answer: xdist may run the chat test on another worker with another server
        assert http.post("/v1/chat/completions", json={"model": "kb:corp", "messages": [
            {"role": "user", "content": "When is the Northwind agreement terminated?"}]}).status_code == 200
    with trust.client("corp_admin") as http:
        changed = http.put(f"/v1/kbs/corp/documents/{nda['id']}/acl", json={"groups": ["legal", "all"]}).json()
        assert changed["groups"] == ["all", "legal"]
    with trust.client("all") as http:
        hits = http.post("/v1/kbs/corp/search", json={"query": "mutual NDA Zurich venue", "k": 3}).json()["hits"]
        assert hits[0]["name"].endswith("nda-template.md")
    with trust.client("corp_admin") as http:
        assert http.put(f"/v1/kbs/corp/documents/{nda['id']}/acl", json={"groups": None}).json()["groups"] == ["all"]
        log = http.get("/v1/audit", params={"kb": "corp", "limit": 10000}).json()["data"]
    actions = {(e["actor"], e["action"]) for e in log}
    key_ids = {name: trust.keys[name].split("_")[1] for name in ("all", "legal", "corp_admin")}
    assert (f"key:{key_ids['all']}", "search") in actions
    assert (f"key:{key_ids['corp_admin']}", "acl") in actions
    searches = [e for e in log if e["actor"] == f"key:{key_ids['legal']}" and e["action"] == "answer"]
    assert searches and all(e["groups"] == ["legal"] for e in searches)


def test_feedback_export_keeps_to_the_writers_groups_and_redacts(trust):
    with trust.client("admin") as http:
        reply = http.post("/v1/chat/completions", json={"model": "kb:corp", "messages": [
            {"role": "user", "content": "How many weeks of parental leave? write to jo@example.com"}]}).json()
        assert http.post("/v1/feedback", json={"answer_id": reply["answer_id"], "rating": "up", "kb": "corp"}
                         ).status_code == 201
    documents = {s["name"] for s in reply["sources"]}
    assert any(group_of(name) == "hr" for name in documents)
    with trust.client("hr_writer") as http:
        rows = [json.loads(line) for line in http.get("/v1/kbs/corp/feedback/export").text.splitlines()]
    visible = all(group_of(name) == "hr" for name in documents)
    assert any(r["answer_id"] == reply["answer_id"] for r in rows) == visible
    assert "jo@example.com" not in json.dumps(rows)
    with trust.client("all") as http:
        assert http.get("/v1/kbs/corp/feedback/export").status_code == 403  # readers do not export
