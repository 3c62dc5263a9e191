"""Access groups in a real knowledge base: every retrieval mode, rewrites, reranking, answers and refusals,
feedback exports, changes of groups, duplicates, and the audit entries each path leaves."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragtune.feedback import FeedbackStore
from ragtune.kb import KnowledgeBase

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "guard" / "acl"
GROUP_OF = {"hr": "hr", "legal": "legal", "eng": "eng", "public": "all"}
VIEWERS = [frozenset({"hr"}), frozenset({"legal"}), frozenset({"eng", "all"}), frozenset({"all"}), frozenset()]
QUESTIONS = ["salary band E3 bonus pool", "Northwind master agreement termination", "incident commander bridge call",
             "canteen lunch hours", "员工体检报告", "合同审批 法务总监", "parental leave weeks", "deploy on Friday",
             "HR-SALARY-7731 LEGAL-HOLD-6614 ENG-DB-3391"]


class ScriptedLLM:
    """Replies with fixed text (per call, in order; the last one repeats), recording what it was sent."""

    name = "scripted"
    context_window = 8192

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages: list[dict[str, str]], **params: Any) -> Iterator[str]:
        self.calls.append(messages)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        for word in reply.split(" "):
            yield word + " "

    def chat(self, messages: list[dict[str, str]], **params: Any) -> str:
        return "".join(self.stream(messages, **params)).strip()

    def seen(self) -> str:
        return "\n".join(m["content"] for call in self.calls for m in call)


def folder_group(source: str) -> str:
    return GROUP_OF[Path(source).parent.name]


def readable(source: str, viewer: frozenset[str] | None) -> bool:
    return viewer is None or folder_group(source) in viewer


@pytest.fixture(scope="module")
def kb(tmp_path_factory, embedder) -> Iterator[KnowledgeBase]:
    root = tmp_path_factory.mktemp("acl")
    docs = root / "docs"
    shutil.copytree(CORPUS, docs)
    (root / "kb").mkdir()
    # Folder rules for hr and legal; eng gets its groups from --acl on a second run; public follows acl_default.
    (root / "kb" / "ragtune.toml").write_text('[acl_rules]\n"hr" = ["hr"]\n"legal/*" = ["legal"]\n')
    base = KnowledgeBase.open(root / "kb", create=True, embedder=embedder)
    assert base.ingest(docs).ok
    assert base.ingest(docs / "eng", acl="eng").unchanged  # unchanged files, new groups
    yield base
    base.close()


def test_documents_carry_the_groups_of_their_folder(kb):
    for record in kb.documents():
        expected = GROUP_OF[Path(record.uri).parent.name]
        assert kb.document_groups(record) == [expected], record.uri
        assert record.metadata.get("acl") == (None if expected == "all" else [expected])


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_every_mode_returns_only_readable_chunks(kb, mode):
    for viewer in VIEWERS:
        for question in QUESTIONS:
            hits = kb.retrieve(question, 10, mode=mode, groups=viewer).hits
            assert all(readable(h.source, viewer) for h in hits), (mode, sorted(viewer), question)
            assert all(h.meta.acl is None or set(h.meta.acl) & viewer for h in hits)
    # Restricting does not cost the reader its own documents.
    top = kb.retrieve("salary band E3 bonus pool", 3, mode=mode, groups={"hr"}).hits
    assert top and top[0].source.endswith("salary-bands.md")
    unrestricted = kb.retrieve("salary band E3 bonus pool", 3, mode=mode).hits
    assert unrestricted[0].source.endswith("salary-bands.md")


@pytest.mark.parametrize("attack", [
    {"acl": {"$contains": "hr"}},
    {"$or": [{"acl": {"$in": ["hr", "legal", "eng"]}}, {"source_type": "md"}]},
    {"$not": {"acl": {"$in": ["all"]}}},
    {"acl": {"$exists": True}},
    {"document_id": {"$ne": ""}},
])
def test_filters_cannot_widen_access(kb, attack):
    for mode in ("dense", "sparse", "hybrid"):
        hits = kb.retrieve("salary band contract incident", 10, mode=mode, filter=attack, groups="all").hits
        assert all(folder_group(h.source) == "all" for h in hits), (mode, attack)


def test_rewrites_naming_hidden_documents_find_nothing_hidden(kb):
    kb.llm = ScriptedLLM("1. HR-SALARY-7731 salary band E3 82,000 euros\n2. Northwind liability cap LEGAL-NORTHWIND")
    try:
        for mode in ("sparse", "hybrid"):
            result = kb.retrieve("what do engineers earn at E3?", 10, mode=mode, rewrite="multi", groups="all")
            assert len(result.queries) > 1
            assert all(folder_group(h.source) == "all" for h in result.hits)
        kb.llm = ScriptedLLM("Band E3 pays 82,000 to 97,000 euros and the bonus pool is 9 percent of salary.")
        hyde = kb.retrieve("what does band E3 pay?", 10, mode="dense", rewrite="hyde", groups="legal")
        assert hyde.hits and all(folder_group(h.source) == "legal" for h in hyde.hits)
    finally:
        kb.llm = None


def test_the_reranker_is_never_shown_hidden_chunks(kb):
    judge = ScriptedLLM("3")
    kb.llm = judge
    try:
        hits = kb.retrieve("salary bonus agreement runbook", 6, mode="hybrid", rerank="llm", groups="eng").hits
    finally:
        kb.llm = None
    assert hits and all(folder_group(h.source) == "eng" for h in hits)
    assert judge.calls and "HR-SALARY" not in judge.seen() and "LEGAL-" not in judge.seen()


def test_answers_and_refusals_show_only_readable_sources(kb):
    kb.llm = ScriptedLLM("I don't know.")
    try:
        refused = kb.ask("What is the salary band E3 range?", groups="legal", actor="test:legal")
        assert refused.refused and refused.sources
        assert all(folder_group(h.source) == "legal" for h in refused.sources)
        kb.llm = ScriptedLLM("Engineering salary band E3 ranges from 82,000 to 97,000 euros [1].")
        answer = kb.ask("What is the salary band E3 range?", groups="hr", actor="test:hr")
    finally:
        kb.llm = None
    assert not answer.refused and answer.citations[0].source.endswith("salary-bands.md")
    assert all(folder_group(h.source) == "hr" for h in answer.sources)
    entry = kb.audit_log().entries(actor="test:legal", action="answer")[-1]
    assert entry.refused is True and entry.groups == ["legal"] and entry.question.startswith("What is the salary")
    assert set(entry.shown) == {h.document_id for h in refused.sources}
    assert set(entry.shown) <= set(entry.retrieved)
    assert kb.audit_log().entries(actor="test:hr", action="answer")[-1].refused is False


def test_changing_groups_takes_effect_at_once_and_is_audited(kb):
    nda = next(d for d in kb.documents() if d.uri.endswith("nda-template.md"))
    query = "mutual NDA confidential five years Zurich"
    assert not any(h.document_id == nda.id for h in kb.search(query, 5, groups="all", actor="test"))
    assert kb.set_acl(nda.id, "legal,all", actor="test:admin")
    try:
        assert kb.search(query, 5, groups="all", actor="test")[0].document_id == nda.id
        assert kb.document_groups(kb.store.document(nda.id)) == ["all", "legal"]
    finally:
        assert kb.set_acl(nda.id, "legal", actor="test:admin")
    assert not any(h.document_id == nda.id for h in kb.search(query, 5, groups="all", actor="test"))
    assert not kb.set_acl("0" * 16, "hr")
    change = kb.audit_log().entries(action="acl", actor="test:admin")
    assert [e.detail["acl"] for e in change[-2:]] == [["all", "legal"], ["legal"]]
    assert kb.audit_log().verify()["ok"]


def test_a_duplicate_that_inherits_chunks_brings_its_own_groups(tmp_path, embedder):
    docs = tmp_path / "docs"
    (docs / "hr").mkdir(parents=True)
    (docs / "open").mkdir()
    text = (CORPUS / "hr" / "parental-leave.md").read_text()
    (docs / "hr" / "leave.md").write_text(text)
    (docs / "open" / "leave-copy.md").write_text(text)
    with KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder) as base:
        base.ingest(docs / "hr", acl="hr")
        base.ingest(docs / "open")
        assert not base.search("parental leave weeks", 3, mode="sparse", groups="all", actor="t")
        original = next(d for d in base.documents() if d.uri.endswith("leave.md") and "hr" in d.uri)
        assert base.delete(original.id)
        hits = base.search("parental leave weeks", 3, mode="sparse", groups="all", actor="t")
        assert hits and hits[0].source.endswith("leave-copy.md") and hits[0].meta.acl is None


def test_feedback_exports_only_what_the_groups_may_read_and_redact_pii(kb, tmp_path):
    kb.llm = ScriptedLLM("Birth parents receive 20 weeks of paid parental leave [1].")
    try:
        answer = kb.ask("How long is parental leave? mail me at jo@example.com", groups="hr", actor="test:hr")
    finally:
        kb.llm = None
    with FeedbackStore(kb.path) as store:
        store.record_answer(answer)
        store.add(answer.id, "up", comment="call +44 20 7946 0958")
    legal = kb.feedback_rows(groups="legal", actor="test:legal")
    assert all(row["answer_id"] != answer.id for row in legal)
    out = tmp_path / "hr.jsonl"
    assert kb.export_feedback(out, groups="hr", actor="test:hr") >= 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    mine = next(r for r in rows if r["answer_id"] == answer.id)
    assert "[EMAIL]" in mine["question"] and "jo@example.com" not in out.read_text()
    assert mine["comment"] == "call [PHONE]"
    raw = kb.feedback_rows(actor="test:admin", redact=False)
    assert any("jo@example.com" in r["question"] for r in raw)
    exports = kb.audit_log().entries(action="export")
    assert exports[-3].actor == "test:legal" and answer.sources[0].document_id not in exports[-3].shown
    assert exports[-2].detail["rows"] >= 1 and answer.sources[0].document_id in exports[-2].shown
