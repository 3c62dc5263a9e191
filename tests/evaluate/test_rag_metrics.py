"""RAG metrics on hand-computed cases: each formula, the refusal and empty-input rules, exclusions, NaN-freedom,
loading RAGAS rows, and paired comparison of two runs. A word-overlap judge and fixed vectors keep them exact."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence

import numpy as np
import pytest

from ragtune.errors import ConfigError
from ragtune.evaluate import evaluate_rag, load_samples
from ragtune.evaluate.rag import (
    compare_runs,
    default_metrics,
    metric_names,
    score_samples,
    stemmed_rouge_tokens,
    summarize,
)
from ragtune.evaluate.samples import RagSample, answerability, is_refusal, was_refused
from ragtune.rag.claims import ClaimCheck, strip_markers

pytestmark = pytest.mark.unit


class WordJudge:
    """Supported when every word of the claim (lower case, 3+ letters) is in one context: exact and predictable."""

    name = "words"

    def __init__(self) -> None:
        self.calls = 0

    def check(self, claims: Sequence[str], contexts: Sequence[str], *, question: str | None = None,
              language: str | None = None) -> list[ClaimCheck]:
        self.calls += 1
        out = []
        for claim in claims:
            words = {w.strip(".,?!").lower() for w in claim.split() if len(w.strip(".,?!")) >= 3}
            shares = [len(words & {w.strip(".,?!").lower() for w in c.split()}) / max(len(words), 1)
                      for c in contexts]
            best = int(np.argmax(shares)) if shares else None
            ok = bool(shares) and max(shares) == 1.0
            out.append(ClaimCheck(claim=claim, supported=ok, score=max(shares, default=0.0), source=best,
                                  reason="" if ok else "words missing"))
        return out


class TableEmbedder:
    """Vectors looked up in a table (unknown texts get a vector orthogonal to every listed one)."""

    name = "table"

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}
        self.dim = len(next(iter(table.values())))

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.table.get(t, np.r_[np.zeros(self.dim - 1), 1.0]).astype(np.float32) for t in texts])

    encode_queries = _encode
    encode_documents = _encode


def score(rows: list[dict], metrics: list[str], embedder: TableEmbedder | None = None) -> list[dict]:
    samples = load_samples(rows)
    scores, _ = score_samples(samples, metrics, judge=WordJudge(), embedder=embedder)
    return scores


REFUND = "Enterprise customers have a refund window of 45 days from the invoice date."
APPROVAL = "Refunds above 10,000 EUR need approval from the finance director Marta Kowalski."


class TestFaithfulness:
    def test_share_of_supported_claims(self) -> None:
        row = {"user_input": "Tell me about refunds.", "retrieved_contexts": [REFUND, APPROVAL],
               "response": "Enterprise customers have a refund window of 45 days [1]. Refunds above 10,000 EUR "
                           "need approval from the finance director [2]. Refunds are paid in Bitcoin."}
        result = score([row], ["faithfulness"])[0]["faithfulness"]
        assert result.value == pytest.approx(2 / 3)
        claims = result.explanation["claims"]
        assert [c["supported"] for c in claims] == [True, True, False]
        assert claims[1]["source"] == 1 and claims[2]["reason"]

    def test_refusal_and_empty_response_claim_nothing(self) -> None:
        rows = [{"user_input": "Who is the CEO?", "retrieved_contexts": [REFUND],
                 "response": "The knowledge base does not contain an answer to this question."},
                {"user_input": "Who is the CEO?", "retrieved_contexts": [REFUND], "response": ""},
                {"user_input": "Who is the CEO?", "retrieved_contexts": [], "response": None}]
        for row in score(rows, ["faithfulness"]):
            assert row["faithfulness"].value == 1.0 and row["faithfulness"].counted

    def test_an_answer_without_contexts_is_unsupported(self) -> None:
        row = {"user_input": "q", "retrieved_contexts": [], "response": "The refund window is 45 days long."}
        assert score([row], ["faithfulness"])[0]["faithfulness"].value == 0.0

    def test_a_bare_yes_is_judged_as_the_questions_proposition(self) -> None:
        question = "Do enterprise customers have a refund window of 45 days?"
        row = {"user_input": question, "retrieved_contexts": [REFUND], "response": "Yes."}
        result = score([row], ["faithfulness"])[0]["faithfulness"]
        assert result.explanation["claims"][0]["claim"] == f"{question} Yes."

    def test_fragments_reach_the_judge_with_the_question(self) -> None:
        seen: list[str | None] = []

        class Recording(WordJudge):
            def check(self, claims, contexts, *, question=None, language=None):
                seen.append(question)
                return super().check(claims, contexts, question=question, language=language)

        samples = load_samples([{"user_input": "What is the refund window?", "retrieved_contexts": [REFUND],
                                 "response": "45 days"}])
        score_samples(samples, ["faithfulness"], judge=Recording())
        assert seen == ["What is the refund window?"]


class TestAnswerRelevancy:
    Q = "What is the refund window?"

    def test_cosine_of_question_and_response(self) -> None:
        embedder = TableEmbedder({self.Q: [1, 0, 0], "It is 45 days.": [0.6, 0.8, 0]})
        row = {"user_input": self.Q, "response": "It is 45 days [1].", "retrieved_contexts": [REFUND]}
        assert score([row], ["answer_relevancy"], embedder)[0]["answer_relevancy"].value == pytest.approx(0.6)

    def test_negative_cosine_is_clipped_to_zero(self) -> None:
        embedder = TableEmbedder({self.Q: [1, 0, 0], "Bananas are yellow.": [-0.6, 0.8, 0]})
        row = {"user_input": self.Q, "response": "Bananas are yellow."}
        assert score([row], ["answer_relevancy"], embedder)[0]["answer_relevancy"].value == 0.0

    def test_a_correct_refusal_is_relevant_and_a_false_one_is_not(self) -> None:
        embedder = TableEmbedder({self.Q: [1, 0, 0]})
        refusal = "The knowledge base does not contain an answer to this question."
        rows = [{"user_input": self.Q, "response": refusal, "answerable": False},
                {"user_input": self.Q, "response": refusal, "reference": "45 days"},
                {"user_input": self.Q, "response": refusal}]
        values = [r["answer_relevancy"].value for r in score(rows, ["answer_relevancy"], embedder)]
        assert values == [1.0, 0.0, 0.0]


class TestContextMetricsById:
    def test_precision_and_recall_are_set_shares(self) -> None:
        row = {"user_input": "q", "retrieved_context_ids": ["a", "b", "a", "c"],
               "reference_context_ids": ["a", "c", "d"], "retrieved_contexts": ["x", "y", "x", "z"]}
        result = score([row], ["context_precision", "context_recall"])[0]
        assert result["context_precision"].value == pytest.approx(2 / 3)  # a and c of the distinct a, b, c
        assert result["context_recall"].value == pytest.approx(2 / 3)  # a and c of a, c, d
        assert result["context_recall"].explanation["missed"] == ["d"]

    def test_reference_ids_may_name_source_files(self) -> None:
        row = {"user_input": "q", "retrieved_context_ids": ["c1", "c2", "c3"],
               "retrieved_context_sources": ["/data/week1/20260105_1400.txt", "/data/week2/other.txt",
                                             "/data/week1/20260105_1400.txt"],
               "reference_context_ids": ["20260105_1400.txt", "20260701_1000.txt"], "retrieved_contexts": []}
        result = score([row], ["context_precision", "context_recall"])[0]
        assert result["context_precision"].value == pytest.approx(2 / 3)
        assert result["context_recall"].value == 0.5

    def test_at_k_uses_the_top_k_of_the_ranking(self) -> None:
        row = {"user_input": "q", "retrieved_context_ids": ["a"], "retrieved_contexts": ["x"],
               "ranked_context_ids": ["a", "b", "c", "d", "e", "f"], "ranked_contexts": list("abcdef"),
               "reference_context_ids": ["b", "f"]}
        result = score([row], ["context_recall@1", "context_recall@5", "context_recall@10", "context_recall"])[0]
        assert [result[m].value for m in ("context_recall@1", "context_recall@5", "context_recall@10",
                                          "context_recall")] == [0.0, 0.5, 1.0, 0.0]

    def test_at_k_without_a_ranking_cuts_the_retrieved_ids(self) -> None:
        row = {"user_input": "q", "retrieved_context_ids": ["x", "b", "y"], "reference_context_ids": ["b"]}
        result = score([row], ["context_recall@1", "context_recall@2", "context_precision@2"])[0]
        assert result["context_recall@1"].value == 0.0 and result["context_recall@2"].value == 1.0
        assert result["context_precision@2"].value == 0.5

    def test_unanswerable_rows_and_empty_references_are_excluded(self) -> None:
        rows = [{"user_input": "q", "retrieved_context_ids": ["a"], "reference_context_ids": [], "answerable": False},
                {"user_input": "q", "retrieved_context_ids": ["a"], "reference_context_ids": []}]
        for result in score(rows, ["context_precision", "context_recall"]):
            assert not result["context_recall"].counted and not result["context_precision"].counted
            assert result["context_recall"].value == 0.0


class TestContextMetricsByText:
    def test_string_precision_is_average_precision_of_matches(self) -> None:
        gold = "Enterprise refunds: 45 days from the invoice date."
        row = {"user_input": "q", "retrieved_contexts": [gold, "Completely unrelated text about travel.", gold + "!"],
               "reference_contexts": [gold]}
        result = score([row], ["context_precision", "context_recall"])[0]
        # Relevant at ranks 1 and 3: (1/1 + 2/3) / 2.
        assert result["context_precision"].value == pytest.approx((1 + 2 / 3) / 2)
        assert result["context_recall"].value == 1.0

    def test_claim_based_variants_with_only_a_reference_answer(self) -> None:
        row = {"user_input": "What is the refund window?",
               "retrieved_contexts": ["Travel is booked in Voyager.", REFUND],
               "reference": "Enterprise customers have a refund window of 45 days. Refunds need approval."}
        result = score([row], ["context_precision", "context_recall"])[0]
        assert result["context_precision"].value == pytest.approx(0.5)  # only rank 2 is useful: (1/2) / 1
        assert result["context_recall"].value == pytest.approx(0.5)  # first reference claim of two


class TestAnswerCorrectness:
    Q = "What is the refund window for enterprise customers?"

    def test_claim_f1_and_similarity_weighted_as_ragas(self) -> None:
        response = "Enterprise customers have a refund window of 45 days. Refunds are paid in Bitcoin."
        reference = "Enterprise customers have a refund window of 45 days."
        embedder = TableEmbedder({response: [0.8, 0.6, 0], reference: [1, 0, 0]})
        row = {"user_input": self.Q, "response": response, "reference": reference}
        result = score([row], ["answer_correctness"], embedder)[0]["answer_correctness"]
        # Precision 1/2 (Bitcoin unsupported), recall 1/1 → F1 2/3; similarity 0.8.
        assert result.value == pytest.approx(0.75 * (2 / 3) + 0.25 * 0.8)
        assert result.explanation["unsupported_claims"] == ["Refunds are paid in Bitcoin."]

    def test_refusal_rules(self) -> None:
        refusal = "I don't know."
        rows = [{"user_input": self.Q, "response": refusal, "reference": "Insufficient information"},
                {"user_input": self.Q, "response": "It is 45 days long.", "reference": "Insufficient information"},
                {"user_input": self.Q, "response": refusal, "reference": "45 days"},
                {"user_input": self.Q, "response": "", "reference": "45 days"}]
        values = [r["answer_correctness"].value for r in score(rows, ["answer_correctness"], TableEmbedder({"x": [1]}))]
        assert values == [1.0, 0.0, 0.0, 0.0]

    def test_without_reference_the_row_is_excluded(self) -> None:
        row = {"user_input": self.Q, "response": "It is 45 days long."}
        result = score([row], ["answer_correctness"], TableEmbedder({"x": [1]}))[0]["answer_correctness"]
        assert not result.counted and result.reason == "no reference answer"


class TestCitations:
    def test_precision_and_recall_of_citations(self) -> None:
        row = {"user_input": "q", "retrieved_contexts": [REFUND, APPROVAL],
               "response": "Enterprise customers have a refund window of 45 days [1]. Refunds above 10,000 EUR are "
                           "paid in Bitcoin [2]. The finance director Marta Kowalski approves refunds [3]."}
        result = score([row], ["citation_precision", "citation_recall"])[0]
        # Citations [1] good, [2] unsupported, [3] names no source: 1 of 3; sentences: 1 of 3 supported.
        assert result["citation_precision"].value == pytest.approx(1 / 3)
        assert result["citation_recall"].value == pytest.approx(1 / 3)

    def test_uncited_answer_scores_zero_and_refusal_is_excluded(self) -> None:
        rows = [{"user_input": "q", "retrieved_contexts": [REFUND],
                 "response": "Enterprise customers have a refund window of 45 days."},
                {"user_input": "q", "retrieved_contexts": [REFUND], "response": "I don't know."}]
        first, second = score(rows, ["citation_precision", "citation_recall"])
        assert first["citation_precision"].value == 0.0 and first["citation_recall"].value == 0.0
        assert not second["citation_precision"].counted and not second["citation_recall"].counted


class TestRefusals:
    def test_refusal_accuracy_and_false_refusal_rate(self) -> None:
        refusal = "The knowledge base does not contain an answer to this question."
        rows = [{"user_input": "u1", "response": refusal, "answerable": False},
                {"user_input": "u2", "response": "It is the CEO, Ada.", "answerable": False},
                {"user_input": "a1", "response": refusal, "reference": "45 days"},
                {"user_input": "a2", "response": "It is 45 days long.", "reference": "45 days"},
                {"user_input": "a3", "response": "Marta Kowalski approves it.", "answerable": True}]
        samples = load_samples(rows)
        metrics = ["refusal_accuracy", "false_refusal_rate"]
        scores, _ = score_samples(samples, metrics, judge=WordJudge())
        summary = summarize(samples, scores, metrics)
        assert summary["metrics"] == {"refusal_accuracy": 0.5, "false_refusal_rate": pytest.approx(1 / 3, abs=1e-6)}
        assert summary["counts"] == {"refusal_accuracy": 2, "false_refusal_rate": 3}
        assert [s["refusal_accuracy"].counted for s in scores] == [True, True, False, False, False]

    def test_refusal_detection(self) -> None:
        assert is_refusal("I don't know.") and is_refusal("") and is_refusal("  [1] ")
        assert is_refusal("知识库中没有找到这个问题的答案。") and is_refusal("Insufficient information")
        assert not is_refusal("Enterprise customers have 45 days [1].")
        # The pipeline's own record wins over the words.
        assert not was_refused(RagSample(user_input="q", response="I don't know.", refused=False))

    def test_answerability_from_the_reference(self) -> None:
        assert answerability(RagSample(user_input="q", reference="Insufficient information")) is False
        assert answerability(RagSample(user_input="q", reference="信息不足")) is False
        assert answerability(RagSample(user_input="q", reference="None of the plans")) is True
        assert answerability(RagSample(user_input="q")) is None
        assert answerability(RagSample(user_input="q", reference="45 days", answerable=False)) is False


class TestStringMetrics:
    def test_exact_match_is_strict_as_ragas(self) -> None:
        rows = [{"user_input": "q", "response": "45 days", "reference": "45 days"},
                {"user_input": "q", "response": "45 Days", "reference": "45 days"}]
        assert [r["exact_match"].value for r in score(rows, ["exact_match"])] == [1.0, 0.0]

    def test_rouge_is_stemmed_and_reads_chinese(self) -> None:
        assert stemmed_rouge_tokens("The cats are running, 12.5%") == ["the", "cat", "are", "run", "12", "5"]
        assert stemmed_rouge_tokens("年假二十天") == ["年", "假", "二", "十", "天"]
        rows = [{"user_input": "q", "response": "cats running", "reference": "the cat runs"},
                {"user_input": "q", "response": "每年二十天", "reference": "二十天"}]
        values = [r["rouge_score"].value for r in score(rows, ["rouge_score"])]
        # 'cat run' vs 'the cat run': LCS 2 → P 1, R 2/3; Chinese LCS 3 → P 3/5, R 1.
        assert values == [pytest.approx(0.8), pytest.approx(0.75)]


class TestNeverNaN:
    def test_degenerate_rows_give_numbers_for_every_metric(self) -> None:
        rng = random.Random(7)
        pieces = ["", " ", "I don't know.", "45 days", "Enterprise customers have 45 days [1].", "[2]", "???",
                  "全职员工每年享有二十天带薪年假[1]。", "信息不足"]
        rows = []
        for i in range(60):
            rows.append({
                "user_input": rng.choice(["q?", "What is the refund window?", "年假多少天？"]),
                "response": rng.choice(pieces), "retrieved_contexts": rng.sample([REFUND, APPROVAL, "", "x"],
                                                                                 rng.randint(0, 3)),
                "reference": rng.choice([None, "", "45 days", "Insufficient information", "二十天"]),
                "reference_context_ids": rng.choice([None, [], ["a"]]),
                "retrieved_context_ids": rng.choice([None, [], ["a", "b"]]),
                "reference_contexts": rng.choice([None, [], [REFUND]]),
                "answerable": rng.choice([None, True, False]), "id": str(i)})
        embedder = TableEmbedder({"q?": [1.0, 0.0]})
        metrics = metric_names([*default_metrics(load_samples(rows)), "context_recall@3", "semantic_similarity",
                                "exact_match", "rouge_score", "citation_precision", "citation_recall"])
        for result in score(rows, metrics, embedder):
            for name in metrics:
                assert math.isfinite(result[name].value) and 0.0 <= result[name].value <= 1.0, name


class TestEvaluateRag:
    def test_json_shape_items_in_input_order(self, tmp_path) -> None:
        rows = [{"id": "r1", "user_input": "q1", "retrieved_contexts": [REFUND],
                 "response": "Enterprise customers have a refund window of 45 days [1].", "answerable": True},
                {"id": "r2", "user_input": "q2", "retrieved_contexts": [REFUND], "response": "I don't know.",
                 "answerable": False}]
        data = tmp_path / "samples.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        result = evaluate_rag(data, metrics=["faithfulness", "refusal_accuracy", "false_refusal_rate"],
                              judge=WordJudge())
        assert set(result) >= {"metrics", "items", "config", "timings_ms", "counts"}
        assert [i["id"] for i in result["items"]] == ["r1", "r2"]
        assert result["metrics"] == {"faithfulness": 1.0, "refusal_accuracy": 1.0, "false_refusal_rate": 0.0}
        assert len(result["config"]["data_sha256"]) == 64 and result["config"]["judge"] == "words"
        assert result["items"][0]["explanation"]["faithfulness"]["claims"][0]["supported"] is True

    def test_two_runs_are_identical(self) -> None:
        from pathlib import Path

        labelled = Path(__file__).resolve().parents[1] / "fixtures" / "judge_labels.jsonl"
        rows = [json.loads(line) for line in labelled.read_text(encoding="utf-8").splitlines()]
        metrics = ["faithfulness", "citation_precision", "citation_recall", "answer_relevancy"]
        first = evaluate_rag(rows, metrics=metrics, embedder=TableEmbedder({"x": [1.0, 0.0]}))
        second = evaluate_rag(rows, metrics=metrics, embedder=TableEmbedder({"x": [1.0, 0.0]}))
        assert first["items"] == second["items"] and first["metrics"] == second["metrics"]

    def test_an_asked_for_metric_no_row_can_count_is_an_error(self) -> None:
        rows = [{"user_input": "q", "response": "It is 45 days long.", "retrieved_contexts": [REFUND]}]
        with pytest.raises(ConfigError, match="refusal_accuracy"):
            evaluate_rag(rows, metrics=["refusal_accuracy"], judge=WordJudge())

    def test_default_metrics_follow_the_inputs(self) -> None:
        plain = load_samples([{"user_input": "q", "response": "a", "retrieved_contexts": ["c"]}])
        assert default_metrics(plain) == ["faithfulness", "answer_relevancy"]
        labelled = load_samples([{"user_input": "q", "response": "a [1]", "reference": "a"},
                                 {"user_input": "q", "response": "no", "answerable": False}])
        assert default_metrics(labelled) == ["faithfulness", "answer_relevancy", "context_precision",
                                             "context_recall", "answer_correctness", "citation_precision",
                                             "citation_recall", "refusal_accuracy", "false_refusal_rate"]

    def test_unknown_metric_names_the_choices(self) -> None:
        with pytest.raises(ConfigError, match="faithfulness"):
            metric_names(["faithfullness"])


class TestLoading:
    def test_jsonl_json_and_ragas_legacy_names(self, tmp_path) -> None:
        (tmp_path / "a.jsonl").write_text('{"user_input": "q", "reference_context_ids": [1, "2"]}\n\n')
        (tmp_path / "b.json").write_text(json.dumps({"samples": [{"user_input": "q", "response": "r"}]}))
        (tmp_path / "c.json").write_text(json.dumps([{"question": "q", "answer": "r", "contexts": ["c"],
                                                      "ground_truth": "g"}]))
        assert load_samples(tmp_path / "a.jsonl")[0].reference_context_ids == ["1", "2"]
        assert load_samples(tmp_path / "b.json")[0].response == "r"
        legacy = load_samples(tmp_path / "c.json")[0]
        assert (legacy.user_input, legacy.response, legacy.retrieved_contexts, legacy.reference) == \
            ("q", "r", ["c"], "g")

    def test_errors_name_the_file_and_line(self, tmp_path) -> None:
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"user_input": "q"}\n{not json}\n')
        with pytest.raises(ConfigError, match=r"bad.jsonl line 2"):
            load_samples(bad)
        missing = tmp_path / "missing.jsonl"
        missing.write_text('{"response": "r"}\n')
        with pytest.raises(ConfigError, match=r"row 1: user_input"):
            load_samples(missing)
        with pytest.raises(ConfigError, match="no such eval data file"):
            load_samples(tmp_path / "nope.jsonl")

    def test_strip_markers(self) -> None:
        assert strip_markers("Fact one [1]. Fact two [2, 3].") == "Fact one. Fact two."


class TestCompare:
    def test_paired_by_id_with_a_confidence_interval(self) -> None:
        base = {"metrics": {"faithfulness": 0.5}, "items": [
            {"id": str(i), "faithfulness": 0.0 if i % 2 else 1.0} for i in range(40)]}
        better = {"metrics": {"faithfulness": 1.0}, "items": [{"id": str(i), "faithfulness": 1.0}
                                                              for i in reversed(range(40))]}
        out = compare_runs(better, base)["metrics"]["faithfulness"]
        assert out["difference"] == 0.5 and out["n"] == 40 and out["significant"]
        assert 0 < out["low"] <= 0.5 <= out["high"]
        same = compare_runs(base, base)["metrics"]["faithfulness"]
        assert (same["difference"], same["low"], same["high"], same["significant"]) == (0.0, 0.0, 0.0, False)

    def test_excluded_items_are_left_out_and_mismatched_sets_warned(self) -> None:
        base = {"metrics": {"m": 0.5}, "config": {"data_sha256": "a"},
                "items": [{"id": "1", "m": 1.0}, {"id": "2", "m": 0.0, "excluded": {"m": "why"}}]}
        cur = {"metrics": {"m": 1.0}, "config": {"data_sha256": "b"},
               "items": [{"id": "1", "m": 1.0}, {"id": "2", "m": 1.0}, {"id": "3", "m": 0.0}]}
        out = compare_runs(cur, base)
        assert out["metrics"]["m"]["n"] == 1
        assert any("different eval-set" in w for w in out["warnings"])
        assert any("1 items have no counterpart" in w for w in out["warnings"])
