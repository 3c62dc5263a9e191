"""Questions that ask which of two things happened first ("Did Adam tell Li Hua about the pipes before the
plumber came?", "在王伟道歉之前，李华原谅他了吗？"), answered from the dates of the documents that state them.

Each event is searched on its own; the passage that states it best (most of the event's terms, its names kept)
is taken from a dated document (``created_at``: a chat log's ``Time:`` line, a date in its file name, the file's
metadata); the two dates decide yes or no, and both passages are quoted and cited with their dates. No answer when
either event is not found in a dated document, or both are found in the same document or at the same time: a
small model cannot compare dates it is not shown, and a guess would be a coin toss.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ragtune.dates import question_dates, small_number
from ragtune.rag.claims import Vocabulary, terms_of
from ragtune.rag.extract import Passage, is_plan, passages, quote, said_on
from ragtune.rag.quantities import quantities
from ragtune.rag.question import analyse_question
from ragtune.rag.sources import Source
from ragtune.text import HAN_RE
from ragtune.types import Hit

__all__ = ["EventGap", "EventOrder", "Located", "OrderAnswer", "answer_order", "event_gap", "event_order", "locate",
           "time_question"]

# Past events only: "Did A before B?" asks what happened; "Do I need approval before booking?" asks a rule, which
# no document's date answers (a policy PDF's creation date is not when its rule applies).
_ASKS_EN = re.compile(r"^\s*(?:question\s*:\s*)?(?:did|was|were|had)\s+", re.IGNORECASE)
_RELATION_EN = re.compile(r"\s*,?\s+\b(before|after|prior\s+to|earlier\s+than|later\s+than)\s+", re.IGNORECASE)
# A clause that names who acted ("she shared tips", "Wolfgang asked") — not a noun phrase ("the workout"): where a
# question holds two relation words, the one that starts the other event's clause is the question's.
_SUBJECT_EN = re.compile(r"(?:he|she|they|i|we|you|it|[A-Z]\w*)\b(?!\s+(?:of|in|on)\b)")
# "在王伟道歉之前，李华原谅他了吗？": the reference event comes first, the one asked about after it.
_ORDER_ZH = re.compile(
    r"^\s*(?:在)?(?P<b>.+?)(?P<rel>之前|以前|之后|以后)[，,]?\s*(?P<a>.+?)(?:了)?(?:吗|么|没有)?\s*[？?。]?\s*$")
_BEFORE = re.compile(r"before|prior|earlier|之前|以前", re.IGNORECASE)
# Words that say an event was told, not what it was: in a chat log the speaker's label is the "message".
_SAYING = Vocabulary("send sent message messages tell told ask asked inform informed mention mentioned say said share "
                   "shared remind reminded announce announced talk talked discuss discussed discussion conversation "
                   "chat 发消息 告诉 通知 提到 提醒 说 讨论 聊天")
# Words that say which time an event happened, not what it was ("Wolfgang first asked him …"): the earliest
# statement is taken anyway.
_ORDER_WORDS = Vocabulary("first initially originally again 第一次 首次 最初")
#: The share of an event's terms its passage must hold (as for an extractive answer).
MIN_COVERAGE = 0.6
# Passages that state an event within this much of the best one's coverage state it as well.
_NEAR = 0.1


@dataclass(frozen=True)
class EventOrder:
    """A question for the order of two events: did ``asked`` happen before (or after) ``reference``?"""

    asked: str
    reference: str
    before: bool


@dataclass(frozen=True)
class Located:
    """Where an event is stated: the hit, the passage, its document's date, and how much of the event it holds."""

    hit: Hit
    passage: Passage
    created_at: str
    coverage: float


@dataclass(frozen=True)
class OrderAnswer:
    """The answer: yes or no (None for "how long"), and its text with both passages quoted and cited in the order
    they happened ([1] the earlier, [2] the later)."""

    yes: bool | None
    text: str
    earlier: Located
    later: Located


