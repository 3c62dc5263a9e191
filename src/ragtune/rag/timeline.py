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

from ragtune.rag.claims import terms_of
from ragtune.rag.extract import Passage, passages, quote, said_on
from ragtune.rag.quantities import quantities
from ragtune.rag.question import analyse_question
from ragtune.rag.sources import Source
from ragtune.text import HAN_RE
from ragtune.types import Hit

__all__ = ["EventOrder", "Located", "OrderAnswer", "answer_order", "event_order", "locate"]

_ASKS_EN = re.compile(r"^\s*(?:question\s*:\s*)?(?:did|was|were|has|had|is|are|does|do)\s+", re.IGNORECASE)
_RELATION_EN = re.compile(r"\s*,?\s+\b(before|after|prior\s+to|earlier\s+than|later\s+than)\s+", re.IGNORECASE)
# A clause that names who acted ("she shared tips", "Wolfgang asked") — not a noun phrase ("the workout"): where a
# question holds two relation words, the one that starts the other event's clause is the question's.
_SUBJECT_EN = re.compile(r"(?:he|she|they|i|we|you|it|[A-Z]\w*)\b(?!\s+(?:of|in|on)\b)")
# "在王伟道歉之前，李华原谅他了吗？": the reference event comes first, the one asked about after it.
_ORDER_ZH = re.compile(
    r"^\s*(?:在)?(?P<b>.+?)(?P<rel>之前|以前|之后|以后)[，,]?\s*(?P<a>.+?)(?:了)?(?:吗|么|没有)?\s*[？?。]?\s*$")
_BEFORE = re.compile(r"before|prior|earlier|之前|以前", re.IGNORECASE)
# Words that say an event was told, not what it was: in a chat log the speaker's label is the "message".
_SAYING = terms_of("send sent message messages tell told ask asked inform informed mention mentioned say said share "
                   "shared remind reminded announce announced talk talked discuss discussed discussion conversation "
                   "chat 发消息 告诉 通知 提到 提醒 说 讨论 聊天")
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
    """The answer: yes or no, and its text with both passages quoted and cited in the order they happened
    ([1] the earlier, [2] the later)."""

    yes: bool
    text: str
    earlier: Located
    later: Located


def event_order(question: str) -> EventOrder | None:
    """The two events of a "Did A before / after B?" question (EN, ZH), or None for any other question."""
    if HAN_RE.search(question):
        found = _ORDER_ZH.match(question)
        if found is None:
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
    asked, reference = asked.strip(" ，,"), reference.strip(" ，,")
    if len(terms_of(asked)) < 2 or len(terms_of(reference)) < 2:
        return None
    return EventOrder(asked, reference, bool(_BEFORE.match(relation)))


def locate(event: str, hits: Sequence[Hit], *, min_coverage: float = MIN_COVERAGE) -> Located | None:
    """Where ``event`` is first stated: of the passages of dated hits that state it about as well as the best one
    does (within ``_NEAR`` of its coverage, names kept), the earliest. Things recur in a chat log (a request asked
    again, a topic discussed twice); a question for their order means the first time each happened."""
    focus = analyse_question(event)
    weights = {t: w for t, w in focus.weights.items() if t not in _SAYING}
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
            if covered >= min_coverage and (best is None or covered > best.coverage):
                best = Located(hit, passage, hit.meta.created_at, covered)
        if best is not None:
            found.append(best)
    if not found:
        return None
    top = max(f.coverage for f in found)
    return min((f for f in found if f.coverage >= top - _NEAR), key=lambda f: f.created_at)


def answer_order(question: str, search: Callable[[str], Sequence[Hit]]) -> OrderAnswer | None:
    """Answer a "Did A before B?" question from the dates of the documents that state A and B; ``search``
    retrieves hits for one event's words. None when the question asks no order, or the dates cannot decide."""
    order = event_order(question)
    if order is None:
        return None
    asked = locate(order.asked, search(order.asked))
    reference = locate(order.reference, search(order.reference))
    if asked is None or reference is None or asked.hit.document_id == reference.hit.document_id:
        return None
    if asked.created_at == reference.created_at:
        return None
    yes = (asked.created_at < reference.created_at) == order.before
    earlier, later = sorted((asked, reference), key=lambda found: found.created_at)
    chinese = bool(HAN_RE.search(question))
    first = said_on(earlier.created_at, chinese=chinese) + quote(earlier.passage.text, 1)
    then = said_on(later.created_at, chinese=chinese) + quote(later.passage.text, 2)
    if chinese:
        text = f"{'是的' if yes else '不是'}。{first}；之后，{then}。"
    else:
        text = f"{'Yes' if yes else 'No'}. {first} Later, o{then[1:]}"
    return OrderAnswer(yes, text, earlier, later)
