"""Chat logs for the conversation-thread tests: one file per session, dated by a `Time:` line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Only the plan of 21 January names the film; the next day's message between the same two people says when they
# meet. The other conversations about films are of other people, or weeks later.
LOGS = {
    "week3/20260121_1300.txt": "Time: 20260121_13:00\nAlice: Want to see \"Overwatch 3\" tomorrow? The 7 PM show.\n"
                               "Bob: I'm in! Food first?\nAlice: The burger place near the cinema.\nBob: Deal.",
    "week3/20260122_1700.txt": "Time: 20260122_17:00\nAlice: Reminder: tonight at the burger place.\nBob: Great, "
                               "what time do we meet?\nAlice: Let's meet at 6:30 at the entrance.\nBob: 6:30 it is.",
    "week3/20260122_1800.txt": "Time: 20260122_18:00\nAlice: Carol, have you seen a good film lately?\nCarol: I "
                               "watched a documentary about whales.\nAlice: I'll watch films with you next week.",
    "week9/20260301_1700.txt": "Time: 20260301_17:00\nAlice: Bob, shall we meet at 6:30 for another film?\n"
                               "Bob: Sure, which film do you want to watch?\nAlice: Anything but a sequel.",
    "week4/20260128_1200.txt": "Time: 20260128_12:00\nDave: Did you watch the new film with Alice?\nErin: Not "
                               "yet, I want to watch it at the cinema.\nDave: Let me know when you watch it.",
    "week5/20260203_1900.txt": "Time: 20260203_19:00\nErin: Which film should we watch on Friday?\nDave: A game "
                               "film, like the one Alice wanted to watch.\nErin: Fine, we watch it on Friday.",
}
# Alice meets many people at many times: "Alice", "meet" and "time" alone find any of these.
FRIENDS = ["Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent"]
for n, friend in enumerate(FRIENDS):
    LOGS[f"week{12 + n}/2026{4 + n // 4:02d}{3 + 7 * (n % 4):02d}_1200.txt"] = (
        f"Time: 2026{4 + n // 4:02d}{3 + 7 * (n % 4):02d}_12:00\nAlice: {friend}, what time shall we meet?\n"
        f"{friend}: Let's meet at {n % 5 + 5} for the {['gym', 'lunch', 'museum', 'park'][n % 4]}.\n"
        f"Alice: Good time, we meet then.\n{friend}: See you, Alice.")
QUESTION = "At what time did Alice meet her friend to watch \"Overwatch 3\"?"


def write_logs(root: Path, logs: dict[str, str] | None = None) -> Path:
    """``logs`` (default: the thread logs above, in week folders) under ``root``/docs; returns that folder."""
    for name, text in (LOGS if logs is None else logs).items():
        path = root / "docs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "docs"


def logs_kb(root: Path, logs: dict[str, str], embedder: Any, **options: Any) -> Iterator[Any]:
    """For a fixture to ``yield from``: a new KB under ``root`` with ``logs`` ingested (every one added), on the
    session's embedder; closed afterwards."""
    from ragtune.kb import KnowledgeBase

    kb = KnowledgeBase.open(root / "kb", create=True, embedder=embedder, **options)
    try:
        report = kb.ingest(write_logs(root, logs))
        assert report.ok and len(report.added) == len(logs), report
        yield kb
    finally:
        kb.close()