def event_order(question: str) -> EventOrder | None:
    """The two events of a "Did A before / after B?" question (EN, ZH), or None for any other question."""
    if HAN_RE.search(question):
        found = _ORDER_ZH.match(question)
        # Past events only (了, 过): "报销之前需要审批吗？" asks a rule.
        if found is None or not re.search("[了过]", question[found.start("a"):]):
            return None
        return _order(found["a"], found["b"], found["rel"])
    asks = _ASKS_EN.match(question)
    if asks is None:
        return None
    body = question[asks.end():].strip().rstrip("?.").strip()
    splits = [(body[:m.start()], body[m.end():], m.group(1)) for m in _RELATION_EN.finditer(body)]
    if not splits:
        return None
    # No clause that names who acted: a relation word inside the asked event's own words ("a warm shower before
    # sleeping … before sharing the article") comes before the question's.
    asked, reference, relation = next((s for s in splits if _SUBJECT_EN.match(s[1])), splits[-1])
    return _order(asked, reference, relation)


def _order(asked: str, reference: str, relation: str) -> EventOrder | None:
    events = _events(asked, reference)
    return EventOrder(*events, bool(_BEFORE.match(relation))) if events else None


def _events(first: str, second: str) -> tuple[str, str] | None:
    """The two events' words, trimmed; None when either says too little to be searched (under two terms)."""
    first, second = first.strip(" ，,"), second.strip(" ，,")
    if len(terms_of(first)) < 2 or len(terms_of(second)) < 2:
        return None
    return first, second


def locate(event: str, hits: Sequence[Hit], *, min_coverage: float = MIN_COVERAGE) -> Located | None:
    """Where ``event`` is first stated: of the passages of dated hits that state it about as well as the best one
    does (within ``_NEAR`` of its coverage, names kept), the earliest. Things recur in a chat log (a request asked
    again, a topic discussed twice); a question for their order means the first time each happened."""
    focus = analyse_question(event)
    focus.weights = {t: w for t, w in focus.weights.items() if t not in _ORDER_WORDS}
    weights = {t: w for t, w in focus.weights.items() if t not in _SAYING}
    if len(weights) < 2:
        weights = focus.weights  # "Ravi sent the reminder": the sending is the event itself
    if len(weights) < 2:
        return None
    focus.weights = weights
    found: list[Located] = []
    for hit in hits:
        if not hit.meta.created_at:
            continue
        best: Located | None = None
        for passage in passages(Source(1, [hit])):
            # Its names, and its numbers: "100 pushups" is another challenge than "60 pull-ups".
            if not focus.keeps_names(passage.terms | passage.context) or not focus.asked_values <= {
                    q.value for q in quantities(passage.text)}:
                continue
            covered = focus.coverage(passage.terms, passage.context)
            if covered >= min_coverage and (best is None or _rank(covered, passage) > _rank(best.coverage,
                                                                                          best.passage)):
                best = Located(hit, passage, hit.meta.created_at, covered)
        if best is not None:
            found.append(best)
    if not found:
        return None
    top = max(f.coverage for f in found)
    near = [f for f in found if f.coverage >= top - _NEAR]
    # A plan ("I will send the reminder tomorrow") is when it was meant, not when it happened.
    done = [f for f in near if not is_plan(f.passage.text)]
    return min(done or near, key=lambda f: f.created_at)


def _rank(coverage: float, passage: Passage) -> float:
    """A passage's coverage, less ``_NEAR`` for a plan: of a hit's passages, one that states the event was done."""
    return coverage - (_NEAR if is_plan(passage.text) else 0.0)


@dataclass(frozen=True)
class EventGap:
    """A question for the time between two events: is it ``more`` (or less) than ``days``, or (``days`` None) how
    long was it?"""

    first: str
    second: str
    days: float | None = None
    more: bool = True


_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30}
_UNIT_DAYS = {"hour": 1 / 24, "day": 1.0, "week": 7.0, "fortnight": 14.0, "month": 30.0, "year": 365.0}
_AMOUNT = (r"(?P<cmp>more|less|longer|shorter|fewer)\s+than\s+(?P<n>\d+(?:\.\d+)?|[a-z]+)\s+"
           r"(?P<unit>hour|day|week|fortnight|month|year)s?")
