"""Numbers stated in text — digits, English number words, Chinese numerals — with their values and units."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["Quantity", "compatible", "quantities", "stated_years", "year_of"]


@dataclass(frozen=True)
class Quantity:
    """A number in a text: its canonical value ('20', '1.5', '9:30', '2024-03-01'), its unit when one is
    known ('day', 'eur', '%', ...), and where it stands (``start``/``end`` index the text)."""

    value: str
    unit: str | None
    start: int
    end: int
    surface: str


# Units whose spellings differ across languages and styles: a claim's '20 天' is the source's '20 days'.
_UNIT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "eur": ("eur", "euro", "euros", "€"),
    "usd": ("usd", "us$", "$", "dollar", "dollars", "美元"),
    "gbp": ("gbp", "£", "pound", "pounds", "英镑"),
    "cny": ("cny", "rmb", "yuan", "¥", "元", "人民币", "块"),
    "jpy": ("jpy", "yen", "円", "日元"),
    "chf": ("chf", "franc", "francs"),
    "second": ("second", "seconds", "sec", "secs", "秒", "秒钟"),
    "minute": ("minute", "minutes", "min", "mins", "分钟"),
    "hour": ("hour", "hours", "hr", "hrs", "h", "小时", "个小时", "钟头"),
    "day": ("day", "days", "天", "日", "工作日", "个工作日", "business day", "business days", "working day",
            "working days", "calendar day", "calendar days"),
    "week": ("week", "weeks", "周", "星期", "个星期", "礼拜"),
    "month": ("month", "months", "月", "个月"),
    "year": ("year", "years", "yr", "yrs", "年"),
    "%": ("%", "％", "percent", "per cent", "pct"),
    "character": ("character", "characters", "chars", "字符", "个字符", "位"),
    "gb": ("gb", "gigabyte", "gigabytes"),
    "mb": ("mb", "megabyte", "megabytes"),
    "tb": ("tb", "terabyte", "terabytes"),
    "kg": ("kg", "kilogram", "kilograms", "公斤", "千克"),
    "km": ("km", "kilometre", "kilometres", "kilometer", "kilometers", "公里"),
    "person": ("person", "people", "persons", "人", "名", "位员工"),
    "times": ("times", "次"),
}
UNITS: dict[str, str] = {spelling: unit for unit, spellings in _UNIT_SPELLINGS.items() for spelling in spellings}
# Longest spellings first, so 'business days' wins over 'business' and '个工作日' over '个'.
_UNIT_AFTER = re.compile(
    r"\s*(" + "|".join(re.escape(s) for s in sorted(UNITS, key=len, reverse=True)) + r")(?![a-z])", re.IGNORECASE
)
_CURRENCY_BEFORE = re.compile(r"(eur|usd|gbp|cny|rmb|chf|jpy|us\$|[€$£¥])\s*$", re.IGNORECASE)

_ENGLISH = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_WORD_NUMBER = re.compile(
    r"\b(?:" + "|".join(_ENGLISH) + r")(?:[\s-](?:" + "|".join([*_ENGLISH, *_SCALES]) + r"))*\b", re.IGNORECASE
)
# A number word counts only before a counted noun ('six hours'), not as a pronoun ('one of', 'no one').
_NOT_COUNTED = re.compile(r"\s*(?:of|another|by|and|or|to|in|on|more|less|who|that|which|[.,;:!?)]|$)",
                          re.IGNORECASE)

_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_TIME = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?![\d:])")
# Digits glued to Chinese characters still count ('为650元'); glued to Latin letters they are codes ('v2', 'A4').
_DIGITS = re.compile(r"(?<![A-Za-z0-9_.])\d+(?:,\d{3})+(?:\.\d+)?(?![\d,])|(?<![A-Za-z0-9_.])\d+(?:\.\d+)?(?!\d)")

_SCALE_WORDS = {"thousand": 1000, "million": 10**6, "billion": 10**9, "万": 10**4, "亿": 10**8}
_SCALE_AFTER = re.compile(r"\s*(thousand|million|billion|万|亿)(?![a-z])", re.IGNORECASE)
# Abbreviated scales glued to the digits ('10k', '€2.5M', '3bn'; 'bn'/'mn' also after a space). Case matters:
# '5m' is five metres and '5MB' a size, so only a capital M alone means million.
_SCALE_ABBREVIATED = re.compile(r"(?:(k|K|M|bn|mn)|\s(bn|mn))(?![A-Za-z])")
_ABBREVIATED = {"k": 1000, "K": 1000, "M": 10**6, "mn": 10**6, "bn": 10**9}

_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9}
_ZH_SMALL = {"十": 10, "百": 100, "千": 1000}
_ZH_LARGE = {"万": 10_000, "亿": 100_000_000}
_ZH_RUN = re.compile("(百分之)?([零〇一二三四五六七八九两十百千万亿]+)")
# Numeral words that are not quantities: 万一 (in case), 千万 (by all means), 一一 (one by one), 十分 (very).
_ZH_IDIOMS = ("万一", "千万", "一一", "十分")
# What a single Chinese numeral must be followed (or preceded) by to count: a measure word or unit.
_ZH_COUNTED = re.compile(
    "(?:个月|个工作日|个小时|个星期|个字符|工作日|小时|分钟|星期|天|日|年|月|周|次|人|名|位|元|块|倍|项|条|家|"
    "种|岁|层|楼|点|号|份|张|本|台|部|级|类|成|秒|%|％)"
)


def quantities(text: str) -> list[Quantity]:
    """Every number stated in ``text``, in order: '10,000 EUR', '€180', '€10k', 'six hours', '二十天', '45%',
    '9:30', '2024-03-01'. Values are canonical, so '二十天' and '20 days' are both 20 with unit 'day'."""
    text = unicodedata.normalize("NFKC", text)
    found: list[Quantity] = []
    taken: list[tuple[int, int]] = []

    def add(value: str, start: int, end: int) -> None:
        if any(s < end and start < e for s, e in taken):
            return
        unit, unit_end = _unit_at(text, start, end)
        taken.append((start, max(end, unit_end)))
        found.append(Quantity(value, unit, start, max(end, unit_end), text[start:max(end, unit_end)]))

    for m in _DATE.finditer(text):
        add(f"{int(m.group(1))}-{int(m.group(2)):02d}-{int(m.group(3)):02d}", m.start(), m.end())
    for m in _TIME.finditer(text):
        minutes = m.group(2)
        add(str(int(m.group(1))) if minutes == "00" else f"{int(m.group(1))}:{minutes}", m.start(), m.end())
    for m in _DIGITS.finditer(text):
        number, end = m.group().replace(",", ""), m.end()
        scale = _SCALE_AFTER.match(text, end)
        short = None if scale else _SCALE_ABBREVIATED.match(text, end)
        if scale:
            # '3.4 million' and '3,400,000' state the same amount.
            number = format(Decimal(number) * _SCALE_WORDS[scale.group(1).lower()], "f")
            end = scale.end()
        elif short:
            number = format(Decimal(number) * _ABBREVIATED[short.group(1) or short.group(2)], "f")
            end = short.end()
        add(_canonical(number), m.start(), end)
    for m in _WORD_NUMBER.finditer(text):
        if _NOT_COUNTED.match(text, m.end()):
            continue
        value = _english_value(m.group())
        if value is not None:
            add(str(value), m.start(), m.end())
    for m in _ZH_RUN.finditer(text):
        percent, run = m.group(1), m.group(2)
        value = _chinese_value(text, m.start(2), run)
        if value is None:
            continue
        if percent:
            found_unit = Quantity(str(value), "%", m.start(), m.end(), m.group())
            if not any(s < m.end() and m.start() < e for s, e in taken):
                taken.append((m.start(), m.end()))
                found.append(found_unit)
            continue
        add(str(value), m.start(2), m.end(2))
    return sorted(found, key=lambda q: q.start)


def compatible(a: Quantity, b: Quantity) -> bool:
    """Whether two quantities state the same amount: equal values, and equal units where both have one."""
    return a.value == b.value and (a.unit is None or b.unit is None or a.unit == b.unit)


_YEAR = re.compile(r"(?:19|20|21)\d\d")
_ISO_DATE = re.compile(r"(\d{4})-\d{2}-\d{2}")


def year_of(q: Quantity) -> str | None:
    """The year a quantity states: a bare year ('2030', '2030年') or a date's ('2026-03-12' states 2026)."""
    if q.unit not in (None, "year"):
        return None
    date = _ISO_DATE.fullmatch(q.value)
    value = date.group(1) if date else q.value
    return value if _YEAR.fullmatch(value) else None


