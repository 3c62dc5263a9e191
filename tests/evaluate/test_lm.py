"""LM metrics: ROUGE-L against hand-computed LCS cases, exact match, perplexity against the model's loss, win rate."""

from __future__ import annotations

import math

import pytest

from ragtune.errors import ConfigError
from ragtune.evaluate.lm import (
    WinRate,
    exact_match,
    llm_judge,
    normalize_answer,
    overlap_judge,
    perplexity,
    rouge_l,
    rouge_tokens,
    win_rate,
)


@pytest.mark.unit
class TestRougeL:
    def test_hand_computed(self) -> None:
        # LCS("the cat sat on the mat", "the cat was on the mat") = the cat on the mat = 5 of 6 and 6.
        assert rouge_l("the cat sat on the mat", "the cat was on the mat") == pytest.approx(5 / 6)
        # LCS = "a c" (2); precision 2/3, recall 2/2 → F1 0.8.
        assert rouge_l("a b c", "a c") == pytest.approx(0.8)

    def test_identical_disjoint_and_empty(self) -> None:
        assert rouge_l("Refunds within 14 days [1].", "refunds within 14 days [1]") == 1.0
        assert rouge_l("alpha beta", "gamma delta") == 0.0
        assert rouge_l("", "x") == 0.0

    @pytest.mark.parametrize(
        ("prediction", "reference"),
        [
            ("the cat sat on the mat", "the cat was on the mat"),
            ("Enterprise customers can request a refund within 45 days.", "Refunds: 45 days for enterprise plans."),
            ("Travel must be approved by your manager [1].", "Your manager approves all travel before booking [2]."),
            ("no overlap here", "completely different words"),
            ("It's 12.5% of the base-salary", "the base salary times 12.5 percent"),
        ],
    )
    def test_equals_rouge_score_on_english(self, prediction: str, reference: str) -> None:
        # The reference implementation (Google's rouge-score), which handles no CJK: ours must agree on English.
        from rouge_score import rouge_scorer

        expected = rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"].fmeasure
        assert rouge_l(prediction, reference) == pytest.approx(expected)

    def test_cjk_characters_are_tokens(self) -> None:
        assert rouge_tokens("年假二十天") == ["年", "假", "二", "十", "天"]
        # LCS 7 of 7 predicted and 15 reference characters.
        expected = 2 * (7 / 7) * (7 / 15) / (7 / 7 + 7 / 15)
        assert rouge_l("每年二十天年假", "全职员工每年享有二十天带薪年假") == pytest.approx(expected)


@pytest.mark.unit
class TestExactMatch:
    def test_normalisation(self) -> None:
        assert normalize_answer("The  Answer, is: 42!") == "answer is 42"
        assert exact_match("the answer is 42.", "Answer is 42") == 1.0
        assert exact_match("43", "42") == 0.0


@pytest.mark.unit
class TestWinRate:
    def test_consistent_judge(self) -> None:
        outcome = win_rate(overlap_judge, ["q1", "q2", "q3"], ["14 days", "x", "same"], ["x", "45 days", "same"],
                           references=["14 days", "45 days", "same"])
        assert (outcome.wins, outcome.losses, outcome.ties) == (1, 1, 1)
        assert outcome.rate == 0.5

    def test_position_bias_cancels(self) -> None:
        """A judge that always prefers the first answer wins nothing for either side once positions are swapped."""
        always_first = lambda q, a, b, r: "A"  # noqa: E731
        outcome = win_rate(always_first, ["q"] * 4, ["c"] * 4, ["b"] * 4)
        assert outcome == WinRate(0, 0, 4)

    def test_llm_judge_reads_the_letter(self) -> None:
        class Fake:
            def __init__(self) -> None:
                self.prompts: list[str] = []

            def chat(self, messages, **params):
                self.prompts.append(messages[0]["content"])
                return " b" if "Answer A: bad" in messages[0]["content"] else "A."

        fake = Fake()
        outcome = win_rate(llm_judge(fake), ["q"], ["good"], ["bad"], references=["good"])
        assert outcome.wins == 1 and len(fake.prompts) == 2 and "Reference answer: good" in fake.prompts[0]

    def test_errors(self) -> None:
        with pytest.raises(ConfigError, match="same length"):
            win_rate(overlap_judge, ["q"], ["a", "b"], ["c"])
        with pytest.raises(ConfigError, match="needs reference answers"):
            win_rate(overlap_judge, ["q"], ["a"], ["b"])
        assert math.isnan(WinRate(0, 0, 0).rate)


@pytest.mark.integration
def test_perplexity_equals_exp_of_the_models_loss() -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    model = AutoModelForCausalLM.from_config(config).eval()
    ids = [5, 7, 9, 11, 13, 17]
    labels = [-100, -100, -100, 11, 13, 17]
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
    assert perplexity(model, [(ids, labels)]) == pytest.approx(math.exp(float(loss)), rel=1e-5)
    # Batched with padding, each sequence still counts only its own label tokens.
    other = ([3, 4, 5], [3, 4, 5])
    with torch.no_grad():
        loss_other = model(input_ids=torch.tensor([other[0]]), labels=torch.tensor([other[1]])).loss
    expected = math.exp((float(loss) * 3 + float(loss_other) * 2) / 5)
    assert perplexity(model, [(ids, labels), other], batch_size=2) == pytest.approx(expected, rel=1e-5)
