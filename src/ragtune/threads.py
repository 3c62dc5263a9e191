"""Conversation threads: chat logs between the same people a few days apart continue one conversation.

A chat export, a meeting transcript or a support thread is often split into one file per session: Monday's
"want to see the movie tomorrow?" and Tuesday's "see you at 6:30 for the movie" are two documents, and a question
about the whole affair needs both, while only the first names the movie. :func:`speakers` reads who talks in a
text (lines that start ``Name:``); two documents with the same speakers, dated a few days apart, are one thread.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from ragtune.types import Hit

# "WolfgangSchulz: Hey!", "Li Hua：好的", "[10:02] Adam Smith: ..." — a short name, a colon, then words.
_SPEAKER_LINE = re.compile(r"^\s*(?:\[[^\]\n]{1,20}\]\s*)?([^\s:：\[\]][^:：\n]{0,38}?)\s*[:：](?!//)\s*\S")
# Field names that start lines of headers, forms and Q&A lists, not people.
_NOT_SPEAKERS = frozenset({
    "time", "date", "subject", "from", "to", "cc", "bcc", "re", "fw", "note", "notes", "q", "a", "question",
    "answer", "summary", "title", "tags", "status", "priority", "id", "url", "source", "author", "location",
    "attendees", "agenda", "action", "todo", "warning", "error", "info", "tip", "example", "step",
    "时间", "日期", "主题", "标题", "问", "答", "问题", "答案", "备注", "地点", "来源", "作者", "注意", "说明",
})
_MAX_NAME_WORDS = 4


def speakers(text: str, *, min_lines: int = 3, min_share: float = 0.5) -> frozenset[str]:
    """The people talking in ``text``, as case- and space-folded names, when it reads as a conversation: at least
    ``min_lines`` lines, and ``min_share`` of its non-empty lines, start with ``Name:``. Empty otherwise (prose,
    headers, a form of ``Field: value`` lines)."""
    lines = [line for line in text.splitlines() if line.strip()]
    names: list[str] = []
    for line in lines:
        match = _SPEAKER_LINE.match(line)
        if match is None:
            continue
        name = match.group(1).strip()
        folded = re.sub(r"\s+", "", name).casefold()
        if folded in _NOT_SPEAKERS or len(name.split()) > _MAX_NAME_WORDS or not any(c.isalpha() for c in name):
            continue
        names.append(folded)
    if len(names) < min_lines or len(names) < min_share * len(lines):
        return frozenset()
    return frozenset(names)


def day_of(created_at: str | None) -> date | None:
    """The calendar day of a ``created_at`` value (``2026-01-21``, ``2026-01-21T13:00``); None when it has none."""
    try:
        return date.fromisoformat((created_at or "")[:10])
    except ValueError:
        return None


def window(day: date, days: int) -> tuple[str, str]:
    """``[start, end)`` ISO dates around ``day``: ``days`` before it to ``days`` after it, both included."""
    return (day - timedelta(days=days)).isoformat(), (day + timedelta(days=days + 1)).isoformat()


@dataclass(frozen=True)
class Session:
    """A document read as one session of a conversation: its day and who talks in it."""

    document_id: str
    source: str
    day: date | None
    people: frozenset[str]

    @property
    def threaded(self) -> bool:
        """Whether it can belong to a thread: dated, and two or more people talk."""
        return self.day is not None and len(self.people) >= 2

    def apart(self, other: Session, days: int) -> int | None:
        """Days from this session to ``other`` when the two are one conversation (the same speakers, at most
        ``days`` apart); None otherwise."""
        if not (self.threaded and other.threaded) or self.people != other.people:
            return None
        assert self.day is not None and other.day is not None
        gap = (other.day - self.day).days
        return gap if abs(gap) <= days else None


def session_of(document_id: str, chunks: Sequence[Hit]) -> Session:
    """The session a document's chunks (in order) make: the first chunk's ``created_at`` day, every chunk's
    speakers."""
    first = chunks[0] if chunks else None
    return Session(document_id, first.source if first else "", day_of(first.meta.created_at) if first else None,
                   speakers("\n".join(hit.text for hit in chunks)))


def thread_step(gap: int) -> str:
    """How a hit reached by a thread is described in its path: ``thread: the same people, 1 day later``."""
    if gap == 0:
        return "thread: the same people, the same day"
    return f"thread: the same people, {abs(gap)} day{'s' if abs(gap) > 1 else ''} {'later' if gap > 0 else 'earlier'}"
