"""Dates in documents and in questions.

A document's own date, when its parser found none in the file's metadata: a header field at its top
(``Time: 20260121_13:00``, ``Date: 2026-01-21``, ``日期：2026年1月21日``) or a date in its file name
(``20260121_1300.txt``, ``2026-01-21-standup.md``). It becomes the ``created_at`` of the document and its chunks.

The dates a question is about ("… on 20260925?", "in the month of May", "on March 7th, 2026", "2026年5月7日",
"五月份"), as spans that the retriever turns into ``created_at`` ranges: the chunks of documents dated inside
them form one more ranking in the fusion (see ``HybridRetriever``). Relative dates ("yesterday", "last week")
are not read: a question's "now" is not the documents' one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import PurePath

MONTHS = {
    name: n for n, names in enumerate((
        ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
        ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
        ("november", "nov"), ("december", "dec"),
    ), 1) for name in names
}
# Month names that are also common words: a month only when capitalised ("May I …" is still caught by context).
_AMBIGUOUS = {"may", "march", "mar", "jan", "sep", "oct", "dec", "jun", "aug"}
_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}

_MONTH = r"(?P<month>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_YEAR = r"(?P<year>(?:19|20)\d{2})"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_CN_NUM = r"(?:\d{1,2}|[一二两三四五六七八九十]{1,3})"

# 20260925, 20260925_1300
_COMPACT = re.compile(r"(?<!\d)" + _YEAR + r"(?P<m>0[1-9]|1[0-2])(?P<day>0[1-9]|[12]\d|3[01])(?!\d)")
# 2026-09-25, 2026/9/25, 2026.09.25
_ISO = re.compile(r"(?<![\d.])" + _YEAR + r"[-/.](?P<m>1[0-2]|0?[1-9])[-/.](?P<day>3[01]|[12]\d|0?[1-9])(?![\d])")
# 2026年5月7日, 2026年五月七号
_ZH_FULL = re.compile(_YEAR + r"\s*年\s*(?P<cm>" + _CN_NUM + r")\s*月\s*(?P<cd>" + _CN_NUM + r")\s*[日号號]")
# September 25(th)(, 2026)
_MONTH_DAY = re.compile(r"\b" + _MONTH + r"\s+" + _DAY + r"\b(?:,?\s+" + _YEAR + r"\b)?", re.IGNORECASE)
# 25(th) (of) September( 2026)
_DAY_MONTH = re.compile(r"\b" + _DAY + r"\s+(?:of\s+)?" + _MONTH + r"\b(?:,?\s+" + _YEAR + r"\b)?", re.IGNORECASE)

# Most specific first: a span taken by one pattern is not read again by a later one.
_QUESTION_PATTERNS = [
    _COMPACT,
    _ISO,
    _ZH_FULL,
    # 5月7日 (no year)
    re.compile(r"(?<![\d年个個])(?P<cm>" + _CN_NUM + r")\s*月\s*(?P<cd>" + _CN_NUM + r")\s*[日号號]"),
    # 2026年5月
    re.compile(_YEAR + r"\s*年\s*(?P<cm>" + _CN_NUM + r")\s*月"),
    _MONTH_DAY,
    _DAY_MONTH,
    # September 2026
    re.compile(r"\b" + _MONTH + r",?\s+" + _YEAR + r"\b", re.IGNORECASE),
    # 2026-09
    re.compile(r"(?<![\d.])" + _YEAR + r"-(?P<m>1[0-2]|0[1-9])(?![\d-])"),
    # in (the month of) May, during August, early December
    # (not "since May", "until May": those are open ranges, not the month)
    re.compile(r"\b(?:in|of|during|within|throughout|early|late|mid|end of|beginning of|start of)[\s-]+"
               r"(?:the\s+month\s+of\s+)?" + _MONTH + r"\b", re.IGNORECASE),
    # 五月份, 5月 (no year; not 三个月)
    re.compile(r"(?<![\d个個年])(?P<cm>" + _CN_NUM + r")\s*月(?:份|初|底|中旬|上旬|下旬)?"
               r"(?![\d一二两三四五六七八九十])"),
    # in 2025, during the year 2025
    re.compile(r"\b(?:in|during|throughout|within)\s+(?:the\s+year\s+)?" + _YEAR + r"\b(?![-/.]\d)", re.IGNORECASE),
    # 2025年
    re.compile(_YEAR + r"\s*年(?!\s*" + _CN_NUM + r"\s*月)"),
]
# The patterns that can read a whole date (year, month and day); a file name's dates are written with digits only.
_FULL_DATE_PATTERNS = (_COMPACT, _ISO, _ZH_FULL, _MONTH_DAY, _DAY_MONTH)
_FILE_NAME_PATTERNS = (_COMPACT, _ISO)

_HEADER_FIELD = re.compile(
    r"^\s*(?:time|date|datetime|date\s*time|created|sent|日期|时间|時間)\s*[:：]\s*(?P<value>.+?)\s*$", re.IGNORECASE
)
_TIME = re.compile(r"^[_T\s-]?(?P<h>[01]\d|2[0-3]):?(?P<min>[0-5]\d)(?!\d)")


@dataclass(frozen=True)
class DateSpan:
    """A date a question names: a day, a month or a year; the year may be missing ("on March 7th")."""

    text: str
    year: int | None
    month: int | None = None
    day: int | None = None

    def ranges(self, years: Iterable[int] = ()) -> list[tuple[str, str]]:
        """``[start, end)`` pairs of ISO dates: the span in its own year, or in each of ``years`` when it names
        none. ``created_at`` values (``2026-05-07``, ``2026-05-07T13:00``) fall inside by string comparison."""
        out: list[tuple[str, str]] = []
        for year in [self.year] if self.year is not None else sorted(set(years)):
            try:
                if self.month is None:
                    start, end = date(year, 1, 1), date(year + 1, 1, 1)
                elif self.day is None:
                    start = date(year, self.month, 1)
                    end = date(year + 1, 1, 1) if self.month == 12 else date(year, self.month + 1, 1)
                else:
                    start = date(year, self.month, self.day)
                    end = start + timedelta(days=1)
            except ValueError:  # 29 February of a year without one, a day 31 in a month of 30
                continue
            out.append((start.isoformat(), end.isoformat()))
        return out

    def describe(self) -> str:
        """The span as ISO-like text: ``2026-05-07``, ``2026-05``, ``--05-07`` (any year), ``2026``."""
        year = f"{self.year:04d}" if self.year is not None else "-"
        if self.month is None:
            return year
        return f"{year}-{self.month:02d}" + (f"-{self.day:02d}" if self.day is not None else "")


def question_dates(text: str) -> list[DateSpan]:
    """The dates ``text`` names, in the order they appear; those that are no valid calendar date are left out."""
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, DateSpan]] = []
    for pattern in _QUESTION_PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < b and a < end for a, b in taken):
                continue
            span = _span(match)
            if span is None:
                continue
            taken.append((start, end))
            found.append((start, span))
    return [span for _, span in sorted(found, key=lambda item: item[0])]


def _span(match: re.Match[str]) -> DateSpan | None:
    groups = {k: v for k, v in match.groupdict().items() if v is not None}
    year = int(groups["year"]) if "year" in groups else None
    month: int | None = None
    if "month" in groups:
        word = groups["month"]
        if word.lower() in _AMBIGUOUS and not word[0].isupper():
            return None
        month = MONTHS[word.lower()]
    elif "m" in groups:
        month = int(groups["m"])
    elif "cm" in groups:
        month = small_number(groups["cm"])
    day = int(groups["day"]) if "day" in groups else small_number(groups["cd"]) if "cd" in groups else None
    if month is not None and not 1 <= month <= 12 or day is not None and not 1 <= day <= 31:
        return None
    if year is None and month is None:
        return None
    span = DateSpan(match.group(0).strip(), year, month, day)
    if span.year is not None and not span.ranges():
        return None  # 2026-02-30
    return span


def small_number(text: str) -> int:
    """A count up to 99 in digits or Chinese numerals ("12", "十二", "二十", "两"); 0 when it is none."""
    if text.isdigit():
        return int(text)
    if text == "十":
        return 10
    if text.startswith("十"):
        return 10 + _CN_DIGITS.get(text[1:], 0)
    if "十" in text:
        tens, _, ones = text.partition("十")
        return _CN_DIGITS.get(tens, 0) * 10 + (_CN_DIGITS.get(ones, 0) if ones else 0)
    return _CN_DIGITS.get(text, 0)


def parse_date(text: str) -> str | None:
    """A full date (year, month and day) at the start of ``text``, with its time of day when one follows it
    (``20260121_13:00`` → ``2026-01-21T13:00``, ``January 21, 2026`` → ``2026-01-21``); None when there is none."""
    text = text.strip()
    for pattern in _FULL_DATE_PATTERNS:
        match = pattern.match(text)
        if match is None:
            continue
        span = _span(match)
        if span is None or span.year is None or span.month is None or span.day is None:
            continue
        day = date(span.year, span.month, span.day).isoformat()
        clock = _TIME.match(text[match.end():])
        return f"{day}T{clock['h']}:{clock['min']}" if clock else day
    return None


def document_date(text: str, source: str, *, header_lines: int = 5) -> str | None:
    """A document's own date in ISO form: a ``Time:`` / ``Date:`` / ``日期：`` field among its first lines, else a
    date in its file name (``20260121_1300.txt``, ``2026-01-21-notes.md``); None when neither holds one."""
    for line in text.lstrip().splitlines()[:header_lines]:
        field = _HEADER_FIELD.match(line)
        if field:
            found = parse_date(field["value"])
            if found:
                return found
    stem = PurePath(source.replace("\\", "/")).name
    for pattern in _FILE_NAME_PATTERNS:
        match = pattern.search(stem)
        if match is not None:
            found = parse_date(stem[match.start():])
            if found:
                return found
    return None


# Days, parts of days and months that answer "when?" without a number: "on Friday", "next Tuesday", "tomorrow
# evening", "in March", "周五", "下周二", "明天晚上". Each is read as one normalised word, so "Friday" and "friday"
# are the same answer and "next Tuesday" is another one than "Tuesday".
_WEEKDAYS_EN = r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|weekend"
_RELATIVE_EN = r"today|tonight|tomorrow|yesterday|noon|midnight|morning|afternoon|evening|night"
_MONTH_WORDS = "|".join(name for name in MONTHS if len(name) > 3 or name == "may")
_TIME_WORD_EN = re.compile(
    rf"(?<!\bgood\s)\b(?:(?P<rel>next|last|this|coming)\s+)?(?P<word>{_WEEKDAYS_EN}|{_RELATIVE_EN}|week|month|"
    rf"{_MONTH_WORDS})s?\b", re.IGNORECASE)
_MAY_ASKS = re.compile(r"\s+(?:i|we|you|he|she|they)\b", re.IGNORECASE)
_TIME_WORD_ZH = re.compile(
    "(?:下下|下个|上个|这个|本|下|上|这)?(?:周|星期|礼拜)[一二三四五六日天末]|"
    "(?:下下|下个|上个|这个|本|下|上|这)(?:周|星期|礼拜|月)|"
    "今天|明天|后天|昨天|前天|今晚|明晚|昨晚|今早|明早|上午|下午|中午|晚上|早上|凌晨|傍晚|月底|月初|周末|"
    "[一二三四五六七八九十]{1,2}月(?!份?[\\d一二三四五六七八九十])")
# Words that are a time only where another word makes them one: "week" ("next week", not "a week's leave"),
# "month" the same; May / March as verbs or common words unless capitalised ("May I …" is a question, not a
# month), and greetings ("Good morning") are no times.
_NEEDS_RELATION = {"week", "month"}


def _asks_may(text: str, m: re.Match[str]) -> bool:
    """"May I …?" at the start of a sentence asks leave; it names no month."""
    before = text[:m.start()].rstrip()
    return (not before or before[-1] in ".!?:\"“") and bool(_MAY_ASKS.match(text, m.end()))


def time_words(text: str) -> frozenset[str]:
    """The times without numbers that ``text`` names ("on Friday", "next Tuesday", "tomorrow", "in March",
    "周五", "下周二", "明天"), lower-cased and with their "next/last/this" kept: what fills a "when?" as well
    as a date or a clock time does."""
    found: set[str] = set()
    for m in _TIME_WORD_EN.finditer(text):
        word, relation = m["word"].lower(), (m["rel"] or "").lower()
        if word in _AMBIGUOUS and (not m["word"][0].isupper() or word == "may" and _asks_may(text, m)):
            continue
        if word in _NEEDS_RELATION and not relation:
            continue
        found.add(f"{relation} {word}".strip())
    found.update(m.group(0) for m in _TIME_WORD_ZH.finditer(text))
    return frozenset(found)


# "When did they first meet?", "the first-ever delivery", "the latest news": which end of the time line is asked for.
# "first" alone is not enough ("first floor", "first name", "first aid"): it counts before a verb ("did they first
# meet", "first asked") or in "first time" / "first-ever". Chinese 第一次/首次/最早 and 最近/最后一次/最新.
_FIRST_EN = re.compile(
    r"\b(?:first[- ]ever|(?:for )?the first time|first time|earliest|first(?= (?:\w+ed|meet|met|go|went|see|saw|"
    r"tell|told|say|said|get|got|make|made|take|took|have|had|come|came|give|gave|send|sent|bring|brought|buy|"
    r"bought|hear|heard|begin|began|start|write|wrote|speak|spoke|ask|try|visit|mention|talk|invite|suggest|"
    r"discuss|introduce|order|deliver|join|move|call|share)\b))\b", re.IGNORECASE)
_LATEST_EN = re.compile(r"\b(?:(?:the )?last time|most recent(?:ly)?|latest|newest)\b", re.IGNORECASE)
_FIRST_ZH = re.compile("第一次|头一次|首次|最早|最初")
_LATEST_ZH = re.compile("最近一次|上一次|最后一次|最新|最近")


def ordinal_end(text: str) -> str | None:
    """'earliest' when a question asks for the first time something happened, 'latest' for the last or most recent
    one, None otherwise (or when it asks both)."""
    first = bool(_FIRST_EN.search(text) or _FIRST_ZH.search(text))
    latest = bool(_LATEST_EN.search(text) or _LATEST_ZH.search(text))
    if first == latest:
        return None
    return "earliest" if first else "latest"
