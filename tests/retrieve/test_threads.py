"""Conversation threads: every search follows the best documents' conversations (the same speakers, a day or two
apart) to the documents that continue them without naming what the question asks about (real SQLite, the bundled
embedder, a graph-enabled KB)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chat_logs import QUESTION, write_logs

from ragtune.kb import KnowledgeBase
from ragtune.threads import Session, day_of, speakers, thread_step, window


@pytest.mark.unit
def test_speakers_of_a_chat_in_english_and_chinese() -> None:
    chat = "Time: 20260121_13:00\nWolfgangSchulz: Hey!\nLi Hua: Hi\nWolfgangSchulz: 7 PM?\nLi Hua: Sure, see you."
    assert speakers(chat) == {"wolfgangschulz", "lihua"}
    assert speakers("[10:02] Adam Smith: the pipes\n[10:03] Li Hua: when?\n[10:05] Adam Smith: Monday") == {
        "adamsmith", "lihua"}
    assert speakers("日期：2026年7月1日\n李华：王伟，去吃火锅吧？\n王伟：好啊。\n李华：七点见。") == {"李华", "王伟"}


@pytest.mark.unit
@pytest.mark.parametrize("text", [
    "The committee met on Monday. It decided three things: the budget, the hire and the date.\nNothing else.",
    "Subject: outage\nFrom: ops@example.com\nTo: all@example.com\nDate: 2026-01-02\nThe database was down.",
    "Q: How do I reset my key?\nA: Open the settings.\nQ: And then?\nA: Press reset.",
    "Alice: hello\nA long paragraph of prose follows here.\nAnother one.\nAnd another line of prose.\nThe end.",
    "https://example.com: a link\nhttp://example.org: another\nftp://x.y: a third",
])
def test_texts_that_are_not_conversations_have_no_speakers(text: str) -> None:
    assert speakers(text) == frozenset()


@pytest.mark.unit
def test_days_and_windows() -> None:
    day = day_of("2026-01-21T13:00")
    assert day is not None and day.isoformat() == "2026-01-21"
    assert day_of(None) is None and day_of("January") is None
    assert window(day, 2) == ("2026-01-19", "2026-01-24")


@pytest.mark.unit
def test_sessions_of_the_same_people_a_few_days_apart_are_one_conversation() -> None:
    people = frozenset({"alice", "bob"})
    monday = Session("a", "a.txt", day_of("2026-01-19"), people)
    wednesday = Session("b", "b.txt", day_of("2026-01-21T09:00"), people)
    assert monday.apart(wednesday, 2) == 2 and wednesday.apart(monday, 2) == -2
    assert monday.apart(wednesday, 1) is None, "further apart than the window"
    assert monday.apart(Session("c", "c.txt", day_of("2026-01-19"), frozenset({"alice", "carol"})), 2) is None
    assert monday.apart(Session("d", "d.txt", None, people), 2) is None, "undated"
    alone = Session("e", "e.txt", day_of("2026-01-19"), frozenset({"alice"}))
    assert not alone.threaded and alone.apart(alone, 2) is None, "one speaker is not a conversation"
    assert [thread_step(g) for g in (0, 1, -3)] == ["thread: the same people, the same day",
                                                     "thread: the same people, 1 day later",
                                                     "thread: the same people, 3 days earlier"]


@pytest.fixture(scope="module")
def chat_kb(tmp_path_factory: pytest.TempPathFactory, embedder):
    root = tmp_path_factory.mktemp("threads")
    kb = KnowledgeBase.open(root / "kb", create=True, graph=True, embedder=embedder)
    assert kb.ingest(write_logs(root)).ok
    yield kb
    kb.close()


def _names(hits) -> list[str]:
    return [Path(h.source).name for h in hits]


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["hybrid", "graph", "auto", "dense", "sparse"])
def test_the_search_follows_the_conversation_to_the_next_day(chat_kb: KnowledgeBase, mode: str) -> None:
    # Without threads it ranks 9th to 18th (see the next test).
    result = chat_kb.retriever().search(QUESTION, 4, mode=mode)
    names = _names(result.hits)
    assert names[0] == "20260121_1300.txt" and "20260122_1700.txt" in names, names
    plan = result.hits[0]
    follow_up = result.hits[names.index("20260122_1700.txt")]
    assert follow_up.scores["thread_rank"] == 1
    # It scores thread_weight (0.8) times the plan it continues, unless its own score is higher.
    assert follow_up.score == pytest.approx(max(0.8 * plan.score, follow_up.score))
    assert follow_up.score >= 0.8 * plan.score * (1 - 1e-5)
    assert follow_up.path == ["document: " + plan.source, "thread: the same people, 1 day later"]
    assert "threads" in result.timings
    # Other people the same evening, and the same people five weeks later, are other conversations.
    for hit in chat_kb.retriever().search(QUESTION, 6, mode=mode).hits:
        if Path(hit.source).name in {"20260122_1800.txt", "20260301_1700.txt", "20260128_1200.txt"}:
            assert "thread_rank" not in hit.scores and not any(p.startswith("thread:") for p in hit.path)


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["hybrid", "graph"])
def test_without_threads_the_follow_up_is_not_found(chat_kb: KnowledgeBase, mode: str) -> None:
    chat_kb.settings.thread_weight, before = 0.0, chat_kb.settings.thread_weight
    try:
        result = chat_kb.retriever().search(QUESTION, 8, mode=mode)
    finally:
        chat_kb.settings.thread_weight = before
    assert "20260122_1700.txt" not in _names(result.hits)
    assert "threads" not in result.timings
    assert all("thread_rank" not in h.scores for h in result.hits)


@pytest.mark.integration
def test_threads_keep_to_the_filter(chat_kb: KnowledgeBase) -> None:
    before_the_22nd = {"created_at": {"$lt": "2026-01-22"}}
    result = chat_kb.retriever().search(QUESTION, 6, mode="graph", filter=before_the_22nd)
    assert all(h.meta.created_at < "2026-01-22" for h in result.hits), _names(result.hits)


@pytest.mark.integration
def test_date_ranges_read_the_index_not_every_chunk(chat_kb: KnowledgeBase) -> None:
    """Dated questions and threads filter on created_at ranges on every query: SQLite answers them from an
    expression index (a scan of every chunk's metadata grows with the KB)."""
    from ragtune.store import local
    from ragtune.store.filters import compile_sql

    spec = {"$or": [{"created_at": {"$gte": "2026-01-20", "$lt": "2026-01-23"}},
                    {"created_at": {"$gte": "2026-03-01", "$lt": "2026-03-02"}}]}
    where, params = compile_sql(spec, local._COLUMNS, local._LIST_FIELDS)
    plan = " ".join(str(row[3]) for row in chat_kb.store._conn.execute(
        f"EXPLAIN QUERY PLAN SELECT c.id FROM chunks c WHERE {where}", params))
    assert "chunks_created_at" in plan and "SCAN" not in plan, plan
    found = {h.source for h in chat_kb.store.get(sorted(chat_kb.store.allowed_ids(spec))).values()}
    assert sorted(Path(s).name for s in found) == ["20260121_1300.txt", "20260122_1700.txt", "20260122_1800.txt",
                                                    "20260301_1700.txt"]


@pytest.mark.integration
def test_threads_never_cross_access_groups(tmp_path: Path, embedder) -> None:
    """A viewer who may not read the follow-up never gets it through a thread; one who may not read the plan
    gets no thread from it, and no path names it."""
    from ragtune.ingest import document_id, file_uri

    docs = write_logs(tmp_path)
    with KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder) as kb:
        assert kb.ingest(docs).ok
        plan = document_id(file_uri(docs / "week3" / "20260121_1300.txt"))
        follow_up = document_id(file_uri(docs / "week3" / "20260122_1700.txt"))
        assert kb.set_acl(follow_up, "bob", actor="test") and kb.set_acl(plan, "alice", actor="test")
        for mode in ("hybrid", "graph" if kb.graph else "auto"):
            alice = kb.retrieve(QUESTION, 8, mode=mode, groups="alice").hits
            assert alice[0].document_id == plan and all(h.document_id != follow_up for h in alice)
            bob = kb.retrieve(QUESTION, 8, mode=mode, groups="bob").hits
            assert all(h.document_id != plan for h in bob)
            assert not any("20260121_1300" in step for h in bob for step in h.path), [h.path for h in bob]
            assert all("thread_rank" not in h.scores for h in bob)
        both = kb.retrieve(QUESTION, 4, groups="alice,bob").hits
        assert [h.document_id for h in both][:1] == [plan] and follow_up in [h.document_id for h in both]
