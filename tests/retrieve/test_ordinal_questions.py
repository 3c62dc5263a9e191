"""Questions that ask for the first or the latest time something happened: among the dated chunks retrieval finds
about as good as the best, the date decides (real SQLite, the bundled embedder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chat_logs import logs_kb

from ragtune.kb import KnowledgeBase

pytestmark = pytest.mark.integration

# Four messages about bread deliveries; the first one words it least like the questions below, so its date has to
# bring it up. The newest message of all is about something else.
LOGS = {
    "20260301_0800.txt": "Time: 20260301_08:00\nHaileyJohnson: Good morning! Alice dropped off a sourdough loaf and a "
                         "bottle of milk at your door.\nLiHua: Thanks, it smells wonderful!",
    "20260405_0800.txt": "Time: 20260405_08:00\nHaileyJohnson: Your bread delivery is on its way: Alice will deliver "
                         "the rye bread by eight.\nLiHua: Great, thanks for the delivery!",
    "20260512_0800.txt": "Time: 20260512_08:00\nHaileyJohnson: Bread delivery today: Alice will deliver croissants "
                         "and bread at eight.\nLiHua: Perfect, I love your bread deliveries.",
    "20260715_0800.txt": "Time: 20260715_08:00\nHaileyJohnson: Alice will deliver your bread delivery of baguettes "
                         "this morning.\nLiHua: Thanks, the bread delivery is always on time.",
    "20261201_2000.txt": "Time: 20261201_20:00\nWolfgangSchulz: The concert tickets for Friday are booked, row "
                         "twelve.\nLiHua: Awesome, see you at the concert hall.",
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, embedder):
    yield from logs_kb(tmp_path_factory.mktemp("ordinal"), LOGS, embedder)


def _names(kb: KnowledgeBase, question: str, order_weight: float) -> list[str]:
    kb.settings.order_weight, before = order_weight, kb.settings.order_weight
    try:
        result = kb.retriever().search(question, 3)
    finally:
        kb.settings.order_weight = before
    return [Path(h.source).name for h in result.hits]


def test_the_first_time_lifts_the_earliest_of_the_alike_messages(kb: KnowledgeBase) -> None:
    question = "What did Alice deliver the first time Hailey sent a bread delivery?"
    unordered = _names(kb, question, 0.0)
    assert "20260301_0800.txt" not in unordered  # similarity alone prefers the wordier ones
    ordered = _names(kb, question, 1.0)
    assert "20260301_0800.txt" in ordered and "20260715_0800.txt" not in ordered, ordered
    ranks = {Path(h.source).name: h.scores.get("order_rank") for h in kb.retriever().search(question, 5).hits}
    assert ranks["20260301_0800.txt"] == 1 and ranks["20260715_0800.txt"] > ranks["20260405_0800.txt"]


def test_the_latest_is_the_newest_message_about_it_not_the_newest_message(kb: KnowledgeBase) -> None:
    result = kb.retriever().search("What was the latest bread delivery from Hailey?", 5)
    ranks = {Path(h.source).name: h.scores.get("order_rank") for h in result.hits}
    assert ranks["20260715_0800.txt"] == 1
    assert ranks["20261201_2000.txt"] is None  # the concert: far below the best, so its date is not read
    assert Path(result.hits[0].source).name != "20261201_2000.txt"


def test_a_question_without_an_ordinal_is_ranked_as_before(kb: KnowledgeBase) -> None:
    question = "Which bread did Alice deliver?"
    assert _names(kb, question, 1.0) == _names(kb, question, 0.0)
    assert "order" not in kb.retriever().search(question, 3).timings