def stated_years(text: str) -> frozenset[str]:
    """The years ``text`` states ('in 2030', '2030年', '2026-03-12')."""
    return frozenset(y for q in quantities(text) if (y := year_of(q)))


def _canonical(number: str) -> str:
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number.lstrip("0") or "0"


def _unit_at(text: str, start: int, end: int) -> tuple[str | None, int]:
    after = _UNIT_AFTER.match(text, end)
    if after:
        return UNITS[after.group(1).lower()], after.end()
    before = _CURRENCY_BEFORE.search(text, max(0, start - 6), start)
    if before:
        return UNITS[before.group(1).lower()], end
    return None, end


def _english_value(words: str) -> int | None:
    total, current = 0, 0
    for word in re.split(r"[\s-]+", words.lower()):
        if word in _ENGLISH:
            current += _ENGLISH[word]
        elif word in _SCALES:
            current = max(current, 1) * _SCALES[word]
            if _SCALES[word] >= 1000:
                total, current = total + current, 0
        else:
            return None
    return total + current


def _chinese_value(text: str, start: int, run: str) -> int | None:
    end = start + len(run)
    # 十分钟 is ten minutes, not 'very': the idiom check yields to a unit right after.
    if any(idiom in text[max(0, start - 1) : end + 1] for idiom in _ZH_IDIOMS) and not (
            run.endswith("十") and text.startswith("分钟", end)):
        return None
    counted = bool(_ZH_COUNTED.match(text, end)) or text[max(0, start - 1) : start] == "第"
    if len(run) == 1 and not counted:
        return None
    if run.startswith("一") and text.startswith("个", end) and not _ZH_COUNTED.match(text, end):
        return None  # 一个 is mostly the article 'a'
    if all(ch in _ZH_DIGITS for ch in run):
        # 二〇二四 is read digit by digit; a lone pair like 一二 is not a quantity.
        return int("".join(str(_ZH_DIGITS[ch]) for ch in run)) if len(run) >= 3 or counted else None
    total, section, digit = 0, 0, 0
    for ch in run:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        elif ch in _ZH_SMALL:
            section += (digit or 1) * _ZH_SMALL[ch]
            digit = 0
        else:
            total = (total + section + digit) * _ZH_LARGE[ch]
            section, digit = 0, 0
    return total + section + digit
