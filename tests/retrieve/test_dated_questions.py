"""Questions that name a date find the documents of that date: the document's date is read from its header or
file name at ingestion, and the retriever ranks the chunks of documents dated inside the question's date beside
its own rankings (real SQLite, the bundled embedder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chat_logs import logs_kb

from ragtune.kb import KnowledgeBase

pytestmark = pytest.mark.integration

# Five dinner plans: the one of 14 May says least about "dinner" and "suggest", so only its date can find it.
LOGS = {
    "week11/20260312_1800.txt": "Time: 20260312_18:00\nWolfgangSchulz: I suggest we have dinner at the Thai place "
                                "on Elm Street tonight, what do you think of that dinner suggestion?\nLiHua: Great "
                                "suggestion, Thai dinner it is.",
    "week15/20260409_1900.txt": "Time: 20260409_19:00\nWolfgangSchulz: My dinner suggestion for tonight: the "
                                "burger bar near the cinema. I suggest seven.\nLiHua: Dinner at seven, agreed.",
    "week20/20260514_1930.txt": "Time: 20260514_19:30\nWolfgangSchulz: Trattoria Roma at eight? They make "
                                "fresh pasta.\nLiHua: Perfect, see you there.",
    "week25/20260620_1900.txt": "Time: 20260620_19:00\nWolfgangSchulz: I suggest dinner at Umi, the sushi "
                                "place; dinner is on me.\nLiHua: Sushi dinner, what a suggestion!",
    # No header: the date comes from the file name.
    "notes/2026-05-02-dinner.txt": "WolfgangSchulz suggested dinner at the Greek taverna; LiHua suggested the "
                                   "dinner be early.",
    "zh/聊天记录.txt": "日期：2026年7月1日\n李华：王伟，我们去海底捞吃火锅吧？\n王伟：好啊，晚上七点见。",
    "zh/晚饭.txt": "日期：2026年8月3日\n李华：王伟，晚饭我们吃什么？我建议吃饭的地方选在家附近。\n"
                 "王伟：吃饭就去楼下的面馆吧。",
}


@pytest.fixture(scope="module")
def dated_kb(tmp_path_factory: pytest.TempPathFactory, embedder):
    yield from logs_kb(tmp_path_factory.mktemp("dated"), LOGS, embedder)


def _name(hit) -> str:
    return Path(hit.source).name


def test_documents_get_their_date_from_the_header_or_the_file_name(dated_kb: KnowledgeBase) -> None:
    dates = {Path(d.uri).name: d.metadata.get("created_at") for d in dated_kb.store.documents()}
    assert dates["20260514_1930.txt"] == "2026-05-14T19:30"
    assert dates["2026-05-02-dinner.txt"] == "2026-05-02"
    assert dates["聊天记录.txt"] == "2026-07-01"
    hits = dated_kb.search("Trattoria Roma", k=1, filter={"created_at": {"$gte": "2026-05-14", "$lt": "2026-05-15"}})
    assert _name(hits[0]) == "20260514_1930.txt" and hits[0].meta.created_at == "2026-05-14T19:30"


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_a_question_that_names_a_day_finds_that_days_conversation(dated_kb: KnowledgeBase, mode: str) -> None:
    question = "Where did Wolfgang suggest having dinner on 20260514?"
    result = dated_kb.retriever().search(question, 3, mode=mode)
    assert _name(result.hits[0]) == "20260514_1930.txt", [_name(h) for h in result.hits]
    assert result.dates == ["2026-05-14 (20260514)"]
    assert result.hits[0].scores["date_rank"] == 1
    # Without the date's ranking the conversation that says "dinner" and "suggest" most comes first.
    dated_kb.settings.date_weight, before = 0.0, dated_kb.settings.date_weight
    try:
        undated = dated_kb.retriever().search(question, 3, mode=mode)
    finally:
        dated_kb.settings.date_weight = before
    assert _name(undated.hits[0]) != "20260514_1930.txt" and not undated.dates


def test_a_month_without_a_year_is_read_in_the_years_of_the_documents_found(dated_kb: KnowledgeBase) -> None:
    question = "What dinner did Wolfgang suggest in May?"
    result = dated_kb.retriever().search(question, 3)
    assert _name(result.hits[0]) == "2026-05-02-dinner.txt" and result.dates == ["--05 (in May)"]
    dense = dated_kb.retriever().search(question, 2, mode="dense")
    assert {_name(h) for h in dense.hits} == {"20260514_1930.txt", "2026-05-02-dinner.txt"}
    # A boost, not a filter: the other dinner plans still follow; without the date May's came third and fifth.
    assert len(dated_kb.retriever().search(question, 7).hits) == 7
    dated_kb.settings.date_weight, before = 0.0, dated_kb.settings.date_weight
    try:
        undated = [_name(h) for h in dated_kb.retriever().search(question, 7).hits]
    finally:
        dated_kb.settings.date_weight = before
    assert undated.index("2026-05-02-dinner.txt") > 0


def test_chinese_dates(dated_kb: KnowledgeBase) -> None:
    result = dated_kb.retriever().search("2026年7月1日李华和王伟吃什么？", 1)
    assert _name(result.hits[0]) == "聊天记录.txt" and result.dates == ["2026-07-01 (2026年7月1日)"]
    result = dated_kb.retriever().search("七月份李华和王伟去哪里吃饭？", 1)
    assert _name(result.hits[0]) == "聊天记录.txt"


def test_a_date_no_document_has_is_said_and_changes_nothing(dated_kb: KnowledgeBase) -> None:
    question = "Where did Wolfgang suggest having dinner on January 20, 2026?"
    result = dated_kb.retriever().search(question, 3)
    assert not result.dates and any("no searchable document is dated 2026-01-20" in n for n in result.notes)
    dated_kb.settings.date_weight, before = 0.0, dated_kb.settings.date_weight
    try:
        plain = dated_kb.retriever().search(question, 3)
    finally:
        dated_kb.settings.date_weight = before
    assert [h.chunk_id for h in result.hits] == [h.chunk_id for h in plain.hits]


def test_the_date_ranking_keeps_to_the_filter(dated_kb: KnowledgeBase) -> None:
    # The user's filter (and so a viewer's access groups, which travel in it) bounds the dated search too.
    result = dated_kb.retriever().search("Where did Wolfgang suggest having dinner on 20260514?", 5,
                                         filter={"source": {"$ne": next(d.uri for d in dated_kb.store.documents()
                                                                        if d.uri.endswith("20260514_1930.txt"))}})
    assert result.hits and all(_name(h) != "20260514_1930.txt" for h in result.hits)
    assert any("no searchable document is dated 2026-05-14" in n for n in result.notes)


@pytest.mark.parametrize(("relation", "expected"), [("before", "Yes."), ("after", "No.")])
def test_which_of_two_events_came_first_is_answered_from_their_dates(dated_kb: KnowledgeBase, relation: str,
                                                                      expected: str) -> None:
    question = f"Did Wolfgang suggest the Thai place on Elm Street {relation} he suggested the sushi place Umi?"
    answer = dated_kb.ask(question, answer_mode="extractive")
    assert answer.answer.startswith(f"{expected} On 2026-03-12 18:00: “WolfgangSchulz: I suggest we have dinner at "
                                    "the Thai place"), answer.answer
    assert "Later, on 2026-06-20 19:00: “WolfgangSchulz: I suggest dinner at Umi" in answer.answer
    assert [Path(c.source).name for c in answer.citations] == ["20260312_1800.txt", "20260620_1900.txt"]
    assert answer.grounded and not answer.refused and answer.mode == "extractive"
    # A second event no dated document states: no order to tell, so no yes or no.
    unknown = dated_kb.ask("Did Wolfgang suggest the Thai place before he moved to Berlin?", answer_mode="extractive")
    assert not unknown.answer.startswith(("Yes", "No"))


def test_the_time_between_two_events_is_answered_from_their_dates(dated_kb: KnowledgeBase) -> None:
    question = ("Is the time interval between Wolfgang suggesting the Thai place on Elm Street and Wolfgang suggesting "
                "the sushi place Umi more than 90 days?")
    answer = dated_kb.ask(question, answer_mode="extractive")
    # 12 March 18:00 to 20 June 19:00.
    assert answer.answer.startswith("Yes: 100 days. On 2026-03-12 18:00:"), answer.answer
    assert [Path(c.source).name for c in answer.citations] == ["20260312_1800.txt", "20260620_1900.txt"]
    how_long = dated_kb.ask("How long was it from Wolfgang suggesting the Thai place on Elm Street to Wolfgang "
                            "suggesting the sushi place Umi?", answer_mode="extractive")
    assert how_long.answer.startswith("About 100 days."), how_long.answer


def test_documents_stored_before_dates_were_read_get_theirs_at_the_next_ingest(tmp_path: Path, embedder) -> None:
    import sqlite3

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "log.txt").write_text("Time: 20260514_19:30\nWolfgangSchulz: Trattoria Roma at eight?")
    (docs / "2026-05-02-notes.txt").write_text("Notes on the Greek taverna.")
    (docs / "plain.txt").write_text("No date anywhere in this one.")
    with KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder) as kb:
        assert kb.ingest(docs).ok
    # As an older ragtune left it: no date on the documents or their chunks.
    conn = sqlite3.connect(tmp_path / "kb" / "ragtune.db")
    with conn:
        conn.execute("UPDATE documents SET metadata = json_remove(metadata, '$.created_at')")
        conn.execute("UPDATE chunks SET meta = json_remove(meta, '$.created_at')")
    conn.close()
    with KnowledgeBase.open(tmp_path / "kb", embedder=embedder) as kb:
        assert not kb.search("Trattoria Roma", k=1, filter={"created_at": {"$gte": "2026-05-14"}})
        report = kb.ingest(docs)
        assert len(report.unchanged) == 3 and not report.added and not report.updated  # nothing re-embedded
        dates = {Path(d.uri).name: d.metadata["created_at"] for d in kb.store.documents()}
        assert dates == {"log.txt": "2026-05-14T19:30", "2026-05-02-notes.txt": "2026-05-02", "plain.txt": None}
        found = kb.retriever().search("Where are we eating on 20260514?", 1)
        assert Path(found.hits[0].source).name == "log.txt" and found.hits[0].meta.created_at == "2026-05-14T19:30"
        assert kb.verify()["ok"]


def test_a_duplicate_that_inherits_the_chunks_takes_its_own_date(tmp_path: Path, embedder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("20260101_first.txt", "20260202_copy.txt"):  # the same text, dated by their file names
        (docs / name).write_text("Minutes: the board approved the new canteen menu.")
    with KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder) as kb:
        report = kb.ingest(docs)
        assert len(report.added) == 1 and len(report.duplicates) == 1
        assert kb.search("canteen menu", k=1)[0].meta.created_at == "2026-01-01"
        (docs / "20260101_first.txt").unlink()
        assert kb.ingest(docs, sync=True).ok
        hit = kb.search("canteen menu", k=1)[0]
        assert Path(hit.source).name == "20260202_copy.txt" and hit.meta.created_at == "2026-02-02"
        assert kb.retriever().search("What did the board approve on 20260202?", 1).dates == ["2026-02-02 (20260202)"]
        assert kb.verify()["ok"]
