"""Demonstrations at answer time: the closest rated answers of a question, shown before it in the answer prompt's
format — and only in the answer prompt."""

from __future__ import annotations

import pytest

from ragtune.demonstrations import DemonstratingLLM, Demonstration, DemonstrationIndex, question_of
from ragtune.rag.prompts import REFUSAL, SYSTEM, USER

pytestmark = pytest.mark.unit

DEMOS = [
    Demonstration("How long is the refund window for enterprise customers?", ["Enterprise: 45 days."],
                  "45 days [1].", "en", "d1"),
    Demonstration("Who approves refunds above 10,000 EUR?", ["The finance director, Marta Kowalski."],
                  "Marta Kowalski [1].", "en", "d2"),
    Demonstration("病假每年最多几天？", ["病假每年最多十五天。"], "十五天 [1]。", "zh", "d3"),
]


class Recorder:
    name = "recorder"
    context_window = 8192

    def __init__(self) -> None:
        self.seen: list[list[dict[str, str]]] = []

    def chat(self, messages, **params):
        self.seen.append(messages)
        return "ok"

    def stream(self, messages, **params):
        self.seen.append(messages)
        yield "ok"

    def count_tokens(self, text):
        return len(text.split())


def test_selection_by_shared_terms_never_the_question_itself() -> None:
    index = DemonstrationIndex(DEMOS)
    assert [d.id for d in index.select("What is the refund window for enterprise plans?", 2)] == ["d1"]
    assert [d.id for d in index.select("病假最多可以请几天？", 2)] == ["d3"]
    assert index.select("How long is the refund window for enterprise customers?", 2) == []  # its own answer
    assert index.select("What colour is the office?", 2) == []


def test_question_is_read_back_through_the_template() -> None:
    turn = USER["en"].format(question="What is X?", sources="[1] a\n\n[2] b")
    assert question_of(turn, USER.values()) == "What is X?"
    assert question_of("free text", USER.values()) == "free text"


def test_only_the_answer_prompt_gets_demonstrations() -> None:
    recorder = Recorder()
    systems = [SYSTEM[lang].format(refusal=REFUSAL[lang]) for lang in SYSTEM]
    llm = DemonstratingLLM(recorder, DemonstrationIndex(DEMOS), k=2, answer_systems=systems, user_templates=USER)
    question = "What is the refund window for enterprise plans?"
    answer_prompt = [{"role": "system", "content": systems[0]},
                     {"role": "user", "content": USER["en"].format(question=question, sources="[1] Enterprise...")}]
    assert "".join(llm.stream(answer_prompt)) == "ok"
    shown = recorder.seen[-1]
    assert [m["role"] for m in shown] == ["system", "user", "assistant", "user"]
    assert shown[1]["content"] == USER["en"].format(question=DEMOS[0].question, sources="[1] Enterprise: 45 days.")
    assert shown[2]["content"] == "45 days [1]." and shown[3] == answer_prompt[1]
    rewrite = [{"role": "system", "content": "Rewrite the question."}, {"role": "user", "content": question}]
    llm.chat(rewrite)
    assert recorder.seen[-1] == rewrite
    assert llm.count_tokens("a b c") == 3 and llm.context_window == 8192