_GAP_EN = [
    # Is the time interval (between A and B) more than 7 days (between A and B)?
    re.compile(r"^\s*is\s+the\s+(?:time\s+)?(?:interval|gap|time|span|period)\s+(?:between\s+(?P<pair>.+?)\s+)?"
               + _AMOUNT + r"(?:\s+between\s+(?P<pair2>.+?))?\s*[?.]?\s*$", re.IGNORECASE),
    # Did it take more than a week from A to B?
    re.compile(r"^\s*did\s+it\s+take\s+" + _AMOUNT + r"\s+(?:from|between)\s+(?P<pair>.+?)\s*[?.]?\s*$",
               re.IGNORECASE),
    # How long does it take (in total) from A to B? How much time passed between A and B?
    # (past only: "How long does delivery take from order to door?" asks a rule, not two dated events)
    re.compile(r"^\s*(?:how\s+long|how\s+many\s+days|how\s+much\s+time)\s+(?:did|was|passed|"
               r"elapsed)(?:\s+it)?(?:\s+take)?(?:\s+in\s+total)?\s+(?:from|between)\s+(?P<pair>.+?)\s*[?.]?\s*$",
               re.IGNORECASE),
]
_GAP_ZH = re.compile(r"^\s*(?:从)?(?P<a>.+?)(?:到|和|与|跟)(?P<b>.+?)(?:之间)?(?:相隔|间隔|隔了|用了|花了|过了)"
                     r"(?:(?P<cmp>超过|多于|不到|少于)(?P<n>\d+|[一二两三四五六七八九十]+)(?:个)?(?P<unit>天|周|星期|月)|"
                     r"多久|多长时间|多少天|几天)(?:吗|么)?\s*[？?。]?\s*$")
_ZH_UNIT_DAYS = {"天": 1.0, "周": 7.0, "星期": 7.0, "月": 30.0}
# "A to B", "A and B": the word that opens the second event's clause (a name or pronoun acting) splits them.
_PAIR_EN = re.compile(r"\s+(?:to|and|until|till)\s+", re.IGNORECASE)
_ASIDE = re.compile(r"\s*[(（][^)）]*[)）]")


def event_gap(question: str) -> EventGap | None:
    """The two events and the amount of a "Is the time between A and B more than N days?" / "How long from A to
    B?" question (EN, ZH), or None for any other question."""
    text = _ASIDE.sub("", question).strip()
    if HAN_RE.search(text):
        found = _GAP_ZH.match(text)
        if found is None:
            return None
        days = None
        if found["n"]:
            days = small_number(found["n"]) * _ZH_UNIT_DAYS[found["unit"]]
        return _gap(found["a"], found["b"], days, found["cmp"] not in ("不到", "少于"))
    for pattern in _GAP_EN:
        found = pattern.match(text)
        if found is None:
            continue
        pair = found["pair"] or found.groupdict().get("pair2") or ""
        split = _split_pair(pair)
        if split is None:
            return None
        days = None
        if found.groupdict().get("n"):
            count = found["n"].lower()
            number = float(count) if count[0].isdigit() else _NUMBER_WORDS.get(count)
            if number is None:
                return None
            days = number * _UNIT_DAYS[found["unit"].lower()]
        return _gap(*split, days, (found.groupdict().get("cmp") or "more").lower() in ("more", "longer"))
    return None


def _split_pair(pair: str) -> tuple[str, str] | None:
    splits = [(pair[:m.start()], pair[m.end():]) for m in _PAIR_EN.finditer(pair)]
    if not splits:
        return None
    return next((s for s in splits if _SUBJECT_EN.match(s[1])), splits[0])


def _gap(first: str, second: str, days: float | None, more: bool) -> EventGap | None:
    events = _events(first, second)
    return EventGap(*events, days, more) if events else None


def time_question(question: str) -> EventOrder | EventGap | None:
    """What ``question`` asks of two events: which came first, or how long passed between them; None for any other
    question."""
    return event_order(question) or event_gap(question)


