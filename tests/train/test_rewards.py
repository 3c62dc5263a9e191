"""Each reward on constructed answers, their weighted sum, the TRL adapters and the held-out grading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.train.recipe import RewardsSection
from ragtune.train.rewards import (
    Rewards,
    Sample,
    citation_reward,
    cited_sources,
    correctness_reward,
    grade,
    grade_table,
    is_refusal,
    length_penalty,
    refusal_reward,
    stated_numbers,
)

DATA = Path(__file__).resolve().parents[2] / "recipes" / "data"

REFUNDS = ("Customers on the Starter and Team plans can request a full refund within 14 days of purchase.",
           "Receipts must be submitted within 30 days of returning.",
           "API keys for the Orbital platform must be rotated every 90 days.")
LEAVE = ("全职员工每年享有二十天带薪年假。", "病假每年最多十五天，超过三天需要提供医院证明。")


def refunds(answer: str, **known: object) -> Sample:
    fields = {"reference": "Starter customers can get a full refund within 14 days of purchase [1].",
              "answerable": True, "source": 1, **known}
    return Sample(question="How long do Starter customers have to ask for a refund?", answer=answer,
                  contexts=REFUNDS, **fields)  # type: ignore[arg-type]


def leave(answer: str, **known: object) -> Sample:
    fields = {"reference": "病假每年最多十五天 [2]。", "answerable": True, "source": 2, **known}
    return Sample(question="病假每年最多几天？", answer=answer, contexts=LEAVE, **fields)  # type: ignore[arg-type]


@pytest.mark.unit
class TestTextFacts:
    def test_refusals(self) -> None:
        assert is_refusal("I don't know.") and is_refusal("") and is_refusal("不知道。")
        assert is_refusal("The knowledge base does not contain an answer to this question.")
        assert not is_refusal("Refunds take 14 days [1].")

    def test_cited_sources_and_numbers_ignore_markers(self) -> None:
        assert cited_sources("A [2]. B [1, 3]. C [2].") == [2, 1, 3]
        assert stated_numbers("Refunds above 10,000 EUR [2].") == {"10000"}
        assert stated_numbers("病假每年最多十五天 [1]。") == stated_numbers("病假每年最多15天。") == {"15"}


@pytest.mark.unit
class TestCitation:
    def test_supported_and_cited_earns_full_credit(self) -> None:
        assert citation_reward(refunds("Starter and Team customers can get a full refund within 14 days [1].")) == 1.0

    def test_supported_but_uncited_earns_partial_credit(self) -> None:
        answer = "Starter and Team customers can get a full refund within 14 days."
        assert citation_reward(refunds(answer)) == 0.5
        assert citation_reward(refunds(answer), uncited_credit=0.2) == pytest.approx(0.2)

    def test_a_wrong_number_is_not_supported(self) -> None:
        assert citation_reward(refunds("Starter and Team customers can get a full refund within 30 days [1].")) == 0.0

    def test_citing_a_source_that_does_not_support_it_earns_nothing(self) -> None:
        assert citation_reward(refunds("Starter and Team customers can get a full refund within 14 days [3].")) == 0.0

    def test_share_of_supported_claims(self) -> None:
        answer = ("Starter and Team customers can get a full refund within 14 days [1]. "
                  "Refunds are paid in cash by the CEO, Jonas Whitfield [1].")
        assert citation_reward(refunds(answer)) == 0.5

    def test_a_clause_is_cited_by_its_sentence_end(self) -> None:
        answer = ("Starter and Team customers can get a full refund within 14 days; receipts must be submitted "
                  "within 30 days [1, 2].")
        assert citation_reward(refunds(answer)) == 1.0

    def test_chinese(self) -> None:
        assert citation_reward(leave("病假每年最多十五天 [2]。")) == 1.0
        assert citation_reward(leave("病假每年最多十天 [2]。")) == 0.0

    def test_a_refusal_claims_nothing_and_an_empty_answer_is_a_refusal(self) -> None:
        assert citation_reward(refunds("I don't know.")) is None
        assert citation_reward(refunds("   ")) is None


@pytest.mark.unit
class TestRefusalAndCorrectness:
    def test_refusal_decision(self) -> None:
        assert refusal_reward(refunds("I don't know.", answerable=False)) == 1.0
        assert refusal_reward(refunds("Within 14 days [1].", answerable=False)) == -1.0
        assert refusal_reward(refunds("I don't know.")) == -1.0
        assert refusal_reward(refunds("Within 14 days [1].")) == 1.0
        assert refusal_reward(refunds("Within 14 days [1].", answerable=None)) is None

    def test_containment_of_the_reference(self) -> None:
        assert correctness_reward(refunds("Starter customers can get a full refund within 14 days of purchase.")) \
            == 1.0
        partial = correctness_reward(refunds("Within 14 days [1]."))
        assert partial is not None and 0 < partial < 1
        assert correctness_reward(refunds("Starter customers get a full refund within 30 days of purchase [1].")) \
            == 0.0
        assert correctness_reward(refunds("I don't know.")) == 0.0

    def test_correctness_in_chinese_reads_numerals(self) -> None:
        assert correctness_reward(leave("病假每年最多15天 [2]。")) == 1.0
        assert correctness_reward(leave("病假每年最多十天 [2]。")) == 0.0

    def test_no_reference_or_unanswerable_gives_none(self) -> None:
        assert correctness_reward(refunds("Within 14 days.", reference=None)) is None
        assert correctness_reward(refunds("I don't know.", answerable=False, reference="I don't know.")) is None

    def test_length_penalty(self) -> None:
        assert length_penalty(refunds("Within 14 days [1].")) == 0.0
        assert length_penalty(refunds(" ".join(["word"] * 90)), limit=60) == pytest.approx(-0.5)
        assert length_penalty(refunds(" ".join(["word"] * 500)), limit=60) == -1.0
        assert length_penalty(leave("病" * 30), limit=20) == pytest.approx(-0.5)  # a Chinese character is a word
        with pytest.raises(ValueError, match="limit"):
            length_penalty(refunds("x"), limit=0)


@pytest.mark.unit
class TestCombined:
    def test_default_weights_order_the_answers(self) -> None:
        rewards = Rewards.from_section(RewardsSection())
        answers = ["Starter and Team customers can get a full refund within 14 days of purchase [1].",
                   "Starter and Team customers can get a full refund within 14 days of purchase.",
                   "Starter and Team customers can get a full refund within 30 days of purchase [1].",
                   "I don't know."]
        right, uncited, wrong, refusal = rewards.total([refunds(a) for a in answers])
        assert right == pytest.approx(3.0)
        assert right > uncited > wrong > refusal
        unanswerable = [refunds(a, answerable=False, reference="I don't know.")
                        for a in ("I don't know.", "API keys for the Orbital platform must be rotated every 90 days "
                                  "[3].", "Pro customers can get a refund within 60 days [1].")]
        refused, copied, invented = rewards.total(unanswerable)
        assert (refused, copied, invented) == (1.0, 0.0, -1.0)

    def test_breakdown_and_none_for_what_does_not_apply(self) -> None:
        rewards = Rewards.from_section(RewardsSection(length=0.0))
        parts = rewards.breakdown([refunds("I don't know.")])
        assert set(parts) == {"citation", "refusal", "correctness"}
        assert parts["citation"] == [None] and parts["refusal"] == [-1.0]

    def test_reward_model_weight_needs_a_model(self) -> None:
        with pytest.raises(ValueError, match="no reward model"):
            Rewards.from_section(RewardsSection(reward_model=1.0))

        class Longer:
            def score(self, samples: object) -> list[float]:
                return [float(len(s.answer)) for s in samples]  # type: ignore[attr-defined]

        only_model = RewardsSection(citation=0, refusal=0, correctness=0, length=0, reward_model=0.5)
        rewards = Rewards.from_section(only_model, reward_model=Longer())
        assert rewards.total([refunds("ab"), refunds("abcd")]) == [1.0, 2.0]

    def test_all_zero_weights_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="every reward weight is 0"):
            Rewards.from_section(RewardsSection(citation=0, refusal=0, correctness=0, length=0))

    def test_trl_functions_read_the_dataset_columns(self) -> None:
        functions, weights = Rewards.from_section(RewardsSection()).trl_functions()
        assert [f.__name__ for f in functions] == ["citation", "refusal", "correctness", "length"]
        assert weights == [1.0, 1.0, 1.0, 0.2]
        completions = [[{"role": "assistant", "content": "Within 14 days [1]."}],
                       [{"role": "assistant", "content": "I don't know."}]]
        refusal = functions[1]
        columns = {"question": ["q", "q"], "contexts": [list(REFUNDS)] * 2, "answerable": [True, False],
                   "reference": ["Within 14 days [1].", None], "source": [1, None], "language": ["en", "en"]}
        assert refusal(prompts=["p", "p"], completions=completions, **columns, trainer_state=None) == [1.0, 1.0]


@pytest.mark.unit
def test_rewards_rank_the_fixture_pairs() -> None:
    """The verifiable rewards alone prefer the chosen answer of nearly every handbook pair (EN and ZH)."""
    questions = {}
    for name in ("handbook-rl.jsonl", "handbook-rl-heldout.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            questions[row["question"]] = row
    rewards = Rewards.from_section(RewardsSection())
    wins = []
    for line in (DATA / "handbook-pairs-heldout.jsonl").read_text(encoding="utf-8").splitlines():
        pair = json.loads(line)
        user = pair["prompt"][-1]["content"]
        row = questions[user.split("\n")[0].split("：" if pair["language"] == "zh" else ": ", 1)[1]]
        samples = [Sample(row["question"], pair[side], tuple(row["contexts"]), row["reference"], row["answerable"],
                          row["source"], row["language"]) for side in ("chosen", "rejected")]
        chosen, rejected = rewards.total(samples)
        wins.append(chosen > rejected)
    assert len(wins) >= 100 and sum(wins) / len(wins) >= 0.9


@pytest.mark.unit
def test_grading() -> None:
    right = grade(refunds("Starter customers can get a full refund within 14 days of purchase [1]."))
    assert right.right_and_cited and not right.refused
    assert not grade(refunds("Starter customers can get a full refund within 14 days of purchase [2].")).cited
    assert grade(refunds("I don't know.")).false_refusal
    assert grade(refunds("I don't know.", answerable=False)).correct_refusal
    table = grade_table([refunds("Starter customers can get a full refund within 14 days of purchase [1]."),
                         refunds("I don't know."), refunds("I don't know.", answerable=False),
                         refunds("Within 30 days [1].", answerable=False)])
    assert table == {"questions": 4, "answerable": 2, "unanswerable": 2, "right_and_cited": 0.5, "right": 0.5,
                     "cited": 0.5, "false_refusals": 0.5, "correct_refusals": 0.5}
