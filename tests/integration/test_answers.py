"""Answers end to end on a real knowledge base of invented EN + ZH policies (tests/fixtures/answers): verified
claims, extractive answers, refusals that list distinct documents, follow-ups, and the real bundled model."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragtune.kb import KnowledgeBase
from ragtune.llm.bundled import BUNDLED_SMOLLM2
from ragtune.rag.prompts import REFUSAL
from ragtune.rag.quantities import quantities

pytestmark = pytest.mark.integration

ANSWERS = Path(__file__).resolve().parents[1] / "fixtures" / "answers"
SUITE = json.loads((ANSWERS / "suite.json").read_text(encoding="utf-8"))


class ScriptedLLM:
    """Plays back fixed replies in order, streamed word by word, recording the messages it was sent."""

    context_window = 8192

    def __init__(self, *replies: str, name: str = "scripted") -> None:
        self.name = name
        self.replies = list(replies)
        self.calls: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages: list[dict[str, str]], **params: Any) -> Iterator[str]:
        self.calls.append(messages)
        reply = self.replies.pop(0)
        for word in reply.split(" "):
            yield word + " "

    def chat(self, messages: list[dict[str, str]], **params: Any) -> str:
        return "".join(self.stream(messages, **params)).strip()


@pytest.fixture(scope="module")
def policies(tmp_path_factory, embedder) -> Iterator[KnowledgeBase]:
    kb = KnowledgeBase.open(tmp_path_factory.mktemp("answers") / "kb", create=True, embedder=embedder)
    assert kb.ingest(ANSWERS / "docs").ok
    yield kb
    kb.close()


def test_streamed_text_is_verified_and_adds_up_to_the_answer(policies):
    policies.llm = ScriptedLLM("The meal allowance is 55 EUR per travel day [1]. Unused allowance is paid out in "
                               "December. Private cars are reimbursed at 0.32 EUR per kilometre [1].")
    events = list(policies.ask_stream("How much is the meal allowance per travel day?", answer_mode="generative"))
    assert [e.type for e in events] == ["token", "token", "answer"]
    answer = events[-1].answer
    assert answer is not None and answer.grounded and answer.mode == "generative"
    assert "".join(e.text for e in events[:-1]) == answer.answer == (
        "The meal allowance is 55 EUR per travel day [1]. Private cars are reimbursed at 0.32 EUR per kilometre [1].")
    assert [r.claim for r in answer.removed_claims] == ["Unused allowance is paid out in December."]
    assert answer.citations[0].source.endswith("expenses.md") and "55 EUR" in answer.citations[0].quote
    assert {"retrieve", "generate", "first_token", "first_verified", "total"} <= answer.timings.keys()


def test_a_wrong_number_and_a_wrong_citation_never_reach_the_answer(policies):
    policies.llm = ScriptedLLM("The hotel limit in Paris is 180 EUR per night [1]. Paris hotels are reimbursed up "
                               "to 250 EUR per night [1][9].")
    answer = policies.ask("What is the hotel limit in Paris?", answer_mode="generative")
    assert answer.answer == "Paris hotels are reimbursed up to 250 EUR per night [1]."
    assert answer.removed_claims[0].reason == "the sources state 250 EUR for Paris, not 180 EUR"
    assert [r.number for r in answer.removed_citations] == [9]


def test_an_unsupported_answer_is_refused_in_generative_mode_and_quoted_in_auto_mode(policies):
    policies.llm = ScriptedLLM("Expense reports must be submitted within 90 days [1].")
    refused = policies.ask("How long do I have to submit expense reports after a trip?", answer_mode="generative")
    assert refused.refused and not refused.grounded and refused.answer == REFUSAL["en"] and refused.mode == "refusal"
    assert "90 days is not stated" in refused.removed_claims[0].reason

    policies.llm = ScriptedLLM("The answer to this question is: 90 days [1].")
    quoted = policies.ask("How long do I have to submit expense reports after a trip?")
    assert quoted.mode == "extractive" and quoted.grounded and not quoted.refused
    assert quoted.answer == "“Expense reports must be submitted within 30 days after the end of a trip.” [1]"
    assert quoted.citations[0].number == 1 and quoted.citations[0].source.endswith("expenses.md")
    assert quoted.documents[0].cited and "30 days" in quoted.documents[0].snippet


def test_a_question_about_a_year_the_sources_never_state_is_refused(policies):
    # The sources give Nimbus's budget for no year and its launch for 2027: neither answers a 2030 question, whether
    # the model restates the budget or the extractive path looks for a passage.
    question = "What is the 2030 budget of Project Nimbus?"
    policies.llm = ScriptedLLM("Project Nimbus has a budget of 3.4 million EUR [1].")
    assert policies.ask(question, answer_mode="generative").refused
    policies.llm = ScriptedLLM("Project Nimbus has a budget of 3.4 million EUR [1].")
    answer = policies.ask(question)  # auto: the generated sentence fails, then no passage states 2030
    assert answer.refused and answer.answer == REFUSAL["en"]
    assert policies.ask("When is the first launch of Project Nimbus planned in 2030?", answer_mode="extractive").refused
    policies.llm = ScriptedLLM("Project Nimbus has a budget of 3.4 million EUR [1].")
    answered = policies.ask("What is the budget of Project Nimbus?", answer_mode="generative")
    assert not answered.refused and "3.4 million EUR" in answered.answer


def test_the_models_i_dont_know_gives_way_to_the_sources(policies):
    policies.llm = ScriptedLLM("I don't know.")
    answer = policies.ask("How many parking spaces does the garage have?")
    assert answer.mode == "extractive" and "120 parking spaces" in answer.answer


def test_extractive_mode_never_calls_the_model(policies):
    llm = ScriptedLLM()
    policies.llm = llm
    answer = policies.ask("Who handles support escalations?", answer_mode="extractive")
    assert answer.answer == "“Escalations go to the support manager, Priya Nair.” [1]" and llm.calls == []
    assert "extract" in answer.timings


def test_chinese_goes_to_the_sources_when_the_model_writes_only_english(policies):
    llm = ScriptedLLM(name=BUNDLED_SMOLLM2)
    policies.llm = llm
    answer = policies.ask("每月餐补是多少？")
    (citation,) = answer.citations  # the number is the source's rank, which retrieval decides
    assert answer.mode == "extractive" and answer.answer == f"“公司每月发放餐补四百元，随工资发放。”[{citation.number}]"
    assert "餐补四百元" in answer.sources[citation.number - 1].text
    assert answer.language == "zh" and llm.calls == []


def test_refusals_list_distinct_documents_with_their_best_snippet(policies):
    llm = ScriptedLLM()
    policies.llm = llm
    answer = policies.ask("How many patents does Project Nimbus hold?", answer_mode="extractive")
    assert answer.refused and answer.answer == REFUSAL["en"] and answer.mode == "refusal"
    ids = [d.document_id for d in answer.documents]
    assert len(ids) == len(set(ids)) == len(answer.sources) and 1 <= len(ids) <= 3
    assert answer.documents[0].source.endswith("projects.md") and "Nimbus" in answer.documents[0].snippet
    assert [d.number for d in answer.documents] == list(range(1, len(ids) + 1))


def test_off_topic_questions_are_refused_without_calling_the_model(policies):
    llm = ScriptedLLM()
    policies.llm = llm
    answer = policies.ask("Who won the football World Cup in 2018?")
    assert answer.refused and llm.calls == []
    zh = policies.ask("珠穆朗玛峰有多高？")
    assert zh.refused and zh.answer == REFUSAL["zh"]


def test_sources_of_one_document_are_grouped_under_one_number(policies):
    policies.llm = ScriptedLLM()
    answer = policies.ask("What is the hotel limit in Paris and the meal allowance?", answer_mode="extractive", k=5)
    names = [h.source for h in answer.sources]
    assert len(names) == len(set(names))
    expenses = next(d for d in answer.documents if d.source.endswith("expenses.md"))
    assert len(expenses.chunk_ids) >= 2 and len(expenses.sections) >= 2
    assert all(" › " in s for s in expenses.sections)


def test_a_follow_up_is_condensed_before_retrieval_and_never_echoed(policies):
    llm = ScriptedLLM("What is the hotel limit in Berlin?", "The hotel limit in Berlin is 180 EUR per night [1].\n"
                      "Question: And in Berlin?")
    policies.llm = llm
    history = [{"role": "user", "content": "What is the hotel limit in Paris?"},
               {"role": "assistant", "content": "“City: Paris, Hotel limit per night: 250 EUR” [1]"}]
    answer = policies.ask("And in Berlin?", history=history)
    assert "berlin" in answer.query.lower() and "hotel" in answer.query.lower()
    assert answer.answer == "The hotel limit in Berlin is 180 EUR per night [1]."
    assert "What is the hotel limit in Paris?" in llm.calls[0][1]["content"]


@pytest.mark.parametrize("rewrite", [
    "Sure! Here is a summary of the policy.",
    'City: London, Hotel limit per night: 250 EUR" [2]',  # an answer, not a question (what SmolLM2 writes)
])
def test_a_failed_condensation_falls_back_to_the_earlier_question(policies, rewrite):
    policies.llm = ScriptedLLM(rewrite, "I don't know.")
    history = [{"role": "user", "content": "北京出差每晚住宿上限是多少？"},
               {"role": "assistant", "content": "“城市：北京，每晚住宿上限：600元”[1]"},
               {"role": "user", "content": "What is the hotel limit in Paris?"},
               {"role": "assistant", "content": "“City: Paris, Hotel limit per night: 250 EUR” [1]"}]
    answer = policies.ask("What about London?", history=history)
    assert answer.query == "What is the hotel limit in Paris? What about London?"
    assert answer.answer == "“City: London, Hotel limit per night: 220 GBP” [1]"


def matches(answer: str, facts: list[str]) -> bool:
    """Normalised containment: NFKC-lowercased text without citation markers contains a fact, or states the
    fact's number (二十天 = 20 days)."""
    from ragtune.rag.claims import strip_markers

    plain = strip_markers(answer).lower().replace(",", "")
    values = {q.value for q in quantities(plain)}
    return any(f.lower().replace(",", "") in plain or ({q.value for q in quantities(f)} & values) for f in facts)