def answer_order(question: str, asked: EventOrder | EventGap, search: Callable[[str], Sequence[Hit]]
                 ) -> OrderAnswer | None:
    """Answer a "Did A before B?" or "Is the time between A and B more than N days?" question (``asked``: what
    ``time_question`` read in it) from the dates of the documents that state A and B; ``search`` retrieves hits for
    one event's words (a date the question names is searched with each). None when the dates cannot decide."""
    # "(restrict your search within August)": the question's dates rank each event's documents too.
    dated = " ".join(span.text for span in question_dates(question))
    events = (asked.asked, asked.reference) if isinstance(asked, EventOrder) else (asked.first, asked.second)
    found = [search(f"{event} {dated}".strip()) for event in events]
    one, two = (locate(event, hits) for event, hits in zip(events, found, strict=True))
    if one is not None and two is not None and one.hit.document_id == two.hit.document_id:
        one, two = _apart(events, found, one, two)
    if one is None or two is None or one.hit.document_id == two.hit.document_id or one.created_at == two.created_at:
        return None
    earlier, later = sorted((one, two), key=lambda found: found.created_at)
    chinese = bool(HAN_RE.search(question))
    first = said_on(earlier.created_at, chinese=chinese) + quote(earlier.passage.text, 1)
    then = said_on(later.created_at, chinese=chinese) + quote(later.passage.text, 2)
    if isinstance(asked, EventOrder):
        yes: bool | None = (one.created_at < two.created_at) == asked.before
        lead = ("是的" if yes else "不是") if chinese else ("Yes" if yes else "No")
    else:
        days = _days_between(earlier.created_at, later.created_at)
        if days is None:
            return None
        yes = None if asked.days is None else (days > asked.days) == asked.more
        amount = _amount(days, chinese=chinese)
        if yes is None:
            lead = f"约{amount}" if chinese else f"About {amount}"
        else:
            lead = (f"{'是的' if yes else '不是'}，{amount}") if chinese else f"{'Yes' if yes else 'No'}: {amount}"
    text = f"{lead}。{first}；之后，{then}。" if chinese else f"{lead}. {first} Later, o{then[1:]}"
    return OrderAnswer(yes, text, earlier, later)


def _apart(events: Sequence[str], found: Sequence[Sequence[Hit]], one: Located, two: Located
           ) -> tuple[Located, Located]:
    """Both events were found in one document ("I'm off to Hong Kong next week" names the trip and the city):
    where one of them is stated at least as well in another document ("Just touched down in Hong Kong!" days
    later), that statement is taken — the better of the two such moves; else they stay together (no answer)."""
    document = one.hit.document_id
    moves: list[tuple[float, int, Located]] = []
    for n, (event, hits, current) in enumerate(zip(events, found, (one, two), strict=True)):
        other = locate(event, [h for h in hits if h.document_id != document])
        if other is not None and other.coverage >= current.coverage:
            moves.append((other.coverage - current.coverage, n, other))
    if not moves:
        return one, two
    _, n, moved = max(moves, key=lambda move: (move[0], -move[1]))
    return (moved, two) if n == 0 else (one, moved)


def _days_between(start: str, end: str) -> float | None:
    from datetime import datetime

    try:
        begin, finish = datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        return None
    if (begin.tzinfo is None) != (finish.tzinfo is None):
        begin, finish = begin.replace(tzinfo=None), finish.replace(tzinfo=None)
    return (finish - begin).total_seconds() / 86400


def _amount(days: float, *, chinese: bool) -> str:
    """A time span as people say it: whole days from ten days on ("27 days"), days and hours below ("2 days 5
    hours": near a threshold of whole days the hours tell), hours under a day."""
    whole, hours = divmod(round(days * 24), 24)
    if days >= 10 or (whole and not hours):
        n = round(days)
        return f"{n}天" if chinese else f"{n} day{'s' if n != 1 else ''}"
    if chinese:
        return f"{whole}天{hours}小时" if whole else f"{max(hours, 1)}小时"
    day_part = f"{whole} day{'s' if whole != 1 else ''} " if whole else ""
    hours = max(hours, 1)
    return f"{day_part}{hours} hour{'s' if hours != 1 else ''}"
