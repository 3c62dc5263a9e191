"""PII at ingest: pii = "flag" marks chunks and documents, "redact" never stores the data, "off" leaves it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["off", "flag", "redact"])
def test_ingest_flags_or_redacts_personal_data(tmp_path, embedder, mode):
    from ragtune.kb import KnowledgeBase

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "contacts.md").write_text("# Contacts\n\nWrite to anna.li@example.com or call +44 20 7946 0958.\n\n"
                                      "客户身份证号：11010519491231002X。\n")
    (docs / "plain.md").write_text("# Plain\n\nThe canteen opens at noon.\n")
    with KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder, pii=mode) as kb:
        assert kb.ingest(docs).ok
        records = {d.uri.rsplit("/", 1)[-1]: d for d in kb.documents()}
        hits = kb.store.document_chunks(records["contacts.md"].id)
        text = " ".join(h.text for h in hits)
        if mode == "redact":
            assert "anna.li@example.com" not in text and "[EMAIL]" in text and "[PHONE]" in text
            assert "[CN_ID]" in text
            assert not any("anna" in h.text for h in kb.search("anna.li@example.com", 3, mode="sparse", actor="t"))
        else:
            assert "anna.li@example.com" in text
        if mode == "flag":
            assert records["contacts.md"].metadata["pii"] == ["cn_id", "email", "phone"]
            assert "pii" not in records["plain.md"].metadata
            flagged = kb.store.allowed_ids({"pii": {"$contains": "email"}}) or set()
            assert {kb.store.get([i])[i].document_id for i in flagged} == {records["contacts.md"].id}
        else:
            assert "pii" not in records["contacts.md"].metadata
