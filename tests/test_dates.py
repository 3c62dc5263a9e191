"""Dates a question names and a document's own date (``ragtune.dates``)."""

from __future__ import annotations

import pytest

from ragtune.dates import (
    DateSpan,
    document_date,
    ordinal_end,
    parse_date,
    question_dates,
    small_number,
    time_words,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What did they plan according to the conversation on 20260925?", [("2026-09-25", "20260925")]),
        ("What did Li Hua eat for dinner on January 20, 2026?", [("2026-01-20", "January 20, 2026")]),
        ("Who came to the concert on March 7th?", [("--03-07", "March 7th")]),
        ("What offers did Hailey have in the month of May?", [("--05", "in the month of May")]),
        ("Restrict your search within August.", [("--08", "within August")]),
        ("What happened on the 3rd of May 2026?", [("2026-05-03", "3rd of May 2026")]),
        ("The meeting of 2026/9/25 and the one of 2026-10-02", [("2026-09-25", "2026/9/25"),
                                                               ("2026-10-02", "2026-10-02")]),
        ("Sales in September 2025", [("2025-09", "September 2025")]),
        ("What changed in 2025?", [("2025", "in 2025")]),
        ("2026年5月7日的会议讨论了什么？", [("2026-05-07", "2026年5月7日")]),
        ("5月7号谁来了？", [("--05-07", "5月7号")]),
        ("五月份有哪些活动？", [("--05", "五月份")]),
        ("2026年十二月的账单", [("2026-12", "2026年十二月")]),
    ],
)
def test_question_dates(question: str, expected: list[tuple[str, str]]) -> None:
    assert [(s.describe(), s.text) for s in question_dates(question)] == expected


@pytest.mark.parametrize(
    "question",
    [
        "May I ask how to reset a password?",  # the modal verb, not the month
        "we may march on the city",  # lower-case month words that are verbs
        "三个月以来有什么变化？",  # a duration, not a month
        "What is on 2026-02-30?",  # no such day
        "Order 20261399 was lost",  # eight digits that are no date
        "How many items cost 2025 dollars?",  # a number, not a year
        "What changed since May?",  # an open range, not the month
    ],
)
def test_no_date_where_there_is_none(question: str) -> None:
    assert question_dates(question) == []


def test_ranges_read_a_date_without_a_year_in_the_given_years() -> None:
    assert DateSpan("20260507", 2026, 5, 7).ranges() == [("2026-05-07", "2026-05-08")]
    assert DateSpan("in December", None, 12).ranges([2025, 2024, 2025]) == [("2024-12-01", "2025-01-01"),
                                                                            ("2025-12-01", "2026-01-01")]
    assert DateSpan("in 2025", 2025).ranges() == [("2025-01-01", "2026-01-01")]
    # 29 February only in the leap year; a year-less span with no years to read it in is empty.
    assert DateSpan("Feb 29", None, 2, 29).ranges([2023, 2024]) == [("2024-02-29", "2024-03-01")]
    assert DateSpan("Feb 29", None, 2, 29).ranges() == []
    # A document's date with a time of day falls inside its day by string comparison.
    start, end = DateSpan("20260121", 2026, 1, 21).ranges()[0]
    assert start <= "2026-01-21T13:00" < end


def test_parse_date_keeps_the_time_of_day() -> None:
    assert parse_date("20260121_13:00") == "2026-01-21T13:00"
    assert parse_date("2026-01-21 09:30") == "2026-01-21T09:30"
    assert parse_date("January 21, 2026") == "2026-01-21"
    assert parse_date("2026年1月21日") == "2026-01-21"
    assert parse_date("in May") is None  # not a full date
    assert parse_date("hello") is None


@pytest.mark.parametrize(
    ("text", "source", "expected"),
    [
        ("Time: 20260121_13:00\nLiHua: Hey!", "/kb/week3/20260121_1300.txt", "2026-01-21T13:00"),
        ("Date: 2026-03-02\n\nMinutes of the board", "/kb/minutes.md", "2026-03-02"),
        ("日期：2026年7月1日\n李华：你好！", "/kb/聊天.txt", "2026-07-01"),
        ("Standup notes", "/kb/2026-01-21-standup.md", "2026-01-21"),
        ("Standup notes", "/kb/20260121_1300.txt", "2026-01-21T13:00"),
        ("Standup notes", "C:\\kb\\20260121.txt", "2026-01-21"),
        # The header wins over the file name; no date anywhere gives none.
        ("Time: 20260122_17:00\nhi", "/kb/20260121_1300.txt", "2026-01-22T17:00"),
        ("Plain text, no date", "/kb/readme.txt", None),
        ("Plain text", "/kb/12345678.txt", None),
        # A "Date:" far down the text is content, not the document's header.
        ("a\nb\nc\nd\ne\nf\nDate: 2026-01-01", "/kb/notes.txt", None),
    ],
)
def test_document_date(text: str, source: str, expected: str | None) -> None:
    assert document_date(text, source) == expected


def test_small_numbers_in_digits_and_chinese_numerals():
    assert [small_number(t) for t in ("7", "12", "三", "两", "十", "十二", "二十", "二十五", "个")] == [
        7, 12, 3, 2, 10, 12, 20, 25, 0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The review is on Friday.", {"friday"}),
        ("It moved to next Tuesday.", {"next tuesday"}),
        ("Let's meet tomorrow evening.", {"tomorrow", "evening"}),
        ("Next week, in March.", {"next week", "march"}),
        ("In May we moved.", {"may"}),
        ("评审改到下周二，明天再说。", {"下周二", "明天"}),
        ("我们周末见，三月份开始。", {"周末", "三月"}),
    ],
)
def test_time_words_name_days_and_months_without_numbers(text: str, expected: set[str]) -> None:
    assert time_words(text) == expected


@pytest.mark.parametrize("text", ["May I come in?", "Mei: May we join?", "Good morning, Mei!", "a week of leave",
                                  "You may march in.", "每个月都有"])
def test_no_time_words_in_greetings_requests_or_durations(text: str) -> None:
    assert time_words(text) == frozenset()


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("When did they first meet?", "earliest"),
        ("What was in the first-ever delivery from Hailey?", "earliest"),
        ("Did Li Hua agree after Wolfgang first asked him?", "earliest"),
        ("Where was the first time Li Hua had dinner with Wolfgang?", "earliest"),
        ("Which was the earliest booking?", "earliest"),
        ("What is the latest news from Wolfgang?", "latest"),
        ("When was the last time Adam fixed the heater?", "latest"),
        ("What did Hailey most recently bake?", "latest"),
        ("他们第一次见面是在哪里？", "earliest"),
        ("最近一次会议讨论了什么？", "latest"),
        # Not ordinal: "first" before a noun, "last" of a month, and a question that asks for both ends.
        ("What is on the first floor?", None),
        ("What is the first name of the CEO?", None),
        ("Who came first in the race?", None),
        ("Was last month's rent paid?", None),
        ("Compare the first time and the last time they met.", None),
    ],
)
def test_ordinal_end_reads_first_and_latest_questions(question: str, expected: str | None) -> None:
    assert ordinal_end(question) == expected