def run_suite(kb: KnowledgeBase, **options: Any) -> dict[str, list[tuple[str, str]]]:
    results: dict[str, list[tuple[str, str]]] = {"correct": [], "wrong": [], "false_refusal": [], "refused": [],
                                                 "invented": []}
    for item in SUITE["answerable"]:
        answer = kb.ask(item["q"], **options)
        cited = any(c.source.endswith(item["doc"]) for c in answer.citations)
        key = ("false_refusal" if answer.refused else "correct" if matches(answer.answer, item["facts"]) and cited
               else "wrong")
        results[key].append((item["q"], answer.answer))
    for item in SUITE["unanswerable"]:
        answer = kb.ask(item["q"], **options)
        (results["refused"] if answer.refused else results["invented"]).append((item["q"], answer.answer))
    return results


@pytest.mark.slow
def test_the_bundled_model_answers_with_citations_or_refuses(policies):
    policies.llm = None  # the default: the bundled SmolLM2
    results = run_suite(policies)
    counts = {k: len(v) for k, v in results.items()}
    print(json.dumps(counts), json.dumps(results, ensure_ascii=False, indent=1))
    answerable = len(SUITE["answerable"])
    # Issue 16's goals: ≥ 85 % right and cited, every unanswerable question refused, ≤ 5 % false refusals.
    assert counts["correct"] >= 0.85 * answerable, results["wrong"] + results["false_refusal"]
    assert results["invented"] == []
    assert counts["false_refusal"] <= 0.05 * answerable


@pytest.mark.slow
def test_the_same_model_served_over_http_answers_alike(policies, serve):
    from openai_server import local_llm_handler

    from ragtune.llm import LocalLLM, OpenAICompatibleLLM

    local = LocalLLM()
    base_url = serve(local_llm_handler(local))
    # Four generated answers and a refusal: equality is a property of the transport, not of the question.
    questions = [i["q"] for i in SUITE["answerable"][:4] + SUITE["unanswerable"][:1]]
    # A server gets no repetition controls unless they are set; set, both backends decode alike.
    settings = policies.settings
    policies.settings = settings.model_copy(update={"repetition_penalty": 1.15, "no_repeat_ngram_size": 4})
    try:
        policies.llm = local
        expected = [policies.ask(q).answer for q in questions]
        with OpenAICompatibleLLM(BUNDLED_SMOLLM2, base_url=base_url) as remote:
            policies.llm = remote
            served = [policies.ask(q).answer for q in questions]
    finally:
        policies.settings = settings
    assert served == expected  # same model, greedy decoding: the server changes nothing
    assert all(re.search(r"\[\d\]", a) or a in REFUSAL.values() for a in served)
