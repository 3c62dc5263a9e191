"""Training rows from rated answers: retrieval pairs from cited 👍 answers and corrections, RAFT rows with the
oracle among retrieved distractors and a target citing it, preference rows, demonstrations renumbered."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ragtune.feedback import FeedbackRecord
from ragtune.loop import datasets
from ragtune.types import ChunkMeta, Hit

pytestmark = pytest.mark.unit

REFUND = "Enterprise customers have a refund window of 45 days from the invoice date."
STARTER = "Customers on the Starter and Team plans can request a full refund within 14 days of purchase."
TRAVEL = "Hotels up to 150 EUR a night are reimbursed."


def record(n: int, rating: str, answer: str, *, corrected: str | None = None, cited=(1,), question=None):
    return FeedbackRecord(answer_id=f"a{n}", question=question or f"How long is the enterprise refund window? {n}",
                          answer=answer, rating=rating, contexts=[REFUND, STARTER, TRAVEL],
                          cited=[{"number": c, "chunk_id": f"c{c}"} for c in cited], corrected_answer=corrected, id=n)


def hit(cid: str, text: str) -> Hit:
    return Hit(chunk_id=cid, document_id=f"d{cid}", source=f"{cid}.md", text=text, score=1.0, meta=ChunkMeta())


class FakeKb:
    """Retrieval for RAFT rows: a fixed ranking (the oracle c1 third)."""

    def __init__(self) -> None:
        self.hits = [hit("c2", STARTER), hit("c3", TRAVEL), hit("c1", REFUND), hit("c4", "Passwords: 12 characters."),
                     hit("c5", "Badges are issued on day one."), hit("c6", "Laptops are encrypted.")]

    def retrieve(self, query: str, k: int, **options):
        return SimpleNamespace(hits=self.hits[:k])


def test_latest_rating_of_an_answer_counts() -> None:
    first, second = record(1, "up", "45 days [1]."), record(2, "down", "45 days [1].")
    second.answer_id = first.answer_id
    assert datasets.latest([first, second]) == [second]


def test_retrieval_pairs_from_cited_up_answers_and_corrections() -> None:
    rows = [record(1, "up", "45 days [1]."),
            record(2, "down", "14 days.", corrected="Enterprise: 45 days [1]; hotels [3]."),
            record(3, "down", "wrong"),                                       # no correction: no pair
            record(4, "up", "The knowledge base does not contain an answer to this question.")]  # a refusal
    pairs = datasets.retrieval_pairs(rows)
    assert [(p["feedback_id"], p["chunk_id"], p["positive"]) for p in pairs] == [
        (1, "c1", REFUND), (2, "c1", REFUND), (2, "", TRAVEL)]


def test_oracle_and_citation_of_a_correction() -> None:
    assert datasets.oracle_number(record(1, "down", "x", corrected="It is 45 days [1]."), "It is 45 days [1].") == 1
    # No marker: the source that supports the correction.
    assert datasets.oracle_number(record(1, "down", "x"), "Starter and Team plans: a full refund within 14 days.") == 2
    assert datasets.oracle_number(record(1, "down", "x"), "Ask the moon.") is None
    assert datasets.with_citation("It is 45 days [2]. Ask billing.", 3) == "It is 45 days [3]. Ask billing [3]."
    assert datasets.with_citation("年假二十天。", 1) == "年假二十天 [1]。"


def test_raft_rows_put_the_oracle_among_retrieved_distractors() -> None:
    rows = datasets.raft_rows(FakeKb(), [record(1, "down", "14 days [1].", corrected="45 days from the invoice [1]."),
                                         record(2, "up", "45 days [1]."), record(3, "down", "no correction")],
                              distractors=3, from_up=False, seed=0)
    assert len(rows) == 1
    row = rows[0]
    system, user, target = row["messages"]
    assert system["role"] == "system" and user["role"] == "user" and target["role"] == "assistant"
    sources = [line for line in user["content"].splitlines() if line.startswith("[")]
    assert len(sources) == 4  # the oracle and three distractors, each once
    assert sources[row["oracle"] - 1] == f"[{row['oracle']}] {REFUND}"
    assert target["content"] == f"45 days from the invoice [{row['oracle']}]."
    with_up = datasets.raft_rows(FakeKb(), [record(2, "up", "45 days [1].")], distractors=2, from_up=True, seed=0)
    assert len(with_up) == 1 and with_up[0]["kind"] == "up"


def test_preference_rows() -> None:
    rows = [record(1, "down", "14 days [1].", corrected="45 days [1]."), record(2, "up", "45 days [1]."),
            record(3, "down", "14 days [1].")]
    dpo = datasets.preference_rows(rows, "dpo")
    assert [(r["feedback_id"], r["corrected_answer"]) for r in dpo] == [(1, "45 days [1].")]
    kto = datasets.preference_rows(rows, "kto")
    assert [r["feedback_id"] for r in kto] == [1, 2, 3]


def test_demonstrations_keep_the_cited_sources_renumbered() -> None:
    demos = datasets.demonstrations([record(1, "up", "45 days [3], from the invoice date [1, 3].", cited=(1, 3)),
                                     record(2, "up", "No citation."), record(3, "down", "x [1].")])
    assert len(demos) == 1
    assert demos[0].sources == [TRAVEL, REFUND] and demos[0].answer == "45 days [1], from the invoice date [2, 1]."
    merged = datasets.merge_demonstrations(demos, [*demos, demos[0].__class__(question="Other?", sources=[],
                                                                              answer="a [1]")])
    assert [d.question for d in merged] == [demos[0].question, "Other?"]
