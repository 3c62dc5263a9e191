"""Loop fixtures: a small handbook KB with scripted ratings (built once, copied per test), a fake extractive LLM
over HTTP, and a tiny Llama for the LLM stage."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from harness import EXAMPLES, fake_llm_server  # noqa: E402

from ragtune.feedback import FeedbackStore  # noqa: E402
from ragtune.types import Answer, Citation  # noqa: E402

#: Questions about the handbook: each is rated with an answer citing the KB's best chunk for it.
QUESTIONS = [
    "How long is the refund window for enterprise customers?", "Who approves refunds above 10,000 EUR?",
    "Where do I send the invoice number for a refund?", "How are refunds paid back?",
    "How long do Starter and Team customers have to ask for a refund?", "How many days of paid annual leave?",
    "病假每年最多几天？", "在哪个系统提交休假申请？", "What is the password policy?", "What happens on the first day?",
    "What is the hotel limit when travelling?", "How are travel expenses reimbursed?",
]
#: Rated too, with personal data in the question (redacted before anything is written).
PII_QUESTION = "My email is jan.kowalski@example.com — how long is the enterprise refund window?"


def rate(kb: Any, store: FeedbackStore, question: str, answer_id: str, rating: str = "up",
         corrected: str | None = None) -> None:
    """Record an answer citing the KB's best chunk for ``question`` and rate it."""
    hits = kb.retrieve(question, 3).hits
    best = hits[0]
    text = best.text.split("\n")[-1].split(". ")[0].rstrip(".")
    answer = Answer(id=answer_id, question=question, answer=f"{text} [1].", grounded=True, sources=hits,
                    citations=[Citation(number=1, chunk_id=best.chunk_id, document_id=best.document_id,
                                        source=best.source)])
    store.record_answer(answer)
    store.add(answer_id, rating, corrected_answer=corrected)


def add_feedback(kb: Any, tag: str, questions: list[str] | None = None) -> None:
    with FeedbackStore(kb.path) as store:
        for n, question in enumerate(questions if questions is not None else QUESTIONS):
            rate(kb, store, question, f"{tag}{n}")


@pytest.fixture(scope="session")
def handbook_base(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    """The handbook examples ingested, with every question of QUESTIONS rated 👍 twice (asked again in other words
    the second time), PII_QUESTION rated 👍 and two 👎 with corrections."""
    from ragtune.kb import KnowledgeBase

    path = tmp_path_factory.mktemp("loop-base") / "kb"
    with KnowledgeBase.open(path, create=True, embedder=embedder) as kb:
        kb.ingest([EXAMPLES / "handbook"])
        add_feedback(kb, "a")
        add_feedback(kb, "b", [f"Please tell me: {q}" for q in QUESTIONS])
        with FeedbackStore(path) as store:
            rate(kb, store, PII_QUESTION, "pii")
            rate(kb, store, "Enterprise refund window?", "c0", "down",
                 corrected="Enterprise customers have 45 days from the invoice date [1].")
            rate(kb, store, "年假有几天？", "c1", "down", corrected="全职员工每年享有二十天带薪年假 [1]。")
    return path


@pytest.fixture()
def handbook_kb(handbook_base: Path, tmp_path: Path) -> Path:
    """A copy of the rated handbook KB for one test."""
    target = tmp_path / "kb"
    shutil.copytree(handbook_base, target)
    return target


@pytest.fixture(scope="session")
def fake_llm_url() -> Iterator[str]:
    """An OpenAI-compatible server answering extractively from source [1] (see tests/server/harness.py)."""
    yield from fake_llm_server()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two layers, hidden size 64, the bundled SmolLM2 tokenizer: the LLM stage trains it in seconds."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from ragtune.llm.bundled import BUNDLED_SMOLLM2
    from ragtune.llm.local import resolve_model

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(BUNDLED_SMOLLM2))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    target = tmp_path_factory.mktemp("tiny-llama")
    AutoModelForCausalLM.from_config(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return str(target)


def write_recipe(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
